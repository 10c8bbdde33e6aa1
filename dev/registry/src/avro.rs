//! Turning a submitted schema into something the store can compare.
//!
//! A registry has to decide when two submissions are "the same schema" (same
//! id, no new version). Whitespace and key order inside JSON objects carry no
//! meaning in Avro, but defaults, docs, aliases and logical types do, so two
//! submissions are the same when apache-avro parses them to the same model;
//! the key is that model serialized back to compact JSON. We do not use the
//! Parsing Canonical Form for identity: it drops `default`, so "v1 plus a
//! default on an existing field" would collapse into v1 and the default would
//! never reach the clients that fetch the latest version.

use apache_avro::Schema;
use serde::Deserialize;

use crate::error::RegistryError;

/// Largest schema text accepted; a dev registry has no reason to hold more.
pub const MAX_SCHEMA_BYTES: usize = 1024 * 1024;

/// The only schema type the stand-in understands.
pub const AVRO: &str = "AVRO";

/// Body of register, lookup and compatibility-test requests.
///
/// Unknown members (`metadata`, `ruleSet`, `version`, `id`, ...) are ignored
/// on purpose: clients send them routinely and they change nothing here.
#[derive(Debug, Deserialize)]
pub struct SchemaRequest {
    /// The schema itself, as a JSON document inside a JSON string.
    pub schema: Option<String>,
    /// `AVRO` when absent, as in Confluent's API.
    #[serde(rename = "schemaType")]
    pub schema_type: Option<String>,
    /// Schema references; only an empty list is supported.
    pub references: Option<Vec<serde_json::Value>>,
}

/// A submitted schema, validated and parsed.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The text as submitted; stored verbatim so clients get back what they sent.
    pub text: String,
    /// The parsed form, used by the compatibility checker.
    pub parsed: Schema,
    /// Identity key, see the module docs.
    pub key: String,
}

impl SchemaRequest {
    /// Validates the request and parses its schema.
    pub fn into_candidate(self) -> Result<Candidate, RegistryError> {
        if let Some(kind) = self.schema_type.as_deref() {
            if !kind.eq_ignore_ascii_case(AVRO) {
                return Err(RegistryError::InvalidSchema(format!(
                    "schemaType '{kind}' is not supported by this development stand-in; only AVRO is"
                )));
            }
        }
        if self
            .references
            .as_ref()
            .is_some_and(|refs| !refs.is_empty())
        {
            return Err(RegistryError::InvalidSchema(
                "schema references are not supported by this development stand-in; inline the referenced types".into(),
            ));
        }
        let text = self.schema.ok_or_else(|| {
            RegistryError::InvalidSchema("the request has no \"schema\" member".into())
        })?;
        Candidate::parse(text)
    }
}

impl Candidate {
    /// Parses `text`, refusing oversized or invalid schemas.
    pub fn parse(text: String) -> Result<Self, RegistryError> {
        if text.len() > MAX_SCHEMA_BYTES {
            return Err(RegistryError::InvalidSchema(format!(
                "schema is {} bytes; this development stand-in refuses schemas over {MAX_SCHEMA_BYTES} bytes (1 MiB)",
                text.len()
            )));
        }
        let parsed =
            Schema::parse_str(&text).map_err(|e| RegistryError::InvalidSchema(e.to_string()))?;
        let key = identity_key(&parsed)?;
        Ok(Self { text, parsed, key })
    }
}

/// The identity key of a parsed schema (see the module docs).
pub fn identity_key(schema: &Schema) -> Result<String, RegistryError> {
    serde_json::to_string(schema)
        .map_err(|e| RegistryError::InvalidSchema(format!("schema cannot be normalised: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(schema: &str) -> SchemaRequest {
        SchemaRequest {
            schema: Some(schema.to_owned()),
            schema_type: None,
            references: None,
        }
    }

    // Proves whitespace and JSON key order do not change identity, by comparing
    // the keys of two spellings of one record.
    #[test]
    fn key_ignores_whitespace_and_member_order() {
        let a = Candidate::parse(
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}"#.into(),
        );
        let b = Candidate::parse(
            "{ \"fields\": [ {\"type\": \"int\", \"name\": \"a\"} ],\n \"name\": \"R\", \"type\": \"record\" }".into(),
        );
        assert_eq!(a.unwrap().key, b.unwrap().key);
    }

    // Proves a default is part of identity (unlike the Parsing Canonical Form),
    // by comparing a field with and without one.
    #[test]
    fn key_keeps_defaults() {
        let a = Candidate::parse(
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}"#.into(),
        );
        let b = Candidate::parse(
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int","default":0}]}"#
                .into(),
        );
        assert_ne!(a.unwrap().key, b.unwrap().key);
    }

    // Proves non-Avro types, references and oversized schemas are refused with
    // 42201, by feeding each to `into_candidate`.
    #[test]
    fn refuses_unsupported_requests() {
        let mut json = request(r#"{"type":"object"}"#);
        json.schema_type = Some("JSON".into());
        let mut with_refs = request(r#""string""#);
        with_refs.references = Some(vec![serde_json::json!({"name": "x"})]);
        let huge = request(&format!("\"{}\"", " ".repeat(MAX_SCHEMA_BYTES)));
        for req in [json, with_refs, huge, request("{\"type\":\"nope\"}")] {
            let err = req.into_candidate().unwrap_err();
            assert_eq!(err.codes().1, 42201, "{err}");
        }
    }
}
