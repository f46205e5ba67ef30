//! Tokens: JSON Web Tokens (RFC 7519) signed with HMAC-SHA256 (`HS256`, RFC 7518 §3.2).
//!
//! Browsers cannot set headers on a WebSocket request, so a client passes its token in the
//! `token` query parameter; its `sub` claim becomes the connection's user. Only `HS256` is
//! accepted: the header's `alg` is checked before anything else, so a token cannot choose a
//! weaker algorithm (`none`) or another key type. `exp` and `nbf` are checked with
//! [`JwtKey::LEEWAY`] for clock skew; `aud` and `iss` are not looked at.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Deserializer, Serialize};
use sha2::Sha256;

/// base64url without padding (RFC 7515 §2), tolerating padding on input.
const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The claims the hub reads from a token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user.
    pub sub: String,
    /// Expiry, in seconds since the Unix epoch: the token is refused from then on.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "numeric_date"
    )]
    pub exp: Option<u64>,
    /// Not before, in seconds since the Unix epoch: the token is refused until then.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "numeric_date"
    )]
    pub nbf: Option<u64>,
    /// Issued at, in seconds since the Unix epoch (informational).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "numeric_date"
    )]
    pub iat: Option<u64>,
}

/// RFC 7519 §2: a NumericDate may have a fraction.
fn numeric_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let seconds = Option::<f64>::deserialize(d)?;
    // Truncating the fraction (and clamping a negative date to 0) errs on the side of
    // refusing: an expiry is never moved later.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(seconds.map(|s| s.max(0.0) as u64))
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

/// Why a token was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not three base64url parts of JSON, or the claims lack `sub`.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The header names an algorithm other than HS256.
    #[error("token algorithm {0:?} is not accepted (only HS256)")]
    Algorithm(String),
    /// The signature does not match: another key, or the token was altered.
    #[error("token signature does not match")]
    Signature,
    /// The `exp` claim has passed.
    #[error("token expired")]
    Expired,
    /// The `nbf` claim is still ahead.
    #[error("token not valid yet")]
    NotYetValid,
}

/// A shared secret that signs and verifies HS256 tokens.
#[derive(Clone)]
pub struct JwtKey {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKey(HS256, secret hidden)")
    }
}

impl JwtKey {
    /// Allowed clock difference between the token's issuer and this server.
    pub const LEEWAY: Duration = Duration::from_secs(30);

    /// A key from the shared secret (RFC 7518 §3.2 asks for at least 32 bytes).
    pub fn hs256(secret: impl AsRef<[u8]>) -> Self {
        // HMAC takes keys of any length (RFC 2104 §2: longer ones are hashed first), so this
        // never fails.
        let Ok(mac) = Hmac::<Sha256>::new_from_slice(secret.as_ref()) else {
            unreachable!("hmac accepts keys of every length")
        };
        Self { mac }
    }

    /// Checks `token`'s algorithm, signature, `exp` and `nbf` at time `now`; returns its
    /// claims.
    ///
    /// # Errors
    ///
    /// [`TokenError`] says which check failed.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(claims), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed(
                "expected three dot-separated parts".into(),
            ));
        };
        let header: Header = decode_json(header, "header")?;
        if header.alg != "HS256" {
            return Err(TokenError::Algorithm(header.alg));
        }
        let signature = B64
            .decode(signature)
            .map_err(|e| TokenError::Malformed(format!("signature: {e}")))?;
        let signed_len = token.len() - signature_part_len(token);
        let mut mac = self.mac.clone();
        mac.update(&token.as_bytes()[..signed_len]);
        // `verify_slice` compares in constant time.
        mac.verify_slice(&signature)
            .map_err(|_| TokenError::Signature)?;
        let claims: Claims = decode_json(claims, "claims")?;
        let now = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let leeway = Self::LEEWAY.as_secs();
        if claims
            .exp
            .is_some_and(|exp| now >= exp.saturating_add(leeway))
        {
            return Err(TokenError::Expired);
        }
        if claims
            .nbf
            .is_some_and(|nbf| now.saturating_add(leeway) < nbf)
        {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
    }

    /// Signs `claims` into a token (for servers that issue tokens, and for tests).
    pub fn sign(&self, claims: &Claims) -> String {
        let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        // Claims are strings and integers: serializing them cannot fail.
        let payload = B64.encode(serde_json::to_vec(claims).unwrap_or_default());
        let mut token = format!("{header}.{payload}");
        let mut mac = self.mac.clone();
        mac.update(token.as_bytes());
        token.push('.');
        token.push_str(&B64.encode(mac.finalize().into_bytes()));
        token
    }
}

/// The length of the signature part with its leading dot.
fn signature_part_len(token: &str) -> usize {
    token.rfind('.').map_or(0, |dot| token.len() - dot)
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str, what: &str) -> Result<T, TokenError> {
    let bytes = B64
        .decode(part)
        .map_err(|e| TokenError::Malformed(format!("{what}: {e}")))?;
    serde_json::from_slice(&bytes).map_err(|e| TokenError::Malformed(format!("{what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn claims(sub: &str, exp: Option<u64>) -> Claims {
        Claims {
            sub: sub.into(),
            exp,
            nbf: None,
            iat: None,
        }
    }

    #[test]
    fn verifies_the_rfc_7515_hs256_example() {
        // RFC 7515 Appendix A.1: the JWS and key of the HS256 example.
        let key = B64
            .decode(
                "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow",
            )
            .unwrap();
        let token = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9\
            .eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ\
            .dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let key = JwtKey::hs256(key);
        // The example has no `sub`: the signature checks out, then the claims are refused.
        match key.verify(token, at(1_300_000_000)) {
            Err(TokenError::Malformed(reason)) => assert!(reason.contains("sub"), "{reason}"),
            other => panic!("{other:?}"),
        }
        let tampered = token.replace(".dBjf", ".dBjg");
        assert_eq!(
            key.verify(&tampered, at(1_300_000_000)),
            Err(TokenError::Signature)
        );
    }

    #[test]
    fn signed_tokens_verify_until_they_expire() {
        let key = JwtKey::hs256("a secret of thirty-two bytes ...");
        let token = key.sign(&claims("ann", Some(1000)));
        assert_eq!(key.verify(&token, at(900)).unwrap().sub, "ann");
        assert_eq!(
            key.verify(&token, at(1000 + JwtKey::LEEWAY.as_secs() - 1))
                .unwrap()
                .sub,
            "ann"
        );
        assert_eq!(
            key.verify(&token, at(1000 + JwtKey::LEEWAY.as_secs())),
            Err(TokenError::Expired)
        );
        let forever = key.sign(&claims("bob", None));
        assert_eq!(
            key.verify(&forever, at(u64::from(u32::MAX))).unwrap().sub,
            "bob"
        );
        let mut later = claims("cy", None);
        later.nbf = Some(5000);
        assert_eq!(
            key.verify(&key.sign(&later), at(100)),
            Err(TokenError::NotYetValid)
        );
    }

    #[test]
    fn refuses_other_keys_algorithms_and_garbage() {
        let key = JwtKey::hs256("one secret");
        let other = JwtKey::hs256("another secret");
        let token = other.sign(&claims("ann", None));
        assert_eq!(key.verify(&token, at(0)), Err(TokenError::Signature));

        // alg "none" with an empty signature: the classic forgery.
        let header = B64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = B64.encode(br#"{"sub":"admin"}"#);
        assert_eq!(
            key.verify(&format!("{header}.{payload}."), at(0)),
            Err(TokenError::Algorithm("none".into()))
        );
        for garbage in ["", "a.b", "a.b.c.d", "!!.??.**", "e30.e30.e30"] {
            assert!(
                matches!(key.verify(garbage, at(0)), Err(TokenError::Malformed(_))),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn fractional_dates_are_accepted() {
        let key = JwtKey::hs256("k");
        let header = B64.encode(br#"{"alg":"HS256"}"#);
        let payload = B64.encode(br#"{"sub":"ann","exp":1000.9}"#);
        let unsigned = format!("{header}.{payload}");
        let mut mac = key.mac.clone();
        mac.update(unsigned.as_bytes());
        let token = format!("{unsigned}.{}", B64.encode(mac.finalize().into_bytes()));
        assert_eq!(key.verify(&token, at(0)).unwrap().exp, Some(1000));
    }
}
