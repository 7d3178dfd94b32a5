//! `decrypt`, `pseudonym` and the access log.

use crate::process::GOOD;
use crate::workdir::{csv_rows, Workdir};

fn processed(wd: &Workdir) -> String {
    wd.write("inbox/p.csv", GOOD);
    wd.piigate(&["process", "--config", "piigate.toml", "inbox/p.csv"]).expect_ok();
    let out = wd.list("outbox").into_iter().find(|n| n.ends_with(".csv")).unwrap();
    format!("outbox/{out}")
}

#[test]
fn decrypt_restores_encrypted_columns_and_is_logged() {
    let wd = Workdir::new("");
    let out = processed(&wd);
    let run = wd.piigate(&["decrypt", "--config", "piigate.toml", "--reason", "ticket 42", &out, "-o", "plain.csv"]);
    run.expect_ok();
    let rows = csv_rows(&wd.read("plain.csv"));
    assert_eq!(rows[0], ["identity", "email", "phone", "phone_hint", "name", "city", "score"]);
    assert_eq!(rows[1][1], "ana.test@example.test");
    assert_eq!(rows[1][2], "+14155552671");
    assert_eq!(rows[2][2], "+14155552671", "extension dropped");
    assert_eq!(rows[3][1], "zo\u{eb}@example.test", "NFC");
    assert_eq!(rows[3][2], "+442079460000");
    assert_eq!(rows[3][4], "Zo\u{eb} Ångström");
    assert_eq!(rows[4][4], "Builder, Bob");
    assert_eq!(rows[4][2], "");
    assert!(rows[1][0].starts_with("u_"), "pseudonyms are not decrypted");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(wd.path("plain.csv")).unwrap().permissions().mode() & 0o777, 0o600);

    let log = wd.read("state/access-log.jsonl");
    let entry: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(entry["action"], "decrypt");
    assert_eq!(entry["reason"], "ticket 42");
    assert_eq!(entry["values"], 14);
    assert_eq!(entry["columns"], serde_json::json!(["email", "phone", "name"]));
    assert!(entry["user"].as_str().is_some_and(|u| !u.is_empty()));
    assert!(entry["host"].as_str().is_some_and(|h| !h.is_empty()));
    assert!(!log.contains("ana.test"));

    // Only the asked-for columns.
    wd.piigate(&[
        "decrypt",
        "--config",
        "piigate.toml",
        "--reason",
        "r",
        "--columns",
        "email",
        &out,
        "-o",
        "email.csv",
    ])
    .expect_ok();
    let rows = csv_rows(&wd.read("email.csv"));
    assert_eq!(rows[1][1], "ana.test@example.test");
    assert!(rows[1][2].starts_with("pg1:"));
    // Never overwrites.
    wd.piigate(&["decrypt", "--config", "piigate.toml", "--reason", "r", &out, "-o", "email.csv"]).expect_code(2);
}

#[test]
fn decrypt_refuses_a_token_moved_to_another_column() {
    let wd = Workdir::new("");
    let out = processed(&wd);
    let mut rows = csv_rows(&wd.read(&out));
    rows[2][4] = rows[2][1].clone(); // email token pasted into the name column
    let mut w = csv::Writer::from_path(wd.path("tampered.csv")).unwrap();
    for r in &rows {
        w.write_record(r).unwrap();
    }
    w.flush().unwrap();
    let run = wd.piigate(&["decrypt", "--config", "piigate.toml", "--reason", "r", "tampered.csv", "-o", "p.csv"]);
    run.expect_code(1);
    assert!(run.stderr().contains("line 3") && run.stderr().contains("\"name\""), "{}", run.describe());
    assert!(!wd.path("p.csv").exists());
}

#[test]
fn pseudonym_matches_the_output_and_is_logged() {
    let wd = Workdir::new("");
    let out = processed(&wd);
    let rows = csv_rows(&wd.read(&out));
    let run = wd.piigate(&["pseudonym", "--config", "piigate.toml", "  ANA.test@example.TEST"]);
    run.expect_ok();
    assert_eq!(run.stdout().trim(), rows[1][0]);
    let log = wd.read("state/access-log.jsonl");
    let entry: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(entry["action"], "pseudonym");
    assert!(!log.to_lowercase().contains("ana.test"));
}

#[test]
fn access_log_verify_detects_tampering() {
    let wd = Workdir::new("");
    let out = processed(&wd);
    for (i, reason) in ["first", "second", "third"].iter().enumerate() {
        wd.piigate(&["decrypt", "--config", "piigate.toml", "--reason", reason, &out, "-o", &format!("p{i}.csv")])
            .expect_ok();
    }
    let run = wd.piigate(&["access-log", "verify", "--config", "piigate.toml"]);
    run.expect_ok();
    assert!(run.stderr().contains("3 entries"), "{}", run.describe());

    let log = wd.read("state/access-log.jsonl");
    let lines: Vec<&str> = log.lines().collect();
    let variants = [
        ("altered", log.replace("\"second\"", "\"innocent\"")),
        ("removed", format!("{}\n{}\n", lines[0], lines[2])),
        ("reordered", format!("{}\n{}\n{}\n", lines[1], lines[0], lines[2])),
        ("truncated", format!("{}\n{}\n", lines[0], lines[1])),
    ];
    for (what, text) in variants {
        wd.write("state/access-log.jsonl", &text);
        let run = wd.piigate(&["access-log", "verify", "--config", "piigate.toml"]);
        assert_eq!(run.code(), 1, "{what} must fail verification\n{}", run.describe());
    }
    wd.write("state/access-log.jsonl", &log);
    wd.piigate(&["access-log", "verify", "--config", "piigate.toml"]).expect_ok();
}

#[test]
fn decrypt_needs_a_reason() {
    let wd = Workdir::new("");
    let out = processed(&wd);
    wd.piigate(&["decrypt", "--config", "piigate.toml", &out, "-o", "x.csv"]).expect_code(2);
    wd.piigate(&["decrypt", "--config", "piigate.toml", "--reason", " ", &out, "-o", "x.csv"]).expect_code(2);
}
