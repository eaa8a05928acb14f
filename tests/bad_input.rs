//! Bad input against the real server: every case gets a clear error or a
//! closed connection, and the server keeps serving everyone else.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::Bytes;
use common::{temp_dir, Member};
use corekv::client::{Client, ClientError};
use corekv::error::ErrorCode;
use corekv::limits;
use corekv::protocol::{self, FrameHeader};
use corekv::types::*;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn still_serving(member: &Member) {
    let mut client = member.client();
    client.put(b"alive", b"yes").expect("the server still takes writes");
    assert_eq!(client.get(b"alive").unwrap().unwrap().value, b("yes"));
}

fn raw_connection(member: &Member) -> TcpStream {
    let mut stream = TcpStream::connect(&member.endpoint).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(&protocol::preface()).unwrap();
    let mut preface = [0u8; protocol::preface_bytes];
    stream.read_exact(&mut preface).unwrap();
    stream
}

fn error_code(result: Result<(ResponseHeader, ResponseBody), ClientError>) -> ErrorCode {
    match result {
        Err(ClientError::Server(e)) => e.code,
        other => panic!("expected a server error, got {other:?}"),
    }
}

#[test]
fn bad_requests_get_clear_errors_and_the_server_keeps_serving() {
    let dir = temp_dir("bad-input");
    let member = Member::start(&dir);
    let mut client = member.client();

    // Malformed flatbuffers: an error, and the connection stays usable.
    for garbage in [&b"\x00"[..], b"\xff\xff\xff\xff\xff\xff\xff\xff", &[0x41u8; 300]] {
        let id = client.send_raw(garbage).unwrap();
        let response = client.receive(id).unwrap();
        assert_eq!(response.result.unwrap_err().code, ErrorCode::MalformedRequest);
    }
    // An unknown operation: a valid Request table whose union tag is 99.
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let status =
        protocol::wire::StatusRequest::create(&mut fbb, &protocol::wire::StatusRequestArgs {});
    let args = protocol::wire::RequestArgs {
        body_type: protocol::wire::RequestBody(99),
        body: Some(status.as_union_value()),
    };
    let root = protocol::wire::Request::create(&mut fbb, &args);
    fbb.finish(root, None);
    let id = client.send_raw(fbb.finished_data()).unwrap();
    assert_eq!(client.receive(id).unwrap().result.unwrap_err().code, ErrorCode::UnknownOperation);

    // Keys and values over the limits, with etcd's message.
    let big_key = Bytes::from(vec![b'k'; limits::key_bytes_max + 1]);
    let put = Request::Put(PutRequest { key: big_key, value: b("v"), ..Default::default() });
    assert_eq!(error_code(client.call(&put)), ErrorCode::RequestTooLarge);
    let big_value = Bytes::from(vec![b'v'; limits::value_bytes_max + 1]);
    let put = Request::Put(PutRequest { key: b("k"), value: big_value, ..Default::default() });
    match client.call(&put) {
        Err(ClientError::Server(e)) => assert_eq!(e.message, "etcdserver: request is too large"),
        other => panic!("{other:?}"),
    }
    // Empty key, a txn over the op limit, duplicate keys.
    let put = Request::Put(PutRequest { key: Bytes::new(), value: b("v"), ..Default::default() });
    assert_eq!(error_code(client.call(&put)), ErrorCode::EmptyKey);
    let op = RequestOp::Put(PutRequest { key: b("x"), value: b("v"), ..Default::default() });
    let ops: Vec<_> = (0..=limits::txn_ops_max)
        .map(|i| {
            RequestOp::Put(PutRequest { key: Bytes::from(format!("k{i}")), ..Default::default() })
        })
        .collect();
    let txn = Request::Txn(TxnRequest { compare: vec![], success: ops, failure: vec![] });
    assert_eq!(error_code(client.call(&txn)), ErrorCode::TooManyOps);
    let txn = Request::Txn(TxnRequest {
        compare: vec![],
        success: vec![op.clone(), op],
        failure: vec![],
    });
    assert_eq!(error_code(client.call(&txn)), ErrorCode::DuplicateKey);
    // A future revision and an unknown lease.
    let get =
        Request::Range(RangeRequest { key: b("k"), revision: 1_000_000, ..Default::default() });
    assert_eq!(error_code(client.call(&get)), ErrorCode::FutureRevision);
    let put =
        Request::Put(PutRequest { key: b("k"), value: b("v"), lease: 7, ..Default::default() });
    assert_eq!(error_code(client.call(&put)), ErrorCode::LeaseNotFound);
    still_serving(&member);

    // An oversize frame: an error for its id, then the connection closes.
    let mut stream = raw_connection(&member);
    let header = FrameHeader { body_bytes: (limits::frame_bytes_max + 1) as u32, request_id: 42 };
    stream.write_all(&header.encode()).unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    let response_header = FrameHeader::decode(&reply, usize::MAX).unwrap();
    assert_eq!(response_header.request_id, 42);
    let body = Bytes::copy_from_slice(&reply[protocol::frame_header_bytes..]);
    let response = protocol::codec::decode_response(&body).unwrap();
    assert_eq!(response.result.unwrap_err().code, ErrorCode::RequestTooLarge);
    still_serving(&member);

    // A frame within the 2 MiB frame limit but over etcd's 1.5 MiB request
    // limit: an error, and the connection goes on.
    let id = client.send_raw(&vec![0x41u8; limits::request_bytes_max + 1]).unwrap();
    assert_eq!(client.receive(id).unwrap().result.unwrap_err().code, ErrorCode::RequestTooLarge);
    still_serving(&member);

    // A client that disconnects mid-frame, mid-preface, or says nothing.
    let mut stream = raw_connection(&member);
    stream.write_all(&FrameHeader { body_bytes: 1000, request_id: 1 }.encode()).unwrap();
    stream.write_all(&[0u8; 10]).unwrap();
    drop(stream);
    let mut stream = TcpStream::connect(&member.endpoint).unwrap();
    stream.write_all(b"COR").unwrap();
    drop(stream);
    let idle = TcpStream::connect(&member.endpoint).unwrap();
    still_serving(&member);
    drop(idle);

    // Another protocol: HTTP gets a 501 and a close; a wrong version is told ours.
    let mut stream = TcpStream::connect(&member.endpoint).unwrap();
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 501"), "{reply}");
    let mut stream = TcpStream::connect(&member.endpoint).unwrap();
    stream.write_all(b"COREKV\x09\x00").unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, protocol::preface());
    still_serving(&member);
}

#[test]
fn ten_thousand_pipelined_requests_on_one_connection_are_all_answered() {
    let dir = temp_dir("pipeline");
    let member = Member::start(&dir);
    let mut client = member.client();
    let mut expected = std::collections::HashMap::new();
    for i in 0..10_000u64 {
        let key = Bytes::from(format!("p{:05}", i % 500));
        let request = if i % 3 == 0 {
            Request::Range(RangeRequest { key, ..Default::default() })
        } else {
            Request::Put(PutRequest {
                key,
                value: Bytes::from(i.to_string()),
                ..Default::default()
            })
        };
        let id = client.send(&request).unwrap();
        expected.insert(id, i % 3 == 0);
    }
    let mut revisions = Vec::new();
    for _ in 0..10_000 {
        let (id, response) = client.receive_any().unwrap();
        let is_read = expected.remove(&id).expect("each id answered once");
        match (is_read, response.result.unwrap()) {
            (true, ResponseBody::Range(_)) => {}
            (false, ResponseBody::Put(_)) => revisions.push(response.header.revision),
            (_, other) => panic!("wrong response kind {other:?}"),
        }
    }
    assert!(expected.is_empty());
    // Writes on one connection are applied in the order they were sent.
    assert!(revisions.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(revisions.len(), 6666);
    still_serving(&member);
    let _ =
        Client::connect(std::slice::from_ref(&member.endpoint), Duration::from_secs(1)).unwrap();
}

fn peak_rss_kib(member: &Member) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", member.child.id())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Answers larger than the response limit are refused before they are
/// built: a small read-only txn naming one large value hundreds of times
/// (its answer would be ~700 MiB), and a range over more than the limit,
/// cost the server no memory of that size.
#[test]
fn answers_over_the_response_limit_are_refused_before_they_take_memory() {
    let dir = temp_dir("bad-input-large-answers");
    let member = Member::start(&dir);
    let mut client = member.client();
    let value = Bytes::from(vec![7u8; 1400 * 1024]);
    for i in 0..50 {
        let put = PutRequest {
            key: b(&format!("big/{i:02}")),
            value: value.clone(),
            ..Default::default()
        };
        client.call(&Request::Put(put)).unwrap();
    }
    let before = peak_rss_kib(&member);
    let range = || RequestOp::Range(RangeRequest { key: b("big/00"), ..Default::default() });
    let inner = || {
        RequestOp::Txn(TxnRequest {
            success: (0..120).map(|_| range()).collect(),
            ..Default::default()
        })
    };
    let txn = Request::Txn(TxnRequest {
        success: (0..4).map(|_| inner()).collect(),
        ..Default::default()
    });
    assert_eq!(error_code(client.call(&txn)), ErrorCode::RequestTooLarge);
    // 50 × 1.4 MiB is over the 64 MiB limit: refused; with a limit, answered.
    let all = RangeRequest { key: b("big/"), range_end: b("big0"), ..Default::default() };
    assert_eq!(error_code(client.call(&Request::Range(all.clone()))), ErrorCode::RequestTooLarge);
    // The same range inside a txn, read-only and writing: refused too, and
    // the server (which answers txns on the driver's core) keeps serving.
    let in_txn = |write: bool| {
        let mut success = vec![RequestOp::Range(all.clone())];
        if write {
            let put = PutRequest { key: b("w"), value: b("v"), ..Default::default() };
            success.insert(0, RequestOp::Put(put));
        }
        Request::Txn(TxnRequest { success, ..Default::default() })
    };
    assert_eq!(error_code(client.call(&in_txn(false))), ErrorCode::RequestTooLarge);
    assert_eq!(error_code(client.call(&in_txn(true))), ErrorCode::RequestTooLarge);
    still_serving(&member);
    let some = RangeRequest { limit: 10, ..all.clone() };
    match client.call(&Request::Range(some)).unwrap().1 {
        ResponseBody::Range(r) => assert!(r.kvs.len() == 10 && r.more && r.count == 50),
        other => panic!("{other:?}"),
    }
    let count = RangeRequest { count_only: true, ..all };
    match client.call(&Request::Range(count)).unwrap().1 {
        ResponseBody::Range(r) => assert_eq!(r.count, 50),
        other => panic!("{other:?}"),
    }
    let grown_mib = (peak_rss_kib(&member) - before) / 1024;
    assert!(grown_mib < 200, "the server's peak memory grew by {grown_mib} MiB");
    still_serving(&member);
}

/// A client that pipelines large reads and reads nothing back holds at most
/// the connection's queue bound in the server (the server stops reading its
/// requests), and gets every answer once it reads.
#[test]
fn a_client_that_does_not_read_holds_a_bounded_queue_in_the_server() {
    let dir = temp_dir("bad-input-unread");
    let member = Member::start(&dir);
    let mut client = member.client();
    let value = vec![9u8; 1024 * 1024];
    client.put(b"large", &value).unwrap();
    let before = peak_rss_kib(&member);
    let mut stream = raw_connection(&member);
    let mut reader = stream.try_clone().unwrap();
    let requests = 800u64;
    // Sent from another thread: once the server stops reading, sends block.
    let sender = std::thread::spawn(move || {
        let mut fbb = flatbuffers::FlatBufferBuilder::new();
        let get = Request::Range(RangeRequest { key: b("large"), ..Default::default() });
        for id in 1..=requests {
            let body = protocol::codec::encode_request(&mut fbb, &get).to_vec();
            let mut frame = Vec::new();
            protocol::write_frame(&mut frame, id, &body);
            stream.write_all(&frame).unwrap();
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    let grown_mib = (peak_rss_kib(&member) - before) / 1024;
    still_serving(&member);
    reader.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    for _ in 0..requests {
        let mut header = [0u8; protocol::frame_header_bytes];
        reader.read_exact(&mut header).unwrap();
        let header = FrameHeader::decode(&header, usize::MAX).unwrap();
        let mut body = vec![0u8; header.body_bytes as usize];
        reader.read_exact(&mut body).unwrap();
        match protocol::codec::decode_response(&Bytes::from(body)).unwrap().result.unwrap() {
            ResponseBody::Range(r) => assert_eq!(r.kvs[0].value.len(), value.len()),
            other => panic!("{other:?}"),
        }
    }
    sender.join().unwrap();
    assert!(grown_mib < 100, "the server held {grown_mib} MiB for a client that did not read");
}
