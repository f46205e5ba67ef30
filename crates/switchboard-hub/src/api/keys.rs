//! The API keys, checked in constant time: each is compared by its SHA-256, every key every
//! time, so an answer's timing tells nothing of how much of a key was right.

use http::HeaderValue;
use sha2::{Digest, Sha256};

/// The keys the API accepts (several, so they can be rotated).
#[derive(Clone)]
pub(super) struct ApiKeys(Vec<[u8; 32]>);

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys({} keys)", self.0.len())
    }
}

impl ApiKeys {
    /// `None` when no non-empty key is given.
    pub(super) fn new(keys: impl IntoIterator<Item = String>) -> Option<Self> {
        let digests: Vec<[u8; 32]> = keys
            .into_iter()
            .filter(|k| !k.is_empty())
            .map(|k| Sha256::digest(k.as_bytes()).into())
            .collect();
        (!digests.is_empty()).then_some(Self(digests))
    }

    /// Whether `authorization` is `Bearer KEY` with one of the keys.
    pub(super) fn authorizes(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some(key) = authorization
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(key.trim().as_bytes()).into();
        self.0.iter().fold(false, |found, known| {
            let diff = known.iter().zip(&digest).fold(0u8, |d, (a, b)| d | (a ^ b));
            found | (diff == 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_configured_key_authorizes_and_nothing_else_does() {
        assert!(ApiKeys::new([String::new()]).is_none());
        let keys = ApiKeys::new(["old".to_owned(), "new".to_owned()]).unwrap();
        let bearer = |v: &str| HeaderValue::from_str(v).ok();
        assert!(keys.authorizes(bearer("Bearer old").as_ref()));
        assert!(keys.authorizes(bearer("Bearer new").as_ref()));
        assert!(!keys.authorizes(bearer("Bearer ne").as_ref()));
        assert!(!keys.authorizes(bearer("new").as_ref()));
        assert!(!keys.authorizes(None));
    }
}
