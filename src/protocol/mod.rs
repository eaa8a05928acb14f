//! The native wire protocol: the connection preface, the frame header, and the
//! flatbuffers bodies (schema/corekv.fbs, generated code in `generated/`).
//! The byte layout is drawn in docs/formats/protocol.md.
//!
//! ```text
//!  client → server  preface  "COREKV" u16le(version)           8 bytes, once
//!  server → client  preface  "COREKV" u16le(version)           8 bytes, once
//!  then both ways   frame    u32le(body_len) u64le(request_id) body[body_len]
//! ```

pub mod codec;

#[rustfmt::skip]
#[allow(clippy::all, clippy::pedantic, unsafe_op_in_unsafe_fn, mismatched_lifetime_syntaxes)]
#[path = "generated/corekv_generated.rs"]
mod corekv_generated;

pub use corekv_generated::corekv::wire;

use crate::limits;

/// The first six bytes of every native connection, both ways. They cannot be
/// the start of an HTTP/1.1 request or of the HTTP/2 preface, so the client
/// port can tell the protocols apart from the first bytes.
pub const preface_magic: [u8; 6] = *b"COREKV";
/// The protocol version this build speaks.
pub const protocol_version: u16 = 1;
pub const preface_bytes: usize = 8;
pub const frame_header_bytes: usize = 12;

pub fn preface() -> [u8; preface_bytes] {
    let mut out = [0u8; preface_bytes];
    out[..6].copy_from_slice(&preface_magic);
    out[6..].copy_from_slice(&protocol_version.to_le_bytes());
    out
}

/// What a received preface says.
#[derive(Debug, PartialEq, Eq)]
pub enum Preface {
    Native { version: u16 },
    NotNative,
}

pub fn parse_preface(bytes: &[u8; preface_bytes]) -> Preface {
    if bytes[..6] != preface_magic {
        return Preface::NotNative;
    }
    Preface::Native { version: u16::from_le_bytes([bytes[6], bytes[7]]) }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub body_bytes: u32,
    pub request_id: u64,
}

/// Why a frame header cannot be accepted: the connection must close, because
/// the stream can no longer be split into frames safely.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    TooLarge { body_bytes: u32, request_id: u64 },
}

impl FrameHeader {
    pub fn encode(&self) -> [u8; frame_header_bytes] {
        let mut out = [0u8; frame_header_bytes];
        out[..4].copy_from_slice(&self.body_bytes.to_le_bytes());
        out[4..].copy_from_slice(&self.request_id.to_le_bytes());
        out
    }

    /// Decodes a header, refusing bodies over `body_bytes_max`.
    pub fn decode(bytes: &[u8], body_bytes_max: usize) -> Result<FrameHeader, FrameError> {
        assert!(bytes.len() >= frame_header_bytes);
        let body_bytes = u32::from_le_bytes(bytes[..4].try_into().unwrap());
        let request_id = u64::from_le_bytes(bytes[4..12].try_into().unwrap());
        if body_bytes as usize > body_bytes_max {
            return Err(FrameError::TooLarge { body_bytes, request_id });
        }
        Ok(FrameHeader { body_bytes, request_id })
    }
}

/// Splits a byte stream into frames. Bytes are pushed as they arrive; complete
/// frames come out in order. Used by the server, the clients and the fuzzer.
pub struct FrameDecoder {
    buffer: bytes::BytesMut,
    body_bytes_max: usize,
}

impl FrameDecoder {
    /// For the server side: request frames up to `limits::frame_bytes_max`.
    pub fn for_requests() -> FrameDecoder {
        FrameDecoder::new(limits::frame_bytes_max)
    }

    /// For the client side: response frames up to `limits::response_bytes_max`
    /// (with room for the error a too-large response is replaced by).
    pub fn for_responses() -> FrameDecoder {
        FrameDecoder::new(limits::response_bytes_max + 4096)
    }

    pub fn new(body_bytes_max: usize) -> FrameDecoder {
        FrameDecoder { buffer: bytes::BytesMut::with_capacity(16 * 1024), body_bytes_max }
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
    }

    pub fn buffered_bytes(&self) -> usize {
        self.buffer.len()
    }

    /// The next complete frame, if one has fully arrived.
    pub fn next_frame(&mut self) -> Result<Option<(FrameHeader, bytes::Bytes)>, FrameError> {
        if self.buffer.len() < frame_header_bytes {
            return Ok(None);
        }
        let header = FrameHeader::decode(&self.buffer[..frame_header_bytes], self.body_bytes_max)?;
        let total = frame_header_bytes + header.body_bytes as usize;
        if self.buffer.len() < total {
            // Grown as the body arrives, not reserved from its header: a
            // header alone (12 bytes) must not cost the server 2 MiB.
            return Ok(None);
        }
        let mut frame = self.buffer.split_to(total);
        let body = frame.split_off(frame_header_bytes).freeze();
        Ok(Some((header, body)))
    }
}

/// Appends one frame (header + body) to `out`.
pub fn write_frame(out: &mut Vec<u8>, request_id: u64, body: &[u8]) {
    let header = FrameHeader { body_bytes: body.len() as u32, request_id };
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preface_round_trips_and_rejects_http() {
        assert_eq!(parse_preface(&preface()), Preface::Native { version: protocol_version });
        assert_eq!(parse_preface(b"GET / HT"), Preface::NotNative);
        assert_eq!(parse_preface(b"PRI * HT"), Preface::NotNative);
    }

    #[test]
    fn frames_split_at_any_byte_boundary() {
        let mut stream = Vec::new();
        for id in 0..50u64 {
            write_frame(&mut stream, id, &vec![id as u8; id as usize * 7]);
        }
        for chunk in [1usize, 3, 12, 13, 100, 5000] {
            let mut decoder = FrameDecoder::for_requests();
            let mut seen = 0u64;
            for piece in stream.chunks(chunk) {
                decoder.push(piece);
                while let Some((header, body)) = decoder.next_frame().unwrap() {
                    assert_eq!(header.request_id, seen);
                    assert_eq!(body.len(), seen as usize * 7);
                    assert!(body.iter().all(|b| *b == seen as u8));
                    seen += 1;
                }
            }
            assert_eq!(seen, 50);
        }
    }

    #[test]
    fn oversize_frame_is_refused_before_its_body_arrives() {
        let mut decoder = FrameDecoder::for_requests();
        let header =
            FrameHeader { body_bytes: (limits::frame_bytes_max + 1) as u32, request_id: 9 };
        decoder.push(&header.encode());
        assert_eq!(
            decoder.next_frame(),
            Err(FrameError::TooLarge { body_bytes: header.body_bytes, request_id: 9 })
        );
    }
}
