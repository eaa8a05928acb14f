//! The page store's disk seam: a file of fixed-size pages. The store asks for
//! nothing else, so the runtime can implement it with glommio DMA files (page
//! sized, page aligned I/O suits O_DIRECT) and the simulator with memory.
//!
//! - `StdPageFile`: blocking std::fs positional reads and writes, fdatasync.
//! - `DirectPageFile` (`direct`): O_DIRECT through io_uring, what a member uses.
//! - `MemPageFile`: memory, remembering what is durable and what is not, so a
//!   test can `crash()` it: the OS may have written any subset of the unsynced
//!   pages, in any order, and may have torn one of them.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, RwLock};

use super::direct::AlignedPages;
use super::{page_bytes, PageId};

/// A file of `page_bytes` pages. Reads see every earlier write, synced or not.
pub trait PageFile {
    /// Fills `buf` (exactly `page_bytes`) with page `id`. A page past the end of
    /// the file is an `UnexpectedEof` error; a hole reads as zeros.
    fn read_page(&self, id: PageId, buf: &mut [u8]) -> io::Result<()>;
    /// Writes page `id`, extending the file if needed.
    fn write_page(&mut self, id: PageId, buf: &[u8]) -> io::Result<()>;
    /// fdatasync: when it returns Ok, every earlier write is durable.
    fn sync(&mut self) -> io::Result<()>;
    /// The file's length in whole pages.
    fn page_count(&self) -> u64;
    /// A handle that reads this file from any thread, seeing every write made
    /// through this `PageFile` (readers use it for checkpointed pages only).
    fn shared_reader(&self) -> Arc<dyn PageRead>;
}

/// Reads pages from any thread: the read side of a `PageFile`.
pub trait PageRead: Send + Sync + std::fmt::Debug {
    /// As `PageFile::read_page`; a page never written reads as zeros.
    fn read_page(&self, id: PageId, buf: &mut [u8]) -> io::Result<()>;

    /// Reads `ids` into the first `ids.len()` pages of `out`, as many at once
    /// as the file allows (scans read a branch's leaves ahead this way).
    fn read_pages(&self, ids: &[PageId], out: &mut AlignedPages) -> io::Result<()> {
        for (i, id) in ids.iter().enumerate() {
            self.read_page(*id, out.page_mut(i))?;
        }
        Ok(())
    }
}

/// Reads page `id` for the store: a page past the end of the file is
/// corruption (the meta says it exists), any other failure is I/O.
pub(crate) fn read_raw(file: &impl PageFile, id: PageId, buf: &mut [u8]) -> super::Result<()> {
    match file.read_page(id, buf) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
            Err(super::corrupt(id, "page is past the end of the file"))
        }
        Err(error) => Err(error.into()),
    }
}

/// `create_store` for a file type given its `create` and `open`.
pub(crate) fn create_store_with<F: PageFile>(
    path: &Path,
    create: impl Fn(&Path) -> io::Result<F>,
    open: impl Fn(&Path) -> io::Result<F>,
) -> super::Result<super::PageStore<F>> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let store = super::PageStore::create(create(&tmp)?)?;
    let cache_bytes = store.cache_bytes();
    drop(store);
    std::fs::rename(&tmp, path)?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(dir)?.sync_all()?;
    super::PageStore::open(open(path)?, cache_bytes)
}

/// A page file on a real file system, through the OS page cache (tools,
/// tests and benchmarks; a member uses `DirectPageFile`).
#[derive(Debug)]
pub struct StdPageFile {
    file: Arc<File>,
    page_count: u64,
}

impl StdPageFile {
    /// Creates a new, empty file; fails if `path` exists.
    pub fn create(path: &Path) -> io::Result<StdPageFile> {
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(path)?;
        Ok(StdPageFile { file: Arc::new(file), page_count: 0 })
    }

    /// Creates a page store at `path` crash-atomically: built in a temporary
    /// file, synced, renamed into place and the directory synced, so a crash
    /// leaves either no file or a whole, openable one (never a half-made file
    /// that neither opens nor can be created again).
    pub fn create_store(path: &Path) -> super::Result<super::PageStore<StdPageFile>> {
        create_store_with(path, StdPageFile::create, StdPageFile::open)
    }

    pub fn open(path: &Path) -> io::Result<StdPageFile> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let page_count = file.metadata()?.len() / page_bytes as u64;
        Ok(StdPageFile { file: Arc::new(file), page_count })
    }
}

impl PageFile for StdPageFile {
    fn read_page(&self, id: PageId, buf: &mut [u8]) -> io::Result<()> {
        assert_eq!(buf.len(), page_bytes);
        if id.0 >= self.page_count {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "page past end of file"));
        }
        self.file.read_exact_at(buf, id.offset_bytes())
    }

    fn write_page(&mut self, id: PageId, buf: &[u8]) -> io::Result<()> {
        assert_eq!(buf.len(), page_bytes);
        self.file.write_all_at(buf, id.offset_bytes())?;
        self.page_count = self.page_count.max(id.0 + 1);
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn page_count(&self) -> u64 {
        self.page_count
    }

    fn shared_reader(&self) -> Arc<dyn PageRead> {
        Arc::new(StdPageRead(self.file.clone()))
    }
}

#[derive(Debug)]
struct StdPageRead(Arc<File>);

impl PageRead for StdPageRead {
    fn read_page(&self, id: PageId, buf: &mut [u8]) -> io::Result<()> {
        assert_eq!(buf.len(), page_bytes);
        self.0.read_exact_at(buf, id.offset_bytes())
    }
}

/// A page file in memory that knows which writes a crash could lose.
#[derive(Debug, Default)]
pub struct MemPageFile {
    /// What the disk holds for certain: the state at the last sync.
    durable: BTreeMap<u64, Vec<u8>>,
    durable_page_count: u64,
    /// What reads see: durable plus every write since.
    current: MemPages,
    page_count: u64,
    /// Writes since the last sync, in order.
    unsynced: Vec<(u64, Vec<u8>)>,
    /// Write and sync calls that still succeed before every call fails (a
    /// simulated power cut or a dead disk); None: never fail.
    calls_left: Option<u64>,
    /// Write and sync calls made, failed ones included.
    calls_made: u64,
}

impl MemPageFile {
    pub fn new() -> MemPageFile {
        MemPageFile::default()
    }

    /// After `calls` more successful writes or syncs, every write and sync
    /// fails, as if the machine lost power at that instant.
    pub fn fail_after(&mut self, calls: u64) {
        self.calls_left = Some(calls);
    }

    /// The file as a restart after a clean shutdown would find it: only what
    /// was synced.
    pub fn durable_image(&self) -> MemPageFile {
        MemPageFile::from_pages(self.durable.clone(), self.durable_page_count)
    }

    /// The file as a restart after a crash might find it: the durable image
    /// plus, for each page written since the last sync, any one of its versions
    /// (or none), chosen by `seed`; with `torn`, one such page keeps a prefix of
    /// its newest version over the rest of its previous bytes.
    pub fn crash(&self, seed: u64, torn: bool) -> MemPageFile {
        let mut random = SplitMix64(seed);
        let mut versions: BTreeMap<u64, Vec<&Vec<u8>>> = BTreeMap::new();
        for (id, data) in &self.unsynced {
            versions.entry(*id).or_default().push(data);
        }
        let mut pages = self.durable.clone();
        let mut page_count = self.durable_page_count;
        for (id, list) in &versions {
            let choice = random.below(list.len() as u64 + 1) as usize;
            if choice > 0 {
                pages.insert(*id, list[choice - 1].clone());
                page_count = page_count.max(id + 1);
            }
        }
        if torn && !versions.is_empty() {
            let ids: Vec<&u64> = versions.keys().collect();
            let id = *ids[random.below(ids.len() as u64) as usize];
            let newest = versions[&id].last().unwrap();
            let mut page = self.durable.get(&id).cloned().unwrap_or_else(|| vec![0; page_bytes]);
            let cut = random.below(page_bytes as u64) as usize;
            page[..cut].copy_from_slice(&newest[..cut]);
            pages.insert(id, page);
            page_count = page_count.max(id + 1);
        }
        MemPageFile::from_pages(pages, page_count)
    }

    /// Flips bits of one byte in the durable and current image (bit rot).
    pub fn damage(&mut self, id: PageId, offset: usize, mask: u8) {
        let mut current = self.current.0.write().unwrap();
        for pages in [&mut self.durable, &mut *current] {
            let page = pages.entry(id.0).or_insert_with(|| vec![0; page_bytes]);
            page[offset] ^= mask;
        }
        drop(current);
        self.page_count = self.page_count.max(id.0 + 1);
        self.durable_page_count = self.durable_page_count.max(id.0 + 1);
    }

    /// Write and sync calls made so far.
    pub fn calls_made(&self) -> u64 {
        self.calls_made
    }

    /// Pages written since the last sync (with repeats).
    pub fn unsynced_writes(&self) -> usize {
        self.unsynced.len()
    }

    fn from_pages(pages: BTreeMap<u64, Vec<u8>>, page_count: u64) -> MemPageFile {
        MemPageFile {
            durable: pages.clone(),
            durable_page_count: page_count,
            current: MemPages(Arc::new(RwLock::new(pages))),
            page_count,
            unsynced: Vec::new(),
            calls_left: None,
            calls_made: 0,
        }
    }

    fn spend_call(&mut self) -> io::Result<()> {
        self.calls_made += 1;
        match &mut self.calls_left {
            Some(0) => Err(io::Error::other("simulated power loss")),
            Some(left) => {
                *left -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }
}

impl PageFile for MemPageFile {
    fn read_page(&self, id: PageId, buf: &mut [u8]) -> io::Result<()> {
        assert_eq!(buf.len(), page_bytes);
        if id.0 >= self.page_count {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "page past end of file"));
        }
        self.current.read_page(id, buf)
    }

    fn write_page(&mut self, id: PageId, buf: &[u8]) -> io::Result<()> {
        assert_eq!(buf.len(), page_bytes);
        self.spend_call()?;
        self.current.0.write().unwrap().insert(id.0, buf.to_vec());
        self.unsynced.push((id.0, buf.to_vec()));
        self.page_count = self.page_count.max(id.0 + 1);
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.spend_call()?;
        for (id, data) in self.unsynced.drain(..) {
            self.durable.insert(id, data);
        }
        self.durable_page_count = self.page_count;
        Ok(())
    }

    fn page_count(&self) -> u64 {
        self.page_count
    }

    fn shared_reader(&self) -> Arc<dyn PageRead> {
        Arc::new(self.current.clone())
    }
}

/// What a `MemPageFile` reads: shared with its readers.
#[derive(Clone, Debug, Default)]
struct MemPages(Arc<RwLock<BTreeMap<u64, Vec<u8>>>>);

impl PageRead for MemPages {
    fn read_page(&self, id: PageId, buf: &mut [u8]) -> io::Result<()> {
        assert_eq!(buf.len(), page_bytes);
        match self.0.read().unwrap().get(&id.0) {
            Some(page) => buf.copy_from_slice(page),
            None => buf.fill(0),
        }
        Ok(())
    }
}

impl Clone for MemPageFile {
    /// An independent copy (readers of the original do not see the copy).
    fn clone(&self) -> MemPageFile {
        MemPageFile {
            durable: self.durable.clone(),
            durable_page_count: self.durable_page_count,
            current: MemPages(Arc::new(RwLock::new(self.current.0.read().unwrap().clone()))),
            page_count: self.page_count,
            unsynced: self.unsynced.clone(),
            calls_left: self.calls_left,
            calls_made: self.calls_made,
        }
    }
}

/// A tiny deterministic generator for crash choices (no global RNG).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(byte: u8) -> Vec<u8> {
        vec![byte; page_bytes]
    }

    fn read(file: &impl PageFile, id: u64) -> Vec<u8> {
        let mut buf = page(0);
        file.read_page(PageId(id), &mut buf).unwrap();
        buf
    }

    #[test]
    fn crash_keeps_durable_pages_and_some_unsynced_ones() {
        let mut file = MemPageFile::new();
        file.write_page(PageId(0), &page(1)).unwrap();
        file.sync().unwrap();
        file.write_page(PageId(0), &page(2)).unwrap();
        file.write_page(PageId(3), &page(3)).unwrap();
        let mut seen_old = false;
        let mut seen_new = false;
        for seed in 0..64 {
            let after = file.crash(seed, false);
            match read(&after, 0)[0] {
                1 => seen_old = true,
                2 => seen_new = true,
                other => panic!("page 0 holds {other}"),
            }
        }
        assert!(seen_old && seen_new);
        assert_eq!(file.durable_image().page_count(), 1);
        let mixed = |data: Vec<u8>, old: u8, new: u8| data.contains(&old) && data.contains(&new);
        let torn_seen = (0..64).any(|seed| {
            let after = file.crash(seed, true);
            mixed(read(&after, 0), 1, 2)
                || (after.page_count() == 4 && mixed(read(&after, 3), 0, 3))
        });
        assert!(torn_seen);
    }

    #[test]
    fn injected_failure_stops_writes_and_syncs() {
        let mut file = MemPageFile::new();
        file.fail_after(1);
        file.write_page(PageId(2), &page(9)).unwrap();
        assert!(file.sync().is_err());
        assert!(file.write_page(PageId(3), &page(9)).is_err());
        assert_eq!(file.durable_image().page_count(), 0);
    }

    #[test]
    fn std_page_file_round_trip() {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        let name = format!("corekv-pagefile-{}-{}", std::process::id(), nanos.as_nanos());
        let path = std::env::temp_dir().join(name);
        {
            let mut file = StdPageFile::create(&path).unwrap();
            file.write_page(PageId(2), &page(5)).unwrap();
            file.write_page(PageId(0), &page(4)).unwrap();
            file.sync().unwrap();
            assert_eq!(file.page_count(), 3);
        }
        let file = StdPageFile::open(&path).unwrap();
        assert_eq!(file.page_count(), 3);
        assert_eq!(read(&file, 2), page(5));
        assert_eq!(read(&file, 1), page(0));
        let mut buf = page(0);
        let error = file.read_page(PageId(3), &mut buf).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        std::fs::remove_file(&path).unwrap();
    }
}
