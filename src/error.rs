//! Operating errors a client can cause or observe: one narrow enum, mapped to
//! etcd's error strings in one table so that tools written for etcd see the
//! same words. Bugs panic instead; environmental failures stop the member.

use std::fmt;

/// The typed error codes of the native protocol (`Error.code` on the wire).
/// Values are part of the wire format: append only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ErrorCode {
    Compacted = 1,
    FutureRevision = 2,
    RequestTooLarge = 3,
    TooManyOps = 4,
    DuplicateKey = 5,
    EmptyKey = 6,
    KeyNotFound = 7,
    ValueProvided = 8,
    LeaseProvided = 9,
    LeaseNotFound = 10,
    InvalidSortOption = 11,
    MalformedRequest = 12,
    UnknownOperation = 13,
    TooManyRequests = 14,
    Timeout = 15,
    NoSpace = 16,
    Stopping = 17,
    InvalidArgument = 18,
    SnapshotFailed = 19,
    /// The page store could not be read (I/O error or a damaged page).
    Corrupt = 20,
    LeaseExists = 21,
    LeaseTtlTooLarge = 22,
}

/// (code, etcd's message). The messages are etcd's where etcd has one.
const MESSAGES: &[(ErrorCode, &str)] = &[
    (ErrorCode::Compacted, "etcdserver: mvcc: required revision has been compacted"),
    (ErrorCode::FutureRevision, "etcdserver: mvcc: required revision is a future revision"),
    (ErrorCode::RequestTooLarge, "etcdserver: request is too large"),
    (ErrorCode::TooManyOps, "etcdserver: too many operations in txn request"),
    (ErrorCode::DuplicateKey, "etcdserver: duplicate key given in txn request"),
    (ErrorCode::EmptyKey, "etcdserver: key is not provided"),
    (ErrorCode::KeyNotFound, "etcdserver: key not found"),
    (ErrorCode::ValueProvided, "etcdserver: value is provided"),
    (ErrorCode::LeaseProvided, "etcdserver: lease is provided"),
    (ErrorCode::LeaseNotFound, "etcdserver: requested lease not found"),
    (ErrorCode::InvalidSortOption, "etcdserver: invalid sort option"),
    (ErrorCode::MalformedRequest, "corekv: malformed request"),
    (ErrorCode::UnknownOperation, "corekv: unknown operation"),
    (ErrorCode::TooManyRequests, "etcdserver: too many requests"),
    (ErrorCode::Timeout, "etcdserver: request timed out"),
    (ErrorCode::NoSpace, "etcdserver: mvcc: database space exceeded"),
    (ErrorCode::Stopping, "etcdserver: server stopped"),
    (ErrorCode::InvalidArgument, "corekv: invalid argument"),
    (ErrorCode::SnapshotFailed, "corekv: snapshot failed"),
    (ErrorCode::Corrupt, "etcdserver: corrupt cluster"),
    (ErrorCode::LeaseExists, "etcdserver: lease already exists"),
    (ErrorCode::LeaseTtlTooLarge, "etcdserver: too large lease TTL"),
];

impl ErrorCode {
    pub fn from_u16(code: u16) -> Option<ErrorCode> {
        MESSAGES.iter().map(|(c, _)| *c).find(|c| *c as u16 == code)
    }

    /// etcd's text for this error.
    pub fn message(self) -> &'static str {
        MESSAGES
            .iter()
            .find(|(c, _)| *c == self)
            .map(|(_, m)| *m)
            .expect("every code has a message")
    }
}

/// An operating error: a code and the message sent to the client (etcd's text,
/// or for `MalformedRequest`/`InvalidArgument` a more precise one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
}

impl Error {
    pub fn new(code: ErrorCode) -> Error {
        Error { code, message: code.message().to_string() }
    }

    pub fn with_message(code: ErrorCode, message: impl Into<String>) -> Error {
        Error { code, message: message.into() }
    }
}

impl From<ErrorCode> for Error {
    fn from(code: ErrorCode) -> Error {
        Error::new(code)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_and_has_a_message() {
        for (code, message) in MESSAGES {
            assert_eq!(ErrorCode::from_u16(*code as u16), Some(*code));
            assert_eq!(code.message(), *message);
        }
        assert_eq!(ErrorCode::from_u16(0), None);
        assert_eq!(ErrorCode::from_u16(999), None);
    }
}
