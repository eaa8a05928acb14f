//! Recovery of the real member: a damaged last record is cut and the member
//! opens with everything before it; damage in the middle of the log stops the
//! member with an error naming the file and offset.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use common::{refused_start, require_program, temp_dir, Member};
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

/// A page store that can no longer be written (here made immutable, as a
/// failing or read-only-remounted disk would make it) stops the member at the
/// first checkpoint that fails, instead of leaving every later change in
/// memory and in an unpurgeable WAL; once the disk is writable again, a
/// restart has every acknowledged write.
#[test]
fn a_page_store_that_cannot_be_written_stops_the_member_and_loses_nothing() {
    let dir = temp_dir("db-immutable");
    let mut member = Member::start_with(&dir, &["--snapshot-count", "50"]);
    let db = dir.join("db");
    let chattr = |flag: &str| {
        let status = std::process::Command::new(require_program("chattr"))
            .arg(flag)
            .arg(&db)
            .status()
            .unwrap();
        assert!(status.success(), "chattr {flag} {} (needs root and ext4)", db.display());
    };
    chattr("+i");
    let mut client = member.client();
    let mut acknowledged = Vec::new();
    for i in 0..400 {
        let key = format!("k{i:03}");
        match client.put(key.as_bytes(), b"v") {
            Ok(header) => acknowledged.push((key, header.revision)),
            Err(_) => break,
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = member.child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            chattr("-i");
            panic!("still serving; log:\n{}", member.log_text());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    chattr("-i");
    assert_eq!(status.code(), Some(70), "log:\n{}", member.log_text());
    assert!(member.log_text().contains("cannot be reopened"), "{}", member.log_text());
    assert!(acknowledged.len() >= 50, "a checkpoint was due: {}", acknowledged.len());
    member.restart();
    let mut client = member.client();
    for (key, revision) in &acknowledged {
        let kv = client.get(key.as_bytes()).unwrap().unwrap_or_else(|| panic!("{key} lost"));
        assert_eq!(kv.mod_revision, *revision, "{key}");
    }
    drop(client);
    drop(member);
    std::fs::remove_dir_all(&dir).unwrap();
}
