//! Processing one input into published outputs: the data key, the
//! streaming transform, the reject-ratio check, then the CSV and its
//! manifest, each published atomically, the manifest last.

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::crypto::aead::DataKey;
use crate::crypto::prf::Pseudonymizer;
use crate::keyring::Keyring;
use crate::keystore::{self, DekRecord};
use crate::manifest;
use crate::report::{FileReport, FileStatus, OutputReport, Reporter, MAX_LISTED_REJECTS};
use crate::settings::{ForgottenPolicy, ManifestKind, Settings, UnflaggedPii};
use crate::sink::Sink;
use crate::transform::engine::{self, DataKeySource, EngineError, EngineOptions, FileJob};
use crate::transform::{PersonDek, PersonKeySource};

/// Data keys from the keyring's active KEK, recorded in the keystore
/// before they are used.
pub struct KeystoreKeys<'a> {
    keyring: &'a Keyring,
    path: PathBuf,
    lock: Mutex<()>,
}

impl<'a> KeystoreKeys<'a> {
    /// Keys wrapped by `keyring`, recorded in the keystore at `path`.
    pub fn new(keyring: &'a Keyring, path: PathBuf) -> Self {
        Self { keyring, path, lock: Mutex::new(()) }
    }
}

impl DataKeySource for KeystoreKeys<'_> {
    fn fresh_key(&self) -> Result<(DataKey, DekRecord), String> {
        let (key, rec) = keystore::new_data_key(self.keyring, &crate::report::now_rfc3339());
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        keystore::append(&self.path, std::slice::from_ref(&rec)).map_err(|e| e.to_string())?;
        Ok((key, rec))
    }
}

/// Per-person data keys from the key vault (`[keys] dek_scope =
/// "identity"`). Each chunk's new keys are committed to the vault before
/// any of its values is encrypted, and made durable (fsynced) before the
/// output is published, so no published token can lack its key.
pub struct VaultKeys {
    vault: Arc<crate::vault::Vault>,
    new_key: bool,
    keyring_path: PathBuf,
}

impl VaultKeys {
    /// Keys from `vault`; `forgotten` says what a forgotten person's rows get.
    pub fn new(vault: Arc<crate::vault::Vault>, forgotten: ForgottenPolicy, keyring_path: PathBuf) -> Self {
        Self { vault, new_key: forgotten == ForgottenPolicy::NewKey, keyring_path }
    }
}

impl PersonKeySource for VaultKeys {
    fn person_keys(&self, persons: &[(&str, &str)]) -> Result<Vec<Option<PersonDek>>, String> {
        let keys = self.vault.person_keys(persons, self.new_key, &self.keyring_path).map_err(|e| e.to_string())?;
        Ok(keys
            .into_iter()
            .map(|k| match k {
                crate::vault::PersonKey::Key(id, dek) => Some((id, dek)),
                crate::vault::PersonKey::Forgotten => None,
            })
            .collect())
    }

    fn mark(&self) -> u64 {
        self.vault.mark()
    }

    fn sync(&self, since: u64) -> Result<(), String> {
        self.vault.sync(since).map_err(|e| e.to_string())
    }

    fn compact(&self) {
        let path = self.vault.path().display();
        let staged = match self.vault.merge_due() {
            Ok(Some(n)) => n,
            Ok(None) => return,
            Err(e) => return tracing::warn!("{e} (counting the staged person keys; they stay staged and in use)"),
        };
        tracing::info!(
            staged,
            "key vault {path}: merging {staged} new person key(s) into its main table (about 30 s per million at 10 million persons)"
        );
        let started = std::time::Instant::now();
        match self.vault.merge_staged() {
            Ok(n) => {
                let seconds = started.elapsed().as_secs_f64();
                tracing::info!(merged = n, seconds, "key vault {path}: merged {n} person key(s) in {seconds:.1} s")
            }
            Err(e) => tracing::warn!("{e} (merging the staged person keys; they stay staged and in use)"),
        }
    }
}

/// What every file of a run shares.
pub struct Context<'a> {
    /// Checked configuration.
    pub settings: &'a Settings,
    /// Pseudonym function.
    pub pseudonymizer: Pseudonymizer,
    /// Cipher of `encrypt-deterministic` columns, when the schema has any.
    pub deterministic: Option<crate::crypto::siv::DeterministicCipher>,
    /// Data-key source.
    pub keys: &'a dyn DataKeySource,
    /// Transform pool.
    pub pool: &'a rayon::ThreadPool,
    /// Progress.
    pub reporter: &'a dyn Reporter,
    /// Set by SIGINT/SIGTERM.
    pub cancel: &'a AtomicBool,
    /// Name suffix timestamp (`20261129T030000Z`).
    pub timestamp: String,
    /// Engine tuning.
    pub options: EngineOptions,
    /// `[sink.pgp]`: outputs are OpenPGP-encrypted to this key.
    pub recipient: Option<&'a crate::sink::pgp::Recipient>,
    /// Per-person keys (`[keys] dek_scope = "identity"`).
    pub persons: Option<Arc<dyn PersonKeySource>>,
}

/// Hook called with (output names in part order, output header) before publishing.
pub type BeforePublish<'a> = dyn Fn(&[String], &[String]) -> Result<(), String> + Sync + 'a;

/// Output stem for an input file name: the name without its extension.
pub fn stem_of(input_name: &str) -> &str {
    match input_name.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ => input_name,
    }
}

/// Processes `input` (called `display` in reports, `file_name` its base
/// name) into `sink`. Never panics on bad input; the report says what
/// happened.
///
/// `before_publish` is called with the output names (one per part) and
/// header just before the first CSV is renamed into place (the job records its intent in the ledger
/// there); an error from it fails the file with nothing published.
pub fn process_file(
    ctx: &Context<'_>,
    display: &str,
    file_name: &str,
    size: Option<u64>,
    input: impl Read,
    sink: &dyn Sink,
    before_publish: Option<&BeforePublish<'_>>,
) -> FileReport {
    let started = Instant::now();
    let mut report = FileReport::new(display.to_owned());
    let progress = ctx.reporter.file_started(file_name, size);
    // OpenPGP encryption runs on scoped threads beside the engine.
    let result =
        std::thread::scope(|scope| run(ctx, scope, file_name, input, sink, &*progress, &mut report, before_publish));
    report.seconds = started.elapsed().as_secs_f64();
    match result {
        Ok(()) => report.status = FileStatus::Ok,
        Err((status, msg)) => {
            report.status = status;
            report.error = Some(msg);
        }
    }
    report
}

#[allow(clippy::too_many_arguments)]
fn run<'scope, 'env>(
    ctx: &'env Context<'_>,
    scope: &'scope std::thread::Scope<'scope, 'env>,
    file_name: &str,
    input: impl Read,
    sink: &'env dyn Sink,
    progress: &dyn engine::FileProgress,
    report: &mut FileReport,
    before_publish: Option<&BeforePublish<'_>>,
) -> Result<(), (FileStatus, String)> {
    let s = ctx.settings;
    let mut options = ctx.options;
    let max_file_bytes = s.sink.as_ref().map_or(crate::settings::DEFAULT_MAX_FILE_BYTES, |k| k.max_file_bytes);
    options.max_part_bytes = Some(match ctx.recipient {
        // Parts are cut on the plaintext so each encrypted file stays under the limit.
        Some(_) => crate::sink::pgp::plaintext_budget(max_file_bytes.min(crate::settings::PGP_MAX_FILE_BYTES)),
        None => max_file_bytes,
    });
    // Before the file's first look-up: see `PersonKeySource::sync`.
    let vault_mark = ctx.persons.as_ref().map_or(0, |p| p.mark());
    let job = FileJob {
        schema: &s.schema,
        delimiter: s.delimiter,
        pseudonymizer: &ctx.pseudonymizer,
        deterministic: ctx.deterministic.as_ref(),
        keys: ctx.keys,
        pool: ctx.pool,
        progress,
        cancel: ctx.cancel,
        options,
        audit_lines: (s.audit.unflagged_pii != UnflaggedPii::Ignore).then_some(s.audit.thresholds.max_lines),
        persons: ctx.persons.clone(),
    };
    let names = Mutex::new(Vec::<String>::new());
    let open = |part: usize,
                id: &crate::crypto::keys::DekId|
     -> Result<Box<dyn crate::sink::PendingOutput + 'scope>, String> {
        let csv_name = output_name(file_name, &ctx.timestamp, part, id);
        let out = match ctx.recipient {
            Some(r) => {
                let name = format!("{csv_name}.asc");
                let out = sink.create(&name).map_err(|e| e.to_string())?;
                names.lock().unwrap_or_else(|p| p.into_inner()).push(name);
                r.encrypt_into(scope, csv_name, out)
            }
            None => {
                let out = sink.create(&csv_name).map_err(|e| e.to_string())?;
                names.lock().unwrap_or_else(|p| p.into_inner()).push(csv_name);
                out
            }
        };
        Ok(out)
    };
    let result = engine::process_stream(&job, input, open);
    let (outcome, parts) = match result {
        Ok(o) => o,
        Err(e) => {
            let status = match e {
                EngineError::Header(_) | EngineError::RowTooLarge { .. } => FileStatus::Failed,
                EngineError::Interrupted => FileStatus::Interrupted,
                _ => FileStatus::Error,
            };
            return Err((status, e.to_string()));
        }
    };
    let names = names.into_inner().unwrap_or_else(|p| p.into_inner());
    report.input_bytes = outcome.input_bytes;
    report.input_sha256 = Some(outcome.input_sha256.clone());
    report.rows_read = outcome.rows_read;
    report.rows_written = outcome.rows_written;
    report.rows_rejected = outcome.rejects.len() as u64;
    report.values_encrypted = outcome.values_encrypted;
    report.data_keys = outcome.data_keys.clone();
    report.rejects = outcome.rejects.iter().take(MAX_LISTED_REJECTS).cloned().collect();

    let (findings, hints) = audit_findings(s, &outcome.scanners);
    report.findings = findings.clone();
    report.warnings = hints;
    let blocking: Vec<&crate::audit::scan::Finding> =
        findings.iter().filter(|f| f.confidence >= crate::audit::scan::Confidence::Medium).collect();
    if !blocking.is_empty() && s.audit.unflagged_pii == UnflaggedPii::Quarantine {
        let list: Vec<String> = blocking.iter().map(|f| describe_finding(f)).collect();
        return Err((
            FileStatus::Failed,
            format!(
                "personal data in columns the schema keeps as they are: {}; encrypt, mask or drop those columns in [[schema.columns]], or set [audit] unflagged_pii = \"warn\"",
                list.join("; ")
            ),
        ));
    }
    for f in &findings {
        tracing::warn!("{file_name}: {}", describe_finding(f));
    }
    for h in &report.warnings {
        tracing::warn!("{file_name}: {h}");
    }
    let rejected = outcome.rejects.len() as u64;
    if rejected > 0 {
        let ratio = rejected as f64 / outcome.rows_read.max(1) as f64;
        if ratio > s.schema.max_reject_ratio {
            let lines: Vec<String> =
                outcome.rejects.iter().take(5).map(|r| format!("line {}: {}", r.line, r.message)).collect();
            return Err((
                FileStatus::Failed,
                format!(
                    "{rejected} of {} rows rejected ({:.2}%), more than [schema] max_reject_ratio = {}; first: {}",
                    outcome.rows_read,
                    ratio * 100.0,
                    s.schema.max_reject_ratio,
                    lines.join("; ")
                ),
            ));
        }
    }

    if let Some(persons) = &ctx.persons {
        persons.sync(vault_mark).map_err(|e| (FileStatus::Error, e))?;
    }
    if let Some(hook) = before_publish {
        hook(&names, &outcome.columns).map_err(|e| (FileStatus::Error, e))?;
    }
    // Every part is complete; publish each CSV, then its manifest, in part order.
    let total = parts.len();
    for (part, name) in parts.into_iter().zip(&names) {
        let published = part.output.commit().map_err(|e| {
            let done = if part.part > 1 {
                format!(" (parts 1 to {} of {total} were published)", part.part - 1)
            } else {
                String::new()
            };
            (FileStatus::Error, format!("{e}{done}"))
        })?;
        let mut out = OutputReport {
            path: published,
            part: part.part,
            bytes: part.bytes,
            sha256: part.sha256,
            rows: part.rows,
            data_keys: part.data_keys.iter().map(|r| r.dek_id.clone()).collect(),
            manifest: None,
        };
        match publish_manifest(s, sink, name, &outcome.columns) {
            Ok(m) => out.manifest = m,
            Err(e) => {
                report.outputs.push(out);
                return Err((FileStatus::Error, format!("{name} was published but its manifest was not: {e}")));
            }
        }
        report.outputs.push(out);
    }
    Ok(())
}

/// The name of part `part` (1-based) of the output for `input_name`:
/// `<stem>-<timestamp>-<dek_id>.csv` for the first part and
/// `<stem>-<timestamp>-p<NNN>-<dek_id>.csv` for the next ones, so that the
/// parts of one input sort together and in order (hex digits sort before `p`).
pub fn output_name(input_name: &str, timestamp: &str, part: usize, dek_id: &crate::crypto::keys::DekId) -> String {
    if part <= 1 {
        format!("{}-{timestamp}-{dek_id}.csv", stem_of(input_name))
    } else {
        format!("{}-{timestamp}-p{part:03}-{dek_id}.csv", stem_of(input_name))
    }
}

/// Publishes CleverTap's manifest for the data file `out_name` with output
/// header `columns`, when `[sink] manifest = "clevertap"`. Returns its
/// location, or `None` when no manifest is configured.
///
/// # Errors
/// [`crate::sink::SinkError`].
pub fn publish_manifest(
    s: &Settings,
    sink: &dyn Sink,
    out_name: &str,
    columns: &[String],
) -> Result<Option<String>, crate::sink::SinkError> {
    let Some(sink_settings) = &s.sink else { return Ok(None) };
    if sink_settings.manifest != ManifestKind::Clevertap {
        return Ok(None);
    }
    let email = sink_settings.clevertap_client_email.as_deref().unwrap_or_default();
    let key_id = sink_settings.pgp.as_ref().map(|p| p.key_id.as_str());
    let plan = plan_for_manifest(s, columns);
    let body = manifest::clevertap_manifest(out_name, email, key_id, &plan);
    let name = manifest::manifest_name(out_name);
    let mut m = sink.create(&name)?;
    std::io::Write::write_all(&mut m, &body).map_err(|e| crate::sink::SinkError::Io {
        op: "writing",
        target: name.clone(),
        source: e,
    })?;
    m.commit().map(Some)
}

fn plan_for_manifest(s: &Settings, output_columns: &[String]) -> crate::transform::Plan {
    use crate::settings::{Action, CtType, Normalize};
    use crate::transform::{Plan, PlannedColumn};
    let columns = output_columns
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let spec = s.schema.columns.iter().find(|c| &c.name == name && c.action != Action::Drop);
            PlannedColumn {
                name: name.clone(),
                input_name: spec.map_or_else(|| name.clone(), |c| c.from.clone()),
                input_index: i,
                action: spec.map_or(Action::Keep, |c| c.action),
                normalize: spec.map_or(Normalize::None, |c| c.normalize),
                required: false,
                ct_name: spec.map_or_else(|| name.clone(), |c| c.ct_name.clone()),
                ct_type: spec.map_or(CtType::String, |c| c.ct_type),
                identity: false,
            }
        })
        .collect();
    Plan { input_width: output_columns.len(), columns, dropped_unknown: Vec::new() }
}

/// One finding as text: column, kind, counts, first lines. Never values.
pub fn describe_finding(f: &crate::audit::scan::Finding) -> String {
    let lines: Vec<String> = f.lines.iter().map(u64::to_string).collect();
    format!(
        "column {:?}: {} in {} of {} values, {} confidence (lines {})",
        f.column,
        f.kind.as_str(),
        f.matched,
        f.scanned,
        f.confidence.as_str(),
        lines.join(", ")
    )
}

/// Findings of the scanned `keep` columns under `[audit]`, and warnings for
/// kept columns whose header looks like a PII name.
pub fn audit_findings(
    s: &Settings,
    scanners: &[(String, crate::audit::scan::ColumnScanner)],
) -> (Vec<crate::audit::scan::Finding>, Vec<String>) {
    let mut findings = Vec::new();
    let mut hints = Vec::new();
    for (name, sc) in scanners {
        findings.extend(sc.findings(name, &s.audit.thresholds));
        if let Some(h) = crate::audit::scan::name_hint(name) {
            hints.push(format!(
                "column {name:?} is kept as it is but its name suggests {h}; check that it holds no personal data"
            ));
        }
    }
    (findings, hints)
}
