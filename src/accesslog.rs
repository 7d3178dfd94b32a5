//! The access log: an append-only, hash-chained JSON-lines file under the
//! state dir recording every decryption and pseudonym look-up.
//!
//! Each line is a JSON object whose `prev` is the lowercase hex SHA-256 of
//! the previous line's bytes (without its newline); the first entry's
//! `prev` is 64 zeros, and `seq` counts from 1. A head file beside it
//! (`access-log.head`) holds the entry count and the hash of the last line,
//! so that removing entries from the end is detected too. Appends take an
//! exclusive OS lock.

use std::fs::OpenOptions;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use fs4::fs_std::FileExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// File name of the log under the state dir.
pub const LOG_FILE: &str = "access-log.jsonl";
/// File name of the head under the state dir.
pub const HEAD_FILE: &str = "access-log.head";
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One access.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Entry {
    /// 1-based position in the log.
    pub seq: u64,
    /// RFC 3339 UTC.
    pub time: String,
    /// OS user name.
    pub user: String,
    /// Host name.
    pub host: String,
    /// `decrypt`, `pseudonym`, ...
    pub action: String,
    /// File concerned, if any.
    pub file: Option<String>,
    /// Columns concerned.
    pub columns: Vec<String>,
    /// Number of values revealed or computed.
    pub values: u64,
    /// The stated reason.
    pub reason: String,
    /// Pseudonyms concerned (`forget`, `reveal`); never identities. Left
    /// out of the line when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pseudonyms: Vec<String>,
    /// SHA-256 (hex) of the previous line.
    pub prev: String,
}

#[derive(Serialize, Deserialize)]
struct Head {
    entries: u64,
    last: String,
}

/// Access-log errors.
#[derive(Debug, thiserror::Error)]
pub enum AccessLogError {
    /// I/O.
    #[error("access log {path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The chain is broken.
    #[error("access log {path} line {line}: {message}")]
    Tampered {
        /// Path.
        path: PathBuf,
        /// 1-based line (0 for the head file).
        line: u64,
        /// What does not match.
        message: String,
    },
}

fn sha256_hex(b: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(&Sha256::digest(b))
}

/// What to record; `seq`, `time`, `user`, `host` and `prev` are filled in.
pub struct Access<'a> {
    /// Action name.
    pub action: &'a str,
    /// File, if any.
    pub file: Option<String>,
    /// Columns.
    pub columns: Vec<String>,
    /// Values.
    pub values: u64,
    /// Reason.
    pub reason: &'a str,
}

/// Appends an entry under `state_dir`. Returns it.
///
/// # Errors
/// [`AccessLogError`]; a log whose last line does not parse is refused
/// (run `piigate access-log verify`).
pub fn append(state_dir: &Path, access: Access<'_>) -> Result<Entry, AccessLogError> {
    append_for(state_dir, access, Vec::new())
}

/// As [`append`], naming the pseudonyms of the persons concerned (`forget`
/// and `reveal`: never identities).
///
/// # Errors
/// As [`append`].
pub fn append_for(state_dir: &Path, access: Access<'_>, pseudonyms: Vec<String>) -> Result<Entry, AccessLogError> {
    let path = state_dir.join(LOG_FILE);
    let io = |source| AccessLogError::Io { path: path.clone(), source };
    std::fs::create_dir_all(state_dir).map_err(io)?;
    let mut opts = OpenOptions::new();
    opts.read(true).append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let f = opts.open(&path).map_err(io)?;
    f.lock_exclusive().map_err(io)?;
    let result = (|| {
        let mut last: Option<String> = None;
        let mut count = 0u64;
        for line in std::io::BufReader::new(&f).lines() {
            let line = line.map_err(io)?;
            if !line.is_empty() {
                count += 1;
                last = Some(line);
            }
        }
        let (seq, prev) = match &last {
            None => (1, GENESIS.to_owned()),
            Some(l) => {
                let e: Entry = serde_json::from_str(l).map_err(|e| AccessLogError::Tampered {
                    path: path.clone(),
                    line: count,
                    message: format!("last entry does not parse ({e}); run `piigate access-log verify`"),
                })?;
                (e.seq + 1, sha256_hex(l.as_bytes()))
            }
        };
        let entry = Entry {
            seq,
            time: crate::report::now_rfc3339(),
            user: whoami::username(),
            host: whoami::fallible::hostname().unwrap_or_else(|_| "unknown".into()),
            action: access.action.to_owned(),
            file: access.file,
            columns: access.columns,
            values: access.values,
            reason: access.reason.to_owned(),
            pseudonyms,
            prev,
        };
        let mut line = serde_json::to_vec(&entry).map_err(|e| io(std::io::Error::other(e)))?;
        let hash = sha256_hex(&line);
        line.push(b'\n');
        (&f).write_all(&line).map_err(io)?;
        f.sync_data().map_err(io)?;
        write_head(state_dir, &Head { entries: count + 1, last: hash }).map_err(io)?;
        Ok(entry)
    })();
    let _ = FileExt::unlock(&f);
    result
}

fn write_head(state_dir: &Path, head: &Head) -> std::io::Result<()> {
    let mut tmp = tempfile::Builder::new().prefix(".access-log.head.").suffix(".partial").tempfile_in(state_dir)?;
    serde_json::to_writer(&mut tmp, head).map_err(std::io::Error::other)?;
    tmp.write_all(b"\n")?;
    tmp.as_file().sync_all()?;
    tmp.persist(state_dir.join(HEAD_FILE)).map_err(|e| e.error)?;
    Ok(())
}

/// Verifies the chain and the head. Returns the number of entries.
///
/// # Errors
/// [`AccessLogError::Tampered`] at the first inconsistency.
pub fn verify(state_dir: &Path) -> Result<u64, AccessLogError> {
    let path = state_dir.join(LOG_FILE);
    let head_path = state_dir.join(HEAD_FILE);
    let io = |source| AccessLogError::Io { path: path.clone(), source };
    let tampered = |line: u64, message: String| AccessLogError::Tampered { path: path.clone(), line, message };
    let f = match std::fs::File::open(&path) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(e)),
    };
    let mut prev = GENESIS.to_owned();
    let mut n = 0u64;
    if let Some(f) = f {
        for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
            let line = line.map_err(io)?;
            let lno = i as u64 + 1;
            let e: Entry =
                serde_json::from_str(&line).map_err(|e| tampered(lno, format!("not a valid entry ({e})")))?;
            if e.seq != lno {
                return Err(tampered(
                    lno,
                    format!("sequence number {} where {lno} was expected (entries removed or reordered)", e.seq),
                ));
            }
            if e.prev != prev {
                return Err(tampered(
                    lno,
                    "hash of the previous entry does not match (an earlier entry was altered, removed or reordered)"
                        .into(),
                ));
            }
            prev = sha256_hex(line.as_bytes());
            n = lno;
        }
    }
    match std::fs::read_to_string(&head_path) {
        Ok(text) => {
            let head: Head = serde_json::from_str(&text).map_err(|e| AccessLogError::Tampered {
                path: head_path.clone(),
                line: 0,
                message: format!("head does not parse ({e})"),
            })?;
            if head.entries != n || (n > 0 && head.last != prev) {
                return Err(AccessLogError::Tampered {
                    path: head_path.clone(),
                    line: 0,
                    message: format!("head records {} entries but the log has {n}, or its last entry differs (entries removed from the end or altered)", head.entries),
                });
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && n == 0 => {}
        Err(e) => return Err(AccessLogError::Io { path: head_path.clone(), source: e }),
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(dir: &Path, reason: &str) {
        append(
            dir,
            Access { action: "decrypt", file: Some("f.csv".into()), columns: vec!["email".into()], values: 3, reason },
        )
        .unwrap();
    }

    #[test]
    fn chain_detects_alteration_removal_reordering_and_truncation() {
        let d = tempfile::tempdir().unwrap();
        for r in ["a", "b", "c"] {
            add(d.path(), r);
        }
        assert_eq!(verify(d.path()).unwrap(), 3);
        let log = d.path().join(LOG_FILE);
        let orig = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = orig.lines().collect();

        std::fs::write(&log, orig.replace("\"reason\":\"b\"", "\"reason\":\"x\"")).unwrap();
        assert!(verify(d.path()).is_err(), "altered");
        std::fs::write(&log, format!("{}\n{}\n", lines[0], lines[2])).unwrap();
        assert!(verify(d.path()).is_err(), "removed");
        std::fs::write(&log, format!("{}\n{}\n{}\n", lines[1], lines[0], lines[2])).unwrap();
        assert!(verify(d.path()).is_err(), "reordered");
        std::fs::write(&log, format!("{}\n{}\n", lines[0], lines[1])).unwrap();
        assert!(verify(d.path()).is_err(), "truncated");
        std::fs::write(&log, &orig).unwrap();
        assert_eq!(verify(d.path()).unwrap(), 3);
    }
}
