//! What the API counts, for `/metrics`: the requests it answered, by endpoint and status.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use http::StatusCode;

#[derive(Debug, Default)]
pub(super) struct Counters(Mutex<BTreeMap<(&'static str, u16), u64>>);

impl Counters {
    /// Counts a request to `endpoint` (one of the API's, or `unknown`: a path of the caller's
    /// choosing would let anyone add labels without bound).
    pub(super) fn count(&self, endpoint: &'static str, status: StatusCode) {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *counts.entry((endpoint, status.as_u16())).or_default() += 1;
    }

    /// Prometheus text lines.
    pub(super) fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP switchboard_api_requests_total Server API requests answered, by endpoint \
             and status.\n# TYPE switchboard_api_requests_total counter"
        );
        let counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for ((endpoint, status), count) in counts.iter() {
            let _ = writeln!(
                out,
                "switchboard_api_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} \
                 {count}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_endpoint_and_status() {
        let counters = Counters::default();
        counters.count("publish", StatusCode::OK);
        counters.count("publish", StatusCode::OK);
        counters.count("unknown", StatusCode::NOT_FOUND);
        let mut out = String::new();
        counters.render(&mut out);
        assert!(
            out.contains("switchboard_api_requests_total{endpoint=\"publish\",status=\"200\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("{endpoint=\"unknown\",status=\"404\"} 1\n"),
            "{out}"
        );
    }
}
