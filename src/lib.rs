//! corekv: a strongly consistent key-value store with etcd's data model and API,
//! built thread-per-core. See docs/architecture.md for the map of modules.
//!
//! Dependencies point down: `types`, `error`, `limits` depend on nothing;
//! `protocol` and `mvcc` on those; `wal` on the disk seam; `server` on all of
//! them; glommio is named only inside `runtime`.

#![allow(non_upper_case_globals)] // STYLE: constants read as `frame_bytes_max`, units last.

pub mod client;
pub mod ctl;
pub mod disk;
pub mod error;
pub mod fuzz;
pub mod limits;
pub mod metrics;
pub mod mvcc;
pub mod pagestore;
pub mod protocol;
pub mod raft;
pub mod runtime;
pub mod server;
#[cfg(feature = "sim")]
pub mod sim;
pub mod snapshot;
pub mod types;
pub mod uring;
pub mod wal;
