//! Where outputs go. A [`Sink`] hands out [`PendingOutput`]s that are
//! written under a temporary name and appear under their final name only
//! on [`PendingOutput::commit`]; dropping one uncommitted removes it.
//! [`PendingOutput::finish`] ends the writing before the commit, so a file
//! cut into many parts holds no descriptor, connection or thread per
//! finished part while the rest are written.

pub mod local;
pub mod pgp;
pub mod sftp;

use std::io::Write;

/// Sink failures.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// I/O on the sink.
    #[error("{op} {target}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Folder or file.
        target: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The final name is already taken (outputs are never overwritten).
    #[error("{0} already exists; piigate never overwrites an output")]
    Exists(String),
}

/// An output being written.
pub trait PendingOutput: Write + Send {
    /// Ends the writing: flushes, makes the bytes durable, and lets go of
    /// what only writing needs (a local file's descriptor and write buffer,
    /// an SFTP connection, an OpenPGP encrypting thread). The output stays
    /// unpublished until [`commit`](Self::commit) and is still removed when
    /// dropped. Writes after it fail; calling it again does nothing.
    ///
    /// # Errors
    /// [`SinkError`] when a write, the sync or (SFTP) the size check fails.
    fn finish(&mut self) -> Result<(), SinkError>;

    /// [`finish`](Self::finish)es if that was not done, then renames into
    /// place. Returns the final location (path or URL-like text).
    ///
    /// # Errors
    /// [`SinkError`]; the temporary file is removed.
    fn commit(self: Box<Self>) -> Result<String, SinkError>;
}

/// A destination folder.
pub trait Sink: Send + Sync {
    /// Starts writing a file that will be called `name` once committed.
    ///
    /// # Errors
    /// [`SinkError`].
    fn create(&self, name: &str) -> Result<Box<dyn PendingOutput + '_>, SinkError>;

    /// Whether `name` exists in the folder (crash recovery checks whether
    /// an output was published).
    ///
    /// # Errors
    /// [`SinkError`] when the folder cannot be asked.
    fn exists(&self, name: &str) -> Result<bool, SinkError>;

    /// Removes leftover `*.partial` files of interrupted runs; returns how
    /// many. Only safe while the run lock is held.
    ///
    /// # Errors
    /// [`SinkError`].
    fn remove_partials(&self) -> Result<usize, SinkError>;

    /// Human-readable location of the folder.
    fn describe(&self) -> String;
}
