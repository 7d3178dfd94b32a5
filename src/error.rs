//! Exit codes and the top-level error that carries one.

/// Process exit status, as documented in the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Everything succeeded.
    Ok = 0,
    /// At least one file failed or was quarantined.
    FilesFailed = 1,
    /// Usage, configuration or key error.
    Usage = 2,
    /// Another run holds the lock.
    Locked = 3,
}

/// A command-level failure with its exit status.
#[derive(Debug, thiserror::Error)]
#[error("{source:#}")]
pub struct CommandError {
    /// Exit status to use.
    pub status: ExitStatus,
    /// What went wrong.
    pub source: anyhow::Error,
}

/// Tags an error with the "usage/config/key" exit status.
pub fn usage(e: impl Into<anyhow::Error>) -> CommandError {
    CommandError { status: ExitStatus::Usage, source: e.into() }
}

/// Tags an error with the "file failed" exit status.
pub fn failed(e: impl Into<anyhow::Error>) -> CommandError {
    CommandError { status: ExitStatus::FilesFailed, source: e.into() }
}
