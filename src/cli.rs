//! Command-line types (clap derive). Nothing here does work; `commands`
//! resolves these into settings and runs them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// piigate: privacy gateway for customer-profile CSV uploads.
///
/// Audits profile files against a schema, encrypts PII columns with AES-256-GCM
/// under per-file data keys, replaces identities with HMAC-SHA256 pseudonyms,
/// and writes CleverTap-ready outputs. Keys are read from files or the
/// environment, never from the command line.
#[derive(Parser, Debug)]
#[command(name = "piigate", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Global options.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Args, Debug, Clone)]
pub struct GlobalArgs {
    /// Print only errors.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    /// Progress bars: auto shows them only when stderr is a terminal.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto, global = true)]
    pub progress: ProgressMode,
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// More detail (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

/// When to draw progress bars.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressMode {
    /// Only when stderr is a terminal and not --quiet.
    Auto,
    /// Always (unless --quiet).
    Always,
    /// Never.
    Never,
}

/// Log format.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a new keyring (mode 0600). Refuses to overwrite an existing file.
    Keygen {
        /// Where to write the keyring.
        #[arg(long)]
        keyring: PathBuf,
    },
    /// Key management.
    Keys {
        /// What to do.
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Process local files by hand; outputs go to -o DIR or the configured sink.
    Process {
        /// Configuration file (TOML).
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// Output folder (default: the configured `[sink] path`).
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
        /// Worker threads (default: all cores).
        #[arg(long, short = 'j')]
        jobs: Option<usize>,
        /// Input CSV files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// The drop-folder job: pull new files from the source, process, publish, archive.
    Run {
        /// Configuration file (TOML).
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// Poll forever, every SECONDS.
        #[arg(long, value_name = "SECONDS")]
        watch: Option<u64>,
        /// List what would be processed, touch nothing.
        #[arg(long)]
        dry_run: bool,
        /// Wait for another run's lock instead of exiting 3.
        #[arg(long)]
        wait: bool,
        /// Worker threads (default: all cores).
        #[arg(long, short = 'j')]
        jobs: Option<usize>,
    },
    /// Check files against the schema; writes nothing; non-zero exit if a file would be rejected.
    Audit {
        /// Configuration file (TOML).
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// Print the results as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// Scan only the first N data rows of each file (quick check).
        #[arg(long, value_name = "N")]
        sample: Option<u64>,
        /// Worker threads (default: all cores).
        #[arg(long, short = 'j')]
        jobs: Option<usize>,
        /// Input CSV files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Decrypt encrypted columns for an authorised purpose (logged in the access log).
    Decrypt {
        /// Configuration file (TOML).
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// Why (recorded in the access log).
        #[arg(long)]
        reason: String,
        /// Columns to decrypt (default: every encrypted column).
        #[arg(long, value_delimiter = ',')]
        columns: Option<Vec<String>>,
        /// A piigate output CSV.
        file: PathBuf,
        /// Where to write the decrypted CSV (must not exist).
        #[arg(long, short = 'o')]
        output: PathBuf,
    },
    /// Print the pseudonymous ID of one identity ("-" reads it from stdin). Logged.
    Pseudonym {
        /// Configuration file (TOML).
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// Schema column whose normalization applies (default: the first pseudonymize column).
        #[arg(long)]
        column: Option<String>,
        /// Why (recorded in the access log).
        #[arg(long, default_value = "support look-up")]
        reason: String,
        /// The identity, or "-" to read one line from stdin.
        value: String,
    },
    /// Erase persons (per-person keys): destroy their data keys, so that
    /// every token of theirs, in every file already uploaded, no longer
    /// decrypts. Logged with their pseudonyms.
    Forget {
        /// Configuration file (TOML) with `[keys] dek_scope = "identity"`.
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// An identity as the data subject gave it (normalized like the
        /// identity column). Prefer --from: values on a command line are
        /// visible in process listings and shell history.
        #[arg(long, value_name = "VALUE")]
        identity: Vec<String>,
        /// A pseudonym (as in the outputs' identity column).
        #[arg(long, value_name = "ID")]
        pseudonym: Vec<String>,
        /// A file of erasure requests, one a line: a pseudonym, or an
        /// identity ("-" reads standard input).
        #[arg(long, value_name = "FILE")]
        from: Option<PathBuf>,
        /// Why (recorded in the access log).
        #[arg(long, default_value = "erasure request")]
        reason: String,
    },
    /// Print the identity behind pseudonyms (per-person keys). Logged.
    Reveal {
        /// Configuration file (TOML) with `[keys] dek_scope = "identity"`.
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// Why (recorded in the access log).
        #[arg(long)]
        reason: String,
        /// Pseudonyms.
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
    /// The access log.
    AccessLog {
        /// What to do.
        #[command(subcommand)]
        command: AccessLogCommand,
    },
}

/// `piigate keys ...`
#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Add a new KEK and make it active; old KEKs stay for decryption.
    ///
    /// With --config the keyring is the configured one and the rotation is
    /// recorded in the access log.
    Rotate {
        /// The keyring file.
        #[arg(long, required_unless_present = "config", conflicts_with = "config")]
        keyring: Option<PathBuf>,
        /// Configuration file (TOML): its keyring, and its access log.
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
    },
    /// Re-wrap every stored data key under the active KEK (data files are untouched).
    Rewrap {
        /// Configuration file (TOML).
        #[arg(long, short = 'c')]
        config: PathBuf,
    },
    /// Show each KEK, whether it is active, and how many stored data keys it wraps.
    Status {
        /// Configuration file (TOML).
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// Print the status as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Remove an old KEK from the keyring, once no stored data key needs it.
    Retire {
        /// Configuration file (TOML).
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// The id of the KEK to remove (see `piigate keys status`).
        kek_id: String,
    },
    /// Add the AES-SIV key of `encrypt-deterministic` columns to a keyring made without one.
    AddDeterministicKey {
        /// The keyring file.
        #[arg(long, required_unless_present = "config", conflicts_with = "config")]
        keyring: Option<PathBuf>,
        /// Configuration file (TOML): its keyring, and its access log.
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
    },
}

/// `piigate access-log ...`
#[derive(Subcommand, Debug)]
pub enum AccessLogCommand {
    /// Verify the hash chain; non-zero exit if the log was altered.
    Verify {
        /// Configuration file (TOML).
        #[arg(long, short = 'c')]
        config: PathBuf,
    },
}
