//! Configuration: the TOML file as users write it (`Raw*` structs, serde),
//! resolved once into a checked [`Settings`] that the core uses.
//!
//! Relative paths in the file resolve against the config file's directory.
//! Precedence: command-line flag > environment (`PIIGATE_KEYRING`) > file.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

/// Environment variable that overrides `[keys] keyring`.
pub const KEYRING_ENV: &str = "PIIGATE_KEYRING";

/// A configuration error: which file, which key, what is allowed.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// Config path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// TOML syntax, unknown key or wrong type (the message names the key, line and column).
    #[error("config {path}: {message}")]
    Parse {
        /// Config path.
        path: PathBuf,
        /// toml/serde message.
        message: String,
    },
    /// A value that parses but is not allowed.
    #[error("config {path}: {key}: {message}")]
    Invalid {
        /// Config path.
        path: PathBuf,
        /// The offending key, e.g. `schema.columns[2].normalize`.
        key: String,
        /// What is wrong and what is allowed.
        message: String,
    },
}

// ---------------------------------------------------------------- raw TOML

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    keys: RawKeys,
    source: Option<RawSource>,
    sink: Option<RawSink>,
    state: Option<RawState>,
    csv: Option<RawCsv>,
    schema: RawSchema,
    audit: Option<RawAudit>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    unflagged_pii: Option<UnflaggedPii>,
    min_ratio: Option<f64>,
    min_matches: Option<u64>,
    max_lines: Option<usize>,
}

/// What `run` and `process` do with a file whose `keep` columns hold
/// personal data (`[audit] unflagged_pii`).
#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum UnflaggedPii {
    /// The file fails (and `run` quarantines it) with the findings.
    #[default]
    Quarantine,
    /// The file is published; the findings are logged and reported.
    Warn,
    /// Keep columns are not scanned.
    Ignore,
}

/// `[audit]`.
#[derive(Clone, Debug)]
pub struct AuditSettings {
    /// Policy for findings in `keep` columns.
    pub unflagged_pii: UnflaggedPii,
    /// Detection thresholds.
    pub thresholds: crate::audit::scan::AuditThresholds,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeys {
    keyring: Option<String>,
    keystore: Option<String>,
    kek_command: Option<String>,
    kek_id: Option<String>,
    previous_kek_commands: Option<std::collections::BTreeMap<String, String>>,
    dek_scope: Option<DekScope>,
    forgotten: Option<ForgottenPolicy>,
    vault: Option<String>,
}

/// What one data key covers (`[keys] dek_scope`).
#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum DekScope {
    /// One data key per output file (or part), recorded in the keystore.
    #[default]
    File,
    /// One data key per pseudonymous identity, kept in the key vault, so
    /// that destroying it (`piigate forget`) erases that person's values.
    Identity,
}

/// What happens to an input row of a person who was forgotten
/// (`[keys] forgotten`, with `dek_scope = "identity"`).
#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ForgottenPolicy {
    /// The row is rejected (reason `forgotten`, by line number).
    #[default]
    Reject,
    /// The person gets a fresh data key; their earlier tokens stay erased.
    NewKey,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    #[serde(rename = "type")]
    kind: LocationKind,
    path: String,
    pattern: Option<String>,
    archive: Option<String>,
    quarantine: Option<String>,
    min_age_seconds: Option<u64>,
    sftp: Option<RawSftp>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSink {
    #[serde(rename = "type")]
    kind: LocationKind,
    path: String,
    manifest: Option<ManifestKind>,
    clevertap_client_email: Option<String>,
    max_file_bytes: Option<u64>,
    sftp: Option<RawSftp>,
    pgp: Option<RawPgp>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPgp {
    recipient_key: String,
    key_id: String,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawSftp {
    host: String,
    port: Option<u16>,
    user: String,
    key_file: Option<String>,
    known_hosts: String,
    password_env: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    dir: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCsv {
    delimiter: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchema {
    unknown_columns: Option<UnknownColumns>,
    max_reject_ratio: Option<f64>,
    pseudonym_prefix: Option<String>,
    default_region: Option<String>,
    columns: Vec<RawColumn>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawColumn {
    name: String,
    from: Option<String>,
    action: Option<Action>,
    normalize: Option<Normalize>,
    required: Option<bool>,
    ct_name: Option<String>,
    // Checked in `resolve_schema`, so that the error names the column.
    ct_type: Option<String>,
}

// ---------------------------------------------------------------- enums

/// Where a source or sink lives.
#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LocationKind {
    /// A folder on this machine.
    Local,
    /// A folder on an SFTP server.
    Sftp,
}

/// Which manifest accompanies each output CSV.
#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ManifestKind {
    /// CleverTap's profile-import manifest (`<stem>.manifest`).
    Clevertap,
    /// No manifest.
    None,
}

/// What happens to input columns the schema does not name.
#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UnknownColumns {
    /// The file fails, naming the column.
    Reject,
    /// The column is left out of the output.
    Drop,
    /// The column is copied unchanged after the schema's columns.
    Keep,
}

/// What a schema column does to its value.
#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Copied (after normalization).
    Keep,
    /// Replaced by a `pg1:` AES-256-GCM token (randomized).
    Encrypt,
    /// Replaced by a `pd1:` AES-SIV token: equal values give equal tokens.
    #[serde(rename = "encrypt-deterministic")]
    EncryptDeterministic,
    /// Replaced by the HMAC-SHA256 pseudonym.
    Pseudonymize,
    /// Partly hidden, type-aware (email, phone, date, other).
    Mask,
    /// Read but not written.
    Drop,
}

impl Action {
    /// Config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Keep => "keep",
            Action::Encrypt => "encrypt",
            Action::EncryptDeterministic => "encrypt-deterministic",
            Action::Pseudonymize => "pseudonymize",
            Action::Mask => "mask",
            Action::Drop => "drop",
        }
    }
}

/// How a value is normalized before its action.
#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Normalize {
    /// Trim, Unicode NFC, lowercase.
    Email,
    /// E.164 by libphonenumber's rules.
    Phone,
    /// Trim whitespace.
    Trim,
    /// The bytes as given.
    #[default]
    None,
}

/// CleverTap property data type (upper case, as the import requires).
#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize)]
pub enum CtType {
    /// Text.
    #[default]
    #[serde(rename = "STRING")]
    String,
    /// 32-bit integer.
    #[serde(rename = "INTEGER")]
    Integer,
    /// Floating point.
    #[serde(rename = "FLOAT")]
    Float,
    /// true / false.
    #[serde(rename = "BOOLEAN")]
    Boolean,
    /// 64-bit integer.
    #[serde(rename = "LONG")]
    Long,
}

// ---------------------------------------------------------------- resolved

/// SFTP connection settings (`[source.sftp]` / `[sink.sftp]`).
#[derive(Clone, Debug)]
pub struct SftpSettings {
    /// Server host name or address.
    pub host: String,
    /// TCP port (default 22).
    pub port: u16,
    /// Login user.
    pub user: String,
    /// Private key file (OpenSSH format), if key authentication is used.
    pub key_file: Option<PathBuf>,
    /// known_hosts file the server's host key must match.
    pub known_hosts: PathBuf,
    /// Name of the environment variable holding the password, if any.
    pub password_env: Option<String>,
}

/// A folder, local or on an SFTP server.
#[derive(Clone, Debug)]
pub enum Location {
    /// A local folder (absolute, or relative to the working directory).
    Local(PathBuf),
    /// A remote folder.
    Sftp(SftpSettings, String),
}

/// `[source]`.
#[derive(Clone, Debug)]
pub struct SourceSettings {
    /// Inbox folder.
    pub location: Location,
    /// Glob that input file names must match.
    pub pattern: globset::GlobMatcher,
    /// The pattern as written.
    pub pattern_text: String,
    /// Where inputs go after success (same server as the source).
    pub archive: Option<String>,
    /// Where inputs go after failure.
    pub quarantine: Option<String>,
    /// Files modified more recently than this are left for a later run.
    pub min_age: Duration,
}

/// `[sink]`.
#[derive(Clone, Debug)]
pub struct SinkSettings {
    /// Outbox folder.
    pub location: Location,
    /// Manifest written after each CSV.
    pub manifest: ManifestKind,
    /// `clientEmail` of CleverTap's manifest.
    pub clevertap_client_email: Option<String>,
    /// Largest data file in bytes (CleverTap: 5 GB; 1 GB with OpenPGP).
    pub max_file_bytes: u64,
    /// `[sink.pgp]`: OpenPGP-encrypt each data file.
    pub pgp: Option<PgpSettings>,
}

/// `[sink.pgp]`: CleverTap's encrypted upload ("File Upload Encryption").
#[derive(Clone, Debug)]
pub struct PgpSettings {
    /// The ASCII-armored public key CleverTap issued.
    pub recipient_key: PathBuf,
    /// The Key ID CleverTap shows for that key; goes into each manifest as `keyId`.
    pub key_id: String,
}

/// CleverTap takes OpenPGP-encrypted data files under 1 GB.
pub const PGP_MAX_FILE_BYTES: u64 = 1_000_000_000;

/// One output column of the schema.
#[derive(Clone, Debug)]
pub struct ColumnSpec {
    /// Output header.
    pub name: String,
    /// Input header it reads.
    pub from: String,
    /// What is done to the value.
    pub action: Action,
    /// How the value is normalized first.
    pub normalize: Normalize,
    /// An empty value (after normalization) rejects the row.
    pub required: bool,
    /// CleverTap property name.
    pub ct_name: String,
    /// CleverTap data type.
    pub ct_type: CtType,
}

/// `[schema]`.
#[derive(Clone, Debug)]
pub struct Schema {
    /// Policy for columns the schema does not name.
    pub unknown_columns: UnknownColumns,
    /// Fraction of rows (0..=1) that may be rejected before the file fails.
    pub max_reject_ratio: f64,
    /// Prefix of every pseudonym.
    pub pseudonym_prefix: String,
    /// Region for national phone numbers.
    pub default_region: Option<phonenumber::country::Id>,
    /// Columns in schema order (output order for non-drop columns).
    pub columns: Vec<ColumnSpec>,
}

impl Schema {
    /// The identity column of per-person keys: the `pseudonymize` column
    /// whose `ct_name` is `"identity"`. Its normalized value names the
    /// person; its pseudonym names the person's data key in the vault.
    pub fn identity_column(&self) -> Option<&ColumnSpec> {
        self.columns.iter().find(|c| c.action == Action::Pseudonymize && c.ct_name == "identity")
    }

    /// Output names of the columns whose action is one of `actions`, in
    /// schema order.
    pub fn names_with(&self, actions: &[Action]) -> Vec<&str> {
        self.columns.iter().filter(|c| actions.contains(&c.action)).map(|c| c.name.as_str()).collect()
    }
}

/// `[keys] kek_command` and `kek_id`: the active KEK comes from a command
/// (a KMS or Vault CLI) instead of the keyring file.
#[derive(Clone, Debug)]
pub struct KekCommand {
    /// Command line, run with `sh -c` in the config file's folder.
    pub command: String,
    /// The id data keys wrapped under this KEK record in the keystore.
    pub kek_id: crate::crypto::keys::KekId,
    /// Working directory of the command (the config file's folder).
    pub dir: PathBuf,
}

/// The checked configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The config file.
    pub config_path: PathBuf,
    /// Keyring file (flag/env/file precedence applied).
    pub keyring: PathBuf,
    /// Whether the keyring path came from `PIIGATE_KEYRING`.
    pub keyring_from_env: bool,
    /// Keystore (JSON lines of wrapped data keys).
    pub keystore: PathBuf,
    /// What one data key covers (`[keys] dek_scope`).
    pub dek_scope: DekScope,
    /// Rows of forgotten persons (`[keys] forgotten`).
    pub forgotten: ForgottenPolicy,
    /// The per-person key vault (SQLite; `[keys] vault`, default
    /// `<state dir>/vault.sqlite`).
    pub vault: PathBuf,
    /// The active KEK's command, when it does not live in the keyring file.
    pub kek_command: Option<KekCommand>,
    /// Earlier KEKs kept in a KMS (`[keys.previous_kek_commands]`, id =
    /// command): run only by commands that unwrap data keys.
    pub previous_kek_commands: Vec<KekCommand>,
    /// `[source]`, if configured.
    pub source: Option<SourceSettings>,
    /// `[sink]`, if configured.
    pub sink: Option<SinkSettings>,
    /// State folder: lock, ledger, run reports, access log.
    pub state_dir: PathBuf,
    /// Input delimiter byte.
    pub delimiter: u8,
    /// `[schema]`.
    pub schema: Schema,
    /// `[audit]`.
    pub audit: AuditSettings,
}

/// CleverTap's limit on one data file, in bytes (5 GB).
pub const DEFAULT_MAX_FILE_BYTES: u64 = 5_000_000_000;

impl Settings {
    /// Reads and checks the config file at `path`.
    ///
    /// # Errors
    /// [`SettingsError`] naming the key and what is allowed.
    pub fn load(path: &Path) -> Result<Self, SettingsError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| SettingsError::Read { path: path.to_owned(), source })?;
        let env_keyring = std::env::var_os(KEYRING_ENV).filter(|v| !v.is_empty()).map(PathBuf::from);
        Self::from_toml(path, &text, env_keyring)
    }

    /// Checks config text; `path` names it in errors and anchors relative paths.
    ///
    /// # Errors
    /// [`SettingsError`].
    pub fn from_toml(path: &Path, text: &str, env_keyring: Option<PathBuf>) -> Result<Self, SettingsError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| SettingsError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let resolve = |p: &str| -> PathBuf {
            let p = Path::new(p);
            if p.is_absolute() {
                p.to_owned()
            } else {
                base.join(p)
            }
        };
        let invalid =
            |key: &str, message: String| SettingsError::Invalid { path: path.to_owned(), key: key.to_owned(), message };

        let keyring_from_env = env_keyring.is_some();
        let keyring = match (env_keyring, raw.keys.keyring.as_deref()) {
            (Some(p), _) => p,
            (None, Some(p)) => resolve(p),
            (None, None) => {
                return Err(invalid(
                    "keys.keyring",
                    format!("missing: set [keys] keyring = \"PATH\" or the {KEYRING_ENV} environment variable"),
                ))
            }
        };
        let kek_command = match (raw.keys.kek_command, raw.keys.kek_id) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(invalid(
                    "keys.kek_id",
                    "kek_command needs kek_id, the id its KEK is recorded under in the keystore (1-64 characters of A-Z, a-z, 0-9, '_' or '-', e.g. \"kms-2026\")".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "keys.kek_command",
                    "kek_id is set but kek_command is not: add the command that prints the KEK, or remove kek_id".into(),
                ))
            }
            (Some(command), Some(id)) => {
                if command.trim().is_empty() {
                    return Err(invalid("keys.kek_command", "is empty: give the command that prints the KEK".into()));
                }
                let kek_id = id.parse().map_err(|e| invalid("keys.kek_id", format!("{e}")))?;
                Some(KekCommand { command, kek_id, dir: base.clone() })
            }
        };
        let mut previous_kek_commands = Vec::new();
        for (id, command) in raw.keys.previous_kek_commands.unwrap_or_default() {
            let key = format!("keys.previous_kek_commands.{id}");
            let kek_id: crate::crypto::keys::KekId = id.parse().map_err(|e| invalid(&key, format!("{e}")))?;
            if kek_command.as_ref().is_some_and(|k| k.kek_id == kek_id) {
                return Err(invalid(&key, "is the active kek_id; list only earlier KEKs here".into()));
            }
            if command.trim().is_empty() {
                return Err(invalid(&key, "is empty: give the command that prints this KEK".into()));
            }
            previous_kek_commands.push(KekCommand { command, kek_id, dir: base.clone() });
        }
        let state_dir = resolve(raw.state.as_ref().and_then(|s| s.dir.as_deref()).unwrap_or("state"));
        let keystore = match raw.keys.keystore.as_deref() {
            Some(p) => resolve(p),
            None => state_dir.join("data-keys.jsonl"),
        };
        let vault = match raw.keys.vault.as_deref() {
            Some(p) => resolve(p),
            None => state_dir.join("vault.sqlite"),
        };
        let dek_scope = raw.keys.dek_scope.unwrap_or_default();
        let forgotten = raw.keys.forgotten.unwrap_or_default();

        let location = |section: &str,
                        kind: LocationKind,
                        p: &str,
                        sftp: Option<RawSftp>|
         -> Result<Location, SettingsError> {
            match (kind, sftp) {
                (LocationKind::Local, _) => Ok(Location::Local(resolve(p))),
                (LocationKind::Sftp, None) => Err(invalid(
                    &format!("{section}.sftp"),
                    format!("type = \"sftp\" needs a [{section}.sftp] table with host, user and known_hosts"),
                )),
                (LocationKind::Sftp, Some(s)) => {
                    if s.key_file.is_none() && s.password_env.is_none() {
                        return Err(invalid(
                            &format!("{section}.sftp"),
                            "set key_file (a private key file) or password_env (the name of an environment variable holding the password)".into(),
                        ));
                    }
                    Ok(Location::Sftp(
                        SftpSettings {
                            host: s.host,
                            port: s.port.unwrap_or(22),
                            user: s.user,
                            key_file: s.key_file.as_deref().map(resolve),
                            known_hosts: resolve(&s.known_hosts),
                            password_env: s.password_env,
                        },
                        p.to_owned(),
                    ))
                }
            }
        };

        let source = match raw.source {
            None => None,
            Some(s) => {
                let pattern_text = s.pattern.unwrap_or_else(|| "*.csv".into());
                let pattern = globset::GlobBuilder::new(&pattern_text)
                    .literal_separator(true)
                    .build()
                    .map_err(|e| invalid("source.pattern", format!("not a valid glob: {e}")))?
                    .compile_matcher();
                let is_sftp = s.kind == LocationKind::Sftp;
                let folder =
                    |p: Option<String>| p.map(|p| if is_sftp { p } else { resolve(&p).to_string_lossy().into_owned() });
                Some(SourceSettings {
                    location: location("source", s.kind, &s.path, s.sftp)?,
                    pattern,
                    pattern_text,
                    archive: folder(s.archive),
                    quarantine: folder(s.quarantine),
                    min_age: Duration::from_secs(s.min_age_seconds.unwrap_or(60)),
                })
            }
        };

        let sink = match raw.sink {
            None => None,
            Some(s) => {
                let pgp = match s.pgp {
                    None => None,
                    Some(p) => {
                        let key_id = p.key_id.trim().to_owned();
                        if key_id.is_empty() || !key_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                            return Err(invalid(
                                "sink.pgp.key_id",
                                "must be the Key ID CleverTap shows for the key, e.g. \"ec491319-0000-0000-0000-000000000000\"".into(),
                            ));
                        }
                        Some(PgpSettings { recipient_key: resolve(&p.recipient_key), key_id })
                    }
                };
                let manifest = s.manifest.unwrap_or(ManifestKind::Clevertap);
                if manifest == ManifestKind::Clevertap {
                    match s.clevertap_client_email.as_deref() {
                        Some(e) if e.contains('@') => {}
                        _ => {
                            return Err(invalid(
                                "sink.clevertap_client_email",
                                "manifest = \"clevertap\" needs the address CleverTap mails import results to, e.g. \"ops@example.com\" (or set manifest = \"none\")".into(),
                            ))
                        }
                    }
                }
                let max_file_bytes = s.max_file_bytes.unwrap_or(DEFAULT_MAX_FILE_BYTES);
                if max_file_bytes < 1024 {
                    return Err(invalid("sink.max_file_bytes", "must be at least 1024 bytes".into()));
                }
                if pgp.is_some() && max_file_bytes < 16 * 1024 {
                    return Err(invalid(
                        "sink.max_file_bytes",
                        "must be at least 16384 bytes with [sink.pgp] (OpenPGP and ASCII armor add about a third and a few kilobytes)".into(),
                    ));
                }
                Some(SinkSettings {
                    location: location("sink", s.kind, &s.path, s.sftp)?,
                    manifest,
                    clevertap_client_email: s.clevertap_client_email,
                    max_file_bytes,
                    pgp,
                })
            }
        };

        let delimiter = match raw.csv.and_then(|c| c.delimiter) {
            None => b',',
            Some(d) => {
                let d = if d == "\\t" { "\t".to_owned() } else { d };
                match d.as_bytes() {
                    [b] if b.is_ascii() && !matches!(b, b'"' | b'\r' | b'\n') => *b,
                    _ => {
                        return Err(invalid(
                            "csv.delimiter",
                            "must be one ASCII character other than a quote or line break, e.g. \",\", \";\", \"|\" or \"\\t\"".into(),
                        ))
                    }
                }
            }
        };

        let schema = resolve_schema(raw.schema, &invalid)?;
        let mut thresholds = crate::audit::scan::AuditThresholds::default();
        let mut unflagged_pii = UnflaggedPii::default();
        if let Some(a) = raw.audit {
            unflagged_pii = a.unflagged_pii.unwrap_or_default();
            thresholds.min_ratio = a.min_ratio.unwrap_or(thresholds.min_ratio);
            thresholds.min_matches = a.min_matches.unwrap_or(thresholds.min_matches);
            thresholds.max_lines = a.max_lines.unwrap_or(thresholds.max_lines);
            thresholds.validate().map_err(|m| invalid("audit", m))?;
        }
        let audit = AuditSettings { unflagged_pii, thresholds };
        if dek_scope == DekScope::Identity && schema.identity_column().is_none() {
            return Err(invalid(
                "keys.dek_scope",
                "\"identity\" gives each person their own data key, named by their pseudonym: the schema needs a column with action = \"pseudonymize\" and ct_name = \"identity\" (the CleverTap identity); add one, or set dek_scope = \"file\"".into(),
            ));
        }
        Ok(Settings {
            config_path: path.to_owned(),
            keyring,
            keyring_from_env,
            keystore,
            dek_scope,
            forgotten,
            vault,
            kek_command,
            previous_kek_commands,
            source,
            sink,
            state_dir,
            delimiter,
            schema,
            audit,
        })
    }
}

fn resolve_schema(raw: RawSchema, invalid: &dyn Fn(&str, String) -> SettingsError) -> Result<Schema, SettingsError> {
    let max_reject_ratio = raw.max_reject_ratio.unwrap_or(0.01);
    if !(0.0..=1.0).contains(&max_reject_ratio) || max_reject_ratio.is_nan() {
        return Err(invalid("schema.max_reject_ratio", "must be a number from 0.0 to 1.0 (e.g. 0.01 for 1%)".into()));
    }
    let pseudonym_prefix = raw.pseudonym_prefix.unwrap_or_else(|| "u_".into());
    if pseudonym_prefix.len() > 64
        || !pseudonym_prefix.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
    {
        return Err(invalid(
            "schema.pseudonym_prefix",
            "must be at most 64 characters of A-Z, a-z, 0-9, '_', '-', '.' or ':'".into(),
        ));
    }
    let default_region = match raw.default_region.as_deref() {
        None => None,
        Some(r) => Some(phonenumber::country::Id::from_str(&r.to_ascii_uppercase()).map_err(|_| {
            invalid(
                "schema.default_region",
                format!("{r:?} is not an ISO 3166 alpha-2 region code such as \"US\" or \"GB\""),
            )
        })?),
    };
    if raw.columns.is_empty() {
        return Err(invalid("schema.columns", "at least one [[schema.columns]] entry is needed".into()));
    }
    let mut names = HashSet::new();
    let mut columns = Vec::with_capacity(raw.columns.len());
    for (i, c) in raw.columns.into_iter().enumerate() {
        let key = |field: &str| format!("schema.columns[{i}] ({:?}).{field}", c.name);
        if c.name.trim().is_empty() || c.name.trim() != c.name {
            return Err(invalid(&key("name"), "must be non-empty with no leading or trailing spaces".into()));
        }
        let action = c.action.unwrap_or(Action::Keep);
        if action != Action::Drop && !names.insert(c.name.clone()) {
            return Err(invalid(&key("name"), "two output columns have this name; output names must be unique".into()));
        }
        let normalize = c.normalize.unwrap_or_default();
        if normalize == Normalize::Phone && default_region.is_none() {
            return Err(invalid(
                &key("normalize"),
                "normalize = \"phone\" needs [schema] default_region, the ISO 3166 alpha-2 code national numbers are read in (e.g. \"US\")".into(),
            ));
        }
        let ct_type = match c.ct_type.as_deref() {
            None => CtType::default(),
            Some("STRING") => CtType::String,
            Some("INTEGER") => CtType::Integer,
            Some("FLOAT") => CtType::Float,
            Some("BOOLEAN") => CtType::Boolean,
            Some("LONG") => CtType::Long,
            Some(other) => {
                let upper = other.to_ascii_uppercase();
                let hint = if ["STRING", "INTEGER", "FLOAT", "BOOLEAN", "LONG"].contains(&upper.as_str()) {
                    format!(" (CleverTap reads types in upper case: \"{upper}\")")
                } else {
                    String::new()
                };
                return Err(invalid(
                    &key("ct_type"),
                    format!("unknown type {other:?}{hint}; one of \"STRING\", \"INTEGER\", \"FLOAT\", \"BOOLEAN\", \"LONG\""),
                ));
            }
        };
        if matches!(action, Action::Encrypt | Action::EncryptDeterministic | Action::Pseudonymize | Action::Mask)
            && ct_type != CtType::String
        {
            return Err(invalid(
                &key("ct_type"),
                format!(
                    "a column with action = \"{}\" is always text: use ct_type = \"STRING\" or leave it out",
                    action.as_str()
                ),
            ));
        }
        let ct_name = c.ct_name.clone().unwrap_or_else(|| c.name.clone());
        // CleverTap's own Email and Phone properties must hold the real
        // address or E.164 number; a token, pseudonym or mask there would be
        // refused or mistaken for contact data.
        let real_contact = |n: Normalize| action == Action::Keep && normalize == n;
        if ct_name == "Email" && !real_contact(Normalize::Email) {
            return Err(invalid(
                &key("ct_name"),
                "CleverTap's \"Email\" property needs the real address: only a keep column with normalize = \"email\" may map to it; give this column another ct_name".into(),
            ));
        }
        if ct_name == "Phone" && !real_contact(Normalize::Phone) {
            return Err(invalid(
                &key("ct_name"),
                "CleverTap's \"Phone\" property needs the real number in E.164: only a keep column with normalize = \"phone\" may map to it; give this column another ct_name".into(),
            ));
        }
        if ct_name.is_empty() || ct_name.len() > 120 {
            return Err(invalid(&key("ct_name"), "must be 1 to 120 characters".into()));
        }
        let from = c.from.unwrap_or_else(|| c.name.clone());
        columns.push(ColumnSpec {
            ct_name,
            name: c.name,
            from,
            action,
            normalize,
            required: c.required.unwrap_or(false),
            ct_type,
        });
    }
    if columns.iter().all(|c| c.action == Action::Drop) {
        return Err(invalid("schema.columns", "every column is dropped: at least one must be written".into()));
    }
    Ok(Schema {
        unknown_columns: raw.unknown_columns.unwrap_or(UnknownColumns::Reject),
        max_reject_ratio,
        pseudonym_prefix,
        default_region,
        columns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[keys]
keyring = "keys/k.toml"
[sink]
type = "local"
path = "out"
clevertap_client_email = "ops@example.com"
[schema]
default_region = "US"
[[schema.columns]]
name = "identity"
from = "email"
action = "pseudonymize"
normalize = "email"
required = true
"#;

    fn load(text: &str) -> Result<Settings, SettingsError> {
        Settings::from_toml(Path::new("/etc/piigate/p.toml"), text, None)
    }

    #[test]
    fn resolves_relative_paths_and_defaults() {
        let s = load(BASE).unwrap();
        assert_eq!(s.keyring, Path::new("/etc/piigate/keys/k.toml"));
        assert_eq!(s.keystore, Path::new("/etc/piigate/state/data-keys.jsonl"));
        assert_eq!(s.delimiter, b',');
        assert_eq!(s.schema.columns[0].from, "email");
    }

    #[test]
    fn unknown_key_is_named() {
        let err = load(&format!("{BASE}\nbogus = 1\n")).err().unwrap().to_string();
        assert!(err.contains("bogus"), "{err}");
    }

    #[test]
    fn bad_action_lists_allowed_values() {
        let err = load(&BASE.replace("pseudonymize", "hash")).err().unwrap().to_string();
        assert!(err.contains("hash") && err.contains("encrypt"), "{err}");
    }

    #[test]
    fn encrypted_column_must_be_string() {
        let t = format!("{BASE}\n[[schema.columns]]\nname = \"email\"\naction = \"encrypt\"\nct_type = \"INTEGER\"\n");
        let err = load(&t).err().unwrap().to_string();
        assert!(err.contains("ct_type"), "{err}");
    }

    #[test]
    fn deterministic_column_must_be_string() {
        let t = format!(
            "{BASE}\n[[schema.columns]]\nname = \"email\"\naction = \"encrypt-deterministic\"\nct_type = \"LONG\"\n"
        );
        let err = load(&t).err().unwrap().to_string();
        assert!(err.contains("ct_type") && err.contains("encrypt-deterministic"), "{err}");
        let ok = format!("{BASE}\n[[schema.columns]]\nname = \"email\"\naction = \"encrypt-deterministic\"\n");
        assert_eq!(load(&ok).unwrap().schema.columns[1].action, Action::EncryptDeterministic);
    }

    #[test]
    fn lower_case_ct_type_is_refused() {
        let t = format!("{BASE}\n[[schema.columns]]\nname = \"n\"\nct_type = \"string\"\n");
        assert!(load(&t).is_err());
    }

    #[test]
    fn kek_command_needs_both_keys_and_resolves_against_the_config() {
        let with = |extra: &str| BASE.replacen("[keys]\n", &format!("[keys]\n{extra}"), 1);
        let s = load(&with("kek_command = \"vault read -field=kek x\"\nkek_id = \"kms-1\"\n")).unwrap();
        let kc = s.kek_command.unwrap();
        assert_eq!(kc.kek_id.as_str(), "kms-1");
        assert_eq!(kc.dir, Path::new("/etc/piigate"));
        let err = load(&with("kek_command = \"x\"\n")).err().unwrap().to_string();
        assert!(err.contains("kek_id"), "{err}");
        let err = load(&with("kek_id = \"k\"\n")).err().unwrap().to_string();
        assert!(err.contains("kek_command"), "{err}");
        let err = load(&with("kek_command = \"x\"\nkek_id = \"bad id\"\n")).err().unwrap().to_string();
        assert!(err.contains("kek_id"), "{err}");
        let prev = "kek_command = \"x\"\nkek_id = \"kms-2\"\nprevious_kek_commands = { kms-1 = \"y\" }\n";
        let s = load(&with(prev)).unwrap();
        assert_eq!(s.previous_kek_commands[0].kek_id.as_str(), "kms-1");
        assert_eq!(s.previous_kek_commands[0].command, "y");
        let err = load(&with(&prev.replace("kms-1", "kms-2"))).err().unwrap().to_string();
        assert!(err.contains("previous_kek_commands.kms-2"), "{err}");
    }

    #[test]
    fn tab_delimiter() {
        let s = load(&format!("{BASE}\n[csv]\ndelimiter = \"\\t\"\n")).unwrap();
        assert_eq!(s.delimiter, b'\t');
    }
}
