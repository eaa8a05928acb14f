//! Recovery of the real member: a damaged last record is cut and the member
//! opens with everything before it; damage in the middle of the log stops the
//! member with an error naming the file and offset.

mod common;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::{refused_start, temp_dir, Member};
use corekv::types::*;
use corekv::wal::format::{decode_record, segment_header_bytes, Decoded};

fn write_puts(member: &Member, count: usize) {
    let mut client = member.client();
    let ids: Vec<u64> = (0..count)
        .map(|i| {
            let put = PutRequest {
                key: Bytes::from(format!("key{i:05}")),
                value: Bytes::from("v"),
                ..Default::default()
            };
            client.send(&Request::Put(put)).unwrap()
        })
        .collect();
    for id in ids {
        client.receive(id).unwrap().result.unwrap();
    }
}

fn last_segment(data_dir: &Path) -> PathBuf {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(data_dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    segments.sort();
    segments.pop().unwrap()
}

fn record_offsets(path: &Path) -> Vec<usize> {
    let bytes = std::fs::read(path).unwrap();
    let mut at = segment_header_bytes;
    let mut offsets = Vec::new();
    while let Decoded::Record(r) = decode_record(&bytes[at..]) {
        offsets.push(at);
        at += r.total_bytes;
    }
    offsets
}

fn flip_byte(path: &Path, offset: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_damaged_last_record_is_cut_and_the_member_opens_with_the_rest() {
    let dir = temp_dir("recovery-tail");
    let mut member = Member::start(&dir);
    write_puts(&member, 500);
    member.kill9();
    let segment = last_segment(&dir);
    let offsets = record_offsets(&segment);
    assert_eq!(offsets.len(), 500);
    flip_byte(&segment, offsets[499] + 40);
    member.restart();
    let mut client = member.client();
    assert!(client.get(b"key00498").unwrap().is_some());
    assert!(client.get(b"key00499").unwrap().is_none(), "the damaged record is gone");
    assert_eq!(client.status().unwrap().0.revision, 500, "499 puts after revision 1");
    assert!(member.log_text().contains("cut a torn tail"), "{}", member.log_text());
    // And the log takes new writes after the cut.
    client.put(b"after", b"cut").unwrap();
    member.restart();
    assert_eq!(member.client().get(b"after").unwrap().unwrap().value.as_ref(), b"cut");
}

#[test]
fn damage_in_the_middle_of_the_log_refuses_to_start() {
    let dir = temp_dir("recovery-middle");
    let mut member = Member::start(&dir);
    write_puts(&member, 300);
    // Later writes, each acknowledged before the next: damage in the 300
    // pipelined puts above is not in the last write (which a crash may cut).
    let mut client = member.client();
    for i in 0..5 {
        client.put(format!("later{i}").as_bytes(), b"v").unwrap();
    }
    drop(client);
    member.kill9();
    drop(member);
    let segment = last_segment(&dir);
    let offsets = record_offsets(&segment);
    flip_byte(&segment, offsets[100] + 40);
    let text = refused_start(&dir, &[], &dir.with_extension("refused.log"));
    assert!(text.contains(&segment.display().to_string()), "{text}");
    assert!(text.contains(&format!("offset {}", offsets[100])), "{text}");
    assert!(text.contains("corrupt in the middle"), "{text}");
}

/// The data dir holds every key and value: made private (0700) as etcd
/// makes it; an existing one readable by others is used, with a warning.
#[test]
fn the_data_dir_is_created_private_and_a_wider_one_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("data-dir-mode");
    std::fs::remove_dir_all(&dir).unwrap();
    let member = Member::start(&dir);
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{mode:o}");
    assert!(!member.log_text().contains("recommended"), "{}", member.log_text());
    drop(member);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let member = Member::start(&dir);
    let log = member.log_text();
    assert!(log.contains("has permission 755; 700 is recommended"), "{log}");
    drop(member);
    std::fs::remove_dir_all(&dir).unwrap();
}
