//! `DirectPageFile`: the page file a member uses, read and written with
//! O_DIRECT through io_uring, so the only cache of its pages is the store's
//! own (`--cache-size`): the OS page cache holds none of them twice.
//!
//! - Writes are staged in aligned memory (up to `staged_pages_max`) and go
//!   out as one io_uring batch: a `writev` per run of consecutive page ids,
//!   many in flight. `sync` sends what is staged, then fdatasync.
//! - Reads: one page by `pread` (a store read misses its cache on one page at
//!   a time), or many at once by `PageRead::read_pages` (a batch of reads in
//!   flight, one per run of consecutive ids), which scans use to read a
//!   branch's leaves ahead of the cursor.
//!
//! Why not glommio's DmaFile, as the WAL uses: the store is synchronous code
//! that moves between threads (the apply loop hands it to a checkpoint
//! thread and back) and is read from every core's executor inside request
//! handlers; a DmaFile belongs to one executor and is read with `.await`.
//! io_uring gives the same O_DIRECT batches without either constraint.
//!
//! A file system that refuses O_DIRECT (tmpfs) gets the same code over
//! buffered I/O (`is_direct` says which); O_DIRECT needs 512-byte alignment
//! here (docs/PLATFORM facts) and every buffer is 4 KiB aligned.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;

use io_uring::IoUring;

use super::file::{PageFile, PageRead};
use super::{page_bytes, PageId};
use crate::uring::{ring_entries, run_ops, Op};

/// Pages staged before a batch goes out (4 MiB).
const staged_pages_max: usize = 1024;
/// Pages in one read or write (1 MiB).
const run_pages_max: usize = 256;

/// Memory aligned for O_DIRECT: `pages` pages, zeroed, 4 KiB aligned.
pub struct AlignedPages {
    ptr: NonNull<u8>,
    pages: usize,
}

// SAFETY: AlignedPages owns its allocation exclusively, like a Box<[u8]>.
unsafe impl Send for AlignedPages {}
// SAFETY: shared access only reads through &self.
unsafe impl Sync for AlignedPages {}

impl AlignedPages {
    pub fn new(pages: usize) -> AlignedPages {
        let pages = pages.max(1);
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(AlignedPages::layout(pages)) };
        let ptr = NonNull::new(ptr)
            .unwrap_or_else(|| std::alloc::handle_alloc_error(AlignedPages::layout(pages)));
        AlignedPages { ptr, pages }
    }

    fn layout(pages: usize) -> Layout {
        Layout::from_size_align(pages * page_bytes, page_bytes).expect("page-sized layout")
    }

    pub fn pages(&self) -> usize {
        self.pages
    }

    pub fn page(&self, index: usize) -> &[u8] {
        &self.as_slice()[index * page_bytes..(index + 1) * page_bytes]
    }

    pub fn page_mut(&mut self, index: usize) -> &mut [u8] {
        &mut self.as_mut_slice()[index * page_bytes..(index + 1) * page_bytes]
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr points to pages * page_bytes initialized (zeroed) bytes.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.pages * page_bytes) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and &mut self is exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.pages * page_bytes) }
    }
}

impl Drop for AlignedPages {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.ptr.as_ptr(), AlignedPages::layout(self.pages)) }
    }
}

impl std::fmt::Debug for AlignedPages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedPages({})", self.pages)
    }
}

thread_local! {
    /// One ring per thread for reads (readers run on every core).
    static read_ring: RefCell<Option<IoUring>> = const { RefCell::new(None) };
    /// One aligned page per thread for single-page reads.
    static read_page_buf: RefCell<Option<AlignedPages>> = const { RefCell::new(None) };
}

fn with_read_ring<T>(body: impl FnOnce(&mut IoUring) -> io::Result<T>) -> io::Result<T> {
    read_ring.with(|ring| {
        let mut ring = ring.borrow_mut();
        if ring.is_none() {
            *ring = Some(IoUring::new(ring_entries)?);
        }
        body(ring.as_mut().expect("made above"))
    })
}

/// Reads one page into `buf` (any alignment) through an aligned page.
fn pread_page(file: &File, id: PageId, buf: &mut [u8]) -> io::Result<()> {
    assert_eq!(buf.len(), page_bytes);
    read_page_buf.with(|page| {
        let mut page = page.borrow_mut();
        let page = page.get_or_insert_with(|| AlignedPages::new(1));
        file.read_exact_at(page.as_mut_slice(), id.offset_bytes())?;
        buf.copy_from_slice(page.as_slice());
        Ok(())
    })
}

/// Splits `0..len` into runs `(start, end)` of consecutive page ids
/// (`id(i)` ascending), each at most `run_pages_max` long: one read or write.
fn runs(len: usize, id: impl Fn(usize) -> u64) -> impl Iterator<Item = (usize, usize)> {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start == len {
            return None;
        }
        let mut end = start + 1;
        while end < len && id(end) == id(end - 1) + 1 && end - start < run_pages_max {
            end += 1;
        }
        let run = (start, end);
        start = end;
        Some(run)
    })
}

/// Reads `ids` into consecutive pages of `out`: one read per run of
/// consecutive ids, all in flight together.
fn read_batch(file: &File, ids: &[PageId], out: &mut AlignedPages) -> io::Result<()> {
    assert!(ids.len() <= out.pages());
    let mut ops = Vec::new();
    let base = out.as_mut_slice().as_mut_ptr();
    for (start, end) in runs(ids.len(), |i| ids[i].0) {
        ops.push(Op::Read {
            // SAFETY: start < ids.len() <= out.pages(): inside the allocation.
            buf: unsafe { base.add(start * page_bytes) },
            len: (end - start) * page_bytes,
            offset: ids[start].offset_bytes(),
        });
    }
    with_read_ring(|ring| run_ops(ring, file.as_raw_fd(), &ops))
}

/// The page file, O_DIRECT where the file system allows it.
pub struct DirectPageFile {
    file: Arc<File>,
    direct: bool,
    page_count: u64,
    /// Page id → slot in `staged`, for writes not yet sent.
    slots: BTreeMap<u64, usize>,
    staged: AlignedPages,
    ring: IoUring,
}

impl std::fmt::Debug for DirectPageFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectPageFile")
            .field("direct", &self.direct)
            .field("page_count", &self.page_count)
            .field("staged", &self.slots.len())
            .finish()
    }
}

impl DirectPageFile {
    /// Creates a new, empty file; fails if `path` exists.
    pub fn create(path: &Path) -> io::Result<DirectPageFile> {
        DirectPageFile::open_with(path, true)
    }

    pub fn open(path: &Path) -> io::Result<DirectPageFile> {
        DirectPageFile::open_with(path, false)
    }

    /// Creates a page store at `path` crash-atomically (see
    /// `StdPageFile::create_store`).
    pub fn create_store(path: &Path) -> super::Result<super::PageStore<DirectPageFile>> {
        super::file::create_store_with(path, DirectPageFile::create, DirectPageFile::open)
    }

    fn open_with(path: &Path, create: bool) -> io::Result<DirectPageFile> {
        let options = |direct: bool| {
            let mut options = OpenOptions::new();
            options.read(true).write(true);
            if create {
                options.create_new(true);
            }
            if direct {
                options.custom_flags(libc::O_DIRECT);
            }
            options
        };
        let (file, direct) = match options(true).open(path) {
            Ok(file) => (file, true),
            // EINVAL: the file system does not do O_DIRECT (tmpfs). A created
            // file exists by now: open it again without the flag.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                let mut again = options(false);
                if create {
                    again.create_new(false);
                }
                (again.open(path)?, false)
            }
            Err(e) => return Err(e),
        };
        let page_count = file.metadata()?.len() / page_bytes as u64;
        Ok(DirectPageFile {
            file: Arc::new(file),
            direct,
            page_count,
            slots: BTreeMap::new(),
            staged: AlignedPages::new(staged_pages_max),
            ring: IoUring::new(ring_entries)?,
        })
    }

    /// Whether the file is read and written with O_DIRECT.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// Sends every staged write: one writev per run of consecutive ids.
    fn send_staged(&mut self) -> io::Result<()> {
        if self.slots.is_empty() {
            return Ok(());
        }
        let staged: Vec<(u64, usize)> = self.slots.iter().map(|(id, slot)| (*id, *slot)).collect();
        let base = self.staged.as_slice().as_ptr();
        let iovecs: Vec<libc::iovec> = staged
            .iter()
            .map(|(_, slot)| libc::iovec {
                // SAFETY: slot < staged_pages_max: inside the allocation.
                iov_base: unsafe { base.add(slot * page_bytes) } as *mut libc::c_void,
                iov_len: page_bytes,
            })
            .collect();
        let mut ops = Vec::new();
        for (start, end) in runs(staged.len(), |i| staged[i].0) {
            ops.push(Op::Writev {
                iovecs: iovecs[start..].as_ptr(),
                count: end - start,
                len: (end - start) * page_bytes,
                offset: PageId(staged[start].0).offset_bytes(),
            });
        }
        run_ops(&mut self.ring, self.file.as_raw_fd(), &ops)?;
        // Only now: until the writes are done, reads are served from here.
        self.slots.clear();
        Ok(())
    }
}

impl PageFile for DirectPageFile {
    fn read_page(&self, id: PageId, buf: &mut [u8]) -> io::Result<()> {
        assert_eq!(buf.len(), page_bytes);
        if id.0 >= self.page_count {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "page past end of file"));
        }
        if let Some(slot) = self.slots.get(&id.0) {
            buf.copy_from_slice(self.staged.page(*slot));
            return Ok(());
        }
        pread_page(&self.file, id, buf)
    }

    fn write_page(&mut self, id: PageId, buf: &[u8]) -> io::Result<()> {
        assert_eq!(buf.len(), page_bytes);
        let slot = match self.slots.get(&id.0) {
            Some(slot) => *slot,
            None => {
                if self.slots.len() == staged_pages_max {
                    self.send_staged()?;
                }
                let slot = self.slots.len();
                self.slots.insert(id.0, slot);
                slot
            }
        };
        self.staged.page_mut(slot).copy_from_slice(buf);
        self.page_count = self.page_count.max(id.0 + 1);
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.send_staged()?;
        self.file.sync_data()
    }

    fn page_count(&self) -> u64 {
        self.page_count
    }

    fn shared_reader(&self) -> Arc<dyn PageRead> {
        Arc::new(DirectPageRead(self.file.clone()))
    }
}

/// The read side of a `DirectPageFile`, for any thread.
#[derive(Debug)]
struct DirectPageRead(Arc<File>);

impl PageRead for DirectPageRead {
    fn read_page(&self, id: PageId, buf: &mut [u8]) -> io::Result<()> {
        pread_page(&self.0, id, buf)
    }

    fn read_pages(&self, ids: &[PageId], out: &mut AlignedPages) -> io::Result<()> {
        read_batch(&self.0, ids, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> std::path::PathBuf {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        std::env::temp_dir().join(format!(
            "corekv-direct-{name}-{}-{}",
            std::process::id(),
            nanos.as_nanos()
        ))
    }

    fn page(byte: u8) -> Vec<u8> {
        vec![byte; page_bytes]
    }

    #[test]
    fn direct_file_is_o_direct_and_round_trips_staged_sent_and_batched_pages() {
        let path = temp_path("round-trip");
        let mut file = DirectPageFile::create(&path).unwrap();
        // /tmp is ext4 on the machines this runs on (never tmpfs: PLATFORM.md).
        assert!(file.is_direct(), "O_DIRECT refused on {}", path.display());
        // SAFETY: F_GETFL on an open descriptor.
        let flags = unsafe { libc::fcntl(file.file.as_raw_fd(), libc::F_GETFL) };
        assert_ne!(flags & libc::O_DIRECT, 0);
        // More than one staging batch, runs and gaps, a page written twice.
        let ids: Vec<u64> = (2..1500).chain(1600..1700).chain([3000]).collect();
        for id in &ids {
            file.write_page(PageId(*id), &page(*id as u8)).unwrap();
        }
        file.write_page(PageId(5), &page(0xEE)).unwrap();
        let mut buf = page(0);
        file.read_page(PageId(5), &mut buf).unwrap();
        assert_eq!(buf, page(0xEE), "a staged write is read back before the sync");
        file.sync().unwrap();
        assert_eq!(file.page_count(), 3001);
        drop(file);

        let file = DirectPageFile::open(&path).unwrap();
        assert_eq!(file.page_count(), 3001);
        for id in [2u64, 5, 1499, 1600, 1699, 3000] {
            file.read_page(PageId(id), &mut buf).unwrap();
            let expected = if id == 5 { 0xEE } else { id as u8 };
            assert_eq!(buf, page(expected), "page {id}");
        }
        file.read_page(PageId(1550), &mut buf).unwrap();
        assert_eq!(buf, page(0), "a hole reads as zeros");
        let error = file.read_page(PageId(3001), &mut buf).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);

        let reader = file.shared_reader();
        let wanted: Vec<PageId> = [7u64, 8, 9, 1698, 1699, 2, 3000].map(PageId).to_vec();
        let mut out = AlignedPages::new(wanted.len());
        reader.read_pages(&wanted, &mut out).unwrap();
        for (i, id) in wanted.iter().enumerate() {
            assert_eq!(out.page(i), &page(id.0 as u8)[..], "batched read of page {id}");
        }
        let past_end = reader.read_pages(&[PageId(3000), PageId(3001)], &mut out).unwrap_err();
        assert_eq!(past_end.kind(), io::ErrorKind::UnexpectedEof, "{past_end}");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_store_on_a_direct_file_reopens_with_what_it_checkpointed() {
        let path = temp_path("store");
        let mut store = DirectPageFile::create_store(&path).unwrap();
        for i in 0..20_000u32 {
            store.insert(format!("key{i:08}").as_bytes(), &i.to_le_bytes().repeat(20)).unwrap();
        }
        store.insert(b"big", &vec![7u8; 100_000]).unwrap();
        store.checkpoint(9).unwrap();
        store.insert(b"lost", b"not checkpointed").unwrap();
        drop(store);
        let file = DirectPageFile::open(&path).unwrap();
        let mut store = super::super::PageStore::open(file, 1 << 20).unwrap();
        assert_eq!(store.applied_index(), 9);
        assert_eq!(store.len(), 20_001);
        assert_eq!(store.get(b"key00012345").unwrap(), Some(12345u32.to_le_bytes().repeat(20)));
        assert_eq!(store.get(b"big").unwrap(), Some(vec![7u8; 100_000]));
        assert_eq!(store.get(b"lost").unwrap(), None);
        let snapshot = store.snapshot();
        let scanned = snapshot
            .scan_cursor(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)
            .unwrap()
            .count();
        assert_eq!(scanned, 20_001);
        store.check_invariants().unwrap();
        std::fs::remove_file(&path).unwrap();
    }
}
