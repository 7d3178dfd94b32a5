//! Per-person keys (`[keys] dek_scope = "identity"`), `forget` and
//! `reveal`: the erasure part of issue #6.

use std::collections::{BTreeSet, HashMap};

use crate::process::GOOD;
use crate::workdir::{csv_rows, Workdir};

/// A workdir whose config gives each person their own key.
fn identity_workdir(forgotten: &str) -> Workdir {
    let wd = Workdir::new("");
    let cfg = wd
        .read("piigate.toml")
        .replace(
            "keystore = \"state/data-keys.jsonl\"",
            &format!("keystore = \"state/data-keys.jsonl\"\ndek_scope = \"identity\"\nforgotten = \"{forgotten}\""),
        )
        .replace("max_reject_ratio = 0.2", "max_reject_ratio = 0.5");
    wd.write("piigate.toml", cfg);
    wd
}

/// Per output row: (pseudonym, dek_id of the `email` token).
fn row_keys(wd: &Workdir, out: &str) -> Vec<(String, String)> {
    let rows = csv_rows(&wd.read(out));
    assert_eq!(rows[0][..2], ["identity", "email"]);
    rows[1..].iter().map(|r| (r[0].clone(), r[1].split(':').nth(1).unwrap().to_owned())).collect()
}

fn pseudonym_of(wd: &Workdir, email: &str) -> String {
    let run = wd.piigate(&["pseudonym", "--config", "piigate.toml", email]);
    run.expect_ok();
    run.stdout().trim().to_owned()
}

#[test]
fn forget_erases_one_person_in_earlier_outputs_and_reveal_follows() {
    let wd = identity_workdir("reject");
    let first = wd.process_new("monday", GOOD);
    wd.assert_python_verifies("inbox/monday.csv", &first);
    let keys = row_keys(&wd, &first);
    assert_eq!(keys.len(), 5);
    // Rows 1 and 2 are one person (Ana, typed two ways): one key; everyone else their own.
    assert_eq!(keys[0], keys[1]);
    let distinct: BTreeSet<&str> = keys.iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(distinct.len(), 4, "{keys:?}");
    let by_person: HashMap<&str, &str> = keys.iter().map(|(p, k)| (p.as_str(), k.as_str())).collect();
    assert_eq!(by_person.len(), 4);
    // The same person gets the same key in a later file.
    let second = wd.process_new("tuesday", GOOD);
    assert_eq!(row_keys(&wd, &second), keys);
    wd.assert_python_verifies("inbox/tuesday.csv", &second);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(wd.path("state/vault.sqlite")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    let ana = pseudonym_of(&wd, "ana.test@example.test");
    let carol = pseudonym_of(&wd, "carol@example.test");
    assert_eq!(keys[0].0, ana);
    let run = wd.piigate(&["reveal", "--config", "piigate.toml", "--reason", "support ticket 42", &ana, &carol]);
    run.expect_ok();
    assert_eq!(run.stdout(), format!("{ana}\tana.test@example.test\n{carol}\tcarol@example.test\n"));

    // Erasure request for Ana, given as typed, from a file.
    wd.write("requests.txt", "Ana.Test@Example.TEST \n");
    let run = wd.piigate(&["forget", "--config", "piigate.toml", "--from", "requests.txt"]);
    run.expect_ok();
    assert!(run.stderr().contains("1 person(s) forgotten"), "{}", run.describe());
    assert_eq!(run.stdout().trim(), ana);

    // Her tokens in the earlier output no longer decrypt; everyone else's do.
    let run = wd.piigate(&["decrypt", "--config", "piigate.toml", "--reason", "audit", &first, "-o", "plain.csv"]);
    run.expect_ok();
    assert!(run.stderr().contains("6 cell(s) of forgotten persons left empty"), "{}", run.describe());
    let plain = csv_rows(&wd.read("plain.csv"));
    let header = &plain[0];
    let col = |n: &str| header.iter().position(|h| h == n).unwrap();
    for row in &plain[1..3] {
        assert_eq!((&row[col("email")][..], &row[col("phone")][..], &row[col("name")][..]), ("", "", ""));
        assert_eq!(row[col("identity")], ana);
    }
    assert_eq!(plain[3][col("email")], "zo\u{eb}@example.test");
    assert_eq!(plain[3][col("name")], "Zo\u{eb} Ångström");
    assert_eq!(plain[4][col("email")], "bob.builder@example.test");
    assert_eq!(plain[5][col("email")], "carol@example.test");
    assert_eq!(plain[5][col("phone")], "+12125550199");

    // reveal fails for her, still works for others.
    let run = wd.piigate(&["reveal", "--config", "piigate.toml", "--reason", "support", &ana]);
    run.expect_code(1);
    assert!(run.stderr().contains("forgotten") && !run.stdout().contains("ana.test"), "{}", run.describe());
    wd.piigate(&["reveal", "--config", "piigate.toml", "--reason", "support", &carol]).expect_ok();

    // A later file with her rows: rejected by line under forgotten = "reject".
    let third = wd.process_new("wednesday", GOOD);
    assert_eq!(csv_rows(&wd.read(&third)).len(), 4, "header + 3 persons");
    let report = wd.list("state/runs").into_iter().last().unwrap();
    let report: serde_json::Value = serde_json::from_str(&wd.read(&format!("state/runs/{report}"))).unwrap();
    let rejects = report["files"][0]["rejects"].as_array().unwrap();
    let lines: Vec<(u64, &str)> =
        rejects.iter().map(|r| (r["line"].as_u64().unwrap(), r["kind"].as_str().unwrap())).collect();
    assert_eq!(lines, [(2, "forgotten"), (3, "forgotten")]);

    // Logged, with pseudonyms; no identity or other input value anywhere piigate wrote.
    let log = wd.read("state/access-log.jsonl");
    assert!(log.contains("\"action\":\"forget\"") && log.contains(&ana), "{log}");
    assert!(log.contains("\"action\":\"reveal\"") && log.contains("support ticket 42"));
    wd.piigate(&["access-log", "verify", "--config", "piigate.toml"]).expect_ok();
    for (path, bytes) in wd.written_files() {
        let text = String::from_utf8_lossy(&bytes).to_lowercase();
        for needle in
            ["ana.test", "example.test", "carol o'neil", "builder, bob", "555-2671", "4155552671", "2079460000"]
        {
            assert!(!text.contains(needle), "{} holds an input value ({needle})", path.display());
        }
    }
}

/// A `run --watch` that holds a person's key in its cache applies a
/// `forget` made by another process meanwhile to that person's next rows
/// (rejected under `forgotten = "reject"`), without a restart.
#[test]
fn a_watcher_applies_a_forget_made_beside_it() {
    use std::time::{Duration, Instant};
    let wd = identity_workdir("reject");
    wd.write("inbox/monday.csv", GOOD);
    let child = wd.spawn_piigate(&["run", "--config", "piigate.toml", "--watch", "1"], std::process::Stdio::piped());
    let deadline = Instant::now() + Duration::from_secs(60);
    wd.wait_for_files("archive", 1, deadline, "the watcher did not process the first file");
    let ana = pseudonym_of(&wd, "ana.test@example.test");
    let run = wd.piigate(&["forget", "--config", "piigate.toml", "--pseudonym", &ana]);
    run.expect_ok();
    assert!(run.stderr().contains("1 person(s) forgotten"), "{}", run.describe());
    wd.write("inbox/tuesday.csv", GOOD);
    wd.wait_for_files("archive", 2, deadline, "the watcher did not process the second file");
    let out = crate::workdir::stop(child);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let second = crate::job::csvs(&wd).into_iter().find(|n| n.starts_with("tuesday")).expect("the second output");
    let keys = row_keys(&wd, &format!("outbox/{second}"));
    assert_eq!(keys.len(), 3, "Ana's two rows are rejected: {keys:?}");
    assert!(keys.iter().all(|(p, _)| *p != ana), "{keys:?}");
    let reports: Vec<String> = wd.list("state/runs");
    let rejected: Vec<(u64, String)> = reports
        .iter()
        .flat_map(|r| {
            let v: serde_json::Value = serde_json::from_str(&wd.read(&format!("state/runs/{r}"))).unwrap();
            v["files"].as_array().cloned().unwrap_or_default()
        })
        .filter(|f| f["input"].as_str().is_some_and(|i| i.contains("tuesday")))
        .flat_map(|f| f["rejects"].as_array().cloned().unwrap_or_default())
        .map(|r| (r["line"].as_u64().unwrap(), r["kind"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(rejected, [(2, "forgotten".to_owned()), (3, "forgotten".to_owned())]);
}

/// Rows of one person that alternate with another's, around a rejected row
/// without a person, each get their own person's key: what the
/// independent verifier decrypts with the key their token names, which is
/// the one the vault holds for that person. Both when the keys are made
/// (first file) and when they are looked up (second file, a new process).
#[test]
fn alternating_persons_each_get_their_own_key() {
    let wd = identity_workdir("reject");
    let input = "email,phone,name,city,score,notes\r\n\
        ana@example.test,415-555-0101,Ana One,Oakland,1,\r\n\
        bob@example.test,415-555-0102,Bob Two,Leeds,2,\r\n\
        ANA@example.test ,415-555-0103,Ana Three,Oakland,3,\r\n\
        ,415-555-0104,Nobody Four,Leeds,4,\r\n\
        bob@example.test,415-555-0105,Bob Five,Leeds,5,\r\n\
        ana@example.test,415-555-0106,Ana Six,Oakland,6,\r\n";
    let (ana, bob) = (pseudonym_of(&wd, "ana@example.test"), pseudonym_of(&wd, "bob@example.test"));
    let mut first = Vec::new();
    for name in ["made", "looked-up"] {
        let out = wd.process_new(name, input);
        let py = wd.verify_with_python(&format!("inbox/{name}.csv"), &out, &[5]);
        assert!(
            py.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&py.stdout),
            String::from_utf8_lossy(&py.stderr)
        );
        let keys = row_keys(&wd, &out);
        let persons: Vec<&str> = keys.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(persons, [&ana, &bob, &ana, &bob, &ana], "{name}");
        let (a, b) = (&keys[0].1, &keys[1].1);
        assert_ne!(a, b);
        let dek_ids: Vec<&str> = keys.iter().map(|(_, k)| k.as_str()).collect();
        assert_eq!(dek_ids, [a, b, a, b, a], "{name}");
        if first.is_empty() {
            first = keys;
        } else {
            assert_eq!(keys, first, "the same persons keep their keys");
        }
    }
}

#[test]
fn new_key_policy_gives_a_fresh_key_and_rewrap_covers_person_keys() {
    let wd = identity_workdir("new-key");
    let first = wd.process_new("monday", GOOD);
    let carol = pseudonym_of(&wd, "carol@example.test");
    let old_key = row_keys(&wd, &first)[4].1.clone();
    let run = wd.piigate(&["forget", "--config", "piigate.toml", "--pseudonym", &carol]);
    run.expect_ok();
    // Unknown pseudonyms are listed too, and reported as such.
    let stranger = format!("u_{}", "a".repeat(26));
    let run = wd.piigate(&["forget", "--config", "piigate.toml", "--pseudonym", &stranger]);
    assert!(run.stderr().contains("1 had no key"), "{}", run.describe());

    let second = wd.process_new("tuesday", GOOD);
    let keys = row_keys(&wd, &second);
    assert_eq!(keys.len(), 5, "no row rejected under new-key");
    assert_eq!(keys[4].0, carol);
    assert_ne!(keys[4].1, old_key, "a forgotten person gets a fresh key");
    wd.assert_python_verifies("inbox/tuesday.csv", &second);

    // Rotate, rewrap (vault included), retire: the old outputs still decrypt.
    let ring: toml::Table = wd.read("keys/keyring.toml").parse().unwrap();
    let old_kek = ring["active_kek"].as_str().unwrap().to_owned();
    wd.piigate(&["keys", "rotate", "--config", "piigate.toml"]).expect_ok();
    let run = wd.piigate(&["keys", "retire", "--config", "piigate.toml", &old_kek]);
    run.expect_code(2);
    let run = wd.piigate(&["keys", "rewrap", "--config", "piigate.toml"]);
    run.expect_ok();
    assert!(run.stderr().contains("4 of 4 person key(s) re-wrapped"), "{}", run.describe());
    let status = wd.piigate(&["keys", "status", "--config", "piigate.toml", "--json"]);
    status.expect_ok();
    let s: serde_json::Value = serde_json::from_str(&status.stdout()).unwrap();
    assert_eq!(s["person_keys"], 4);
    wd.piigate(&["keys", "retire", "--config", "piigate.toml", &old_kek]).expect_ok();
    wd.assert_python_verifies("inbox/tuesday.csv", &second);
    let run = wd.piigate(&["decrypt", "--config", "piigate.toml", "--reason", "audit", &first, "-o", "plain.csv"]);
    run.expect_ok();
    assert!(run.stderr().contains("3 cell(s) of forgotten persons left empty"), "{}", run.describe());
}

#[test]
fn identity_scope_needs_a_pseudonymized_identity_column() {
    let wd = Workdir::new("");
    let cfg = wd
        .read("piigate.toml")
        .replace(
            "keystore = \"state/data-keys.jsonl\"",
            "keystore = \"state/data-keys.jsonl\"\ndek_scope = \"identity\"",
        )
        .replace("action = \"pseudonymize\"", "action = \"encrypt\"");
    wd.write("piigate.toml", cfg);
    wd.write("inbox/a.csv", GOOD);
    let run = wd.piigate(&["process", "--config", "piigate.toml", "inbox/a.csv"]);
    run.expect_code(2);
    assert!(
        run.stderr().contains("keys.dek_scope") && run.stderr().contains("ct_name = \"identity\""),
        "{}",
        run.describe()
    );
    // forget and reveal need per-person keys.
    let wd = Workdir::new("");
    let run = wd.piigate(&["forget", "--config", "piigate.toml", "--pseudonym", "u_aaaaaaaaaaaaaaaaaaaaaaaaaa"]);
    run.expect_code(2);
    assert!(run.stderr().contains("dek_scope"), "{}", run.describe());
}

/// A file of enough new persons makes a merge of the staged keys due: after
/// `process` they are all in `person_keys`, none staged, and a later file
/// finds the same keys there (and a new person's key staged beside them),
/// which the independent verifier reads from both tables.
#[test]
fn enough_new_persons_are_merged_into_the_main_table_after_processing() {
    let wd = identity_workdir("reject");
    let n = 70_000;
    let mut big = String::from("email,phone,name,city,score,notes\r\n");
    for i in 0..n {
        big.push_str(&format!("person{i}@example.test,,Person {i},Leeds,{},\r\n", i % 100));
    }
    wd.write("inbox/big.csv", &big);
    let run = wd.piigate(&["process", "--config", "piigate.toml", "inbox/big.csv"]);
    run.expect_ok();
    assert!(run.stderr().contains(&format!("merged {n} person key(s)")), "{}", run.describe());
    let vault = rusqlite::Connection::open(wd.path("state/vault.sqlite")).unwrap();
    let count = |t: &str| vault.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get::<_, i64>(0)).unwrap();
    assert_eq!((count("person_keys"), count("person_keys_staged")), (n, 0));
    let big_out = wd.list("outbox").into_iter().find(|f| f.ends_with(".csv")).unwrap();
    let big_keys = row_keys(&wd, &format!("outbox/{big_out}"));

    let small = "email,phone,name,city,score,notes\r\n\
                 person7@example.test,,Person 7,Leeds,7,\r\n\
                 newcomer@example.test,,New Comer,York,1,\r\n\
                 person69999@example.test,,Person 69999,Leeds,99,\r\n";
    let out = wd.process_new("small", small);
    let keys = row_keys(&wd, &out);
    assert_eq!(keys[0], big_keys[7]);
    assert_eq!(keys[2], big_keys[69_999]);
    assert!(!big_keys.iter().any(|(_, k)| *k == keys[1].1), "the newcomer has a key of their own");
    assert_eq!((count("person_keys"), count("person_keys_staged")), (n, 1));
    wd.assert_python_verifies("inbox/small.csv", &out);
}
