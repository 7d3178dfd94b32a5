//! A local inbox folder.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use super::{variant, Entry, Source, SourceError};

/// A local folder source.
pub struct LocalSource {
    dir: PathBuf,
}

impl LocalSource {
    /// Inbox at `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }
}

fn io(op: &'static str, p: &Path, source: std::io::Error) -> SourceError {
    SourceError::Io { op, path: p.display().to_string(), source }
}

impl Source for LocalSource {
    fn list(&self) -> Result<Vec<Entry>, SourceError> {
        let rd = std::fs::read_dir(&self.dir).map_err(|e| io("listing", &self.dir, e))?;
        let mut out = Vec::new();
        for e in rd {
            let e = e.map_err(|e| io("listing", &self.dir, e))?;
            let meta = match std::fs::symlink_metadata(e.path()) {
                Ok(m) => m,
                Err(_) => continue,
            };
            let mtime = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_secs());
            out.push(Entry {
                name: e.file_name().to_string_lossy().into_owned(),
                size: meta.len(),
                mtime,
                regular: meta.file_type().is_file(),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn open(&self, name: &str, _size: u64) -> Result<Box<dyn Read + Send + '_>, SourceError> {
        let p = self.dir.join(name);
        let f = std::fs::File::open(&p).map_err(|e| io("opening", &p, e))?;
        Ok(Box::new(f))
    }

    fn move_to(&self, name: &str, folder: &str) -> Result<String, SourceError> {
        let dir = Path::new(folder);
        std::fs::create_dir_all(dir).map_err(|e| io("creating folder", dir, e))?;
        let from = self.dir.join(name);
        for n in 0..1000 {
            let target = dir.join(if n == 0 { name.to_owned() } else { variant(name, n) });
            // hard_link fails when the target exists: no clobbering.
            match std::fs::hard_link(&from, &target) {
                Ok(()) => {
                    std::fs::remove_file(&from).map_err(|e| io("removing", &from, e))?;
                    return Ok(target.display().to_string());
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(_) => {
                    // Another file system: fall back to rename when the target is free.
                    if target.exists() {
                        continue;
                    }
                    std::fs::rename(&from, &target).map_err(|e| io("moving", &from, e))?;
                    return Ok(target.display().to_string());
                }
            }
        }
        Err(io("moving", &from, std::io::Error::other("no free name in the target folder")))
    }

    fn write_text(&self, folder: &str, name: &str, text: &str) -> Result<(), SourceError> {
        let dir = Path::new(folder);
        std::fs::create_dir_all(dir).map_err(|e| io("creating folder", dir, e))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!("{name}."))
            .suffix(".partial")
            .tempfile_in(dir)
            .map_err(|e| io("writing in", dir, e))?;
        std::io::Write::write_all(&mut tmp, text.as_bytes()).map_err(|e| io("writing in", dir, e))?;
        tmp.persist(dir.join(name)).map_err(|e| io("writing in", dir, e.error))?;
        Ok(())
    }

    fn describe(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}
