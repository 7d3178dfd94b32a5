//! The ledger: an append-only JSON-lines record of every input the job has
//! seen and what became of it, so that a rerun, a crash between publishing
//! and archiving, or a failed archive move never produces a second output.
//!
//! An input is identified by (name, size, mtime). States, in order:
//! `publishing` (output name chosen, about to be renamed into place),
//! `published`, then `archived` or `quarantined`. The last line for an
//! input wins.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File name under the state dir.
pub const LEDGER_FILE: &str = "ledger.jsonl";

/// Where an input stands.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Output named and about to be published.
    Publishing,
    /// Output and manifest published; input not yet moved.
    Published,
    /// Input moved to the archive.
    Archived,
    /// Input moved to quarantine.
    Quarantined,
}

/// One ledger line.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Record {
    /// Input base name.
    pub name: String,
    /// Input bytes.
    pub size: u64,
    /// Input mtime, Unix seconds.
    pub mtime: u64,
    /// SHA-256 of the input, when read.
    pub sha256: Option<String>,
    /// State.
    pub state: State,
    /// Output file names.
    pub outputs: Vec<String>,
    /// Output header (to rebuild a manifest after a crash).
    pub columns: Vec<String>,
    /// RFC 3339 UTC.
    pub time: String,
}

impl Record {
    /// The identity of the input.
    pub fn key(&self) -> (String, u64, u64) {
        (self.name.clone(), self.size, self.mtime)
    }
}

/// The loaded ledger.
pub struct Ledger {
    path: PathBuf,
    last: HashMap<(String, u64, u64), Record>,
}

impl Ledger {
    /// Loads `<state>/ledger.jsonl` (empty when missing). A torn last line
    /// from a crash is ignored.
    ///
    /// # Errors
    /// I/O errors.
    pub fn load(state_dir: &Path) -> std::io::Result<Self> {
        let path = state_dir.join(LEDGER_FILE);
        let mut last = HashMap::new();
        match std::fs::File::open(&path) {
            Ok(f) => {
                for line in std::io::BufReader::new(f).lines() {
                    let line = line?;
                    if let Ok(r) = serde_json::from_str::<Record>(&line) {
                        last.insert(r.key(), r);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(Self { path, last })
    }

    /// The latest record for an input.
    pub fn get(&self, name: &str, size: u64, mtime: u64) -> Option<&Record> {
        self.last.get(&(name.to_owned(), size, mtime))
    }

    /// Appends a record durably (fsync) and remembers it.
    ///
    /// # Errors
    /// I/O errors.
    pub fn append(&mut self, r: Record) -> std::io::Result<()> {
        if let Some(d) = self.path.parent() {
            std::fs::create_dir_all(d)?;
        }
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
        let mut line = serde_json::to_vec(&r).map_err(std::io::Error::other)?;
        line.push(b'\n');
        f.write_all(&line)?;
        f.sync_data()?;
        self.last.insert(r.key(), r);
        Ok(())
    }
}
