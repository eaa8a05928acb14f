//! Entry points for the fuzz targets in `fuzz/` (cargo fuzz), also run over
//! random inputs by the ordinary test suite (`tests/fuzz_smoke.rs`), so the
//! decoders are exercised on every CI run. Each must never panic, whatever
//! the bytes.

use bytes::Bytes;

use crate::protocol::{codec, FrameDecoder};
use crate::wal::format::{decode_record, Decoded, SegmentHeader};

/// The server's view of a byte stream: split into frames at chunk boundaries
/// chosen by the first byte, decode every request body.
pub fn frame_decoder(data: &[u8]) {
    let Some((&chunk, stream)) = data.split_first() else { return };
    let chunk = usize::from(chunk).max(1);
    let mut decoder = FrameDecoder::for_requests();
    for piece in stream.chunks(chunk) {
        decoder.push(piece);
        loop {
            match decoder.next_frame() {
                Ok(Some((_, body))) => {
                    if let Ok(request) = codec::decode_request(&body) {
                        let _ = crate::mvcc::validate_request(&request);
                    }
                    let _ = codec::decode_response(&body);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    let whole = Bytes::copy_from_slice(stream);
    let _ = codec::decode_request(&whole);
    let _ = codec::decode_response(&whole);
}

/// The page store's view of a page read from disk: the meta decoder and every
/// page decoder (past the checksum, so the bodies are exercised).
pub fn pagestore_page(data: &[u8]) {
    crate::pagestore::fuzz_decode_page(data);
}

/// A snapshot file: as read from disk (checksums first), then the same bytes
/// as the records of an otherwise well-formed file, loaded into a store whose
/// invariants must hold whatever the importer accepted.
pub fn snapshot_file(data: &[u8]) {
    use crate::snapshot;
    let _ = snapshot::read(std::io::Cursor::new(data), data.len() as u64, |_| Ok(()));
    let meta = snapshot::Meta { revision: 1000, compact_revision: 10, ..Default::default() };
    let file = snapshot::fuzz_wrap_body(&meta, data);
    let mut importer = crate::mvcc::Importer::new(meta.revision, meta.compact_revision)
        .expect("a valid revision pair");
    let mut accepted = 0usize;
    let _ = snapshot::read(std::io::Cursor::new(&file), file.len() as u64, |record| {
        let key = matches!(record, snapshot::Record::Key(..));
        record.import(&mut importer).map(|_| accepted += usize::from(key))
    });
    let store = importer.finish();
    store.check_invariants();
    assert_eq!(store.snapshot().export().count(), accepted);
}

/// WAL recovery's view of a segment: the header, then every record at every
/// 8-byte offset (as the search for valid records after damage does).
pub fn wal_record(data: &[u8]) {
    let _ = SegmentHeader::decode(data);
    let mut at = 0;
    while at < data.len() {
        if let Decoded::Record(record) = decode_record(&data[at..]) {
            assert!(record.total_bytes <= data.len() - at);
            assert!(record.payload.len() + 32 <= record.total_bytes);
        }
        at += 8;
    }
}
