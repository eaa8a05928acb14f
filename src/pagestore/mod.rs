//! The persistent page store: a copy-on-write B+tree on fixed-size pages in one
//! file, checkpointed by shadow paging (docs/formats/pagestore.md draws every
//! byte and argues crash safety step by step).
//!
//! - `file`: the I/O seam (`PageFile`), a std::fs implementation and an
//!   in-memory one that simulates crashes; `direct`: the O_DIRECT, io_uring
//!   one a member uses;
//! - `page`: the bytes of tree, overflow and free-list pages; `meta`: the two
//!   meta pages;
//! - `node`: a decoded tree page and the pure split/combine arithmetic;
//! - `cache`: dirty pages until a checkpoint, clean pages up to a byte bound;
//! - `freelist`: which pages are free now, which become free later, and the
//!   persisted list;
//! - `store`: `PageStore`, opening, page I/O and `checkpoint`; `btree`: get,
//!   insert and remove; `cursor`: ordered reads; `snapshot`: read views of a
//!   checkpoint; `check`: `check_invariants`.
//!
//! Invariants the whole module keeps:
//! - a page referenced by the last durable checkpoint, or by a live snapshot, is
//!   never written;
//! - every data page (id 2 and up, below the page count) is exactly one of:
//!   reachable from the working tree, a page of the durable free list, free now,
//!   or pending (free once a checkpoint and the snapshots allow it);
//! - every page read from the file is verified (checksum, own id, kind,
//!   generation) before it is used; a bad page is an error naming it.

mod btree;
mod cache;
mod check;
mod cursor;
mod direct;
mod file;
mod freelist;
mod meta;
mod node;
mod page;
mod read;
mod snapshot;
mod store;
#[cfg(test)]
mod tests;

use std::fmt;

pub use cursor::Cursor;
pub use direct::{AlignedPages, DirectPageFile};
pub use file::{MemPageFile, PageFile, PageRead, StdPageFile};
pub use read::{cache_only, PageSource, SharedReader};
pub use snapshot::Snapshot;
pub use store::PageStore;

/// Bytes in every page of the file.
pub const page_bytes: usize = 4096;
/// Largest key the store accepts.
pub const key_bytes_max: usize = 1024;
/// Largest value the store accepts; values that do not fit inline in a leaf go
/// to overflow page chains.
pub const value_bytes_max: usize = 8 * 1024 * 1024;
/// Clean-page cache bound used by `PageStore::create` (change it with
/// `set_cache_bytes`).
pub const cache_bytes_default: usize = 64 * 1024 * 1024;

/// The number of a page in the file: byte offset = id × `page_bytes`.
/// Ids 0 and 1 are the meta pages; tree, overflow and free-list pages start at 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PageId(pub u64);

impl PageId {
    /// The first page that is not a meta page.
    pub const first_data: PageId = PageId(2);

    pub fn offset_bytes(self) -> u64 {
        self.0 * page_bytes as u64
    }
}

impl fmt::Display for PageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What the page store answers when it cannot do what was asked.
#[derive(Debug)]
pub enum StoreError {
    /// The file could not be read, written or synced. After a failed sync the
    /// state of the OS page cache is unknown: reopen from the file, never retry.
    Io(std::io::Error),
    /// A page failed verification; `page` is its number in the file.
    Corrupt {
        page: u64,
        reason: String,
    },
    KeyTooLarge {
        key_bytes: usize,
    },
    ValueTooLarge {
        value_bytes: usize,
    },
    /// `create` was given a file that already holds pages.
    NotEmpty {
        page_count: u64,
    },
    /// An earlier insert, remove or checkpoint failed half way: the working tree
    /// is no longer trustworthy. Reopen from the file (and replay the WAL).
    Poisoned,
    /// A snapshot was read through a store other than the one that took it
    /// (for example after that store was reopened).
    SnapshotStale,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io(error) => write!(f, "page store I/O error: {error}"),
            StoreError::Corrupt { page, reason } => {
                write!(f, "page store is corrupt at page {page}: {reason}")
            }
            StoreError::KeyTooLarge { key_bytes } => {
                write!(f, "key of {key_bytes} bytes is larger than {key_bytes_max}")
            }
            StoreError::ValueTooLarge { value_bytes } => {
                write!(f, "value of {value_bytes} bytes is larger than {value_bytes_max}")
            }
            StoreError::NotEmpty { page_count } => {
                write!(f, "cannot create a page store in a file of {page_count} pages")
            }
            StoreError::Poisoned => {
                write!(f, "page store failed during a write earlier and must be reopened")
            }
            StoreError::SnapshotStale => {
                write!(f, "snapshot belongs to another (or a reopened) page store")
            }
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io(error) => Some(error),
            _ => None,
        }
    }
}

impl From<std::io::Error> for StoreError {
    fn from(error: std::io::Error) -> StoreError {
        StoreError::Io(error)
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

pub(crate) fn corrupt(page: PageId, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt { page: page.0, reason: reason.into() }
}

/// Runs every page decoder over arbitrary bytes, for a fuzz target: decoding
/// must answer an error, never panic, whatever the bytes.
pub fn fuzz_decode_page(bytes: &[u8]) {
    let mut buf = vec![0u8; page_bytes];
    let n = bytes.len().min(page_bytes);
    buf[..n].copy_from_slice(&bytes[..n]);
    let _ = meta::Meta::decode(&buf, PageId(0));
    // Seal the bytes so the decoders get past the checksum and meet the body.
    for kind in [page::kind_leaf, page::kind_branch, page::kind_overflow, page::kind_free_list] {
        buf[0] = kind;
        page::fuzz_seal(&mut buf, PageId(7));
        let _ = page::decode_node(&buf, PageId(7), u64::MAX);
        let _ = page::decode_overflow(&buf, PageId(7), u64::MAX);
        let _ = page::decode_free_list(&buf, PageId(7), u64::MAX);
    }
}
