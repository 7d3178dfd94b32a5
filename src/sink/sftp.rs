//! An outbox folder on an SFTP server. Each output is written as
//! `<name>.<random>.partial`, its remote size checked against the bytes
//! sent, then renamed into place with SSH_FXP_RENAME, which OpenSSH
//! performs as link + unlink and so never replaces an existing file.

use std::io::{self, Write};
use std::path::Path;

use super::local::PARTIAL_SUFFIX;
use super::{PendingOutput, Sink, SinkError};
use crate::sftp::{Pool, Pooled};

/// An SFTP folder sink.
pub struct SftpSink<'a> {
    pool: &'a Pool,
    dir: String,
}

impl<'a> SftpSink<'a> {
    /// Outbox `dir` on the server behind `pool`.
    pub fn new(pool: &'a Pool, dir: String) -> Self {
        Self { pool, dir }
    }
}

fn sftp_err(e: crate::sftp::SftpError) -> SinkError {
    SinkError::Io { op: "SFTP", target: String::new(), source: io::Error::other(e.to_string()) }
}

struct SftpPending<'a> {
    conn: Pooled<'a>,
    file: Option<ssh2::File>,
    tmp: String,
    target: String,
    written: u64,
    committed: bool,
    endpoint: String,
}

impl Write for SftpPending<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let f = self.file.as_mut().ok_or_else(|| io::Error::other("closed"))?;
        match f.write(buf) {
            Ok(n) => {
                self.written += n as u64;
                Ok(n)
            }
            Err(e) => {
                self.conn.mark_broken();
                Err(e)
            }
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl PendingOutput for SftpPending<'_> {
    fn commit(mut self: Box<Self>) -> Result<String, SinkError> {
        let target = crate::sftp::url(&self.endpoint, &self.target);
        let io_err = |op, source| SinkError::Io { op, target: target.clone(), source };
        if let Some(mut f) = self.file.take() {
            f.flush().map_err(|e| io_err("writing", e))?;
            // fsync@openssh.com where offered; older servers lack it.
            let _ = f.fsync();
            f.close().map_err(|e| io_err("closing", io::Error::other(e.to_string())))?;
        }
        let st = self.conn.conn().sftp.stat(Path::new(&self.tmp));
        let st = st.map_err(|e| io_err("checking", io::Error::other(e.to_string())))?;
        if st.size != Some(self.written) {
            return Err(io_err(
                "checking",
                io::Error::other(format!("remote size {:?} differs from the {} bytes sent", st.size, self.written)),
            ));
        }
        let r = self.conn.conn().sftp.rename(
            Path::new(&self.tmp),
            Path::new(&self.target),
            Some(ssh2::RenameFlags::ATOMIC | ssh2::RenameFlags::NATIVE),
        );
        if let Err(e) = r {
            if self.conn.conn().sftp.stat(Path::new(&self.target)).is_ok() {
                return Err(SinkError::Exists(target));
            }
            let err = self.conn.fail("publishing", &self.tmp, &e);
            return Err(io_err("publishing", io::Error::other(err.to_string())));
        }
        self.committed = true;
        Ok(target)
    }
}

impl Drop for SftpPending<'_> {
    fn drop(&mut self) {
        if !self.committed {
            self.file.take();
            let _ = self.conn.conn().sftp.unlink(Path::new(&self.tmp));
        }
    }
}

impl Sink for SftpSink<'_> {
    fn create(&self, name: &str) -> Result<Box<dyn PendingOutput + '_>, SinkError> {
        let mut conn = self.pool.get().map_err(sftp_err)?;
        crate::source::sftp::ensure_dir(&mut conn, &self.dir).map_err(|e| SinkError::Io {
            op: "creating folder",
            target: self.dir.clone(),
            source: io::Error::other(e.to_string()),
        })?;
        let target = format!("{}/{}", self.dir.trim_end_matches('/'), name);
        if conn.conn().sftp.stat(Path::new(&target)).is_ok() {
            return Err(SinkError::Exists(target));
        }
        let tmp = format!("{target}.{}{PARTIAL_SUFFIX}", crate::crypto::keys::DekId::generate());
        let f = conn.conn().sftp.open_mode(
            Path::new(&tmp),
            ssh2::OpenFlags::WRITE | ssh2::OpenFlags::CREATE | ssh2::OpenFlags::EXCLUSIVE,
            0o640,
            ssh2::OpenType::File,
        );
        let f = f.map_err(|e| SinkError::Io {
            op: "creating",
            target: tmp.clone(),
            source: io::Error::other(conn.fail("creating", &tmp, &e).to_string()),
        })?;
        let endpoint = self.pool.endpoint();
        Ok(Box::new(SftpPending { conn, file: Some(f), tmp, target, written: 0, committed: false, endpoint }))
    }

    fn remove_partials(&self) -> Result<usize, SinkError> {
        let mut conn = self.pool.get().map_err(sftp_err)?;
        let Ok(entries) = conn.conn().sftp.readdir(Path::new(&self.dir)) else { return Ok(0) };
        let mut n = 0;
        for (p, st) in entries {
            if st.is_file() && p.to_string_lossy().ends_with(PARTIAL_SUFFIX) {
                let r = conn.conn().sftp.unlink(&p);
                r.map_err(|e| sftp_err(conn.fail("removing", &p.to_string_lossy(), &e)))?;
                n += 1;
            }
        }
        Ok(n)
    }

    fn exists(&self, name: &str) -> Result<bool, SinkError> {
        let conn = self.pool.get().map_err(sftp_err)?;
        Ok(conn.conn().sftp.stat(Path::new(&format!("{}/{name}", self.dir.trim_end_matches('/')))).is_ok())
    }

    fn describe(&self) -> String {
        crate::sftp::url(&self.pool.endpoint(), &self.dir)
    }
}
