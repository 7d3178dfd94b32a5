//! A scratch directory with a keyring and a config, and a runner for the
//! real `piigate` binary that prints command, status, stdout and stderr when
//! an expectation fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Workdir {
    pub dir: tempfile::TempDir,
}

/// Columns of the test profile schema, as a TOML fragment.
pub const SCHEMA: &str = r#"
[[schema.columns]]
name = "identity"
from = "email"
action = "pseudonymize"
normalize = "email"
required = true

[[schema.columns]]
name = "email"
action = "encrypt"
normalize = "email"

[[schema.columns]]
name = "phone"
action = "encrypt"
normalize = "phone"

[[schema.columns]]
name = "phone_hint"
from = "phone"
action = "mask"
normalize = "phone"

[[schema.columns]]
name = "name"
action = "encrypt"
normalize = "trim"

[[schema.columns]]
name = "city"
action = "keep"

[[schema.columns]]
name = "score"
action = "keep"
ct_type = "INTEGER"

[[schema.columns]]
name = "notes"
action = "drop"
"#;

pub struct Run {
    pub cmdline: String,
    pub out: Output,
}

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    pub fn code(&self) -> i32 {
        self.out.status.code().unwrap_or(-1)
    }
    pub fn describe(&self) -> String {
        format!(
            "command: {}\nstatus: {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.cmdline,
            self.out.status,
            self.stdout(),
            self.stderr()
        )
    }
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code(), code, "unexpected exit status\n{}", self.describe());
        self
    }
    #[track_caller]
    pub fn expect_ok(&self) -> &Self {
        self.expect_code(0)
    }
}

impl Workdir {
    /// A new scratch dir with a fresh keyring at `keys/keyring.toml` and a
    /// config `piigate.toml` using [`SCHEMA`] and `extra` TOML appended to
    /// `[schema]`.
    pub fn new(schema_extra: &str) -> Self {
        let wd = Workdir { dir: tempfile::tempdir().expect("tempdir") };
        wd.piigate(&["keygen", "--keyring", "keys/keyring.toml"]).expect_ok();
        wd.write_config(schema_extra, SCHEMA);
        wd
    }

    pub fn write_config(&self, schema_extra: &str, columns: &str) {
        let cfg = format!(
            r#"[keys]
keyring = "keys/keyring.toml"
keystore = "state/data-keys.jsonl"

[source]
type = "local"
path = "inbox"
pattern = "*.csv"
archive = "archive"
quarantine = "quarantine"
min_age_seconds = 0

[sink]
type = "local"
path = "outbox"
manifest = "clevertap"
clevertap_client_email = "ops@example.com"

[state]
dir = "state"

[schema]
unknown_columns = "reject"
max_reject_ratio = 0.2
pseudonym_prefix = "u_"
default_region = "US"
{schema_extra}
{columns}
"#
        );
        self.write("piigate.toml", &cfg);
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, content: impl AsRef<[u8]>) {
        let p = self.path(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(p, content).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
    }

    pub fn piigate(&self, args: &[&str]) -> Run {
        self.piigate_env(args, &[])
    }

    /// Runs piigate with at most `fds` open file descriptors (`ulimit -n`).
    pub fn piigate_with_fd_limit(&self, fds: u32, args: &[&str]) -> Run {
        let mut cmd = Command::new("sh");
        cmd.current_dir(self.dir.path())
            .args(["-c", &format!("ulimit -n {fds} && exec \"$0\" \"$@\""), env!("CARGO_BIN_EXE_piigate")])
            .args(args)
            .env_remove("PIIGATE_KEYRING")
            .env_remove("RUST_LOG");
        let out = cmd.output().expect("running piigate");
        Run { cmdline: format!("ulimit -n {fds}; piigate {}", args.join(" ")), out }
    }

    pub fn piigate_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = self.command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("running piigate");
        Run { cmdline: format!("piigate {}", args.join(" ")), out }
    }

    /// `piigate ARGS` in this folder, without the caller's keyring or log
    /// settings.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_piigate"));
        cmd.current_dir(self.dir.path()).args(args).env_remove("PIIGATE_KEYRING").env_remove("RUST_LOG");
        cmd
    }

    /// Starts `piigate ARGS` in the background, its standard error going to
    /// `stderr` (piped: read it with `wait_with_output`).
    pub fn spawn_piigate(&self, args: &[&str], stderr: Stdio) -> Child {
        self.command(args).stderr(stderr).spawn().expect("starting piigate")
    }

    /// Waits until `rel` holds at least `n` files, polling every 50 ms;
    /// panics with `what` once `deadline` has passed.
    pub fn wait_for_files(&self, rel: &str, n: usize, deadline: Instant, what: &str) {
        while self.list(rel).len() < n {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Files directly in `rel`, sorted by name.
    pub fn list(&self, rel: &str) -> Vec<String> {
        let mut v: Vec<String> = match std::fs::read_dir(self.path(rel)) {
            Ok(rd) => rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
            Err(_) => Vec::new(),
        };
        v.sort();
        v
    }

    /// Every file under the scratch dir except the inputs and the keyring, as (path, bytes).
    pub fn written_files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        fn walk(p: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
            for e in std::fs::read_dir(p).unwrap() {
                let e = e.unwrap();
                let path = e.path();
                if path.is_dir() {
                    walk(&path, out);
                } else {
                    out.push((path.clone(), std::fs::read(&path).unwrap()));
                }
            }
        }
        let mut out = Vec::new();
        for sub in ["outbox", "state", "archive", "quarantine"] {
            let p = self.path(sub);
            if p.exists() {
                walk(&p, &mut out);
            }
        }
        out
    }

    /// Runs the independent Python verifier on one output.
    pub fn verify_with_python(&self, input: &str, output: &str, rejected_lines: &[u64]) -> Output {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/verify_output.py");
        let mut cmd = Command::new("python3");
        cmd.current_dir(self.dir.path()).arg(script).args([
            "--config",
            "piigate.toml",
            "--input",
            input,
            "--output",
            output,
        ]);
        if !rejected_lines.is_empty() {
            let l: Vec<String> = rejected_lines.iter().map(u64::to_string).collect();
            cmd.args(["--rejected-lines", &l.join(",")]);
        }
        cmd.output().expect("python3 must be installed (scripts/test.sh installs it)")
    }

    /// Asserts that the independent Python verifier accepts `output` made from
    /// `input` (no rejected rows).
    #[track_caller]
    pub fn assert_python_verifies(&self, input: &str, output: &str) {
        let py = self.verify_with_python(input, output, &[]);
        assert!(
            py.status.success(),
            "independent verifier failed on {output}:\n{}\n{}",
            String::from_utf8_lossy(&py.stdout),
            String::from_utf8_lossy(&py.stderr)
        );
    }

    /// Writes `content` as `inbox/<name>.csv`, runs `piigate process` on it
    /// and returns the path (`outbox/...`) of the CSV output it added.
    pub fn process_new(&self, name: &str, content: &str) -> String {
        let before: std::collections::BTreeSet<String> = self.list("outbox").into_iter().collect();
        self.write(&format!("inbox/{name}.csv"), content);
        self.piigate(&["process", "--config", "piigate.toml", &format!("inbox/{name}.csv")]).expect_ok();
        let out = self.list("outbox").into_iter().find(|n| n.ends_with(".csv") && !before.contains(n)).unwrap();
        format!("outbox/{out}")
    }
}

/// Parses CSV text into rows of strings.
pub fn csv_rows(text: &str) -> Vec<Vec<String>> {
    let mut r = csv::ReaderBuilder::new().has_headers(false).from_reader(text.as_bytes());
    r.records().map(|rec| rec.unwrap().iter().map(str::to_owned).collect()).collect()
}

/// Stops a background piigate (a `run --watch`) with SIGTERM and collects
/// its exit status and output.
pub fn stop(child: Child) -> Output {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    child.wait_with_output().unwrap()
}
