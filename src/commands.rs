//! The commands: each resolves its CLI arguments into settings, runs, and
//! returns an exit status. The only module that knows both the CLI types
//! and the core.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, Context as _};
use tracing::{error, info, warn};

use crate::accesslog;
use crate::cli::{AccessLogCommand, Cli, Command, KeysCommand};
use crate::crypto::aead::{self, DataKey};
use crate::crypto::keys::DekId;
use crate::crypto::prf::Pseudonymizer;
use crate::error::{failed, usage, CommandError, ExitStatus};
use crate::keyring::Keyring;
use crate::keystore;
use crate::process::{self, Context, KeystoreKeys};
use crate::report::{self, FileReport, FileStatus, Reporter, RunReport, Silent};
use crate::settings::{Action, DekScope, Location, Settings};
use crate::sink::local::LocalSink;
use crate::sink::Sink;
use crate::transform::engine::EngineOptions;
use crate::transform::normalize;
use crate::ui;
use crate::vault::{Revealed, Vault};

type CmdResult = Result<ExitStatus, CommandError>;

/// Runs a parsed command line; prints errors as `piigate: ...`.
pub fn run(cli: Cli) -> ExitStatus {
    ui::init_logging(&cli.global);
    let bars = ui::bars_enabled(&cli.global);
    let result = match cli.command {
        Command::Keygen { keyring } => keygen(&keyring),
        Command::Keys { command } => keys_cmd(command),
        Command::Process { config, output, jobs, files } => process_cmd(&config, output, jobs, &files, bars),
        Command::Run { config, watch, dry_run, wait, jobs } => run_cmd(&config, watch, dry_run, wait, jobs, bars),
        Command::Audit { config, json, sample, jobs, files } => audit_cmd(&config, json, sample, jobs, &files),
        Command::Decrypt { config, reason, columns, file, output } => {
            decrypt(&config, &reason, columns, &file, &output)
        }
        Command::Pseudonym { config, column, reason, value } => pseudonym(&config, column.as_deref(), &reason, &value),
        Command::AccessLog { command: AccessLogCommand::Verify { config } } => verify_log(&config),
        Command::Forget { config, identity, pseudonym, from, reason } => {
            forget(&config, &identity, &pseudonym, from.as_deref(), &reason)
        }
        Command::Reveal { config, reason, ids } => reveal(&config, &reason, &ids),
    };
    match result {
        Ok(s) => s,
        Err(e) => {
            error!("{}", error_chain(&e.source));
            e.status
        }
    }
}

/// The error and its causes, joined with ": ", skipping a cause whose text
/// the message already carries.
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

fn load_settings(config: &Path) -> Result<Settings, CommandError> {
    Settings::load(config).map_err(usage)
}

fn load_keyring(path: &Path) -> Result<Keyring, CommandError> {
    let ring = Keyring::load(path).map_err(usage)?;
    warn_keyring(&ring);
    Ok(ring)
}

/// The configured keyring, with the KEK from `[keys] kek_command` when set.
fn load_keys(settings: &Settings) -> Result<Keyring, CommandError> {
    let external = match &settings.kek_command {
        None => None,
        Some(kc) => {
            let kek = crate::kek_command::fetch(&kc.command, &kc.dir).map_err(usage)?;
            Some((kc.kek_id.clone(), kek))
        }
    };
    let ring = Keyring::load_with(&settings.keyring, external).map_err(usage)?;
    warn_keyring(&ring);
    Ok(ring)
}

/// [`load_keys`] plus the earlier KEKs of `[keys.previous_kek_commands]`,
/// for the commands that unwrap stored data keys.
fn load_keys_to_unwrap(settings: &Settings) -> Result<Keyring, CommandError> {
    let mut ring = load_keys(settings)?;
    for kc in &settings.previous_kek_commands {
        let kek = crate::kek_command::fetch(&kc.command, &kc.dir)
            .with_context(|| format!("[keys.previous_kek_commands] {}", kc.kek_id))
            .map_err(usage)?;
        ring.add_external_kek(kc.kek_id.clone(), kek).map_err(usage)?;
    }
    Ok(ring)
}

fn warn_keyring(ring: &Keyring) {
    let path = ring.path();
    if ring.is_demo() {
        warn!(
            "keyring {} is a DEMO keyring with published keys: never use it for real data (create one with `piigate keygen --keyring PATH`)",
            path.display()
        );
    }
    if let Some(mode) = ring.loose_permissions() {
        warn!("keyring {} has mode {mode:o}: others can read it; run `chmod 600 {}`", path.display(), path.display());
    }
}

/// The AES-SIV cipher when the schema has `encrypt-deterministic` columns;
/// a keyring without `deterministic_key` is then a key error that says how
/// to add one.
fn deterministic_cipher(
    settings: &Settings,
    ring: &Keyring,
) -> Result<Option<crate::crypto::siv::DeterministicCipher>, CommandError> {
    let cols = settings.schema.names_with(&[Action::EncryptDeterministic]);
    if cols.is_empty() {
        return Ok(None);
    }
    match ring.deterministic_key() {
        Some(k) => Ok(Some(crate::crypto::siv::DeterministicCipher::new(k))),
        None => Err(usage(anyhow!(
            "keyring {} has no deterministic_key, which the encrypt-deterministic column(s) {} need; add one with `piigate keys add-deterministic-key --config {}` (a keyring made by an older piigate lacks it)",
            ring.path().display(),
            cols.join(", "),
            settings.config_path.display()
        ))),
    }
}

fn keygen(path: &Path) -> CmdResult {
    let mut ring = Keyring::generate(path);
    if path.file_name().is_some_and(|n| n.to_string_lossy().contains("DEMO")) {
        ring.set_demo(true);
    }
    ring.create_new().map_err(usage)?;
    info!("created keyring {} (mode 0600) with KEK {}", path.display(), ring.active().0);
    Ok(ExitStatus::Ok)
}

fn keys_cmd(command: KeysCommand) -> CmdResult {
    match command {
        KeysCommand::Rotate { keyring, config } => rotate(keyring.as_deref(), config.as_deref()),
        KeysCommand::Rewrap { config } => rewrap(&config),
        KeysCommand::Status { config, json } => key_status(&config, json),
        KeysCommand::Retire { config, kek_id } => retire(&config, &kek_id),
        KeysCommand::AddDeterministicKey { keyring, config } => {
            add_deterministic_key(keyring.as_deref(), config.as_deref())
        }
    }
}

/// Appends a key-management entry to the access log. The operation has
/// already happened, so a failure here says so and how to record it.
fn log_key_event(
    settings: &Settings,
    action: &str,
    file: &Path,
    values: u64,
    reason: &str,
) -> Result<(), CommandError> {
    accesslog::append(
        &settings.state_dir,
        accesslog::Access { action, file: Some(file.display().to_string()), columns: Vec::new(), values, reason },
    )
    .map(|_| ())
    .map_err(|e| {
        failed(anyhow!(
            "{action} completed, but the access log could not record it: {e}; fix the state dir and note the change by hand"
        ))
    })
}

/// Whether a `piigate run` holds the run lock in `state_dir` right now.
fn run_in_progress(state_dir: &Path) -> bool {
    use fs4::fs_std::FileExt;
    let Ok(f) = std::fs::OpenOptions::new().read(true).write(true).open(state_dir.join("piigate.lock")) else {
        return false;
    };
    match f.try_lock_exclusive() {
        Ok(true) => {
            let _ = FileExt::unlock(&f);
            false
        }
        _ => true,
    }
}

fn rotate(keyring: Option<&Path>, config: Option<&Path>) -> CmdResult {
    let settings = config.map(load_settings).transpose()?;
    let path = match (keyring, &settings) {
        (Some(p), _) => p.to_owned(),
        (None, Some(s)) => s.keyring.clone(),
        (None, None) => return Err(usage(anyhow!("pass --keyring PATH or --config CFG"))),
    };
    if let Some(kc) = settings.as_ref().and_then(|s| s.kek_command.as_ref()) {
        return Err(usage(anyhow!(
            "the active KEK comes from [keys] kek_command (KEK {}): make a new key in the KMS, point kek_command and a new kek_id at it, and list the old one under [keys.previous_kek_commands] until `keys rewrap` has moved every data key",
            kc.kek_id
        )));
    }
    let mut ring = load_keyring(&path)?;
    let id = ring.rotate();
    ring.save().map_err(usage)?;
    let cfg = config.map_or_else(|| "CFG".to_owned(), |c| c.display().to_string());
    info!(
        "keyring {}: new active KEK {id}; earlier KEKs are kept for decryption. Next: `piigate keys rewrap --config {cfg}` re-wraps the stored data keys under it",
        path.display()
    );
    if let Some(s) = &settings {
        log_key_event(s, "keys-rotate", &path, 0, &format!("new active KEK {id}"))?;
        if run_in_progress(&s.state_dir) {
            warn!("a `piigate run` is in progress and keeps the keyring it loaded: restart it so that new data keys are wrapped under {id}");
        }
    }
    Ok(ExitStatus::Ok)
}

fn rewrap(config: &Path) -> CmdResult {
    let settings = load_settings(config)?;
    let ring = load_keys_to_unwrap(&settings)?;
    let active = ring.active().0.clone();
    let summary = keystore::rewrap(&settings.keystore, &ring).map_err(usage)?;
    if crate::vault::exists(&settings.vault) {
        let v = Vault::open(&settings.vault, &ring, false, None).map_err(usage)?;
        let vs = v.rewrap(ring.path()).map_err(usage)?;
        let from = vs.from.iter().map(|(k, n)| format!("{n} from {k}")).collect::<Vec<_>>().join(", ");
        info!(
            person_keys = vs.keys,
            rewrapped = vs.rewrapped,
            "key vault {}: {} of {} person key(s) re-wrapped under KEK {active}{}",
            settings.vault.display(),
            vs.rewrapped,
            vs.keys,
            if from.is_empty() { String::new() } else { format!(" ({from})") }
        );
        log_key_event(
            &settings,
            "keys-rewrap",
            &settings.vault,
            vs.rewrapped as u64,
            &format!("re-wrapped {} of {} person keys under KEK {active}", vs.rewrapped, vs.keys),
        )?;
    }
    let from = summary.from.iter().map(|(k, n)| format!("{n} from {k}")).collect::<Vec<_>>().join(", ");
    info!(
        records = summary.records,
        rewrapped = summary.rewrapped,
        unchanged = summary.unchanged,
        kek = %active,
        "keystore {}: {} data key record(s) re-wrapped under KEK {active}{}, {} already under it",
        settings.keystore.display(),
        summary.rewrapped,
        if from.is_empty() { String::new() } else { format!(" ({from})") },
        summary.unchanged
    );
    log_key_event(
        &settings,
        "keys-rewrap",
        &settings.keystore,
        summary.rewrapped as u64,
        &format!("re-wrapped {} of {} data keys under KEK {active}", summary.rewrapped, summary.records),
    )?;
    if run_in_progress(&settings.state_dir) {
        warn!("a `piigate run` is in progress: if it loaded the keyring before the rotation it still wraps new data keys under the old KEK; restart it and run `piigate keys rewrap` again");
    }
    Ok(ExitStatus::Ok)
}

/// Stored data keys per KEK id (a dek_id counts once per KEK that wraps a
/// record of it).
fn data_keys_per_kek(records: &[keystore::DekRecord]) -> std::collections::BTreeMap<String, usize> {
    let mut seen = std::collections::HashSet::new();
    let mut per = std::collections::BTreeMap::new();
    for r in records {
        if seen.insert((r.kek_id.as_str(), r.dek_id.as_str())) {
            *per.entry(r.kek_id.clone()).or_insert(0usize) += 1;
        }
    }
    per
}

#[derive(serde::Serialize)]
struct KekStatus {
    kek_id: String,
    active: bool,
    source: &'static str,
    data_keys: usize,
}

#[derive(serde::Serialize)]
struct MissingKek {
    kek_id: String,
    data_keys: usize,
}

#[derive(serde::Serialize)]
struct KeyStatus {
    keyring: String,
    keystore: String,
    data_keys: usize,
    /// Per-person keys in the key vault (counted in each KEK's data_keys too).
    person_keys: usize,
    keks: Vec<KekStatus>,
    missing: Vec<MissingKek>,
    deterministic_key: bool,
}

fn key_status(config: &Path, json: bool) -> CmdResult {
    let settings = load_settings(config)?;
    let ring = load_keys_to_unwrap(&settings)?;
    let records = keystore::records(&settings.keystore).map_err(usage)?;
    let mut per = data_keys_per_kek(&records);
    let distinct: std::collections::HashSet<&str> = records.iter().map(|r| r.dek_id.as_str()).collect();
    let mut person_keys = 0usize;
    if crate::vault::exists(&settings.vault) {
        let v = Vault::open(&settings.vault, &ring, false, None).map_err(usage)?;
        for (kek, n) in v.keys_per_kek().map_err(usage)? {
            person_keys += n;
            *per.entry(kek).or_insert(0) += n;
        }
    }
    let keks: Vec<KekStatus> = ring
        .kek_ids()
        .map(|id| KekStatus {
            kek_id: id.to_string(),
            active: ring.active().0 == id,
            source: if settings.previous_kek_commands.iter().any(|k| &k.kek_id == id) {
                "previous_kek_commands"
            } else if ring.is_external(id) {
                "kek_command"
            } else {
                "keyring"
            },
            data_keys: per.remove(id.as_str()).unwrap_or(0),
        })
        .collect();
    let missing: Vec<MissingKek> =
        per.into_iter().map(|(kek_id, data_keys)| MissingKek { kek_id, data_keys }).collect();
    let status = KeyStatus {
        keyring: settings.keyring.display().to_string(),
        keystore: settings.keystore.display().to_string(),
        data_keys: distinct.len(),
        person_keys,
        keks,
        missing,
        deterministic_key: ring.deterministic_key().is_some(),
    };
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &status).map_err(|e| failed(anyhow!(e)))?;
        let _ = writeln!(out);
    } else {
        let _ = writeln!(out, "keyring  {}", status.keyring);
        let _ = writeln!(out, "keystore {} ({} data key(s))", status.keystore, status.data_keys);
        if status.person_keys > 0 {
            let _ = writeln!(out, "vault    {} ({} person key(s))", settings.vault.display(), status.person_keys);
        }
        let _ = writeln!(out, "{:<20} {:<7} {:<22} data keys", "KEK", "active", "source");
        for k in &status.keks {
            let _ = writeln!(
                out,
                "{:<20} {:<7} {:<22} {}",
                k.kek_id,
                if k.active { "yes" } else { "no" },
                k.source,
                k.data_keys
            );
        }
        for m in &status.missing {
            let _ = writeln!(out, "{:<20} {:<7} {:<22} {}", m.kek_id, "-", "MISSING", m.data_keys);
        }
        let _ = writeln!(
            out,
            "deterministic key: {}",
            if status.deterministic_key { "present" } else { "absent (`piigate keys add-deterministic-key`)" }
        );
    }
    for m in &status.missing {
        warn!(
            "{} data key(s) are wrapped by KEK {}, which the keyring does not hold: their files cannot be decrypted until that KEK is restored",
            m.data_keys, m.kek_id
        );
    }
    let old = status.keks.iter().filter(|k| !k.active && k.data_keys > 0).count();
    if old > 0 {
        info!(
            "{old} non-active KEK(s) still wrap data keys: `piigate keys rewrap --config {}` moves them to the active KEK",
            config.display()
        );
    }
    log_key_event(&settings, "keys-status", &settings.keystore, status.data_keys as u64, "key status shown")?;
    Ok(ExitStatus::Ok)
}

fn retire(config: &Path, kek_id: &str) -> CmdResult {
    let settings = load_settings(config)?;
    let id: crate::crypto::keys::KekId = kek_id.parse().map_err(|e| usage(anyhow!("KEK id {kek_id:?}: {e}")))?;
    let mut ring = load_keys_to_unwrap(&settings)?;
    // The keystore lock keeps runs from appending while the check and the
    // keyring change happen; the retired mark then keeps a process that
    // loaded the keyring earlier from wrapping under this KEK afterwards.
    let _lock = keystore::lock(&settings.keystore).map_err(usage)?;
    let records = keystore::records(&settings.keystore).map_err(usage)?;
    let mut needing = data_keys_per_kek(&records).get(id.as_str()).copied().unwrap_or(0);
    if crate::vault::exists(&settings.vault) {
        let v = Vault::open(&settings.vault, &ring, false, None).map_err(usage)?;
        needing += v.keys_per_kek().map_err(usage)?.get(id.as_str()).copied().unwrap_or(0);
    }
    ring.retire(&id).map_err(usage)?;
    if needing > 0 {
        return Err(usage(anyhow!(
            "KEK {id} still wraps {needing} stored data key(s); run `piigate keys rewrap --config {}` first, then retire it",
            config.display()
        )));
    }
    keystore::mark_retired(&settings.keystore, id.as_str()).map_err(usage)?;
    ring.save().map_err(usage)?;
    info!("keyring {}: KEK {id} removed; no stored data key needed it", settings.keyring.display());
    if run_in_progress(&settings.state_dir) {
        warn!("a `piigate run` is in progress: if it loaded the keyring before KEK {id} was rotated out, its files fail (and stay in the inbox) until it is restarted");
    }
    log_key_event(&settings, "keys-retire", &settings.keyring, 0, &format!("retired KEK {id}"))?;
    Ok(ExitStatus::Ok)
}

fn add_deterministic_key(keyring: Option<&Path>, config: Option<&Path>) -> CmdResult {
    let settings = config.map(load_settings).transpose()?;
    let path = match (keyring, &settings) {
        (Some(p), _) => p.to_owned(),
        (None, Some(s)) => s.keyring.clone(),
        (None, None) => return Err(usage(anyhow!("pass --keyring PATH or --config CFG"))),
    };
    let mut ring = match &settings {
        Some(s) => load_keys(s)?,
        None => load_keyring(&path)?,
    };
    if !ring.add_deterministic_key() {
        return Err(usage(anyhow!(
            "keyring {} already has a deterministic_key; it is never replaced, since that would change every deterministic token",
            path.display()
        )));
    }
    ring.save().map_err(usage)?;
    info!("keyring {}: deterministic_key added (AES-SIV, 64 bytes)", path.display());
    if let Some(s) = &settings {
        log_key_event(s, "keys-add-deterministic-key", &path, 0, "deterministic key added")?;
    }
    Ok(ExitStatus::Ok)
}

/// The key vault's per-person keys when `[keys] dek_scope = "identity"`
/// (the vault is created, mode 0600, on first use).
fn person_keys(
    settings: &Settings,
    keyring: &Keyring,
) -> Result<Option<Arc<dyn crate::transform::PersonKeySource>>, CommandError> {
    if settings.dek_scope != DekScope::Identity {
        return Ok(None);
    }
    let vault =
        Vault::open(&settings.vault, keyring, true, Some(keystore::retired_path(&settings.keystore))).map_err(usage)?;
    Ok(Some(Arc::new(process::VaultKeys::new(Arc::new(vault), settings.forgotten, keyring.path().to_owned()))))
}

/// The per-person key store's housekeeping between files
/// ([`crate::transform::PersonKeySource::compact`]), unless the command was
/// interrupted.
fn compact_persons(persons: Option<&dyn crate::transform::PersonKeySource>, cancel: &AtomicBool) {
    if let Some(p) = persons.filter(|_| !cancel.load(Ordering::Relaxed)) {
        p.compact();
    }
}

fn build_pool(jobs: Option<usize>) -> Result<(rayon::ThreadPool, usize), CommandError> {
    let n = match jobs {
        Some(0) => return Err(usage(anyhow!("--jobs must be at least 1"))),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("piigate-transform-{i}"))
        .build()
        .map_err(|e| usage(anyhow!("cannot start {n} worker threads: {e}")))?;
    Ok((pool, n))
}

/// Progress bars on stderr, or nothing.
fn make_reporter(bars: bool) -> Box<dyn Reporter> {
    if bars {
        Box::new(ui::BarReporter::new())
    } else {
        Box::new(Silent)
    }
}

fn cancel_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, flag.clone());
    }
    flag
}

/// The OpenPGP recipient of `[sink.pgp]`, loaded and checked once per run.
fn load_recipient(settings: &Settings) -> Result<Option<crate::sink::pgp::Recipient>, CommandError> {
    let Some(pgp) = settings.sink.as_ref().and_then(|s| s.pgp.as_ref()) else { return Ok(None) };
    let r = crate::sink::pgp::Recipient::load(&pgp.recipient_key, &pgp.key_id).map_err(|e| usage(anyhow!(e)))?;
    info!("OpenPGP: encrypting outputs to key {} (CleverTap Key ID {})", r.fingerprint, r.clevertap_key_id);
    Ok(Some(r))
}

fn log_file(r: &FileReport) {
    match r.status {
        FileStatus::Ok => {
            let out = match r.outputs.len() {
                0 => "-".to_owned(),
                1 => r.outputs[0].path.clone(),
                n => format!("{} (+{} more parts)", r.outputs[0].path, n - 1),
            };
            info!(
                file = %r.input,
                rows = r.rows_read,
                written = r.rows_written,
                rejected = r.rows_rejected,
                output = %out,
                seconds = r.seconds,
                "{}: {} rows, {} written, {} rejected -> {}",
                r.input, r.rows_read, r.rows_written, r.rows_rejected, out
            );
        }
        _ => {
            error!(file = %r.input, status = ?r.status, "{}: {}", r.input, r.error.as_deref().unwrap_or("failed"))
        }
    }
}

fn process_cmd(
    config: &Path,
    output: Option<PathBuf>,
    jobs: Option<usize>,
    files: &[PathBuf],
    bars: bool,
) -> CmdResult {
    let settings = load_settings(config)?;
    let keyring = load_keys(&settings)?;
    let recipient = load_recipient(&settings)?;
    let sink: Box<dyn Sink> = match (output, settings.sink.as_ref().map(|s| &s.location)) {
        (Some(dir), _) => Box::new(LocalSink::new(dir)),
        (None, Some(Location::Local(dir))) => Box::new(LocalSink::new(dir.clone())),
        (None, Some(Location::Sftp(..))) => {
            return Err(usage(anyhow!("the configured [sink] is SFTP; `process` writes locally: pass -o DIR")))
        }
        (None, None) => return Err(usage(anyhow!("no output folder: pass -o DIR or configure [sink]"))),
    };
    let (pool, threads) = build_pool(jobs)?;
    let cancel = cancel_flag();
    let keys = KeystoreKeys::new(&keyring, settings.keystore.clone());
    let reporter = make_reporter(bars);
    let reporter: &dyn Reporter = &*reporter;
    let started = time::OffsetDateTime::now_utc();
    let ctx = Context {
        settings: &settings,
        pseudonymizer: Pseudonymizer::new(keyring.pseudonym_key()),
        deterministic: deterministic_cipher(&settings, &keyring)?,
        keys: &keys,
        pool: &pool,
        reporter,
        cancel: &cancel,
        timestamp: report::compact_timestamp(started),
        options: EngineOptions { sequential: threads == 1, ..EngineOptions::default() },
        recipient: recipient.as_ref(),
        persons: person_keys(&settings, &keyring)?,
    };
    let started_text = report::now_rfc3339();
    let next = AtomicUsize::new(0);
    let results: std::sync::Mutex<Vec<(usize, FileReport)>> = std::sync::Mutex::new(Vec::new());
    let parallel_files = threads.min(files.len()).max(1);
    std::thread::scope(|scope| {
        for _ in 0..parallel_files {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(path) = files.get(i) else { break };
                if cancel.load(Ordering::Relaxed) {
                    break;
                }
                let r = process_local_file(&ctx, path, &*sink);
                log_file(&r);
                results.lock().unwrap_or_else(|e| e.into_inner()).push((i, r));
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.sort_by_key(|(i, _)| *i);
    let files_reports: Vec<FileReport> = results.into_iter().map(|(_, r)| r).collect();
    let bad = files_reports.iter().filter(|r| r.status != FileStatus::Ok).count();
    let total = files.len();
    let run = RunReport {
        run_id: report::run_id("process", started),
        command: "process".into(),
        started: started_text,
        finished: report::now_rfc3339(),
        version: env!("CARGO_PKG_VERSION").into(),
        files: files_reports,
    };
    let report_path = run
        .write(&settings.state_dir)
        .map_err(|e| failed(anyhow!("cannot write the run report under {}: {e}", settings.state_dir.display())))?;
    compact_persons(ctx.persons.as_deref(), &cancel);
    let skipped = total - run.files.len();
    info!(
        files = total,
        ok = total - bad - skipped,
        failed = bad,
        report = %report_path.display(),
        "{} of {total} files processed, {bad} failed{}; report {}",
        total - bad - skipped,
        if skipped > 0 { format!(", {skipped} not started (interrupted)") } else { String::new() },
        report_path.display()
    );
    Ok(if bad > 0 || skipped > 0 { ExitStatus::FilesFailed } else { ExitStatus::Ok })
}

fn process_local_file(ctx: &Context<'_>, path: &Path, sink: &dyn Sink) -> FileReport {
    let display = path.display().to_string();
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| display.clone());
    match std::fs::File::open(path) {
        Ok(f) => {
            let size = f.metadata().ok().map(|m| m.len());
            process::process_file(ctx, &display, &name, size, f, sink, None)
        }
        Err(e) => {
            let mut r = FileReport::new(display.clone());
            r.error = Some(format!("cannot open {display}: {e}"));
            r
        }
    }
}

/// Loads and unwraps data keys on demand: from the keystore, then (with
/// per-person keys) from the key vault.
struct KeyCache<'a> {
    ring: &'a Keyring,
    records: HashMap<String, keystore::DekRecord>,
    /// Boxed, so that growing the map moves pointers, not key schedules
    /// (which would stay behind, unzeroized, in the freed table).
    keys: HashMap<DekId, Option<Box<DataKey>>>,
    /// The key vault, when `[keys] dek_scope = "identity"`.
    vault: Option<Vault>,
}

impl KeyCache<'_> {
    /// The key named `id`; `None` when it is a person key that no longer
    /// exists (the person was forgotten).
    fn get(&mut self, id: &DekId) -> anyhow::Result<Option<&DataKey>> {
        if !self.keys.contains_key(id) {
            let key = match (self.records.get(id.as_str()), &self.vault) {
                (Some(rec), _) => Some(keystore::unwrap_record(self.ring, rec)?),
                (None, Some(v)) => v.key_by_dek_id(id, self.ring.path())?,
                (None, None) => return Err(anyhow!("data key {id} is not in the keystore")),
            };
            self.keys.insert(*id, key.map(Box::new));
        }
        Ok(self.keys[id].as_deref())
    }
}

fn decrypt(config: &Path, reason: &str, columns: Option<Vec<String>>, file: &Path, output: &Path) -> CmdResult {
    if reason.trim().is_empty() {
        return Err(usage(anyhow!("--reason must say why the values are needed; it is recorded in the access log")));
    }
    let settings = load_settings(config)?;
    let keyring = load_keys_to_unwrap(&settings)?;
    let records = match keystore::load(&settings.keystore) {
        Err(keystore::KeystoreError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound && settings.dek_scope == DekScope::Identity =>
        {
            HashMap::new()
        }
        other => other.map_err(usage)?,
    };
    let vault = match settings.dek_scope {
        DekScope::Identity => Some(Vault::open(&settings.vault, &keyring, false, None).map_err(usage)?),
        DekScope::File => None,
    };
    let mut cache = KeyCache { ring: &keyring, records, keys: HashMap::new(), vault };

    let input = std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display())).map_err(usage)?;
    let mut rdr = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(input);
    let mut header = csv::ByteRecord::new();
    if !rdr.read_byte_record(&mut header).map_err(|e| failed(anyhow!("{}: {e}", file.display())))? {
        return Err(failed(anyhow!("{}: empty file", file.display())));
    }
    let names: Vec<String> = header.iter().map(|h| String::from_utf8_lossy(h).into_owned()).collect();
    let encrypted = settings.schema.names_with(&[Action::Encrypt, Action::EncryptDeterministic]);
    let deterministic_names = settings.schema.names_with(&[Action::EncryptDeterministic]);
    let wanted: Vec<String> = match columns {
        Some(cols) => {
            for c in &cols {
                if !encrypted.contains(&c.as_str()) {
                    return Err(usage(anyhow!(
                        "--columns: {c:?} is not an encrypted column of the schema (encrypted: {})",
                        encrypted.join(", ")
                    )));
                }
            }
            cols
        }
        None => encrypted.iter().map(|s| s.to_string()).collect(),
    };
    let targets: Vec<(usize, String)> =
        names.iter().enumerate().filter(|(_, n)| wanted.contains(n)).map(|(i, n)| (i, n.clone())).collect();
    // A deterministic column needs the key up front; any column may hold
    // either kind of token (a schema may have changed), so cells are told
    // apart by their version prefix.
    let deterministic = if targets.iter().any(|(_, n)| deterministic_names.contains(&n.as_str())) {
        deterministic_cipher(&settings, &keyring)?
    } else {
        keyring.deterministic_key().map(crate::crypto::siv::DeterministicCipher::new)
    };
    if targets.is_empty() {
        return Err(failed(anyhow!(
            "{}: none of the columns {} is in the header; is this a piigate output of this schema?",
            file.display(),
            wanted.join(", ")
        )));
    }
    let dir = output.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if output.exists() {
        return Err(usage(anyhow!("{} already exists; choose a new output path", output.display())));
    }
    let tmp = tempfile::Builder::new()
        .prefix(&format!("{}.", output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()))
        .suffix(".partial")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))
        .map_err(usage)?;
    let mut w = csv::Writer::from_writer(std::io::BufWriter::new(tmp.reopen().map_err(|e| failed(anyhow!(e)))?));
    w.write_byte_record(&header).map_err(|e| failed(anyhow!(e)))?;
    let mut rec = csv::ByteRecord::new();
    let mut out = csv::ByteRecord::new();
    let mut values = 0u64;
    let mut erased = 0u64;
    while rdr.read_byte_record(&mut rec).map_err(|e| failed(anyhow!("{}: {e}", file.display())))? {
        let line = rec.position().map_or(0, |p| p.line());
        out.clear();
        for (i, field) in rec.iter().enumerate() {
            match targets.iter().find(|(t, _)| *t == i) {
                Some((_, col)) if !field.is_empty() => {
                    let plain = (|| -> anyhow::Result<Option<Vec<u8>>> {
                        if field.starts_with(b"pd") {
                            let det = deterministic.as_ref().ok_or_else(|| {
                                anyhow!(
                                    "a deterministic (pd) token, but keyring {} has no deterministic_key; use the keyring the file was made with",
                                    keyring.path().display()
                                )
                            })?;
                            return Ok(Some(det.decrypt_token(col.as_bytes(), field)?));
                        }
                        let (id, payload) = aead::parse_token(field)?;
                        match cache.get(&id)? {
                            Some(key) => Ok(Some(key.decrypt_payload(col.as_bytes(), &payload)?)),
                            None => Ok(None),
                        }
                    })()
                    .map_err(|e| failed(anyhow!("{} line {line}, column {col:?}: {e:#}", file.display())))?;
                    match plain {
                        Some(plain) => {
                            values += 1;
                            out.push_field(&plain);
                        }
                        // A forgotten person: their key is destroyed.
                        None => {
                            erased += 1;
                            out.push_field(b"");
                        }
                    }
                }
                _ => out.push_field(field),
            }
        }
        w.write_byte_record(&out).map_err(|e| failed(anyhow!(e)))?;
    }
    let inner = w.into_inner().map_err(|e| failed(anyhow!("{}", e.error())))?;
    inner.into_inner().map_err(|e| failed(anyhow!("{}", e.error())))?.sync_all().map_err(|e| failed(anyhow!(e)))?;
    accesslog::append(
        &settings.state_dir,
        accesslog::Access {
            action: "decrypt",
            file: Some(file.display().to_string()),
            columns: targets.iter().map(|(_, c)| c.clone()).collect(),
            values,
            reason,
        },
    )
    .map_err(|e| failed(anyhow!("not decrypted: the access log could not be written: {e}")))?;
    tmp.persist_noclobber(output).map_err(|e| failed(anyhow!("cannot write {}: {}", output.display(), e.error)))?;
    info!(
        values,
        forgotten_cells = erased,
        "decrypted {values} values in {} column(s) of {} into {} (logged in the access log); {erased} cell(s) of forgotten persons left empty",
        targets.len(),
        file.display(),
        output.display()
    );
    Ok(ExitStatus::Ok)
}

fn pseudonym(config: &Path, column: Option<&str>, reason: &str, value: &str) -> CmdResult {
    let settings = load_settings(config)?;
    let keyring = load_keys(&settings)?;
    let spec = match column {
        Some(c) => settings
            .schema
            .columns
            .iter()
            .find(|s| s.name == c && s.action == Action::Pseudonymize)
            .ok_or_else(|| usage(anyhow!("--column {c:?} is not a pseudonymize column of the schema")))?,
        None => settings
            .schema
            .columns
            .iter()
            .find(|s| s.action == Action::Pseudonymize)
            .ok_or_else(|| usage(anyhow!("the schema has no pseudonymize column")))?,
    };
    let mut owned = String::new();
    let raw = if value == "-" {
        std::io::stdin().lock().read_line(&mut owned).map_err(|e| usage(anyhow!("reading stdin: {e}")))?;
        owned.trim_end_matches(['\r', '\n'])
    } else {
        value
    };
    let normalized = normalize::normalize(spec.normalize, raw, settings.schema.default_region)
        .map_err(|_| usage(anyhow!("the value is not a possible phone number")))?;
    if normalized.is_empty() {
        return Err(usage(anyhow!("the value is empty after normalization")));
    }
    let p =
        Pseudonymizer::new(keyring.pseudonym_key()).pseudonym(&settings.schema.pseudonym_prefix, normalized.as_bytes());
    accesslog::append(
        &settings.state_dir,
        accesslog::Access { action: "pseudonym", file: None, columns: vec![spec.name.clone()], values: 1, reason },
    )
    .map_err(|e| failed(anyhow!("not computed: the access log could not be written: {e}")))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{p}").map_err(|e| failed(anyhow!(e)))?;
    Ok(ExitStatus::Ok)
}

/// The settings and key vault of `forget` and `reveal`, which need
/// `dek_scope = "identity"` and an existing vault.
fn open_vault(config: &Path) -> Result<(Settings, Keyring, Vault), CommandError> {
    let settings = load_settings(config)?;
    if settings.dek_scope != DekScope::Identity {
        return Err(usage(anyhow!(
            "{}: [keys] dek_scope is \"file\": persons have no keys of their own to destroy or read. Set dek_scope = \"identity\" (new outputs only) to use forget and reveal",
            config.display()
        )));
    }
    let keyring = load_keys_to_unwrap(&settings)?;
    let vault = Vault::open(&settings.vault, &keyring, false, None).map_err(usage)?;
    Ok((settings, keyring, vault))
}

/// Whether `text` has the shape of a pseudonym: the prefix, then 26
/// characters of lowercase base32.
fn looks_like_pseudonym(text: &str, prefix: &str) -> bool {
    text.strip_prefix(prefix).is_some_and(|rest| {
        rest.len() == crate::crypto::prf::PSEUDONYM_CHARS
            && rest.bytes().all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
    })
}

fn forget(config: &Path, identities: &[String], pseudonyms: &[String], from: Option<&Path>, reason: &str) -> CmdResult {
    if identities.is_empty() && pseudonyms.is_empty() && from.is_none() {
        return Err(usage(anyhow!("name whom to forget: --identity VALUE, --pseudonym ID or --from FILE")));
    }
    let (settings, keyring, vault) = open_vault(config)?;
    let spec = settings.schema.identity_column().ok_or_else(|| usage(anyhow!("the schema has no identity column")))?;
    let prefix = &settings.schema.pseudonym_prefix;
    let pseudonymizer = Pseudonymizer::new(keyring.pseudonym_key());
    let to_pseudonym = |value: &str, what: &str| -> Result<String, CommandError> {
        let n = normalize::normalize(spec.normalize, value, settings.schema.default_region)
            .map_err(|_| usage(anyhow!("{what}: not a possible phone number")))?;
        if n.trim().is_empty() {
            return Err(usage(anyhow!("{what}: empty after normalization")));
        }
        Ok(pseudonymizer.pseudonym(prefix, n.as_bytes()))
    };
    let mut targets: Vec<String> = Vec::new();
    for (i, v) in identities.iter().enumerate() {
        targets.push(to_pseudonym(v, &format!("--identity number {}", i + 1))?);
    }
    for p in pseudonyms {
        if !looks_like_pseudonym(p, prefix) {
            return Err(usage(anyhow!(
                "--pseudonym {p:?} is not a pseudonym ({prefix} followed by 26 characters of a-z and 2-7); to name a person by email or phone use --identity or --from"
            )));
        }
        targets.push(p.clone());
    }
    if let Some(path) = from {
        let text = if path == Path::new("-") {
            let mut t = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut t)
                .map_err(|e| usage(anyhow!("reading standard input: {e}")))?;
            t
        } else {
            std::fs::read_to_string(path).map_err(|e| usage(anyhow!("cannot read {}: {e}", path.display())))?
        };
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            if looks_like_pseudonym(line.trim(), prefix) {
                targets.push(line.trim().to_owned());
            } else {
                targets.push(to_pseudonym(line, &format!("{} line {}", path.display(), i + 1))?);
            }
        }
    }
    targets.sort();
    targets.dedup();
    let summary = vault.forget(&targets).map_err(failed)?;
    accesslog::append_for(
        &settings.state_dir,
        accesslog::Access {
            action: "forget",
            file: Some(settings.vault.display().to_string()),
            columns: vec![spec.name.clone()],
            values: summary.forgotten as u64,
            reason,
        },
        targets.clone(),
    )
    .map_err(|e| {
        failed(anyhow!(
            "the keys were destroyed, but the access log could not record it: {e}; fix the state dir and note the erasure by hand"
        ))
    })?;
    info!(
        forgotten = summary.forgotten,
        unknown = summary.unknown,
        already = summary.already,
        "key vault {}: {} person(s) forgotten (their keys destroyed), {} had no key (listed as forgotten, so later rows for them follow [keys] forgotten = \"{}\"), {} already forgotten",
        settings.vault.display(),
        summary.forgotten,
        summary.unknown,
        match settings.forgotten {
            crate::settings::ForgottenPolicy::Reject => "reject",
            crate::settings::ForgottenPolicy::NewKey => "new-key",
        },
        summary.already
    );
    if !summary.log_truncated {
        warn!(
            "key vault {}: another process was reading it, so its write-ahead log could not be truncated; the destroyed keys' old pages may remain in {}-wal until the next checkpoint: run `piigate forget` again for the same persons when no run is active",
            settings.vault.display(),
            settings.vault.display()
        );
    }
    let mut out = std::io::stdout().lock();
    for p in &targets {
        let _ = writeln!(out, "{p}");
    }
    Ok(ExitStatus::Ok)
}

fn reveal(config: &Path, reason: &str, ids: &[String]) -> CmdResult {
    if reason.trim().is_empty() {
        return Err(usage(anyhow!(
            "--reason must say why the identities are needed; it is recorded in the access log"
        )));
    }
    let (settings, keyring, vault) = open_vault(config)?;
    let prefix = &settings.schema.pseudonym_prefix;
    for p in ids {
        if !looks_like_pseudonym(p, prefix) {
            return Err(usage(anyhow!("{p:?} is not a pseudonym ({prefix} followed by 26 characters of a-z and 2-7)")));
        }
    }
    let found = vault.reveal(ids, keyring.path()).map_err(failed)?;
    let revealed = found.iter().filter(|r| matches!(r, Revealed::Identity(_))).count();
    accesslog::append_for(
        &settings.state_dir,
        accesslog::Access {
            action: "reveal",
            file: Some(settings.vault.display().to_string()),
            columns: settings.schema.identity_column().map(|c| vec![c.name.clone()]).unwrap_or_default(),
            values: revealed as u64,
            reason,
        },
        ids.to_vec(),
    )
    .map_err(|e| failed(anyhow!("not revealed: the access log could not be written: {e}")))?;
    let mut out = std::io::stdout().lock();
    let mut missing = Vec::new();
    for (p, r) in ids.iter().zip(found) {
        match r {
            Revealed::Identity(i) => {
                writeln!(out, "{p}\t{i}").map_err(|e| failed(anyhow!(e)))?;
            }
            Revealed::Forgotten => missing.push(format!("{p} (forgotten: its key was destroyed)")),
            Revealed::Unknown => {
                missing.push(format!("{p} (unknown: no person key; is it a pseudonym of this deployment?)"))
            }
        }
    }
    if !missing.is_empty() {
        return Err(failed(anyhow!(
            "cannot reveal {} of {} pseudonym(s): {}",
            missing.len(),
            ids.len(),
            missing.join(", ")
        )));
    }
    Ok(ExitStatus::Ok)
}

fn verify_log(config: &Path) -> CmdResult {
    let settings = load_settings(config)?;
    match accesslog::verify(&settings.state_dir) {
        Ok(n) => {
            info!("access log {}: {n} entries, chain intact", settings.state_dir.join(accesslog::LOG_FILE).display());
            Ok(ExitStatus::Ok)
        }
        Err(e @ accesslog::AccessLogError::Tampered { .. }) => Err(failed(e)),
        Err(e) => Err(usage(e)),
    }
}

fn run_cmd(config: &Path, watch: Option<u64>, dry_run: bool, wait: bool, jobs: Option<usize>, bars: bool) -> CmdResult {
    use crate::job::{self, Decision, Job};
    use crate::sftp::Pool;
    use crate::sink::sftp::SftpSink;
    use crate::source::{local::LocalSource, sftp::SftpSource, Source};
    use fs4::fs_std::FileExt;

    let settings = load_settings(config)?;
    let src = settings
        .source
        .clone()
        .ok_or_else(|| usage(anyhow!("{}: `run` needs a [source] table (type, path, ...)", config.display())))?;
    let sink_settings = settings
        .sink
        .clone()
        .ok_or_else(|| usage(anyhow!("{}: `run` needs a [sink] table (type, path, ...)", config.display())))?;
    if watch == Some(0) {
        return Err(usage(anyhow!("--watch needs a positive number of seconds")));
    }
    let cancel = cancel_flag();
    let source_pool = match &src.location {
        Location::Sftp(s, _) => Some(Pool::new(s.clone(), cancel.clone())),
        Location::Local(_) => None,
    };
    let sink_pool = match &sink_settings.location {
        Location::Sftp(s, _) => Some(Pool::new(s.clone(), cancel.clone())),
        Location::Local(_) => None,
    };
    let source: Box<dyn Source> = match (&src.location, &source_pool) {
        (Location::Sftp(_, dir), Some(pool)) => Box::new(SftpSource::new(pool, dir.clone())),
        (Location::Local(dir), _) => Box::new(LocalSource::new(dir.clone())),
        _ => unreachable!("pool exists for SFTP"),
    };
    let local_sink;
    let sftp_sink;
    let sink: &dyn Sink = match (&sink_settings.location, &sink_pool) {
        (Location::Sftp(_, dir), Some(pool)) => {
            sftp_sink = SftpSink::new(pool, dir.clone());
            &sftp_sink
        }
        (Location::Local(dir), _) => {
            local_sink = LocalSink::new(dir.clone());
            &local_sink
        }
        _ => unreachable!("pool exists for SFTP"),
    };

    // Host-key, authentication and known_hosts problems are configuration
    // errors: report them once, before anything is touched, and never retry.
    for pool in [&source_pool, &sink_pool].into_iter().flatten() {
        if let Err(e) = pool.get() {
            return Err(if e.is_transient() { failed(e) } else { usage(e) });
        }
    }

    if dry_run {
        let keyring = load_keys(&settings)?;
        let deterministic = deterministic_cipher(&settings, &keyring)?;
        let (pool, _) = build_pool(Some(1))?;
        let keys = KeystoreKeys::new(&keyring, settings.keystore.clone());
        let ctx = Context {
            settings: &settings,
            pseudonymizer: Pseudonymizer::new(keyring.pseudonym_key()),
            deterministic: deterministic.clone(),
            keys: &keys,
            pool: &pool,
            reporter: &Silent,
            cancel: &cancel,
            timestamp: String::new(),
            options: EngineOptions::default(),
            recipient: None,
            persons: None,
        };
        let job = Job {
            ctx: &ctx,
            source: &*source,
            sink,
            state_dir: settings.state_dir.clone(),
            parallel: 1,
            on_file: &|_| {},
        };
        let planned = job::plan(&job).map_err(|e| failed(anyhow!(e)))?;
        let mut out = std::io::stdout().lock();
        let mut n = 0;
        for (e, d) in planned {
            let line = match d {
                Decision::Process => {
                    n += 1;
                    format!("process  {} ({} bytes)", e.name, e.size)
                }
                Decision::ArchiveOnly => format!("archive  {} (already published)", e.name),
                Decision::Resume(..) => format!("resume   {} (interrupted while publishing)", e.name),
                Decision::Skip(reason) => format!("skip     {}: {reason}", e.name),
            };
            let _ = writeln!(out, "{line}");
        }
        info!("dry run: {n} file(s) would be processed; nothing was changed");
        return Ok(ExitStatus::Ok);
    }

    std::fs::create_dir_all(&settings.state_dir)
        .map_err(|e| usage(anyhow!("cannot create state dir {}: {e}", settings.state_dir.display())))?;
    let lock_path = settings.state_dir.join("piigate.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&lock_path)
        .map_err(|e| usage(anyhow!("cannot open lock file {}: {e}", lock_path.display())))?;
    match lock.try_lock_exclusive() {
        Ok(true) => {}
        Ok(false) if wait => {
            info!("another piigate run holds {}; waiting (--wait)", lock_path.display());
            lock.lock_exclusive().map_err(|e| usage(anyhow!("locking {}: {e}", lock_path.display())))?;
        }
        Ok(false) => {
            let holder = std::fs::read_to_string(&lock_path).unwrap_or_default();
            return Err(CommandError {
                status: ExitStatus::Locked,
                source: anyhow!(
                    "another piigate run holds the lock {} ({}); it ends by itself, or pass --wait to queue behind it",
                    lock_path.display(),
                    holder.trim()
                ),
            });
        }
        Err(e) => return Err(usage(anyhow!("locking {}: {e}", lock_path.display()))),
    }
    {
        let mut l = &lock;
        let _ = lock.set_len(0);
        let _ = writeln!(l, "pid {} since {}", std::process::id(), report::now_rfc3339());
    }

    let keyring = load_keys(&settings)?;
    let deterministic = deterministic_cipher(&settings, &keyring)?;
    let recipient = load_recipient(&settings)?;
    let (pool, threads) = build_pool(jobs)?;
    let keys = KeystoreKeys::new(&keyring, settings.keystore.clone());
    let persons = person_keys(&settings, &keyring)?;
    let reporter = make_reporter(bars);
    let reporter: &dyn Reporter = &*reporter;

    let mut any_failed = false;
    loop {
        // The lock is held: any partial output in the outbox is a leftover of
        // an interrupted run.
        match sink.remove_partials() {
            Ok(0) => {}
            Ok(n) => info!("removed {n} partial output(s) left by an interrupted run"),
            Err(e) => warn!("could not clean partial outputs: {e}"),
        }
        let started = time::OffsetDateTime::now_utc();
        let started_text = report::now_rfc3339();
        let ctx = Context {
            settings: &settings,
            pseudonymizer: Pseudonymizer::new(keyring.pseudonym_key()),
            deterministic: deterministic.clone(),
            keys: &keys,
            pool: &pool,
            reporter,
            cancel: &cancel,
            timestamp: report::compact_timestamp(started),
            options: EngineOptions { sequential: threads == 1, ..EngineOptions::default() },
            recipient: recipient.as_ref(),
            persons: persons.clone(),
        };
        let job = Job {
            ctx: &ctx,
            source: &*source,
            sink,
            state_dir: settings.state_dir.clone(),
            parallel: threads,
            on_file: &log_file,
        };
        let result = job::pass(&job);
        for e in &result.errors {
            error!("{e}");
        }
        for (name, why) in &result.skipped {
            tracing::debug!("skipped {name}: {why}");
        }
        let ok = result.files.iter().filter(|r| r.status == FileStatus::Ok).count();
        let refused = result.files.iter().filter(|r| r.status == FileStatus::Failed).count();
        let interrupted = result.files.iter().filter(|r| r.status == FileStatus::Interrupted).count();
        let errored = result.files.len() - ok - refused - interrupted;
        let unsettled = result.files.iter().filter(|r| r.status == FileStatus::Ok && r.error.is_some()).count();
        let stopping = cancel.load(Ordering::Relaxed);
        // Watching, a file cut short by the stop signal is not a failure: it
        // stays in the inbox for the next start. A single (cron) run that was
        // interrupted did not do its job.
        let pass_failed = refused + errored + unsettled > 0
            || !result.errors.is_empty()
            || (watch.is_none() && (interrupted > 0 || stopping));
        // One pass (cron): any failure. Watching: the last completed pass.
        if watch.is_some() && !stopping {
            any_failed = pass_failed;
        } else {
            any_failed |= pass_failed;
        }
        let busy = !result.files.is_empty() || !result.archived_only.is_empty() || !result.errors.is_empty();
        let mut report_note = String::new();
        if busy || watch.is_none() {
            let run = RunReport {
                run_id: report::run_id("run", started),
                command: "run".into(),
                started: started_text,
                finished: report::now_rfc3339(),
                version: env!("CARGO_PKG_VERSION").into(),
                files: result.files,
            };
            match run.write(&settings.state_dir) {
                Ok(p) => report_note = format!("; report {}", p.display()),
                Err(e) => {
                    error!("cannot write the run report: {e}");
                    any_failed = true;
                }
            }
        }
        if busy || watch.is_none() {
            let mut extra = String::new();
            if unsettled > 0 {
                extra.push_str(&format!(", {unsettled} published but not yet archived"));
            }
            if interrupted > 0 {
                extra.push_str(&format!(", {interrupted} interrupted"));
            }
            info!(
                processed = ok,
                refused,
                errors = errored + result.errors.len(),
                not_archived = unsettled,
                interrupted,
                archived_earlier = result.archived_only.len(),
                skipped = result.skipped.len(),
                report = %report_note.trim_start_matches("; report "),
                "run: {ok} processed, {refused} refused{}, {} failed (retried next run){extra}, {} archived from earlier runs, {} skipped{report_note}",
                if src.quarantine.is_some() { " (quarantined)" } else { " (left in the inbox)" },
                errored + result.errors.len(),
                result.archived_only.len(),
                result.skipped.len()
            );
        }
        compact_persons(persons.as_deref(), &cancel);
        let Some(every) = watch else { break };
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        let until = std::time::Instant::now() + std::time::Duration::from_secs(every);
        while std::time::Instant::now() < until && !cancel.load(Ordering::Relaxed) {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        if cancel.load(Ordering::Relaxed) {
            break;
        }
    }
    if cancel.load(Ordering::Relaxed) {
        info!("stopped by signal; unfinished files stay in the inbox for the next run");
    }
    drop(lock);
    Ok(if any_failed { ExitStatus::FilesFailed } else { ExitStatus::Ok })
}

/// Data keys that exist only in memory: `audit` runs the real transform but
/// publishes nothing, so nothing goes to the keystore.
struct EphemeralKeys;

impl crate::transform::engine::DataKeySource for EphemeralKeys {
    fn fresh_key(&self) -> Result<(DataKey, keystore::DekRecord), String> {
        let (id, dek) = (DekId::generate(), crate::crypto::keys::Dek::generate());
        let rec = keystore::DekRecord {
            dek_id: id.to_string(),
            kek_id: String::new(),
            nonce: String::new(),
            wrapped: String::new(),
            created: String::new(),
        };
        Ok((DataKey::new(id, &dek), rec))
    }
}

#[derive(serde::Serialize)]
struct AuditResult {
    file: String,
    would_reject: bool,
    reasons: Vec<String>,
    rows_scanned: u64,
    rows_rejected: u64,
    rejects: Vec<crate::transform::Reject>,
    columns_scanned: Vec<String>,
    findings: Vec<crate::audit::scan::Finding>,
    warnings: Vec<String>,
}

fn audit_cmd(config: &Path, json: bool, sample: Option<u64>, jobs: Option<usize>, files: &[PathBuf]) -> CmdResult {
    use crate::settings::UnflaggedPii;
    use crate::transform::engine::{self, FileJob};
    let settings = load_settings(config)?;
    let (pool, threads) = build_pool(jobs)?;
    let cancel = cancel_flag();
    // The audit publishes nothing: it needs no key material at all.
    let pseudonymizer = Pseudonymizer::new(&crate::crypto::keys::PseudonymKey::generate());
    let deterministic =
        crate::crypto::siv::DeterministicCipher::new(&crate::crypto::keys::DeterministicKey::generate());
    let mut results = Vec::new();
    for path in files {
        let display = path.display().to_string();
        let mut r = AuditResult {
            file: display.clone(),
            would_reject: false,
            reasons: Vec::new(),
            rows_scanned: 0,
            rows_rejected: 0,
            rejects: Vec::new(),
            columns_scanned: Vec::new(),
            findings: Vec::new(),
            warnings: Vec::new(),
        };
        let input = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) => {
                r.would_reject = true;
                r.reasons.push(format!("cannot open {display}: {e}"));
                results.push(r);
                continue;
            }
        };
        let job = FileJob {
            schema: &settings.schema,
            delimiter: settings.delimiter,
            pseudonymizer: &pseudonymizer,
            deterministic: Some(&deterministic),
            keys: &EphemeralKeys,
            pool: &pool,
            progress: &(),
            cancel: &cancel,
            options: EngineOptions { sequential: threads == 1, max_rows: sample, ..EngineOptions::default() },
            audit_lines: Some(settings.audit.thresholds.max_lines),
            persons: None,
        };
        match engine::process_stream(&job, input, |_, _| Ok(std::io::sink())) {
            Err(e) => {
                r.would_reject = true;
                r.reasons.push(e.to_string());
            }
            Ok((outcome, _)) => {
                r.rows_scanned = outcome.rows_read;
                r.rows_rejected = outcome.rejects.len() as u64;
                r.columns_scanned = outcome.scanners.iter().map(|(n, _)| n.clone()).collect();
                let ratio = r.rows_rejected as f64 / outcome.rows_read.max(1) as f64;
                if r.rows_rejected > 0 && ratio > settings.schema.max_reject_ratio {
                    r.would_reject = true;
                    r.reasons.push(format!(
                        "{} of {} rows rejected ({:.2}%), more than [schema] max_reject_ratio = {}",
                        r.rows_rejected,
                        outcome.rows_read,
                        ratio * 100.0,
                        settings.schema.max_reject_ratio
                    ));
                }
                r.rejects = outcome.rejects.into_iter().take(20).collect();
                let (findings, hints) = process::audit_findings(&settings, &outcome.scanners);
                let blocking = findings.iter().any(|f| f.confidence >= crate::audit::scan::Confidence::Medium);
                if blocking && settings.audit.unflagged_pii == UnflaggedPii::Quarantine {
                    r.would_reject = true;
                    r.reasons.push("personal data in columns the schema keeps as they are ([audit] unflagged_pii = \"quarantine\")".into());
                }
                r.findings = findings;
                r.warnings = hints;
            }
        }
        results.push(r);
    }
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &results).map_err(|e| failed(anyhow!(e)))?;
        let _ = writeln!(out);
    } else {
        for r in &results {
            let verdict = if r.would_reject { "REJECT" } else { "ok" };
            let _ = writeln!(
                out,
                "{}: {verdict} ({} rows checked{}, {} rejected, {} kept column(s) scanned)",
                r.file,
                r.rows_scanned,
                if sample.is_some() { " (sample)" } else { "" },
                r.rows_rejected,
                r.columns_scanned.len()
            );
            for reason in &r.reasons {
                let _ = writeln!(out, "  reason:  {reason}");
            }
            for f in &r.findings {
                let _ = writeln!(out, "  finding: {}", process::describe_finding(f));
            }
            for w in &r.warnings {
                let _ = writeln!(out, "  warning: {w}");
            }
            for rej in r.rejects.iter().take(5) {
                let _ = writeln!(out, "  row:     line {}: {}", rej.line, rej.message);
            }
        }
    }
    Ok(if results.iter().any(|r| r.would_reject) { ExitStatus::FilesFailed } else { ExitStatus::Ok })
}
