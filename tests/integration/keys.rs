//! Key lifecycle: `keys rotate`, `keys rewrap`, `keys status`, `keys retire`,
//! and a KEK from `[keys] kek_command`.

use std::collections::BTreeSet;

use crate::process::GOOD;
use crate::workdir::{csv_rows, Workdir};

fn records(wd: &Workdir) -> Vec<serde_json::Value> {
    wd.read("state/data-keys.jsonl").lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn active_kek(wd: &Workdir) -> String {
    let ring: toml::Table = wd.read("keys/keyring.toml").parse().unwrap();
    ring["active_kek"].as_str().unwrap().to_owned()
}

fn status(wd: &Workdir) -> serde_json::Value {
    let run = wd.piigate(&["keys", "status", "--config", "piigate.toml", "--json"]);
    run.expect_ok();
    serde_json::from_str(&run.stdout()).unwrap_or_else(|e| panic!("{e}\n{}", run.describe()))
}

fn wraps(status: &serde_json::Value, kek: &str) -> Option<u64> {
    status["keks"].as_array().unwrap().iter().find(|k| k["kek_id"] == kek).map(|k| k["data_keys"].as_u64().unwrap())
}

#[test]
fn rotate_rewrap_retire_keeps_every_output_decryptable() {
    let wd = Workdir::new("");
    let old_kek = active_kek(&wd);
    let first = wd.process_new("monday", GOOD);

    wd.piigate(&["keys", "rotate", "--config", "piigate.toml"]).expect_ok();
    let new_kek = active_kek(&wd);
    assert_ne!(old_kek, new_kek);
    let second = wd.process_new("tuesday", GOOD);
    let recs = records(&wd);
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0]["kek_id"], old_kek.as_str());
    assert_eq!(recs[1]["kek_id"], new_kek.as_str());

    let s = status(&wd);
    assert_eq!(wraps(&s, &old_kek), Some(1));
    assert_eq!(wraps(&s, &new_kek), Some(1));
    assert_eq!(s["data_keys"], 2);
    assert!(s["missing"].as_array().unwrap().is_empty());
    let active: Vec<&str> = s["keks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["active"] == true)
        .map(|k| k["kek_id"].as_str().unwrap())
        .collect();
    assert_eq!(active, [new_kek.as_str()]);

    // Retiring is refused while a data key needs the old KEK.
    let run = wd.piigate(&["keys", "retire", "--config", "piigate.toml", &old_kek]);
    run.expect_code(2);
    assert!(run.stderr().contains("keys rewrap") && run.stderr().contains("1 stored data key"), "{}", run.describe());
    assert!(wd.read("keys/keyring.toml").contains(&old_kek));
    // The active KEK can never be retired.
    let run = wd.piigate(&["keys", "retire", "--config", "piigate.toml", &new_kek]);
    run.expect_code(2);
    assert!(run.stderr().contains("active"), "{}", run.describe());

    let ring_before = wd.read("keys/keyring.toml");
    let run = wd.piigate(&["keys", "rewrap", "--config", "piigate.toml"]);
    run.expect_ok();
    assert!(run.stderr().contains("1 data key record(s) re-wrapped"), "{}", run.describe());
    assert_eq!(wd.read("keys/keyring.toml"), ring_before, "rewrap leaves the keyring alone");
    let after = records(&wd);
    assert_eq!(after.len(), 2);
    for (a, b) in recs.iter().zip(&after) {
        assert_eq!(a["dek_id"], b["dek_id"]);
        assert_eq!(a["created"], b["created"]);
        assert_eq!(b["kek_id"], new_kek.as_str(), "every record names the new KEK");
    }
    assert_ne!(recs[0]["nonce"], after[0]["nonce"], "re-wrapped with a fresh nonce");
    assert_eq!(recs[1], after[1], "a record already under the active KEK is left as it was");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(wd.path("state/data-keys.jsonl")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // Independent check with a standard AES-GCM library.
    wd.assert_python_verifies("inbox/monday.csv", &first);
    wd.assert_python_verifies("inbox/tuesday.csv", &second);

    // A second rewrap has nothing to do.
    wd.piigate(&["keys", "rewrap", "--config", "piigate.toml"]).expect_ok();
    assert_eq!(records(&wd), after);

    wd.piigate(&["keys", "retire", "--config", "piigate.toml", &old_kek]).expect_ok();
    let ring = wd.read("keys/keyring.toml");
    assert!(!ring.contains(&old_kek) && ring.contains(&new_kek));
    let mode = std::fs::metadata(wd.path("keys/keyring.toml")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(wraps(&status(&wd), &old_kek), None);

    // Without the old KEK, both outputs still decrypt.
    wd.assert_python_verifies("inbox/monday.csv", &first);
    wd.assert_python_verifies("inbox/tuesday.csv", &second);
    wd.piigate(&["decrypt", "--config", "piigate.toml", "--reason", "after retire", &first, "-o", "plain.csv"])
        .expect_ok();
    assert_eq!(csv_rows(&wd.read("plain.csv"))[1][1], "ana.test@example.test");

    // Every key command is in the access log, and the chain holds.
    let log = wd.read("state/access-log.jsonl");
    let actions: Vec<String> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["action"].as_str().unwrap().to_owned())
        .collect();
    for a in ["keys-rotate", "keys-status", "keys-rewrap", "keys-retire"] {
        assert!(actions.iter().any(|x| x == a), "{a} not logged: {actions:?}");
    }
    let retire_entry = log.lines().find(|l| l.contains("keys-retire")).unwrap();
    assert!(retire_entry.contains(&old_kek));
    wd.piigate(&["access-log", "verify", "--config", "piigate.toml"]).expect_ok();
    let ring_text = wd.read("keys/keyring.toml");
    let kek_b64 = ring_text.lines().find(|l| l.starts_with(&new_kek)).unwrap().split('"').nth(1).unwrap().to_owned();
    assert!(!log.contains(&kek_b64), "no key bytes in the access log");
}

#[test]
fn rewrap_with_a_missing_kek_names_it_and_changes_nothing() {
    let wd = Workdir::new("");
    let out = wd.process_new("p", GOOD);
    let mut text = wd.read("state/data-keys.jsonl");
    let rec: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let dek_id = rec["dek_id"].as_str().unwrap().to_owned();
    // A second record, wrapped under a KEK this keyring never had.
    let mut orphan = rec.clone();
    orphan["dek_id"] = "00112233445566ff".into();
    orphan["kek_id"] = "kgone0001".into();
    text.push_str(&format!("{orphan}\n"));
    wd.write("state/data-keys.jsonl", &text);
    wd.piigate(&["keys", "rotate", "--config", "piigate.toml"]).expect_ok();

    let run = wd.piigate(&["keys", "rewrap", "--config", "piigate.toml"]);
    run.expect_code(2);
    assert!(run.stderr().contains("00112233445566ff") && run.stderr().contains("kgone0001"), "{}", run.describe());
    assert_eq!(wd.read("state/data-keys.jsonl"), text, "nothing is re-wrapped when one record cannot be");

    let s = status(&wd);
    assert_eq!(s["missing"], serde_json::json!([{"kek_id": "kgone0001", "data_keys": 1}]));
    let run = wd.piigate(&["keys", "status", "--config", "piigate.toml"]);
    run.expect_ok();
    assert!(run.stdout().contains("MISSING") && run.stderr().contains("kgone0001"), "{}", run.describe());

    // Drop the orphan: the rewrap goes through and the output still decrypts.
    wd.write("state/data-keys.jsonl", format!("{}\n", text.lines().next().unwrap()));
    wd.piigate(&["keys", "rewrap", "--config", "piigate.toml"]).expect_ok();
    assert_eq!(records(&wd)[0]["dek_id"], dek_id.as_str());
    wd.assert_python_verifies("inbox/p.csv", &out);
}

#[test]
fn retire_unknown_kek_lists_the_ones_held() {
    let wd = Workdir::new("");
    let kek = active_kek(&wd);
    let run = wd.piigate(&["keys", "retire", "--config", "piigate.toml", "knothere1"]);
    run.expect_code(2);
    assert!(run.stderr().contains("knothere1") && run.stderr().contains(&kek), "{}", run.describe());
}

/// A rewrap renames a new keystore over the old one while runs append to
/// it: no record may be lost (an append that waited for the lock on the old
/// file must go to the new one).
#[test]
fn rewrap_during_concurrent_processing_loses_no_data_key() {
    let wd = Workdir::new("");
    wd.process_new("seed", GOOD);
    std::thread::scope(|s| {
        let wd = &wd;
        let writers: Vec<_> = (0..2)
            .map(|w| {
                s.spawn(move || {
                    for i in 0..4 {
                        let name = format!("w{w}-{i}");
                        wd.write(&format!("inbox/{name}.csv"), GOOD);
                        wd.piigate(&["process", "--config", "piigate.toml", "-j", "1", &format!("inbox/{name}.csv")])
                            .expect_ok();
                    }
                })
            })
            .collect();
        for _ in 0..6 {
            wd.piigate(&["keys", "rotate", "--config", "piigate.toml"]).expect_ok();
            wd.piigate(&["keys", "rewrap", "--config", "piigate.toml"]).expect_ok();
        }
        for w in writers {
            w.join().unwrap();
        }
    });
    let ids: BTreeSet<String> = records(&wd).iter().map(|r| r["dek_id"].as_str().unwrap().to_owned()).collect();
    let outputs: Vec<String> = wd.list("outbox").into_iter().filter(|n| n.ends_with(".csv")).collect();
    assert_eq!(outputs.len(), 9);
    for out in &outputs {
        let dek_id = out.trim_end_matches(".csv").rsplit('-').next().unwrap();
        assert!(ids.contains(dek_id), "data key of {out} was lost from the keystore");
        let input =
            format!("inbox/{}.csv", out.split('-').take(out.split('-').count() - 2).collect::<Vec<_>>().join("-"));
        wd.assert_python_verifies(&input, &format!("outbox/{out}"));
    }
}

/// Writes `kms.sh`, a stand-in for a KMS CLI: it prints the KEK kept in
/// `kms-store/kek.b64`, or fails like a KMS that refuses access.
fn fake_kms(wd: &Workdir) -> String {
    let kek = piigate::crypto::keys::Kek::generate().to_base64();
    wd.write("kms-store/kek.b64", format!("{kek}\n"));
    wd.write(
        "kms.sh",
        "#!/bin/sh\n\
         if [ -e kms-store/deny ]; then echo 'AccessDeniedException: not authorized to perform kms:Decrypt' >&2; exit 3; fi\n\
         if [ -e kms-store/garbage ]; then echo 'aGVsbG8gd29ybGQ='; exit 0; fi\n\
         cat kms-store/kek.b64\n",
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(wd.path("kms.sh"), std::fs::Permissions::from_mode(0o700)).unwrap();
    kek
}

fn use_kek_command(wd: &Workdir) {
    let cfg =
        wd.read("piigate.toml").replacen("[keys]\n", "[keys]\nkek_command = \"./kms.sh\"\nkek_id = \"kms-1\"\n", 1);
    wd.write("piigate.toml", cfg);
}

#[test]
fn kek_from_a_command_wraps_new_data_keys_and_never_lands_in_the_keyring() {
    let wd = Workdir::new("");
    let file_kek = active_kek(&wd);
    let before = wd.process_new("before", GOOD);
    let kms_kek = fake_kms(&wd);
    use_kek_command(&wd);

    let after = wd.process_new("after", GOOD);
    let recs = records(&wd);
    assert_eq!(recs[1]["kek_id"], "kms-1", "new data keys are wrapped under the command's KEK");
    let ring = wd.read("keys/keyring.toml");
    assert!(!ring.contains(&kms_kek) && !ring.contains("kms-1"), "the KMS KEK is never written to the keyring");

    let s = status(&wd);
    let kms = s["keks"].as_array().unwrap().iter().find(|k| k["kek_id"] == "kms-1").unwrap().clone();
    assert_eq!(kms["active"], true);
    assert_eq!(kms["source"], "kek_command");
    assert_eq!(kms["data_keys"], 1);

    // `keys rotate` would add a file KEK that the command overrides: refused.
    let run = wd.piigate(&["keys", "rotate", "--config", "piigate.toml"]);
    run.expect_code(2);
    assert!(run.stderr().contains("kek_command"), "{}", run.describe());

    // Move the old data key under the KMS KEK, then drop the file KEK.
    wd.piigate(&["keys", "rewrap", "--config", "piigate.toml"]).expect_ok();
    assert!(records(&wd).iter().all(|r| r["kek_id"] == "kms-1"));
    wd.piigate(&["keys", "retire", "--config", "piigate.toml", "kms-1"]).expect_code(2);
    wd.piigate(&["keys", "retire", "--config", "piigate.toml", &file_kek]).expect_ok();
    let ring: toml::Table = wd.read("keys/keyring.toml").parse().unwrap();
    assert!(ring.get("active_kek").is_none());
    assert!(ring["kek"].as_table().unwrap().is_empty(), "the keyring file holds no KEK any more");
    assert!(ring.contains_key("pseudonym_key"));

    wd.assert_python_verifies("inbox/before.csv", &before);
    wd.assert_python_verifies("inbox/after.csv", &after);
    let run = wd.piigate(&["decrypt", "--config", "piigate.toml", "--reason", "kms test", &before, "-o", "plain.csv"]);
    run.expect_ok();
    assert_eq!(csv_rows(&wd.read("plain.csv"))[1][1], "ana.test@example.test");
    assert!(!run.stderr().contains(&kms_kek));

    // A KMS that refuses: exit 2 naming the status and the first stderr line; nothing written.
    wd.write("kms-store/deny", "");
    let n = wd.list("outbox").len();
    wd.write("inbox/denied.csv", GOOD);
    let run = wd.piigate(&["process", "--config", "piigate.toml", "inbox/denied.csv"]);
    run.expect_code(2);
    assert!(
        run.stderr().contains("exit status 3") && run.stderr().contains("AccessDeniedException"),
        "{}",
        run.describe()
    );
    assert_eq!(wd.list("outbox").len(), n);
    std::fs::remove_file(wd.path("kms-store/deny")).unwrap();

    // Output that is not a 32-byte key: exit 2, and the output is not echoed.
    wd.write("kms-store/garbage", "");
    let run = wd.piigate(&["keys", "status", "--config", "piigate.toml"]);
    run.expect_code(2);
    assert!(run.stderr().contains("not standard base64 of a 32-byte key"), "{}", run.describe());
    assert!(!run.stderr().contains("aGVsbG8gd29ybGQ="), "{}", run.describe());
}

#[test]
fn kek_command_needs_kek_id() {
    let wd = Workdir::new("");
    let cfg = wd.read("piigate.toml").replacen("[keys]\n", "[keys]\nkek_command = \"./kms.sh\"\n", 1);
    wd.write("piigate.toml", cfg);
    let run = wd.piigate(&["keys", "status", "--config", "piigate.toml"]);
    run.expect_code(2);
    assert!(run.stderr().contains("kek_id"), "{}", run.describe());
}

/// A process that loaded the keyring before the rotation must not wrap a
/// new data key under a KEK that was retired since: that key would be lost.
#[test]
fn a_stale_keyring_cannot_wrap_under_a_retired_kek() {
    let wd = Workdir::new("");
    let old_kek = active_kek(&wd);
    wd.process_new("first", GOOD);
    // What a long-running process loaded before the rotation.
    std::fs::copy(wd.path("keys/keyring.toml"), wd.path("keys/stale.toml")).unwrap();
    wd.piigate(&["keys", "rotate", "--config", "piigate.toml"]).expect_ok();
    wd.piigate(&["keys", "rewrap", "--config", "piigate.toml"]).expect_ok();
    wd.piigate(&["keys", "retire", "--config", "piigate.toml", &old_kek]).expect_ok();
    assert_eq!(wd.read("state/data-keys.jsonl.retired").trim(), old_kek);

    let n = wd.list("outbox").len();
    let before = wd.read("state/data-keys.jsonl");
    wd.write("inbox/late.csv", GOOD);
    let run = wd.piigate_env(
        &["process", "--config", "piigate.toml", "inbox/late.csv"],
        &[("PIIGATE_KEYRING", wd.path("keys/stale.toml").to_str().unwrap())],
    );
    run.expect_code(1);
    assert!(run.stderr().contains("retired") && run.stderr().contains(&old_kek), "{}", run.describe());
    assert_eq!(wd.list("outbox").len(), n, "nothing published");
    assert_eq!(wd.read("state/data-keys.jsonl"), before, "no record under the retired KEK");

    // With the current keyring the same file goes through.
    wd.piigate(&["process", "--config", "piigate.toml", "inbox/late.csv"]).expect_ok();
}

/// Rotating a KMS KEK: the new key becomes kek_command, the old one stays
/// reachable through previous_kek_commands until rewrap has moved every
/// data key, and is then dropped from the config.
#[test]
fn rotation_from_one_kms_key_to_another() {
    let wd = Workdir::new("");
    fake_kms(&wd);
    use_kek_command(&wd);
    let first = wd.process_new("first", GOOD);
    assert_eq!(records(&wd)[0]["kek_id"], "kms-1");

    let new_kek = piigate::crypto::keys::Kek::generate().to_base64();
    wd.write("kms-store/kek2.b64", format!("{new_kek}\n"));
    let cfg = wd.read("piigate.toml").replacen(
        "kek_command = \"./kms.sh\"\nkek_id = \"kms-1\"\n",
        "kek_command = \"cat kms-store/kek2.b64\"\nkek_id = \"kms-2\"\nprevious_kek_commands = { kms-1 = \"./kms.sh\" }\n",
        1,
    );
    wd.write("piigate.toml", &cfg);
    // New files need only the active KEK: the old KMS key is not asked for.
    wd.write("kms-store/deny", "");
    let second = wd.process_new("second", GOOD);
    assert_eq!(records(&wd)[1]["kek_id"], "kms-2");
    // Re-wrapping needs both.
    wd.piigate(&["keys", "rewrap", "--config", "piigate.toml"]).expect_code(2);
    std::fs::remove_file(wd.path("kms-store/deny")).unwrap();
    wd.piigate(&["keys", "rewrap", "--config", "piigate.toml"]).expect_ok();
    assert!(records(&wd).iter().all(|r| r["kek_id"] == "kms-2"));
    let s = status(&wd);
    assert_eq!(wraps(&s, "kms-1"), Some(0));
    let sources: Vec<(&str, &str)> = s["keks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["kek_id"].as_str().unwrap(), k["source"].as_str().unwrap()))
        .filter(|(id, _)| id.starts_with("kms"))
        .collect();
    assert_eq!(sources, [("kms-1", "previous_kek_commands"), ("kms-2", "kek_command")]);
    assert_eq!(wraps(&s, "kms-2"), Some(2));
    // Retiring a KEK the file never held is refused with what to do instead.
    let run = wd.piigate(&["keys", "retire", "--config", "piigate.toml", "kms-1"]);
    run.expect_code(2);
    assert!(run.stderr().contains("previous_kek_commands"), "{}", run.describe());

    // Drop the old key from the config: everything still decrypts.
    let cfg = wd.read("piigate.toml").replacen("previous_kek_commands = { kms-1 = \"./kms.sh\" }\n", "", 1);
    wd.write("piigate.toml", &cfg);
    std::fs::remove_file(wd.path("kms-store/kek.b64")).unwrap();
    wd.assert_python_verifies("inbox/first.csv", &first);
    wd.assert_python_verifies("inbox/second.csv", &second);
    wd.piigate(&["decrypt", "--config", "piigate.toml", "--reason", "r", &first, "-o", "plain.csv"]).expect_ok();
}

/// `kill -9` at any moment of a rewrap leaves the keystore either as it was
/// or fully re-wrapped: never a mix, never a record short.
#[test]
fn killed_rewrap_leaves_the_old_or_the_new_keystore() {
    use piigate::keyring::Keyring;
    use piigate::keystore;
    let wd = Workdir::new("");
    let ring = Keyring::load(&wd.path("keys/keyring.toml")).unwrap();
    let old_kek = active_kek(&wd);
    let recs: Vec<_> = (0..60_000).map(|_| keystore::new_data_key(&ring, "2026-11-29T03:00:00Z").1).collect();
    keystore::append(&wd.path("state/data-keys.jsonl"), &recs).unwrap();
    let ids: Vec<String> = recs.iter().map(|r| r.dek_id.clone()).collect();
    wd.piigate(&["keys", "rotate", "--config", "piigate.toml"]).expect_ok();
    let new_kek = active_kek(&wd);

    let mut outcomes = BTreeSet::new();
    for delay_ms in [0u64, 20, 60, 120, 250, 500] {
        let mut child = wd.spawn_piigate(&["keys", "rewrap", "--config", "piigate.toml"], std::process::Stdio::null());
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        let now = keystore::records(&wd.path("state/data-keys.jsonl")).unwrap();
        let got: Vec<&str> = now.iter().map(|r| r.dek_id.as_str()).collect();
        assert_eq!(got, ids, "every record, in order, after a kill at {delay_ms} ms");
        let keks: BTreeSet<&str> = now.iter().map(|r| r.kek_id.as_str()).collect();
        assert!(keks.len() == 1, "a mix of KEKs after a kill at {delay_ms} ms: {keks:?}");
        let done = keks.contains(new_kek.as_str());
        assert!(done || keks.contains(old_kek.as_str()));
        outcomes.insert(done);
        if done {
            break;
        }
    }
    // Whatever the kills left, a last rewrap completes, removes the partials,
    // and every data key unwraps under the new KEK.
    wd.piigate(&["keys", "rewrap", "--config", "piigate.toml"]).expect_ok();
    assert!(wd.list("state").iter().all(|n| !n.ends_with(".partial")), "{:?}", wd.list("state"));
    let ring = Keyring::load(&wd.path("keys/keyring.toml")).unwrap();
    let map = keystore::load(&wd.path("state/data-keys.jsonl")).unwrap();
    assert_eq!(map.len(), ids.len());
    for r in map.values() {
        assert_eq!(r.kek_id, new_kek);
        keystore::unwrap_record(&ring, r).unwrap();
    }
    eprintln!("kill outcomes (re-wrapped?): {outcomes:?}");
}
