//! The fuzz targets' entry points over random and mutated inputs, on every
//! test run (the long runs are `cargo fuzz run frame_decoder|wal_record|pagestore_page|snapshot_file`).

use bytes::Bytes;
use corekv::protocol::{codec, write_frame};
use corekv::types::*;
use proptest::prelude::*;

/// A valid stream of frames to mutate: mutations of valid input reach deeper
/// than random bytes.
fn valid_stream() -> Vec<u8> {
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let mut stream = vec![7u8];
    let requests = [
        Request::Put(PutRequest {
            key: Bytes::from("k"),
            value: Bytes::from("v"),
            ..Default::default()
        }),
        Request::Range(RangeRequest {
            key: Bytes::from("a"),
            range_end: Bytes::from("z"),
            limit: 3,
            ..Default::default()
        }),
        Request::Txn(TxnRequest {
            compare: vec![Compare { key: Bytes::from("k"), ..Default::default() }],
            success: vec![RequestOp::DeleteRange(DeleteRangeRequest {
                key: Bytes::from("k"),
                ..Default::default()
            })],
            failure: vec![],
        }),
    ];
    for (id, request) in requests.iter().enumerate() {
        let body = codec::encode_request(&mut fbb, request).to_vec();
        write_frame(&mut stream, id as u64, &body);
    }
    stream
}

fn valid_segment() -> Vec<u8> {
    let mut segment =
        corekv::wal::format::SegmentHeader { sequence: 0, first_index: 1 }.encode().to_vec();
    for i in 1..20u64 {
        corekv::wal::format::encode_record(&mut segment, 1, i, 0, &vec![i as u8; i as usize * 3]);
    }
    segment
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn frame_decoder_never_panics_on_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        corekv::fuzz::frame_decoder(&data);
    }

    #[test]
    fn frame_decoder_never_panics_on_mutated_frames(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut data = valid_stream();
        for (at, byte) in flips {
            let len = data.len();
            data[at % len] ^= byte;
        }
        corekv::fuzz::frame_decoder(&data);
    }

    #[test]
    fn wal_record_decoding_never_panics(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8), cut in any::<usize>()) {
        let mut data = valid_segment();
        for (at, byte) in flips {
            let len = data.len();
            data[at % len] ^= byte;
        }
        let cut = cut % (data.len() + 1);
        corekv::fuzz::wal_record(&data[..cut]);
    }

    #[test]
    fn pagestore_page_decoding_never_panics(data in proptest::collection::vec(any::<u8>(), 0..4200)) {
        corekv::fuzz::pagestore_page(&data);
    }

    #[test]
    fn snapshot_decoding_never_panics(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6), cut in any::<usize>(), raw in proptest::collection::vec(any::<u8>(), 0..300)) {
        corekv::fuzz::snapshot_file(&raw);
        let (mut body, file) = valid_snapshot();
        corekv::fuzz::snapshot_file(&file);
        corekv::fuzz::snapshot_file(&body);
        for (at, byte) in flips {
            let len = body.len();
            body[at % len] ^= byte;
        }
        let cut = cut % (body.len() + 1);
        corekv::fuzz::snapshot_file(&body[..cut]);
    }
}

/// A snapshot file of a small store with history, and its uncompressed body.
fn valid_snapshot() -> (Vec<u8>, Vec<u8>) {
    use corekv::mvcc::Store;
    use corekv::snapshot::{format, Meta};
    let mut store = Store::new();
    for i in 0..40u32 {
        let request = corekv::types::Request::Put(corekv::types::PutRequest {
            key: bytes::Bytes::from(format!("k{}", i % 9)),
            value: bytes::Bytes::from(vec![b'x'; (i % 13) as usize]),
            ..Default::default()
        });
        store.apply(&request).unwrap();
    }
    store.compact(30).unwrap();
    let snapshot = store.snapshot();
    let meta = Meta {
        revision: snapshot.revision(),
        compact_revision: snapshot.compact_revision(),
        ..Default::default()
    };
    let mut file = Vec::new();
    corekv::snapshot::write(&snapshot, &meta, &mut file).unwrap();
    let frame = &file[format::header_bytes..file.len() - format::trailer_bytes];
    (zstd::decode_all(frame).unwrap(), file)
}
