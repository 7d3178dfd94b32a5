//! A KEK from outside the keyring file: `[keys] kek_command`.
//!
//! The command line runs through `sh -c` (so a KMS or Vault CLI call can
//! use pipes and quoting as in a shell) with stdin closed, the gateway's
//! environment, and the config file's folder as working directory. Its
//! standard output must be the KEK as standard base64 (RFC 4648 §4) of
//! exactly 32 bytes; surrounding whitespace is ignored. The output is
//! zeroized after decoding and never logged. A command that fails, prints
//! something else, or runs longer than [`TIMEOUT`] is an error that names
//! its exit status and the first line of its standard error (a KMS CLI
//! reports problems there, never key material).

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use crate::crypto::keys::Kek;

/// How long the command may run before it is killed.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Longest standard output read: a base64 KEK is 44 characters.
const MAX_STDOUT: u64 = 4096;
/// Longest standard-error line quoted in an error.
const MAX_STDERR_LINE: usize = 200;

/// Errors running `kek_command`. Never contain its standard output.
#[derive(Debug, thiserror::Error)]
pub enum KekCommandError {
    /// `sh` could not be started.
    #[error("[keys] kek_command: cannot start `sh -c`: {0}")]
    Spawn(std::io::Error),
    /// The command exited unsuccessfully.
    #[error("[keys] kek_command ({program}) failed with {status}{}; run it by hand as this user to see why (credentials, network, key name)", stderr_note(.stderr))]
    Failed {
        /// First word of the command line.
        program: String,
        /// Exit status as text.
        status: String,
        /// First line of its standard error.
        stderr: String,
    },
    /// The command ran past [`TIMEOUT`] and was killed.
    #[error("[keys] kek_command ({program}) did not finish within {} seconds and was stopped; check that it needs no input and can reach the KMS", TIMEOUT.as_secs())]
    Timeout {
        /// First word of the command line.
        program: String,
    },
    /// The output is not a KEK.
    #[error("[keys] kek_command ({program}) succeeded but its output ({bytes} bytes) is not standard base64 of a 32-byte key; make it print only the key, e.g. `... | base64` of 32 raw bytes")]
    Output {
        /// First word of the command line.
        program: String,
        /// Length of what it printed.
        bytes: usize,
    },
}

fn stderr_note(line: &str) -> String {
    if line.is_empty() {
        String::new()
    } else {
        format!(" (stderr: {line})")
    }
}

/// Runs `command` with `sh -c` in `dir` and decodes its standard output as
/// a 32-byte KEK.
///
/// # Errors
/// [`KekCommandError`]: cannot start, non-zero exit, timeout, or output that
/// is not standard base64 of 32 bytes.
pub fn fetch(command: &str, dir: &Path) -> Result<Kek, KekCommandError> {
    let program = command.split_whitespace().next().unwrap_or("").to_owned();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(if dir.as_os_str().is_empty() { Path::new(".") } else { dir })
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(KekCommandError::Spawn)?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let out_reader = std::thread::spawn(move || {
        // Sized up front so that reading never reallocates and leaves a
        // stray copy of the key behind.
        let mut buf = Zeroizing::new(Vec::with_capacity(2 * MAX_STDOUT as usize));
        if let Some(s) = stdout {
            let _ = s.take(MAX_STDOUT).read_to_end(&mut buf);
        }
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stderr {
            let _ = s.take(64 * 1024).read_to_end(&mut buf);
        }
        buf
    });
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        match child.try_wait().map_err(KekCommandError::Spawn)? {
            Some(status) => break status,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(KekCommandError::Timeout { program });
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    if !status.success() {
        let line =
            String::from_utf8_lossy(&err).lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("").to_owned();
        let line: String = line.chars().take(MAX_STDERR_LINE).collect();
        let status = match status.code() {
            Some(c) => format!("exit status {c}"),
            None => "a signal".to_owned(),
        };
        return Err(KekCommandError::Failed { program, status, stderr: line });
    }
    let text = std::str::from_utf8(&out)
        .map_err(|_| KekCommandError::Output { program: program.clone(), bytes: out.len() })?;
    Kek::from_base64(text.trim()).map_err(|_| KekCommandError::Output { program, bytes: out.len() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_key_and_reports_failures_without_output() {
        let dir = Path::new(".");
        let key = Kek::generate();
        let got = fetch(&format!("printf '  %s\\n' '{}'", key.to_base64()), dir).unwrap();
        assert!(got == key);
        let e = fetch("echo 'AccessDenied: no kms:Decrypt' >&2; exit 3", dir).err().unwrap().to_string();
        assert!(e.contains("exit status 3") && e.contains("AccessDenied"), "{e}");
        let e = fetch("echo c2VjcmV0", dir).err().unwrap().to_string();
        assert!(e.contains("not standard base64") && !e.contains("c2VjcmV0"), "{e}");
    }
}
