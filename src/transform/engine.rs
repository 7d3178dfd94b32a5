//! The streaming engine: reads CSV records in chunks, transforms chunks on
//! the rayon pool, and writes them back in input order.
//!
//! Memory is bounded by `max_in_flight` chunks of `chunk_rows` records each
//! being read or transformed, as many transformed chunks queued for the
//! output writer, and a bounded pool of spent output buffers, whatever the
//! file size. The calling thread parses and places chunks in order, the pool
//! transforms, and a writer thread writes (with `sequential`, the calling
//! thread does everything). Input and output are hashed (SHA-256) as they
//! stream.

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
    /// Chunks read but not yet written, and transformed chunks queued for
    /// the output writer (bounds memory; default 8: 16 gave no more speed on
    /// 2 cores, locally or over SFTP; see docs/PERFORMANCE.md).
    pub max_in_flight: usize,
    /// Values a data key may encrypt before a new one is rolled.
    pub values_per_dek: u64,
    /// Everything on the calling thread (`--jobs 1`).
    pub sequential: bool,
    /// Stop after this many data rows (`audit --sample`).
    pub max_rows: Option<u64>,
    /// Cut the output into parts of at most this many bytes each, header
    /// included (`[sink] max_file_bytes`); `None`: one output.
    pub max_part_bytes: Option<u64>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            chunk_rows: 1000,
            max_in_flight: 8,
            values_per_dek: MAX_VALUES_PER_DEK,
            sequential: false,
            max_rows: None,
            max_part_bytes: None,
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
    /// One output row (with the header) is larger than a part may be.
    #[error(
        "line {line}: the output row with the header is {bytes} bytes, more than the {limit} bytes a part may hold; raise [sink] max_file_bytes"
    )]
    RowTooLarge {
        /// 1-based input line of the row.
        line: u64,
        /// Bytes of the header and that row.
        bytes: u64,
        /// The part limit in bytes.
        limit: u64,
    },
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
    /// Per-person data keys (`[keys] dek_scope = "identity"`): each row's
    /// `encrypt` columns are sealed under its person's key; the file's own
    /// data key then only names the output.
    pub persons: Option<Arc<dyn super::PersonKeySource>>,
}

/// Where one output part's bytes go.
///
/// The engine holds every part of a file until the file is done, since
/// none may be published before all are written; [`OutputPart::end`] is
/// called once, after a part's last byte, so that the destination can let
/// go of what writing needed (a file descriptor, a connection, a thread)
/// meanwhile.
pub trait OutputPart: Write + Send {
    /// The part is complete: flush and release what writing needed.
    ///
    /// # Errors
    /// I/O errors of the flush; the file then fails.
    fn end(&mut self) -> io::Result<()>;
}

impl OutputPart for Box<dyn crate::sink::PendingOutput + '_> {
    fn end(&mut self) -> io::Result<()> {
        self.finish().map_err(io::Error::other)
    }
}

impl OutputPart for Vec<u8> {
    fn end(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl OutputPart for io::Sink {
    fn end(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One output part as the engine finished it: the writer `open_output`
/// returned (ended), and what went into it.
pub struct PartOutput<W> {
    /// The part's writer, ended ([`OutputPart::end`]), ready to be committed.
    pub output: W,
    /// 1-based part number.
    pub part: usize,
    /// Data rows in this part.
    pub rows: u64,
    /// Bytes written, header included.
    pub bytes: u64,
    /// SHA-256 of the bytes written, lowercase hex.
    pub sha256: String,
    /// The data keys whose tokens are in this part, in order of first use
    /// (the part's own key first).
    pub data_keys: Vec<DekRecord>,
}

/// What the calling thread sends to the output writer.
enum Msg<W> {
    /// Bytes for the current part.
    Bytes(Vec<u8>),
    /// Finish the current part and continue in this one.
    Part(W),
}

/// Largest output buffer kept for reuse, in bytes of capacity: a chunk of
/// 1,000 rows of about 230 bytes makes about 0.6 MB of output; a buffer that
/// grew for a chunk of much longer rows is freed, not kept.
const MAX_REUSED_BUFFER: usize = 4 << 20;

/// Output buffers the writer has written, kept for later chunks' output so
/// that each chunk does not grow a fresh buffer (reallocations and
/// zero-filled pages). At most `max` buffers of at most
/// [`MAX_REUSED_BUFFER`] bytes each are kept; others are freed.
#[derive(Clone)]
struct SpentBuffers {
    tx: crossbeam_channel::Sender<Vec<u8>>,
    rx: crossbeam_channel::Receiver<Vec<u8>>,
}

impl SpentBuffers {
    fn new(max: usize) -> Self {
        let (tx, rx) = crossbeam_channel::bounded(max.max(1));
        Self { tx, rx }
    }

    /// Keeps `b` for reuse when the pool has room and `b` is not oversized;
    /// frees it otherwise. Never blocks.
    fn give(&self, b: Vec<u8>) {
        if b.capacity() <= MAX_REUSED_BUFFER {
            let _ = self.tx.try_send(b);
        }
    }

    /// A kept buffer (not cleared), or a new empty one.
    fn take(&self) -> Vec<u8> {
        self.rx.try_recv().unwrap_or_default()
    }
}

/// Owns the part being written and the finished ones (output writer side).
struct PartWriter<W: OutputPart> {
    current: Option<HashingWriter<io::BufWriter<W>>>,
    done: Vec<(W, u64, String)>,
    /// Where written buffers go, for later chunks' output.
    spent: SpentBuffers,
}

impl<W: OutputPart> PartWriter<W> {
    fn new(spent: SpentBuffers) -> Self {
        Self { current: None, done: Vec::new(), spent }
    }

    fn handle(&mut self, msg: Msg<W>) -> io::Result<()> {
        match msg {
            Msg::Bytes(b) => match self.current.as_mut() {
                Some(out) => {
                    out.write_all(&b)?;
                    self.spent.give(b);
                    Ok(())
                }
                None => Err(io::Error::other("no output part is open")),
            },
            Msg::Part(w) => {
                self.close_current()?;
                self.current = Some(HashingWriter::new(io::BufWriter::with_capacity(256 * 1024, w)));
                Ok(())
            }
        }
    }

    fn close_current(&mut self) -> io::Result<()> {
        if let Some(mut out) = self.current.take() {
            out.flush()?;
            let sha = data_encoding::HEXLOWER.encode(&out.hasher.finalize());
            let mut w = out.inner.into_inner().map_err(io::IntoInnerError::into_error)?;
            w.end()?;
            self.done.push((w, out.bytes, sha));
        }
        Ok(())
    }

    fn finish(mut self) -> io::Result<Vec<(W, u64, String)>> {
        self.close_current()?;
        Ok(self.done)
    }
}

/// Per-part bookkeeping on the calling thread.
struct PartMeta {
    rows: u64,
    data_keys: Vec<DekRecord>,
}

/// The data key in use, its value count, and the parts cut so far.
struct KeyState<'k> {
    source: &'k dyn DataKeySource,
    key: Arc<DataKey>,
    key_values: u64,
    values_per_dek: u64,
    records: Vec<DekRecord>,
    /// Index of the current part in `parts`.
    part: usize,
    /// Bytes sent to the current part, header included.
    part_bytes: u64,
    parts: Vec<PartMeta>,
}

impl KeyState<'_> {
    fn fresh(&mut self) -> Result<(), EngineError> {
        let (k, rec) = self.source.fresh_key().map_err(EngineError::Key)?;
        self.key = Arc::new(k);
        self.records.push(rec);
        self.key_values = 0;
        Ok(())
    }

    /// Reserves `values` encryptions under the current key, rolling over to
    /// a fresh key first when the limit would be passed.
    fn reserve(&mut self, values: u64) -> Result<(), EngineError> {
        if values > 0 && self.key_values + values > self.values_per_dek {
            self.fresh()?;
        }
        self.key_values += values;
        Ok(())
    }

    /// Notes that tokens of `key` went into the current part.
    fn used(&mut self, key: &DataKey) {
        let id = key.id().to_string();
        let meta = &mut self.parts[self.part];
        if meta.data_keys.iter().any(|r| r.dek_id == id) {
            return;
        }
        if let Some(rec) = self.records.iter().find(|r| r.dek_id == id) {
            meta.data_keys.push(rec.clone());
        }
    }
}

/// End offsets of each record in RFC 4180 `bytes` (as the transform wrote them).
fn record_ends(bytes: &[u8]) -> Vec<usize> {
    let mut rdr = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(bytes);
    let mut rec = ByteRecord::new();
    let mut starts = Vec::new();
    while let Ok(true) = rdr.read_byte_record(&mut rec) {
        starts.push(rec.position().map_or(0, |p| p.byte()) as usize);
    }
    let mut ends: Vec<usize> = starts.iter().skip(1).copied().collect();
    if !starts.is_empty() {
        ends.push(bytes.len());
    }
    ends
}

/// Streams `input` through the transform into one or more outputs.
///
/// Once the header has passed the schema, the file's first data key is made
/// and `open_output(1, dek_id)` is called (the key's id names the output);
/// no key and no output exist for a file whose header is refused. When
/// [`EngineOptions::max_part_bytes`] is set and the next row would pass it,
/// the current part ends at that row boundary and a new part begins with a
/// fresh data key, `open_output(part, dek_id)` and the header again; rows
/// already encrypted under the previous part's key for the new part are
/// encrypted again under the new one, so every part's tokens use its own
/// keys only.
///
/// # Errors
/// [`EngineError`]; rows that fail are not errors but [`Reject`]s.
pub fn process_stream<W: OutputPart>(
    job: &FileJob<'_>,
    input: impl Read,
    mut open_output: impl FnMut(usize, &crate::crypto::keys::DekId) -> Result<W, String>,
) -> Result<(StreamOutcome, Vec<PartOutput<W>>), EngineError> {
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
    let mut encrypt_cols = plan.encrypt_columns() as u64;
    if let (Some(col), None) = (plan.deterministic_columns().next(), job.deterministic) {
        return Err(EngineError::Key(format!(
            "column {col:?} is encrypt-deterministic but the keyring has no deterministic_key; add one with `piigate keys add-deterministic-key`"
        )));
    }
    let mut transformer = Transformer::new(plan, job.pseudonymizer.clone(), job.schema)
        .with_deterministic(job.deterministic.cloned())
        .with_person_keys(job.persons.clone());
    if transformer.per_person() {
        // Person keys carry the values; the file's key encrypts none.
        encrypt_cols = 0;
    }
    if let Some(lines) = job.audit_lines {
        transformer = transformer.with_audit(lines);
    }
    let scanned: Vec<String> = transformer.scanned_columns().map(str::to_owned).collect();
    let transformer = Arc::new(transformer);
    let header_bytes = {
        let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
        w.write_record(&columns).map_err(|e| EngineError::Write(io::Error::other(e)))?;
        w.into_inner().map_err(|e| EngineError::Write(e.into_error()))?
    };

    let opts = job.options;
    let limit = opts.max_part_bytes.unwrap_or(u64::MAX);
    let (first_key, first_rec) = job.keys.fresh_key().map_err(EngineError::Key)?;
    let mut ks = KeyState {
        source: job.keys,
        key: Arc::new(first_key),
        key_values: 0,
        values_per_dek: opts.values_per_dek,
        records: vec![first_rec.clone()],
        part: 0,
        part_bytes: header_bytes.len() as u64,
        parts: vec![PartMeta { rows: 0, data_keys: vec![first_rec] }],
    };
    let first_output = open_output(1, ks.key.id()).map_err(EngineError::Open)?;
    // Output buffers the writer is done with, for later chunks: as many as
    // can be in use at once (chunks in flight, queued, and being written).
    let spent = SpentBuffers::new(2 * opts.max_in_flight + 1);
    let mut part_writer = PartWriter::new(spent.clone());
    part_writer.handle(Msg::Part(first_output)).map_err(EngineError::Write)?;
    part_writer.handle(Msg::Bytes(header_bytes.clone())).map_err(EngineError::Write)?;

    let mut outcome = StreamOutcome { columns, ..Default::default() };
    let mut scanners: Vec<Option<crate::audit::scan::ColumnScanner>> = scanned.iter().map(|_| None).collect();

    type Done = (u64, ChunkOutput, Vec<ByteRecord>, usize, Arc<DataKey>);
    let (tx, rx) = crossbeam_channel::unbounded::<Done>();
    let mut free: Vec<Vec<ByteRecord>> = (0..opts.max_in_flight.max(1)).map(|_| Vec::new()).collect();
    let mut pending: BTreeMap<u64, (ChunkOutput, Vec<ByteRecord>, usize, Arc<DataKey>)> = BTreeMap::new();
    let (mut next_read, mut next_write, mut in_flight) = (0u64, 0u64, 0usize);
    let mut eof = false;

    // Output bytes go to a writer thread (write syscalls and the output hash
    // run beside parsing); with `sequential` everything stays on this thread.
    let (wtx, wrx) = crossbeam_channel::bounded::<Msg<W>>(opts.max_in_flight.max(1));
    let mut writer_slot = Some(part_writer);
    let result: Result<(), EngineError> = std::thread::scope(|scope| {
        let writer = if opts.sequential {
            None
        } else {
            let mut pw = writer_slot.take().expect("present");
            let rx = wrx.clone();
            Some(scope.spawn(move || -> io::Result<PartWriter<W>> {
                for msg in rx {
                    pw.handle(msg)?;
                }
                Ok(pw)
            }))
        };
        drop(wrx);
        let mut emit = |msg: Msg<W>| -> Result<(), EngineError> {
            match writer_slot.as_mut() {
                Some(pw) => pw.handle(msg).map_err(EngineError::Write),
                None => wtx.send(msg).map_err(|_| EngineError::Write(io::Error::other("output writer stopped"))),
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
                    ks.reserve(n as u64 * encrypt_cols)?;
                    let (key, part) = (ks.key.clone(), ks.part);
                    let bytes = spent.take();
                    if opts.sequential {
                        let result = transformer.transform_chunk(&chunk, &key, bytes);
                        pending.insert(next_read, (result, chunk, part, key));
                    } else {
                        let (t, tx, seq) = (transformer.clone(), tx.clone(), next_read);
                        job.pool.spawn(move || {
                            let result = t.transform_chunk(&chunk, &key, bytes);
                            let _ = tx.send((seq, result, chunk, part, key));
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
                    let (seq, res, chunk, part, key) =
                        rx.recv().map_err(|_| EngineError::Write(io::Error::other("transform worker vanished")))?;
                    in_flight -= 1;
                    pending.insert(seq, (res, chunk, part, key));
                    while let Ok((seq, res, chunk, part, key)) = rx.try_recv() {
                        in_flight -= 1;
                        pending.insert(seq, (res, chunk, part, key));
                    }
                }
                while let Some((mut res, chunk, part, key)) = pending.remove(&next_write) {
                    if let Some(e) = res.error.take() {
                        return Err(EngineError::Key(e));
                    }
                    outcome.rows_read += res.rows;
                    outcome.rows_written += res.written;
                    outcome.values_encrypted += res.encrypted;
                    let rejects = std::mem::take(&mut res.rejects);
                    for (acc, sc) in scanners.iter_mut().zip(std::mem::take(&mut res.scanners)) {
                        match acc {
                            Some(a) => a.merge(sc),
                            None => *acc = Some(sc),
                        }
                    }
                    let placed = Placed { bytes: res.bytes, rows: res.written, part, key };
                    place(
                        &mut ks,
                        &transformer,
                        &chunk,
                        &rejects,
                        encrypt_cols,
                        limit,
                        placed,
                        &header_bytes,
                        &mut open_output,
                        &mut emit,
                    )?;
                    outcome.rejects.extend(rejects);
                    free.push(chunk);
                    next_write += 1;
                    job.progress.update(shared.bytes.load(Ordering::Relaxed), outcome.rows_read);
                }
            }
        })();
        drop(wtx);
        if let Some(w) = writer {
            match w.join() {
                Ok(Ok(pw)) => writer_slot = Some(pw),
                Ok(Err(e)) => return Err(EngineError::Write(e)),
                Err(_) => return Err(EngineError::Write(io::Error::other("output writer panicked"))),
            }
        }
        run
    });
    result?;
    outcome.scanners = scanned.into_iter().zip(scanners).filter_map(|(n, s)| s.map(|s| (n, s))).collect();
    let finished = writer_slot.expect("writer returned the outputs").finish().map_err(EngineError::Write)?;
    outcome.data_keys = ks.records;
    let parts = finished
        .into_iter()
        .zip(ks.parts)
        .enumerate()
        .map(|(i, ((output, bytes, sha256), meta))| PartOutput {
            output,
            part: i + 1,
            rows: meta.rows,
            bytes,
            sha256,
            data_keys: meta.data_keys,
        })
        .collect();
    // Drain whatever the CSV reader did not consume so the hash covers the whole input.
    let mut counted = rdr.into_inner().into_inner();
    io::copy(&mut counted, &mut io::sink()).map_err(EngineError::Read)?;
    outcome.input_bytes = counted.inner.bytes;
    outcome.input_sha256 = data_encoding::HEXLOWER.encode(&counted.inner.hasher.finalize());
    job.progress.update(outcome.input_bytes, outcome.rows_read);
    Ok((outcome, parts))
}

/// A transformed chunk on its way into the output.
struct Placed {
    bytes: Vec<u8>,
    rows: u64,
    /// The part whose key encrypted it.
    part: usize,
    key: Arc<DataKey>,
}

/// Writes a transformed chunk into the current part, cutting to new parts
/// at row boundaries as `limit` requires. `records` are the chunk's input
/// records and `rejects` its rejected rows (which have no output row).
#[allow(clippy::too_many_arguments)]
fn place<W>(
    ks: &mut KeyState<'_>,
    transformer: &Transformer,
    records: &[ByteRecord],
    rejects: &[Reject],
    encrypt_cols: u64,
    limit: u64,
    mut chunk: Placed,
    header: &[u8],
    open_output: &mut impl FnMut(usize, &crate::crypto::keys::DekId) -> Result<W, String>,
    emit: &mut impl FnMut(Msg<W>) -> Result<(), EngineError>,
) -> Result<(), EngineError> {
    let mut records = records;
    let again = |ks: &mut KeyState<'_>, records: &[ByteRecord], bytes: Vec<u8>| -> Result<Placed, EngineError> {
        ks.reserve(records.len() as u64 * encrypt_cols)?;
        let mut out = transformer.transform_chunk(records, &ks.key, bytes);
        if let Some(e) = out.error.take() {
            return Err(EngineError::Key(e));
        }
        Ok(Placed { bytes: out.bytes, rows: out.written, part: ks.part, key: ks.key.clone() })
    };
    if chunk.part != ks.part {
        // Encrypted under an earlier part's key before that part was cut.
        chunk = again(ks, records, std::mem::take(&mut chunk.bytes))?;
    }
    loop {
        if chunk.rows == 0 {
            return Ok(());
        }
        if ks.part_bytes + chunk.bytes.len() as u64 <= limit {
            ks.part_bytes += chunk.bytes.len() as u64;
            ks.parts[ks.part].rows += chunk.rows;
            ks.used(&chunk.key);
            return emit(Msg::Bytes(chunk.bytes));
        }
        let ends = record_ends(&chunk.bytes);
        let fit = ends.iter().take_while(|&&e| ks.part_bytes + e as u64 <= limit).count();
        let is_rejected = |r: &ByteRecord| {
            let line = r.position().map_or(0, |p| p.line());
            rejects.iter().any(|j| j.line == line)
        };
        if fit == 0 && ks.parts[ks.part].rows == 0 {
            let line = records.iter().find(|r| !is_rejected(r)).and_then(|r| r.position()).map_or(0, |p| p.line());
            return Err(EngineError::RowTooLarge {
                line,
                bytes: ends.first().copied().unwrap_or(0) as u64 + header.len() as u64,
                limit,
            });
        }
        if fit > 0 {
            let rest = chunk.bytes.split_off(ends[fit - 1]);
            ks.part_bytes += chunk.bytes.len() as u64;
            ks.parts[ks.part].rows += fit as u64;
            ks.used(&chunk.key);
            emit(Msg::Bytes(std::mem::replace(&mut chunk.bytes, rest)))?;
            // Skip the input records of the rows just written.
            let mut written = 0;
            let mut idx = 0;
            while written < fit {
                if !is_rejected(&records[idx]) {
                    written += 1;
                }
                idx += 1;
            }
            records = &records[idx..];
        }
        // Cut: a new part with its own data key and the header.
        ks.fresh()?;
        ks.part += 1;
        ks.parts.push(PartMeta { rows: 0, data_keys: Vec::new() });
        let w = open_output(ks.part + 1, ks.key.id()).map_err(EngineError::Open)?;
        emit(Msg::Part(w))?;
        emit(Msg::Bytes(header.to_vec()))?;
        ks.part_bytes = header.len() as u64;
        let own = ks.key.clone();
        ks.used(&own);
        chunk = again(ks, records, std::mem::take(&mut chunk.bytes))?;
    }
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

    /// In-memory keys, a 2-thread pool and a pseudonym key for one test.
    struct Fixture {
        keys: MemKeys,
        pool: rayon::ThreadPool,
        cancel: AtomicBool,
        pseudonymizer: Pseudonymizer,
    }

    impl Fixture {
        fn new() -> Self {
            Fixture {
                keys: MemKeys(Mutex::new(Vec::new())),
                pool: rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap(),
                cancel: AtomicBool::new(false),
                pseudonymizer: Pseudonymizer::new(&PseudonymKey::generate()),
            }
        }

        fn job<'a>(&'a self, settings: &'a Settings, options: EngineOptions) -> FileJob<'a> {
            FileJob {
                schema: &settings.schema,
                delimiter: b',',
                pseudonymizer: &self.pseudonymizer,
                deterministic: None,
                keys: &self.keys,
                pool: &self.pool,
                progress: &(),
                cancel: &self.cancel,
                options,
                audit_lines: None,
                persons: None,
            }
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

    /// The pool of spent output buffers keeps at most its number of buffers
    /// and none above [`MAX_REUSED_BUFFER`], so cutting many parts (each
    /// adds a header buffer and a split one) cannot grow it.
    #[test]
    fn spent_buffers_are_bounded_in_number_and_size() {
        let pool = SpentBuffers::new(3);
        for _ in 0..5 {
            pool.give(Vec::with_capacity(1024));
        }
        let kept: Vec<usize> = (0..5).map(|_| pool.take().capacity()).collect();
        assert_eq!(kept, [1024, 1024, 1024, 0, 0]);
        pool.give(Vec::with_capacity(MAX_REUSED_BUFFER + 1));
        assert_eq!(pool.take().capacity(), 0, "an oversized buffer is freed");
        pool.give(Vec::with_capacity(MAX_REUSED_BUFFER));
        assert_eq!(pool.take().capacity(), MAX_REUSED_BUFFER);
    }

    /// A data key encrypts at most `values_per_dek` values; a longer file rolls
    /// over to fresh keys as it goes, and every token names the key that
    /// encrypted it.
    #[test]
    fn data_keys_roll_over_at_the_value_limit() {
        for sequential in [false, true] {
            roll_over(sequential);
        }
    }

    /// Parts are cut at row boundaries while chunks are in flight: chunks
    /// already encrypted under the previous part's key are encrypted again,
    /// so every part holds only tokens of its own keys, and the parts'
    /// rows together are the input in order.
    #[test]
    fn parts_cut_at_row_boundaries_with_their_own_keys() {
        for sequential in [false, true] {
            for values_per_dek in [1_000_000, 25] {
                cut_parts(sequential, values_per_dek);
            }
        }
    }

    fn cut_parts(sequential: bool, values_per_dek: u64) {
        let settings = Settings::from_toml(std::path::Path::new("/x/p.toml"), CFG, None).unwrap();
        let mut input = String::from("email,n\n");
        for i in 0..700 {
            input.push_str(&format!("user{i}@example.test,{}\n", "n".repeat(i % 13)));
        }
        let f = Fixture::new();
        let options = EngineOptions {
            chunk_rows: 7,
            max_in_flight: 4,
            values_per_dek,
            sequential,
            max_rows: None,
            max_part_bytes: Some(3000),
        };
        let job = f.job(&settings, options);
        let keys = &f.keys;
        let mut opened = Vec::new();
        let (outcome, parts) = process_stream(&job, input.as_bytes(), |part, id| {
            opened.push((part, *id));
            Ok(Vec::new())
        })
        .unwrap();
        assert_eq!(outcome.rows_written, 700);
        assert!(parts.len() > 10, "{}", parts.len());
        assert_eq!(opened.len(), parts.len());
        let made = keys.0.lock().unwrap();
        let mut i = 0;
        for (n, p) in parts.iter().enumerate() {
            assert_eq!(p.part, n + 1);
            assert_eq!(opened[n].0, n + 1);
            assert_eq!(p.data_keys[0].dek_id, opened[n].1.to_string(), "a part's first key names it");
            assert!(p.output.len() as u64 <= 3000 && p.bytes == p.output.len() as u64);
            let mut r = csv::Reader::from_reader(&p.output[..]);
            assert_eq!(r.headers().unwrap(), vec!["email", "n"]);
            let mut rows = 0;
            for rec in r.records() {
                let rec = rec.unwrap();
                let (id, payload) = aead::parse_token(rec[0].as_bytes()).unwrap();
                assert!(
                    p.data_keys.iter().any(|k| k.dek_id == id.to_string()),
                    "part {} token under a foreign key",
                    p.part
                );
                let (_, dek) = made.iter().find(|(k, _)| *k == id).unwrap();
                let plain = DataKey::new(id, dek).decrypt_payload(b"email", &payload).unwrap();
                assert_eq!(plain, format!("user{i}@example.test").as_bytes());
                assert_eq!(&rec[1], "n".repeat(i % 13));
                i += 1;
                rows += 1;
            }
            assert_eq!(p.rows, rows);
        }
        assert_eq!(i, 700);
    }

    fn roll_over(sequential: bool) {
        let settings = Settings::from_toml(std::path::Path::new("/x/p.toml"), CFG, None).unwrap();
        let mut input = String::from("email,n\n");
        for i in 0..2500 {
            input.push_str(&format!("user{i}@example.test,{i}\n"));
        }
        let f = Fixture::new();
        let options = EngineOptions {
            chunk_rows: 100,
            max_in_flight: 4,
            values_per_dek: 1000,
            sequential,
            max_rows: None,
            max_part_bytes: None,
        };
        let job = f.job(&settings, options);
        let keys = &f.keys;
        let (outcome, parts) = process_stream(&job, input.as_bytes(), |_, _| Ok(Vec::new())).unwrap();
        assert_eq!(parts.len(), 1);
        let out = &parts[0].output;
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
