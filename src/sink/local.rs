//! A local output folder. Files are written as `<name>.<random>.partial`
//! in the target folder, fsynced, and hard-linked/renamed into place with
//! no-clobber semantics.

use std::io::{self, Write};
use std::path::PathBuf;

use super::{PendingOutput, Sink, SinkError};

/// Suffix of temporary output files.
pub const PARTIAL_SUFFIX: &str = ".partial";

/// A local folder sink.
pub struct LocalSink {
    dir: PathBuf,
}

impl LocalSink {
    /// A sink writing into `dir` (created on first use).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }
}

struct LocalPending {
    tmp: tempfile::NamedTempFile,
    writer: io::BufWriter<std::fs::File>,
    final_path: PathBuf,
}

impl Write for LocalPending {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

impl PendingOutput for LocalPending {
    fn commit(self: Box<Self>) -> Result<String, SinkError> {
        let this = *self;
        let target = this.final_path.display().to_string();
        let io_err = |op, source| SinkError::Io { op, target: target.clone(), source };
        let file = this.writer.into_inner().map_err(|e| io_err("writing", e.into_error()))?;
        file.sync_all().map_err(|e| io_err("syncing", e))?;
        drop(file);
        this.tmp.persist_noclobber(&this.final_path).map_err(|e| {
            if e.error.kind() == io::ErrorKind::AlreadyExists {
                SinkError::Exists(target.clone())
            } else {
                io_err("publishing", e.error)
            }
        })?;
        if let Some(dir) = this.final_path.parent() {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(target)
    }
}

impl Sink for LocalSink {
    fn create(&self, name: &str) -> Result<Box<dyn PendingOutput + '_>, SinkError> {
        let io_err = |op, source| SinkError::Io { op, target: self.dir.display().to_string(), source };
        std::fs::create_dir_all(&self.dir).map_err(|e| io_err("creating folder", e))?;
        let final_path = self.dir.join(name);
        if final_path.exists() {
            return Err(SinkError::Exists(final_path.display().to_string()));
        }
        let tmp = tempfile::Builder::new()
            .prefix(&format!("{name}."))
            .suffix(PARTIAL_SUFFIX)
            // Readable by the group (an uploader account), like SFTP outputs.
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o640))
            .tempfile_in(&self.dir)
            .map_err(|e| io_err("creating temporary file in", e))?;
        let file = tmp.reopen().map_err(|e| io_err("opening temporary file in", e))?;
        Ok(Box::new(LocalPending { tmp, writer: io::BufWriter::with_capacity(256 * 1024, file), final_path }))
    }

    fn exists(&self, name: &str) -> Result<bool, SinkError> {
        Ok(self.dir.join(name).exists())
    }

    fn remove_partials(&self) -> Result<usize, SinkError> {
        let io_err = |source| SinkError::Io { op: "cleaning", target: self.dir.display().to_string(), source };
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_err(e)),
        };
        let mut n = 0;
        for e in rd {
            let e = e.map_err(io_err)?;
            if e.file_name().to_string_lossy().ends_with(PARTIAL_SUFFIX) && e.file_type().map_err(io_err)?.is_file() {
                std::fs::remove_file(e.path()).map_err(io_err)?;
                n += 1;
            }
        }
        Ok(n)
    }

    fn describe(&self) -> String {
        self.dir.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_publishes_and_drop_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let sink = LocalSink::new(dir.path().join("out"));
        let mut p = sink.create("a.csv").unwrap();
        p.write_all(b"x\n").unwrap();
        p.commit().unwrap();
        assert_eq!(std::fs::read(dir.path().join("out/a.csv")).unwrap(), b"x\n");
        let mut p = sink.create("b.csv").unwrap();
        p.write_all(b"y\n").unwrap();
        drop(p);
        let names: Vec<_> =
            std::fs::read_dir(dir.path().join("out")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(matches!(sink.create("a.csv"), Err(SinkError::Exists(_))));
    }
}
