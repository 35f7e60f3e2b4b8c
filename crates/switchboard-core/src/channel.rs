//! Channels and their platform rules: reply budgets (SPEC §4) and reply windows (SPEC §5).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::time::{days, hours};

/// Where a conversation comes from.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Web,
    /// Mini-programs and mini-games share the platform rule of five consecutive replies.
    MiniProgram,
    OfficialAccount,
    Messenger,
    Email,
    App,
}

impl Channel {
    pub const ALL: [Channel; 6] = [
        Channel::Web,
        Channel::MiniProgram,
        Channel::OfficialAccount,
        Channel::Messenger,
        Channel::Email,
        Channel::App,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Web => "web",
            Channel::MiniProgram => "mini_program",
            Channel::OfficialAccount => "official_account",
            Channel::Messenger => "messenger",
            Channel::Email => "email",
            Channel::App => "app",
        }
    }

    /// How many consecutive service-side messages the platform accepts without a customer
    /// message in between; `None` means no limit.
    pub fn reply_budget(self) -> Option<u32> {
        match self {
            Channel::MiniProgram => Some(5),
            Channel::OfficialAccount => Some(20),
            Channel::Web | Channel::Messenger | Channel::Email | Channel::App => None,
        }
    }

    /// How long after the relevant last message the service side may still write.
    pub fn reply_window(self) -> Duration {
        match self {
            Channel::Messenger => days(7),
            _ => hours(48),
        }
    }

    /// Whether a message past the reply window may still go out with a [`MessageTag`]
    /// (Messenger's message tags) instead of being refused; such conversations do not end when
    /// the window closes.
    pub fn window_allows_tags(self) -> bool {
        matches!(self, Channel::Messenger)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Channel {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Channel::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| crate::Error::InvalidArgument(format!(
                "unknown channel {s:?}; expected one of web, mini_program, official_account, messenger, email, app"
            )))
    }
}

/// Messenger's message tags: a reply past the 7-day window must carry one of these.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageTag {
    ConfirmedEventUpdate,
    PostPurchaseUpdate,
    AccountUpdate,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_follow_the_platforms() {
        assert_eq!(Channel::MiniProgram.reply_budget(), Some(5));
        assert_eq!(Channel::OfficialAccount.reply_budget(), Some(20));
        for c in [Channel::Web, Channel::App, Channel::Email] {
            assert_eq!(c.reply_budget(), None);
        }
    }

    #[test]
    fn windows_are_48_hours_except_messenger() {
        assert_eq!(Channel::Web.reply_window(), hours(48));
        assert_eq!(Channel::Messenger.reply_window(), days(7));
        assert!(Channel::Messenger.window_allows_tags());
        assert!(!Channel::MiniProgram.window_allows_tags());
    }

    #[test]
    fn channel_names_round_trip() {
        for c in Channel::ALL {
            assert_eq!(c.as_str().parse::<Channel>().unwrap(), c);
        }
        assert!("fax".parse::<Channel>().is_err());
    }
}
