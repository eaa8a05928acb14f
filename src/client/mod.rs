//! A blocking client of the native protocol, for corekvctl, tests and tools.
//! It pipelines: `send` many requests, then `receive` their responses in any
//! order; `call` does one round trip.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flatbuffers::FlatBufferBuilder;

use crate::error::Error;
use crate::protocol::{self, codec, FrameDecoder, Preface};
use crate::types::*;

#[derive(Debug)]
pub enum ClientError {
    /// Could not reach any endpoint.
    Connect(String),
    Io(io::Error),
    /// The server answered with an error.
    Server(Error),
    /// The server spoke something that is not this protocol.
    Protocol(String),
    Timeout,
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Connect(message) => f.write_str(message),
            ClientError::Io(e) => write!(f, "{e}"),
            ClientError::Server(e) => write!(f, "{e}"),
            ClientError::Protocol(message) => f.write_str(message),
            ClientError::Timeout => f.write_str("context deadline exceeded"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> ClientError {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout,
            _ => ClientError::Io(e),
        }
    }
}

pub struct Client {
    stream: TcpStream,
    decoder: FrameDecoder,
    fbb: FlatBufferBuilder<'static>,
    next_id: u64,
    /// Responses that arrived before they were asked for, per request id
    /// (a stream, such as a watch, has several).
    early: HashMap<u64, VecDeque<Response>>,
    pub endpoint: String,
}

fn resolve(endpoint: &str) -> io::Result<SocketAddr> {
    let trimmed = endpoint.trim_start_matches("http://").trim_end_matches('/');
    trimmed
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))
}

impl Client {
    /// Connects to the first endpoint that answers within `timeout`.
    pub fn connect(endpoints: &[String], timeout: Duration) -> Result<Client, ClientError> {
        let mut failures = Vec::new();
        for endpoint in endpoints {
            match Client::connect_one(endpoint, timeout) {
                Ok(client) => return Ok(client),
                Err(e) => failures.push(format!("{endpoint}: {e}")),
            }
        }
        Err(ClientError::Connect(format!("cannot reach any endpoint ({})", failures.join("; "))))
    }

    fn connect_one(endpoint: &str, timeout: Duration) -> Result<Client, ClientError> {
        let address = resolve(endpoint)?;
        let mut stream = TcpStream::connect_timeout(&address, timeout)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.write_all(&protocol::preface())?;
        let mut preface = [0u8; protocol::preface_bytes];
        stream.read_exact(&mut preface)?;
        match protocol::parse_preface(&preface) {
            Preface::Native { version } if version == protocol::protocol_version => {}
            Preface::Native { version } => {
                return Err(ClientError::Protocol(format!(
                    "server speaks protocol version {version}"
                )))
            }
            Preface::NotNative => return Err(ClientError::Protocol("not a corekv server".into())),
        }
        Ok(Client {
            stream,
            decoder: FrameDecoder::for_responses(),
            fbb: FlatBufferBuilder::new(),
            next_id: 1,
            early: HashMap::new(),
            endpoint: endpoint.to_string(),
        })
    }

    /// Sets how long a read or write on the socket may block (zero: no limit).
    pub fn set_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        let timeout = (!timeout.is_zero()).then_some(timeout);
        self.stream.set_read_timeout(timeout)?;
        self.stream.set_write_timeout(timeout)
    }

    /// Sends a request without waiting; returns its id.
    pub fn send(&mut self, request: &Request) -> Result<u64, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let body = codec::encode_request(&mut self.fbb, request);
        let mut frame = Vec::with_capacity(protocol::frame_header_bytes + body.len());
        protocol::write_frame(&mut frame, id, body);
        self.stream.write_all(&frame)?;
        Ok(id)
    }

    /// Sends an already encoded body (for tests of malformed input).
    pub fn send_raw(&mut self, body: &[u8]) -> Result<u64, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut frame = Vec::new();
        protocol::write_frame(&mut frame, id, body);
        self.stream.write_all(&frame)?;
        Ok(id)
    }

    /// The next response to arrive, whatever its id.
    pub fn receive_any(&mut self) -> Result<(u64, Response), ClientError> {
        if let Some(id) = self.early.keys().next().copied() {
            return Ok((id, self.take_early(id).expect("listed")));
        }
        self.read_response()
    }

    /// The next response from the socket.
    fn read_response(&mut self) -> Result<(u64, Response), ClientError> {
        let mut buffer = [0u8; 64 * 1024];
        loop {
            match self.decoder.next_frame() {
                Ok(Some((header, body))) => {
                    let response = codec::decode_response(&body).map_err(ClientError::Server)?;
                    return Ok((header.request_id, response));
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(ClientError::Protocol(format!("bad frame from server: {e:?}")))
                }
            }
            let n = self.stream.read(&mut buffer)?;
            if n == 0 {
                return Err(ClientError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed the connection",
                )));
            }
            self.decoder.push(&buffer[..n]);
        }
    }

    fn take_early(&mut self, id: u64) -> Option<Response> {
        let queue = self.early.get_mut(&id)?;
        let response = queue.pop_front();
        if queue.is_empty() {
            self.early.remove(&id);
        }
        response
    }

    /// The next response to request `id` (others that arrive first are kept).
    pub fn receive(&mut self, id: u64) -> Result<Response, ClientError> {
        if let Some(response) = self.take_early(id) {
            return Ok(response);
        }
        loop {
            // From the socket: what is kept aside is not for `id`.
            let (got, response) = self.read_response()?;
            if got == id {
                return Ok(response);
            }
            self.early.entry(got).or_default().push_back(response);
        }
    }

    /// One round trip; a server error becomes `ClientError::Server`.
    pub fn call(
        &mut self,
        request: &Request,
    ) -> Result<(ResponseHeader, ResponseBody), ClientError> {
        let id = self.send(request)?;
        let response = self.receive(id)?;
        response.result.map(|body| (response.header, body)).map_err(ClientError::Server)
    }

    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<ResponseHeader, ClientError> {
        let request = Request::Put(PutRequest {
            key: Bytes::copy_from_slice(key),
            value: Bytes::copy_from_slice(value),
            ..Default::default()
        });
        self.call(&request).map(|(header, _)| header)
    }

    pub fn get(&mut self, key: &[u8]) -> Result<Option<KeyValue>, ClientError> {
        let request =
            Request::Range(RangeRequest { key: Bytes::copy_from_slice(key), ..Default::default() });
        match self.call(&request)? {
            (_, ResponseBody::Range(r)) => Ok(r.kvs.into_iter().next()),
            (_, other) => Err(ClientError::Protocol(format!("unexpected response {other:?}"))),
        }
    }

    pub fn status(&mut self) -> Result<(ResponseHeader, StatusResponse), ClientError> {
        match self.call(&Request::Status)? {
            (header, ResponseBody::Status(s)) => Ok((header, s)),
            (_, other) => Err(ClientError::Protocol(format!("unexpected response {other:?}"))),
        }
    }
}

/// Waits until a server answers Status at `endpoint`, or `deadline` passes.
pub fn wait_ready(endpoint: &str, deadline: Duration) -> Result<Client, ClientError> {
    let start = Instant::now();
    loop {
        let attempt = Client::connect(&[endpoint.to_string()], Duration::from_secs(2))
            .and_then(|mut c| c.status().map(|_| c));
        match attempt {
            Ok(client) => return Ok(client),
            Err(e) if start.elapsed() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}
