//! `piigate process` end to end on real files.

use crate::workdir::{csv_rows, Workdir};

/// Tricky but valid rows: quoting, embedded newlines, CRLF, NFD, national
/// and international phones, empty optional cells.
pub const GOOD: &str = "email,phone,name,city,score,notes\r\n\
Ana.Test@Example.TEST ,(415) 555-2671,Ana Test,\"San Francisco, CA\",10,\"likes \"\"quotes\"\"\"\r\n\
ana.test@example.test,+1 415 555 2671 x12,  Ana Test  ,Oakland,11,\r\n\
zo\u{65}\u{308}@example.test,+44 (0)20 7946 0000,Zo\u{eb} Ångström,London,12,\"multi\r\nline note\"\r\n\
bob.builder@example.test,,\"Builder, Bob\",\"Leeds\",0,\r\n\
carol@example.test,212-555-0199,Carol O'Neil,New York,7,plain\r\n";

fn process(wd: &Workdir, files: &[&str]) -> crate::workdir::Run {
    let mut args = vec!["process", "--config", "piigate.toml"];
    args.extend_from_slice(files);
    wd.piigate(&args)
}

fn outputs(wd: &Workdir) -> Vec<String> {
    wd.list("outbox").into_iter().filter(|n| n.ends_with(".csv")).collect()
}

#[test]
fn process_writes_csv_and_manifest_that_verify_independently() {
    let wd = Workdir::new("");
    wd.write("inbox/profiles.csv", GOOD);
    process(&wd, &["inbox/profiles.csv"]).expect_ok();
    let outs = outputs(&wd);
    assert_eq!(outs.len(), 1, "{:?}", wd.list("outbox"));
    let out = &outs[0];
    assert!(
        out.starts_with("profiles-") && out.len() == "profiles-20261129T030000Z-0123456789abcdef.csv".len(),
        "{out}"
    );
    let manifest_name = out.replace(".csv", ".manifest");
    assert!(wd.list("outbox").contains(&manifest_name));
    assert!(!wd.list("outbox").iter().any(|n| n.contains(".partial")));

    let rows = csv_rows(&wd.read(&format!("outbox/{out}")));
    assert_eq!(rows[0], ["identity", "email", "phone", "phone_hint", "name", "city", "score"]);
    assert_eq!(rows.len(), 6);
    // The same person typed two ways gets one pseudonym; Zoë NFD too.
    assert_eq!(rows[1][0], rows[2][0]);
    assert!(rows[1][0].starts_with("u_") && rows[1][0].len() == 28);
    // Tokens differ even for equal plaintexts (fresh nonces).
    assert_ne!(rows[1][1], rows[2][1]);
    assert!(rows[1][1].starts_with("pg1:"));
    // Empty phone stays empty; mask keeps the last four digits.
    assert_eq!(rows[4][2], "");
    assert_eq!(rows[1][3], "***2671");
    assert_eq!(rows[3][5], "London");
    assert_eq!(rows[1][5], "San Francisco, CA");

    let m: serde_json::Value = serde_json::from_str(&wd.read(&format!("outbox/{manifest_name}"))).unwrap();
    assert_eq!(m["type"], "profile");
    assert_eq!(m["fileName"], out.as_str());
    assert_eq!(m["clientEmail"], "ops@example.com");
    assert_eq!(m["columns"]["score"]["dataType"], "INTEGER");
    assert_eq!(m["columns"]["email"]["dataType"], "STRING");
    assert_eq!(m["columns"]["identity"]["ctName"], "identity");
    assert!(m["columns"].get("notes").is_none());
    let order: Vec<&String> = m["columns"].as_object().unwrap().keys().collect();
    assert_eq!(order, rows[0].iter().collect::<Vec<_>>(), "manifest columns in output order");

    let py = wd.verify_with_python("inbox/profiles.csv", &format!("outbox/{out}"), &[]);
    assert!(
        py.status.success(),
        "independent verifier failed:\n{}\n{}",
        String::from_utf8_lossy(&py.stdout),
        String::from_utf8_lossy(&py.stderr)
    );
    assert!(String::from_utf8_lossy(&py.stdout).contains("verified 5 rows"), "{}", String::from_utf8_lossy(&py.stdout));
}

#[test]
fn two_files_share_pseudonyms_but_not_data_keys() {
    let wd = Workdir::new("");
    wd.write("inbox/a.csv", GOOD);
    wd.write("inbox/b.csv", GOOD.replace("\r\n", "\n"));
    process(&wd, &["inbox/a.csv", "inbox/b.csv"]).expect_ok();
    let outs = outputs(&wd);
    assert_eq!(outs.len(), 2);
    let a = csv_rows(&wd.read(&format!("outbox/{}", outs[0])));
    let b = csv_rows(&wd.read(&format!("outbox/{}", outs[1])));
    for i in 1..a.len() {
        assert_eq!(a[i][0], b[i][0], "row {i} pseudonym");
    }
    let dek = |name: &str| name.rsplit('-').next().unwrap().trim_end_matches(".csv").to_owned();
    assert_ne!(dek(&outs[0]), dek(&outs[1]));
    let ks = wd.read("state/data-keys.jsonl");
    assert!(ks.contains(&dek(&outs[0])) && ks.contains(&dek(&outs[1])));
    assert!(a[1][1].contains(&dek(&outs[0])));
}

#[test]
fn ragged_and_bad_rows_under_the_ratio_are_rejected_by_line() {
    let wd = Workdir::new("");
    let mut text = String::from("email,phone,name,city,score,notes\n");
    for i in 0..20 {
        text.push_str(&format!("user{i}@example.test,(415) 555-26{i:02},User {i},Town,{i},\n"));
    }
    text.push_str("too,few\n"); // line 22
    text.push_str(",(415) 555-2600,No Email,Town,1,\n"); // line 23: required email empty
    text.push_str("x@example.test,4.47701E+11,Bad Phone,Town,1,\n"); // line 24
    wd.write("inbox/ragged.csv", &text);
    let run = process(&wd, &["inbox/ragged.csv"]);
    run.expect_ok();
    let reports = wd.list("state/runs");
    assert_eq!(reports.len(), 1);
    let rep: serde_json::Value = serde_json::from_str(&wd.read(&format!("state/runs/{}", reports[0]))).unwrap();
    let f = &rep["files"][0];
    assert_eq!(f["rows_read"], 23);
    assert_eq!(f["rows_written"], 20);
    assert_eq!(f["rows_rejected"], 3);
    let lines: Vec<u64> = f["rejects"].as_array().unwrap().iter().map(|r| r["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, [22, 23, 24]);
    let kinds: Vec<&str> = f["rejects"].as_array().unwrap().iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["wrong_field_count", "required_empty", "not_a_phone"]);
    let report_text = wd.read(&format!("state/runs/{}", reports[0]));
    assert!(!report_text.contains("4.47701E+11") && !report_text.contains("x@example.test"));
    let out = &outputs(&wd)[0];
    let py = wd.verify_with_python("inbox/ragged.csv", &format!("outbox/{out}"), &lines);
    assert!(py.status.success(), "{}", String::from_utf8_lossy(&py.stdout));
}

#[test]
fn too_many_rejects_fail_the_file_and_leave_no_output() {
    let wd = Workdir::new("");
    let mut text = String::from("email,phone,name,city,score,notes\n");
    for i in 0..5 {
        text.push_str(&format!("user{i}@example.test,,User {i},Town,{i},\n"));
    }
    for _ in 0..5 {
        text.push_str("ragged,row\n");
    }
    wd.write("inbox/bad.csv", &text);
    wd.write("inbox/good.csv", GOOD);
    let run = process(&wd, &["inbox/bad.csv", "inbox/good.csv"]);
    run.expect_code(1);
    assert!(run.stderr().contains("inbox/bad.csv") && run.stderr().contains("max_reject_ratio"), "{}", run.describe());
    assert!(run.stderr().contains("line 7"), "{}", run.describe());
    let outs = outputs(&wd);
    assert_eq!(outs.len(), 1, "only the good file has an output: {outs:?}");
    assert!(outs[0].starts_with("good-"));
    assert!(!wd.list("outbox").iter().any(|n| n.contains("bad") || n.contains(".partial")), "{:?}", wd.list("outbox"));
}

#[test]
fn unknown_column_is_rejected_by_name_with_no_output() {
    let wd = Workdir::new("");
    wd.write("inbox/extra.csv", "email,phone,name,city,score,notes,ssn\na@example.test,,A,B,1,,123-45-6789\n");
    let run = process(&wd, &["inbox/extra.csv"]);
    run.expect_code(1);
    assert!(run.stderr().contains("\"ssn\" (column 7)"), "{}", run.describe());
    assert!(!run.stderr().contains("123-45-6789"));
    assert!(outputs(&wd).is_empty());
    assert!(!wd.list("outbox").iter().any(|n| n.contains(".partial")));
}

#[test]
fn unknown_columns_drop_and_keep_policies() {
    let input = "email,phone,name,city,score,notes,extra\na@example.test,,A,B,1,,xyz\n";
    let wd = Workdir::new("");
    let cfg = wd.read("piigate.toml").replace("unknown_columns = \"reject\"", "unknown_columns = \"drop\"");
    wd.write("piigate.toml", &cfg);
    wd.write("inbox/x.csv", input);
    process(&wd, &["inbox/x.csv"]).expect_ok();
    let rows = csv_rows(&wd.read(&format!("outbox/{}", outputs(&wd)[0])));
    assert!(!rows[0].contains(&"extra".to_string()));

    let wd = Workdir::new("");
    let cfg = wd.read("piigate.toml").replace("unknown_columns = \"reject\"", "unknown_columns = \"keep\"");
    wd.write("piigate.toml", &cfg);
    wd.write("inbox/x.csv", input);
    process(&wd, &["inbox/x.csv"]).expect_ok();
    let rows = csv_rows(&wd.read(&format!("outbox/{}", outputs(&wd)[0])));
    assert_eq!(rows[0].last().unwrap(), "extra");
    assert_eq!(rows[1].last().unwrap(), "xyz");
}

#[test]
fn missing_and_duplicate_columns_fail_the_file() {
    let wd = Workdir::new("");
    wd.write("inbox/missing.csv", "email,phone,name,city,notes\na@example.test,,A,B,\n");
    wd.write("inbox/dup.csv", "email,phone,name,city,score,notes,city\na@example.test,,A,B,1,,C\n");
    let run = process(&wd, &["inbox/missing.csv", "inbox/dup.csv"]);
    run.expect_code(1);
    assert!(run.stderr().contains("missing column \"score\""), "{}", run.describe());
    assert!(run.stderr().contains("duplicate column \"city\""), "{}", run.describe());
    assert!(outputs(&wd).is_empty());
}

#[test]
fn bom_and_other_delimiters() {
    let wd = Workdir::new("[csv]\ndelimiter = \";\"\n");
    // [csv] must not sit inside [schema]: rewrite the config with the table at the end.
    let cfg = wd.read("piigate.toml").replace("[csv]\ndelimiter = \";\"\n", "");
    wd.write("piigate.toml", format!("{cfg}\n[csv]\ndelimiter = \";\"\n"));
    let semi = format!(
        "\u{feff}{}",
        GOOD.replace(',', ";")
            .replace("\"San Francisco; CA\"", "\"San Francisco, CA\"")
            .replace("\"Builder; Bob\"", "\"Builder, Bob\"")
    );
    wd.write("inbox/semi.csv", semi);
    process(&wd, &["inbox/semi.csv"]).expect_ok();
    let rows = csv_rows(&wd.read(&format!("outbox/{}", outputs(&wd)[0])));
    assert_eq!(rows[0][0], "identity", "BOM must not stick to the first header");
    assert_eq!(rows[1][5], "San Francisco, CA");
    let py = wd.verify_with_python("inbox/semi.csv", &format!("outbox/{}", outputs(&wd)[0]), &[]);
    assert!(py.status.success(), "{}", String::from_utf8_lossy(&py.stdout));
}

#[test]
fn no_plaintext_pii_in_anything_written_or_printed() {
    let wd = Workdir::new("");
    wd.write("inbox/p.csv", GOOD);
    wd.write(
        "inbox/bad.csv",
        "email,phone,name,city,score,notes\nsecret.person@example.test,4.47701E+11,Secret Person,X,1,\nragged\n",
    );
    let run = process(&wd, &["inbox/p.csv", "inbox/bad.csv", "-v"]);
    let needles = [
        "ana.test@example.test",
        "Ana.Test@Example.TEST",
        "Ana Test",
        "Builder, Bob",
        "bob.builder",
        "Carol O'Neil",
        "2671",
        "7946 0000",
        "secret.person",
        "Secret Person",
        "4.47701E+11",
    ];
    let mut haystacks: Vec<(String, Vec<u8>)> =
        vec![("stdout".into(), run.out.stdout.clone()), ("stderr".into(), run.out.stderr.clone())];
    for (p, b) in wd.written_files() {
        haystacks.push((p.display().to_string(), b));
    }
    for (name, bytes) in &haystacks {
        let text = String::from_utf8_lossy(bytes);
        for n in needles {
            // The mask keeps the last four digits of phones by design.
            if n == "2671" && name.ends_with(".csv") {
                continue;
            }
            assert!(!text.contains(n), "{name} contains a plaintext value ({n:?})");
        }
    }
}

#[test]
fn config_errors_exit_2_and_name_the_key() {
    let wd = Workdir::new("");
    let cfg = wd.read("piigate.toml");
    wd.write("piigate.toml", cfg.replace("action = \"mask\"", "action = \"scramble\""));
    wd.write("inbox/p.csv", GOOD);
    let run = process(&wd, &["inbox/p.csv"]);
    run.expect_code(2);
    assert!(run.stderr().contains("scramble") && run.stderr().contains("pseudonymize"), "{}", run.describe());

    wd.write("piigate.toml", cfg.replace("default_region = \"US\"", "default_region = \"XX\""));
    let run = process(&wd, &["inbox/p.csv"]);
    run.expect_code(2);
    assert!(run.stderr().contains("default_region"), "{}", run.describe());

    wd.write("piigate.toml", cfg.replace("[state]", "[state]\ncolour = \"blue\""));
    let run = process(&wd, &["inbox/p.csv"]);
    run.expect_code(2);
    assert!(run.stderr().contains("colour"), "{}", run.describe());
}

#[test]
fn keygen_refuses_to_overwrite_and_creates_0600() {
    let wd = Workdir::new("");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(wd.path("keys/keyring.toml")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let before = wd.read("keys/keyring.toml");
    let run = wd.piigate(&["keygen", "--keyring", "keys/keyring.toml"]);
    run.expect_code(2);
    assert!(run.stderr().contains("already exists"));
    assert_eq!(wd.read("keys/keyring.toml"), before);
    assert!(!run.stderr().contains(before.lines().nth(2).unwrap()));
}

#[test]
fn keyring_from_environment_overrides_config() {
    let wd = Workdir::new("");
    wd.piigate(&["keygen", "--keyring", "other/ring.toml"]).expect_ok();
    wd.write("inbox/p.csv", GOOD);
    let other = wd.path("other/ring.toml");
    wd.piigate_env(
        &["process", "--config", "piigate.toml", "inbox/p.csv"],
        &[("PIIGATE_KEYRING", other.to_str().unwrap())],
    )
    .expect_ok();
    let out = &outputs(&wd)[0];
    // Verifies only with the other keyring.
    let py = wd.verify_with_python("inbox/p.csv", &format!("outbox/{out}"), &[]);
    assert!(!py.status.success());
}

/// Copies `samples/` into a scratch dir (the demo config and keyring).
fn samples_workdir() -> Workdir {
    let wd = Workdir { dir: tempfile::tempdir().unwrap() };
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
    for sub in ["inbox", "keys", "expected"] {
        std::fs::create_dir_all(wd.path(sub)).unwrap();
        for e in std::fs::read_dir(src.join(sub)).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), wd.path(sub).join(e.file_name())).unwrap();
        }
    }
    std::fs::copy(src.join("piigate.toml"), wd.path("piigate.toml")).unwrap();
    wd
}

/// Regression: the csv crate counts CRLF lines short; rejects must name the
/// physical line where the bad record starts (the sample has CRLF line ends,
/// a BOM and quoted fields with embedded line breaks).
#[test]
fn sample_bad_rows_are_reported_on_their_physical_lines() {
    let wd = samples_workdir();
    let run = wd.piigate(&["process", "--config", "piigate.toml", "inbox/profiles-2026-11-29.csv"]);
    run.expect_ok();
    assert!(run.stderr().contains("DEMO keyring"), "the demo keyring is announced\n{}", run.describe());
    let expected: serde_json::Value =
        serde_json::from_str(&wd.read("expected/profiles-2026-11-29.csv.bad.json")).unwrap();
    let mut want: Vec<u64> = ["ragged", "missing_email", "bad_phone"]
        .iter()
        .flat_map(|k| expected[k].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()))
        .collect();
    want.sort();
    let report_name = &wd.list("state/runs")[0];
    let report: serde_json::Value = serde_json::from_str(&wd.read(&format!("state/runs/{report_name}"))).unwrap();
    let got: Vec<u64> =
        report["files"][0]["rejects"].as_array().unwrap().iter().map(|r| r["line"].as_u64().unwrap()).collect();
    assert_eq!(got, want);
    let out = wd.list("outbox").into_iter().find(|n| n.ends_with(".csv")).unwrap();
    let py = wd.verify_with_python("inbox/profiles-2026-11-29.csv", &format!("outbox/{out}"), &got);
    assert!(py.status.success(), "{}", String::from_utf8_lossy(&py.stdout));
}

#[test]
fn every_sample_file_verifies_independently() {
    let wd = samples_workdir();
    wd.piigate(&["process", "--config", "piigate.toml", "inbox/profiles-2026-11-28.csv", "inbox/crm-export-eu.csv"])
        .expect_ok();
    for (input, stem) in [("profiles-2026-11-28.csv", "profiles-2026-11-28-"), ("crm-export-eu.csv", "crm-export-eu-")]
    {
        let out = wd.list("outbox").into_iter().find(|n| n.starts_with(stem) && n.ends_with(".csv")).unwrap();
        let py = wd.verify_with_python(&format!("inbox/{input}"), &format!("outbox/{out}"), &[]);
        assert!(py.status.success(), "{input}: {}", String::from_utf8_lossy(&py.stdout));
    }
}

#[test]
fn invalid_utf8_in_a_transformed_column_rejects_the_row() {
    let wd = Workdir::new("");
    let mut bytes = b"email,phone,name,city,score,notes\n".to_vec();
    bytes.extend_from_slice(b"a@example.test,,Ana,Town,1,\n");
    bytes.extend_from_slice(b"b@example.test,,B\xff\xfeb,Town,2,\n"); // line 3: bad UTF-8 in the encrypted name
    bytes.extend_from_slice(b"c@example.test,,Cy,T\xffwn,3,\n"); // line 4: kept column, passed through as bytes
    for i in 0..20 {
        bytes.extend_from_slice(format!("u{i}@example.test,,U,Town,{i},\n").as_bytes());
    }
    wd.write("inbox/utf8.csv", &bytes);
    process(&wd, &["inbox/utf8.csv"]).expect_ok();
    let report_name = &wd.list("state/runs")[0];
    let report: serde_json::Value = serde_json::from_str(&wd.read(&format!("state/runs/{report_name}"))).unwrap();
    let rejects = report["files"][0]["rejects"].as_array().unwrap();
    assert_eq!(rejects.len(), 1);
    assert_eq!(rejects[0]["line"], 3);
    assert_eq!(rejects[0]["kind"], "invalid_utf8");
    assert_eq!(rejects[0]["column"], "name");
}

#[test]
fn typed_keep_columns_and_identity_length_reject_rows_by_line_and_column() {
    let wd = Workdir::new("");
    let mut text = String::from("email,phone,name,city,score,notes\n");
    for i in 0..30 {
        text.push_str(&format!("u{i}@example.test,,U,Town,{i},\n"));
    }
    text.push_str("bad@example.test,,B,Town,12.5,\n"); // line 32: INTEGER
    text.push_str("worse@example.test,,W,Town,seven,\n"); // line 33
    wd.write("inbox/typed.csv", &text);
    process(&wd, &["inbox/typed.csv"]).expect_ok();
    let report_name = &wd.list("state/runs")[0];
    let report: serde_json::Value = serde_json::from_str(&wd.read(&format!("state/runs/{report_name}"))).unwrap();
    let rejects = report["files"][0]["rejects"].as_array().unwrap();
    let got: Vec<(u64, &str, &str)> = rejects
        .iter()
        .map(|r| (r["line"].as_u64().unwrap(), r["kind"].as_str().unwrap(), r["column"].as_str().unwrap()))
        .collect();
    assert_eq!(got, [(32, "bad_type", "score"), (33, "bad_type", "score")]);
    assert!(!wd.read(&format!("state/runs/{report_name}")).contains("seven"));

    // A kept identity of 1024 characters or more is refused too.
    let wd = Workdir::new("");
    wd.write_config(
        "",
        "[[schema.columns]]\nname = \"identity\"\nfrom = \"id\"\naction = \"keep\"\n\n[[schema.columns]]\nname = \"city\"\n",
    );
    let long = "x".repeat(1024);
    let mut text = String::from("id,city\n");
    for i in 0..20 {
        text.push_str(&format!("ID{i},Town\n"));
    }
    text.push_str(&format!("{long},Town\n,Town\n"));
    wd.write("inbox/ids.csv", &text);
    process(&wd, &["inbox/ids.csv"]).expect_ok();
    let report_name = &wd.list("state/runs")[0];
    let report: serde_json::Value = serde_json::from_str(&wd.read(&format!("state/runs/{report_name}"))).unwrap();
    let lines: Vec<u64> =
        report["files"][0]["rejects"].as_array().unwrap().iter().map(|r| r["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, [22, 23]);
}

#[test]
fn clevertap_email_property_must_hold_the_real_address() {
    let wd = Workdir::new("");
    let cfg = wd.read("piigate.toml");
    wd.write(
        "piigate.toml",
        cfg.replacen(
            "name = \"email\"\naction = \"encrypt\"",
            "name = \"email\"\naction = \"encrypt\"\nct_name = \"Email\"",
            1,
        ),
    );
    wd.write("inbox/p.csv", GOOD);
    let run = process(&wd, &["inbox/p.csv"]);
    run.expect_code(2);
    assert!(run.stderr().contains("ct_name") && run.stderr().contains("Email"), "{}", run.describe());
}
