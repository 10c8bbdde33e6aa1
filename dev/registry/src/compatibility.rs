//! Compatibility levels and the reader/writer check behind them.
//!
//! The levels mean what they mean in Confluent: BACKWARD asks whether the new
//! schema can read data written with the latest one, FORWARD whether the latest
//! can read data written with the new one, FULL both, the `_TRANSITIVE`
//! variants ask the same of every live version, NONE asks nothing.
//!
//! The reader/writer question follows the Avro specification's schema
//! resolution rules. apache-avro 0.22 has a checker
//! ([`SchemaCompatibility::can_read`]) but using it alone is wrong for us in
//! three ways, so structured types are walked here and only leaf pairs
//! (primitives, logical types, enums, fixed) are handed to it:
//!
//! * It answers `Ok(Partial)` whenever *some* union branch resolves. For a
//!   top-level union of records — our request topic — changing a field's type
//!   in one record still yields `Ok(Partial)` because the other record matches,
//!   so "is it Ok?" would wave a breaking change through. Confluent (Java Avro)
//!   demands that every writer branch be readable; so do we.
//! * A reference to an already-defined named type (`"type": "Money"`) is a
//!   `Schema::Ref`, and apache-avro compares a `Ref` with a definition as a
//!   type mismatch. Moving a named type's definition to another field or union
//!   branch therefore reads as incompatible although nothing changed. We
//!   resolve references against each schema's own names first.
//! * It reports no path and no reason for partial results, which makes a 409
//!   useless to the developer who hit it. We collect one message per problem,
//!   with the field path.

use std::collections::{HashMap, HashSet};

use apache_avro::error::CompatibilityError;
use apache_avro::schema::{
    Alias, Name, RecordSchema, ResolvedSchema, Schema, SchemaKind, UnionSchema,
};
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use serde::{Deserialize, Serialize};

/// A subject's (or the global) compatibility rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Level {
    /// New schema reads data of the latest version (Confluent's default).
    #[default]
    Backward,
    /// New schema reads data of every live version.
    BackwardTransitive,
    /// Latest version reads data of the new schema.
    Forward,
    /// Every live version reads data of the new schema.
    ForwardTransitive,
    /// Backward and forward against the latest version.
    Full,
    /// Backward and forward against every live version.
    FullTransitive,
    /// No check.
    None,
}

impl Level {
    /// Parses a level name, case-insensitively as clients differ in case.
    pub fn parse(text: &str) -> Option<Self> {
        let level = match text.to_ascii_uppercase().as_str() {
            "BACKWARD" => Self::Backward,
            "BACKWARD_TRANSITIVE" => Self::BackwardTransitive,
            "FORWARD" => Self::Forward,
            "FORWARD_TRANSITIVE" => Self::ForwardTransitive,
            "FULL" => Self::Full,
            "FULL_TRANSITIVE" => Self::FullTransitive,
            "NONE" => Self::None,
            _ => return None,
        };
        Some(level)
    }

    /// The wire name of the level.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Backward => "BACKWARD",
            Self::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Self::Forward => "FORWARD",
            Self::ForwardTransitive => "FORWARD_TRANSITIVE",
            Self::Full => "FULL",
            Self::FullTransitive => "FULL_TRANSITIVE",
            Self::None => "NONE",
        }
    }

    /// Whether every live version is checked rather than only the latest.
    pub fn is_transitive(self) -> bool {
        matches!(
            self,
            Self::BackwardTransitive | Self::ForwardTransitive | Self::FullTransitive
        )
    }

    /// Whether the new schema must read old data.
    fn backward(self) -> bool {
        matches!(
            self,
            Self::Backward | Self::BackwardTransitive | Self::Full | Self::FullTransitive
        )
    }

    /// Whether old schemas must read new data.
    fn forward(self) -> bool {
        matches!(
            self,
            Self::Forward | Self::ForwardTransitive | Self::Full | Self::FullTransitive
        )
    }
}

/// Checks `new` against `existing` (live versions, oldest first, each with its
/// version number) under `level`. Returns the problems; empty means compatible.
pub fn check_level(level: Level, new: &Schema, existing: &[(u32, Schema)]) -> Vec<String> {
    let against = if level.is_transitive() {
        existing
    } else {
        existing
            .len()
            .checked_sub(1)
            .map_or(&[][..], |last| &existing[last..])
    };
    let mut problems = Vec::new();
    for (version, old) in against.iter().rev() {
        if level.backward() {
            for p in can_read(old, new) {
                problems.push(format!(
                    "new schema cannot read data written with version {version}: {p}"
                ));
            }
        }
        if level.forward() {
            for p in can_read(new, old) {
                problems.push(format!(
                    "version {version} cannot read data written with the new schema: {p}"
                ));
            }
        }
    }
    problems
}

/// Whether data written with `writer` can always be read with `reader`.
/// Returns the problems found; empty means yes.
pub fn can_read(writer: &Schema, reader: &Schema) -> Vec<String> {
    let (writer_names, reader_names) = match (
        ResolvedSchema::try_from(writer),
        ResolvedSchema::try_from(reader),
    ) {
        (Ok(w), Ok(r)) => (w.get_names().clone(), r.get_names().clone()),
        (Err(e), _) | (_, Err(e)) => return vec![format!("named types do not resolve: {e}")],
    };
    let mut checker = Checker {
        writer_names,
        reader_names,
        visited: HashSet::new(),
        problems: Vec::new(),
    };
    checker.check(writer, reader, "");
    checker.problems
}

/// Which of the two schemas a reference belongs to.
#[derive(Clone, Copy)]
enum Side {
    /// The schema the data was written with.
    Writer,
    /// The schema the data is read with.
    Reader,
}

/// One walk over a writer/reader pair.
struct Checker<'a> {
    /// Named types defined in the writer schema, to resolve its references.
    writer_names: HashMap<Name, &'a Schema>,
    /// Named types defined in the reader schema, to resolve its references.
    reader_names: HashMap<Name, &'a Schema>,
    /// Record pairs already entered; stops the walk on recursive types.
    visited: HashSet<(String, String)>,
    /// What is wrong so far, with paths, for the 409 message.
    problems: Vec<String>,
}

impl<'a> Checker<'a> {
    /// Checks one writer/reader pair at `path`; false when it does not resolve.
    fn check(&mut self, writer: &'a Schema, reader: &'a Schema, path: &str) -> bool {
        let (Some(w), Some(r)) = (
            self.deref(writer, Side::Writer, path),
            self.deref(reader, Side::Reader, path),
        ) else {
            return false;
        };
        match (w, r) {
            (Schema::Union(wu), _) => self.writer_union(wu, r, path),
            (_, Schema::Union(ru)) => self.reader_union(w, ru, path),
            (Schema::Record(wr), Schema::Record(rr)) => self.record(wr, rr, path),
            (Schema::Array(wa), Schema::Array(ra)) => {
                self.check(&wa.items, &ra.items, &format!("{path}[]"))
            }
            (Schema::Map(wm), Schema::Map(rm)) => {
                self.check(&wm.types, &rm.types, &format!("{path}{{}}"))
            }
            _ => self.leaf(w, r, path),
        }
    }

    /// Follows a `Schema::Ref` to its definition within the same schema.
    fn deref(&mut self, schema: &'a Schema, side: Side, path: &str) -> Option<&'a Schema> {
        let Schema::Ref { name } = schema else {
            return Some(schema);
        };
        let names = match side {
            Side::Writer => &self.writer_names,
            Side::Reader => &self.reader_names,
        };
        let found = names.get(name).copied();
        if found.is_none() {
            self.problem(
                path,
                format!("reference to undefined type {}", name.fullname(None)),
            );
        }
        found
    }

    /// A writer union resolves when every one of its branches does: the data
    /// may have been written with any of them.
    fn writer_union(&mut self, wu: &'a UnionSchema, reader: &'a Schema, path: &str) -> bool {
        let mut ok = true;
        for branch in wu.variants() {
            ok &= self.check(branch, reader, path);
        }
        ok
    }

    /// A non-union writer against a reader union: the spec resolves it against
    /// the first reader branch that matches. Named types match by name (full
    /// name first, then unqualified name or reader alias, as Java Avro does);
    /// other types by trying branches of the same kind first, then the rest
    /// (promotions such as int to long).
    fn reader_union(&mut self, writer: &'a Schema, ru: &'a UnionSchema, path: &str) -> bool {
        let branches: Vec<&'a Schema> = ru
            .variants()
            .iter()
            .filter_map(|b| self.deref_quiet(b, Side::Reader))
            .collect();
        if let Some(w_name) = writer.name() {
            let exact = branches.iter().find(|b| b.name() == Some(w_name));
            let loose = || {
                branches.iter().find(|b| {
                    b.name()
                        .is_some_and(|r| names_match(w_name, r, b.aliases()))
                })
            };
            return match exact.or_else(loose) {
                Some(branch) => self.check(writer, branch, path),
                None => self.problem(
                    path,
                    format!(
                        "the reader union has no branch named {}",
                        w_name.fullname(None)
                    ),
                ),
            };
        }
        let kind = SchemaKind::from(writer);
        let same_kind = branches.iter().filter(|b| SchemaKind::from(**b) == kind);
        let others = branches.iter().filter(|b| SchemaKind::from(**b) != kind);
        for branch in same_kind.chain(others) {
            if self.trial(writer, branch, path) {
                return true;
            }
        }
        self.problem(
            path,
            format!(
                "no branch of the reader union can read writer type {}",
                describe(writer)
            ),
        )
    }

    /// Like [`Self::deref`] but silent: used while choosing a union branch.
    fn deref_quiet(&self, schema: &'a Schema, side: Side) -> Option<&'a Schema> {
        match schema {
            Schema::Ref { name } => match side {
                Side::Writer => self.writer_names.get(name).copied(),
                Side::Reader => self.reader_names.get(name).copied(),
            },
            other => Some(other),
        }
    }

    /// Checks a candidate branch without keeping its problems or visits if it
    /// fails, so a rejected candidate leaves no trace.
    fn trial(&mut self, writer: &'a Schema, reader: &'a Schema, path: &str) -> bool {
        let problems_before = self.problems.len();
        let visited_before = self.visited.clone();
        if self.check(writer, reader, path) {
            return true;
        }
        self.problems.truncate(problems_before);
        self.visited = visited_before;
        false
    }

    /// Records resolve field by field: each reader field takes the writer field
    /// of the same name (or one of the reader field's aliases), or its default.
    /// Writer fields the reader lacks are skipped, which is always fine.
    fn record(&mut self, wr: &'a RecordSchema, rr: &'a RecordSchema, path: &str) -> bool {
        if !names_match(&wr.name, &rr.name, rr.aliases.as_ref()) {
            return self.problem(
                path,
                format!(
                    "record {} cannot be read as record {}",
                    wr.name.fullname(None),
                    rr.name.fullname(None)
                ),
            );
        }
        let pair = (wr.name.fullname(None), rr.name.fullname(None));
        if !self.visited.insert(pair) {
            // Already being checked higher up (recursive type): assume it holds;
            // any real problem is reported where the walk first entered it.
            return true;
        }
        let base = if path.is_empty() {
            rr.name.fullname(None)
        } else {
            path.to_owned()
        };
        let mut ok = true;
        for rf in &rr.fields {
            let field_path = format!("{base}.{}", rf.name);
            let wf = std::iter::once(&rf.name)
                .chain(rf.aliases.iter())
                .find_map(|n| wr.fields.iter().find(|wf| &wf.name == n));
            match wf {
                Some(wf) => ok &= self.check(&wf.schema, &rf.schema, &field_path),
                None if rf.default.is_some() => {}
                None => ok = self.problem(
                    &field_path,
                    "the reader has this field without a default and the writer does not write it"
                        .into(),
                ),
            }
        }
        ok
    }

    /// Leaf pairs (and kind mismatches) go to apache-avro; only a full match counts.
    fn leaf(&mut self, writer: &'a Schema, reader: &'a Schema, path: &str) -> bool {
        match SchemaCompatibility::can_read(writer, reader) {
            Ok(Compatibility::Full) => true,
            Ok(Compatibility::Partial) => self.problem(path, partial_reason(writer, reader)),
            Err(CompatibilityError::WrongType { .. }) => self.problem(
                path,
                format!(
                    "writer type {} cannot be read as {}",
                    describe(writer),
                    describe(reader)
                ),
            ),
            Err(e) => self.problem(path, e.to_string()),
        }
    }

    /// Notes a problem at `path`; returns false so callers can `return` it.
    fn problem(&mut self, path: &str, what: String) -> bool {
        let at = if path.is_empty() { "(root)" } else { path };
        self.problems.push(format!("{at}: {what}"));
        false
    }
}

/// Whether a writer name resolves to a reader name: same unqualified name (as
/// Java Avro's checker, which Confluent uses, decides), or listed among the
/// reader's aliases.
fn names_match(writer: &Name, reader: &Name, reader_aliases: Option<&Vec<Alias>>) -> bool {
    writer.name() == reader.name()
        || reader_aliases.is_some_and(|aliases| {
            aliases
                .iter()
                .any(|a| a.fullname(None) == writer.fullname(None) || a.name() == writer.name())
        })
}

/// Why apache-avro called a leaf pair only partially compatible.
fn partial_reason(writer: &Schema, reader: &Schema) -> String {
    if let (Schema::Enum(we), Schema::Enum(re)) = (writer, reader) {
        let missing: Vec<&str> = we
            .symbols
            .iter()
            .filter(|s| !re.symbols.contains(s))
            .map(String::as_str)
            .collect();
        return format!(
            "reader enum {} lacks writer symbols [{}] and has no default symbol",
            re.name.fullname(None),
            missing.join(", ")
        );
    }
    format!(
        "only some values of writer type {} can be read as {}",
        describe(writer),
        describe(reader)
    )
}

/// A short human name for a schema in messages.
fn describe(schema: &Schema) -> String {
    let kind = format!("{:?}", SchemaKind::from(schema)).to_ascii_lowercase();
    match schema.name() {
        Some(name) => format!("{kind} {}", name.fullname(None)),
        None => kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Schema {
        Schema::parse_str(text).unwrap()
    }

    const CONFIGURE_SALE: &str = r#"{"type":"record","name":"ConfigureSale","namespace":"flashsale.v1","fields":[{"name":"sale_id","type":"string"},{"name":"stock","type":"long"}]}"#;

    /// PurchaseRequest with `user_type` as the type of `user_id` and `extra`
    /// appended to its fields.
    fn purchase(user_type: &str, extra: &str) -> String {
        format!(
            r#"{{"type":"record","name":"PurchaseRequest","namespace":"flashsale.v1","fields":[{{"name":"request_id","type":"string"}},{{"name":"user_id","type":"{user_type}"}},{{"name":"quantity","type":"int"}}{extra}]}}"#
        )
    }

    /// The request topic's value schema: a top-level union of two records.
    fn request_union(user_type: &str, extra: &str) -> Schema {
        parse(&format!(
            "[{},{CONFIGURE_SALE}]",
            purchase(user_type, extra)
        ))
    }

    const OPTIONAL_CHANNEL: &str = r#",{"name":"channel","type":["null","string"],"default":null}"#;

    // Proves the evolution that matters passes: PurchaseRequest gaining an
    // optional field inside the top-level union is backward (and forward)
    // compatible, checked in both directions.
    #[test]
    fn union_record_gains_optional_field() {
        let v1 = request_union("string", "");
        let v2 = request_union("string", OPTIONAL_CHANNEL);
        assert_eq!(can_read(&v1, &v2), Vec::<String>::new());
        assert_eq!(can_read(&v2, &v1), Vec::<String>::new());
    }

    // Proves a type change inside one union branch is caught although the
    // other branch still matches (apache-avro alone answers Ok(Partial) here),
    // by asserting both our verdict and apache-avro's raw answer.
    #[test]
    fn union_record_field_type_change_is_incompatible() {
        let v1 = request_union("string", "");
        let v3 = request_union("int", "");
        assert_eq!(
            SchemaCompatibility::can_read(&v1, &v3),
            Ok(Compatibility::Partial),
            "the apache-avro gap this module works around"
        );
        let problems = can_read(&v1, &v3);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("flashsale.v1.PurchaseRequest.user_id:"),
            "{problems:?}"
        );
    }

    // Proves a new required field (no default) is refused with the field named.
    #[test]
    fn union_record_required_field_is_incompatible() {
        let v1 = request_union("string", "");
        let v3 = request_union("string", r#",{"name":"channel","type":"string"}"#);
        let problems = can_read(&v1, &v3);
        assert!(
            problems
                .iter()
                .any(|p| p.contains("PurchaseRequest.channel")),
            "{problems:?}"
        );
    }

    // Proves union branches are matched by name, not position: reordering the
    // branches is compatible, dropping one is not (its data could not be read).
    #[test]
    fn union_branches_match_by_name() {
        let v1 = request_union("string", "");
        let reordered = parse(&format!("[{CONFIGURE_SALE},{}]", purchase("string", "")));
        assert_eq!(can_read(&v1, &reordered), Vec::<String>::new());
        let only_config = parse(&format!("[{CONFIGURE_SALE}]"));
        let problems = can_read(&v1, &only_config);
        assert!(
            problems
                .iter()
                .any(|p| p.contains("no branch named flashsale.v1.PurchaseRequest")),
            "{problems:?}"
        );
        // Adding a branch is fine for readers: old data never uses it.
        assert_eq!(can_read(&only_config, &v1), Vec::<String>::new());
    }

    // Proves references resolve to definitions: moving where a shared named
    // type is defined changes nothing (apache-avro alone reports a mismatch).
    #[test]
    fn moved_named_type_definition_is_compatible() {
        let money = r#"{"type":"fixed","name":"Money","size":8}"#;
        let a = parse(&format!(
            r#"{{"type":"record","name":"R","fields":[{{"name":"x","type":{money}}},{{"name":"y","type":"Money"}}]}}"#
        ));
        let b = parse(&format!(
            r#"{{"type":"record","name":"R","fields":[{{"name":"y","type":{money}}},{{"name":"x","type":"Money"}}]}}"#
        ));
        assert!(
            SchemaCompatibility::can_read(&a, &b).is_err(),
            "the apache-avro gap"
        );
        assert_eq!(can_read(&a, &b), Vec::<String>::new());
    }

    // Proves recursive types terminate and still compare field by field.
    #[test]
    fn recursive_record_terminates() {
        let list = |extra: &str| {
            parse(&format!(
                r#"{{"type":"record","name":"Node","fields":[{{"name":"v","type":"int"}},{{"name":"next","type":["null","Node"]}}{extra}]}}"#
            ))
        };
        assert_eq!(
            can_read(
                &list(""),
                &list(r#",{"name":"w","type":"int","default":0}"#)
            ),
            Vec::<String>::new()
        );
        assert!(!can_read(&list(""), &list(r#",{"name":"w","type":"int"}"#)).is_empty());
    }

    // Proves primitive promotion and enum rules come through from apache-avro,
    // and that a partial enum match counts as incompatible.
    #[test]
    fn leaves_follow_the_spec() {
        assert!(can_read(&Schema::Int, &Schema::Long).is_empty());
        assert!(!can_read(&Schema::Long, &Schema::Int).is_empty());
        let e = |symbols: &str, default: &str| {
            parse(&format!(
                r#"{{"type":"enum","name":"E","symbols":[{symbols}]{default}}}"#
            ))
        };
        assert!(can_read(&e(r#""A""#, ""), &e(r#""A","B""#, "")).is_empty());
        let problems = can_read(&e(r#""A","B""#, ""), &e(r#""A""#, ""));
        assert!(
            problems[0].contains("lacks writer symbols [B]"),
            "{problems:?}"
        );
        assert!(can_read(&e(r#""A","B""#, ""), &e(r#""A""#, r#","default":"A""#)).is_empty());
        // An optional field's type widening inside a nullable union resolves.
        let opt = |t: &str| parse(&format!(r#"["null","{t}"]"#));
        assert!(can_read(&opt("int"), &opt("long")).is_empty());
        assert!(!can_read(&opt("string"), &opt("int")).is_empty());
    }

    // Proves each level checks the right direction and range of versions, using
    // a history where v1 -> v2 dropped a field and v3 re-adds it with a default.
    #[test]
    fn levels_pick_direction_and_range() {
        let r = |fields: &str| {
            parse(&format!(
                r#"{{"type":"record","name":"R","fields":[{fields}]}}"#
            ))
        };
        let v1 = r(r#"{"name":"a","type":"int"},{"name":"b","type":"int"}"#);
        let v2 = r(r#"{"name":"a","type":"int"}"#);
        // New: requires b without default; v2 data lacks b, v1 data has it.
        let new = r(r#"{"name":"a","type":"int"},{"name":"b","type":"int"}"#);
        let history = vec![(1, v1), (2, v2)];
        assert!(!check_level(Level::Backward, &new, &history).is_empty());
        assert!(check_level(Level::Forward, &new, &history).is_empty());
        assert!(check_level(Level::None, &new, &history).is_empty());
        assert!(!check_level(Level::Full, &new, &history).is_empty());
        let only_v1 = &history[..1];
        assert!(check_level(Level::BackwardTransitive, &new, only_v1).is_empty());
        assert!(!check_level(Level::BackwardTransitive, &new, &history).is_empty());
        assert!(check_level(Level::Backward, &new, &[]).is_empty());
    }

    // Proves level names parse case-insensitively and round-trip.
    #[test]
    fn level_names_round_trip() {
        for name in [
            "BACKWARD",
            "backward_transitive",
            "Forward",
            "FORWARD_TRANSITIVE",
            "full",
            "FULL_TRANSITIVE",
            "none",
        ] {
            let level = Level::parse(name).unwrap();
            assert_eq!(level.as_str(), name.to_ascii_uppercase());
        }
        assert_eq!(Level::parse("SIDEWAYS"), None);
    }
}
