//! Channel rules: who may subscribe to and publish on which channels.
//!
//! A rule is a pattern and a [`Policy`]; the first rule whose pattern matches a channel
//! decides, and a channel no rule matches is [`Policy::Public`]. A pattern is a channel name,
//! or a prefix followed by `*` (`team:*`; `*` alone matches every channel).
//!
//! A client's user counts only when a verified token names it: the `name` an anonymous client
//! chooses never opens a channel.

use std::str::FromStr;

/// What a channel allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Policy {
    /// Anyone may subscribe and publish.
    Public,
    /// Only clients with a valid token may subscribe (and see history and presence) and
    /// publish.
    Authenticated,
    /// Anyone may subscribe; only clients with a valid token may publish (announcements).
    PublicRead,
    /// One user's channel: what follows the pattern's prefix is the user (`user:*` gives
    /// `user:42` to the user 42). Only a client whose token names that user may subscribe (and
    /// see history and presence); no client publishes, so what arrives comes from the server
    /// side (code that holds the hub's broker).
    /// The pattern must end in `*`; parsing refuses a personal rule without one, and such a
    /// rule built in code gives its channel to no one.
    Personal,
}

impl Policy {
    /// The policy's name, as [`FromStr`] reads it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Authenticated => "authenticated",
            Self::PublicRead => "public-read",
            Self::Personal => "personal",
        }
    }
}

/// A pattern of channel names and the policy for them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ChannelRule {
    pattern: String,
    policy: Policy,
}

impl ChannelRule {
    /// A rule for channels matching `pattern` (a name, or a prefix and `*`).
    pub fn new(pattern: impl Into<String>, policy: Policy) -> Self {
        Self {
            pattern: pattern.into(),
            policy,
        }
    }

    /// Whether the rule applies to `channel`.
    pub fn matches(&self, channel: &str) -> bool {
        pattern_matches(&self.pattern, channel)
    }

    /// The rule's policy.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Whether a client may subscribe to `channel`, read its history and see its presence,
    /// when the rule applies to it; `user` is the `sub` of the client's verified token, `None`
    /// for a client without one.
    pub fn may_read(&self, channel: &str, user: Option<&str>) -> bool {
        match self.policy {
            Policy::Public | Policy::PublicRead => true,
            Policy::Authenticated => user.is_some(),
            Policy::Personal => user.is_some_and(|user| self.owner(channel) == Some(user)),
        }
    }

    /// Whether a client may publish on a channel the rule applies to; `user` as in
    /// [`may_read`](Self::may_read).
    pub fn may_publish(&self, user: Option<&str>) -> bool {
        match self.policy {
            Policy::Public => true,
            Policy::Authenticated | Policy::PublicRead => user.is_some(),
            Policy::Personal => false,
        }
    }

    /// The user a personal rule gives `channel` to: the non-empty rest after the prefix.
    fn owner<'c>(&self, channel: &'c str) -> Option<&'c str> {
        let prefix = self.pattern.strip_suffix('*')?;
        channel.strip_prefix(prefix).filter(|user| !user.is_empty())
    }
}

/// Whether `pattern` (a channel name, or a prefix and `*`) matches `channel`.
pub(crate) fn pattern_matches(pattern: &str, channel: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => channel.starts_with(prefix),
        None => channel == pattern,
    }
}

/// The rule that decides `channel`: the first match, or `None` for a public channel.
fn rule_for<'r>(rules: &'r [ChannelRule], channel: &str) -> Option<&'r ChannelRule> {
    rules.iter().find(|rule| rule.matches(channel))
}

/// What a client asks to do on a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// Subscribe, read history or see presence.
    Read,
    Publish,
}

/// Whether a client may have `access` to `channel`; `Err` is the reason for its `forbidden`
/// error. `user` as in [`ChannelRule::may_read`].
pub(crate) fn check(
    rules: &[ChannelRule],
    channel: &str,
    user: Option<&str>,
    access: Access,
) -> Result<(), String> {
    let Some(rule) = rule_for(rules, channel) else {
        return Ok(());
    };
    let allowed = match access {
        Access::Read => rule.may_read(channel, user),
        Access::Publish => rule.may_publish(user),
    };
    if allowed {
        return Ok(());
    }
    Err(match (rule.policy, access, user) {
        (Policy::Personal, Access::Publish, _) => format!("only the server publishes on {channel}"),
        (Policy::Personal, Access::Read, Some(_)) => format!("channel {channel} is another user's"),
        (Policy::Personal, Access::Read, None) => {
            format!("channel {channel} is for its user, with a token")
        }
        (_, Access::Read, _) => format!("channel {channel} is for authenticated users"),
        (_, Access::Publish, _) => format!("publishing on {channel} needs an authenticated user"),
    })
}

/// A rule that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RuleParseError(String);

impl FromStr for Policy {
    type Err = RuleParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "public" => Ok(Self::Public),
            "authenticated" => Ok(Self::Authenticated),
            "public-read" => Ok(Self::PublicRead),
            "personal" => Ok(Self::Personal),
            _ => Err(RuleParseError(format!(
                "unknown policy {s:?}; expected public, authenticated, public-read or personal"
            ))),
        }
    }
}

impl FromStr for ChannelRule {
    type Err = RuleParseError;

    /// Reads `PATTERN=POLICY`, e.g. `team:*=authenticated` or `user:*=personal`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((pattern, policy)) = s.rsplit_once('=') else {
            return Err(RuleParseError(format!(
                "expected PATTERN=POLICY (e.g. 'team:*=authenticated'), got {s:?}"
            )));
        };
        if pattern.is_empty() || pattern.strip_suffix('*').unwrap_or(pattern).contains('*') {
            return Err(RuleParseError(format!(
                "pattern {pattern:?} must be a channel name or a prefix followed by one '*'"
            )));
        }
        let policy = policy.parse()?;
        if policy == Policy::Personal && !pattern.ends_with('*') {
            return Err(RuleParseError(format!(
                "a personal rule needs a prefix followed by '*' (e.g. 'user:*=personal'), \
                 got {pattern:?}"
            )));
        }
        Ok(Self::new(pattern, policy))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy_for(rules: &[ChannelRule], channel: &str) -> Option<Policy> {
        rule_for(rules, channel).map(ChannelRule::policy)
    }

    fn check_read(rules: &[ChannelRule], channel: &str, user: Option<&str>) -> Result<(), String> {
        check(rules, channel, user, Access::Read)
    }

    fn check_publish(
        rules: &[ChannelRule],
        channel: &str,
        user: Option<&str>,
    ) -> Result<(), String> {
        check(rules, channel, user, Access::Publish)
    }

    #[test]
    fn first_matching_rule_decides_and_the_default_is_public() {
        let rules: Vec<ChannelRule> = ["news=public-read", "team:*=authenticated", "*=public"]
            .iter()
            .map(|r| r.parse().unwrap())
            .collect();
        assert_eq!(policy_for(&rules, "news"), Some(Policy::PublicRead));
        assert_eq!(policy_for(&rules, "newsroom"), Some(Policy::Public));
        assert_eq!(policy_for(&rules, "team:red"), Some(Policy::Authenticated));
        assert_eq!(policy_for(&[], "anything"), None);
        assert_eq!(check_read(&[], "anything", None), Ok(()));
        assert_eq!(check_publish(&[], "anything", None), Ok(()));
        let everything: ChannelRule = "*=authenticated".parse().unwrap();
        assert!(everything.matches("x"));
    }

    #[test]
    fn policies_allow_what_they_say() {
        let rule = |policy| ChannelRule::new("c", policy);
        let public = rule(Policy::Public);
        assert!(public.may_read("c", None) && public.may_publish(None));
        let authenticated = rule(Policy::Authenticated);
        assert!(!authenticated.may_read("c", None) && authenticated.may_read("c", Some("ann")));
        assert!(!authenticated.may_publish(None) && authenticated.may_publish(Some("ann")));
        let public_read = rule(Policy::PublicRead);
        assert!(public_read.may_read("c", None) && !public_read.may_publish(None));
        assert!(public_read.may_publish(Some("ann")));
    }

    #[test]
    fn a_personal_channel_is_read_by_its_user_only_and_published_on_by_no_client() {
        let rules: Vec<ChannelRule> = ["user:*=personal", "*=public"]
            .iter()
            .map(|r| r.parse().unwrap())
            .collect();
        assert_eq!(check_read(&rules, "user:42", Some("42")), Ok(()));
        assert_eq!(
            check_read(&rules, "user:42", Some("7")),
            Err("channel user:42 is another user's".into())
        );
        assert_eq!(
            check_read(&rules, "user:42", None),
            Err("channel user:42 is for its user, with a token".into())
        );
        // The whole rest is the user: no prefix or extension of it matches.
        assert!(check_read(&rules, "user:42", Some("4")).is_err());
        assert!(check_read(&rules, "user:4", Some("42")).is_err());
        assert!(check_read(&rules, "user:42:x", Some("42")).is_err());
        assert_eq!(check_read(&rules, "user:a:b", Some("a:b")), Ok(()));
        // A channel of the bare prefix belongs to no one, not even an empty `sub`.
        assert!(check_read(&rules, "user:", Some("")).is_err());
        for user in [Some("42"), Some("7"), None] {
            assert_eq!(
                check_publish(&rules, "user:42", user),
                Err("only the server publishes on user:42".into())
            );
        }
        assert_eq!(check_read(&rules, "users", None), Ok(()));
        // A personal rule for one name, built in code, gives it to no one.
        let exact = ChannelRule::new("user:42", Policy::Personal);
        assert!(exact.matches("user:42") && !exact.may_read("user:42", Some("42")));
        let everyone: ChannelRule = "*=personal".parse().unwrap();
        assert!(everyone.may_read("ann", Some("ann")) && !everyone.may_read("ann", Some("bob")));
    }

    #[test]
    fn bad_rules_are_refused_with_a_reason() {
        assert!("team:*".parse::<ChannelRule>().is_err());
        assert!("team=secret".parse::<ChannelRule>().is_err());
        assert!("=public".parse::<ChannelRule>().is_err());
        assert!("a*b*=public".parse::<ChannelRule>().is_err());
        assert!("é=public".parse::<ChannelRule>().is_ok());
        let e = "user:42=personal".parse::<ChannelRule>().unwrap_err();
        assert!(e.to_string().contains("prefix followed by '*'"), "{e}");
        assert_eq!(
            "user:*=personal".parse::<ChannelRule>(),
            Ok(ChannelRule::new("user:*", Policy::Personal))
        );
    }
}
