//! The disk seam: the little the WAL needs from a file. The runtime implements
//! it with glommio DMA files (O_DIRECT through io_uring); `StdDisk` implements it
//! with plain blocking std::fs calls for tools, tests and benches.

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

/// A file the WAL appends to. Positions and lengths given to `write_at` are
/// multiples of `limits::io_alignment_bytes`.
pub trait LogFile {
    fn write_at(&self, position: u64, data: &[u8]) -> impl Future<Output = io::Result<()>>;
    /// fdatasync: when it returns Ok, everything written before is durable.
    fn sync_data(&self) -> impl Future<Output = io::Result<()>>;
    fn close(self) -> impl Future<Output = io::Result<()>>;
    /// From now on, wait for each write by polling for up to `spin` before
    /// waiting the usual way (zero: at once), where the file supports it
    /// (`runtime::DmaLogFile`).
    fn set_write_spin(&self, _spin: Duration) {}
}

pub trait LogDisk {
    type File: LogFile;
    /// Opens an existing, preallocated file for writing.
    fn open_for_append(&self, path: &Path) -> impl Future<Output = io::Result<Self::File>>;
}

/// Blocking std::fs implementation (no O_DIRECT: std buffers are not aligned).
#[derive(Clone, Copy, Debug, Default)]
pub struct StdDisk;

pub struct StdLogFile(File);

impl LogFile for StdLogFile {
    fn write_at(&self, position: u64, data: &[u8]) -> impl Future<Output = io::Result<()>> {
        std::future::ready(self.0.write_all_at(data, position))
    }

    fn sync_data(&self) -> impl Future<Output = io::Result<()>> {
        std::future::ready(self.0.sync_data())
    }

    fn close(self) -> impl Future<Output = io::Result<()>> {
        std::future::ready(Ok(()))
    }
}

impl LogDisk for StdDisk {
    type File = StdLogFile;

    fn open_for_append(&self, path: &Path) -> impl Future<Output = io::Result<StdLogFile>> {
        std::future::ready(OpenOptions::new().write(true).open(path).map(StdLogFile))
    }
}

/// Drives a future that never waits (as StdDisk's) to completion.
pub fn block_on_ready<T>(future: impl Future<Output = T>) -> T {
    futures_lite::future::block_on(future)
}
