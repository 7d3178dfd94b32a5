//! `piigate run` against a real OpenSSH server on 127.0.0.1.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::process::GOOD;
use crate::sshd::Sshd;
use crate::workdir::{Run, Workdir, SCHEMA};

/// A workdir whose source and sink are folders on `sshd`.
pub fn sftp_workdir(sshd: &Sshd, auth: &str) -> Workdir {
    let wd = Workdir::new("");
    let root = sshd.root();
    let r = root.display();
    let conn = |_: &str| {
        format!(
            "host = \"127.0.0.1\"\nport = {}\nuser = \"{}\"\n{auth}\nknown_hosts = \"{}\"\n",
            sshd.port(),
            sshd.user(),
            sshd.known_hosts().display()
        )
    };
    let cfg = format!(
        r#"[keys]
keyring = "keys/keyring.toml"
keystore = "state/data-keys.jsonl"

[source]
type = "sftp"
path = "{r}/inbox"
pattern = "*.csv"
archive = "{r}/processed"
quarantine = "{r}/failed"
min_age_seconds = 0

[source.sftp]
{src}
[sink]
type = "sftp"
path = "{r}/outbox"
manifest = "clevertap"
clevertap_client_email = "ops@example.com"

[sink.sftp]
{dst}
[state]
dir = "state"

[schema]
unknown_columns = "reject"
max_reject_ratio = 0.2
pseudonym_prefix = "u_"
default_region = "US"
{SCHEMA}
"#,
        src = conn("source"),
        dst = conn("sink"),
    );
    wd.write("piigate.toml", cfg);
    for d in ["inbox", "outbox"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
        let _ = std::fs::set_permissions(root.join(d), std::os::unix::fs::PermissionsExt::from_mode(0o777));
    }
    wd
}

pub fn key_auth(sshd: &Sshd) -> String {
    format!("key_file = \"{}\"", sshd.client_key().display())
}

pub fn upload(sshd: &Sshd, wd: &Workdir, name: &str, content: &str) {
    let local = wd.path(&format!("upload/{name}"));
    wd.write(&format!("upload/{name}"), content);
    sshd.sftp_upload(&local, &format!("{}/inbox/{name}", sshd.root().display()));
}

pub fn list(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

pub fn run_with_tmp(wd: &Workdir, tmp: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["run", "--config", "piigate.toml"];
    args.extend_from_slice(extra);
    wd.piigate_env(&args, &[("TMPDIR", tmp.to_str().unwrap())])
}

#[test]
fn sftp_happy_path_archives_quarantines_and_never_writes_plaintext_locally() {
    let sshd = Sshd::start();
    let wd = sftp_workdir(&sshd, &key_auth(&sshd));
    upload(&sshd, &wd, "good.csv", GOOD);
    upload(&sshd, &wd, "second.csv", &GOOD.replace("\r\n", "\n"));
    upload(&sshd, &wd, "bad.csv", "email,phone,name,city,score,notes,ssn\nsecret@example.test,,S,B,1,,123-45-6789\n");
    std::fs::remove_dir_all(wd.path("upload")).unwrap();
    let tmp = tempfile::tempdir().unwrap();

    let r = run_with_tmp(&wd, tmp.path(), &[]);
    r.expect_code(1);
    let root = sshd.root();
    assert_eq!(list(&root.join("inbox")), Vec::<String>::new(), "{}", r.describe());
    assert_eq!(list(&root.join("processed")), ["good.csv", "second.csv"]);
    assert_eq!(list(&root.join("failed")), ["bad.csv", "bad.csv.reason.txt"]);
    let outbox = list(&root.join("outbox"));
    let csvs: Vec<&String> = outbox.iter().filter(|n| n.ends_with(".csv")).collect();
    assert_eq!(csvs.len(), 2, "{outbox:?}");
    assert_eq!(outbox.iter().filter(|n| n.ends_with(".manifest")).count(), 2);
    assert!(!outbox.iter().any(|n| n.ends_with(".partial")));

    // Outputs decrypt independently.
    for c in &csvs {
        let input = if c.starts_with("good-") { "good.csv" } else { "second.csv" };
        let out = root.join("outbox").join(c);
        let inp = root.join("processed").join(input);
        let py = wd.verify_with_python(inp.to_str().unwrap(), out.to_str().unwrap(), &[]);
        assert!(py.status.success(), "{}", String::from_utf8_lossy(&py.stdout));
    }

    // Plaintext never touched the local disk.
    assert!(list(tmp.path()).is_empty(), "temp dir used: {:?}", list(tmp.path()));
    for (path, bytes) in wd.written_files() {
        let text = String::from_utf8_lossy(&bytes);
        for needle in ["ana.test@example.test", "Ana Test", "Builder, Bob", "secret@example.test", "123-45-6789"] {
            assert!(!text.contains(needle), "{} holds a plaintext value", path.display());
        }
    }

    // A rerun changes nothing.
    run_with_tmp(&wd, tmp.path(), &[]).expect_ok();
    assert_eq!(list(&root.join("outbox")), outbox);
}

#[test]
fn changed_host_key_fails_pointing_at_known_hosts_and_moves_nothing() {
    let sshd = Sshd::start();
    let wd = sftp_workdir(&sshd, &key_auth(&sshd));
    upload(&sshd, &wd, "good.csv", GOOD);
    sshd.write_other_known_hosts(&sshd.known_hosts());
    let r = wd.piigate(&["run", "--config", "piigate.toml"]);
    r.expect_code(2);
    let err = r.stderr();
    assert!(err.contains("HOST KEY CHANGED"), "{}", r.describe());
    assert!(err.contains(&sshd.known_hosts().display().to_string()) && err.contains("line 1"), "{}", r.describe());
    assert_eq!(list(&sshd.root().join("inbox")), ["good.csv"]);
    assert!(list(&sshd.root().join("outbox")).is_empty());

    // An unknown host is refused too, with the ssh-keyscan remedy.
    std::fs::write(sshd.known_hosts(), "").unwrap();
    let r = wd.piigate(&["run", "--config", "piigate.toml"]);
    r.expect_code(2);
    assert!(r.stderr().contains("is not in known_hosts") && r.stderr().contains("ssh-keyscan"), "{}", r.describe());
}

#[test]
fn young_files_stay_and_concurrent_runs_do_not_double() {
    let sshd = Sshd::start();
    let wd = sftp_workdir(&sshd, &key_auth(&sshd));
    let cfg = wd.read("piigate.toml");
    wd.write("piigate.toml", cfg.replace("min_age_seconds = 0", "min_age_seconds = 3600"));
    upload(&sshd, &wd, "young.csv", GOOD);
    wd.piigate(&["run", "--config", "piigate.toml"]).expect_ok();
    assert_eq!(list(&sshd.root().join("inbox")), ["young.csv"]);
    assert!(list(&sshd.root().join("outbox")).is_empty());

    wd.write("piigate.toml", &cfg);
    let big = crate::job::big_input(60_000);
    upload(&sshd, &wd, "big.csv", &big);
    let bin = env!("CARGO_BIN_EXE_piigate");
    let spawn = || {
        std::process::Command::new(bin)
            .current_dir(wd.dir.path())
            .args(["run", "--config", "piigate.toml"])
            .output()
            .unwrap()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(spawn);
        std::thread::sleep(Duration::from_millis(50));
        let b = s.spawn(spawn);
        (a.join().unwrap(), b.join().unwrap())
    });
    let mut codes = [a.status.code().unwrap(), b.status.code().unwrap()];
    codes.sort();
    assert!(codes == [0, 3] || codes == [0, 0], "codes {codes:?}: {}", String::from_utf8_lossy(&b.stderr));
    let outbox = list(&sshd.root().join("outbox"));
    assert_eq!(outbox.iter().filter(|n| n.ends_with(".csv")).count(), 2, "one output per input: {outbox:?}");
    assert_eq!(list(&sshd.root().join("processed")), ["big.csv", "young.csv"]);
}

#[test]
fn server_dying_mid_file_fails_without_quarantine_and_the_next_run_completes() {
    let mut sshd = Sshd::start();
    let wd = sftp_workdir(&sshd, &key_auth(&sshd));
    upload(&sshd, &wd, "big.csv", &crate::job::big_input(200_000));
    let mut child = wd.spawn_piigate(&["run", "--config", "piigate.toml", "--jobs", "1"], std::process::Stdio::piped());
    let deadline = Instant::now() + Duration::from_secs(60);
    let outbox = sshd.root().join("outbox");
    while !list(&outbox).iter().any(|n| n.ends_with(".partial")) {
        assert!(child.try_wait().unwrap().is_none(), "finished before the server could be stopped");
        assert!(Instant::now() < deadline, "no partial output appeared");
        std::thread::sleep(Duration::from_millis(10));
    }
    sshd.stop();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!list(&outbox).iter().any(|n| n.ends_with(".csv")), "{:?}", list(&outbox));
    assert_eq!(list(&sshd.root().join("inbox")), ["big.csv"], "input stays for the next run");
    assert!(!sshd.root().join("failed").exists(), "not quarantined");

    sshd.restart();
    let r = wd.piigate(&["run", "--config", "piigate.toml"]);
    r.expect_ok();
    let after = list(&outbox);
    assert_eq!(after.iter().filter(|n| n.ends_with(".csv")).count(), 1, "{after:?}");
    assert!(!after.iter().any(|n| n.ends_with(".partial")), "{after:?}");
    assert_eq!(list(&sshd.root().join("processed")), ["big.csv"]);
}

#[test]
fn password_authentication_from_the_environment() {
    let sshd = Sshd::start();
    let Some((user, password)) = sshd.password_login() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must provide a password login (scripts/ci-setup.sh writes target/ci-sftp-env.sh)"
        );
        eprintln!("password login not configured here; run scripts/ci-setup.sh as root to enable this test");
        return;
    };
    let wd = sftp_workdir(&sshd, "password_env = \"PIIGATE_TEST_PW\"");
    let cfg = wd.read("piigate.toml").replace(&format!("user = \"{}\"", sshd.user()), &format!("user = \"{user}\""));
    wd.write("piigate.toml", cfg);
    upload(&sshd, &wd, "good.csv", GOOD);
    let r = wd.piigate_env(&["run", "--config", "piigate.toml"], &[("PIIGATE_TEST_PW", &password)]);
    r.expect_ok();
    assert!(list(&sshd.root().join("outbox")).iter().any(|n| n.ends_with(".csv")));
    assert!(!r.stderr().contains(&password));
    // A wrong password is an authentication error: exit 2, not retried.
    upload(&sshd, &wd, "more.csv", GOOD);
    let r = wd.piigate_env(&["run", "--config", "piigate.toml"], &[("PIIGATE_TEST_PW", "wrong")]);
    r.expect_code(2);
    assert!(r.stderr().contains("was refused"), "{}", r.describe());
}

/// libssh2 would pick its portable ChaCha20-Poly1305 first; piigate asks
/// for AES-GCM (AES-NI through OpenSSL), which OpenSSH's sshd offers.
#[test]
fn sftp_sessions_negotiate_aes_gcm() {
    let sshd = Sshd::start();
    let wd = sftp_workdir(&sshd, &key_auth(&sshd));
    upload(&sshd, &wd, "good.csv", GOOD);
    let tmp = tempfile::tempdir().unwrap();
    let r = run_with_tmp(&wd, tmp.path(), &["-vv"]);
    r.expect_ok();
    assert!(
        r.stderr().contains("SSH ciphers to 127.0.0.1")
            && r.stderr().contains("aes128-gcm@openssh.com / aes128-gcm@openssh.com"),
        "{}",
        r.describe()
    );
}

/// An SFTP outbox with a file cut into more parts than the process may
/// open descriptors: each finished part gives its connection back, so the
/// parts share connections instead of holding one each.
#[test]
fn a_file_cut_into_many_parts_over_sftp_reuses_connections() {
    let sshd = Sshd::start();
    let wd = sftp_workdir(&sshd, &key_auth(&sshd));
    crate::parts::with_limit(&wd, 4096);
    upload(&sshd, &wd, "many.csv", &crate::parts::many_rows(3000));
    wd.piigate_with_fd_limit(48, &["run", "--config", "piigate.toml"]).expect_ok();
    let outbox = sshd.root().join("outbox");
    let csvs: Vec<String> = list(&outbox).into_iter().filter(|n| n.ends_with(".csv")).collect();
    assert!(csvs.len() > 100, "{} parts", csvs.len());
    let rows: usize = csvs
        .iter()
        .map(|n| crate::workdir::csv_rows(&std::fs::read_to_string(outbox.join(n)).unwrap()).len() - 1)
        .sum();
    assert_eq!(rows, 3000);
    assert!(!list(&outbox).iter().any(|n| n.ends_with(".partial")));

    // A file that fails once its parts are finished (a quarter of its rows
    // rejected) removes every finished part, on connections from the pool.
    let before = list(&outbox);
    let mut text = crate::parts::many_rows(3000);
    for i in 0..1000 {
        text.push_str(&format!("bad{i}@example.test,4.47701E+11,Bad,Town,1,\n"));
    }
    upload(&sshd, &wd, "failing.csv", &text);
    let run = wd.piigate_with_fd_limit(48, &["run", "--config", "piigate.toml"]);
    run.expect_code(1);
    assert!(run.stderr().contains("max_reject_ratio"), "{}", run.describe());
    assert_eq!(list(&outbox), before);
    assert_eq!(list(&sshd.root().join("failed")), ["failing.csv", "failing.csv.reason.txt"]);
}

/// An unpublished output dropped when no pooled connection is idle is not
/// removed by connecting anew (a failing server would make every dropped
/// part wait for the connect timeout): the sink removes it on its next
/// connection, or when the sink itself is dropped.
#[test]
fn sftp_outputs_dropped_without_an_idle_connection_are_removed_by_the_sink() {
    use piigate::sink::{sftp::SftpSink, Sink};
    use std::io::Write;
    let sshd = Sshd::start();
    let settings = piigate::settings::SftpSettings {
        host: "127.0.0.1".into(),
        port: sshd.port(),
        user: sshd.user(),
        key_file: Some(sshd.client_key()),
        known_hosts: sshd.known_hosts(),
        password_env: None,
    };
    let pool = piigate::sftp::Pool::new(settings, Default::default());
    let outbox = sshd.root().join("outbox");
    std::fs::create_dir_all(&outbox).unwrap();
    let partials = || list(&outbox).into_iter().filter(|n| n.ends_with(".partial")).count();
    let sink = SftpSink::new(&pool, outbox.display().to_string());

    let mut a = sink.create("a.csv").unwrap();
    a.write_all(b"a\n").unwrap();
    a.finish().unwrap();
    let busy = pool.get().unwrap(); // the connection `a` gave back
    drop(a);
    assert_eq!(partials(), 1, "left for the sink");
    drop(busy);
    let mut b = sink.create("b.csv").unwrap();
    assert_eq!(partials(), 1, "a's removed on the sink's next connection; b's open");
    b.write_all(b"b\n").unwrap();
    b.finish().unwrap();
    let busy = pool.get().unwrap();
    drop(b);
    drop(busy);
    assert_eq!(partials(), 1);
    drop(sink);
    assert!(list(&outbox).is_empty(), "{:?}", list(&outbox));
}
