//! Who the client is, from its upgrade request's query string: a verified `token` (a JWT), or
//! else the `name` it chose.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use crate::auth::JwtKey;

/// The longest name an anonymous client may choose, in characters.
const MAX_NAME: usize = 32;

/// Who a client is, and until when.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Identity {
    pub(super) user: String,
    pub(super) authenticated: bool,
    /// How long its token stays valid (with [`JwtKey::LEEWAY`]), when it has one that expires.
    pub(super) expires_in: Option<Duration>,
}

impl Identity {
    /// The client of an upgrade request with `query`, at `now`; `Err` says why it is refused.
    pub(super) fn of(query: &str, jwt: Option<&JwtKey>, now: SystemTime) -> Result<Self, String> {
        let Params { token, name } = Params::parse(query);
        match (token, jwt) {
            (Some(token), Some(key)) => {
                let claims = key.verify(&token, now).map_err(|e| e.to_string())?;
                let expires_in = claims.exp.map(|exp| {
                    let exp = SystemTime::UNIX_EPOCH + Duration::from_secs(exp) + JwtKey::LEEWAY;
                    exp.duration_since(now).unwrap_or_default()
                });
                Ok(Self {
                    user: claims.sub,
                    authenticated: true,
                    expires_in,
                })
            }
            (Some(_), None) => Err("this server does not accept tokens".into()),
            (None, _) => Ok(Self {
                user: anonymous_name(name.as_deref()),
                authenticated: false,
                expires_in: None,
            }),
        }
    }
}

/// The query parameters the hub reads, decoded as a form (`+` is a space); the first of each
/// name counts.
#[derive(Debug, Default)]
struct Params<'q> {
    token: Option<Cow<'q, str>>,
    name: Option<Cow<'q, str>>,
}

impl<'q> Params<'q> {
    fn parse(query: &'q str) -> Self {
        let mut params = Self::default();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let slot = match &*key {
                "token" => &mut params.token,
                "name" => &mut params.name,
                _ => continue,
            };
            slot.get_or_insert(value);
        }
        params
    }
}

/// The name an anonymous client asked for, cleaned up: no control characters, at most
/// [`MAX_NAME`] characters, "anonymous" when empty.
fn anonymous_name(requested: Option<&str>) -> String {
    let name: String = requested
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    let name: String = name.trim().chars().take(MAX_NAME).collect();
    if name.is_empty() {
        "anonymous".into()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anonymous(query: &str) -> String {
        let identity = Identity::of(query, None, SystemTime::now()).unwrap();
        assert!(!identity.authenticated);
        identity.user
    }

    #[test]
    fn query_parameters_are_decoded_as_a_form() {
        assert_eq!(anonymous("name=Ann%20Lee"), "Ann Lee");
        let Params { token, name } = Params::parse("x=%zz&name=a+b%21&token=a.b.c&name=second");
        assert_eq!(name.as_deref(), Some("a b!"));
        assert_eq!(token.as_deref(), Some("a.b.c"));
        assert_eq!(Params::parse("name=%zz").name.as_deref(), Some("%zz"));
        assert_eq!(Params::parse("name=%4").name.as_deref(), Some("%4"));
        assert_eq!(Params::parse("name").name.as_deref(), Some(""));
        assert_eq!(Params::parse("n%61me=x").name.as_deref(), Some("x"));
        assert_eq!(
            Params::parse("name=%C3%A9%FF").name.as_deref(),
            Some("é\u{fffd}")
        );
        assert_eq!(Params::parse("other=1").name, None);
    }

    #[test]
    fn anonymous_names_are_cleaned() {
        assert_eq!(anonymous(""), "anonymous");
        assert_eq!(anonymous("name=%20%20%07%20"), "anonymous");
        assert_eq!(anonymous("name=+ann%0A+"), "ann");
        assert_eq!(
            anonymous(&format!("name={}", "x".repeat(100))).len(),
            MAX_NAME
        );
    }

    #[test]
    fn a_verified_token_names_the_user_until_it_expires() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let key = JwtKey::hs256("test secret, thirty-two bytes ..");
        let token = key.sign(&crate::Claims {
            sub: "ann".into(),
            exp: Some(1_000_060),
            nbf: None,
            iat: None,
        });
        assert_eq!(
            Identity::of(&format!("name=bob&token={token}"), Some(&key), now),
            Ok(Identity {
                user: "ann".into(),
                authenticated: true,
                expires_in: Some(Duration::from_secs(60) + JwtKey::LEEWAY),
            })
        );
        assert!(Identity::of("token=a.b.c&name=ann", Some(&key), now).is_err());
        assert_eq!(
            Identity::of(&format!("token={token}"), None, now),
            Err("this server does not accept tokens".into()),
            "a server without a key refuses tokens rather than ignoring them"
        );
        assert_eq!(
            Identity::of("token", None, now),
            Err("this server does not accept tokens".into())
        );
    }
}
