//! Run reports (JSON under `<state>/runs/`) and the progress seam.
//!
//! A report lists, per input file: rows read, written and rejected (line
//! numbers and reasons, never values), SHA-256 of input and outputs, the
//! data-key records, and timings in seconds.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::keystore::DekRecord;
use crate::transform::Reject;

/// At most this many rejected rows are listed per file; the count is exact.
pub const MAX_LISTED_REJECTS: usize = 1000;

/// One published output.
#[derive(Serialize, Debug, Clone)]
pub struct OutputReport {
    /// Final location.
    pub path: String,
    /// 1-based part number (outputs larger than `[sink] max_file_bytes`
    /// are cut into parts).
    pub part: usize,
    /// Bytes.
    pub bytes: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
    /// Data rows.
    pub rows: u64,
    /// `dek_id`s of the data keys whose tokens are in this output.
    pub data_keys: Vec<String>,
    /// Manifest location, if one was written.
    pub manifest: Option<String>,
}

/// Outcome of one input file.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    /// Output published.
    Ok,
    /// The file was refused (bad header, too many rejects); no output.
    Failed,
    /// Could not be processed now (I/O, server away); the input is fine.
    Error,
    /// Stopped by a signal.
    Interrupted,
}

/// Report of one input file.
#[derive(Serialize, Debug, Clone)]
pub struct FileReport {
    /// Input location.
    pub input: String,
    /// Outcome.
    pub status: FileStatus,
    /// Why it failed (no values).
    pub error: Option<String>,
    /// Input bytes.
    pub input_bytes: u64,
    /// SHA-256 of the input, lowercase hex.
    pub input_sha256: Option<String>,
    /// Data rows read.
    pub rows_read: u64,
    /// Rows written.
    pub rows_written: u64,
    /// Rows rejected.
    pub rows_rejected: u64,
    /// First rejected rows.
    pub rejects: Vec<Reject>,
    /// Values encrypted.
    pub values_encrypted: u64,
    /// Published outputs.
    pub outputs: Vec<OutputReport>,
    /// Data keys made for this file (also in the keystore).
    pub data_keys: Vec<DekRecord>,
    /// Personal data found in `keep` columns (kinds, counts, lines; no values).
    pub findings: Vec<crate::audit::scan::Finding>,
    /// Warnings, e.g. kept columns whose name suggests PII.
    pub warnings: Vec<String>,
    /// Wall time in seconds.
    pub seconds: f64,
}

impl FileReport {
    /// An empty report for `input`.
    pub fn new(input: String) -> Self {
        Self {
            input,
            status: FileStatus::Error,
            error: None,
            input_bytes: 0,
            input_sha256: None,
            rows_read: 0,
            rows_written: 0,
            rows_rejected: 0,
            rejects: Vec::new(),
            values_encrypted: 0,
            outputs: Vec::new(),
            data_keys: Vec::new(),
            findings: Vec::new(),
            warnings: Vec::new(),
            seconds: 0.0,
        }
    }
}

/// A whole run.
#[derive(Serialize, Debug)]
pub struct RunReport {
    /// Unique id: start time + random.
    pub run_id: String,
    /// `process`, `run`, ...
    pub command: String,
    /// RFC 3339 UTC.
    pub started: String,
    /// RFC 3339 UTC.
    pub finished: String,
    /// piigate version.
    pub version: String,
    /// Files.
    pub files: Vec<FileReport>,
}

impl RunReport {
    /// Writes the report atomically as `<state>/runs/<run_id>.json`.
    ///
    /// # Errors
    /// I/O errors.
    pub fn write(&self, state_dir: &Path) -> std::io::Result<PathBuf> {
        let dir = state_dir.join("runs");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{}.json", self.run_id));
        let mut tmp = tempfile::Builder::new().prefix(".run.").suffix(".partial").tempfile_in(&dir)?;
        serde_json::to_writer_pretty(&mut tmp, self).map_err(std::io::Error::other)?;
        std::io::Write::write_all(&mut tmp, b"\n")?;
        tmp.as_file().sync_all()?;
        tmp.persist(&path).map_err(|e| e.error)?;
        Ok(path)
    }
}

/// Receives progress; the CLI implements it with indicatif.
pub trait Reporter: Sync {
    /// A file starts; `total_bytes` when known.
    fn file_started(
        &self,
        name: &str,
        total_bytes: Option<u64>,
    ) -> Box<dyn crate::transform::engine::FileProgress + '_>;
}

/// A reporter that shows nothing.
pub struct Silent;

impl Reporter for Silent {
    fn file_started(&self, _: &str, _: Option<u64>) -> Box<dyn crate::transform::engine::FileProgress + '_> {
        Box::new(())
    }
}

/// Current UTC time, RFC 3339 with seconds.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now).format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// Run id for a report name: `20261129T030000.123456Z-<command>-<16 hex>`.
///
/// The microseconds make the names of `<state>/runs/` sort in start order even when
/// several runs start in the same second (cron jobs and scripts do); the random
/// suffix keeps two runs started in the same microsecond apart.
pub fn run_id(command: &str, started: time::OffsetDateTime) -> String {
    let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second].[subsecond digits:6]Z");
    let stamp = started.format(&fmt).unwrap_or_default();
    format!("{stamp}-{command}-{}", crate::crypto::keys::DekId::generate())
}

/// Compact UTC timestamp for names: `20261129T030000Z`.
pub fn compact_timestamp(t: time::OffsetDateTime) -> String {
    let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    t.format(&fmt).unwrap_or_default()
}
