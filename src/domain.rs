//! Newtypes that parse client input at the edge: once built, a value is valid.

use std::fmt;

/// Why a value was refused; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub code: &'static str,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

fn refuse<T>(code: &'static str, message: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError { code, message: message.into() })
}

/// A login name: 1–64 characters of ASCII letters, digits, `_`, `-`, `.`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let ok = raw.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
        if raw.is_empty() || raw.len() > 64 || !ok {
            return refuse("invalid_username", "username must be 1-64 characters of letters, digits, '_', '-' or '.'");
        }
        Ok(Self(raw.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A channel name: 1–80 characters once trimmed, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelName(String);

impl ChannelName {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let name = raw.trim();
        if name.is_empty() || name.chars().count() > 80 || name.chars().any(char::is_control) {
            return refuse("invalid_channel_name", "channel name must be 1-80 characters without control characters");
        }
        Ok(Self(name.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Message text: 1–4000 characters, not only white space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageContent(String);

/// Longest message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 4000;

impl MessageContent {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        if raw.trim().is_empty() || raw.chars().count() > MAX_MESSAGE_CHARS {
            return refuse("invalid_content", format!("message content must be 1-{MAX_MESSAGE_CHARS} characters"));
        }
        Ok(Self(raw.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_checked() {
        assert!(Username::parse("alice_01.b-c").is_ok());
        for bad in ["", "a b", "ä", "x/y", &"a".repeat(65)] {
            assert!(Username::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn channel_names_are_trimmed_and_checked() {
        assert_eq!(ChannelName::parse("  general ").unwrap().as_str(), "general");
        assert!(ChannelName::parse("   ").is_err());
        assert!(ChannelName::parse("a\nb").is_err());
        assert!(ChannelName::parse(&"x".repeat(81)).is_err());
    }

    #[test]
    fn message_content_is_bounded() {
        assert!(MessageContent::parse("hi").is_ok());
        assert!(MessageContent::parse(" \n").is_err());
        assert!(MessageContent::parse(&"x".repeat(MAX_MESSAGE_CHARS + 1)).is_err());
    }
}
