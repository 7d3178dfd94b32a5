//! `action = "encrypt-deterministic"`: AES-SIV tokens that stay matchable.

use crate::process::GOOD;
use crate::workdir::{csv_rows, Workdir, SCHEMA};

const DET_COLUMN: &str = r#"
[[schema.columns]]
name = "email_match"
from = "email"
action = "encrypt-deterministic"
normalize = "email"
"#;

fn det_workdir() -> Workdir {
    let wd = Workdir::new("");
    wd.write_config("", &format!("{SCHEMA}{DET_COLUMN}"));
    wd
}

fn outputs(wd: &Workdir) -> Vec<String> {
    wd.list("outbox").into_iter().filter(|n| n.ends_with(".csv")).map(|n| format!("outbox/{n}")).collect()
}

#[test]
fn equal_values_give_equal_tokens_that_decrypt() {
    let wd = det_workdir();
    wd.write("inbox/a.csv", GOOD);
    wd.write("inbox/b.csv", GOOD);
    wd.piigate(&["process", "--config", "piigate.toml", "inbox/a.csv", "inbox/b.csv"]).expect_ok();
    let outs = outputs(&wd);
    assert_eq!(outs.len(), 2);
    let a = csv_rows(&wd.read(&outs[0]));
    let b = csv_rows(&wd.read(&outs[1]));
    let col = a[0].iter().position(|h| h == "email_match").unwrap();
    let email = a[0].iter().position(|h| h == "email").unwrap();
    // Rows 1 and 2 hold the same address typed differently.
    assert!(a[1][col].starts_with("pd1:"), "{}", a[1][col]);
    assert_eq!(a[1][col], a[2][col], "equal normalized values give equal tokens");
    assert_ne!(a[1][col], a[3][col], "different values give different tokens");
    assert_ne!(a[1][email], a[2][email], "randomized tokens of the same value differ");
    for (ra, rb) in a.iter().zip(&b).skip(1) {
        assert_eq!(ra[col], rb[col], "the same value gives the same token in another file");
    }
    assert!(!wd.read(&outs[0]).contains("ana.test@example.test"));
    let manifest = wd.read(&outs[0].replace(".csv", ".manifest"));
    let m: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(m["columns"]["email_match"]["dataType"], "STRING");

    let py = wd.verify_with_python("inbox/a.csv", &outs[0], &[]);
    assert!(py.status.success(), "{}\n{}", String::from_utf8_lossy(&py.stdout), String::from_utf8_lossy(&py.stderr));

    wd.piigate(&[
        "decrypt",
        "--config",
        "piigate.toml",
        "--reason",
        "match check",
        "--columns",
        "email_match",
        &outs[0],
        "-o",
        "plain.csv",
    ])
    .expect_ok();
    let plain = csv_rows(&wd.read("plain.csv"));
    assert_eq!(plain[1][col], "ana.test@example.test");
    assert_eq!(plain[2][col], "ana.test@example.test");
    assert_eq!(plain[3][col], "zo\u{eb}@example.test");
    assert!(plain[1][email].starts_with("pg1:"), "only the asked-for column is decrypted");
    let log = wd.read("state/access-log.jsonl");
    let entry: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(entry["columns"], serde_json::json!(["email_match"]));
    assert_eq!(entry["values"], 5);

    // A token moved to another column does not decrypt.
    let mut rows = a.clone();
    rows[1][col] = a[1][email].clone();
    rows[2][col] = a[1][col].clone();
    let mut w = csv::Writer::from_path(wd.path("moved.csv")).unwrap();
    for r in &rows {
        w.write_record(r).unwrap();
    }
    w.flush().unwrap();
    let run = wd.piigate(&[
        "decrypt",
        "--config",
        "piigate.toml",
        "--reason",
        "r",
        "--columns",
        "email_match",
        "moved.csv",
        "-o",
        "m.csv",
    ]);
    run.expect_code(1);
    assert!(run.stderr().contains("line 2") && run.stderr().contains("email_match"), "{}", run.describe());
}

#[test]
fn keyring_without_deterministic_key_says_how_to_add_one() {
    let wd = det_workdir();
    let ring = wd.read("keys/keyring.toml");
    let old: String = ring.lines().filter(|l| !l.starts_with("deterministic_key")).map(|l| format!("{l}\n")).collect();
    assert_ne!(old, ring);
    wd.write("keys/keyring.toml", &old);
    wd.write("inbox/a.csv", GOOD);
    let run = wd.piigate(&["process", "--config", "piigate.toml", "inbox/a.csv"]);
    run.expect_code(2);
    assert!(
        run.stderr().contains("keys add-deterministic-key") && run.stderr().contains("email_match"),
        "{}",
        run.describe()
    );
    assert!(outputs(&wd).is_empty());

    wd.piigate(&["keys", "add-deterministic-key", "--config", "piigate.toml"]).expect_ok();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(wd.path("keys/keyring.toml")).unwrap().permissions().mode() & 0o777, 0o600);
    let run = wd.piigate(&["keys", "add-deterministic-key", "--config", "piigate.toml"]);
    run.expect_code(2);
    assert!(run.stderr().contains("never replaced"), "{}", run.describe());
    wd.piigate(&["process", "--config", "piigate.toml", "inbox/a.csv"]).expect_ok();
    let out = &outputs(&wd)[0];
    let py = wd.verify_with_python("inbox/a.csv", out, &[]);
    assert!(py.status.success(), "{}", String::from_utf8_lossy(&py.stdout));
}

#[test]
fn deterministic_column_is_always_text() {
    let wd = Workdir::new("");
    wd.write_config("", &format!("{SCHEMA}{DET_COLUMN}ct_type = \"INTEGER\"\n"));
    let run = wd.piigate(&["process", "--config", "piigate.toml", "x.csv"]);
    run.expect_code(2);
    assert!(run.stderr().contains("ct_type"), "{}", run.describe());
}

/// A column whose action changed between encrypt and encrypt-deterministic
/// still decrypts: cells are told apart by their version prefix.
#[test]
fn decrypt_follows_the_token_version_not_the_current_schema() {
    let wd = det_workdir();
    wd.write("inbox/a.csv", GOOD);
    wd.piigate(&["process", "--config", "piigate.toml", "inbox/a.csv"]).expect_ok();
    let out = &outputs(&wd)[0];
    // email (written as pg1) becomes deterministic, email_match (written as pd1) randomized.
    let swapped = format!("{SCHEMA}{DET_COLUMN}")
        .replacen("name = \"email\"\naction = \"encrypt\"", "name = \"email\"\naction = \"encrypt-deterministic\"", 1)
        .replacen(
            "name = \"email_match\"\nfrom = \"email\"\naction = \"encrypt-deterministic\"",
            "name = \"email_match\"\nfrom = \"email\"\naction = \"encrypt\"",
            1,
        );
    assert!(swapped.contains("name = \"email\"\naction = \"encrypt-deterministic\""), "{swapped}");
    wd.write_config("", &swapped);
    wd.piigate(&["decrypt", "--config", "piigate.toml", "--reason", "r", out, "-o", "plain.csv"]).expect_ok();
    let plain = csv_rows(&wd.read("plain.csv"));
    let email = plain[0].iter().position(|h| h == "email").unwrap();
    let det = plain[0].iter().position(|h| h == "email_match").unwrap();
    assert_eq!(plain[1][email], "ana.test@example.test");
    assert_eq!(plain[1][det], "ana.test@example.test");
}
