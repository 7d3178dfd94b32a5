//! Where outputs go. A [`Sink`] hands out [`PendingOutput`]s that are
//! written under a temporary name and appear under their final name only
//! on [`PendingOutput::commit`]; dropping one uncommitted removes it.

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
    /// Flushes, makes durable and renames into place. Returns the final
    /// location (path or URL-like text).
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
