//! Outputs larger than `[sink] max_file_bytes` are cut into parts: each a
//! complete CSV with the header, its own data key and its own manifest.

use crate::workdir::{csv_rows, Workdir};

pub fn with_limit(wd: &Workdir, limit: u64) {
    let cfg = wd.read("piigate.toml");
    let cfg =
        cfg.replacen("manifest = \"clevertap\"", &format!("manifest = \"clevertap\"\nmax_file_bytes = {limit}"), 1);
    wd.write("piigate.toml", cfg);
}

/// 400 rows with a rejected row at line 101 (an impossible phone) and
/// multi-line quoted notes, so cuts fall across chunks and rejects.
pub fn input() -> (String, Vec<u64>) {
    let mut text = String::from("email,phone,name,city,score,notes\n");
    for i in 0..400 {
        let phone = if i == 99 { "4.47701E+11".to_owned() } else { format!("(415) 555-{:04}", 1000 + i) };
        text.push_str(&format!("user{i}@example.test,{phone},\"User, {i}\",Town {i},{i},\"two\nlines\"\n"));
    }
    // Line numbers: header 1, row i starts at line 2 + 2 * i.
    (text, vec![2 + 2 * 99])
}

fn parts(wd: &Workdir) -> Vec<String> {
    wd.list("outbox").into_iter().filter(|n| n.ends_with(".csv")).collect()
}

fn check_parts(jobs: &str) {
    let wd = Workdir::new("");
    with_limit(&wd, 4096);
    let (text, rejected) = input();
    wd.write("inbox/big.csv", &text);
    wd.piigate(&["process", "--config", "piigate.toml", "--jobs", jobs, "inbox/big.csv"]).expect_ok();

    let names = parts(&wd);
    assert!(names.len() >= 10, "expected many parts, got {names:?}");
    assert!(names[0].starts_with("big-"), "{names:?}");
    let report_name = &wd.list("state/runs")[0];
    let report: serde_json::Value = serde_json::from_str(&wd.read(&format!("state/runs/{report_name}"))).unwrap();
    let outputs = report["files"][0]["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), names.len());

    let mut combined: Vec<Vec<String>> = Vec::new();
    let mut all_keys = std::collections::HashSet::new();
    for (i, out) in outputs.iter().enumerate() {
        assert_eq!(out["part"], i + 1);
        let path = out["path"].as_str().unwrap();
        let name = std::path::Path::new(path).file_name().unwrap().to_str().unwrap().to_owned();
        // Parts sort in order and carry the part number after the first.
        assert_eq!(name, names[i], "parts are listed in name order");
        if i > 0 {
            assert!(name.contains(&format!("-p{:03}-", i + 1)), "{name}");
        }
        let bytes = std::fs::read(wd.path("outbox").join(&name)).unwrap();
        assert!(bytes.len() <= 4096, "{name} is {} bytes", bytes.len());
        assert_eq!(out["bytes"], bytes.len());
        let rows = csv_rows(std::str::from_utf8(&bytes).unwrap());
        assert_eq!(rows[0], ["identity", "email", "phone", "phone_hint", "name", "city", "score"], "{name}");
        assert_eq!(out["rows"], rows.len() - 1);
        // Every token in the part is under one of its own data keys, named in
        // the file name first.
        let keys: Vec<&str> = out["data_keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap()).collect();
        assert!(name.ends_with(&format!("-{}.csv", keys[0])), "{name} {keys:?}");
        for row in &rows[1..] {
            let dek = row[1].split(':').nth(1).unwrap();
            assert!(keys.contains(&dek), "{name}: token under {dek}, part keys {keys:?}");
        }
        for k in &keys {
            assert!(all_keys.insert(k.to_string()), "data key {k} shared between parts");
        }
        let manifest: serde_json::Value =
            serde_json::from_str(&wd.read(&format!("outbox/{}", name.replace(".csv", ".manifest")))).unwrap();
        assert_eq!(manifest["fileName"], name.as_str());
        if combined.is_empty() {
            combined.push(rows[0].clone());
        }
        combined.extend(rows.into_iter().skip(1));
    }
    assert_eq!(combined.len(), 400, "399 rows + header");
    verify_combined(&wd, "inbox/big.csv", &combined, &rejected);
}

/// Writes the parts' rows (header once) as one CSV and checks with the
/// independent verifier that they decrypt to `input`, in order.
pub fn verify_combined(wd: &Workdir, input: &str, combined: &[Vec<String>], rejected: &[u64]) {
    let mut w = csv::Writer::from_path(wd.path("combined.csv")).unwrap();
    for r in combined {
        w.write_record(r).unwrap();
    }
    w.flush().unwrap();
    drop(w);
    let py = wd.verify_with_python(input, "combined.csv", rejected);
    assert!(py.status.success(), "{}\n{}", String::from_utf8_lossy(&py.stdout), String::from_utf8_lossy(&py.stderr));
    let want = format!("verified {} rows", combined.len() - 1);
    assert!(String::from_utf8_lossy(&py.stdout).contains(&want), "{}", String::from_utf8_lossy(&py.stdout));
    std::fs::remove_file(wd.path("combined.csv")).unwrap();
}

#[test]
fn output_over_max_file_bytes_is_cut_into_parts_on_all_cores() {
    check_parts("2");
}

#[test]
fn output_over_max_file_bytes_is_cut_into_parts_sequentially() {
    check_parts("1");
}

/// `rows` rows of about 120 bytes of output each.
pub fn many_rows(rows: usize) -> String {
    let mut text = String::from("email,phone,name,city,score,notes\n");
    for i in 0..rows {
        text.push_str(&format!("user{i}@example.test,(415) 555-{:04},User {i},Town,{i},\n", i % 10_000));
    }
    text
}

/// A file cut into many more parts than the process may open descriptors:
/// a finished part holds no descriptor while the others are written.
#[test]
fn a_file_cut_into_more_parts_than_open_descriptors_allows_is_published() {
    let wd = Workdir::new("");
    with_limit(&wd, 4096);
    wd.write("inbox/many.csv", many_rows(3000));
    let run = wd.piigate_with_fd_limit(48, &["process", "--config", "piigate.toml", "inbox/many.csv"]);
    run.expect_ok();
    let names = parts(&wd);
    assert!(names.len() > 100, "{} parts", names.len());
    let rows: usize = names.iter().map(|n| csv_rows(&wd.read(&format!("outbox/{n}"))).len() - 1).sum();
    assert_eq!(rows, 3000);
    assert!(!wd.list("outbox").iter().any(|n| n.ends_with(".partial")));
}

#[test]
fn a_row_larger_than_a_part_fails_the_file_with_its_line_and_no_output() {
    let wd = Workdir::new("");
    with_limit(&wd, 1024);
    let long = "x".repeat(2000);
    wd.write(
        "inbox/wide.csv",
        format!("email,phone,name,city,score,notes\na@example.test,,Ann,Town,1,\nb@example.test,,{long},Town,2,\n"),
    );
    let run = wd.piigate(&["process", "--config", "piigate.toml", "inbox/wide.csv"]);
    run.expect_code(1);
    assert!(run.stderr().contains("line 3"), "{}", run.describe());
    assert!(run.stderr().contains("max_file_bytes"), "{}", run.describe());
    assert!(!run.stderr().contains(&long[..50]), "no values in errors");
    assert!(parts(&wd).is_empty(), "{:?}", wd.list("outbox"));
    assert!(!wd.list("outbox").iter().any(|n| n.ends_with(".partial") || n.ends_with(".manifest")));
}
