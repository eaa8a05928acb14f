//! An async client of corekv's native protocol on a tokio current-thread
//! runtime: many client tasks share one connection; requests are pipelined and
//! responses matched by request id.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use bytes::Bytes;
use corekv::protocol::{self, codec, FrameDecoder, Preface};
use corekv::types::{Request, Response};
use flatbuffers::FlatBufferBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Notify};

pub struct Connection {
    pending: RefCell<HashMap<u64, oneshot::Sender<Bytes>>>,
    out: RefCell<Vec<u8>>,
    wake_writer: Notify,
    next_id: Cell<u64>,
    fbb: RefCell<FlatBufferBuilder<'static>>,
    broken: Cell<bool>,
}

impl Connection {
    pub async fn connect(endpoint: &str) -> Result<Rc<Connection>, String> {
        let mut stream =
            TcpStream::connect(endpoint).await.map_err(|e| format!("{endpoint}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        stream.write_all(&protocol::preface()).await.map_err(|e| e.to_string())?;
        let mut preface = [0u8; protocol::preface_bytes];
        stream.read_exact(&mut preface).await.map_err(|e| e.to_string())?;
        if !matches!(protocol::parse_preface(&preface), Preface::Native { version } if version == protocol::protocol_version)
        {
            return Err(format!(
                "{endpoint}: not a corekv server of protocol version {}",
                protocol::protocol_version
            ));
        }
        let connection = Rc::new(Connection {
            pending: RefCell::new(HashMap::new()),
            out: RefCell::new(Vec::with_capacity(64 * 1024)),
            wake_writer: Notify::new(),
            next_id: Cell::new(1),
            fbb: RefCell::new(FlatBufferBuilder::new()),
            broken: Cell::new(false),
        });
        let (reader, writer) = stream.into_split();
        tokio::task::spawn_local(read_loop(connection.clone(), reader));
        tokio::task::spawn_local(write_loop(connection.clone(), writer));
        Ok(connection)
    }

    /// Sends `request` and waits for its response.
    pub async fn call(&self, request: &Request) -> Result<Response, String> {
        if self.broken.get() {
            return Err("connection closed".into());
        }
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let (tx, rx) = oneshot::channel();
        self.pending.borrow_mut().insert(id, tx);
        {
            let mut fbb = self.fbb.borrow_mut();
            let body = codec::encode_request(&mut fbb, request);
            protocol::write_frame(&mut self.out.borrow_mut(), id, body);
        }
        self.wake_writer.notify_one();
        let body = rx.await.map_err(|_| "connection closed".to_string())?;
        codec::decode_response(&body).map_err(|e| e.to_string())
    }
}

async fn read_loop(connection: Rc<Connection>, mut reader: tokio::net::tcp::OwnedReadHalf) {
    let mut decoder = FrameDecoder::for_responses();
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => decoder.push(&buffer[..n]),
        }
        while let Ok(Some((header, body))) = decoder.next_frame() {
            if let Some(waiter) = connection.pending.borrow_mut().remove(&header.request_id) {
                let _ = waiter.send(body);
            }
        }
    }
    connection.broken.set(true);
    connection.pending.borrow_mut().clear();
}

async fn write_loop(connection: Rc<Connection>, mut writer: tokio::net::tcp::OwnedWriteHalf) {
    let mut batch = Vec::with_capacity(64 * 1024);
    loop {
        connection.wake_writer.notified().await;
        loop {
            std::mem::swap(&mut batch, &mut connection.out.borrow_mut());
            if batch.is_empty() {
                break;
            }
            if writer.write_all(&batch).await.is_err() {
                connection.broken.set(true);
                return;
            }
            batch.clear();
        }
    }
}
