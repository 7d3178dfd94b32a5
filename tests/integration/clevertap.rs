//! What CleverTap's SFTP import needs from piigate's outputs: manifests it
//! accepts, names it never sees twice, property types it can read.

use crate::process::GOOD;
use crate::workdir::Workdir;

fn refused(wd: &Workdir, from: &str, to: &str, must_name: &[&str]) {
    let cfg = wd.read("piigate.toml");
    assert!(cfg.contains(from), "fixture changed: {from}");
    wd.write("bad.toml", cfg.replacen(from, to, 1));
    let run = wd.piigate(&["process", "--config", "bad.toml", "inbox/p.csv"]);
    run.expect_code(2);
    for n in must_name {
        assert!(run.stderr().contains(n), "error must name {n:?}\n{}", run.describe());
    }
    assert!(wd.list("outbox").is_empty());
}

#[test]
fn types_and_properties_clevertap_would_refuse_are_config_errors_naming_the_column() {
    let wd = Workdir::new("");
    wd.write("inbox/p.csv", GOOD);
    let score = "name = \"score\"\naction = \"keep\"\nct_type = \"INTEGER\"";
    refused(
        &wd,
        score,
        "name = \"score\"\naction = \"keep\"\nct_type = \"integer\"",
        &["\"score\"", "ct_type", "integer", "INTEGER"],
    );
    refused(&wd, score, "name = \"score\"\naction = \"keep\"\nct_type = \"DATE\"", &["\"score\"", "ct_type", "DATE"]);
    let identity = "name = \"identity\"\nfrom = \"email\"\naction = \"pseudonymize\"";
    refused(&wd, identity, &format!("{identity}\nct_name = \"Phone\""), &["identity", "Phone"]);
    refused(&wd, identity, &format!("{identity}\nct_name = \"Email\""), &["identity", "Email"]);
    let name = "name = \"name\"\naction = \"encrypt\"";
    refused(&wd, name, &format!("{name}\nct_type = \"LONG\""), &["name", "ct_type"]);
}

#[test]
fn same_input_name_twice_gives_distinct_output_and_manifest_names() {
    let wd = Workdir::new("");
    let mut seen = std::collections::HashSet::new();
    for round in 0..2 {
        wd.write("inbox/profiles.csv", GOOD.replace("Leeds", &"Leeds!".repeat(round + 1)));
        wd.piigate(&["run", "--config", "piigate.toml"]).expect_ok();
        // The archive keeps one input name; move it away like an operator would.
        std::fs::rename(wd.path("archive/profiles.csv"), wd.path(&format!("archive-{round}.csv"))).unwrap();
    }
    let files = wd.list("outbox");
    assert_eq!(files.len(), 4, "{files:?}");
    for f in &files {
        assert!(seen.insert(f.clone()));
        assert!(f.starts_with("profiles-"), "{f}");
    }
    for csv in files.iter().filter(|f| f.ends_with(".csv")) {
        let m: serde_json::Value =
            serde_json::from_str(&wd.read(&format!("outbox/{}", csv.replace(".csv", ".manifest")))).unwrap();
        let keys: Vec<&String> = m.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["fileName", "type", "clientEmail", "columns"]);
        assert_eq!(m["fileName"], csv.as_str());
        assert!(wd.path("outbox").join(m["fileName"].as_str().unwrap()).exists());
        for (_, col) in m["columns"].as_object().unwrap() {
            let keys: Vec<&String> = col.as_object().unwrap().keys().collect();
            assert_eq!(keys, ["ctName", "dataType"]);
            let t = col["dataType"].as_str().unwrap();
            assert!(["STRING", "INTEGER", "FLOAT", "BOOLEAN", "LONG"].contains(&t), "{t}");
        }
    }
}

/// A crash after the parts' CSVs were published but before their
/// manifests: the next run publishes the missing manifests, in order, and
/// archives the input without publishing any data twice.
#[test]
fn interrupted_multi_part_publish_is_completed_by_the_next_run() {
    let wd = Workdir::new("");
    crate::parts::with_limit(&wd, 4096);
    let (text, _) = crate::parts::input();
    wd.write("inbox/big.csv", &text);
    wd.piigate(&["run", "--config", "piigate.toml"]).expect_ok();
    let published = wd.list("outbox");
    let csvs: Vec<String> = published.iter().filter(|n| n.ends_with(".csv")).cloned().collect();
    assert!(csvs.len() > 3);
    // Rewind to the moment after the CSVs were renamed into place: the
    // ledger's last word is `publishing`, manifests 2.. are missing, and the
    // input is back in the inbox.
    let ledger = wd.read("state/ledger.jsonl");
    let publishing = ledger.lines().find(|l| l.contains("\"publishing\"")).unwrap().to_owned();
    wd.write("state/ledger.jsonl", format!("{publishing}\n"));
    for csv in &csvs[1..] {
        std::fs::remove_file(wd.path("outbox").join(csv.replace(".csv", ".manifest"))).unwrap();
    }
    std::fs::rename(wd.path("archive/big.csv"), wd.path("inbox/big.csv")).unwrap();

    let run = wd.piigate(&["run", "--config", "piigate.toml"]);
    run.expect_ok();
    assert!(run.stderr().contains("published the missing manifest"), "{}", run.describe());
    assert_eq!(wd.list("outbox"), published, "the same files, no data published twice");
    assert_eq!(wd.list("archive"), ["big.csv"]);
}
