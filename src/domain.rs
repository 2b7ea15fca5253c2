//! Validated domain types. Input is parsed into these at the API edge; inside the engine ids are
//! never bare integers and an `Email` is always normalised and plausible.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// A business (tenant): every resource belongs to exactly one.
    TenantId
);
id_type!(
    /// A user account, which may belong to several tenants.
    UserId
);
id_type!(
    /// An agent within a tenant.
    AgentId
);
id_type!(
    /// An API token (the row, not the secret).
    TokenId
);
id_type!(
    /// A call (inbound, outbound or a test call).
    CallId
);
id_type!(
    /// An engine process registered in the node registry.
    NodeId
);

/// Which way a call goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Inbound,
    Outbound,
    /// Started from the API (`test-call`), not through a phone number.
    Test,
}

/// The media-stream protocol a call arrives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Carrier {
    Twilio,
    Telnyx,
    Plivo,
    Vonage,
    Web,
}

/// A call's lifecycle: handed out, streaming, then completed or failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CallStatus {
    Initiated,
    InProgress,
    Completed,
    Failed,
}

macro_rules! text_enum {
    ($ty:ty { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some(Self::$variant),)+ _ => None }
            }
        }
    };
}

text_enum!(Direction { Inbound => "inbound", Outbound => "outbound", Test => "test" });
text_enum!(Carrier { Twilio => "twilio", Telnyx => "telnyx", Plivo => "plivo", Vonage => "vonage", Web => "web" });
text_enum!(CallStatus {
    Initiated => "initiated",
    InProgress => "in-progress",
    Completed => "completed",
    Failed => "failed",
});

/// A member's role in a tenant, ordered by privilege.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Member,
    Admin,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "member" => Some(Role::Member),
            "admin" => Some(Role::Admin),
            "owner" => Some(Role::Owner),
            _ => None,
        }
    }
}

/// An email address, trimmed and lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Accepts `local@domain.tld` shapes; deliberately not a full RFC 5322 parser.
    pub fn parse(raw: &str) -> Result<Email, &'static str> {
        let email = raw.trim().to_lowercase();
        if email.len() > 254 {
            return Err("must be at most 254 characters");
        }
        let Some((local, domain)) = email.split_once('@') else {
            return Err("must be a valid email address");
        };
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain
                .chars()
                .all(|c| c.is_alphanumeric() || c == '-' || c == '.');
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.chars().any(|c| c.is_whitespace() || c == '@');
        if domain_ok && local_ok {
            Ok(Email(email))
        } else {
            Err("must be a valid email address")
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Shortest and longest password accepted, in characters.
pub const PASSWORD_CHARS: std::ops::RangeInclusive<usize> = 8..=128;

/// A password as typed; never logged (no `Debug` of the content).
pub struct Password(String);

impl Password {
    pub fn parse(raw: String) -> Result<Password, &'static str> {
        if PASSWORD_CHARS.contains(&raw.chars().count()) {
            Ok(Password(raw))
        } else {
            Err("must be between 8 and 128 characters")
        }
    }

    /// Wraps a submitted login password without length checks (the hash decides).
    pub fn for_login(raw: String) -> Password {
        Password(raw)
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

/// A BCP-47 language tag: well-formed per RFC 5646, every subtag in the IANA registry, kept in
/// its conventional case (`en-AU`, `zh-Hant-TW`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Language(language_tags::LanguageTag);

impl Language {
    pub fn parse(raw: &str) -> Result<Language, &'static str> {
        const MESSAGE: &str = "must be a valid BCP-47 language tag such as en-AU or es-MX";
        let tag = language_tags::LanguageTag::parse(&conventional_case(raw.trim()))
            .map_err(|_| MESSAGE)?;
        // Private-use-only tags (`x-…`) name no language to speak.
        if tag.as_str().starts_with("x-") || tag.validate().is_err() {
            return Err(MESSAGE);
        }
        Ok(Language(tag))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The primary language subtag (`en` for `en-AU`).
    pub fn primary(&self) -> &str {
        self.0.primary_language()
    }

    /// The region subtag, if any (`AU` for `en-AU`).
    pub fn region(&self) -> Option<&str> {
        self.0.region()
    }
}

/// RFC 5646 §2.1.1 case conventions: language lower, script title, region upper.
fn conventional_case(tag: &str) -> String {
    let mut out = Vec::new();
    let mut after_singleton = false;
    for (i, part) in tag.split('-').enumerate() {
        let formatted = if i == 0 || after_singleton {
            part.to_ascii_lowercase()
        } else if part.len() == 1 {
            after_singleton = true;
            part.to_ascii_lowercase()
        } else if part.len() == 2 {
            part.to_ascii_uppercase()
        } else if part.len() == 4 && part.chars().all(|c| c.is_ascii_alphabetic()) {
            let lower = part.to_ascii_lowercase();
            let mut chars = lower.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase())
                .into_iter()
                .chain(chars)
                .collect()
        } else {
            part.to_ascii_lowercase()
        };
        out.push(formatted);
    }
    out.join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_rejected_when_implausible() {
        assert_eq!(
            Email::parse("  Jane@Example.COM ").unwrap().as_str(),
            "jane@example.com"
        );
        for bad in [
            "",
            "jane",
            "jane@",
            "@example.com",
            "jane@example",
            "ja ne@example.com",
            "a@b..c",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn language_tags_are_validated_and_cased() {
        assert_eq!(Language::parse("en-au").unwrap().as_str(), "en-AU");
        assert_eq!(Language::parse("ES-mx").unwrap().as_str(), "es-MX");
        assert_eq!(
            Language::parse("zh-hant-tw").unwrap().as_str(),
            "zh-Hant-TW"
        );
        assert_eq!(Language::parse("es-419").unwrap().region(), Some("419"));
        assert_eq!(Language::parse("en-AU").unwrap().primary(), "en");
        for bad in ["", "english", "en_AU", "en--AU", "x-private", "123"] {
            assert!(Language::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn roles_are_ordered_by_privilege() {
        assert!(Role::Owner > Role::Admin && Role::Admin > Role::Member);
        assert_eq!(Role::parse("admin"), Some(Role::Admin));
        assert_eq!(Role::parse("root"), None);
    }
}
