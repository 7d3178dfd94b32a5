//! piigate: a privacy gateway for customer-profile CSV uploads.
//!
//! Pipeline: `source` → `transform` (schema plan, normalize, encrypt,
//! pseudonymize, mask) → `sink`, with `crypto` (keys, AEAD, PRF) pure and
//! small, `settings` resolved once from TOML, and `commands` as the only
//! layer that knows about the CLI.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod accesslog;
pub mod audit;
pub mod cli;
pub mod commands;
pub mod crypto;
pub mod error;
pub mod job;
pub mod kek_command;
pub mod keyring;
pub mod keystore;
pub mod ledger;
pub mod manifest;
pub mod process;
pub mod report;
pub mod settings;
pub mod sftp;
pub mod sink;
pub mod source;
pub mod transform;
mod ui;
pub mod vault;
