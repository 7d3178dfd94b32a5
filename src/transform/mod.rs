//! The transform: header resolution against the schema ([`Plan`]) and the
//! per-record work (normalize, keep / encrypt / pseudonymize / mask / drop).
//! Pure CPU, no I/O; [`engine`] drives it over a stream.

pub mod engine;
pub mod mask;
pub mod normalize;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use csv::ByteRecord;

use crate::crypto::aead::DataKey;
use crate::crypto::keys::{Dek, DekId};
use crate::crypto::prf::Pseudonymizer;
use crate::crypto::siv::DeterministicCipher;
use crate::settings::{Action, CtType, Normalize, Schema, UnknownColumns};

/// A header that does not fit the schema. Names columns, never values.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// The file has no header line.
    #[error("the file is empty: expected a header line")]
    Empty,
    /// A header cell is not UTF-8.
    #[error("header column {0} is not valid UTF-8")]
    InvalidUtf8(usize),
    /// Two header cells have the same name.
    #[error("duplicate column {name:?} in the header (columns {first} and {second}); header names must be unique")]
    Duplicate {
        /// The name.
        name: String,
        /// 1-based column of the first.
        first: usize,
        /// 1-based column of the second.
        second: usize,
    },
    /// Columns the schema does not name, with `unknown_columns = "reject"`.
    #[error("unknown column{} {} not named in [[schema.columns]]; add an entry for each (action = \"drop\" to discard it) or set [schema] unknown_columns = \"drop\"", if .0.len() > 1 { "s" } else { "" }, list(.0))]
    Unknown(Vec<(String, usize)>),
    /// Configured input columns missing from the header.
    #[error("missing column{} {}: the schema reads {} but the header does not have {}", if .0.len() > 1 { "s" } else { "" }, .0.iter().map(|c| format!("{c:?}")).collect::<Vec<_>>().join(", "), if .0.len() > 1 { "them" } else { "it" }, if .0.len() > 1 { "them" } else { "it" })]
    Missing(Vec<String>),
}

fn list(cols: &[(String, usize)]) -> String {
    cols.iter().map(|(n, i)| format!("{n:?} (column {i})")).collect::<Vec<_>>().join(", ")
}

/// Why a row was rejected. Names the column, never the value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RejectReason {
    /// The row has a different number of fields than the header.
    WrongFieldCount {
        /// Fields in the header.
        expected: usize,
        /// Fields in the row.
        found: usize,
    },
    /// A transformed cell is not valid UTF-8.
    InvalidUtf8 {
        /// Input column name.
        column: String,
        /// 1-based input column number.
        index: usize,
    },
    /// A required cell is empty.
    RequiredEmpty {
        /// Input column name.
        column: String,
        /// 1-based input column number.
        index: usize,
    },
    /// A kept cell does not parse as its CleverTap data type.
    BadType {
        /// Input column name.
        column: String,
        /// 1-based input column number.
        index: usize,
        /// The expected type (INTEGER, FLOAT, LONG, BOOLEAN).
        expected: &'static str,
    },
    /// The CleverTap identity is empty or 1024 characters or longer.
    BadIdentity {
        /// Output column name.
        column: String,
    },
    /// A phone cell is not a possible phone number.
    NotAPhone {
        /// Input column name.
        column: String,
        /// 1-based input column number.
        index: usize,
    },
    /// The row's person was forgotten (`piigate forget`) and `[keys]
    /// forgotten = "reject"`.
    Forgotten {
        /// Output name of the identity column.
        column: String,
    },
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::WrongFieldCount { expected, found } => {
                write!(f, "{found} fields where the header has {expected}")
            }
            RejectReason::InvalidUtf8 { column, index } => {
                write!(f, "column {column:?} (column {index}): not valid UTF-8")
            }
            RejectReason::RequiredEmpty { column, index } => {
                write!(f, "column {column:?} (column {index}): required value is empty")
            }
            RejectReason::BadType { column, index, expected } => {
                write!(f, "column {column:?} (column {index}): not a valid {expected} (ct_type)")
            }
            RejectReason::BadIdentity { column } => {
                write!(f, "output column {column:?}: CleverTap needs an identity of 1 to 1023 characters")
            }
            RejectReason::NotAPhone { column, index } => {
                write!(f, "column {column:?} (column {index}): not a possible phone number")
            }
            RejectReason::Forgotten { column } => {
                write!(f, "output column {column:?}: this person was forgotten (`piigate forget`) and [keys] forgotten = \"reject\"")
            }
        }
    }
}

/// A rejected row: its 1-based physical starting line and the reason.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reject {
    /// 1-based line of the input where the record starts (header = line 1).
    pub line: u64,
    /// Why.
    #[serde(flatten)]
    pub reason: RejectReason,
    /// Human-readable reason.
    pub message: String,
}

/// One output (or checked-only) column, resolved against a header.
#[derive(Debug, Clone)]
pub struct PlannedColumn {
    /// Output name.
    pub name: String,
    /// Input name.
    pub input_name: String,
    /// 0-based input index.
    pub input_index: usize,
    /// Action (`Drop` columns are only checked, not written).
    pub action: Action,
    /// Normalization.
    pub normalize: Normalize,
    /// Empty rejects the row.
    pub required: bool,
    /// CleverTap property name.
    pub ct_name: String,
    /// CleverTap type.
    pub ct_type: CtType,
    /// This output is the CleverTap identity (`ct_name` "identity").
    pub identity: bool,
}

/// The schema resolved against one file's header.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Fields in the input header.
    pub input_width: usize,
    /// Columns in output order, `Drop` ones included (they are skipped when writing).
    pub columns: Vec<PlannedColumn>,
    /// Unknown input columns left out (`unknown_columns = "drop"`).
    pub dropped_unknown: Vec<String>,
}

impl Plan {
    /// Resolves `schema` against `header`.
    ///
    /// # Errors
    /// [`HeaderError`] for duplicates, unknown columns (policy `reject`) and
    /// missing columns.
    pub fn new(schema: &Schema, header: &ByteRecord) -> Result<Self, HeaderError> {
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut names = Vec::with_capacity(header.len());
        for (i, raw) in header.iter().enumerate() {
            let name = std::str::from_utf8(raw).map_err(|_| HeaderError::InvalidUtf8(i + 1))?.trim();
            if let Some(&first) = index.get(name) {
                return Err(HeaderError::Duplicate { name: name.to_owned(), first: first + 1, second: i + 1 });
            }
            index.insert(name, i);
            names.push(name);
        }
        let mut missing = Vec::new();
        let mut columns = Vec::new();
        let mut named = vec![false; names.len()];
        for c in &schema.columns {
            match index.get(c.from.as_str()) {
                None => {
                    if !missing.contains(&c.from) {
                        missing.push(c.from.clone())
                    }
                }
                Some(&i) => {
                    named[i] = true;
                    columns.push(PlannedColumn {
                        name: c.name.clone(),
                        input_name: c.from.clone(),
                        input_index: i,
                        action: c.action,
                        normalize: c.normalize,
                        required: c.required,
                        ct_name: c.ct_name.clone(),
                        ct_type: c.ct_type,
                        identity: c.action != Action::Drop && c.ct_name == "identity",
                    });
                }
            }
        }
        let unknown: Vec<(String, usize)> =
            names.iter().enumerate().filter(|(i, _)| !named[*i]).map(|(i, n)| (n.to_string(), i + 1)).collect();
        let mut dropped_unknown = Vec::new();
        if !unknown.is_empty() {
            match schema.unknown_columns {
                UnknownColumns::Reject => return Err(HeaderError::Unknown(unknown)),
                UnknownColumns::Drop => dropped_unknown = unknown.into_iter().map(|(n, _)| n).collect(),
                UnknownColumns::Keep => {
                    for (n, i) in unknown {
                        columns.push(PlannedColumn {
                            name: n.clone(),
                            input_name: n.clone(),
                            input_index: i - 1,
                            action: Action::Keep,
                            normalize: Normalize::None,
                            required: false,
                            ct_name: n,
                            ct_type: CtType::String,
                            identity: false,
                        });
                    }
                }
            }
        }
        if !missing.is_empty() {
            return Err(HeaderError::Missing(missing));
        }
        Ok(Self { input_width: names.len(), columns, dropped_unknown })
    }

    /// Output header names, in order.
    pub fn output_names(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().filter(|c| c.action != Action::Drop).map(|c| c.name.as_str())
    }

    /// Names of the `encrypt-deterministic` output columns.
    pub fn deterministic_columns(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().filter(|c| c.action == Action::EncryptDeterministic).map(|c| c.name.as_str())
    }

    /// Number of `encrypt` output columns.
    pub fn encrypt_columns(&self) -> usize {
        self.columns.iter().filter(|c| c.action == Action::Encrypt).count()
    }
}

/// A person's DEK and its id, as [`PersonKeySource::person_keys`] gives
/// them. The DEK is in an allocation of its own, zeroized when its last
/// holder drops it.
pub type PersonDek = (DekId, Arc<Dek>);

/// The (pseudonym, normalized identity) at `[start, end of the pseudonym,
/// end of the identity]` in `text`, as `Transformer::person_of` put them.
fn person_at(text: &str, [a, b, c]: [usize; 3]) -> (&str, &str) {
    (&text[a..b], &text[b..c])
}

/// Per-person data keys (`[keys] dek_scope = "identity"`): the key vault
/// in production.
pub trait PersonKeySource: Send + Sync {
    /// The data keys of one chunk's persons, given as (pseudonym,
    /// normalized identity) pairs, in the same order: each person's DEK and
    /// its id, which the transform expands for the person's rows; `None`
    /// for a person who was forgotten and whose rows are rejected. Keys
    /// made here must be committed before this returns
    /// ([`PersonKeySource::sync`] makes them durable).
    ///
    /// # Errors
    /// Whatever the store fails with, as text (the file then fails).
    fn person_keys(&self, persons: &[(&str, &str)]) -> Result<Vec<Option<PersonDek>>, String>;

    /// A mark to take before a file's first [`PersonKeySource::person_keys`]
    /// call and give to [`PersonKeySource::sync`] for that file.
    fn mark(&self) -> u64 {
        0
    }

    /// Makes every key handed out so far durable (called before an output
    /// is published), and checks that none the file could have used since
    /// `since` (its [`PersonKeySource::mark`]) was lost.
    ///
    /// # Errors
    /// Whatever the store fails with, as text (nothing is published).
    fn sync(&self, since: u64) -> Result<(), String>;

    /// Housekeeping once a batch of files is done, never while one is in
    /// flight: the key vault merges its staged keys when that is due
    /// ([`crate::vault::Vault::merge_due`]). Logs what it did; a failure is
    /// logged and loses nothing.
    fn compact(&self) {}
}

/// The per-record transform for one file; shared by worker threads.
pub struct Transformer {
    /// Per-person keys and the index (in `plan.columns`) of the identity column.
    persons: Option<(Arc<dyn PersonKeySource>, usize)>,
    plan: Plan,
    /// `keep` columns scanned for unflagged PII: (input index, input name).
    scan: Vec<(usize, String)>,
    /// Line numbers listed per finding.
    scan_lines: usize,
    /// Input columns read by more than one phone/email-normalized output.
    shared_inputs: Vec<usize>,
    pseudonymizer: Pseudonymizer,
    deterministic: Option<DeterministicCipher>,
    prefix: String,
    region: Option<phonenumber::country::Id>,
}

/// CleverTap takes an identity of 1 to 1023 characters.
fn identity_ok(v: &[u8]) -> bool {
    let chars = std::str::from_utf8(v).map_or(v.len(), |t| t.chars().count());
    (1..1024).contains(&chars)
}

/// Field `i` of `rec` as text, or `None` when it is not valid UTF-8.
///
/// `whole` is the record's bytes validated once per record
/// (`str::from_utf8(rec.as_slice())`); a field of a valid record is valid
/// exactly when it starts and ends on character boundaries, which `str::get`
/// checks. An invalid record falls back to checking the field alone.
fn field_str<'r>(rec: &'r ByteRecord, whole: Option<&'r str>, i: usize) -> Option<&'r str> {
    let field = rec.get(i)?;
    match whole {
        Some(text) => {
            let start = field.as_ptr() as usize - rec.as_slice().as_ptr() as usize;
            text.get(start..start + field.len())
        }
        None => std::str::from_utf8(field).ok(),
    }
}

/// Checks a kept value against its CleverTap type (CleverTap's import
/// rejects a value that does not parse). Empty values are allowed.
fn check_type(c: &PlannedColumn, v: &[u8]) -> Result<(), RejectReason> {
    if c.ct_type == CtType::String {
        return Ok(());
    }
    let ok = |expected| Err(RejectReason::BadType { column: c.input_name.clone(), index: c.input_index + 1, expected });
    let t = std::str::from_utf8(v).map(str::trim).unwrap_or("\u{fffd}");
    if t.is_empty() {
        return Ok(());
    }
    match c.ct_type {
        CtType::String => Ok(()),
        CtType::Integer if t.parse::<i32>().is_err() => ok("INTEGER"),
        CtType::Long if t.parse::<i64>().is_err() => ok("LONG"),
        CtType::Float if !t.parse::<f64>().is_ok_and(f64::is_finite) => ok("FLOAT"),
        CtType::Boolean if !(t.eq_ignore_ascii_case("true") || t.eq_ignore_ascii_case("false")) => ok("BOOLEAN"),
        _ => Ok(()),
    }
}

/// Per-thread scratch space reused across records.
struct Buffers {
    cell: Vec<u8>,
    scratch: Vec<u8>,
    /// Normalized values of this row, by (input column, normalization).
    memo: Vec<(usize, Normalize, String)>,
}

/// The result of transforming one chunk of records.
#[derive(Default)]
pub struct ChunkOutput {
    /// Output CSV bytes (RFC 4180, comma-separated) for the accepted rows.
    pub bytes: Vec<u8>,
    /// Rows in.
    pub rows: u64,
    /// Rows written.
    pub written: u64,
    /// Rejected rows.
    pub rejects: Vec<Reject>,
    /// Values encrypted.
    pub encrypted: u64,
    /// One scanner per audited `keep` column.
    pub scanners: Vec<crate::audit::scan::ColumnScanner>,
    /// The per-person key store failed: the file must fail.
    pub error: Option<String>,
}

impl Transformer {
    /// Builds the transform for `plan`.
    pub fn new(plan: Plan, pseudonymizer: Pseudonymizer, schema: &Schema) -> Self {
        let costly: Vec<usize> = plan
            .columns
            .iter()
            .filter(|c| matches!(c.normalize, Normalize::Phone | Normalize::Email))
            .map(|c| c.input_index)
            .collect();
        let shared_inputs = costly.iter().copied().filter(|i| costly.iter().filter(|j| *j == i).count() > 1).collect();
        Self {
            persons: None,
            plan,
            scan: Vec::new(),
            scan_lines: 5,
            shared_inputs,
            pseudonymizer,
            deterministic: None,
            prefix: schema.pseudonym_prefix.clone(),
            region: schema.default_region,
        }
    }

    /// Encrypts each row under its person's key from `source`, the person
    /// being named by the pseudonym of the schema's identity column (the
    /// `pseudonymize` column with `ct_name = "identity"`). Without such a
    /// column in the plan, nothing changes.
    pub fn with_person_keys(mut self, source: Option<Arc<dyn PersonKeySource>>) -> Self {
        let idx = self.plan.columns.iter().position(|c| c.identity && c.action == Action::Pseudonymize);
        self.persons = source.zip(idx);
        self
    }

    /// Whether rows are encrypted under per-person keys.
    pub fn per_person(&self) -> bool {
        self.persons.is_some()
    }

    /// The pseudonym and normalized identity of a record, when its identity
    /// cell is valid and not empty: appended to `text`, one after the
    /// other, and returned as the byte offsets `[start, end of the
    /// pseudonym, end of the identity]` in it. `scratch` is reused between
    /// calls. A chunk's persons share one `text`: no allocation per row.
    fn person_of(
        &self,
        rec: &ByteRecord,
        whole: Option<&str>,
        col: usize,
        text: &mut String,
        scratch: &mut Vec<u8>,
    ) -> Option<[usize; 3]> {
        let c = &self.plan.columns[col];
        if rec.len() != self.plan.input_width {
            return None;
        }
        let cell = field_str(rec, whole, c.input_index)?;
        let value = normalize::normalize(c.normalize, cell, self.region).ok()?;
        if value.is_empty() {
            return None;
        }
        scratch.clear();
        self.pseudonymizer.pseudonym_into(value.as_bytes(), scratch);
        let pseudonym = std::str::from_utf8(scratch).ok()?;
        let start = text.len();
        text.push_str(&self.prefix);
        text.push_str(pseudonym);
        let mid = text.len();
        text.push_str(&value);
        Some([start, mid, text.len()])
    }

    /// Uses `cipher` for `encrypt-deterministic` columns.
    pub fn with_deterministic(mut self, cipher: Option<DeterministicCipher>) -> Self {
        self.deterministic = cipher;
        self
    }

    /// Scans every `keep` column for personal data nobody flagged, keeping
    /// `max_lines` line numbers per finding.
    pub fn with_audit(mut self, max_lines: usize) -> Self {
        let mut seen = Vec::new();
        for c in &self.plan.columns {
            if c.action == Action::Keep && !seen.contains(&c.input_index) {
                seen.push(c.input_index);
                self.scan.push((c.input_index, c.input_name.clone()));
            }
        }
        self.scan_lines = max_lines;
        self
    }

    /// The scanned columns' input names, in scan order.
    pub fn scanned_columns(&self) -> impl Iterator<Item = &str> {
        self.scan.iter().map(|(_, n)| n.as_str())
    }

    /// The plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Transforms `records` with data key `key`, writing the output CSV
    /// into `bytes` (cleared first; pass `Vec::new()` or a spent chunk's
    /// buffer: a chunk of 1,000 bench rows is about 0.6 MB of output, and a
    /// fresh buffer for each costs reallocations and zero-filled pages).
    pub fn transform_chunk(&self, records: &[ByteRecord], key: &DataKey, mut bytes: Vec<u8>) -> ChunkOutput {
        bytes.clear();
        bytes.reserve(records.len() * 256);
        let mut out = ChunkOutput { bytes, ..Default::default() };
        let mut row = ByteRecord::with_capacity(1024, self.plan.columns.len());
        out.scanners = self
            .scan
            .iter()
            .map(|(_, name)| crate::audit::scan::ColumnScanner::new(name, self.region, self.scan_lines))
            .collect();
        let mut bufs = Buffers { cell: Vec::with_capacity(256), scratch: Vec::with_capacity(256), memo: Vec::new() };
        // Per-person keys: every person of the chunk in one look-up.
        let mut person_keys: Vec<Option<PersonDek>> = Vec::new();
        // Each row's (pseudonym, normalized identity), computed once here
        // and reused for the identity cell by `transform_record`: their
        // offsets in `person_text` (see `person_of`), and each row's index
        // into them.
        let mut person_text = String::new();
        let mut spans: Vec<[usize; 3]> = Vec::new();
        let mut which = Vec::new();
        // Each record as text when it is valid UTF-8, checked once.
        let wholes: Vec<Option<&str>> = records.iter().map(|r| std::str::from_utf8(r.as_slice()).ok()).collect();
        if let Some((source, col)) = &self.persons {
            // The prefix and 52-character pseudonym, and a typical identity.
            person_text.reserve(records.len() * 96);
            spans.reserve(records.len());
            which.reserve(records.len());
            for (rec, &whole) in records.iter().zip(&wholes) {
                match self.person_of(rec, whole, *col, &mut person_text, &mut bufs.scratch) {
                    Some(span) => {
                        which.push(Some(spans.len()));
                        spans.push(span);
                    }
                    None => which.push(None),
                }
            }
            let persons: Vec<(&str, &str)> = spans.iter().map(|&span| person_at(&person_text, span)).collect();
            match source.person_keys(&persons) {
                Ok(keys) => person_keys = keys,
                Err(e) => {
                    out.error = Some(e);
                    return out;
                }
            }
        }
        {
            let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(&mut out.bytes);
            // The current person's expanded data key.
            let mut expanded: Option<DataKey> = None;
            for (n, rec) in records.iter().enumerate() {
                out.rows += 1;
                row.clear();
                let whole = wholes[n];
                // A row without a person (its identity is empty or invalid)
                // is rejected by the identity check below.
                let index = which.get(n).copied().flatten();
                let person = index.map(|i| person_at(&person_text, spans[i]));
                let result = match index.map(|i| &person_keys[i]) {
                    Some(None) => Err(RejectReason::Forgotten {
                        column: self
                            .persons
                            .as_ref()
                            .map_or_else(String::new, |(_, c)| self.plan.columns[*c].name.clone()),
                    }),
                    Some(Some((id, dek))) => {
                        // Expanded here, once per run of consecutive rows of
                        // one person (a person whose rows alternate with
                        // another's is expanded again for each run), and
                        // zeroized when replaced or at the chunk's end.
                        if expanded.as_ref().is_none_or(|k| k.id() != id) {
                            expanded = Some(DataKey::new(*id, dek));
                        }
                        let k = expanded.as_ref().expect("expanded above");
                        self.transform_record(rec, whole, person, k, &mut row, &mut bufs, &mut out.encrypted)
                    }
                    None => self.transform_record(rec, whole, person, key, &mut row, &mut bufs, &mut out.encrypted),
                };
                match result {
                    Ok(()) => {
                        // Writing to a Vec cannot fail.
                        let _ = w.write_byte_record(&row);
                        out.written += 1;
                        let line = rec.position().map_or(0, |p| p.line());
                        for ((idx, _), scanner) in self.scan.iter().zip(out.scanners.iter_mut()) {
                            if let Some(text) = field_str(rec, whole, *idx) {
                                scanner.observe(line, text);
                            }
                        }
                    }
                    Err(reason) => {
                        let line = rec.position().map_or(0, |p| p.line());
                        out.rejects.push(Reject { line, message: reason.to_string(), reason });
                    }
                }
            }
            let _ = w.flush();
        }
        out
    }

    /// Transforms one record. `person` is the record's (pseudonym,
    /// normalized identity) when [`Transformer::person_of`] already
    /// computed them: the identity column then reuses them instead of
    /// normalizing and pseudonymizing the cell a second time.
    #[allow(clippy::too_many_arguments)]
    fn transform_record(
        &self,
        rec: &ByteRecord,
        whole: Option<&str>,
        person: Option<(&str, &str)>,
        key: &DataKey,
        row: &mut ByteRecord,
        bufs: &mut Buffers,
        encrypted: &mut u64,
    ) -> Result<(), RejectReason> {
        let Buffers { cell, scratch, memo } = bufs;
        memo.clear();
        if rec.len() != self.plan.input_width {
            return Err(RejectReason::WrongFieldCount { expected: self.plan.input_width, found: rec.len() });
        }
        let person_col = self.persons.as_ref().map(|(_, c)| *c);
        for (ci, c) in self.plan.columns.iter().enumerate() {
            let raw = &rec[c.input_index];
            if c.action == Action::Drop && !c.required {
                continue;
            }
            if c.action == Action::Keep && c.normalize == Normalize::None {
                if c.required && raw.iter().all(u8::is_ascii_whitespace) {
                    return Err(RejectReason::RequiredEmpty { column: c.input_name.clone(), index: c.input_index + 1 });
                }
                check_type(c, raw)?;
                if c.identity && !identity_ok(raw) {
                    return Err(RejectReason::BadIdentity { column: c.name.clone() });
                }
                row.push_field(raw);
                continue;
            }
            let text = field_str(rec, whole, c.input_index)
                .ok_or_else(|| RejectReason::InvalidUtf8 { column: c.input_name.clone(), index: c.input_index + 1 })?;
            // A phone or email read by two outputs (phone and phone_hint) is
            // normalized once per row.
            let memo_hit = (c.normalize == Normalize::Phone || c.normalize == Normalize::Email)
                .then(|| memo.iter().find(|(i, n, _)| *i == c.input_index && *n == c.normalize))
                .flatten()
                .map(|(_, _, v)| std::borrow::Cow::Owned(v.clone()));
            // The identity column of a per-person file: `person_of` has
            // normalized and pseudonymized this very cell already.
            let known = person.filter(|_| person_col == Some(ci));
            let value = match (known, memo_hit) {
                (Some((_, v)), hit) => {
                    if hit.is_none() && self.shared_inputs.contains(&c.input_index) {
                        memo.push((c.input_index, c.normalize, v.to_owned()));
                    }
                    std::borrow::Cow::Borrowed(v)
                }
                (None, Some(v)) => v,
                (None, None) => {
                    let v = normalize::normalize(c.normalize, text, self.region).map_err(|_| {
                        RejectReason::NotAPhone { column: c.input_name.clone(), index: c.input_index + 1 }
                    })?;
                    if self.shared_inputs.contains(&c.input_index) {
                        memo.push((c.input_index, c.normalize, v.clone().into_owned()));
                    }
                    v
                }
            };
            if c.required && value.trim().is_empty() {
                return Err(RejectReason::RequiredEmpty { column: c.input_name.clone(), index: c.input_index + 1 });
            }
            cell.clear();
            match c.action {
                Action::Drop => continue,
                Action::Keep => cell.extend_from_slice(value.as_bytes()),
                Action::Encrypt => {
                    if !value.is_empty() {
                        key.encrypt_token_into(c.name.as_bytes(), value.as_bytes(), scratch, cell);
                        *encrypted += 1;
                    }
                }
                Action::EncryptDeterministic => {
                    if !value.is_empty() {
                        // The engine refuses a plan with such a column when
                        // there is no cipher, so this is always Some.
                        if let Some(d) = &self.deterministic {
                            d.encrypt_token_into(c.name.as_bytes(), value.as_bytes(), cell);
                        }
                    }
                }
                Action::Pseudonymize => {
                    if let Some((pseudonym, _)) = known {
                        cell.extend_from_slice(pseudonym.as_bytes());
                    } else if !value.is_empty() {
                        cell.extend_from_slice(self.prefix.as_bytes());
                        self.pseudonymizer.pseudonym_into(value.as_bytes(), cell);
                    }
                }
                Action::Mask => cell.extend_from_slice(mask::mask(&value, c.normalize).as_bytes()),
            }
            if c.action == Action::Keep {
                check_type(c, cell)?;
            }
            if c.identity && !identity_ok(cell) {
                return Err(RejectReason::BadIdentity { column: c.name.clone() });
            }
            row.push_field(cell);
        }
        Ok(())
    }
}
