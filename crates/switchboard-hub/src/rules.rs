//! Channel rules: who may subscribe to and publish on which channels.
//!
//! A rule is a pattern and a [`Policy`]; the first rule whose pattern matches a channel
//! decides, and a channel no rule matches is [`Policy::Public`]. A pattern is a channel name,
//! or a prefix followed by `*` (`team:*`; `*` alone matches every channel).

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
}

impl Policy {
    /// Whether a client may subscribe, read history and see presence.
    pub fn may_read(self, authenticated: bool) -> bool {
        match self {
            Self::Public | Self::PublicRead => true,
            Self::Authenticated => authenticated,
        }
    }

    /// Whether a client may publish.
    pub fn may_publish(self, authenticated: bool) -> bool {
        match self {
            Self::Public => true,
            Self::Authenticated | Self::PublicRead => authenticated,
        }
    }

    /// The policy's name, as [`FromStr`] reads it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Authenticated => "authenticated",
            Self::PublicRead => "public-read",
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
        match self.pattern.strip_suffix('*') {
            Some(prefix) => channel.starts_with(prefix),
            None => channel == self.pattern,
        }
    }

    /// The rule's policy.
    pub fn policy(&self) -> Policy {
        self.policy
    }
}

/// The policy of `channel` under `rules`: the first match, or [`Policy::Public`].
pub(crate) fn policy_for(rules: &[ChannelRule], channel: &str) -> Policy {
    rules
        .iter()
        .find(|rule| rule.matches(channel))
        .map_or(Policy::Public, ChannelRule::policy)
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
            _ => Err(RuleParseError(format!(
                "unknown policy {s:?}; expected public, authenticated or public-read"
            ))),
        }
    }
}

impl FromStr for ChannelRule {
    type Err = RuleParseError;

    /// Reads `PATTERN=POLICY`, e.g. `team:*=authenticated`.
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
        Ok(Self::new(pattern, policy.parse()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_matching_rule_decides_and_the_default_is_public() {
        let rules: Vec<ChannelRule> = ["news=public-read", "team:*=authenticated", "*=public"]
            .iter()
            .map(|r| r.parse().unwrap())
            .collect();
        assert_eq!(policy_for(&rules, "news"), Policy::PublicRead);
        assert_eq!(policy_for(&rules, "newsroom"), Policy::Public);
        assert_eq!(policy_for(&rules, "team:red"), Policy::Authenticated);
        assert_eq!(policy_for(&[], "anything"), Policy::Public);
        let everything: ChannelRule = "*=authenticated".parse().unwrap();
        assert!(everything.matches("x"));
    }

    #[test]
    fn policies_allow_what_they_say() {
        assert!(Policy::Public.may_read(false) && Policy::Public.may_publish(false));
        assert!(!Policy::Authenticated.may_read(false) && Policy::Authenticated.may_read(true));
        assert!(!Policy::Authenticated.may_publish(false));
        assert!(Policy::PublicRead.may_read(false) && !Policy::PublicRead.may_publish(false));
        assert!(Policy::PublicRead.may_publish(true));
    }

    #[test]
    fn bad_rules_are_refused_with_a_reason() {
        assert!("team:*".parse::<ChannelRule>().is_err());
        assert!("team=secret".parse::<ChannelRule>().is_err());
        assert!("=public".parse::<ChannelRule>().is_err());
        assert!("a*b*=public".parse::<ChannelRule>().is_err());
        assert!("é=public".parse::<ChannelRule>().is_ok());
    }
}
