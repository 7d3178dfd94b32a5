//! `[sink.pgp]`: data files OpenPGP-encrypted to CleverTap's public key,
//! decrypted here with GnuPG.

use std::path::Path;
use std::process::Command;

use crate::parts::{input, verify_combined, with_limit};
use crate::workdir::{csv_rows, Workdir};

const KEY_ID: &str = "ec491319-0000-0000-0000-000000000000";

/// A throwaway GnuPG home with one key pair; killed agent on drop.
struct Gpg {
    home: tempfile::TempDir,
}

impl Gpg {
    /// `algo`: GnuPG's `--quick-gen-key` algorithm ("default" is an
    /// Ed25519 primary with a Curve25519 encryption subkey).
    fn new(algo: &str, usage: &str) -> Self {
        // Short path: gpg-agent's socket path has a length limit.
        let home = tempfile::Builder::new().prefix("pg").tempdir_in("/tmp").unwrap();
        let g = Gpg { home };
        g.ok(&["--quick-gen-key", "CleverTap Test <ct@example.test>", algo, usage, "never"]);
        g
    }

    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("gpg")
            .env("GNUPGHOME", self.home.path())
            .args(["--batch", "--yes", "--quiet", "--pinentry-mode", "loopback", "--passphrase", ""])
            .args(args)
            .output()
            .expect("gpg must be installed (scripts/ci-setup.sh installs gnupg)")
    }

    fn ok(&self, args: &[&str]) -> Vec<u8> {
        let out = self.cmd(args);
        assert!(out.status.success(), "gpg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf").env("GNUPGHOME", self.home.path()).args(["--kill", "gpg-agent"]).output();
    }
}

fn configure(wd: &Workdir, gpg: &Gpg, limit: u64) {
    let public = gpg.ok(&["--armor", "--export", "ct@example.test"]);
    wd.write("keys/clevertap-public.asc", public);
    with_limit(wd, limit);
    let cfg = wd.read("piigate.toml").replacen(
        "[state]",
        &format!("[sink.pgp]\nrecipient_key = \"keys/clevertap-public.asc\"\nkey_id = \"{KEY_ID}\"\n\n[state]"),
        1,
    );
    wd.write("piigate.toml", cfg);
}

fn encrypted_parts_decrypt_with_gnupg(algo: &str, usage: &str) {
    let gpg = Gpg::new(algo, usage);
    let wd = Workdir::new("");
    configure(&wd, &gpg, 20_000);
    let (text, rejected) = input();
    wd.write("inbox/big.csv", &text);
    std::fs::create_dir_all(wd.path("tmp")).unwrap();
    let tmp = wd.path("tmp");
    wd.piigate_env(&["run", "--config", "piigate.toml"], &[("TMPDIR", tmp.to_str().unwrap())]).expect_ok();

    let files = wd.list("outbox");
    let asc: Vec<&String> = files.iter().filter(|n| n.ends_with(".csv.asc")).collect();
    assert!(asc.len() >= 3, "expected several encrypted parts: {files:?}");
    assert_eq!(files.len(), 2 * asc.len(), "only .csv.asc files and their manifests: {files:?}");
    // No plaintext CSV anywhere piigate writes.
    assert!(std::fs::read_dir(&tmp).unwrap().next().is_none(), "TMPDIR must stay empty");
    for (path, bytes) in wd.written_files() {
        let name = path.to_string_lossy();
        if name.ends_with("/archive/big.csv") {
            continue; // the input itself
        }
        assert!(!name.ends_with(".csv"), "plaintext CSV at {name}");
        let body = String::from_utf8_lossy(&bytes);
        assert!(!body.contains("user7@example.test") && !body.contains("User, 7"), "plaintext in {name}");
    }

    let mut combined = Vec::new();
    for name in &asc {
        let path = wd.path("outbox").join(name);
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size <= 20_000, "{name} is {size} bytes");
        let armored = std::fs::read_to_string(&path).unwrap();
        assert!(armored.starts_with("-----BEGIN PGP MESSAGE-----"), "{name}");
        let plain = gpg.ok(&["--decrypt", path.to_str().unwrap()]);
        let rows = csv_rows(std::str::from_utf8(&plain).unwrap());
        assert_eq!(rows[0], ["identity", "email", "phone", "phone_hint", "name", "city", "score"], "{name}");
        if combined.is_empty() {
            combined.push(rows[0].clone());
        }
        combined.extend(rows.into_iter().skip(1));

        let manifest_name = name.replace(".csv.asc", ".manifest");
        let m: serde_json::Value = serde_json::from_str(&wd.read(&format!("outbox/{manifest_name}"))).unwrap();
        let keys: Vec<&String> = m.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["fileName", "type", "clientEmail", "keyId", "columns"]);
        assert_eq!(m["fileName"], name.as_str());
        assert_eq!(m["keyId"], KEY_ID);
    }
    verify_combined(&wd, "archive/big.csv", &combined, &rejected);
    // Tampering is detected (SEIPD's modification detection code).
    let path = wd.path("outbox").join(asc[0]);
    let mut armored = std::fs::read_to_string(&path).unwrap();
    let at = armored.find("\n\n").map_or(200, |i| i + 200);
    let flipped = if armored.as_bytes()[at] == b'A' { "B" } else { "A" };
    armored.replace_range(at..at + 1, flipped);
    std::fs::write(wd.path("tampered.asc"), armored).unwrap();
    assert!(!gpg.cmd(&["--decrypt", wd.path("tampered.asc").to_str().unwrap()]).status.success());
}

#[test]
fn encrypted_parts_to_a_curve25519_subkey_decrypt_with_gnupg() {
    encrypted_parts_decrypt_with_gnupg("default", "default");
}

#[test]
fn encrypted_parts_to_an_rsa_key_decrypt_with_gnupg() {
    encrypted_parts_decrypt_with_gnupg("rsa2048", "cert,sign,encr");
}

/// Encrypted parts past the descriptor limit: a finished part's encrypting
/// thread has ended and its file is closed while later parts are written.
#[test]
fn a_file_cut_into_more_encrypted_parts_than_open_descriptors_allows_is_published() {
    let gpg = Gpg::new("default", "default");
    let wd = Workdir::new("");
    configure(&wd, &gpg, 16 * 1024);
    wd.write("inbox/many.csv", crate::parts::many_rows(6000));
    wd.piigate_with_fd_limit(48, &["process", "--config", "piigate.toml", "inbox/many.csv"]).expect_ok();
    let asc: Vec<String> = wd.list("outbox").into_iter().filter(|n| n.ends_with(".csv.asc")).collect();
    assert!(asc.len() > 60, "{} parts", asc.len());
    let mut rows = 0;
    for name in &asc {
        let plain = gpg.ok(&["--decrypt", wd.path("outbox").join(name).to_str().unwrap()]);
        rows += csv_rows(std::str::from_utf8(&plain).unwrap()).len() - 1;
    }
    assert_eq!(rows, 6000);
}

#[test]
fn a_missing_or_unusable_recipient_key_is_a_config_error() {
    let gpg = Gpg::new("ed25519", "sign");
    let wd = Workdir::new("");
    configure(&wd, &gpg, 20_000);
    wd.write("inbox/a.csv", crate::process::GOOD);
    let run = wd.piigate(&["run", "--config", "piigate.toml"]);
    run.expect_code(2);
    assert!(run.stderr().contains("no encryption-capable key"), "{}", run.describe());
    assert!(run.stderr().contains("clevertap-public.asc"), "{}", run.describe());
    assert_eq!(wd.list("inbox"), ["a.csv"], "nothing processed");

    wd.write("keys/clevertap-public.asc", "not a key");
    let run = wd.piigate(&["process", "--config", "piigate.toml", "inbox/a.csv"]);
    run.expect_code(2);
    assert!(run.stderr().contains("BEGIN PGP PUBLIC KEY BLOCK"), "{}", run.describe());
    assert!(!Path::new(&wd.path("outbox")).exists() || wd.list("outbox").is_empty());
}

/// Over SFTP: the input streams from the server through the transform and
/// the OpenPGP encryption back to the server; nothing lands locally.
#[test]
fn encrypted_parts_over_sftp_never_touch_the_local_disk() {
    use crate::sftp::{key_auth, list, run_with_tmp, sftp_workdir, upload};
    let sshd = crate::sshd::Sshd::start();
    let wd = sftp_workdir(&sshd, &key_auth(&sshd));
    let gpg = Gpg::new("default", "default");
    configure(&wd, &gpg, 20_000);
    let (text, rejected) = input();
    upload(&sshd, &wd, "big.csv", &text);
    std::fs::remove_dir_all(wd.path("upload")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    run_with_tmp(&wd, tmp.path(), &[]).expect_ok();

    let root = sshd.root();
    let outbox = list(&root.join("outbox"));
    let asc: Vec<&String> = outbox.iter().filter(|n| n.ends_with(".csv.asc")).collect();
    assert!(asc.len() >= 3, "{outbox:?}");
    assert_eq!(outbox.len(), 2 * asc.len(), "only .csv.asc files and manifests: {outbox:?}");
    assert!(list(tmp.path()).is_empty(), "temp dir used: {:?}", list(tmp.path()));
    for (path, bytes) in wd.written_files() {
        let body = String::from_utf8_lossy(&bytes);
        assert!(!body.contains("user7@example.test") && !body.contains("User, 7"), "plaintext in {}", path.display());
    }
    let mut combined = Vec::new();
    for name in &asc {
        let path = root.join("outbox").join(name);
        assert!(std::fs::metadata(&path).unwrap().len() <= 20_000);
        let rows = csv_rows(std::str::from_utf8(&gpg.ok(&["--decrypt", path.to_str().unwrap()])).unwrap());
        if combined.is_empty() {
            combined.push(rows[0].clone());
        }
        combined.extend(rows.into_iter().skip(1));
        let m: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(root.join("outbox").join(name.replace(".csv.asc", ".manifest"))).unwrap(),
        )
        .unwrap();
        assert_eq!(m["fileName"], name.as_str());
        assert_eq!(m["keyId"], KEY_ID);
    }
    let input_path = root.join("processed/big.csv");
    verify_combined(&wd, input_path.to_str().unwrap(), &combined, &rejected);
}

/// A file that fails after its parts were encrypted (too many rejects)
/// leaves nothing in the outbox: no `.asc`, no partial, no manifest.
#[test]
fn a_failed_file_leaves_no_encrypted_output() {
    let gpg = Gpg::new("default", "default");
    let wd = Workdir::new("");
    configure(&wd, &gpg, 20_000);
    let (mut text, _) = input();
    for i in 0..200 {
        text.push_str(&format!("bad{i}@example.test,4.47701E+11,Bad,Town,1,\n"));
    }
    wd.write("inbox/big.csv", &text);
    let run = wd.piigate(&["run", "--config", "piigate.toml"]);
    run.expect_code(1);
    assert!(run.stderr().contains("max_reject_ratio"), "{}", run.describe());
    assert!(wd.list("outbox").is_empty(), "{:?}", wd.list("outbox"));
    assert_eq!(wd.list("quarantine"), ["big.csv", "big.csv.reason.txt"]);
}
