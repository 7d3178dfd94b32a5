//! `piigate run` on local folders: archive, quarantine, ledger, lock,
//! young files, dry runs, crash recovery.

use std::time::{Duration, Instant};

use crate::process::GOOD;
use crate::workdir::Workdir;

fn run(wd: &Workdir, extra: &[&str]) -> crate::workdir::Run {
    let mut args = vec!["run", "--config", "piigate.toml"];
    args.extend_from_slice(extra);
    wd.piigate(&args)
}

pub fn csvs(wd: &Workdir) -> Vec<String> {
    wd.list("outbox").into_iter().filter(|n| n.ends_with(".csv")).collect()
}

#[test]
fn run_archives_good_quarantines_bad_and_reruns_change_nothing() {
    let wd = Workdir::new("");
    wd.write("inbox/good.csv", GOOD);
    wd.write("inbox/bad.csv", "email,phone,name,city,score,notes,ssn\na@example.test,,A,B,1,,123-45-6789\n");
    wd.write("inbox/readme.txt", "not a csv");
    let r = run(&wd, &[]);
    r.expect_code(1);
    assert!(r.stderr().contains("1 processed, 1 refused (quarantined)"), "{}", r.describe());
    assert_eq!(wd.list("inbox"), ["readme.txt"]);
    assert_eq!(wd.list("archive"), ["good.csv"]);
    assert_eq!(wd.list("quarantine"), ["bad.csv", "bad.csv.reason.txt"]);
    let reason = wd.read("quarantine/bad.csv.reason.txt");
    assert!(reason.contains("\"ssn\" (column 7)"), "{reason}");
    assert!(!reason.contains("123-45-6789"));
    assert_eq!(csvs(&wd).len(), 1);
    let out = &csvs(&wd)[0];
    assert!(wd.list("outbox").contains(&out.replace(".csv", ".manifest")));
    let py = wd.verify_with_python("archive/good.csv", &format!("outbox/{out}"), &[]);
    assert!(py.status.success(), "{}", String::from_utf8_lossy(&py.stdout));

    let before = wd.list("outbox");
    run(&wd, &[]).expect_ok();
    assert_eq!(wd.list("outbox"), before, "a rerun publishes nothing new");
}

#[test]
fn young_files_wait_and_dry_run_touches_nothing() {
    let wd = Workdir::new("");
    let cfg = wd.read("piigate.toml").replace("min_age_seconds = 0", "min_age_seconds = 3600");
    wd.write("piigate.toml", &cfg);
    wd.write("inbox/fresh.csv", GOOD);
    let r = run(&wd, &["--dry-run"]);
    r.expect_ok();
    assert!(r.stdout().contains("skip     fresh.csv: modified"), "{}", r.describe());
    run(&wd, &[]).expect_ok();
    assert_eq!(wd.list("inbox"), ["fresh.csv"]);
    assert!(csvs(&wd).is_empty());

    wd.write("piigate.toml", cfg.replace("min_age_seconds = 3600", "min_age_seconds = 0"));
    let r = run(&wd, &["--dry-run"]);
    assert!(r.stdout().contains("process  fresh.csv"), "{}", r.describe());
    assert_eq!(wd.list("inbox"), ["fresh.csv"], "dry run moves nothing");
    assert!(csvs(&wd).is_empty(), "dry run writes nothing");
}

#[test]
fn a_second_run_exits_3_while_the_lock_is_held() {
    let wd = Workdir::new("");
    std::fs::create_dir_all(wd.path("state")).unwrap();
    // Hold the lock from this process, as a running piigate would.
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(wd.path("state/piigate.lock"))
        .unwrap();
    fs4::fs_std::FileExt::lock_exclusive(&f).unwrap();
    wd.write("inbox/good.csv", GOOD);
    let r = run(&wd, &[]);
    r.expect_code(3);
    assert!(r.stderr().contains("--wait"), "{}", r.describe());
    assert!(csvs(&wd).is_empty());
    drop(f);
    // --wait queues behind a lock instead of exiting 3. (Other tests' child
    // processes can briefly share this process's lock file between fork and
    // exec, so waiting is also what keeps this assertion deterministic.)
    run(&wd, &["--wait"]).expect_ok();
    assert_eq!(csvs(&wd).len(), 1);
}

#[test]
fn interrupted_publication_is_completed_exactly_once() {
    // A crash after the CSV was renamed into place but before the manifest
    // and the archive move: the ledger says "publishing".
    let wd = Workdir::new("");
    wd.write("inbox/good.csv", GOOD);
    run(&wd, &[]).expect_ok();
    let out = csvs(&wd)[0].clone();
    let manifest = out.replace(".csv", ".manifest");
    // Put the world back to the moment of the crash.
    std::fs::rename(wd.path("archive/good.csv"), wd.path("inbox/good.csv")).unwrap();
    std::fs::remove_file(wd.path(&format!("outbox/{manifest}"))).unwrap();
    let ledger = wd.read("state/ledger.jsonl");
    let publishing: Vec<&str> = ledger.lines().filter(|l| l.contains("\"publishing\"")).collect();
    assert_eq!(publishing.len(), 1);
    wd.write("state/ledger.jsonl", format!("{}\n", publishing[0]));
    // The mtime must match the ledger: restore it by rewriting the ledger line instead.
    run(&wd, &[]).expect_ok();
    assert_eq!(csvs(&wd), std::slice::from_ref(&out), "no second output");
    assert!(wd.list("outbox").contains(&manifest), "manifest re-published");
    assert_eq!(wd.list("archive"), ["good.csv"]);
}

/// Builds a large input so that a debug build is mid-file for a while.
pub fn big_input(rows: usize) -> String {
    let mut s = String::with_capacity(rows * 80);
    s.push_str("email,phone,name,city,score,notes\n");
    for i in 0..rows {
        s.push_str(&format!("person{i}@example.test,+1 415 555 {:04},Person {i},Town,{},note\n", i % 10000, i % 100));
    }
    s
}

#[test]
fn kill_9_mid_file_leaves_no_final_output_and_the_next_run_completes_once() {
    let wd = Workdir::new("");
    wd.write("inbox/big.csv", big_input(600_000));
    let mut child = wd.spawn_piigate(&["run", "--config", "piigate.toml", "--jobs", "1"], std::process::Stdio::null());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if wd.list("outbox").iter().any(|n| n.ends_with(".partial")) {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "piigate finished before it could be killed");
        assert!(Instant::now() < deadline, "no partial output appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(20));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(csvs(&wd).is_empty(), "nothing under a final name: {:?}", wd.list("outbox"));
    assert_eq!(wd.list("inbox"), ["big.csv"]);

    // The lock died with the process; the next run cleans up and completes.
    let r = run(&wd, &[]);
    r.expect_ok();
    assert!(r.stderr().contains("removed 1 partial output"), "{}", r.describe());
    assert_eq!(csvs(&wd).len(), 1);
    assert!(!wd.list("outbox").iter().any(|n| n.ends_with(".partial")));
    assert_eq!(wd.list("archive"), ["big.csv"]);
    run(&wd, &[]).expect_ok();
    assert_eq!(csvs(&wd).len(), 1);
}

#[test]
fn watch_stops_cleanly_on_sigterm_and_logs_json() {
    let wd = Workdir::new("");
    wd.write("inbox/good.csv", GOOD);
    let child = wd.spawn_piigate(
        &["run", "--config", "piigate.toml", "--watch", "1", "--log-format", "json"],
        std::process::Stdio::piped(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    wd.wait_for_files("archive", 1, deadline, "the watcher did not process the file");
    // A file arriving later is picked up on a later poll.
    wd.write("inbox/later.csv", GOOD);
    wd.wait_for_files("archive", 2, deadline, "the watcher did not pick up the second file");
    let out = crate::workdir::stop(child);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    for line in stderr.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
    }
    assert!(stderr.contains("stopped by signal"), "{stderr}");
    assert_eq!(csvs(&wd).len(), 2);
    assert!(!wd.list("outbox").iter().any(|n| n.ends_with(".partial")));
}
