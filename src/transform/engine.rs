//! The streaming engine: reads CSV records in chunks, transforms chunks on
//! the rayon pool, and writes them back in input order.
//!
//! Memory is bounded by `max_in_flight` chunks of `chunk_rows` records each,
//! whatever the file size. The calling thread parses and writes; the pool
//! transforms. Input and output are hashed (SHA-256) as they stream.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use csv::ByteRecord;
use sha2::{Digest, Sha256};

use super::{ChunkOutput, HeaderError, Plan, Reject, Transformer};
use crate::crypto::aead::{DataKey, MAX_VALUES_PER_DEK};
use crate::crypto::prf::Pseudonymizer;
use crate::keystore::DekRecord;
use crate::settings::Schema;

/// Where fresh data keys come from (the keystore in production).
pub trait DataKeySource: Sync {
    /// Makes, wraps and durably records a fresh data key.
    ///
    /// # Errors
    /// Whatever storing the record fails with, as text.
    fn fresh_key(&self) -> Result<(DataKey, DekRecord), String>;
}

/// Progress of one file, in bytes of input and rows.
pub trait FileProgress: Sync {
    /// Called after each written chunk with cumulative input bytes and rows.
    fn update(&self, bytes: u64, rows: u64);
}

impl FileProgress for () {
    fn update(&self, _: u64, _: u64) {}
}

/// Tuning knobs.
#[derive(Clone, Copy, Debug)]
pub struct EngineOptions {
    /// Records per chunk (default 1,000: balances 2 cores better than 10,000).
    pub chunk_rows: usize,
    /// Chunks read but not yet written (bounds memory).
    pub max_in_flight: usize,
    /// Values a data key may encrypt before a new one is rolled.
    pub values_per_dek: u64,
    /// Everything on the calling thread (`--jobs 1`).
    pub sequential: bool,
    /// Stop after this many data rows (`audit --sample`).
    pub max_rows: Option<u64>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            chunk_rows: 1000,
            max_in_flight: 16,
            values_per_dek: MAX_VALUES_PER_DEK,
            sequential: false,
            max_rows: None,
        }
    }
}

/// Stream failures (the file fails; nothing is published).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The header does not fit the schema.
    #[error("header (line 1): {0}")]
    Header(#[from] HeaderError),
    /// Reading the input failed.
    #[error("reading input: {0}")]
    Read(io::Error),
    /// Writing the output failed.
    #[error("writing output: {0}")]
    Write(io::Error),
    /// The output could not be created.
    #[error("{0}")]
    Open(String),
    /// A data key could not be stored.
    #[error("data key: {0}")]
    Key(String),
    /// Interrupted by a signal.
    #[error("interrupted")]
    Interrupted,
}

/// What streaming one file produced.
#[derive(Debug, Default)]
pub struct StreamOutcome {
    /// Data rows read (header excluded).
    pub rows_read: u64,
    /// Rows written.
    pub rows_written: u64,
    /// Rejected rows in input order.
    pub rejects: Vec<Reject>,
    /// Values encrypted.
    pub values_encrypted: u64,
    /// Data keys used, in order.
    pub data_keys: Vec<DekRecord>,
    /// SHA-256 of the input bytes, lowercase hex.
    pub input_sha256: String,
    /// Input bytes.
    pub input_bytes: u64,
    /// SHA-256 of the output bytes, lowercase hex.
    pub output_sha256: String,
    /// Output bytes.
    pub output_bytes: u64,
    /// Output header.
    pub columns: Vec<String>,
    /// Per audited `keep` column: its input name and what was seen in it.
    pub scanners: Vec<(String, crate::audit::scan::ColumnScanner)>,
}

/// A reader that hashes and counts what passes through.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        Self { inner, hasher: Sha256::new(), bytes: 0 }
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// A writer that hashes and counts what passes through.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Self { inner, hasher: Sha256::new(), bytes: 0 }
    }
    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct Shared {
    bytes: std::sync::atomic::AtomicU64,
}

/// Everything the engine needs about a file besides its bytes.
pub struct FileJob<'a> {
    /// `[schema]`.
    pub schema: &'a Schema,
    /// Input delimiter.
    pub delimiter: u8,
    /// Pseudonym function.
    pub pseudonymizer: &'a Pseudonymizer,
    /// Cipher of `encrypt-deterministic` columns (required when the schema has one).
    pub deterministic: Option<&'a crate::crypto::siv::DeterministicCipher>,
    /// Data-key source.
    pub keys: &'a dyn DataKeySource,
    /// Pool for the transform.
    pub pool: &'a rayon::ThreadPool,
    /// Progress sink.
    pub progress: &'a dyn FileProgress,
    /// Set to stop early.
    pub cancel: &'a AtomicBool,
    /// Tuning.
    pub options: EngineOptions,
    /// Scan `keep` columns for unflagged PII, listing this many lines per finding.
    pub audit_lines: Option<usize>,
}

/// Streams `input` through the transform into `output`.
///
/// # Errors
/// [`EngineError`]; rows that fail are not errors but [`Reject`]s.
/// Once the header has passed the schema, the file's first data key is made
/// and `open_output` is called with its id (which names the output); no key
/// and no output exist for a file whose header is refused.
pub fn process_stream<W: Write + Send>(
    job: &FileJob<'_>,
    input: impl Read,
    open_output: impl FnOnce(&crate::crypto::keys::DekId) -> Result<W, String>,
) -> Result<(StreamOutcome, W), EngineError> {
    let shared = Arc::new(Shared { bytes: std::sync::atomic::AtomicU64::new(0) });
    let counted = CountingReader::new(HashingReader::new(input), shared.clone());
    let mut buffered = BufReader::with_capacity(256 * 1024, counted);
    // Strip a UTF-8 byte order mark.
    let mut bom = 0u64;
    {
        let head = buffered.fill_buf().map_err(EngineError::Read)?;
        if head.starts_with(&[0xEF, 0xBB, 0xBF]) {
            buffered.consume(3);
            bom = 3;
        }
    }
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(job.delimiter)
        .buffer_capacity(256 * 1024)
        .from_reader(buffered);
    let read_err = |e: csv::Error| match e.into_kind() {
        csv::ErrorKind::Io(e) => EngineError::Read(e),
        other => EngineError::Read(io::Error::other(format!("{other:?}"))),
    };

    let mut header = ByteRecord::new();
    if !rdr.read_byte_record(&mut header).map_err(read_err)? {
        return Err(HeaderError::Empty.into());
    }
    let header_start = header.position().map_or(0, |p| p.byte()) + bom;
    rdr.get_mut().get_mut().line_at(header_start);
    let plan = Plan::new(job.schema, &header)?;
    let columns: Vec<String> = plan.output_names().map(str::to_owned).collect();
    let encrypt_cols = plan.encrypt_columns() as u64;
    if let (Some(col), None) = (plan.deterministic_columns().next(), job.deterministic) {
        return Err(EngineError::Key(format!(
            "column {col:?} is encrypt-deterministic but the keyring has no deterministic_key; add one with `piigate keys add-deterministic-key`"
        )));
    }
    let mut transformer =
        Transformer::new(plan, job.pseudonymizer.clone(), job.schema).with_deterministic(job.deterministic.cloned());
    if let Some(lines) = job.audit_lines {
        transformer = transformer.with_audit(lines);
    }
    let scanned: Vec<String> = transformer.scanned_columns().map(str::to_owned).collect();
    let transformer = Arc::new(transformer);

    let (first_key, first_rec) = job.keys.fresh_key().map_err(EngineError::Key)?;
    let output = open_output(first_key.id()).map_err(EngineError::Open)?;
    let mut out = HashingWriter::new(io::BufWriter::with_capacity(256 * 1024, output));
    {
        let mut w = csv::WriterBuilder::new().from_writer(&mut out);
        w.write_record(&columns).map_err(|e| EngineError::Write(io::Error::other(e)))?;
        w.flush().map_err(EngineError::Write)?;
    }

    let mut outcome = StreamOutcome { columns, ..Default::default() };
    let mut scanners: Vec<Option<crate::audit::scan::ColumnScanner>> = scanned.iter().map(|_| None).collect();
    let mut key = Arc::new(first_key);
    outcome.data_keys.push(first_rec);
    let mut key_values = 0u64;

    let opts = job.options;
    let (tx, rx) = crossbeam_channel::unbounded::<(u64, ChunkOutput, Vec<ByteRecord>)>();
    let mut free: Vec<Vec<ByteRecord>> = (0..opts.max_in_flight.max(1)).map(|_| Vec::new()).collect();
    let mut pending: BTreeMap<u64, (ChunkOutput, Vec<ByteRecord>)> = BTreeMap::new();
    let (mut next_read, mut next_write, mut in_flight) = (0u64, 0u64, 0usize);
    let mut eof = false;

    // Output bytes go to a writer thread (write syscalls and the output hash
    // run beside parsing); with `sequential` everything stays on this thread.
    let (wtx, wrx) = crossbeam_channel::bounded::<Vec<u8>>(opts.max_in_flight.max(1));
    let write_all = |out: &mut HashingWriter<io::BufWriter<W>>, rx: crossbeam_channel::Receiver<Vec<u8>>| {
        for bytes in rx {
            out.write_all(&bytes)?;
        }
        out.flush()
    };
    let mut out_slot = Some(out);
    let result: Result<(), EngineError> = std::thread::scope(|scope| {
        let writer = if opts.sequential {
            None
        } else {
            let mut out = out_slot.take().expect("present");
            let rx = wrx.clone();
            Some(scope.spawn(move || write_all(&mut out, rx).map(|_| out)))
        };
        drop(wrx);
        let mut emit = |bytes: Vec<u8>| -> Result<(), EngineError> {
            match out_slot.as_mut() {
                Some(out) => out.write_all(&bytes).map_err(EngineError::Write),
                None => wtx.send(bytes).map_err(|_| EngineError::Write(io::Error::other("output writer stopped"))),
            }
        };
        let run = (|| -> Result<(), EngineError> {
            loop {
                if job.cancel.load(Ordering::Relaxed) {
                    return Err(EngineError::Interrupted);
                }
                while !eof {
                    if opts.max_rows.is_some_and(|m| next_read * opts.chunk_rows as u64 >= m) {
                        eof = true;
                        break;
                    }
                    let Some(mut chunk) = free.pop() else { break };
                    let mut n = 0;
                    let limit = match opts.max_rows {
                        Some(m) => (m.saturating_sub(next_read * opts.chunk_rows as u64) as usize).min(opts.chunk_rows),
                        None => opts.chunk_rows,
                    };
                    while n < limit {
                        if chunk.len() == n {
                            chunk.push(ByteRecord::new());
                        }
                        if !rdr.read_byte_record(&mut chunk[n]).map_err(read_err)? {
                            eof = true;
                            break;
                        }
                        // Byte offsets are relative to what the csv reader saw,
                        // which starts after a stripped BOM.
                        let start = chunk[n].position().map_or(0, |p| p.byte()) + bom;
                        let line = rdr.get_mut().get_mut().line_at(start);
                        let mut pos = csv::Position::new();
                        pos.set_line(line).set_byte(start);
                        chunk[n].set_position(Some(pos));
                        n += 1;
                    }
                    chunk.truncate(n);
                    if n == 0 {
                        free.push(chunk);
                        break;
                    }
                    let upper = n as u64 * encrypt_cols;
                    if encrypt_cols > 0 && key_values + upper > opts.values_per_dek {
                        let (k, rec) = job.keys.fresh_key().map_err(EngineError::Key)?;
                        key = Arc::new(k);
                        outcome.data_keys.push(rec);
                        key_values = 0;
                    }
                    key_values += upper;
                    if opts.sequential {
                        let result = transformer.transform_chunk(&chunk, &key);
                        pending.insert(next_read, (result, chunk));
                    } else {
                        let (t, k, tx, seq) = (transformer.clone(), key.clone(), tx.clone(), next_read);
                        job.pool.spawn(move || {
                            let result = t.transform_chunk(&chunk, &k);
                            let _ = tx.send((seq, result, chunk));
                        });
                        in_flight += 1;
                    }
                    next_read += 1;
                }
                if in_flight == 0 && pending.is_empty() {
                    return Ok(());
                }
                if in_flight > 0 {
                    // Wait for at least one result, then take whatever else is ready.
                    let first =
                        rx.recv().map_err(|_| EngineError::Write(io::Error::other("transform worker vanished")))?;
                    in_flight -= 1;
                    pending.insert(first.0, (first.1, first.2));
                    while let Ok((seq, res, chunk)) = rx.try_recv() {
                        in_flight -= 1;
                        pending.insert(seq, (res, chunk));
                    }
                }
                while let Some((res, chunk)) = pending.remove(&next_write) {
                    outcome.rows_read += res.rows;
                    outcome.rows_written += res.written;
                    outcome.values_encrypted += res.encrypted;
                    outcome.rejects.extend(res.rejects);
                    for (acc, sc) in scanners.iter_mut().zip(res.scanners) {
                        match acc {
                            Some(a) => a.merge(sc),
                            None => *acc = Some(sc),
                        }
                    }
                    emit(res.bytes)?;
                    free.push(chunk);
                    next_write += 1;
                    job.progress.update(shared.bytes.load(Ordering::Relaxed), outcome.rows_read);
                }
            }
        })();
        drop(wtx);
        if let Some(w) = writer {
            match w.join() {
                Ok(Ok(out)) => out_slot = Some(out),
                Ok(Err(e)) => return Err(EngineError::Write(e)),
                Err(_) => return Err(EngineError::Write(io::Error::other("output writer panicked"))),
            }
        }
        run
    });
    result?;
    outcome.scanners = scanned.into_iter().zip(scanners).filter_map(|(n, s)| s.map(|s| (n, s))).collect();
    let mut out = out_slot.expect("writer returned the output");
    out.flush().map_err(EngineError::Write)?;
    outcome.output_bytes = out.bytes;
    outcome.output_sha256 = data_encoding::HEXLOWER.encode(&out.hasher.finalize());
    let output = out.inner.into_inner().map_err(|e| EngineError::Write(e.into_error()))?;
    // Drain whatever the CSV reader did not consume so the hash covers the whole input.
    let mut counted = rdr.into_inner().into_inner();
    io::copy(&mut counted, &mut io::sink()).map_err(EngineError::Read)?;
    outcome.input_bytes = counted.inner.bytes;
    outcome.input_sha256 = data_encoding::HEXLOWER.encode(&counted.inner.hasher.finalize());
    job.progress.update(outcome.input_bytes, outcome.rows_read);
    Ok((outcome, output))
}

/// Counts bytes for progress and records where line breaks are, so that
/// each record's physical starting line can be computed exactly (the csv
/// crate's own line count drifts on CRLF input).
struct CountingReader<R> {
    inner: HashingReader<R>,
    shared: Arc<Shared>,
    /// Offsets of '\r' and '\n' bytes read but not yet passed by a record,
    /// with whether each is a '\n'.
    breaks: std::collections::VecDeque<(u64, bool)>,
    offset: u64,
    /// '\n' bytes before the last record start.
    newlines: u64,
}

impl<R> CountingReader<R> {
    fn new(inner: HashingReader<R>, shared: Arc<Shared>) -> Self {
        Self { inner, shared, breaks: std::collections::VecDeque::new(), offset: 0, newlines: 0 }
    }

    /// The 1-based physical line of a record the csv parser places at byte
    /// `start`. The parser may place a record on the line break (or blank
    /// lines) before its first byte; a record never starts with a line
    /// break, so those are skipped first.
    fn line_at(&mut self, start: u64) -> u64 {
        let mut p = start;
        while let Some(&(off, nl)) = self.breaks.front() {
            if off < p {
                self.newlines += u64::from(nl);
                self.breaks.pop_front();
            } else if off == p {
                self.newlines += u64::from(nl);
                self.breaks.pop_front();
                p += 1;
            } else {
                break;
            }
        }
        self.newlines + 1
    }
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        for i in memchr::memchr2_iter(b'\r', b'\n', &buf[..n]) {
            self.breaks.push_back((self.offset + i as u64, buf[i] == b'\n'));
        }
        self.offset += n as u64;
        self.shared.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::aead;
    use crate::crypto::keys::{Dek, DekId, PseudonymKey};
    use crate::settings::Settings;
    use std::sync::Mutex;

    struct MemKeys(Mutex<Vec<(DekId, Dek)>>);

    impl DataKeySource for MemKeys {
        fn fresh_key(&self) -> Result<(DataKey, DekRecord), String> {
            let (id, dek) = (DekId::generate(), Dek::generate());
            self.0.lock().unwrap().push((id, dek.clone()));
            let rec = DekRecord {
                dek_id: id.to_string(),
                kek_id: "k0".into(),
                nonce: String::new(),
                wrapped: String::new(),
                created: String::new(),
            };
            Ok((DataKey::new(id, &dek), rec))
        }
    }

    const CFG: &str = r#"
[keys]
keyring = "k.toml"
[schema]
[[schema.columns]]
name = "email"
action = "encrypt"
[[schema.columns]]
name = "n"
"#;

    /// A data key encrypts at most `values_per_dek` values; a longer file rolls
    /// over to fresh keys as it goes, and every token names the key that
    /// encrypted it.
    #[test]
    fn data_keys_roll_over_at_the_value_limit() {
        for sequential in [false, true] {
            roll_over(sequential);
        }
    }

    fn roll_over(sequential: bool) {
        let settings = Settings::from_toml(std::path::Path::new("/x/p.toml"), CFG, None).unwrap();
        let mut input = String::from("email,n\n");
        for i in 0..2500 {
            input.push_str(&format!("user{i}@example.test,{i}\n"));
        }
        let keys = MemKeys(Mutex::new(Vec::new()));
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let cancel = AtomicBool::new(false);
        let pseudonymizer = Pseudonymizer::new(&PseudonymKey::generate());
        let job = FileJob {
            schema: &settings.schema,
            delimiter: b',',
            pseudonymizer: &pseudonymizer,
            deterministic: None,
            keys: &keys,
            pool: &pool,
            progress: &(),
            cancel: &cancel,
            options: EngineOptions {
                chunk_rows: 100,
                max_in_flight: 4,
                values_per_dek: 1000,
                sequential,
                max_rows: None,
            },
            audit_lines: None,
        };
        let (outcome, out) = process_stream(&job, input.as_bytes(), |_| Ok(Vec::new())).unwrap();
        assert_eq!(outcome.rows_written, 2500);
        assert_eq!(outcome.data_keys.len(), 3, "1000 + 1000 + 500 values");
        let made = keys.0.lock().unwrap();
        let mut per_key = std::collections::HashMap::new();
        let mut r = csv::Reader::from_reader(&out[..]);
        for (i, rec) in r.records().enumerate() {
            let rec = rec.unwrap();
            let (id, payload) = aead::parse_token(rec[0].as_bytes()).unwrap();
            let (_, dek) = made.iter().find(|(k, _)| *k == id).unwrap();
            let plain = DataKey::new(id, dek).decrypt_payload(b"email", &payload).unwrap();
            assert_eq!(plain, format!("user{i}@example.test").as_bytes());
            assert_eq!(&rec[1], i.to_string());
            *per_key.entry(id).or_insert(0u64) += 1;
        }
        assert!(per_key.values().all(|&n| n <= 1000), "{per_key:?}");
    }
}
