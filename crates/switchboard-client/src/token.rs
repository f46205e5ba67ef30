//! When a JWT must be replaced: read from its `exp` claim, never verified (the hub does that).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// How long before its expiry a token is replaced: a tenth of its life, between 5 s and 60 s.
fn margin(life: Duration) -> Duration {
    (life / 10).clamp(Duration::from_secs(5), Duration::from_secs(60))
}

/// How long until `token` should be replaced; `None` when it has no readable expiry.
pub(crate) fn refresh_in(token: &str) -> Option<Duration> {
    let claims = token.split('.').nth(1)?;
    let claims = URL_SAFE_NO_PAD.decode(claims.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&claims).ok()?;
    let exp = claims.get("exp")?.as_u64()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    let left = Duration::from_secs(exp.saturating_sub(now));
    let life = claims
        .get("iat")
        .and_then(serde_json::Value::as_u64)
        .map_or(left, |iat| Duration::from_secs(exp.saturating_sub(iat)));
    Some(left.saturating_sub(margin(life)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(claims: &serde_json::Value) -> String {
        let encode = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let header = serde_json::json!({"alg": "HS256", "typ": "JWT"});
        format!("{}.{}.signature", encode(&header), encode(claims))
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn a_token_is_replaced_a_tenth_of_its_life_before_it_expires() {
        let now = now();
        let hour = token(&serde_json::json!({"sub": "ann", "iat": now, "exp": now + 3600}));
        let wait = refresh_in(&hour).unwrap();
        assert!(wait <= Duration::from_secs(3540) && wait >= Duration::from_secs(3530));
        let short = token(&serde_json::json!({"iat": now, "exp": now + 20}));
        assert!(refresh_in(&short).unwrap() <= Duration::from_secs(15));
        let expired = token(&serde_json::json!({"exp": now - 10}));
        assert_eq!(refresh_in(&expired), Some(Duration::ZERO));
        assert_eq!(refresh_in(&token(&serde_json::json!({"sub": "ann"}))), None);
        assert_eq!(refresh_in("not a token"), None);
    }
}
