//! `piigate audit` and the job's audit step on files no other test uses.

use crate::workdir::Workdir;

const COLUMNS: &str = r#"
[[schema.columns]]
name = "identity"
from = "email"
action = "pseudonymize"
normalize = "email"
required = true

[[schema.columns]]
name = "ref"
action = "keep"

[[schema.columns]]
name = "comment"
action = "keep"
"#;

fn audit_workdir() -> Workdir {
    let wd = Workdir::new("");
    wd.write_config("", COLUMNS);
    wd
}

/// 16-digit references that fail the Luhn check, prices, ZIP codes,
/// timestamps and SKUs in plain comments: nothing personal.
fn clean(rows: usize) -> String {
    let mut s = String::from("email,ref,comment\n");
    for i in 0..rows {
        // 4000 0000 0000 000x fails Luhn unless x = 2.
        let check = if i % 10 == 2 { 3 } else { i % 10 };
        s.push_str(&format!(
            "user{i}@example.test,400000000000{i:03}{check},\"Order shipped, price 12{i}.50 USD, ZIP 9410{}, SKU AB-{i:07} at 2026-11-29T03:00:00Z\"\n",
            i % 10
        ));
    }
    s
}

fn with_comment(rows: usize, f: impl Fn(usize) -> String) -> String {
    let mut s = String::from("email,ref,comment\n");
    for i in 0..rows {
        s.push_str(&format!("user{i}@example.test,R-{i:06},\"{}\"\n", f(i)));
    }
    s
}

#[test]
fn audit_passes_clean_files_and_names_column_and_kind_of_hidden_pii() {
    let wd = audit_workdir();
    wd.write("in/clean.csv", clean(200));
    let cards = ["4111 1111 1111 1111", "5500-0000-0000-0004", "340000000000009", "4012888888881881"];
    let cases: [(&str, String, &str); 4] = [
        ("emails.csv", with_comment(200, |i| format!("follow up with jane.roe{i}@corp.example.com today")), "email"),
        ("cards.csv", with_comment(200, |i| format!("paid with card {}", cards[i % 4])), "payment_card"),
        ("phones.csv", with_comment(200, |i| format!("call back on +44 20 7946 0{:03} after 5pm", i % 1000)), "phone"),
        (
            "gps.csv",
            with_comment(200, |i| format!("delivered at 51.50{:02}7, -0.1{:02}276", i % 100, i % 100)),
            "geo_location",
        ),
    ];
    for (name, text, _) in &cases {
        wd.write(&format!("in/{name}"), text);
    }
    let run = wd.piigate(&["audit", "--config", "piigate.toml", "in/clean.csv"]);
    run.expect_ok();
    assert!(run.stdout().contains("in/clean.csv: ok"), "{}", run.describe());
    assert!(!run.stdout().contains("finding"), "{}", run.describe());

    for (name, text, kind) in &cases {
        let path = format!("in/{name}");
        let run = wd.piigate(&["audit", "--config", "piigate.toml", "--json", &path]);
        run.expect_code(1);
        let v: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
        let findings = v[0]["findings"].as_array().unwrap();
        assert!(
            findings.iter().any(|f| f["column"] == "comment" && f["kind"] == *kind),
            "{name}: expected {kind} in comment\n{}",
            run.describe()
        );
        assert_eq!(v[0]["would_reject"], true);
        // No value from the file is printed.
        let mut r = csv::Reader::from_reader(text.as_bytes());
        for rec in r.records().take(50) {
            let rec = rec.unwrap();
            for cell in rec.iter().skip(1) {
                assert!(!run.stdout().contains(cell) && !run.stderr().contains(cell), "{name}: printed a value");
            }
        }
    }
}

#[test]
fn warn_and_ignore_policies_publish_anyway() {
    let wd = audit_workdir();
    let cfg = wd.read("piigate.toml");
    wd.write("piigate.toml", format!("{cfg}\n[audit]\nunflagged_pii = \"warn\"\n"));
    wd.write("inbox/emails.csv", with_comment(50, |i| format!("mail jane.roe{i}@corp.example.com")));
    let run = wd.piigate(&["process", "--config", "piigate.toml", "inbox/emails.csv"]);
    run.expect_ok();
    assert!(run.stderr().contains("column \"comment\": email"), "{}", run.describe());
    assert!(!run.stderr().contains("corp.example.com"), "{}", run.describe());
    assert_eq!(wd.list("outbox").iter().filter(|n| n.ends_with(".csv")).count(), 1);
}

#[test]
fn run_quarantines_the_file_with_hidden_emails_and_archives_the_clean_one() {
    let wd = audit_workdir();
    wd.write("inbox/clean.csv", clean(100));
    wd.write("inbox/leaky.csv", with_comment(100, |i| format!("ask {i}th.person@corp.example.com")));
    let run = wd.piigate(&["run", "--config", "piigate.toml"]);
    run.expect_code(1);
    assert_eq!(wd.list("archive"), ["clean.csv"]);
    assert_eq!(wd.list("quarantine"), ["leaky.csv", "leaky.csv.reason.txt"]);
    let reason = wd.read("quarantine/leaky.csv.reason.txt");
    assert!(reason.contains("column \"comment\": email in 100 of 100 values"), "{reason}");
    assert!(!reason.contains("corp.example.com"), "{reason}");
    let outs: Vec<String> = wd.list("outbox").into_iter().filter(|n| n.ends_with(".csv")).collect();
    assert_eq!(outs.len(), 1);
    assert!(outs[0].starts_with("clean-"));
}

#[test]
fn pii_looking_header_is_a_warning_even_when_clean() {
    let wd = Workdir::new("");
    wd.write_config("", &COLUMNS.replace("name = \"comment\"", "name = \"mobile\""));
    wd.write("in/x.csv", "email,ref,mobile\na@example.test,R1,n/a\n");
    let run = wd.piigate(&["audit", "--config", "piigate.toml", "in/x.csv"]);
    run.expect_ok();
    assert!(run.stdout().contains("warning: column \"mobile\""), "{}", run.describe());
}
