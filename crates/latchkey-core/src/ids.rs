//! The ids of users, sessions and passkeys, as types of their own: a function that
//! takes a session and a user cannot be handed them the wrong way round.

use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A new random id (a UUID).
            pub fn random() -> Self {
                Self(uuid::Uuid::new_v4().to_string())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Whether it is shaped like an id latchkey makes (a UUID): a
            /// name that is not can be answered "unknown" without a lookup
            /// (PostgreSQL refuses text with a NUL byte, as an error).
            pub fn is_well_formed(&self) -> bool {
                uuid::Uuid::try_parse(&self.0).is_ok()
            }
        }

        /// Any string the store kept, or a request named: ids are looked
        /// up, never trusted, so there is nothing to validate.
        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_owned())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
    };
}

id_type!(
    /// A user's id.
    UserId
);
id_type!(
    /// A session's id (`sid`): public, it is in every access token.
    SessionId
);
id_type!(
    /// A passkey's id: latchkey's name for it, not the authenticator's
    /// credential id.
    PasskeyId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_uuids_are_well_formed() {
        assert!(SessionId::random().is_well_formed());
        for odd in [
            "",
            "x",
            "\0",
            "00000000-0000-0000-0000-00000000000\0",
            "../x",
        ] {
            assert!(!SessionId::from(odd).is_well_formed(), "{odd:?}");
        }
    }
}
