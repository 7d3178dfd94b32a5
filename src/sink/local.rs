//! A local output folder. Files are written as `<name>.<random>.partial`
//! in the target folder, fsynced and closed when finished, and
//! hard-linked/renamed into place with no-clobber semantics.
//!
//! On Linux, while a file is written, the kernel is asked every
//! [`WRITEBACK_BYTES`] to start writing the bytes written since to disk
//! (`posix_fadvise(2)` with `POSIX_FADV_DONTNEED`, which on Linux starts
//! writeback without waiting), so that the fsync when the file is finished
//! waits for the last few MiB only, not for the whole file: on a 570 MB
//! output that fsync took 0.24–0.27 s of a 2 s run.

use std::io::{self, Write};
use std::path::PathBuf;

use super::{PendingOutput, Sink, SinkError};

/// Suffix of temporary output files.
pub const PARTIAL_SUFFIX: &str = ".partial";

/// Bytes written between two requests to start writeback: 8 MiB.
pub const WRITEBACK_BYTES: u64 = 8 << 20;

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
    state: LocalState,
    final_path: PathBuf,
}

/// A local output before and after [`PendingOutput::finish`].
enum LocalState {
    /// Being written.
    Open(io::BufWriter<Writeback>),
    /// Written and synced; only the temporary name is held (no descriptor).
    Finished(tempfile::TempPath),
    /// Between the two, or after a failed finish (the file is removed).
    Gone,
}

/// A temporary file that asks the kernel to start writing its pages to
/// disk every [`WRITEBACK_BYTES`] (see the module documentation).
struct Writeback {
    tmp: tempfile::NamedTempFile,
    /// Bytes written so far.
    written: u64,
    /// Bytes whose writeback was requested: `0..started`.
    started: u64,
}

impl Writeback {
    fn new(tmp: tempfile::NamedTempFile) -> Self {
        Self { tmp, written: 0, started: 0 }
    }

    /// Asks the kernel to start writing `started..written` to disk, without
    /// waiting. On Linux, `POSIX_FADV_DONTNEED` starts writeback of the
    /// range's dirty pages (`WB_SYNC_NONE`), then drops the range's pages
    /// that are already clean (harmless: nothing reads the output back; it
    /// is hashed as it is written). It never drops a dirty page or one under
    /// writeback, and does nothing on tmpfs. A hint: it reports no write
    /// error (the fsync at [`PendingOutput::finish`] does, on the same
    /// descriptor), so its result is ignored. Elsewhere it does nothing.
    fn start_writeback(&mut self) {
        #[cfg(target_os = "linux")]
        if let Some(len) = std::num::NonZeroU64::new(self.written - self.started) {
            let _ = rustix::fs::fadvise(self.tmp.as_file(), self.started, Some(len), rustix::fs::Advice::DontNeed);
        }
        self.started = self.written;
    }
}

impl Write for Writeback {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.tmp.write(buf)?;
        self.written += n as u64;
        if self.written - self.started >= WRITEBACK_BYTES {
            self.start_writeback();
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.tmp.flush()
    }
}

fn finished_error() -> io::Error {
    io::Error::other("the output was already finished")
}

impl Write for LocalPending {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.state {
            LocalState::Open(w) => w.write(buf),
            _ => Err(finished_error()),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.state {
            LocalState::Open(w) => w.flush(),
            _ => Ok(()),
        }
    }
}

impl LocalPending {
    fn io_err(&self, op: &'static str, source: io::Error) -> SinkError {
        SinkError::Io { op, target: self.final_path.display().to_string(), source }
    }

    /// Finishes the file if it is open (flush, fsync, close) and takes its
    /// temporary name.
    fn take_finished(&mut self) -> Result<tempfile::TempPath, SinkError> {
        match std::mem::replace(&mut self.state, LocalState::Gone) {
            LocalState::Open(w) => {
                let tmp = w.into_inner().map_err(|e| self.io_err("writing", e.into_error()))?.tmp;
                tmp.as_file().sync_all().map_err(|e| self.io_err("syncing", e))?;
                Ok(tmp.into_temp_path())
            }
            LocalState::Finished(path) => Ok(path),
            LocalState::Gone => Err(self.io_err("writing", finished_error())),
        }
    }
}

impl PendingOutput for LocalPending {
    fn finish(&mut self) -> Result<(), SinkError> {
        self.state = LocalState::Finished(self.take_finished()?);
        Ok(())
    }

    fn commit(mut self: Box<Self>) -> Result<String, SinkError> {
        let path = self.take_finished()?;
        let target = self.final_path.display().to_string();
        path.persist_noclobber(&self.final_path).map_err(|e| {
            if e.error.kind() == io::ErrorKind::AlreadyExists {
                SinkError::Exists(target.clone())
            } else {
                self.io_err("publishing", e.error)
            }
        })?;
        if let Some(dir) = self.final_path.parent() {
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
        let state = LocalState::Open(io::BufWriter::with_capacity(256 * 1024, Writeback::new(tmp)));
        Ok(Box::new(LocalPending { state, final_path }))
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

    /// Descriptors of this process open on files in `dir` (other tests'
    /// threads open files elsewhere).
    fn open_descriptors_in(dir: &std::path::Path) -> usize {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|target| target.starts_with(dir))
            .count()
    }

    /// A finished output holds no descriptor, refuses writes, and is still
    /// published by commit or removed by drop.
    #[test]
    fn finish_closes_the_file_and_keeps_it_unpublished() {
        let dir = tempfile::tempdir().unwrap();
        let sink = LocalSink::new(dir.path().to_owned());
        let mut outputs = Vec::new();
        for i in 0..50 {
            let mut p = sink.create(&format!("{i}.csv")).unwrap();
            p.write_all(format!("{i}\n").as_bytes()).unwrap();
            assert_eq!(open_descriptors_in(dir.path()), 1, "the open output");
            p.finish().unwrap();
            p.finish().unwrap();
            assert!(p.write_all(b"more").is_err());
            outputs.push(p);
        }
        assert_eq!(open_descriptors_in(dir.path()), 0, "50 finished outputs");
        assert!(!dir.path().join("0.csv").exists());
        let last = outputs.pop().unwrap();
        drop(last);
        for p in outputs {
            p.commit().unwrap();
        }
        assert_eq!(std::fs::read(dir.path().join("7.csv")).unwrap(), b"7\n");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 49, "{names:?}");
    }

    /// Writeback is requested for each full [`WRITEBACK_BYTES`] written,
    /// over contiguous ranges from the start, and the file keeps every
    /// byte.
    #[test]
    fn writeback_is_requested_every_writeback_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = tempfile::NamedTempFile::new_in(dir.path()).unwrap();
        let path = tmp.path().to_owned();
        let mut w = Writeback::new(tmp);
        let piece: Vec<u8> = (0..100_003u32).map(|i| (i % 251) as u8).collect();
        let mut expected = Vec::new();
        // The ends of the ranges requested so far (each range starts where
        // the one before ended, at 0 first).
        let mut ends = Vec::new();
        while expected.len() < 20 << 20 {
            w.write_all(&piece).unwrap();
            expected.extend_from_slice(&piece);
            if w.started != ends.last().copied().unwrap_or(0) {
                ends.push(w.started);
            }
        }
        assert_eq!(w.written, expected.len() as u64);
        assert_eq!(ends.len(), 2, "{ends:?}");
        assert!((WRITEBACK_BYTES..WRITEBACK_BYTES + piece.len() as u64).contains(&ends[0]), "{ends:?}");
        assert!((WRITEBACK_BYTES..WRITEBACK_BYTES + piece.len() as u64).contains(&(ends[1] - ends[0])), "{ends:?}");
        // The hint is accepted for a range of this file.
        #[cfg(target_os = "linux")]
        rustix::fs::fadvise(w.tmp.as_file(), 0, None, rustix::fs::Advice::DontNeed).unwrap();
        w.flush().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), expected);
    }

    /// An output of several [`WRITEBACK_BYTES`] written through the sink
    /// in uneven pieces is published whole.
    #[test]
    fn a_large_output_is_published_whole() {
        let dir = tempfile::tempdir().unwrap();
        let sink = LocalSink::new(dir.path().to_owned());
        let mut p = sink.create("big.csv").unwrap();
        let mut expected = Vec::new();
        let mut n = 0u32;
        while expected.len() < 3 * WRITEBACK_BYTES as usize + 12_345 {
            let piece: Vec<u8> = (0..(n % 7 + 1) * 70_001).map(|i| (i.wrapping_mul(n + 1) % 253) as u8).collect();
            p.write_all(&piece).unwrap();
            expected.extend_from_slice(&piece);
            n += 1;
        }
        p.finish().unwrap();
        p.commit().unwrap();
        assert_eq!(std::fs::read(dir.path().join("big.csv")).unwrap(), expected);
    }
}
