//! Snapshots: a point-in-time copy of the whole MVCC state at one revision and
//! applied log index, zstd-compressed and checksummed (docs/formats/snapshot.md).
//!
//! A snapshot is written from a published, immutable `mvcc::Snapshot`, on a
//! thread of its own, so writes never pause while one is taken. The same bytes
//! serve three uses: the member's automatic snapshots in `DATA_DIR/snapshots/`
//! (restart = newest valid snapshot + the WAL after it, and the WAL below it is
//! purged), `corekvctl snapshot save` (streamed over the native protocol) and
//! `corekvctl snapshot restore` (a fresh data dir built from a file).

pub mod format;

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use xxhash_rust::xxh3::Xxh3;

pub use format::{Meta, Summary};

use crate::limits;
use crate::mvcc::{ExportedVersion, Importer, Snapshot, Store};
use crate::types::KeyValue;

/// zstd level: fast; a snapshot is written while the member serves.
const zstd_level: i32 = 1;

#[derive(Debug)]
pub enum SnapshotError {
    Io(PathBuf, io::Error),
    Corrupt { file: PathBuf, reason: String },
}

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotError::Io(file, e) => write!(f, "snapshot {}: {e}", file.display()),
            SnapshotError::Corrupt { file, reason } => {
                write!(f, "snapshot {} is corrupt or truncated: {reason}", file.display())
            }
        }
    }
}

impl std::error::Error for SnapshotError {}

/// Counts (and hashes) the bytes that pass through.
struct Tally<W> {
    inner: W,
    bytes: u64,
    hash: Xxh3,
}

impl<W> Tally<W> {
    fn new(inner: W) -> Tally<W> {
        Tally { inner, bytes: 0, hash: Xxh3::new() }
    }
}

impl<W: Write> Write for Tally<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(data)?;
        self.bytes += n as u64;
        self.hash.update(&data[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Tally<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buffer)?;
        self.bytes += n as u64;
        self.hash.update(&buffer[..n]);
        Ok(n)
    }
}

fn encode_key(out: &mut Vec<u8>, key: &[u8], versions: &[ExportedVersion]) {
    out.push(format::tag_key);
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&(versions.len() as u32).to_le_bytes());
    for version in versions {
        out.extend_from_slice(&version.revision.to_le_bytes());
        match &version.kv {
            None => out.push(format::kind_delete),
            Some(kv) => {
                out.push(format::kind_put);
                out.extend_from_slice(&kv.create_revision.to_le_bytes());
                out.extend_from_slice(&kv.version.to_le_bytes());
                out.extend_from_slice(&kv.lease.to_le_bytes());
                out.extend_from_slice(&(kv.value.len() as u32).to_le_bytes());
                out.extend_from_slice(&kv.value);
            }
        }
    }
}

/// One record of a snapshot body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Key(Bytes, Vec<ExportedVersion>),
    Lease { id: i64, ttl: i64, expiry_ms: i64 },
    LeaseClock(i64),
}

impl Record {
    /// Adds the record to a store being built.
    pub fn import(self, importer: &mut Importer) -> Result<(), String> {
        match self {
            Record::Key(key, versions) => importer.add(key, versions),
            Record::Lease { id, ttl, expiry_ms } => importer.add_lease(id, ttl, expiry_ms),
            Record::LeaseClock(clock_ms) => importer.set_lease_clock(clock_ms),
        }
    }
}

fn encode_leases(out: &mut Vec<u8>, snapshot: &Snapshot) {
    for (id, lease) in snapshot.leases().iter() {
        out.push(format::tag_lease);
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&lease.ttl.to_le_bytes());
        out.extend_from_slice(&lease.expiry_ms.to_le_bytes());
    }
    out.push(format::tag_lease_clock);
    out.extend_from_slice(&snapshot.leases().clock_ms().to_le_bytes());
}

/// Writes `snapshot` (taken as `meta` says) to `out`.
pub fn write(snapshot: &Snapshot, meta: &Meta, out: impl Write) -> io::Result<Summary> {
    write_paced(snapshot, meta, out, 1.0)
}

/// Spends at most `duty` (0 < duty ≤ 1) of wall time working: after each
/// slice of work it sleeps so that work / (work + sleep) = duty. A member's
/// own snapshots run paced, so that walking and compressing gigabytes does
/// not take the memory bandwidth and caches the request path needs.
///
/// Slices are short (200 µs): a core the walk holds is a core whose requests
/// wait, and the scheduler does not always take it back at once. With 2 ms
/// slices a save raised put p99 from ~0.9 ms to ~2.7 ms whatever the duty
/// (even 2%), since ~1% of requests landed behind a slice;
/// docs/performance.md "Snapshots on a large store".
struct Pace {
    duty: f64,
    slice_started: std::time::Instant,
}

impl Pace {
    const slice: std::time::Duration = std::time::Duration::from_micros(200);

    fn new(duty: f64) -> Pace {
        Pace { duty: duty.clamp(0.01, 1.0), slice_started: std::time::Instant::now() }
    }

    fn tick(&mut self) {
        if self.duty >= 1.0 {
            return;
        }
        let worked = self.slice_started.elapsed();
        if worked >= Pace::slice {
            std::thread::sleep(worked.mul_f64((1.0 - self.duty) / self.duty));
            self.slice_started = std::time::Instant::now();
        }
    }
}

/// As `write`, working at most `duty` of the time (see `Pace`).
pub fn write_paced(
    snapshot: &Snapshot,
    meta: &Meta,
    mut out: impl Write,
    duty: f64,
) -> io::Result<Summary> {
    let mut pace = Pace::new(duty);
    out.write_all(&meta.encode())?;
    let mut compressed = Tally::new(&mut out);
    let mut encoder = zstd::stream::write::Encoder::new(&mut compressed, zstd_level)?;
    encoder.include_checksum(true)?;
    let mut body = Tally::new(encoder);
    let mut summary = Summary::default();
    let mut record = Vec::with_capacity(64 * 1024);
    encode_leases(&mut record, snapshot);
    body.write_all(&record)?;
    // The history may come from the page store: a read failure there, or a
    // write failure here, ends the snapshot with that error.
    let mut written: io::Result<()> = Ok(());
    let read = snapshot.for_each_history(|key, versions| {
        record.clear();
        encode_key(&mut record, &key, &versions);
        if let Err(e) = body.write_all(&record) {
            let message = e.to_string();
            written = Err(e);
            return Err(message);
        }
        summary.keys += 1;
        summary.versions += versions.len() as u64;
        summary.live_keys += u64::from(versions[0].kv.is_some());
        if summary.keys.is_multiple_of(64) {
            pace.tick();
        }
        Ok(())
    });
    written?;
    read.map_err(io::Error::other)?;
    body.write_all(&[format::tag_end])?;
    summary.body_bytes = body.bytes;
    summary.body_hash = body.hash.digest();
    body.inner.finish()?;
    summary.compressed_bytes = compressed.bytes;
    summary.compressed_hash = compressed.hash.digest();
    out.write_all(&summary.encode())?;
    out.flush()?;
    Ok(summary)
}

/// Reads records from the decompressed body, never past the bytes the
/// trailer counts (`declared`): zstd makes a body of repeated records
/// nearly free to send, so the trailer's count, checked against memory
/// before loading (`read`), is what bounds the work and the memory.
struct BodyReader<R> {
    input: R,
    declared: u64,
    consumed: u64,
    /// Keep each key's versions (loading), or only count them (`status`).
    keep_versions: bool,
}

/// A key record's versions in figures (what the trailer counts).
struct KeyCounts {
    versions: u64,
    newest_live: bool,
    newest_revision: i64,
}

/// Bytes a version takes in the body at the least (a delete: revision, kind).
const version_bytes_min: u64 = 9;

impl<R: BufRead> BodyReader<R> {
    fn take(&mut self, n: usize) -> Result<(), String> {
        if self.consumed + n as u64 > self.declared {
            return Err(format!(
                "the body runs past the {} bytes its trailer counts",
                self.declared
            ));
        }
        self.consumed += n as u64;
        Ok(())
    }

    fn bytes(&mut self, n: usize) -> Result<Vec<u8>, String> {
        self.take(n)?;
        let mut out = vec![0u8; n];
        self.input.read_exact(&mut out).map_err(|e| format!("body ends early: {e}"))?;
        Ok(out)
    }

    /// Reads past `n` bytes without keeping them.
    fn skip(&mut self, n: usize) -> Result<(), String> {
        self.take(n)?;
        let copied = io::copy(&mut (&mut self.input).take(n as u64), &mut io::sink())
            .map_err(|e| format!("body ends early: {e}"))?;
        if copied != n as u64 {
            return Err("body ends early".into());
        }
        Ok(())
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        self.take(N)?;
        let mut out = [0u8; N];
        self.input.read_exact(&mut out).map_err(|e| format!("body ends early: {e}"))?;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// The next record (a key's with its versions in figures too), or None
    /// at the end record.
    fn next_record(&mut self) -> Result<Option<(Record, Option<KeyCounts>)>, String> {
        match self.u8()? {
            format::tag_end => Ok(None),
            format::tag_key => self
                .key_record()
                .map(|(key, versions, counts)| Some((Record::Key(key, versions), Some(counts)))),
            format::tag_lease => {
                let (id, ttl, expiry_ms) = (self.i64()?, self.i64()?, self.i64()?);
                Ok(Some((Record::Lease { id, ttl, expiry_ms }, None)))
            }
            format::tag_lease_clock => Ok(Some((Record::LeaseClock(self.i64()?), None))),
            tag => Err(format!("unknown record tag {tag}")),
        }
    }

    /// A key and its versions (after its tag): kept, unless only counted.
    fn key_record(&mut self) -> Result<(Bytes, Vec<ExportedVersion>, KeyCounts), String> {
        let key_len = self.u32()? as usize;
        if key_len == 0 || key_len > limits::key_bytes_max {
            return Err(format!("key length {key_len} out of bounds"));
        }
        let key = Bytes::from(self.bytes(key_len)?);
        let count = self.u32()? as usize;
        if count as u64 * version_bytes_min > self.declared - self.consumed {
            return Err(format!(
                "a key with {count} versions, more than the {} bytes its trailer counts hold",
                self.declared
            ));
        }
        let mut counts =
            KeyCounts { versions: count as u64, newest_live: false, newest_revision: i64::MIN };
        let mut versions = Vec::with_capacity(if self.keep_versions { count.min(1024) } else { 0 });
        for i in 0..count {
            let revision = self.i64()?;
            counts.newest_revision = counts.newest_revision.max(revision);
            let kv = match self.u8()? {
                format::kind_delete => None,
                format::kind_put => {
                    counts.newest_live |= i == 0;
                    let create_revision = self.i64()?;
                    let version = self.i64()?;
                    let lease = self.i64()?;
                    let value_len = self.u32()? as usize;
                    if value_len > limits::value_bytes_max {
                        return Err(format!("value length {value_len} out of bounds"));
                    }
                    if !self.keep_versions {
                        self.skip(value_len)?;
                        continue;
                    }
                    let value = Bytes::from(self.bytes(value_len)?);
                    Some(KeyValue {
                        key: key.clone(),
                        create_revision,
                        mod_revision: revision,
                        version,
                        value,
                        lease,
                    })
                }
                kind => return Err(format!("unknown version kind {kind}")),
            };
            if self.keep_versions {
                versions.push(ExportedVersion { revision, sub: crate::mvcc::sub_unknown, kv });
            }
        }
        Ok((key, versions, counts))
    }
}

/// This machine's memory in bytes (MemTotal), if /proc says.
fn memory_bytes() -> Option<u64> {
    let text = fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Reads and checks a whole snapshot from `input` (`len` bytes), calling
/// `on_record` for every record in order. Any damage is an error; records
/// handed out before it was found must be discarded by the caller. A body
/// larger (uncompressed, as its trailer counts) than this machine's memory
/// is refused before it is read: it could not be loaded.
pub fn read(
    input: impl Read + Seek,
    len: u64,
    on_record: impl FnMut(Record) -> Result<(), String>,
) -> Result<(Meta, Summary), String> {
    read_with(input, len, true, on_record)
}

/// `read`, with each key's versions kept (`keep_versions`) or only counted
/// and checked (its key records then hold no versions): checking a file
/// then takes memory for one value at most, however large the file.
fn read_with(
    mut input: impl Read + Seek,
    len: u64,
    keep_versions: bool,
    mut on_record: impl FnMut(Record) -> Result<(), String>,
) -> Result<(Meta, Summary), String> {
    let min = (format::header_bytes + format::trailer_bytes) as u64;
    if len < min {
        return Err(format!("{len} bytes, shorter than a header and a trailer"));
    }
    let mut header = [0u8; format::header_bytes];
    input.read_exact(&mut header).map_err(|e| e.to_string())?;
    let meta = Meta::decode(&header)?;
    let mut trailer = [0u8; format::trailer_bytes];
    input.seek(SeekFrom::Start(len - format::trailer_bytes as u64)).map_err(|e| e.to_string())?;
    input.read_exact(&mut trailer).map_err(|e| e.to_string())?;
    let summary = Summary::decode(&trailer)?;
    if summary.compressed_bytes != len - min {
        return Err(format!(
            "the trailer counts {} compressed bytes, the file holds {}",
            summary.compressed_bytes,
            len - min
        ));
    }
    if let Some(memory) = memory_bytes().filter(|m| keep_versions && summary.body_bytes > *m) {
        return Err(format!(
            "its body is {} bytes uncompressed, more than this machine's memory ({memory} bytes)",
            summary.body_bytes
        ));
    }
    input.seek(SeekFrom::Start(format::header_bytes as u64)).map_err(|e| e.to_string())?;
    let frame = BufReader::new(Tally::new(input.take(summary.compressed_bytes)));
    let mut decoder =
        zstd::stream::read::Decoder::with_buffer(frame).map_err(|e| e.to_string())?.single_frame();
    let mut body = BodyReader {
        input: BufReader::with_capacity(256 * 1024, Tally::new(&mut decoder)),
        declared: summary.body_bytes,
        consumed: 0,
        keep_versions,
    };
    let mut seen = Summary::default();
    let mut last_revision_ok = true;
    while let Some((record, counts)) = body.next_record().map_err(|e| format!("zstd body: {e}"))? {
        if let Some(counts) = counts {
            seen.keys += 1;
            seen.versions += counts.versions;
            seen.live_keys += u64::from(counts.newest_live);
            last_revision_ok &= counts.newest_revision <= meta.revision;
        }
        on_record(record)?;
    }
    let mut rest = Vec::new();
    body.input.read_to_end(&mut rest).map_err(|e| format!("zstd body: {e}"))?;
    if !rest.is_empty() {
        return Err(format!("{} bytes after the end record", rest.len()));
    }
    let tally = body.input.into_inner();
    (seen.body_bytes, seen.body_hash) = (tally.bytes, tally.hash.digest());
    // Whatever follows the frame inside its stated length is damage too.
    let mut frame = decoder.finish();
    frame.read_to_end(&mut rest).map_err(|e| e.to_string())?;
    if !rest.is_empty() {
        return Err(format!("{} bytes after the zstd frame", rest.len()));
    }
    let frame = frame.into_inner();
    (seen.compressed_bytes, seen.compressed_hash) = (frame.bytes, frame.hash.digest());
    if seen != summary {
        return Err(format!(
            "contents do not match the trailer: read {seen:?}, trailer {summary:?}"
        ));
    }
    if !last_revision_ok {
        return Err("a version newer than the snapshot's revision".into());
    }
    Ok((meta, summary))
}

fn open(path: &Path) -> Result<(File, u64), SnapshotError> {
    let io = |e| SnapshotError::Io(path.to_path_buf(), e);
    let file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    Ok((file, len))
}

/// The header of a snapshot file, read and checked alone (the body is not:
/// `load` and `status` check the whole file).
pub fn read_meta(path: &Path) -> Result<Meta, SnapshotError> {
    let (mut file, _) = open(path)?;
    let mut header = [0u8; format::header_bytes];
    file.read_exact(&mut header).map_err(|e| SnapshotError::Io(path.to_path_buf(), e))?;
    Meta::decode(&header).map_err(|reason| SnapshotError::Corrupt {
        file: path.to_path_buf(),
        reason: reason.into(),
    })
}

/// Checks a snapshot file end to end without building a store.
pub fn status(path: &Path) -> Result<(Meta, Summary), SnapshotError> {
    let (file, len) = open(path)?;
    read_with(file, len, false, |_| Ok(()))
        .map_err(|reason| SnapshotError::Corrupt { file: path.to_path_buf(), reason })
}

/// Loads a snapshot file into a store.
pub fn load(path: &Path) -> Result<(Meta, Summary, Store), SnapshotError> {
    let (file, len) = open(path)?;
    let corrupt = |reason| SnapshotError::Corrupt { file: path.to_path_buf(), reason };
    // The header is read twice (here and in `read`) so the importer knows the
    // revision before the first key arrives.
    let mut header = [0u8; format::header_bytes];
    let mut peek = &file;
    peek.read_exact(&mut header).map_err(|e| corrupt(e.to_string()))?;
    let meta = Meta::decode(&header).map_err(|e| corrupt(e.to_string()))?;
    let mut importer = Importer::new(meta.revision, meta.compact_revision).map_err(corrupt)?;
    peek.seek(SeekFrom::Start(0)).map_err(|e| SnapshotError::Io(path.to_path_buf(), e))?;
    // Decompressing and decoding on one thread, building the map on this one.
    type Batch = Vec<Record>;
    const batch_keys: usize = 1024;
    let (read_result, import_result) = std::thread::scope(|scope| {
        let (batches_tx, batches) = std::sync::mpsc::sync_channel::<Batch>(16);
        let reader = scope.spawn(move || {
            let mut batch = Vec::with_capacity(batch_keys);
            let result = read(file, len, |record| {
                batch.push(record);
                if batch.len() == batch_keys {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_keys));
                    batches_tx.send(full).map_err(|_| "the import stopped".to_string())?;
                }
                Ok(())
            });
            if result.is_ok() && !batch.is_empty() {
                let _ = batches_tx.send(batch);
            }
            result
        });
        let mut import_result = Ok(());
        'batches: for batch in batches {
            for record in batch {
                if let Err(e) = record.import(&mut importer) {
                    import_result = Err(e);
                    break 'batches;
                }
            }
        }
        (reader.join().expect("the snapshot reader panicked"), import_result)
    });
    let (meta, summary) = match (read_result, import_result) {
        // An import error stops the reader ("the import stopped"): it is the cause.
        (_, Err(reason)) | (Err(reason), Ok(())) => return Err(corrupt(reason)),
        (Ok(done), Ok(())) => done,
    };
    Ok((meta, summary, importer.finish()))
}

/// The file name of a snapshot in a data dir: sortable by applied index.
pub fn file_name(meta: &Meta) -> String {
    format!("{:016x}-{:016x}.snap", meta.applied_index, meta.revision)
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes a snapshot into `dir` crash-safely: a temporary file, fsync, rename,
/// fsync of the directory. A crash leaves either no file or a whole one.
pub fn save_in_dir(
    dir: &Path,
    snapshot: &Snapshot,
    meta: &Meta,
    duty: f64,
) -> io::Result<(PathBuf, Summary)> {
    fs::create_dir_all(dir)?;
    let path = dir.join(file_name(meta));
    let tmp = path.with_extension("snap.tmp");
    let written = (|| -> io::Result<Summary> {
        let file = File::create(&tmp)?;
        let mut out = BufWriter::with_capacity(1 << 20, &file);
        let summary = write_paced(snapshot, meta, &mut out, duty)?;
        out.flush()?;
        drop(out);
        file.sync_all()?;
        fs::rename(&tmp, &path)?;
        Ok(summary)
    })();
    // A failed attempt leaves nothing behind (each has its own name: on a
    // disk filling up, they would pile up until the next start).
    let summary = written.inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })?;
    sync_dir(dir)?;
    Ok((path, summary))
}

/// Copies a snapshot file into `dir` crash-safely (restore).
pub fn install_in_dir(dir: &Path, source: &Path, meta: &Meta) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let path = dir.join(file_name(meta));
    let tmp = path.with_extension("snap.tmp");
    let copied = fs::copy(source, &tmp)
        .and_then(|_| File::open(&tmp)?.sync_all())
        .and_then(|_| fs::rename(&tmp, &path));
    copied.inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })?;
    sync_dir(dir)?;
    Ok(path)
}

/// The snapshot files in `dir`, oldest first; removes leftover temporaries
/// when `clean` is set (at start-up, when no snapshot is being written).
pub fn list(dir: &Path, clean: bool) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".snap") {
            out.push(path);
        } else if clean && name.ends_with(".snap.tmp") {
            fs::remove_file(&path)?;
        }
    }
    out.sort();
    Ok(out)
}

/// Deletes all but the newest `keep` snapshots (at least one is kept).
pub fn retain(dir: &Path, keep: usize) -> io::Result<usize> {
    let files = list(dir, false)?;
    let excess = files.len().saturating_sub(keep.max(1));
    for path in &files[..excess] {
        fs::remove_file(path)?;
    }
    if excess > 0 {
        sync_dir(dir)?;
    }
    Ok(excess)
}

/// The newest snapshot in `dir` that loads; damaged newer ones are reported
/// (`warn`) and skipped: the WAL decides whether the older one is enough.
pub fn load_newest(
    dir: &Path,
    mut warn: impl FnMut(&SnapshotError),
) -> io::Result<Option<(PathBuf, Meta, Store)>> {
    for path in list(dir, true)?.into_iter().rev() {
        match load(&path) {
            Ok((meta, _, store)) => return Ok(Some((path, meta, store))),
            Err(e) => warn(&e),
        }
    }
    Ok(None)
}

/// For the fuzz target: `body` as the uncompressed records of a file whose
/// header, frame and trailer hashes are valid (the counts are not), so the
/// record decoder and the importer see arbitrary bytes past the checksums.
#[doc(hidden)]
pub fn fuzz_wrap_body(meta: &Meta, body: &[u8]) -> Vec<u8> {
    let mut out = meta.encode().to_vec();
    let frame = zstd::bulk::compress(body, zstd_level).expect("compress in memory");
    out.extend_from_slice(&frame);
    let summary = Summary {
        body_bytes: body.len() as u64,
        body_hash: xxhash_rust::xxh3::xxh3_64(body),
        compressed_bytes: frame.len() as u64,
        compressed_hash: xxhash_rust::xxh3::xxh3_64(&frame),
        ..Summary::default()
    };
    out.extend_from_slice(&summary.encode());
    out
}

#[cfg(test)]
mod tests;
