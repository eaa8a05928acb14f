//! One client connection on the native protocol.
//!
//! ```text
//!  socket ──► reader ──(reads answered at once)────────────────┐
//!               │                                               ▼
//!               └─(writes)─► log driver ─► completer ──► out queue ──► writer ──► socket
//! ```
//! The reader decodes frames and answers reads from the published snapshot;
//! writes go to the log driver, whose replies come back through the completer.
//! Requests may be pipelined; responses carry the request id and may come
//! back in any order. Every queue is bounded: a client with too many requests
//! in flight is simply not read from until some complete.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use flatbuffers::FlatBufferBuilder;
use futures_lite::{AsyncReadExt, AsyncWriteExt};

use super::shared::{Proposal, Reply, Shared};
use crate::error::{Error, ErrorCode};
use crate::limits;
use crate::metrics::{add, CoreCounters};
use crate::mvcc::{validate_request, Store};
use crate::protocol::{self, codec, FrameDecoder, FrameError, Preface};
use crate::runtime::{self, Stream};
use crate::snapshot;
use crate::types::{Request, Response, ResponseBody, SnapshotChunk, WatchResponse};

use super::outbox::{outbox, Outbox, OutboxReader};
use super::watch;

const preface_timeout: Duration = Duration::from_secs(10);

/// Encodes `response` as a frame; a response over the size limit becomes a
/// `request is too large` error.
pub fn encode_frame(
    fbb: &mut FlatBufferBuilder<'static>,
    request_id: u64,
    response: &Response,
) -> Vec<u8> {
    // Refused before encoding when its data alone is over the limit: the
    // encoding would take all of that memory first.
    let over = codec::response_bytes_lower_bound(response) > limits::response_bytes_max;
    let body: &[u8] = if over { &[] } else { codec::encode_response(fbb, response) };
    if over || body.len() > limits::response_bytes_max {
        let error = Response {
            header: response.header,
            result: Err(Error::new(ErrorCode::RequestTooLarge)),
        };
        return encode_frame(fbb, request_id, &error);
    }
    let mut frame = Vec::with_capacity(protocol::frame_header_bytes + body.len());
    protocol::write_frame(&mut frame, request_id, body);
    frame
}

pub async fn serve(stream: Stream, shared: Arc<Shared>, core: usize) {
    let counters = &shared.metrics.cores[core];
    add(&counters.connections_accepted, 1);
    // `connections_open` was counted by `placement::Placement::place`.
    let (mut reader, mut writer) = futures_lite::io::split(stream);
    let mut preface = [0u8; protocol::preface_bytes];
    let native = match runtime::timeout(preface_timeout, reader.read_exact(&mut preface)).await {
        Some(Ok(())) => protocol::parse_preface(&preface),
        _ => Preface::NotNative,
    };
    let ours = protocol::preface();
    match native {
        Preface::Native { version } if version == protocol::protocol_version => {
            if writer.write_all(&ours).await.is_ok() {
                writer = run(reader, writer, shared.clone(), core).await;
            }
        }
        Preface::Native { .. } => {
            // Tell the client which version we speak, then close.
            let _ = writer.write_all(&ours).await;
        }
        Preface::NotNative if preface.starts_with(b"GET ") || preface.starts_with(b"POST") => {
            let body = "corekv: HTTP is not served on this port yet\n";
            let reply = format!(
                "HTTP/1.1 501 Not Implemented\r\ncontent-type: text/plain\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = writer.write_all(reply.as_bytes()).await;
        }
        Preface::NotNative => {}
    }
    let _ = writer.close().await;
    counters.connections_open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
}

type Reader = futures_lite::io::ReadHalf<Stream>;
type Writer = futures_lite::io::WriteHalf<Stream>;

/// Serves frames until the client closes and every response owed is written;
/// gives the writer back for closing.
async fn run(reader: Reader, writer: Writer, shared: Arc<Shared>, core: usize) -> Writer {
    let (out_tx, out_rx) = outbox();
    let (done_tx, done_rx) = async_channel::bounded(limits::connection_requests_in_flight_max);
    let (slot_tx, slot_rx) = async_channel::bounded(limits::connection_requests_in_flight_max);
    runtime::spawn(complete_loop(done_rx, slot_rx, out_tx.clone(), shared.clone(), core));
    let session = Session {
        shared: shared.clone(),
        core,
        out: out_tx,
        done: done_tx,
        slots: slot_tx,
        fbb: FlatBufferBuilder::new(),
        connection: next_connection.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        next_watch_id: 0,
        watching: false,
    };
    let reading = async move {
        let mut session = session;
        session.read_loop(reader).await;
        // The client is gone: so are its watches (which hold the out queue).
        if session.watching {
            watch::hub(&session.shared, session.core).drop_connection(session.connection);
        }
    };
    let writing = write_loop(writer, out_rx, &shared.metrics.cores[core]);
    futures_lite::future::zip(reading, writing).await.1
}

/// Connection numbers, unique in the process (watches are per connection).
static next_connection: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

struct Session {
    shared: Arc<Shared>,
    core: usize,
    out: Outbox,
    done: async_channel::Sender<Reply>,
    slots: async_channel::Sender<()>,
    fbb: FlatBufferBuilder<'static>,
    connection: u64,
    /// The last watch id the server picked on this connection.
    next_watch_id: i64,
    watching: bool,
}

impl Session {
    fn counters(&self) -> &CoreCounters {
        &self.shared.metrics.cores[self.core]
    }

    async fn read_loop(&mut self, mut reader: Reader) {
        let mut decoder = FrameDecoder::for_requests();
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            loop {
                match decoder.next_frame() {
                    Ok(Some((header, body))) => {
                        if !self.handle(header.request_id, body).await {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(FrameError::TooLarge { request_id, .. }) => {
                        // The stream cannot be resynchronised: answer, then close.
                        let error = Error::new(ErrorCode::RequestTooLarge);
                        self.respond(request_id, Err(error), self.revision()).await;
                        return;
                    }
                }
            }
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    add(&self.counters().bytes_received, n as u64);
                    decoder.push(&buffer[..n]);
                }
            }
        }
    }

    fn revision(&self) -> i64 {
        self.shared.published.load().snapshot.revision()
    }

    async fn respond(
        &mut self,
        request_id: u64,
        result: Result<ResponseBody, Error>,
        revision: i64,
    ) -> bool {
        if result.is_err() {
            add(&self.counters().requests_failed, 1);
        }
        let response = Response { header: self.shared.header(revision), result };
        let frame = encode_frame(&mut self.fbb, request_id, &response);
        self.out.send(frame).await
    }

    /// Handles one request; false when the connection should close.
    async fn handle(&mut self, request_id: u64, body: Bytes) -> bool {
        // etcd's --max-request-bytes: a whole frame (up to frame_bytes_max)
        // arrived, so the connection goes on.
        if body.len() > limits::request_bytes_max {
            let error = Error::new(ErrorCode::RequestTooLarge);
            return self.respond(request_id, Err(error), self.revision()).await;
        }
        let request =
            match codec::decode_request(&body).and_then(|r| validate_request(&r).map(|_| r)) {
                Ok(request) => request,
                Err(error) => return self.respond(request_id, Err(error), self.revision()).await,
            };
        if request == Request::Snapshot {
            add(&self.counters().requests_read, 1);
            return self.stream_snapshot(request_id).await;
        }
        if let Request::WatchCreate(_) | Request::WatchCancel(_) | Request::WatchProgress = request
        {
            add(&self.counters().requests_read, 1);
            return self.handle_watch(request_id, request).await;
        }
        let (request, body) = match request {
            Request::LeaseKeepAlive(id) => {
                add(&self.counters().requests_write, 1);
                // Counted in flight like a write: the answer comes through
                // `done` once the new deadline is in the log.
                if self.slots.send(()).await.is_err() {
                    return false;
                }
                // A lease granted but not yet published is not renewed.
                let known = self.shared.published.load().snapshot.leases().contains(id);
                let lessor = &self.shared.lessor;
                if !known || lessor.renew_durably(id, self.done.clone(), request_id).is_none() {
                    let unknown = crate::types::LeaseKeepAliveResponse { id, ttl: 0 };
                    let response = Response {
                        header: self.shared.header(self.revision()),
                        result: Ok(ResponseBody::LeaseKeepAlive(unknown)),
                    };
                    // Through `done` too, which gives the slot back.
                    let _ = self.done.try_send((request_id, Box::new(response)));
                }
                return true;
            }
            Request::LeaseTimeToLive(_) | Request::LeaseLeases | Request::LeaseCheckpoint(_) => {
                add(&self.counters().requests_read, 1);
                let published = self.shared.published.load();
                let revision = published.snapshot.revision();
                let result = super::lessor::serve(&self.shared, &published.snapshot, &request);
                drop(published);
                return self.respond(request_id, result, revision).await;
            }
            Request::LeaseGrant(grant) => {
                let grant = super::lessor::prepare_grant(&self.shared, grant);
                let payload = Bytes::copy_from_slice(codec::encode_request(&mut self.fbb, &grant));
                (grant, payload)
            }
            request => (request, body),
        };
        if !request.is_write() {
            add(&self.counters().requests_read, 1);
            let published = self.shared.published.load();
            let snapshot = &published.snapshot;
            // Served here from memory; a read that needs a page from the
            // disk runs again on a blocking thread instead of stalling the
            // core's other connections.
            let read = |snapshot: &crate::mvcc::Snapshot, request: &Request| match request {
                Request::Range(r) => snapshot.range(r).map(ResponseBody::Range),
                Request::Txn(_) => Store::from_snapshot(snapshot.clone()).apply(request),
                _ => unreachable!("writes go to the log"),
            };
            let result = match &request {
                Request::Status => Ok(ResponseBody::Status(self.shared.status(&published))),
                request => {
                    let (result, missed) = crate::pagestore::cache_only(|| read(snapshot, request));
                    if missed {
                        let (snapshot, request) = (snapshot.clone(), request.clone());
                        let revision = snapshot.revision();
                        drop(published);
                        add(&self.counters().reads_from_disk, 1);
                        let result = runtime::run_blocking(move || read(&snapshot, &request)).await;
                        return self.respond(request_id, result, revision).await;
                    }
                    result
                }
            };
            let revision = snapshot.revision();
            drop(published);
            return self.respond(request_id, result, revision).await;
        }
        add(&self.counters().requests_write, 1);
        if self.slots.send(()).await.is_err() {
            return false;
        }
        let proposal = Proposal {
            request,
            payload: body,
            request_id,
            reply: self.done.clone(),
            origin: Some(self.core),
        };
        if self.shared.proposals.send(proposal).await.is_err() {
            let error = Error::new(ErrorCode::Stopping);
            return self.respond(request_id, Err(error), self.revision()).await;
        }
        true
    }
}

impl Session {
    /// Watch requests: a create answers `created` on its id, then the core's
    /// hub sends the watch's events on that id; a cancel ends that stream
    /// with `canceled` and answers the same on its own id; a progress
    /// request answers the revision every watch of the connection has been
    /// sent all events up to.
    async fn handle_watch(&mut self, request_id: u64, request: Request) -> bool {
        let hub = watch::hub(&self.shared, self.core);
        let revision = self.revision();
        let reply = |watch: WatchResponse| Ok(ResponseBody::Watch(watch));
        match request {
            Request::WatchCreate(create) => {
                // As etcd: a range that holds no key (end ≤ key) is created
                // and canceled at once, with watch id -1 (before any id is
                // taken or checked).
                if crate::mvcc::span::Span::new(&create.key, &create.range_end).is_empty() {
                    let canceled = WatchResponse {
                        watch_id: -1,
                        created: true,
                        canceled: true,
                        cancel_reason: "mvcc: watcher range is empty".into(),
                        ..Default::default()
                    };
                    return self.respond(request_id, reply(canceled), revision).await;
                }
                let watch_id = if create.watch_id != 0 {
                    create.watch_id
                } else {
                    loop {
                        self.next_watch_id += 1;
                        if !hub.exists(self.connection, self.next_watch_id) {
                            break self.next_watch_id;
                        }
                    }
                };
                if watch_id < 0 || hub.exists(self.connection, watch_id) {
                    let error = Error::with_message(
                        ErrorCode::InvalidArgument,
                        format!("etcdserver: watch id {watch_id} is in use or invalid"),
                    );
                    return self.respond(request_id, Err(error), revision).await;
                }
                // The watch starts right after the revision `created` names.
                let current = hub.begin_create();
                let created = WatchResponse { watch_id, created: true, ..Default::default() };
                if !self.respond(request_id, reply(created), current).await {
                    hub.abandon();
                    return false;
                }
                // No await since `created` was queued: the hub cannot send
                // this watch's events before it.
                hub.create(self.connection, request_id, watch_id, &create, &self.out, current);
                self.watching = true;
                true
            }
            Request::WatchCancel(watch_id) => {
                let Some(stream) = hub.cancel(self.connection, watch_id) else {
                    let error = Error::with_message(
                        ErrorCode::InvalidArgument,
                        format!("etcdserver: no watch with id {watch_id} on this connection"),
                    );
                    return self.respond(request_id, Err(error), revision).await;
                };
                let canceled = WatchResponse { watch_id, canceled: true, ..Default::default() };
                self.respond(stream, reply(canceled.clone()), revision).await
                    && self.respond(request_id, reply(canceled), revision).await
            }
            Request::WatchProgress => {
                let progress = hub.progress(self.connection);
                let notification = WatchResponse { watch_id: -1, ..Default::default() };
                self.respond(request_id, reply(notification), progress).await
            }
            _ => unreachable!("only watch requests come here"),
        }
    }
}

/// What the snapshot thread hands the connection.
enum SnapshotPart {
    Chunk(Vec<u8>),
    Done,
    Failed(String),
}

/// Cuts the snapshot writer's output into chunks for the connection; a send
/// to a connection that is gone stops the writer.
struct ChunkSink {
    parts: async_channel::Sender<SnapshotPart>,
    buffer: Vec<u8>,
}

impl ChunkSink {
    fn send(&mut self) -> std::io::Result<()> {
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(snapshot_chunk_bytes));
        self.parts
            .send_blocking(SnapshotPart::Chunk(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client gone"))
    }
}

impl std::io::Write for ChunkSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= snapshot_chunk_bytes {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buffer.is_empty() {
            self.send()?;
        }
        Ok(())
    }
}

const snapshot_chunk_bytes: usize = 1 << 20;

/// Snapshot streams being served, process-wide.
static snapshot_streams: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// One of them, counted while it lives.
struct SnapshotStream;

impl SnapshotStream {
    fn start() -> Option<SnapshotStream> {
        use std::sync::atomic::Ordering::SeqCst;
        let counted = snapshot_streams
            .fetch_update(SeqCst, SeqCst, |n| (n < limits::snapshot_streams_max).then_some(n + 1));
        counted.ok().map(|_| SnapshotStream)
    }
}

impl Drop for SnapshotStream {
    fn drop(&mut self) {
        snapshot_streams.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Session {
    /// Streams a snapshot of the published state: a thread writes it (the
    /// log driver and every other reader go on), this connection forwards the
    /// chunks as they come, with back-pressure from the client's socket.
    async fn stream_snapshot(&mut self, request_id: u64) -> bool {
        // Each stream has a thread of its own: a few at once, process-wide.
        let Some(_stream) = SnapshotStream::start() else {
            let message = format!(
                "{} snapshots are being saved already; try again later",
                limits::snapshot_streams_max
            );
            let error = Error::with_message(ErrorCode::SnapshotFailed, message);
            return self.respond(request_id, Err(error), self.revision()).await;
        };
        let published = self.shared.published.load_full();
        let state = published.snapshot.clone();
        let meta = self.shared.snapshot_meta(&published);
        drop(published);
        let revision = state.revision();
        let (parts_tx, parts) = async_channel::bounded(4);
        let writer = runtime::spawn_background("snapshot-save", move || {
            let mut sink = ChunkSink {
                parts: parts_tx.clone(),
                buffer: Vec::with_capacity(snapshot_chunk_bytes),
            };
            let duty = limits::snapshot_work_fraction;
            let last = match snapshot::write_paced(&state, &meta, &mut sink, duty) {
                Ok(_) => SnapshotPart::Done,
                Err(e) => SnapshotPart::Failed(e.to_string()),
            };
            let _ = parts_tx.send_blocking(last);
        });
        if let Err(e) = writer {
            let error = Error::with_message(ErrorCode::SnapshotFailed, e.to_string());
            return self.respond(request_id, Err(error), revision).await;
        }
        loop {
            let (result, last) = match parts.recv().await {
                Ok(SnapshotPart::Chunk(blob)) => {
                    (Ok(SnapshotChunk { blob: Bytes::from(blob), done: false }), false)
                }
                Ok(SnapshotPart::Done) => {
                    (Ok(SnapshotChunk { blob: Bytes::new(), done: true }), true)
                }
                Ok(SnapshotPart::Failed(message)) => {
                    (Err(Error::with_message(ErrorCode::SnapshotFailed, message)), true)
                }
                Err(_) => {
                    let message = "the snapshot writer stopped early";
                    (Err(Error::with_message(ErrorCode::SnapshotFailed, message)), true)
                }
            };
            // The out queue's byte bound (a few chunks) holds a slow client
            // back: it holds a few MiB in the server, not the file. A client
            // that takes nothing for the stall timeout loses the stream (and
            // the connection), so that it cannot hold its place for ever.
            let stall = self.shared.snapshot_stall_timeout;
            let response = result.map(ResponseBody::Snapshot);
            match runtime::timeout(stall, self.respond(request_id, response, revision)).await {
                Some(true) => {}
                Some(false) => return false,
                None => {
                    eprintln!(
                        "corekv: a snapshot stream's client took no data for {}s; ending it",
                        stall.as_secs_f64()
                    );
                    return false;
                }
            }
            if last {
                return true;
            }
        }
    }
}

async fn complete_loop(
    done: async_channel::Receiver<Reply>,
    slots: async_channel::Receiver<()>,
    out: Outbox,
    shared: Arc<Shared>,
    core: usize,
) {
    let mut fbb = FlatBufferBuilder::new();
    while let Ok((request_id, response)) = done.recv().await {
        let _ = slots.try_recv();
        if response.result.is_err() {
            add(&shared.metrics.cores[core].requests_failed, 1);
        }
        if !out.send(encode_frame(&mut fbb, request_id, &response)).await {
            return;
        }
    }
}

async fn write_loop(mut writer: Writer, out: OutboxReader, counters: &CoreCounters) -> Writer {
    while let Some(mut buffer) = out.recv().await {
        while buffer.len() < 256 * 1024 {
            match out.try_recv() {
                Some(more) => buffer.extend_from_slice(&more),
                None => break,
            }
        }
        if writer.write_all(&buffer).await.is_err() {
            break;
        }
        add(&counters.bytes_sent, buffer.len() as u64);
    }
    let _ = writer.flush().await;
    writer
}
