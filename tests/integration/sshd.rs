//! A real OpenSSH `sshd` on 127.0.0.1 for the SFTP tests, with throwaway
//! keys in a temporary directory.
//!
//! Every `Sshd` has its own port, host key, client key, config, pid file and
//! log, so tests running in parallel threads each get their own server. The
//! server runs in the foreground (`-D`) as a child of the test process and is
//! killed, with every per-connection process it forked, on `stop` and on drop.
//!
//! Nothing here skips: without `sshd` the tests fail and say how to install
//! it (`apt-get install openssh-server openssh-client`, or
//! `scripts/ci-setup.sh`).

#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const INSTALL_HINT: &str = "the SFTP integration tests need OpenSSH's server and client: \
     run `apt-get update && apt-get install -y openssh-server openssh-client` \
     (or scripts/ci-setup.sh as root); set PIIGATE_TEST_SSHD=/abs/path/to/sshd \
     if it is installed somewhere unusual";

/// How long `start`/`restart` wait for sshd to listen.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How many fresh ports `start` tries when the chosen one was taken meanwhile.
const PORT_ATTEMPTS: usize = 5;

pub struct Sshd {
    dir: tempfile::TempDir,
    root: PathBuf,
    sshd_bin: PathBuf,
    config: PathBuf,
    log: PathBuf,
    stderr_log: PathBuf,
    client_key: PathBuf,
    known_hosts: PathBuf,
    /// "ssh-ed25519 AAAA..." of the host key, without comment.
    host_key: String,
    port: u16,
    user: String,
    password: Option<(String, String)>,
    child: Option<Child>,
    other_keys: AtomicU32,
}

impl Sshd {
    /// Starts sshd on 127.0.0.1 on a free port with fresh ed25519 host and
    /// client keys. Panics, with an install hint and the sshd log, if sshd
    /// cannot be found or does not come up within ~10 s.
    pub fn start() -> Sshd {
        let sshd_bin = find_sshd();
        // Privilege separation directory; sshd running as root refuses to
        // start without it. Not being able to create it (not root) is fine:
        // a non-root sshd does not need it.
        let _ = fs::create_dir_all("/run/sshd");

        let dir = tempfile::Builder::new()
            .prefix("piigate-sshd-")
            .tempdir()
            .unwrap_or_else(|e| panic!("creating a temp dir for sshd: {e}"));
        // Traversable by the password-login user, who is not root.
        set_mode(dir.path(), 0o755);
        let root = dir.path().join("root");
        fs::create_dir(&root).unwrap();
        // Writable by the password-login user too (no sticky bit, so it may
        // also rename and delete files that the tests created as root).
        set_mode(&root, 0o777);

        let host_key = dir.path().join("ssh_host_ed25519_key");
        let client_key = dir.path().join("client_ed25519");
        keygen(&host_key, "piigate-test-host");
        keygen(&client_key, "piigate-test-client");
        set_mode(&client_key, 0o600);
        let host_pub = read_pub(&host_key);
        let authorized_keys = dir.path().join("authorized_keys");
        fs::write(&authorized_keys, read_pub_line(&client_key) + "\n").unwrap();

        let user = whoami::username();
        let password =
            match (std::env::var("PIIGATE_TEST_SFTP_PASSWORD_USER"), std::env::var("PIIGATE_TEST_SFTP_PASSWORD")) {
                (Ok(u), Ok(p)) if !u.is_empty() && !p.is_empty() => Some((u, p)),
                _ => None,
            };

        let mut sshd = Sshd {
            config: dir.path().join("sshd_config"),
            log: dir.path().join("sshd.log"),
            stderr_log: dir.path().join("sshd.stderr"),
            known_hosts: dir.path().join("known_hosts"),
            client_key,
            host_key: host_pub,
            root,
            sshd_bin,
            port: 0,
            user,
            password,
            child: None,
            other_keys: AtomicU32::new(0),
            dir,
        };

        let mut failures = String::new();
        for attempt in 1..=PORT_ATTEMPTS {
            sshd.port = free_port();
            sshd.write_config(&authorized_keys);
            fs::write(&sshd.known_hosts, format!("[127.0.0.1]:{} {}\n", sshd.port, sshd.host_key)).unwrap();
            match sshd.spawn_and_wait() {
                Ok(()) => return sshd,
                Err(Failure::PortTaken(msg)) => {
                    let _ = writeln!(failures, "attempt {attempt}: {msg}");
                }
                Err(Failure::Fatal(msg)) => sshd.fail(&msg),
            }
        }
        sshd.fail(&format!("no free port after {PORT_ATTEMPTS} attempts:\n{failures}"))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The OS user the tests run as; the client key logs in as this user.
    pub fn user(&self) -> String {
        self.user.clone()
    }

    /// The client's private key (OpenSSH format, ed25519, no passphrase,
    /// mode 0600).
    pub fn client_key(&self) -> PathBuf {
        self.client_key.clone()
    }

    /// A known_hosts file with the single line
    /// `[127.0.0.1]:PORT ssh-ed25519 AAAA...` for this server's host key.
    pub fn known_hosts(&self) -> PathBuf {
        self.known_hosts.clone()
    }

    /// The host key as "ssh-ed25519 AAAA..." (no comment).
    pub fn host_key(&self) -> String {
        self.host_key.clone()
    }

    /// Writes a known_hosts file for `[127.0.0.1]:PORT` that holds a
    /// different, freshly generated ed25519 key (a "host key changed" case).
    pub fn write_other_known_hosts(&self, path: &Path) {
        let n = self.other_keys.fetch_add(1, Ordering::SeqCst);
        let key = self.dir.path().join(format!("other_host_key_{n}"));
        keygen(&key, "piigate-test-other-host");
        let other = read_pub(&key);
        assert_ne!(other, self.host_key);
        fs::write(path, format!("[127.0.0.1]:{} {}\n", self.port, other))
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// The remote folder tree: an absolute path on this machine, which is
    /// also the SFTP path. Mode 0777 so that the password-login user can
    /// write in it too.
    pub fn root(&self) -> PathBuf {
        self.root.clone()
    }

    /// `(user, password)` for password authentication, when CI created such a
    /// user (PIIGATE_TEST_SFTP_PASSWORD_USER and PIIGATE_TEST_SFTP_PASSWORD;
    /// see scripts/ci-setup.sh).
    pub fn password_login(&self) -> Option<(String, String)> {
        self.password.clone()
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kills sshd and every process it forked for connections (SIGKILL), as
    /// if the server died: open connections break too. Waits for the
    /// listener to exit. Does nothing if it is not running.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_tree(child.id());
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts sshd again on the same port with the same host key and
    /// client key (stopping it first if it is still running).
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match self.spawn_and_wait() {
                Ok(()) => return,
                // The old listening socket is gone after SIGKILL and sshd sets
                // SO_REUSEADDR, so this only happens if someone else took the
                // port; give them a moment, then fail.
                Err(Failure::PortTaken(msg)) if Instant::now() < deadline => {
                    eprintln!("sshd restart on port {}: {msg}; retrying", self.port);
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(Failure::PortTaken(msg)) | Err(Failure::Fatal(msg)) => {
                    self.fail(&format!("restart on port {}: {msg}", self.port))
                }
            }
        }
    }

    /// Runs OpenSSH's `sftp` in batch mode with the client key and strict
    /// host key checking against `known_hosts()`. Returns its output,
    /// whatever the status.
    pub fn sftp_batch_output(&self, script: &str) -> Output {
        let mut child = Command::new("sftp")
            .args(["-b", "-", "-F", "none", "-P", &self.port.to_string(), "-i"])
            .arg(&self.client_key)
            .args(self.ssh_options())
            .arg(format!("{}@127.0.0.1", self.user))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running sftp: {e}; {INSTALL_HINT}"));
        child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Like `sftp_batch_output`, but panics with the script, stdout, stderr
    /// and the sshd log unless sftp succeeds. Returns stdout.
    pub fn sftp_batch(&self, script: &str) -> String {
        let out = self.sftp_batch_output(script);
        if !out.status.success() {
            panic!(
                "sftp batch failed ({}) on port {}\n--- script\n{}\n--- stdout\n{}\n--- stderr\n{}\n--- sshd log\n{}",
                out.status,
                self.port,
                script,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log()
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Uploads `local` to the absolute remote path `remote` with OpenSSH's
    /// own sftp client; panics with its stderr on failure.
    pub fn sftp_upload(&self, local: &Path, remote: &str) {
        let local = local.to_str().unwrap_or_else(|| panic!("non-UTF-8 path {}", local.display()));
        self.sftp_batch(&format!("put {} {}\n", sftp_quote(local), sftp_quote(remote)));
    }

    /// The sshd log (all starts), plus anything sshd wrote to stderr.
    pub fn log(&self) -> String {
        let mut s = fs::read_to_string(&self.log).unwrap_or_default();
        let stderr = fs::read_to_string(&self.stderr_log).unwrap_or_default();
        if !stderr.trim().is_empty() {
            s.push_str("--- sshd stderr\n");
            s.push_str(&stderr);
        }
        s
    }

    /// The ssh options sftp_batch uses (known_hosts, strict checking, no
    /// agent, no user config), for running `ssh`/`sftp` by hand.
    pub fn ssh_options(&self) -> Vec<String> {
        vec![
            "-o".into(),
            format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "-o".into(),
            "GlobalKnownHostsFile=/dev/null".into(),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            "-o".into(),
            "UpdateHostKeys=no".into(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            "IdentityAgent=none".into(),
            "-o".into(),
            "ConnectTimeout=10".into(),
        ]
    }

    fn write_config(&self, authorized_keys: &Path) {
        let d = self.dir.path();
        let config = format!(
            "# piigate integration-test sshd\n\
             ListenAddress 127.0.0.1\n\
             Port {port}\n\
             AddressFamily inet\n\
             HostKey {host_key}\n\
             PidFile {pid}\n\
             AuthorizedKeysFile {authorized_keys}\n\
             StrictModes no\n\
             UsePAM no\n\
             PermitRootLogin yes\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication yes\n\
             PermitEmptyPasswords no\n\
             KbdInteractiveAuthentication no\n\
             Subsystem sftp internal-sftp\n\
             LogLevel VERBOSE\n\
             UseDNS no\n\
             PrintMotd no\n\
             PrintLastLog no\n\
             X11Forwarding no\n\
             AllowAgentForwarding no\n\
             AllowTcpForwarding no\n\
             MaxStartups 100\n\
             MaxSessions 50\n\
             LoginGraceTime 30\n",
            port = self.port,
            host_key = d.join("ssh_host_ed25519_key").display(),
            pid = d.join("sshd.pid").display(),
            authorized_keys = authorized_keys.display(),
        );
        fs::write(&self.config, config).unwrap();
    }

    /// Spawns sshd and waits until it logs "Server listening" for our port,
    /// is still alive and accepts a TCP connection.
    fn spawn_and_wait(&mut self) -> Result<(), Failure> {
        let log_start = fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0) as usize;
        let stderr = fs::OpenOptions::new().create(true).append(true).open(&self.stderr_log).unwrap();
        let child = Command::new(&self.sshd_bin)
            .arg("-D")
            .arg("-f")
            .arg(&self.config)
            .arg("-E")
            .arg(&self.log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            // Its own process group: a Ctrl-C aimed at `cargo test` reaches
            // it anyway through the terminal, but a signal to the test
            // harness's group does not kill it halfway through a restart.
            .process_group(0)
            .spawn()
            .map_err(|e| Failure::Fatal(format!("cannot run {}: {e}", self.sshd_bin.display())))?;
        self.child = Some(child);

        let listening = format!("Server listening on 127.0.0.1 port {}.", self.port);
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let status = self.child.as_mut().unwrap().try_wait().unwrap();
            let log = fs::read_to_string(&self.log).unwrap_or_default();
            let new_log = log.get(log_start..).unwrap_or("");
            if let Some(status) = status {
                self.child = None;
                let msg = format!("sshd exited with {status} before listening");
                return Err(
                    if new_log.contains("Address already in use") || new_log.contains("Cannot bind any address") {
                        Failure::PortTaken(msg)
                    } else {
                        Failure::Fatal(msg)
                    },
                );
            }
            if new_log.contains(&listening) && TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(Failure::Fatal(format!(
                    "sshd did not listen on 127.0.0.1:{} within {:?}",
                    self.port, READY_TIMEOUT
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn fail(&mut self, msg: &str) -> ! {
        self.stop();
        panic!(
            "test sshd ({}) failed: {msg}\n{INSTALL_HINT}\n--- config {}\n{}\n--- sshd log\n{}",
            self.sshd_bin.display(),
            self.config.display(),
            fs::read_to_string(&self.config).unwrap_or_default(),
            self.log()
        );
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

enum Failure {
    /// The port was taken between choosing it and sshd binding it.
    PortTaken(String),
    Fatal(String),
}

/// sshd must be run by absolute path (it re-executes itself).
fn find_sshd() -> PathBuf {
    if let Some(p) = std::env::var_os("PIIGATE_TEST_SSHD") {
        let p = PathBuf::from(p);
        if p.is_absolute() && p.is_file() {
            return p;
        }
        panic!("PIIGATE_TEST_SSHD={} is not an absolute path to a file; {INSTALL_HINT}", p.display());
    }
    let mut candidates: Vec<PathBuf> =
        ["/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd"].iter().map(PathBuf::from).collect();
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("sshd")));
    }
    candidates.into_iter().find(|p| p.is_absolute() && p.is_file()).unwrap_or_else(|| {
        panic!("sshd not found (looked in /usr/sbin, /usr/local/sbin, /sbin and PATH); {INSTALL_HINT}")
    })
}

fn free_port() -> u16 {
    for _ in 0..10 {
        if let Ok(l) = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)) {
            return l.local_addr().unwrap().port();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("cannot bind any port on 127.0.0.1");
}

fn keygen(path: &Path, comment: &str) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running ssh-keygen: {e}; {INSTALL_HINT}"));
    assert!(
        out.status.success(),
        "ssh-keygen -f {} failed ({}): {}{}",
        path.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The whole public key line ("ssh-ed25519 AAAA... comment").
fn read_pub_line(key: &Path) -> String {
    let p = key.with_file_name(format!("{}.pub", key.file_name().unwrap().to_string_lossy()));
    fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display())).trim().to_string()
}

/// "ssh-ed25519 AAAA..." without the comment.
fn read_pub(key: &Path) -> String {
    let line = read_pub_line(key);
    let mut f = line.split_whitespace();
    match (f.next(), f.next()) {
        (Some(t), Some(b)) if t == "ssh-ed25519" => format!("{t} {b}"),
        _ => panic!("unexpected public key for {}: {line}", key.display()),
    }
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// Quotes an argument for an sftp batch file.
fn sftp_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// SIGSTOPs `pid` and all its descendants (so none can fork away), then
/// SIGKILLs them all. sshd's per-connection processes call setsid(), so a
/// process-group kill would miss them; they are found through /proc.
fn kill_tree(pid: u32) {
    let mut stopped: BTreeSet<u32> = BTreeSet::new();
    signal(&[pid], "STOP");
    stopped.insert(pid);
    loop {
        let parents = ppids();
        let mut new = Vec::new();
        let mut frontier: Vec<u32> = stopped.iter().copied().collect();
        while let Some(p) = frontier.pop() {
            for (&c, &pp) in &parents {
                if pp == p && !stopped.contains(&c) && !new.contains(&c) {
                    new.push(c);
                    frontier.push(c);
                }
            }
        }
        if new.is_empty() {
            break;
        }
        signal(&new, "STOP");
        stopped.extend(new);
    }
    let all: Vec<u32> = stopped.into_iter().collect();
    signal(&all, "KILL");
}

fn signal(pids: &[u32], sig: &str) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .args(pids.iter().map(|p| p.to_string()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// pid -> parent pid for every process, from /proc/*/stat.
fn ppids() -> HashMap<u32, u32> {
    let mut map = HashMap::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return map;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ..."; comm may contain spaces and parens.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
            map.insert(pid, ppid);
        }
    }
    map
}

#[test]
fn sshd_fixture_serves_sftp() {
    let mut sshd = Sshd::start();
    assert!(sshd.root().is_absolute());

    let local_dir = tempfile::tempdir().unwrap();
    let local = local_dir.path().join("profiles.csv");
    fs::write(&local, "email,name\r\nana@example.test,Ana\r\n").unwrap();
    let remote_dir = sshd.root().join("inbox");
    fs::create_dir(&remote_dir).unwrap();
    let remote = remote_dir.join("profiles.csv");
    sshd.sftp_upload(&local, remote.to_str().unwrap());
    assert_eq!(fs::read_to_string(&remote).unwrap(), "email,name\r\nana@example.test,Ana\r\n");

    // The host key the server offers is the one in known_hosts().
    let known = fs::read_to_string(sshd.known_hosts()).unwrap();
    let expected_prefix = format!("[127.0.0.1]:{} ssh-ed25519 AAAA", sshd.port());
    assert!(known.starts_with(&expected_prefix), "{known}");
    assert_eq!(known.lines().count(), 1, "{known}");
    let keyscan = |sshd: &Sshd| -> String {
        let out = Command::new("ssh-keyscan")
            .args(["-T", "10", "-p", &sshd.port().to_string(), "127.0.0.1"])
            .output()
            .expect("running ssh-keyscan");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        stdout
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some("ssh-ed25519"))
            .unwrap_or_else(|| {
                panic!(
                    "no ed25519 key from ssh-keyscan ({}):\n{stdout}\n{}\n--- sshd log\n{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr),
                    sshd.log()
                )
            })
            .trim()
            .to_string()
    };
    assert_eq!(keyscan(&sshd), known.trim());

    // A different key for the same host:port.
    let other = local_dir.path().join("other_known_hosts");
    sshd.write_other_known_hosts(&other);
    let other = fs::read_to_string(&other).unwrap();
    assert!(other.starts_with(&expected_prefix), "{other}");
    assert_ne!(other.trim(), known.trim());

    // Stop and restart: same port, same host key, still serving.
    let port = sshd.port();
    sshd.stop();
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    sshd.restart();
    assert_eq!(sshd.port(), port);
    assert_eq!(keyscan(&sshd), known.trim());
    let listing = sshd.sftp_batch(&format!("ls -1 {}\n", sftp_quote(remote_dir.to_str().unwrap())));
    assert!(listing.contains("profiles.csv"), "{listing}");

    assert!(sshd.log().contains("Accepted publickey for"), "{}", sshd.log());

    // When CI created a password user, check that it can log in and write
    // under root() (with OpenSSH's sftp and SSH_ASKPASS, no sshpass needed).
    if let Some((user, password)) = sshd.password_login() {
        let askpass = local_dir.path().join("askpass.sh");
        let pwfile = local_dir.path().join("pw");
        fs::write(&pwfile, &password).unwrap();
        fs::write(&askpass, format!("#!/bin/sh\ncat '{}'\n", pwfile.display())).unwrap();
        set_mode(&askpass, 0o700);
        let mut child = Command::new("sftp")
            .args(["-F", "none", "-P", &sshd.port().to_string()])
            .args(sshd.ssh_options())
            .args([
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                "PreferredAuthentications=password",
                "-o",
                "NumberOfPasswordPrompts=1",
            ])
            .arg(format!("{user}@127.0.0.1"))
            .env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", ":0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running sftp");
        let target = sshd.root().join("by-password.csv");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(
                format!("put {} {}\n", sftp_quote(local.to_str().unwrap()), sftp_quote(target.to_str().unwrap()))
                    .as_bytes(),
            )
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success() && target.exists(),
            "password login as {user} failed ({}):\n{}{}\n--- sshd log\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            sshd.log()
        );
        assert!(sshd.log().contains(&format!("Accepted password for {user}")));
    }
}
