//! What the API's parameters may be, as Pusher defines them: channel and event names, socket
//! ids, and the `info` attributes asked of a channel.

use super::refusal::Refusal;
use crate::pusher::ChannelKind;

/// The longest channel or event name (Pusher's limit).
pub(super) const MAX_NAME: usize = 200;

/// Checks a channel name: 1 to 200 of `A-Z a-z 0-9 _ - = @ , . ;`, or a user's
/// `#server-to-user-USER_ID` (what `sendToUser` triggers to).
pub(super) fn check_channel(name: &str) -> Result<(), Refusal> {
    let fine = |c: char| c.is_ascii_alphanumeric() || "_-=@,.;".contains(c);
    if crate::pusher::names::is_server_to_user(name) {
        return Ok(());
    }
    if name.is_empty() || name.len() > MAX_NAME || !name.chars().all(fine) {
        let reason =
            format!("invalid channel name {name:?}: 1 to {MAX_NAME} of A-Z, a-z, 0-9 and _-=@,.;");
        return Err(Refusal::bad(reason));
    }
    Ok(())
}

/// Checks a socket id: digits, a dot, digits (the hub's, as Pusher's).
pub(super) fn check_socket_id(socket_id: &str) -> Result<(), Refusal> {
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    match socket_id.split_once('.') {
        Some((a, b)) if digits(a) && digits(b) => Ok(()),
        _ => Err(Refusal::bad(format!("invalid socket_id {socket_id:?}"))),
    }
}

/// The attributes `info` asks of a channel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Info {
    /// `subscription_count`: the channel's subscriptions.
    pub(super) subscriptions: bool,
    /// `user_count`: a presence channel's distinct users.
    pub(super) users: bool,
}

impl Info {
    /// `info`'s comma-separated attributes; none when absent.
    pub(super) fn parse(info: Option<&str>) -> Result<Self, Refusal> {
        let mut parsed = Self::default();
        for attribute in info.unwrap_or("").split(',').filter(|a| !a.is_empty()) {
            match attribute.trim() {
                "subscription_count" => parsed.subscriptions = true,
                "user_count" => parsed.users = true,
                other => {
                    let reason = format!(
                        "unknown info attribute {other:?}: subscription_count or user_count"
                    );
                    return Err(Refusal::bad(reason));
                }
            }
        }
        Ok(parsed)
    }

    /// Whether anything is asked.
    pub(super) fn any(self) -> bool {
        self.subscriptions || self.users
    }

    /// Checks that `user_count` is asked of presence channels only (Pusher refuses it for
    /// others).
    pub(super) fn check_for(self, channel: &str) -> Result<(), Refusal> {
        if self.users && ChannelKind::of(channel) != ChannelKind::Presence {
            let reason = format!("user_count is only for presence channels, not {channel:?}");
            return Err(Refusal::bad(reason));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_are_pushers() {
        for good in [
            "a",
            "private-x_y",
            "presence-room=1@a,b.c;d",
            &"c".repeat(200),
        ] {
            assert!(check_channel(good).is_ok(), "{good}");
        }
        assert!(check_channel("#server-to-user-ann").is_ok());
        for bad in [
            "",
            "a b",
            "a*",
            "a:b",
            "é",
            &"c".repeat(201),
            "#server-to-user-",
        ] {
            assert!(check_channel(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn socket_ids_are_two_numbers() {
        assert!(check_socket_id("123.456").is_ok());
        for bad in ["123", ".1", "1.", "1.2.3", "a.1", ""] {
            assert!(check_socket_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn info_names_the_attributes_asked() {
        let both = Info::parse(Some("user_count,subscription_count")).unwrap();
        assert!(both.users && both.subscriptions);
        assert!(!Info::parse(None).unwrap().any());
        assert!(Info::parse(Some("members")).is_err());
        assert!(both.check_for("presence-a").is_ok());
        assert!(both.check_for("private-a").is_err());
        assert!(
            Info::parse(Some("subscription_count"))
                .unwrap()
                .check_for("a")
                .is_ok()
        );
    }
}
