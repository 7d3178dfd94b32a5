//! An outbox folder on an SFTP server. Each output is written as
//! `<name>.<random>.partial`, closed and its remote size checked against
//! the bytes sent when finished (its connection then goes back to the
//! pool), and renamed into place with SSH_FXP_RENAME, which OpenSSH
//! performs as link + unlink and so never replaces an existing file. An
//! output dropped unpublished is removed on an idle connection, or soon
//! after on the sink's next one.

use std::io::{self, Write};
use std::path::Path;
use std::sync::Mutex;

use super::local::PARTIAL_SUFFIX;
use super::{PendingOutput, Sink, SinkError};
use crate::sftp::{Pool, Pooled};

/// An SFTP folder sink.
pub struct SftpSink<'a> {
    pool: &'a Pool,
    dir: String,
    /// Temporary names of dropped outputs that could not be removed at
    /// once (no idle connection, or a broken one): removed when the next
    /// output is created, by [`Sink::remove_partials`], or when the sink is
    /// dropped (on an idle connection).
    orphans: Mutex<Vec<String>>,
}

impl<'a> SftpSink<'a> {
    /// Outbox `dir` on the server behind `pool`.
    pub fn new(pool: &'a Pool, dir: String) -> Self {
        Self { pool, dir, orphans: Mutex::new(Vec::new()) }
    }

    /// Removes the orphaned temporary outputs on `conn`. A name that is
    /// gone already is forgotten; so is one the server refuses to remove
    /// (the next pass's [`Sink::remove_partials`] tries again). When the
    /// connection breaks, the names left wait for the next connection.
    fn remove_orphans(&self, conn: &mut Pooled<'_>) {
        let mut orphans = std::mem::take(&mut *self.orphans.lock().unwrap_or_else(|e| e.into_inner()));
        while let Some(tmp) = orphans.pop() {
            let Err(e) = conn.conn().sftp.unlink(Path::new(&tmp)) else { continue };
            if e.code() == ssh2::ErrorCode::SFTP(2) {
                continue; // no such file
            }
            let err = conn.fail("removing", &tmp, &e);
            if conn.is_broken() {
                orphans.push(tmp);
                tracing::debug!("{err}; {} partial output(s) left for a later connection", orphans.len());
                self.orphans.lock().unwrap_or_else(|e| e.into_inner()).append(&mut orphans);
                return;
            }
            tracing::debug!("{err}; left for the next pass");
        }
    }
}

impl Drop for SftpSink<'_> {
    /// Removes what is left of dropped outputs on an idle connection; never
    /// connects (a failed server would hold the exit up by the connect
    /// timeout), so the next run's or pass's [`Sink::remove_partials`]
    /// removes what it cannot.
    fn drop(&mut self) {
        let left = self.orphans.get_mut().map_or(0, |o| o.len());
        if left == 0 {
            return;
        }
        match self.pool.idle() {
            Some(mut conn) => self.remove_orphans(&mut conn),
            None => tracing::debug!("{left} partial output(s) of failed files left for the next pass"),
        }
    }
}

fn sftp_err(e: crate::sftp::SftpError) -> SinkError {
    SinkError::Io { op: "SFTP", target: String::new(), source: io::Error::other(e.to_string()) }
}

struct SftpPending<'a> {
    pool: &'a Pool,
    /// The sink's list of outputs left to remove.
    orphans: &'a Mutex<Vec<String>>,
    /// The connection the file is written on; given back to the pool when
    /// the file is finished, and taken again (any idle one) to publish it.
    conn: Option<Pooled<'a>>,
    file: Option<ssh2::File>,
    tmp: String,
    target: String,
    written: u64,
    committed: bool,
    endpoint: String,
}

impl<'a> SftpPending<'a> {
    fn io_err(&self, op: &'static str, source: io::Error) -> SinkError {
        SinkError::Io { op, target: crate::sftp::url(&self.endpoint, &self.target), source }
    }

    /// The connection held while writing, else one from the pool (`op`
    /// names the step in the error when none can be had).
    fn conn(&mut self, op: &'static str) -> Result<&mut Pooled<'a>, SinkError> {
        if self.conn.is_none() {
            match self.pool.get() {
                Ok(c) => self.conn = Some(c),
                Err(e) => return Err(self.io_err(op, io::Error::other(e.to_string()))),
            }
        }
        Ok(self.conn.as_mut().expect("just set"))
    }

    /// Marks the connection the file is written on broken, if it holds one.
    fn mark_broken(&mut self) {
        if let Some(c) = self.conn.as_mut() {
            c.mark_broken();
        }
    }

    /// Maps an ssh2 error of `op` on the temporary file, marking the
    /// connection broken when the error is a connection-level one.
    fn fail(&mut self, op: &'static str, e: &ssh2::Error) -> SinkError {
        let tmp = self.tmp.clone();
        let message = match self.conn.as_mut() {
            Some(c) => c.fail(op, &tmp, e).to_string(),
            None => e.to_string(),
        };
        self.io_err(op, io::Error::other(message))
    }
}

impl Write for SftpPending<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let f = self.file.as_mut().ok_or_else(|| io::Error::other("the output was already finished"))?;
        match f.write(buf) {
            Ok(n) => {
                self.written += n as u64;
                Ok(n)
            }
            Err(e) => {
                self.mark_broken();
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
    fn finish(&mut self) -> Result<(), SinkError> {
        let Some(mut f) = self.file.take() else { return Ok(()) };
        if let Err(e) = f.flush() {
            self.mark_broken();
            return Err(self.io_err("writing", e));
        }
        // fsync@openssh.com where offered; older servers lack it.
        let _ = f.fsync();
        if let Err(e) = f.close() {
            return Err(self.fail("closing", &e));
        }
        let tmp = self.tmp.clone();
        let st = match self.conn("checking")?.conn().sftp.stat(Path::new(&tmp)) {
            Ok(st) => st,
            Err(e) => return Err(self.fail("checking", &e)),
        };
        if st.size != Some(self.written) {
            return Err(self.io_err(
                "checking",
                io::Error::other(format!("remote size {:?} differs from the {} bytes sent", st.size, self.written)),
            ));
        }
        // The next part, or another file, may write on this connection.
        self.conn = None;
        Ok(())
    }

    fn commit(mut self: Box<Self>) -> Result<String, SinkError> {
        self.finish()?;
        let (tmp, target) = (self.tmp.clone(), self.target.clone());
        let url = crate::sftp::url(&self.endpoint, &target);
        let conn = self.conn("publishing")?;
        let r = conn.conn().sftp.rename(
            Path::new(&tmp),
            Path::new(&target),
            Some(ssh2::RenameFlags::ATOMIC | ssh2::RenameFlags::NATIVE),
        );
        if let Err(e) = r {
            if conn.conn().sftp.stat(Path::new(&target)).is_ok() {
                return Err(SinkError::Exists(url));
            }
            return Err(self.fail("publishing", &e));
        }
        self.committed = true;
        Ok(url)
    }
}

impl Drop for SftpPending<'_> {
    /// Removes an unpublished output: on its own connection while it is
    /// being written, else on an idle one. It never connects here (a server
    /// that just failed would make every dropped part wait for the connect
    /// timeout): without an idle connection the name goes to the sink's
    /// orphans, removed on the sink's next connection or when it is dropped.
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        self.file.take();
        if self.conn.is_none() {
            self.conn = self.pool.idle();
        }
        let tmp = self.tmp.clone();
        let removed = match self.conn.as_mut() {
            // A broken connection could only wait for its timeout.
            Some(c) if c.is_broken() => false,
            Some(c) => match c.conn().sftp.unlink(Path::new(&tmp)) {
                Ok(()) => true,
                Err(e) => {
                    c.fail("removing", &tmp, &e);
                    false
                }
            },
            None => false,
        };
        if !removed {
            self.orphans.lock().unwrap_or_else(|e| e.into_inner()).push(tmp);
        }
    }
}

impl Sink for SftpSink<'_> {
    fn create(&self, name: &str) -> Result<Box<dyn PendingOutput + '_>, SinkError> {
        let target = format!("{}/{}", self.dir.trim_end_matches('/'), name);
        let connect = || {
            self.pool.get().map_err(|e| SinkError::Io {
                op: "creating",
                target: crate::sftp::url(&self.pool.endpoint(), &target),
                source: io::Error::other(e.to_string()),
            })
        };
        let mut conn = connect()?;
        self.remove_orphans(&mut conn);
        if conn.is_broken() {
            drop(conn);
            conn = connect()?;
        }
        crate::source::sftp::ensure_dir(&mut conn, &self.dir).map_err(|e| SinkError::Io {
            op: "creating folder",
            target: self.dir.clone(),
            source: io::Error::other(e.to_string()),
        })?;
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
        Ok(Box::new(SftpPending {
            pool: self.pool,
            orphans: &self.orphans,
            conn: Some(conn),
            file: Some(f),
            tmp,
            target,
            written: 0,
            committed: false,
            endpoint,
        }))
    }

    fn remove_partials(&self) -> Result<usize, SinkError> {
        let mut conn = self.pool.get().map_err(sftp_err)?;
        // Outputs of failed files first: not counted as left by an
        // interrupted run.
        self.remove_orphans(&mut conn);
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
