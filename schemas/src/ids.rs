//! Validated identifiers. Every ID that crosses a boundary (HTTP, topic, SQL,
//! Redis key) is one of these, so a malformed ID is refused at the edge and
//! can never reach a Redis key or a SQL statement.

use std::fmt;

/// Longest accepted identifier, in bytes: fits VARCHAR(64) columns and keeps
/// Redis keys and per-partition state small.
pub const ID_LEN_MAX: usize = 64;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The string was empty.
    #[error("{kind} must not be empty")]
    Empty { kind: &'static str },
    /// The string was longer than [`ID_LEN_MAX`] bytes.
    #[error("{kind} is longer than {ID_LEN_MAX} bytes")]
    TooLong { kind: &'static str },
    /// The string had a character outside `[A-Za-z0-9._:@-]`.
    #[error("{kind} may only contain letters, digits and . _ : @ -")]
    BadChar { kind: &'static str },
}

fn validate(kind: &'static str, s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if s.len() > ID_LEN_MAX {
        return Err(IdError::TooLong { kind });
    }
    let ok = s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'-'));
    if !ok {
        return Err(IdError::BadChar { kind });
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Validates `s` and wraps it.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                validate($kind, s)?;
                Ok(Self(s.to_owned()))
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// A product on sale; also the Kafka key of every record about it.
    ProductId,
    "product_id"
);
id_type!(
    /// A buyer; per-user limits count accepted units per (product, user).
    UserId,
    "user_id"
);
id_type!(
    /// The client's idempotency key for one purchase (or one admin command).
    RequestId,
    "request_id"
);
id_type!(
    /// An order created by an accepted purchase.
    OrderId,
    "order_id"
);

impl OrderId {
    /// The order ID of the purchase decided at `(partition, offset)` of the
    /// requests topic. Derived from the input's position, never from a
    /// counter or a clock, so a replay names the same order.
    pub fn for_input(partition: i32, offset: i64) -> Self {
        Self(format!("o-{partition}-{offset}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves the edge rules: empty, too long and odd characters are refused,
    /// the allowed alphabet passes.
    #[test]
    fn validation_rules() {
        assert!(ProductId::parse("sku-1.2:3@x_y").is_ok());
        assert_eq!(
            ProductId::parse(""),
            Err(IdError::Empty { kind: "product_id" })
        );
        assert!(matches!(
            UserId::parse(&"u".repeat(65)),
            Err(IdError::TooLong { .. })
        ));
        assert!(matches!(
            RequestId::parse("a b"),
            Err(IdError::BadChar { .. })
        ));
        assert!(matches!(
            RequestId::parse("a/b"),
            Err(IdError::BadChar { .. })
        ));
        assert_eq!(OrderId::for_input(3, 42).as_str(), "o-3-42");
    }

    /// Proves serde goes through validation, so JSON bodies cannot smuggle a
    /// bad ID past the newtype.
    #[test]
    fn serde_validates() {
        let ok: ProductId = serde_json::from_str("\"p1\"").unwrap();
        assert_eq!(ok.as_str(), "p1");
        assert!(serde_json::from_str::<ProductId>("\"\"").is_err());
    }
}
