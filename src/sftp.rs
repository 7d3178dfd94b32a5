//! SFTP connections through `ssh2` (libssh2): connect with a timeout,
//! verify the server's host key against known_hosts (never auto-accept),
//! authenticate with a key file or a password from the environment, and
//! retry only transient failures with capped exponential backoff.

use std::io::{BufRead, BufReader};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use ssh2::{CheckResult, HashType, KnownHostFileKind, MethodType, Session, Sftp};

use crate::settings::SftpSettings;

/// Network timeout for one blocking SSH operation (milliseconds).
pub const SESSION_TIMEOUT_MS: u32 = 60_000;
/// Keepalive interval (seconds).
pub const KEEPALIVE_SECONDS: u32 = 15;
/// Connection attempts for transient failures.
pub const CONNECT_ATTEMPTS: u32 = 4;

/// SSH cipher preference (RFC 4253 section 7.1 name-lists, most preferred first).
const CIPHER_PREFS: &str =
    "aes128-gcm@openssh.com,aes256-gcm@openssh.com,aes128-ctr,aes256-ctr,chacha20-poly1305@openssh.com";

/// SFTP failures. `is_transient` tells which are worth a retry.
#[derive(Debug, thiserror::Error)]
pub enum SftpError {
    /// TCP connection or SSH handshake failed (transient).
    #[error("cannot reach SFTP server {endpoint}: {message}")]
    Connect {
        /// host:port.
        endpoint: String,
        /// Cause.
        message: String,
    },
    /// The host key is not in known_hosts, or differs from it. The message
    /// names the key's fingerprint, the known_hosts file (and line), and the
    /// remedy.
    #[error("{message}")]
    HostKey {
        /// Full message.
        message: String,
        /// Whether a different key was on record (possible attack).
        changed: bool,
    },
    /// known_hosts could not be read.
    #[error("cannot read known_hosts file {path}: {message}; create it with ssh-keyscan after checking the server's fingerprint")]
    KnownHosts {
        /// File.
        path: String,
        /// Cause.
        message: String,
    },
    /// Authentication was refused.
    #[error("SFTP login to {endpoint} as {user} failed: {message}")]
    Auth {
        /// host:port.
        endpoint: String,
        /// User.
        user: String,
        /// What to check.
        message: String,
    },
    /// An SFTP operation failed.
    #[error("SFTP {op} {path} on {endpoint}: {message}")]
    Op {
        /// What was done.
        op: &'static str,
        /// Remote path.
        path: String,
        /// host:port.
        endpoint: String,
        /// Cause.
        message: String,
        /// Whether the connection looks broken.
        transient: bool,
    },
}

impl SftpError {
    /// Connection-level failures that a retry may fix. Host-key,
    /// authentication and known_hosts errors never are.
    pub fn is_transient(&self) -> bool {
        match self {
            SftpError::Connect { .. } => true,
            SftpError::Op { transient, .. } => *transient,
            _ => false,
        }
    }
}

/// A remote path as a URL for messages and reports: `sftp://host:port/abs`
/// or, for a path relative to the login directory, `sftp://host:port/~/rel`.
pub fn url(endpoint: &str, path: &str) -> String {
    if path.starts_with('/') {
        format!("sftp://{endpoint}{path}")
    } else {
        format!("sftp://{endpoint}/~/{path}")
    }
}

/// An authenticated SFTP connection.
pub struct Connection {
    /// The SSH session (kept alive with the SFTP channel).
    pub session: Session,
    /// The SFTP channel.
    pub sftp: Sftp,
    /// host:port for messages.
    pub endpoint: String,
}

fn endpoint(s: &SftpSettings) -> String {
    format!("{}:{}", s.host, s.port)
}

fn known_hosts_pattern(s: &SftpSettings) -> String {
    if s.port == 22 {
        s.host.clone()
    } else {
        format!("[{}]:{}", s.host, s.port)
    }
}

/// Key algorithms listed for this host in known_hosts (plain entries), and
/// the 1-based line of the first such entry, so the server is asked for a
/// key type we can check.
fn known_key_types(s: &SftpSettings) -> (Vec<String>, Option<usize>) {
    let pattern = known_hosts_pattern(s);
    let mut types = Vec::new();
    let mut first = None;
    if let Ok(f) = std::fs::File::open(&s.known_hosts) {
        for (i, line) in BufReader::new(f).lines().map_while(Result::ok).enumerate() {
            let mut parts = line.split_whitespace();
            let (Some(hosts), Some(kind)) = (parts.next(), parts.next()) else { continue };
            if hosts.starts_with('#') || hosts.starts_with('@') {
                continue;
            }
            if hosts.split(',').any(|h| h == pattern) {
                first.get_or_insert(i + 1);
                if !types.iter().any(|t| t == kind) {
                    types.push(kind.to_owned());
                }
            }
        }
    }
    (types, first)
}

/// Opens a connection once (no retry).
///
/// # Errors
/// [`SftpError`].
pub fn connect_once(s: &SftpSettings) -> Result<Connection, SftpError> {
    let ep = endpoint(s);
    let conn_err = |m: String| SftpError::Connect { endpoint: ep.clone(), message: m };
    let addrs: Vec<_> = (s.host.as_str(), s.port).to_socket_addrs().map_err(|e| conn_err(e.to_string()))?.collect();
    let mut last = None;
    let mut tcp = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, Duration::from_secs(15)) {
            Ok(t) => {
                tcp = Some(t);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let tcp = tcp.ok_or_else(|| conn_err(last.map_or_else(|| "no address".into(), |e| e.to_string())))?;
    let mut session = Session::new().map_err(|e| conn_err(e.to_string()))?;
    session.set_tcp_stream(tcp);
    session.set_timeout(SESSION_TIMEOUT_MS);
    let (types, entry_line) = known_key_types(s);
    if !types.is_empty() {
        // Servers that refuse ssh-rsa signatures still take RSA keys with rsa-sha2-*.
        let prefs: Vec<&str> = types
            .iter()
            .flat_map(
                |t| if t == "ssh-rsa" { vec!["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"] } else { vec![t.as_str()] },
            )
            .collect();
        let _ = session.method_pref(MethodType::HostKey, &prefs.join(","));
    }
    // AES-GCM first: libssh2 runs it through OpenSSL with AES-NI, several
    // times faster than its portable ChaCha20-Poly1305, which it would
    // otherwise pick first. Any cipher both sides allow still works.
    for t in [MethodType::CryptCs, MethodType::CryptSc] {
        let _ = session.method_pref(t, CIPHER_PREFS);
    }
    session.handshake().map_err(|e| conn_err(format!("SSH handshake: {e}")))?;
    tracing::debug!(
        "SSH ciphers to {ep}: {} / {}",
        session.methods(MethodType::CryptCs).unwrap_or("?"),
        session.methods(MethodType::CryptSc).unwrap_or("?")
    );
    verify_host_key(s, &session, entry_line)?;
    session.set_keepalive(true, KEEPALIVE_SECONDS);

    let auth_err = |m: String| SftpError::Auth { endpoint: ep.clone(), user: s.user.clone(), message: m };
    if let Some(key) = &s.key_file {
        session.userauth_pubkey_file(&s.user, None, key, None).map_err(|e| {
            auth_err(format!(
                "key {} was refused ({}); check that its public key is in ~{}/.ssh/authorized_keys on the server and that the file is a private key without a passphrase",
                key.display(),
                e.message(),
                s.user
            ))
        })?;
    } else if let Some(var) = &s.password_env {
        let pw = std::env::var(var)
            .map_err(|_| auth_err(format!("environment variable {var} (password_env) is not set")))?;
        session
            .userauth_password(&s.user, &pw)
            .map_err(|e| auth_err(format!("password from {var} was refused ({})", e.message())))?;
    }
    if !session.authenticated() {
        return Err(auth_err("the server did not accept the login".into()));
    }
    let sftp = session.sftp().map_err(|e| conn_err(format!("starting the SFTP subsystem: {e}")))?;
    Ok(Connection { session, sftp, endpoint: ep })
}

fn verify_host_key(s: &SftpSettings, session: &Session, entry_line: Option<usize>) -> Result<(), SftpError> {
    let ep = endpoint(s);
    let kh_path = s.known_hosts.display().to_string();
    let (key, kind) = session
        .host_key()
        .ok_or_else(|| SftpError::Connect { endpoint: ep.clone(), message: "the server sent no host key".into() })?;
    let mut kh =
        session.known_hosts().map_err(|e| SftpError::KnownHosts { path: kh_path.clone(), message: e.to_string() })?;
    if !Path::new(&s.known_hosts).is_file() {
        return Err(SftpError::KnownHosts { path: kh_path, message: "file not found".into() });
    }
    kh.read_file(&s.known_hosts, KnownHostFileKind::OpenSSH)
        .map_err(|e| SftpError::KnownHosts { path: kh_path.clone(), message: e.to_string() })?;
    let key_type = format!("{kind:?}");
    let fingerprint = session
        .host_key_hash(HashType::Sha256)
        .map(|h| {
            use base64::Engine as _;
            format!("SHA256:{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(h))
        })
        .unwrap_or_default();
    let short = match kind {
        ssh2::HostKeyType::Rsa => "rsa",
        ssh2::HostKeyType::Dss => "dsa",
        ssh2::HostKeyType::Ed25519 => "ed25519",
        _ => "ecdsa",
    };
    let pattern = known_hosts_pattern(s);
    match kh.check_port(&s.host, s.port, key) {
        CheckResult::Match => Ok(()),
        CheckResult::Mismatch => Err(SftpError::HostKey {
            changed: true,
            message: format!(
                "HOST KEY CHANGED for {ep}: the server offered {key_type} {fingerprint}, which does not match \
                 {kh_path}{line}. This may be an attack. If the server's key was legitimately replaced, confirm the \
                 new fingerprint with its administrator, then remove the old entry (ssh-keygen -R '{pattern}' -f \
                 {kh_path}) and add the new one",
                line = entry_line.map(|l| format!(" line {l}")).unwrap_or_default(),
            ),
        }),
        CheckResult::NotFound | CheckResult::Failure => Err(SftpError::HostKey {
            changed: false,
            message: format!(
                "host key of {ep} ({key_type} {fingerprint}) is not in known_hosts file {kh_path}; piigate never \
                 trusts an unknown key. After checking the fingerprint with the server's administrator, add it \
                 with: ssh-keyscan -p {port} -t {short} {host} >> {kh_path}",
                port = s.port,
                host = s.host,
            ),
        }),
    }
}

/// Connects, retrying transient failures with capped exponential backoff
/// (0.5 s, 1 s, 2 s; at most [`CONNECT_ATTEMPTS`] tries). `cancel` stops the
/// waiting.
///
/// # Errors
/// The last [`SftpError`].
pub fn connect(s: &SftpSettings, cancel: &std::sync::atomic::AtomicBool) -> Result<Connection, SftpError> {
    let mut delay = Duration::from_millis(500);
    let mut attempt = 1;
    loop {
        match connect_once(s) {
            Ok(c) => return Ok(c),
            Err(e)
                if e.is_transient()
                    && attempt < CONNECT_ATTEMPTS
                    && !cancel.load(std::sync::atomic::Ordering::Relaxed) =>
            {
                tracing::warn!(
                    "{e}; retrying in {:.1} s (attempt {attempt} of {CONNECT_ATTEMPTS})",
                    delay.as_secs_f64()
                );
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(8));
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Maps an ssh2 error of an SFTP operation. Session-level errors (socket,
/// timeout, channel) are transient; SFTP status codes (no such file,
/// permission denied) are not.
pub fn op_error(op: &'static str, path: &str, endpoint: &str, e: &ssh2::Error) -> SftpError {
    let transient = matches!(e.code(), ssh2::ErrorCode::Session(_));
    SftpError::Op { op, path: path.to_owned(), endpoint: endpoint.to_owned(), message: e.to_string(), transient }
}

/// A bounded pool of SFTP connections to one server. A connection that
/// saw a connection-level error is dropped, not returned.
pub struct Pool {
    settings: SftpSettings,
    idle: std::sync::Mutex<Vec<Connection>>,
    cancel: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// A connection borrowed from a [`Pool`].
pub struct Pooled<'a> {
    pool: &'a Pool,
    conn: Option<Connection>,
    broken: bool,
}

impl Pool {
    /// A pool for `settings`.
    pub fn new(settings: SftpSettings, cancel: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Self {
        Self { settings, idle: std::sync::Mutex::new(Vec::new()), cancel }
    }

    /// An idle connection, or a new one.
    ///
    /// # Errors
    /// [`SftpError`] from connecting.
    pub fn get(&self) -> Result<Pooled<'_>, SftpError> {
        if let Some(idle) = self.idle() {
            return Ok(idle);
        }
        let conn = connect(&self.settings, &self.cancel)?;
        Ok(Pooled { pool: self, conn: Some(conn), broken: false })
    }

    /// An idle connection, if one is free; never connects.
    pub fn idle(&self) -> Option<Pooled<'_>> {
        let conn = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()?;
        Some(Pooled { pool: self, conn: Some(conn), broken: false })
    }

    /// host:port.
    pub fn endpoint(&self) -> String {
        endpoint(&self.settings)
    }
}

impl Pooled<'_> {
    /// The connection.
    pub fn conn(&self) -> &Connection {
        self.conn.as_ref().expect("present until drop")
    }

    /// Maps an ssh2 error and marks the connection broken when it is a
    /// connection-level failure.
    pub fn fail(&mut self, op: &'static str, path: &str, e: &ssh2::Error) -> SftpError {
        let err = op_error(op, path, &self.conn().endpoint, e);
        if err.is_transient() {
            self.broken = true;
        }
        err
    }

    /// Marks the connection broken.
    pub fn mark_broken(&mut self) {
        self.broken = true;
    }

    /// Whether the connection was marked broken (it is then dropped, not
    /// given back to the pool).
    pub fn is_broken(&self) -> bool {
        self.broken
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            if !self.broken {
                self.pool.idle.lock().unwrap_or_else(|e| e.into_inner()).push(c);
            }
        }
    }
}
