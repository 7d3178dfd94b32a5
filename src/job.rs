//! The drop-folder job (`piigate run`): list the inbox, pick the files that
//! are new, old enough and match the pattern, process each into the sink,
//! then archive or quarantine the input, keeping the ledger so every input
//! is published exactly once.

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::{info, warn};

use crate::ledger::{Ledger, Record, State};
use crate::process::{self, Context};
use crate::report::{now_rfc3339, FileReport, FileStatus};
use crate::sink::Sink;
use crate::source::{Entry, Source};

/// Attempts per file when the connection fails mid-file.
pub const FILE_ATTEMPTS: u32 = 3;

/// What the job decided about one inbox entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Process it.
    Process,
    /// Its output is published; only the archive move is left.
    ArchiveOnly,
    /// Its output may have been published before a crash; check the sink.
    Resume(Vec<String>, Vec<String>),
    /// Leave it, with the reason.
    Skip(String),
}

/// Decides what to do with `e`. `now` is Unix seconds.
pub fn decide(e: &Entry, src: &crate::settings::SourceSettings, now: u64, ledger: &Ledger) -> Decision {
    let (pattern, min_age) = (&src.pattern, src.min_age);
    if !e.regular {
        return Decision::Skip("not a regular file".into());
    }
    if e.name.starts_with('.') || e.name.ends_with(crate::sink::local::PARTIAL_SUFFIX) {
        return Decision::Skip("hidden or temporary file".into());
    }
    if !pattern.is_match(&e.name) {
        return Decision::Skip("does not match [source] pattern".into());
    }
    let age = now.saturating_sub(e.mtime);
    if age < min_age.as_secs() {
        return Decision::Skip(format!(
            "modified {age} s ago, younger than min_age_seconds = {} (may still be uploading)",
            min_age.as_secs()
        ));
    }
    match ledger.get(&e.name, e.size, e.mtime).map(|r| r.state) {
        None => Decision::Process,
        Some(State::Published) | Some(State::Archived) if src.archive.is_some() => Decision::ArchiveOnly,
        Some(State::Published) | Some(State::Archived) => {
            Decision::Skip("already published (ledger); no [source] archive folder to move it to".into())
        }
        // Moved back into the inbox from quarantine: someone wants it tried again.
        Some(State::Quarantined) if src.quarantine.is_some() => Decision::Process,
        Some(State::Quarantined) => {
            Decision::Skip("refused earlier (ledger); fix it and upload it again under a new name".into())
        }
        Some(State::Publishing) => {
            let r = ledger.get(&e.name, e.size, e.mtime).expect("just found");
            Decision::Resume(r.outputs.clone(), r.columns.clone())
        }
    }
}

/// Summary of one pass.
#[derive(Default, Debug)]
pub struct PassResult {
    /// Per-file reports.
    pub files: Vec<FileReport>,
    /// Inputs skipped, with reasons.
    pub skipped: Vec<(String, String)>,
    /// Inputs archived without processing (already published).
    pub archived_only: Vec<String>,
    /// Errors outside any one file (listing the inbox...).
    pub errors: Vec<String>,
}

/// Everything a pass needs.
pub struct Job<'a> {
    /// File context.
    pub ctx: &'a Context<'a>,
    /// Inbox.
    pub source: &'a dyn Source,
    /// Outbox.
    pub sink: &'a dyn Sink,
    /// State dir.
    pub state_dir: PathBuf,
    /// Parallel files.
    pub parallel: usize,
    /// Called with each file's report as soon as it is processed, before
    /// the input is moved.
    pub on_file: &'a (dyn Fn(&FileReport) + Sync),
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Lists the inbox and decides, touching nothing (for `--dry-run`).
///
/// # Errors
/// Listing or ledger errors, as text.
pub fn plan(job: &Job<'_>) -> Result<Vec<(Entry, Decision)>, String> {
    let src = job.ctx.settings.source.as_ref().ok_or("no [source] configured")?;
    let ledger = Ledger::load(&job.state_dir).map_err(|e| format!("ledger: {e}"))?;
    let entries = job.source.list().map_err(|e| e.to_string())?;
    let now = unix_now();
    Ok(entries
        .into_iter()
        .map(|e| {
            let d = decide(&e, src, now, &ledger);
            (e, d)
        })
        .collect())
}

/// One pass over the inbox.
pub fn pass(job: &Job<'_>) -> PassResult {
    let mut result = PassResult::default();
    let settings = job.ctx.settings;
    let Some(src) = settings.source.as_ref() else {
        result.errors.push("no [source] configured".into());
        return result;
    };
    let ledger = match Ledger::load(&job.state_dir) {
        Ok(l) => Mutex::new(l),
        Err(e) => {
            result.errors.push(format!("cannot read the ledger in {}: {e}", job.state_dir.display()));
            return result;
        }
    };
    let entries = match job.source.list() {
        Ok(e) => e,
        Err(e) => {
            result.errors.push(format!("cannot list the inbox: {e}"));
            return result;
        }
    };
    let now = unix_now();
    let mut work = Vec::new();
    for e in entries {
        let d = decide(&e, src, now, &ledger.lock().unwrap_or_else(|p| p.into_inner()));
        match d {
            Decision::Skip(reason) => result.skipped.push((e.name.clone(), reason)),
            d => work.push((e, d)),
        }
    }

    let next = AtomicUsize::new(0);
    let reports = Mutex::new(Vec::new());
    let archived_only = Mutex::new(Vec::new());
    let errors = Mutex::new(Vec::new());
    let cancel: &AtomicBool = job.ctx.cancel;
    std::thread::scope(|scope| {
        for _ in 0..job.parallel.clamp(1, work.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some((entry, decision)) = work.get(i) else { break };
                if cancel.load(Ordering::Relaxed) {
                    break;
                }
                match decision {
                    Decision::ArchiveOnly => {
                        if let Err(e) = finish_success(job, entry, &ledger, None) {
                            errors.lock().unwrap_or_else(|p| p.into_inner()).push(e);
                        } else {
                            archived_only.lock().unwrap_or_else(|p| p.into_inner()).push(entry.name.clone());
                        }
                    }
                    Decision::Resume(outputs, columns) => match resume(job, entry, outputs, columns, &ledger) {
                        Ok(true) => archived_only.lock().unwrap_or_else(|p| p.into_inner()).push(entry.name.clone()),
                        Ok(false) => {
                            let r = process_entry(job, entry, &ledger);
                            reports.lock().unwrap_or_else(|p| p.into_inner()).push((i, r));
                        }
                        Err(e) => errors.lock().unwrap_or_else(|p| p.into_inner()).push(e),
                    },
                    Decision::Process => {
                        let r = process_entry(job, entry, &ledger);
                        reports.lock().unwrap_or_else(|p| p.into_inner()).push((i, r));
                    }
                    Decision::Skip(_) => {}
                }
            });
        }
    });
    let mut reports = reports.into_inner().unwrap_or_else(|p| p.into_inner());
    reports.sort_by_key(|(i, _)| *i);
    result.files = reports.into_iter().map(|(_, r)| r).collect();
    result.archived_only = archived_only.into_inner().unwrap_or_else(|p| p.into_inner());
    result.errors.extend(errors.into_inner().unwrap_or_else(|p| p.into_inner()));
    result
}

/// After a crash in `publishing`: if every CSV (one per part) is in the
/// sink, publish the manifests that are missing, record `published` and
/// archive. Returns whether the input is done (false: process it again).
///
/// When some parts were published and a later one was not (its temporary
/// file is gone), the input is processed again as a whole and every part
/// is published under a new name: CleverTap's profile import updates
/// profiles by identity, so the rows of the parts sent twice change nothing.
fn resume(
    job: &Job<'_>,
    e: &Entry,
    outputs: &[String],
    columns: &[String],
    ledger: &Mutex<Ledger>,
) -> Result<bool, String> {
    if outputs.is_empty() {
        return Ok(false);
    }
    let mut present = 0;
    for csv in outputs {
        if !job.sink.exists(csv).map_err(|e| e.to_string())? {
            break;
        }
        present += 1;
    }
    if present < outputs.len() {
        if present > 0 {
            warn!(
                "{}: {present} of {} parts were published before an interrupted run; processing the input again publishes all parts under new names",
                e.name,
                outputs.len()
            );
        }
        return Ok(false);
    }
    let wants_manifest =
        job.ctx.settings.sink.as_ref().is_some_and(|s| s.manifest == crate::settings::ManifestKind::Clevertap);
    for csv in outputs {
        let manifest = crate::manifest::manifest_name(csv);
        if wants_manifest && !job.sink.exists(&manifest).map_err(|e| e.to_string())? {
            process::publish_manifest(job.ctx.settings, job.sink, csv, columns).map_err(|e| e.to_string())?;
            info!("{}: published the missing manifest {manifest} after an interrupted run", e.name);
        }
    }
    let rec = Record {
        name: e.name.clone(),
        size: e.size,
        mtime: e.mtime,
        sha256: None,
        state: State::Published,
        outputs: outputs.to_vec(),
        columns: columns.to_vec(),
        time: now_rfc3339(),
    };
    ledger.lock().unwrap_or_else(|p| p.into_inner()).append(rec).map_err(|e| format!("ledger: {e}"))?;
    finish_success(job, e, ledger, None)?;
    Ok(true)
}

fn process_entry(job: &Job<'_>, e: &Entry, ledger: &Mutex<Ledger>) -> FileReport {
    let display = job.source.describe(&e.name);
    let mut attempt = 1;
    let mut delay = Duration::from_secs(1);
    loop {
        let report = process_once(job, e, &display, ledger);
        // Retry only while nothing is published: once the CSV is in place, the
        // ledger's `publishing` record lets the next run finish the manifest
        // instead of publishing the data a second time.
        let transient =
            report.status == FileStatus::Error && report.outputs.is_empty() && !job.ctx.cancel.load(Ordering::Relaxed);
        if !transient || attempt >= FILE_ATTEMPTS {
            return settle(job, e, ledger, report);
        }
        warn!(
            "{}: {}; retrying in {} s (attempt {attempt} of {FILE_ATTEMPTS})",
            e.name,
            report.error.as_deref().unwrap_or("error"),
            delay.as_secs()
        );
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_secs(8));
        attempt += 1;
    }
}

fn process_once(job: &Job<'_>, e: &Entry, display: &str, ledger: &Mutex<Ledger>) -> FileReport {
    let input: Box<dyn Read + Send + '_> = match job.source.open(&e.name, e.size) {
        Ok(r) => r,
        Err(err) => {
            let mut r = FileReport::new(display.to_owned());
            r.error = Some(err.to_string());
            return r;
        }
    };
    let hook = |out_names: &[String], columns: &[String]| -> Result<(), String> {
        let rec = Record {
            name: e.name.clone(),
            size: e.size,
            mtime: e.mtime,
            sha256: None,
            state: State::Publishing,
            outputs: out_names.to_vec(),
            columns: columns.to_vec(),
            time: now_rfc3339(),
        };
        ledger.lock().unwrap_or_else(|p| p.into_inner()).append(rec).map_err(|e| format!("ledger: {e}"))
    };
    process::process_file(job.ctx, display, &e.name, Some(e.size), input, job.sink, Some(&hook))
}

/// Records the outcome and moves the input.
fn settle(job: &Job<'_>, e: &Entry, ledger: &Mutex<Ledger>, mut report: FileReport) -> FileReport {
    (job.on_file)(&report);
    match report.status {
        FileStatus::Ok => {
            let rec = Record {
                name: e.name.clone(),
                size: e.size,
                mtime: e.mtime,
                sha256: report.input_sha256.clone(),
                state: State::Published,
                outputs: report.outputs.iter().map(|o| base_name(&o.path)).collect(),
                columns: Vec::new(),
                time: now_rfc3339(),
            };
            let r = ledger.lock().unwrap_or_else(|p| p.into_inner()).append(rec);
            if let Err(err) = r {
                warn!("{}: published, but the ledger could not record it: {err}", e.name);
            }
            if let Err(err) = finish_success(job, e, ledger, report.input_sha256.clone()) {
                warn!("{err}; the next run will retry the move");
                report.error = Some(format!("published, but {err}; the next run retries the move"));
            }
        }
        FileStatus::Failed => {
            let Some(src) = job.ctx.settings.source.as_ref() else { return report };
            let reason = reason_text(&e.name, &report);
            let refused = Record {
                name: e.name.clone(),
                size: e.size,
                mtime: e.mtime,
                sha256: report.input_sha256.clone(),
                state: State::Quarantined,
                outputs: Vec::new(),
                columns: Vec::new(),
                time: now_rfc3339(),
            };
            if src.quarantine.is_none() {
                // Without a quarantine folder the file stays; the ledger keeps
                // it from failing again on every pass until it changes.
                let _ = ledger.lock().unwrap_or_else(|p| p.into_inner()).append(refused);
                return report;
            }
            if let Some(q) = &src.quarantine {
                let moved = job.source.move_to(&e.name, q).and_then(|to| {
                    let base = base_name(&to);
                    job.source.write_text(q, &format!("{base}.reason.txt"), &reason).map(|_| to)
                });
                match moved {
                    Ok(to) => {
                        let _ = ledger.lock().unwrap_or_else(|p| p.into_inner()).append(refused);
                        warn!("{}: quarantined to {to}", job.source.describe(&e.name));
                    }
                    Err(err) => {
                        report.error = Some(format!(
                            "{}; and it could not be quarantined: {err}",
                            report.error.as_deref().unwrap_or("failed")
                        ))
                    }
                }
            }
        }
        FileStatus::Error | FileStatus::Interrupted => {}
    }
    report
}

fn finish_success(job: &Job<'_>, e: &Entry, ledger: &Mutex<Ledger>, sha: Option<String>) -> Result<(), String> {
    let Some(src) = job.ctx.settings.source.as_ref() else { return Ok(()) };
    let Some(archive) = &src.archive else { return Ok(()) };
    let to = job.source.move_to(&e.name, archive).map_err(|err| format!("{}: archiving failed: {err}", e.name))?;
    let rec = Record {
        name: e.name.clone(),
        size: e.size,
        mtime: e.mtime,
        sha256: sha,
        state: State::Archived,
        outputs: Vec::new(),
        columns: Vec::new(),
        time: now_rfc3339(),
    };
    ledger.lock().unwrap_or_else(|p| p.into_inner()).append(rec).map_err(|err| format!("ledger: {err}"))?;
    info!("{}: archived to {to}", job.source.describe(&e.name));
    Ok(())
}

fn base_name(p: &str) -> String {
    p.rsplit('/').next().unwrap_or(p).to_owned()
}

fn reason_text(name: &str, r: &FileReport) -> String {
    let mut s = format!(
        "piigate quarantined {name} at {}\nreason: {}\nrows read: {}, rejected: {}\n",
        now_rfc3339(),
        r.error.as_deref().unwrap_or("failed"),
        r.rows_read,
        r.rows_rejected
    );
    if !r.rejects.is_empty() {
        s.push_str("rejected rows (line: reason; values are never shown):\n");
        for rej in &r.rejects {
            s.push_str(&format!("  line {}: {}\n", rej.line, rej.message));
        }
    }
    s
}
