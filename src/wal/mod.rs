//! The write-ahead log: the Raft log on disk (docs/formats/wal.md).
//!
//! - `format`: the bytes of segment headers and records;
//! - `recovery`: reading the log at start, cutting a torn tail, refusing to
//!   start on damage in the middle;
//! - `writer`: group-committed appends through the disk seam.

pub mod format;
pub mod recovery;
mod segment_file;
pub mod writer;

pub use recovery::{list_segments, purge, recover, recover_after, Recovered, RecoveryError, Tail};
pub use writer::{EntryRef, Suspended, WalWriter};
