//! OpenPGP-encrypted outputs for CleverTap's encrypted upload (CleverTap
//! docs, "File Upload Encryption"; the message format is RFC 9580).
//!
//! Each data file is encrypted to the public key CleverTap issued, as an
//! ASCII-armored message (RFC 9580 section 6): a public-key encrypted
//! session key packet for the key's encryption-capable (sub)key, then a
//! SEIPD v1 packet (AES-256, with the modification detection code every
//! OpenPGP implementation reads, GnuPG included) holding a binary literal
//! data packet. The CSV streams through in partial-length chunks, so the
//! plaintext is only ever in memory, a chunk at a time, and memory stays
//! flat whatever the file size.
//!
//! rPGP (the `pgp` crate) is used because it is pure Rust (no C library
//! to install or audit beside libssh2), permissively licensed, implements
//! RFC 9580 and RFC 4880 keys and messages, and can encrypt from a reader
//! with bounded memory.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{Scope, ScopedJoinHandle};

use pgp::composed::{Deserializable, MessageBuilder, SignedPublicKey};
use pgp::crypto::sym::SymmetricKeyAlgorithm;
use pgp::types::{KeyDetails, PublicKeyTrait};

use super::{PendingOutput, SinkError};

/// Bytes of plaintext per message sent to the encrypting thread.
const CHUNK: usize = 256 * 1024;

/// OpenPGP partial body length (RFC 9580 section 4.2.1.4), a power of two:
/// 64 KiB buffers are reused by the allocator instead of being mapped and
/// zeroed afresh for every chunk.
const PARTIAL_CHUNK: u32 = 64 * 1024;

/// Plaintext bytes that fit in an armored OpenPGP file of at most
/// `encrypted_limit` bytes.
///
/// Armor turns 3 bytes into 4 and adds a line feed per 64 characters
/// (48 bytes → 65); the packets add the session key packet (at most about
/// 1.1 KB for a 8192-bit RSA key), the SEIPD prefix and MDC (40 bytes), the
/// literal data header and one length byte per 512 KiB partial chunk at
/// two levels; the armor header, footer and checksum take under 100 bytes.
/// The bound reserves 4 KiB for all fixed costs and one byte per 256 bytes
/// for the chunk headers.
pub fn plaintext_budget(encrypted_limit: u64) -> u64 {
    let armored_body = encrypted_limit.saturating_sub(256);
    let binary = armored_body / 65 * 48;
    binary.saturating_sub(4096).saturating_sub(binary / 256)
}

/// The recipient of encrypted outputs: CleverTap's public key and the Key
/// ID CleverTap shows for it.
pub struct Recipient {
    key: SignedPublicKey,
    /// Index into `key.public_subkeys` of the encryption subkey; `None`:
    /// the primary key encrypts.
    subkey: Option<usize>,
    /// CleverTap's Key ID (manifest `keyId`).
    pub clevertap_key_id: String,
    /// Upper-case hex fingerprint of the key that encrypts.
    pub fingerprint: String,
}

impl Recipient {
    /// Loads an ASCII-armored OpenPGP public key (transferable public key,
    /// RFC 9580 section 10.1), checks its self-signatures, and picks its
    /// encryption key: the last subkey whose binding signature allows
    /// encryption, else the primary key when it can encrypt.
    ///
    /// # Errors
    /// Text naming the file and saying what is wrong with it.
    pub fn load(path: &Path, clevertap_key_id: &str) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!("[sink.pgp] recipient_key {}: {e}; save the public key CleverTap issued there", path.display())
        })?;
        let (key, _) = SignedPublicKey::from_string(&text).map_err(|e| {
            format!(
                "[sink.pgp] recipient_key {}: not an ASCII-armored OpenPGP public key ({e}); it should start with -----BEGIN PGP PUBLIC KEY BLOCK-----",
                path.display()
            )
        })?;
        key.verify().map_err(|e| {
            format!("[sink.pgp] recipient_key {}: the key's self-signatures do not verify ({e})", path.display())
        })?;
        let subkey = key
            .public_subkeys
            .iter()
            .enumerate()
            .filter(|(_, sk)| {
                sk.key.is_encryption_key()
                    && !sk.signatures.iter().any(|s| s.typ() == Some(pgp::packet::SignatureType::SubkeyRevocation))
                    && sk.signatures.iter().any(|s| s.key_flags().encrypt_comms() || s.key_flags().encrypt_storage())
            })
            .map(|(i, _)| i)
            .next_back();
        let fingerprint = match subkey {
            Some(i) => format!("{:X}", key.public_subkeys[i].key.fingerprint()),
            None if key.primary_key.is_encryption_key() => format!("{:X}", key.primary_key.fingerprint()),
            None => {
                return Err(format!(
                    "[sink.pgp] recipient_key {}: the key has no encryption-capable key or subkey; ask CleverTap for its encryption public key",
                    path.display()
                ))
            }
        };
        Ok(Self { key, subkey, clevertap_key_id: clevertap_key_id.to_owned(), fingerprint })
    }

    /// Starts encrypting into `inner` on a thread of `scope`; the returned
    /// output takes the plaintext CSV and, on commit, finishes the message
    /// and commits `inner`. `file_name` goes into the literal data packet.
    pub fn encrypt_into<'scope, 'env>(
        &'env self,
        scope: &'scope Scope<'scope, 'env>,
        file_name: String,
        inner: Box<dyn PendingOutput + 'env>,
    ) -> Box<dyn PendingOutput + 'scope>
    where
        'env: 'scope,
    {
        let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(4);
        let complete = Arc::new(AtomicBool::new(false));
        let reader = ChannelReader { rx, buf: Vec::new(), pos: 0, complete: complete.clone() };
        let handle = scope.spawn(move || -> Result<Box<dyn PendingOutput + 'env>, String> {
            let mut inner = inner;
            let mut rng = rand08::thread_rng();
            let mut builder = MessageBuilder::from_reader(file_name, reader);
            builder.partial_chunk_size(PARTIAL_CHUNK).map_err(|e| format!("OpenPGP: {e}"))?;
            let mut builder = builder.seipd_v1(&mut rng, SymmetricKeyAlgorithm::AES256);
            let added = match self.subkey {
                Some(i) => builder.encrypt_to_key(&mut rng, &self.key.public_subkeys[i].key),
                None => builder.encrypt_to_key(&mut rng, &self.key.primary_key),
            };
            added.map_err(|e| format!("OpenPGP: encrypting the session key: {e}"))?;
            let mut armored = Armor::begin(&mut inner).map_err(|e| format!("OpenPGP: {e}"))?;
            builder.to_writer(&mut rng, &mut armored).map_err(|e| format!("OpenPGP: {e}"))?;
            armored.end().map_err(|e| format!("OpenPGP: {e}"))?;
            Ok(inner)
        });
        Box::new(PgpOutput {
            tx: Some(tx),
            buf: Vec::with_capacity(CHUNK),
            handle: Some(handle),
            complete,
            finished: None,
            failed: None,
        })
    }
}

/// CRC-24 of OpenPGP's armor checksum (RFC 9580 section 6.1), sliced by 16
/// tables.
static CRC24: crc::Crc<u32, crc::Table<16>> = crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_24_OPENPGP);

/// Binary bytes per armored line: 64 base64 characters (RFC 9580 section
/// 6.3 allows at most 76).
const ARMOR_LINE: usize = 48;

/// ASCII armor of an OpenPGP message (RFC 9580 section 6.2), written as the
/// binary message streams through: the `BEGIN PGP MESSAGE` line and an
/// empty header block, the base64 body in lines of 64 characters ending in
/// LF, the `=` checksum line (CRC-24, section 6.1) and the `END` line; the
/// same bytes as rPGP's own armor writer, which computes the checksum a
/// byte at a time (that was the largest cost of an encrypted output).
/// The checksum is kept, though RFC 9580 makes it optional, for readers
/// that still require it.
struct Armor<W: Write> {
    inner: W,
    crc: crc::Digest<'static, u32, crc::Table<16>>,
    /// Bytes not yet encoded: fewer than [`ARMOR_LINE`] between writes.
    pending: Vec<u8>,
    /// Encoded lines on their way to `inner`.
    lines: Vec<u8>,
}

impl<W: Write> Armor<W> {
    /// Writes the armor header lines.
    fn begin(mut inner: W) -> io::Result<Self> {
        inner.write_all(b"-----BEGIN PGP MESSAGE-----\n\n")?;
        Ok(Self { inner, crc: CRC24.digest(), pending: Vec::with_capacity(ARMOR_LINE), lines: Vec::new() })
    }

    /// Encodes `bytes` into `lines`, 48 bytes to a line (the last one
    /// shorter, padded).
    fn encode_lines(lines: &mut Vec<u8>, bytes: &[u8]) -> io::Result<()> {
        for line in bytes.chunks(ARMOR_LINE) {
            encode_into(lines, line)?;
            lines.push(b'\n');
        }
        Ok(())
    }

    /// Writes the last line, the checksum and the footer; flushes.
    fn end(mut self) -> io::Result<()> {
        Self::encode_lines(&mut self.lines, &self.pending)?;
        let crc = self.crc.finalize().to_be_bytes();
        self.lines.push(b'=');
        encode_into(&mut self.lines, &crc[1..])?;
        self.lines.extend_from_slice(b"\n-----END PGP MESSAGE-----\n");
        self.inner.write_all(&self.lines)?;
        self.inner.flush()
    }
}

/// Appends the padded standard base64 of `bytes` to `out`.
fn encode_into(out: &mut Vec<u8>, bytes: &[u8]) -> io::Result<()> {
    use base64::Engine as _;
    let at = out.len();
    let len = base64::encoded_len(bytes.len(), true).ok_or_else(|| io::Error::other("armor line too long"))?;
    out.resize(at + len, 0);
    base64::engine::general_purpose::STANDARD.encode_slice(bytes, &mut out[at..]).map_err(io::Error::other)?;
    Ok(())
}

/// After an error the armor is broken (the checksum and the encoded lines
/// hold bytes the output did not get): the output is abandoned, never
/// written to again.
impl<W: Write> Write for Armor<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len();
        self.crc.update(data);
        let mut data = data;
        if !self.pending.is_empty() {
            let take = (ARMOR_LINE - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() < ARMOR_LINE {
                return Ok(n);
            }
            Self::encode_lines(&mut self.lines, &self.pending)?;
            self.pending.clear();
        }
        let whole = data.len() / ARMOR_LINE * ARMOR_LINE;
        Self::encode_lines(&mut self.lines, &data[..whole])?;
        self.pending.extend_from_slice(&data[whole..]);
        if self.lines.len() >= CHUNK {
            self.inner.write_all(&self.lines)?;
            self.lines.clear();
        }
        Ok(n)
    }

    /// Keeps the encoded lines: they go out in blocks of at least
    /// [`CHUNK`] bytes, and [`Armor::end`] writes and flushes the rest.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Plaintext in, armored OpenPGP out (on the encrypting thread).
struct PgpOutput<'scope, 'env> {
    tx: Option<crossbeam_channel::Sender<Vec<u8>>>,
    buf: Vec<u8>,
    handle: Option<ScopedJoinHandle<'scope, Result<Box<dyn PendingOutput + 'env>, String>>>,
    complete: Arc<AtomicBool>,
    /// After [`PendingOutput::finish`]: the encrypted output, itself
    /// finished; the encrypting thread has ended.
    finished: Option<Box<dyn PendingOutput + 'env>>,
    /// Why finishing failed, for a later call.
    failed: Option<String>,
}

impl PgpOutput<'_, '_> {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        match self.tx.as_ref() {
            Some(tx) if tx.send(chunk).is_ok() => Ok(()),
            _ => {
                // The encrypting thread stopped early: report why (e.g. the
                // sink's write failed).
                drop(self.tx.take());
                let why = match self.handle.take().map(ScopedJoinHandle::join) {
                    Some(Ok(Err(e))) => e,
                    Some(Err(_)) => "the OpenPGP thread panicked".into(),
                    _ => "the OpenPGP encryption stopped".into(),
                };
                Err(io::Error::other(why))
            }
        }
    }
}

impl Write for PgpOutput<'_, '_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.tx.is_none() {
            return Err(io::Error::other("the output was already finished"));
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl PendingOutput for PgpOutput<'_, '_> {
    fn finish(&mut self) -> Result<(), SinkError> {
        if self.finished.is_some() {
            return Ok(());
        }
        if let Some(why) = &self.failed {
            return Err(encrypting_error(why.clone()));
        }
        let result = (|| {
            self.send().map_err(|e| e.to_string())?;
            self.buf = Vec::new();
            self.complete.store(true, Ordering::SeqCst);
            drop(self.tx.take());
            let handle = self.handle.take().ok_or("the OpenPGP thread is gone")?;
            let mut inner = handle.join().map_err(|_| "the OpenPGP thread panicked".to_owned())??;
            inner.finish().map_err(|e| e.to_string())?;
            Ok::<_, String>(inner)
        })();
        match result {
            Ok(inner) => {
                self.finished = Some(inner);
                Ok(())
            }
            Err(why) => {
                self.failed = Some(why.clone());
                Err(encrypting_error(why))
            }
        }
    }

    fn commit(mut self: Box<Self>) -> Result<String, SinkError> {
        self.finish()?;
        match self.finished.take() {
            Some(inner) => inner.commit(),
            None => Err(encrypting_error("the output was not finished".into())),
        }
    }
}

/// A failure of the OpenPGP encryption of an output.
fn encrypting_error(why: String) -> SinkError {
    SinkError::Io { op: "encrypting", target: "OpenPGP output".into(), source: io::Error::other(why) }
}

impl Drop for PgpOutput<'_, '_> {
    fn drop(&mut self) {
        // Uncommitted: the reader sees the channel close without `complete`
        // and fails, so the encrypting thread stops and drops (removes) the
        // temporary output.
        drop(self.tx.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The plaintext stream as the OpenPGP builder reads it.
struct ChannelReader {
    rx: crossbeam_channel::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
    complete: Arc<AtomicBool>,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.rx.recv() {
                Ok(b) => {
                    self.buf = b;
                    self.pos = 0;
                }
                Err(_) if self.complete.load(Ordering::SeqCst) => return Ok(0),
                Err(_) => return Err(io::Error::other("output abandoned")),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::{plaintext_budget, Armor};
    use std::io::Write;

    /// Bytes that rPGP's armor writer serializes as they are.
    struct Raw<'a>(&'a [u8]);

    impl pgp::ser::Serialize for Raw<'_> {
        fn to_writer<W: Write>(&self, w: &mut W) -> pgp::errors::Result<()> {
            w.write_all(self.0)?;
            Ok(())
        }
        fn write_len(&self) -> usize {
            self.0.len()
        }
    }

    /// Known answer: the armor is byte for byte what rPGP's armor writer
    /// (with its checksum) makes of the same bytes, however they are split
    /// into writes; and rPGP's reader takes it back, checksum checked.
    #[test]
    fn armor_matches_rpgp_byte_for_byte() {
        use rand::{RngCore, SeedableRng};
        let mut data = vec![0u8; 700_000];
        rand_chacha::ChaCha20Rng::seed_from_u64(1).fill_bytes(&mut data);
        for len in (1..200).chain([4095, 65_536, 699_999]) {
            let body = &data[..len];
            let mut want = Vec::new();
            pgp::armor::write(&Raw(body), pgp::armor::BlockType::Message, &mut want, None, true).unwrap();
            for piece in [1, 7, 48, 1000, 300_000] {
                let mut got = Vec::new();
                let mut armor = Armor::begin(&mut got).unwrap();
                for p in body.chunks(piece) {
                    armor.write_all(p).unwrap();
                }
                armor.end().unwrap();
                assert!(got == want, "length {len}, pieces of {piece}");
            }
            let mut got = Vec::new();
            let mut armor = Armor::begin(&mut got).unwrap();
            armor.write_all(body).unwrap();
            armor.end().unwrap();
            let mut back = Vec::new();
            std::io::Read::read_to_end(&mut pgp::armor::Dearmor::new(&got[..]), &mut back).unwrap();
            assert!(back == body, "length {len}");
        }
    }

    /// Counts the writes it receives.
    struct Writes(usize);

    impl Write for Writes {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += 1;
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The armor reaches the output in large blocks, not a line per write
    /// (an SFTP output sends every write as its own request).
    #[test]
    fn armor_is_written_in_large_blocks() {
        let mut out = Writes(0);
        let mut armor = Armor::begin(&mut out).unwrap();
        for _ in 0..20_000 {
            armor.write_all(&[7u8; 100]).unwrap();
        }
        armor.end().unwrap();
        // 2 MB in, 2.7 MB of armor: the header, ten blocks of 256 KiB, the rest.
        assert!(out.0 <= 12, "{} writes", out.0);
    }

    #[test]
    fn budget_leaves_room_for_armor_and_packets() {
        for limit in [16 * 1024u64, 1_000_000, 1_000_000_000] {
            let p = plaintext_budget(limit);
            // Armored size of p bytes plus the largest fixed overhead.
            let binary = p + 1200 + 2 * (p / (512 * 1024) + 1) + 64;
            let armored = binary.div_ceil(48) * 65 + 100;
            assert!(armored <= limit, "{limit}: {p} → {armored}");
            assert!(limit < 100_000 || p > limit * 7 / 10, "budget not needlessly small: {p}");
        }
    }
}
