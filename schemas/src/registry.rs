//! Schema registration and the encode/decode entry points.
//!
//! At start every service registers the schemas of the topics it writes
//! (TopicNameStrategy: subject `<topic>-value`) and sets the subject's
//! compatibility to BACKWARD, so a later incompatible schema is refused by
//! the registry instead of breaking consumers. Encoding frames the Avro body
//! with the ID the registry gave; decoding looks the writer schema up by the
//! ID in the header (cached by `schema_registry_converter`) and reads it with
//! our reader rules ([`crate::avro`]).

use std::sync::Arc;
use std::time::Duration;

use apache_avro::Schema;
use schema_registry_converter::async_impl::avro::AvroDecoder;
use schema_registry_converter::async_impl::schema_registry::{post_schema, SrSettings};
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};

use crate::avro::{self, ContractError, SCHEMAS};
use crate::records::{DeadLetter, Outcome, Request, SnapshotChunk};
use crate::wire::{self, WireError};

/// Why a framed value could not be turned into a record. Classified by whose
/// fault it is: the record's ([`DecodeError::is_bad_record`]: dead-letter it)
/// or the registry's (retry, never dead-letter a good record).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not Confluent-framed.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The registry does not know the schema ID.
    #[error("schema id {id} is unknown to the registry: {detail}")]
    UnknownSchema {
        /// The ID from the header.
        id: u32,
        /// The registry's answer.
        detail: String,
    },
    /// The registry could not be asked (network, 5xx): a transient failure.
    #[error("schema registry unavailable: {0}")]
    RegistryUnavailable(String),
    /// The body does not parse with the writer schema, or is not our record.
    #[error(transparent)]
    Contract(#[from] ContractError),
}

impl DecodeError {
    /// True when the record itself is at fault and retrying cannot help.
    pub fn is_bad_record(&self) -> bool {
        !matches!(self, DecodeError::RegistryUnavailable(_))
    }
}

/// Why start-up registration failed.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The registry refused or could not be reached.
    #[error("registering {subject}: {detail}")]
    Registry {
        /// The subject.
        subject: String,
        /// The registry's answer.
        detail: String,
    },
}

/// Subject of a topic's value schema under TopicNameStrategy.
pub fn value_subject(topic: &str) -> String {
    format!("{topic}-value")
}

/// The registered contract: schema IDs for the topics this process writes,
/// and a cached lookup of writer schemas for the topics it reads.
#[derive(Clone)]
pub struct Contract {
    /// Registry connection settings (URL, timeouts).
    settings: SrSettings,
    /// Writer schemas by ID, cached for the life of the process (IDs are immutable).
    decoder: Arc<AvroDecoder>,
    /// ID of our request schema under the requests topic's subject.
    request_id: u32,
    /// ID of our outcome schema under the outcomes topic's subject.
    outcome_id: u32,
    /// ID of our dead-letter schema under the dead-letter topic's subject.
    dead_letter_id: u32,
    /// ID of our snapshot schema under the snapshots topic's subject.
    snapshot_id: u32,
}

/// Topic names whose subjects the contract registers.
pub struct ContractTopics<'a> {
    /// Requests topic.
    pub requests: &'a str,
    /// Outcomes topic.
    pub outcomes: &'a str,
    /// Dead-letter topic.
    pub dead_letter: &'a str,
    /// Snapshots topic.
    pub snapshots: &'a str,
}

impl Contract {
    /// Connects to the registry at `url` and registers all three value
    /// schemas with BACKWARD compatibility. Registering an identical schema
    /// again returns its existing ID, so every instance may do this at start.
    pub async fn register(url: &str, topics: &ContractTopics<'_>) -> Result<Self, RegisterError> {
        let settings = SrSettings::new_builder(url.to_owned())
            .set_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| RegisterError::Registry {
                subject: "-".into(),
                detail: e.to_string(),
            })?;
        let request_id =
            register_one(url, &settings, topics.requests, avro::REQUEST_SCHEMA).await?;
        let outcome_id =
            register_one(url, &settings, topics.outcomes, avro::OUTCOME_SCHEMA).await?;
        let dead_letter_id =
            register_one(url, &settings, topics.dead_letter, avro::DEAD_LETTER_SCHEMA).await?;
        let snapshot_id =
            register_one(url, &settings, topics.snapshots, avro::SNAPSHOT_SCHEMA).await?;
        tracing::info!(
            request_id,
            outcome_id,
            dead_letter_id,
            snapshot_id,
            "schemas registered"
        );
        Ok(Self {
            decoder: Arc::new(AvroDecoder::new(settings.clone())),
            settings,
            request_id,
            outcome_id,
            dead_letter_id,
            snapshot_id,
        })
    }

    /// The registry settings, for callers that need further registry calls.
    pub fn settings(&self) -> &SrSettings {
        &self.settings
    }

    /// Schema ID of the request schema of this build.
    pub fn request_schema_id(&self) -> u32 {
        self.request_id
    }

    /// Frames a request for the requests topic.
    pub fn encode_request(&self, r: &Request) -> Result<Vec<u8>, ContractError> {
        let body = avro::write_body(&SCHEMAS.request, avro::request_to_value(r))?;
        Ok(wire::frame(self.request_id, &body))
    }

    /// Frames an outcome for the outcomes topic.
    pub fn encode_outcome(&self, o: &Outcome) -> Result<Vec<u8>, ContractError> {
        let body = avro::write_body(&SCHEMAS.outcome, avro::outcome_to_value(o))?;
        Ok(wire::frame(self.outcome_id, &body))
    }

    /// Frames a dead letter for the dead-letter topic.
    pub fn encode_dead_letter(&self, d: &DeadLetter) -> Result<Vec<u8>, ContractError> {
        let body = avro::write_body(&SCHEMAS.dead_letter, avro::dead_letter_to_value(d))?;
        Ok(wire::frame(self.dead_letter_id, &body))
    }

    /// Frames a snapshot chunk for the snapshots topic.
    pub fn encode_snapshot(&self, c: &SnapshotChunk) -> Result<Vec<u8>, ContractError> {
        let body = avro::write_body(&SCHEMAS.snapshot, avro::snapshot_to_value(c))?;
        Ok(wire::frame(self.snapshot_id, &body))
    }

    /// Decodes a framed snapshot chunk.
    pub async fn decode_snapshot(&self, bytes: &[u8]) -> Result<SnapshotChunk, DecodeError> {
        let (id, body) = wire::split(bytes)?;
        let value = if id == self.snapshot_id {
            avro::read_body(&SCHEMAS.snapshot, body)?
        } else {
            avro::read_body(&*self.writer_schema(id).await?, body)?
        };
        Ok(avro::snapshot_from_value(value)?)
    }

    /// The writer schema for `id`, from cache or the registry.
    pub async fn writer_schema(&self, id: u32) -> Result<Arc<Schema>, DecodeError> {
        // Our own IDs need no lookup: the hot path decodes what we wrote.
        if id == self.request_id {
            return Ok(Arc::new(SCHEMAS.request.clone()));
        }
        match self.decoder.get_schema(id).await {
            Ok(s) => Ok(Arc::new(s.parsed.clone())),
            Err(e) if e.retriable => Err(DecodeError::RegistryUnavailable(e.to_string())),
            Err(e) => Err(DecodeError::UnknownSchema {
                id,
                detail: e.to_string(),
            }),
        }
    }

    /// Decodes a framed request value.
    pub async fn decode_request(&self, bytes: &[u8]) -> Result<Request, DecodeError> {
        let (id, body) = wire::split(bytes)?;
        if id == self.request_id {
            let value = avro::read_body(&SCHEMAS.request, body)?;
            return Ok(avro::request_from_value(&SCHEMAS.request, value)?);
        }
        let writer = self.writer_schema(id).await?;
        let value = avro::read_body(&writer, body)?;
        Ok(avro::request_from_value(&writer, value)?)
    }

    /// Decodes a framed outcome value.
    pub async fn decode_outcome(&self, bytes: &[u8]) -> Result<Outcome, DecodeError> {
        let (id, body) = wire::split(bytes)?;
        let value = if id == self.outcome_id {
            avro::read_body(&SCHEMAS.outcome, body)?
        } else {
            avro::read_body(&*self.writer_schema(id).await?, body)?
        };
        Ok(avro::outcome_from_value(value)?)
    }

    /// Decodes a framed dead letter value.
    pub async fn decode_dead_letter(&self, bytes: &[u8]) -> Result<DeadLetter, DecodeError> {
        let (id, body) = wire::split(bytes)?;
        let writer = self.writer_schema(id).await?;
        let value = avro::read_body(&writer, body)?;
        Ok(avro::dead_letter_from_value(value)?)
    }
}

async fn register_one(
    url: &str,
    settings: &SrSettings,
    topic: &str,
    schema: &str,
) -> Result<u32, RegisterError> {
    let subject = value_subject(topic);
    set_compatibility(url, &subject, "BACKWARD").await?;
    let supplied = SuppliedSchema::new(None, SchemaType::Avro, schema.to_owned());
    let registered = post_schema(settings, subject.clone(), supplied)
        .await
        .map_err(|e| RegisterError::Registry {
            subject: subject.clone(),
            detail: e.to_string(),
        })?;
    Ok(registered.id)
}

/// Sets a subject's compatibility level (e.g. `BACKWARD`) through the
/// registry's REST API (`PUT /config/{subject}`).
pub async fn set_compatibility(url: &str, subject: &str, level: &str) -> Result<(), RegisterError> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| RegisterError::Registry {
            subject: subject.to_owned(),
            detail: e.to_string(),
        })?;
    let endpoint = format!("{}/config/{subject}", url.trim_end_matches('/'));
    let response = client
        .put(endpoint)
        .header("content-type", "application/vnd.schemaregistry.v1+json")
        .body(format!("{{\"compatibility\":\"{level}\"}}"))
        .send()
        .await
        .map_err(|e| RegisterError::Registry {
            subject: subject.to_owned(),
            detail: e.to_string(),
        })?;
    if !response.status().is_success() {
        return Err(RegisterError::Registry {
            subject: subject.to_owned(),
            detail: format!("PUT /config answered {}", response.status()),
        });
    }
    Ok(())
}
