//! The registry's state and its one JSON file.
//!
//! Model, as in Confluent: schemas have global ids; a subject is a list of
//! versions, each pointing at a schema id; the same schema (same identity key,
//! see [`crate::avro`]) registered under several subjects keeps one id.
//! Deleting is soft (versions are flagged, ids stay resolvable) unless the
//! client asks for `permanent=true` after a soft delete, which removes the
//! versions but still keeps the schema text under its id, because old Kafka
//! records carry that id forever.
//!
//! Every change rewrites the whole file atomically (temp file, fsync, rename,
//! fsync of the directory), so a crash leaves either the old or the new state.
//! If the write fails the in-memory state is reloaded from the file, so memory
//! never claims what the disk does not hold.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use apache_avro::Schema;
use serde::{Deserialize, Serialize};

use crate::avro::{identity_key, Candidate};
use crate::compatibility::{check_level, Level};
use crate::error::RegistryError;

/// Name of the state file inside the data dir.
pub const STATE_FILE: &str = "registry.json";
/// Most distinct schemas (ids) the stand-in keeps.
pub const MAX_SCHEMAS: usize = 10_000;
/// Most subject versions the stand-in keeps, so the file stays bounded even
/// when one schema is registered under very many subjects.
pub const MAX_VERSIONS: usize = 100_000;
/// Version of the file layout, checked at load.
const FORMAT: u32 = 1;

/// Everything that is persisted.
#[derive(Debug, Serialize, Deserialize)]
struct State {
    /// File layout version, so a future layout change is detected, not misread.
    format: u32,
    /// The level used by subjects without their own.
    global_compatibility: Level,
    /// Schema text by global id.
    schemas: BTreeMap<u32, StoredSchema>,
    /// Subjects by name.
    subjects: BTreeMap<String, SubjectState>,
}

/// One registered schema.
#[derive(Debug, Serialize, Deserialize)]
struct StoredSchema {
    /// The text as first registered; returned verbatim to clients.
    schema: String,
}

/// One subject's versions and configuration.
#[derive(Debug, Default, Serialize, Deserialize)]
struct SubjectState {
    /// Subject-level compatibility; `None` means the global level applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    compatibility: Option<Level>,
    /// Versions in ascending order, soft-deleted ones included.
    #[serde(default)]
    versions: Vec<VersionEntry>,
}

/// One version of a subject.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct VersionEntry {
    /// Version number, 1-based, never reused within a subject's history.
    version: u32,
    /// Global schema id the version points at.
    id: u32,
    /// Soft-deleted: hidden unless a client asks for deleted versions.
    #[serde(default)]
    deleted: bool,
}

/// A subject version as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Registered {
    /// The subject.
    pub subject: String,
    /// The version within the subject.
    pub version: u32,
    /// The global schema id (what goes into the wire-format prefix).
    pub id: u32,
    /// The schema text.
    pub schema: String,
}

/// Which version a request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSel {
    /// `latest` or `-1`: the highest live version.
    Latest,
    /// A specific version number.
    Number(u32),
}

impl VersionSel {
    /// Parses a path segment; anything but `latest`, `-1` or 1..=2^31-1 is 42202.
    pub fn parse(text: &str) -> Result<Self, RegistryError> {
        if text.eq_ignore_ascii_case("latest") || text == "-1" {
            return Ok(Self::Latest);
        }
        match text.parse::<i32>() {
            Ok(n) if n >= 1 => Ok(Self::Number(n.unsigned_abs())),
            _ => Err(RegistryError::InvalidVersion(text.to_owned())),
        }
    }

    /// The selector as the client wrote it, for messages.
    fn label(self) -> String {
        match self {
            Self::Latest => "latest".into(),
            Self::Number(n) => n.to_string(),
        }
    }
}

/// The registry state in memory plus where it lives on disk.
#[derive(Debug)]
pub struct Store {
    /// Directory holding the state file (and its temp file while writing).
    data_dir: PathBuf,
    /// The persisted part.
    state: State,
    /// Schema id by identity key, to reuse ids across subjects.
    ids_by_key: HashMap<String, u32>,
    /// Identity key by schema id, to find a schema among a subject's versions.
    keys_by_id: HashMap<u32, String>,
}

impl Store {
    /// Opens the store in `data_dir`, creating the directory if needed and
    /// loading the state file if there is one.
    pub fn open(data_dir: &Path) -> anyhow::Result<Self> {
        fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
        let path = data_dir.join(STATE_FILE);
        let state = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("state file {} is not valid", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State {
                format: FORMAT,
                global_compatibility: Level::default(),
                schemas: BTreeMap::new(),
                subjects: BTreeMap::new(),
            },
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        Self::from_state(data_dir.to_owned(), state)
            .with_context(|| format!("state file {} is inconsistent", path.display()))
    }

    /// Validates a loaded state and builds the indexes.
    fn from_state(data_dir: PathBuf, state: State) -> anyhow::Result<Self> {
        if state.format != FORMAT {
            bail!("file format {} is not the supported {FORMAT}", state.format);
        }
        let mut ids_by_key = HashMap::new();
        let mut keys_by_id = HashMap::new();
        for (id, stored) in &state.schemas {
            let parsed = Schema::parse_str(&stored.schema)
                .with_context(|| format!("schema {id} no longer parses"))?;
            let key = identity_key(&parsed).map_err(|e| anyhow::anyhow!("schema {id}: {e}"))?;
            ids_by_key.entry(key.clone()).or_insert(*id);
            keys_by_id.insert(*id, key);
        }
        for (subject, entry) in &state.subjects {
            let mut previous = 0;
            for v in &entry.versions {
                if v.version <= previous {
                    bail!("subject '{subject}' has versions out of order");
                }
                if !state.schemas.contains_key(&v.id) {
                    bail!(
                        "subject '{subject}' version {} points at unknown id {}",
                        v.version,
                        v.id
                    );
                }
                previous = v.version;
            }
        }
        Ok(Self {
            data_dir,
            state,
            ids_by_key,
            keys_by_id,
        })
    }

    /// Writes the state file; on failure reloads the last good state.
    pub async fn save(&mut self) -> Result<(), RegistryError> {
        let bytes = serde_json::to_vec_pretty(&self.state)
            .map_err(|e| RegistryError::Store(format!("cannot serialise state: {e}")))?;
        let dir = self.data_dir.clone();
        let written = tokio::task::spawn_blocking(move || write_atomic(&dir, &bytes))
            .await
            .map_err(|e| anyhow::anyhow!("writer task failed: {e}"))
            .and_then(|r| r);
        let Err(write_error) = written else {
            return Ok(());
        };
        let dir = self.data_dir.clone();
        match tokio::task::spawn_blocking(move || Store::open(&dir)).await {
            Ok(Ok(reloaded)) => *self = reloaded,
            Ok(Err(e)) => tracing::error!(error = %e, "cannot reload state after failed write"),
            Err(e) => tracing::error!(error = %e, "reload task failed"),
        }
        Err(RegistryError::Store(format!("{write_error:#}")))
    }

    /// Registers `cand` under `subject`. Returns the version and whether
    /// anything changed (an already-registered schema changes nothing).
    pub fn register(
        &mut self,
        subject: &str,
        cand: &Candidate,
    ) -> Result<(Registered, bool), RegistryError> {
        if let Some(found) = self.find_under(subject, &cand.key, false) {
            return Ok((found, false));
        }
        let problems = self.problems_for_new(subject, &cand.parsed)?;
        if !problems.is_empty() {
            return Err(RegistryError::Incompatible {
                subject: subject.to_owned(),
                problems,
            });
        }
        let versions: usize = self.state.subjects.values().map(|s| s.versions.len()).sum();
        if versions >= MAX_VERSIONS {
            return Err(RegistryError::LimitExceeded(format!(
                "this development stand-in keeps at most {MAX_VERSIONS} subject versions; delete subjects or its data dir"
            )));
        }
        let id = self.id_for(cand)?;
        let entry = self.state.subjects.entry(subject.to_owned()).or_default();
        let version = entry.versions.last().map_or(1, |v| v.version + 1);
        entry.versions.push(VersionEntry {
            version,
            id,
            deleted: false,
        });
        Ok((self.registered(subject, version, id), true))
    }

    /// The id for a new version: the existing one for an equal schema, else a new one.
    fn id_for(&mut self, cand: &Candidate) -> Result<u32, RegistryError> {
        if let Some(id) = self.ids_by_key.get(&cand.key) {
            return Ok(*id);
        }
        if self.state.schemas.len() >= MAX_SCHEMAS {
            return Err(RegistryError::LimitExceeded(format!(
                "this development stand-in keeps at most {MAX_SCHEMAS} schemas; delete its data dir to start over"
            )));
        }
        let id = self
            .state
            .schemas
            .keys()
            .next_back()
            .map_or(1, |max| max + 1);
        self.state.schemas.insert(
            id,
            StoredSchema {
                schema: cand.text.clone(),
            },
        );
        self.ids_by_key.insert(cand.key.clone(), id);
        self.keys_by_id.insert(id, cand.key.clone());
        Ok(id)
    }

    /// Finds the version of `subject` holding the schema with `key`.
    pub fn lookup(
        &self,
        subject: &str,
        cand: &Candidate,
        include_deleted: bool,
    ) -> Result<Registered, RegistryError> {
        self.versions_of(subject, include_deleted)?;
        self.find_under(subject, &cand.key, include_deleted)
            .ok_or_else(|| RegistryError::SchemaNotFound("Schema not found".into()))
    }

    /// The newest matching version of `subject` whose schema has identity `key`.
    fn find_under(&self, subject: &str, key: &str, include_deleted: bool) -> Option<Registered> {
        let entry = self.state.subjects.get(subject)?;
        entry
            .versions
            .iter()
            .rev()
            .filter(|v| include_deleted || !v.deleted)
            .find(|v| self.keys_by_id.get(&v.id).map(String::as_str) == Some(key))
            .map(|v| self.registered(subject, v.version, v.id))
    }

    /// Builds the client view of a version.
    fn registered(&self, subject: &str, version: u32, id: u32) -> Registered {
        Registered {
            subject: subject.to_owned(),
            version,
            id,
            schema: self
                .state
                .schemas
                .get(&id)
                .map(|s| s.schema.clone())
                .unwrap_or_default(),
        }
    }

    /// The versions of `subject` (live, or all), 40401 if there are none.
    fn versions_of(
        &self,
        subject: &str,
        include_deleted: bool,
    ) -> Result<Vec<&VersionEntry>, RegistryError> {
        let found: Vec<&VersionEntry> = self
            .state
            .subjects
            .get(subject)
            .map(|s| {
                s.versions
                    .iter()
                    .filter(|v| include_deleted || !v.deleted)
                    .collect()
            })
            .unwrap_or_default();
        if found.is_empty() {
            return Err(RegistryError::SubjectNotFound(subject.to_owned()));
        }
        Ok(found)
    }

    /// Resolves a version selector within `subject`.
    fn resolve(
        &self,
        subject: &str,
        sel: VersionSel,
        include_deleted: bool,
    ) -> Result<&VersionEntry, RegistryError> {
        let versions = self.versions_of(subject, include_deleted)?;
        let found = match sel {
            VersionSel::Latest => versions.last().copied(),
            VersionSel::Number(n) => versions.into_iter().find(|v| v.version == n),
        };
        found.ok_or_else(|| RegistryError::VersionNotFound {
            subject: subject.to_owned(),
            version: sel.label(),
        })
    }

    /// One version of a subject.
    pub fn version(
        &self,
        subject: &str,
        sel: VersionSel,
        include_deleted: bool,
    ) -> Result<Registered, RegistryError> {
        let v = self.resolve(subject, sel, include_deleted)?;
        Ok(self.registered(subject, v.version, v.id))
    }

    /// Version numbers of a subject.
    pub fn version_numbers(
        &self,
        subject: &str,
        include_deleted: bool,
    ) -> Result<Vec<u32>, RegistryError> {
        Ok(self
            .versions_of(subject, include_deleted)?
            .iter()
            .map(|v| v.version)
            .collect())
    }

    /// Subject names with at least one (live, or any) version, sorted.
    pub fn subjects(&self, include_deleted: bool) -> Vec<String> {
        self.state
            .subjects
            .iter()
            .filter(|(_, s)| s.versions.iter().any(|v| include_deleted || !v.deleted))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The schema text for a global id.
    pub fn schema_by_id(&self, id: u32) -> Result<&str, RegistryError> {
        self.state
            .schemas
            .get(&id)
            .map(|s| s.schema.as_str())
            .ok_or_else(|| RegistryError::SchemaNotFound(format!("Schema {id} not found")))
    }

    /// The (subject, version) pairs that use a schema id.
    pub fn usages(
        &self,
        id: u32,
        include_deleted: bool,
    ) -> Result<Vec<(String, u32)>, RegistryError> {
        self.schema_by_id(id)?;
        let mut found = Vec::new();
        for (subject, entry) in &self.state.subjects {
            for v in &entry.versions {
                if v.id == id && (include_deleted || !v.deleted) {
                    found.push((subject.clone(), v.version));
                }
            }
        }
        Ok(found)
    }

    /// Parses a stored schema for a compatibility check.
    fn parsed(&self, id: u32) -> Result<Schema, RegistryError> {
        let text = self.schema_by_id(id)?;
        Schema::parse_str(text)
            .map_err(|e| RegistryError::Store(format!("stored schema {id} does not parse: {e}")))
    }

    /// Problems of registering `new` under `subject` given its level and live versions.
    fn problems_for_new(&self, subject: &str, new: &Schema) -> Result<Vec<String>, RegistryError> {
        let level = self.effective_level(subject);
        if level == Level::None {
            return Ok(Vec::new());
        }
        let Ok(live) = self.versions_of(subject, false) else {
            return Ok(Vec::new());
        };
        let relevant = if level.is_transitive() {
            &live[..]
        } else {
            &live[live.len() - 1..]
        };
        let existing = relevant
            .iter()
            .map(|v| Ok((v.version, self.parsed(v.id)?)))
            .collect::<Result<Vec<_>, RegistryError>>()?;
        Ok(check_level(level, new, &existing))
    }

    /// Problems of `new` against one version (compatibility endpoint). A
    /// subject without versions accepts anything when asked about `latest`.
    pub fn problems_against(
        &self,
        subject: &str,
        sel: VersionSel,
        new: &Schema,
    ) -> Result<Vec<String>, RegistryError> {
        let entry = match self.resolve(subject, sel, false) {
            Ok(entry) => entry,
            Err(RegistryError::SubjectNotFound(_)) if sel == VersionSel::Latest => {
                return Ok(Vec::new())
            }
            Err(e) => return Err(e),
        };
        let existing = [(entry.version, self.parsed(entry.id)?)];
        Ok(check_level(self.effective_level(subject), new, &existing))
    }

    /// Problems of `new` against the subject as registration would check it.
    pub fn problems_against_all(
        &self,
        subject: &str,
        new: &Schema,
    ) -> Result<Vec<String>, RegistryError> {
        self.problems_for_new(subject, new)
    }
}

/// Deletion and configuration.
impl Store {
    /// Deletes a subject: soft by default, permanent only after a soft delete.
    /// Returns the version numbers deleted.
    pub fn delete_subject(
        &mut self,
        subject: &str,
        permanent: bool,
    ) -> Result<Vec<u32>, RegistryError> {
        let not_found = || RegistryError::SubjectNotFound(subject.to_owned());
        let entry = self.state.subjects.get_mut(subject).ok_or_else(not_found)?;
        if entry.versions.is_empty() {
            return Err(not_found());
        }
        let live: Vec<u32> = entry
            .versions
            .iter()
            .filter(|v| !v.deleted)
            .map(|v| v.version)
            .collect();
        if permanent {
            if !live.is_empty() {
                return Err(RegistryError::SubjectNotSoftDeleted(subject.to_owned()));
            }
            let all = entry.versions.iter().map(|v| v.version).collect();
            self.state.subjects.remove(subject);
            return Ok(all);
        }
        if live.is_empty() {
            return Err(RegistryError::SubjectSoftDeleted(subject.to_owned()));
        }
        for v in &mut entry.versions {
            v.deleted = true;
        }
        Ok(live)
    }

    /// Deletes one version: soft by default, permanent only after a soft delete.
    pub fn delete_version(
        &mut self,
        subject: &str,
        sel: VersionSel,
        permanent: bool,
    ) -> Result<u32, RegistryError> {
        // A numbered version is found even when soft-deleted, so a repeated
        // soft delete gets 40406 rather than a confusing "not found".
        let include_deleted = permanent || matches!(sel, VersionSel::Number(_));
        let target = self.resolve(subject, sel, include_deleted)?.clone();
        let entry = self
            .state
            .subjects
            .get_mut(subject)
            .ok_or_else(|| RegistryError::SubjectNotFound(subject.to_owned()))?;
        let (subject, version) = (subject.to_owned(), target.version);
        match (permanent, target.deleted) {
            (false, true) => Err(RegistryError::VersionSoftDeleted { subject, version }),
            (true, false) => Err(RegistryError::VersionNotSoftDeleted { subject, version }),
            (true, true) => {
                entry.versions.retain(|v| v.version != version);
                if entry.versions.is_empty() && entry.compatibility.is_none() {
                    self.state.subjects.remove(&subject);
                }
                Ok(version)
            }
            (false, false) => {
                for v in entry.versions.iter_mut().filter(|v| v.version == version) {
                    v.deleted = true;
                }
                Ok(version)
            }
        }
    }

    /// The global level.
    pub fn global_level(&self) -> Level {
        self.state.global_compatibility
    }

    /// Sets the global level; returns whether it changed.
    pub fn set_global_level(&mut self, level: Level) -> bool {
        std::mem::replace(&mut self.state.global_compatibility, level) != level
    }

    /// The subject's own level, if it has one.
    pub fn subject_level(&self, subject: &str) -> Option<Level> {
        self.state
            .subjects
            .get(subject)
            .and_then(|s| s.compatibility)
    }

    /// The level that applies to a subject.
    pub fn effective_level(&self, subject: &str) -> Level {
        self.subject_level(subject)
            .unwrap_or(self.state.global_compatibility)
    }

    /// Sets a subject's level (the subject need not have versions); returns
    /// whether it changed.
    pub fn set_subject_level(&mut self, subject: &str, level: Level) -> bool {
        let entry = self.state.subjects.entry(subject.to_owned()).or_default();
        entry.compatibility.replace(level) != Some(level)
    }

    /// Removes a subject's own level; returns it, 40408 if there was none.
    pub fn delete_subject_level(&mut self, subject: &str) -> Result<Level, RegistryError> {
        let missing = || RegistryError::SubjectConfigNotFound(subject.to_owned());
        let entry = self.state.subjects.get_mut(subject).ok_or_else(missing)?;
        let old = entry.compatibility.take().ok_or_else(missing)?;
        if entry.versions.is_empty() {
            self.state.subjects.remove(subject);
        }
        Ok(old)
    }
}

/// Replaces `dir/STATE_FILE` with `bytes` so that a crash at any point leaves
/// either the old or the new file, never a torn one.
fn write_atomic(dir: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let target = dir.join(STATE_FILE);
    // The pid keeps two stand-ins wrongly pointed at one dir from sharing a temp file.
    let temp = dir.join(format!("{STATE_FILE}.tmp.{}", std::process::id()));
    let mut file =
        fs::File::create(&temp).with_context(|| format!("cannot create {}", temp.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", temp.display()))?;
    drop(file);
    fs::rename(&temp, &target)
        .with_context(|| format!("cannot rename {} to {}", temp.display(), target.display()))?;
    // The rename is durable only once the directory entry itself is flushed.
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot fsync {}", dir.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(text: &str) -> Candidate {
        Candidate::parse(text.to_owned()).unwrap()
    }

    fn record(fields: &str) -> Candidate {
        cand(&format!(
            r#"{{"type":"record","name":"R","fields":[{fields}]}}"#
        ))
    }

    // Proves state survives a restart with ids and versions unchanged, by
    // registering, saving, reopening the same dir and looking everything up.
    #[tokio::test]
    async fn save_and_reopen_keeps_ids() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let (a, _) = store
            .register("a-value", &record(r#"{"name":"x","type":"int"}"#))
            .unwrap();
        let (b, _) = store.register("b-value", &cand(r#""string""#)).unwrap();
        store.set_subject_level("a-value", Level::Full);
        store.save().await.unwrap();
        let reopened = Store::open(dir.path()).unwrap();
        assert_eq!(
            reopened
                .version("a-value", VersionSel::Latest, false)
                .unwrap(),
            a
        );
        assert_eq!(
            reopened
                .version("b-value", VersionSel::Number(1), false)
                .unwrap(),
            b
        );
        assert_eq!(reopened.subject_level("a-value"), Some(Level::Full));
        assert_eq!(reopened.schema_by_id(b.id).unwrap(), r#""string""#);
    }

    // Proves a failed write leaves memory matching the disk: the data dir is
    // replaced by a file so the write fails, and the new version disappears.
    #[tokio::test]
    async fn failed_save_rolls_back_memory() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut store = Store::open(&data).unwrap();
        store.register("s", &cand(r#""int""#)).unwrap();
        store.save().await.unwrap();
        // Make the temp file uncreatable: its path becomes a directory.
        fs::create_dir(data.join(format!("{STATE_FILE}.tmp.{}", std::process::id()))).unwrap();
        store.register("s", &cand(r#""long""#)).unwrap();
        let err = store.save().await.unwrap_err();
        assert_eq!(err.codes().1, 50001);
        assert_eq!(store.version_numbers("s", false).unwrap(), vec![1]);
    }

    // Proves an inconsistent state file is refused at start rather than
    // silently reset, by pointing a version at a missing id.
    #[test]
    fn inconsistent_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let bad = r#"{"format":1,"global_compatibility":"BACKWARD","schemas":{},"subjects":{"s":{"versions":[{"version":1,"id":7}]}}}"#;
        fs::write(dir.path().join(STATE_FILE), bad).unwrap();
        let err = Store::open(dir.path()).unwrap_err();
        assert!(format!("{err:#}").contains("unknown id 7"), "{err:#}");
    }

    // Proves the schema-count bound, by filling the store to MAX_SCHEMAS with
    // tiny enums (without saving) and registering one more.
    #[test]
    fn schema_count_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        store.set_global_level(Level::None);
        for i in 0..MAX_SCHEMAS {
            let text = format!(r#"{{"type":"enum","name":"E","symbols":["S{i}"]}}"#);
            store.register("s", &cand(&text)).unwrap();
        }
        let err = store.register("s", &cand(r#""string""#)).unwrap_err();
        assert_eq!(err.codes().1, 42205, "{err}");
        // An already-known schema under a new subject needs no new id: allowed.
        store
            .register("t", &cand(r#"{"type":"enum","name":"E","symbols":["S0"]}"#))
            .unwrap();
    }

    // Proves the soft/permanent delete rules and that ids outlive deletes.
    #[test]
    fn delete_rules() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let (r, _) = store.register("s", &cand(r#""int""#)).unwrap();
        assert_eq!(
            store.delete_subject("s", true).unwrap_err().codes().1,
            40405
        );
        assert_eq!(store.delete_subject("s", false).unwrap(), vec![1]);
        assert_eq!(
            store.delete_subject("s", false).unwrap_err().codes().1,
            40404
        );
        assert_eq!(
            store.version_numbers("s", false).unwrap_err().codes().1,
            40401
        );
        assert_eq!(store.version_numbers("s", true).unwrap(), vec![1]);
        // Re-registering after a soft delete continues the numbering, same id.
        let (again, _) = store.register("s", &cand(r#""int""#)).unwrap();
        assert_eq!((again.version, again.id), (2, r.id));
        assert_eq!(
            store
                .delete_version("s", VersionSel::Number(2), true)
                .unwrap_err()
                .codes()
                .1,
            40407
        );
        store
            .delete_version("s", VersionSel::Latest, false)
            .unwrap();
        assert_eq!(store.delete_subject("s", true).unwrap(), vec![1, 2]);
        assert!(store.subjects(true).is_empty());
        assert_eq!(store.schema_by_id(r.id).unwrap(), r#""int""#);
    }
}
