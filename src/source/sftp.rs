//! An inbox folder on an SFTP server. Files stream from the remote read
//! handle; nothing is stored locally.

use std::io::Read;
use std::path::Path;

use super::{variant, Entry, Source, SourceError};
use crate::sftp::{Pool, Pooled};

/// An SFTP folder source.
pub struct SftpSource<'a> {
    pool: &'a Pool,
    dir: String,
}

impl<'a> SftpSource<'a> {
    /// Inbox `dir` on the server behind `pool`.
    pub fn new(pool: &'a Pool, dir: String) -> Self {
        Self { pool, dir }
    }

    fn path(&self, name: &str) -> String {
        format!("{}/{}", self.dir.trim_end_matches('/'), name)
    }
}

/// Bytes asked of libssh2 per read call (bytes). libssh2 keeps up to four
/// times the asked size in flight as SFTP read requests (capped at 8 MiB), so
/// large calls keep the server busy while the engine parses; 256 KiB calls
/// left the pipe idle between them.
const READ_CALL_BYTES: usize = 2 * 1024 * 1024;

/// A remote file being read, capped at its listed size so that a read can
/// never wait for bytes that will not come.
struct RemoteReader<'a> {
    _conn: Pooled<'a>,
    file: std::io::BufReader<std::io::Take<ssh2::File>>,
}

impl Read for RemoteReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let r = self.file.read(buf);
        if r.is_err() {
            self._conn.mark_broken();
        }
        r
    }
}

pub(crate) fn ensure_dir(conn: &mut Pooled<'_>, dir: &str) -> Result<(), SourceError> {
    let sftp = &conn.conn().sftp;
    if sftp.stat(Path::new(dir)).is_ok() {
        return Ok(());
    }
    // Keep relative folders relative (to the login directory).
    let mut acc = String::new();
    for part in dir.split('/').filter(|p| !p.is_empty()) {
        if !acc.is_empty() || dir.starts_with('/') {
            acc.push('/');
        }
        acc.push_str(part);
        let p = Path::new(&acc);
        if conn.conn().sftp.stat(p).is_err() {
            if let Err(e) = conn.conn().sftp.mkdir(p, 0o750) {
                if conn.conn().sftp.stat(p).is_err() {
                    return Err(conn.fail("creating folder", &acc, &e).into());
                }
            }
        }
    }
    Ok(())
}

impl Source for SftpSource<'_> {
    fn list(&self) -> Result<Vec<Entry>, SourceError> {
        let mut conn = self.pool.get()?;
        let entries = conn.conn().sftp.readdir(Path::new(&self.dir));
        let entries = entries.map_err(|e| conn.fail("listing", &self.dir, &e))?;
        let mut out: Vec<Entry> = entries
            .into_iter()
            .filter_map(|(p, st)| {
                let name = p.file_name()?.to_string_lossy().into_owned();
                Some(Entry { name, size: st.size.unwrap_or(0), mtime: st.mtime.unwrap_or(0), regular: st.is_file() })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn open(&self, name: &str, size: u64) -> Result<Box<dyn Read + Send + '_>, SourceError> {
        let mut conn = self.pool.get()?;
        let path = self.path(name);
        let file = conn.conn().sftp.open(Path::new(&path));
        let file = file.map_err(|e| conn.fail("opening", &path, &e))?;
        Ok(Box::new(RemoteReader {
            _conn: conn,
            file: std::io::BufReader::with_capacity(READ_CALL_BYTES, file.take(size)),
        }))
    }

    fn move_to(&self, name: &str, folder: &str) -> Result<String, SourceError> {
        let mut conn = self.pool.get()?;
        ensure_dir(&mut conn, folder)?;
        let from = self.path(name);
        for n in 0..1000 {
            let target =
                format!("{}/{}", folder.trim_end_matches('/'), if n == 0 { name.to_owned() } else { variant(name, n) });
            if conn.conn().sftp.stat(Path::new(&target)).is_ok() {
                continue;
            }
            let r = conn.conn().sftp.rename(
                Path::new(&from),
                Path::new(&target),
                Some(ssh2::RenameFlags::ATOMIC | ssh2::RenameFlags::NATIVE),
            );
            match r {
                Ok(()) => return Ok(target),
                Err(e) => {
                    if conn.conn().sftp.stat(Path::new(&target)).is_ok() {
                        continue;
                    }
                    return Err(conn.fail("moving", &from, &e).into());
                }
            }
        }
        Err(crate::sftp::SftpError::Op {
            op: "moving",
            path: from,
            endpoint: self.pool.endpoint(),
            message: "no free name in the target folder".into(),
            transient: false,
        }
        .into())
    }

    fn write_text(&self, folder: &str, name: &str, text: &str) -> Result<(), SourceError> {
        let mut conn = self.pool.get()?;
        ensure_dir(&mut conn, folder)?;
        let target = format!("{}/{}", folder.trim_end_matches('/'), name);
        let tmp = format!("{target}.{}.partial", crate::crypto::keys::DekId::generate());
        let mut f = conn.conn().sftp.create(Path::new(&tmp)).map_err(|e| conn.fail("creating", &tmp, &e))?;
        std::io::Write::write_all(&mut f, text.as_bytes()).map_err(|e| {
            conn.mark_broken();
            crate::sftp::SftpError::Op {
                op: "writing",
                path: tmp.clone(),
                endpoint: self.pool.endpoint(),
                message: e.to_string(),
                transient: true,
            }
        })?;
        drop(f);
        let _ = conn.conn().sftp.unlink(Path::new(&target));
        let r = conn.conn().sftp.rename(Path::new(&tmp), Path::new(&target), None);
        r.map_err(|e| conn.fail("renaming", &tmp, &e))?;
        Ok(())
    }

    fn describe(&self, name: &str) -> String {
        crate::sftp::url(&self.pool.endpoint(), &self.path(name))
    }
}
