//! The log driver: propose → append to the log → commit → apply → publish →
//! reply, on one core at a time (it follows a lone writer's core: `Follow`).
//! With a single voter an entry is committed once it is durable in the
//! local log; the Raft core (its own module, later) takes the commit
//! decision without changing the shape of this loop.
//!
//! Group commit: while one batch is being written and synced, proposals queue
//! up in the channel; the next batch takes all of them (up to the limits).
//!
//! Checkpoints: every applied batch's changes (`Store::take_changes`) wait
//! in `pending`. Every `--snapshot-count` applied entries (or
//! `--snapshot-interval` seconds with new entries), the store's in-memory
//! layer is frozen and a thread of its own (the loop never waits for it)
//! folds the changes into the page store (DATA_DIR/db, `mvcc::paged`),
//! checkpoints it and purges WAL segments wholly below
//! `index - --wal-retain-entries`; the store is then rebased onto that
//! checkpoint. One at a time: the page store travels to the thread and back.
//! The newest checkpointed state is also written as a snapshot file to
//! DATA_DIR/snapshots (keeping the newest `--snapshot-retain`) by another
//! thread, one file at a time, never holding up the next checkpoint.
//!
//! Warm-up: after a restart the store reads the page store's checkpoint in
//! place (plus the WAL replayed over it) while a thread loads it into
//! memory; the loop then takes the loaded copy up (`WarmUp`) and publishes
//! it. No checkpoint starts meanwhile.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::disk::LogDisk;
use crate::limits;
use crate::metrics::add;
use crate::mvcc::paged::{PagedHistory, PagedView};
use crate::mvcc::{HistoryChange, Store};
use crate::pagestore::{DirectPageFile, PageStore};
use crate::types::{Request, Response};
use crate::wal::{EntryRef, Suspended, WalWriter};

use super::config::{Resolved, SnapshotPolicy};
use super::shared::{Proposal, Published, Shared, WalCover};
use crate::snapshot::{self, Meta};

/// The page store holding the history, and the checkpoints that keep it.
pub type History = PagedHistory<DirectPageFile>;

/// What a checkpoint thread hands back: the history (None if it could not
/// even be reopened after a failure), and whether it holds every change up
/// to the checkpoint (false after a failure: the next one rewrites it whole).
struct Done {
    history: Option<History>,
    complete: bool,
    /// The checkpoint written, for the store to read older history from.
    view: Option<PagedView>,
    /// The state checkpointed, for the next snapshot file.
    state: Option<(crate::mvcc::Snapshot, Meta)>,
}

/// The page store's checkpoint being loaded into memory on a thread of its
/// own while the member already serves from the pages (start-up: a restart
/// takes the time of opening the page store and replaying the WAL, not that
/// of loading the history). Once loaded, the store takes it up
/// (`Store::adopt_loaded`) and reads no more from the pages; until then no
/// checkpoint starts, so the loaded copy stays the store's base.
pub struct WarmUp {
    started: Instant,
    /// The error says whether the pages turned out damaged.
    loading: JoinHandle<Result<Store, (String, bool)>>,
}

impl WarmUp {
    /// Starts loading `view` (at nice 10, as checkpoints run).
    pub fn start(view: PagedView) -> std::io::Result<WarmUp> {
        let started = Instant::now();
        let loading = crate::runtime::spawn_low_priority("warm-up", move || {
            view.load().map_err(|e| (e.to_string(), e.is_corruption()))
        })?;
        Ok(WarmUp { started, loading })
    }
}

/// The member's checkpoints: when the next is due, the changes it will fold
/// in, and the one being written.
pub struct Checkpoints {
    policy: SnapshotPolicy,
    snapshot_dir: PathBuf,
    wal_dir: PathBuf,
    db_path: PathBuf,
    cache_bytes: usize,
    last_index: u64,
    last_at: Instant,
    /// The page store, while no checkpoint has it.
    history: Option<History>,
    /// Changes applied since the last checkpoint took its share.
    pending: Vec<HistoryChange>,
    /// The page store misses changes (it lags a loaded snapshot, or a
    /// checkpoint failed): the next checkpoint writes the whole state.
    rewrite: bool,
    writing: Option<JoinHandle<Done>>,
    /// The newest checkpointed state not yet written as a snapshot file.
    file_due: Option<(crate::mvcc::Snapshot, Meta)>,
    file_writing: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    /// `--experimental-reads-from-disk`: the store reads older history from
    /// the checkpoints (else it keeps everything in memory too; during a
    /// warm-up it reads the pages too, but no checkpoint starts then).
    reads_from_disk: bool,
    warm_up: Option<WarmUp>,
}

impl Checkpoints {
    pub fn new(
        config: &Resolved,
        shared: Arc<Shared>,
        history: History,
        rewrite: bool,
        last_index: u64,
        warm_up: Option<WarmUp>,
    ) -> Checkpoints {
        Checkpoints {
            policy: config.snapshots,
            snapshot_dir: config.data_dir.join("snapshots"),
            wal_dir: config.data_dir.join("wal"),
            db_path: config.data_dir.join("db"),
            cache_bytes: config.cache_bytes,
            last_index,
            last_at: Instant::now(),
            history: Some(history),
            pending: Vec::new(),
            rewrite,
            writing: None,
            file_due: None,
            file_writing: None,
            shared,
            reads_from_disk: config.reads_from_disk,
            warm_up,
        }
    }

    /// Takes up the checkpoint loaded into memory once its thread is done;
    /// whether the store changed. If loading or taking it up failed, the
    /// checkpoint is damaged: the member stops, the page store moved aside
    /// if a page failed verification, so that the next start rebuilds it
    /// from a snapshot file and the WAL (not fail the same way again).
    pub fn take_up_warm_up(&mut self, store: &mut Store) -> bool {
        if self.warm_up.as_ref().is_none_or(|w| !w.loading.is_finished()) {
            return false;
        }
        let WarmUp { started, loading } = self.warm_up.take().expect("checked");
        let adopted = match loading.join() {
            Ok(Ok(loaded)) => store.adopt_loaded(loaded).map_err(|e| (e, false)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(("the loading thread panicked".into(), false)),
        };
        crate::runtime::disable_transparent_huge_pages();
        match adopted {
            Ok(()) => {
                eprintln!(
                    "corekv: warm-up done: checkpoint {} in memory {} ms after serving began \
                     (revision {}, {} keys now)",
                    self.db_path.display(),
                    started.elapsed().as_millis(),
                    store.revision(),
                    store.snapshot().live_keys()
                );
                true
            }
            Err((e, damaged)) => {
                eprintln!(
                    "corekv: fatal: cannot load checkpoint {} into memory: {e}; stopping",
                    self.db_path.display()
                );
                if damaged {
                    let _ = move_damaged_aside(&self.db_path, "the page store is damaged");
                }
                std::process::exit(70);
            }
        }
    }

    /// Whether the changes waiting for a checkpoint exceed what memory may
    /// hold while one runs (`SnapshotPolicy::backlog_max`).
    fn behind(&self) -> bool {
        self.pending.len() > self.policy.backlog_max
            && (self.writing.is_some() || self.warm_up.is_some())
    }

    /// How often the driver looks for a checkpoint due by time (or a
    /// finished warm-up) while idle.
    fn tick(&self) -> Option<std::time::Duration> {
        if self.warm_up.is_some() {
            return Some(std::time::Duration::from_millis(10));
        }
        (self.policy.interval_secs > 0).then(|| std::time::Duration::from_millis(250))
    }

    /// Collects a finished checkpoint (the store then reads the history it
    /// folded from the page store); whether none is running now.
    fn idle(&mut self, store: &mut Store) -> bool {
        if self.writing.as_ref().is_some_and(|w| !w.is_finished()) {
            return false;
        }
        if let Some(done) = self.writing.take() {
            match done.join() {
                Ok(Done { history: None, .. }) => {
                    // The page store cannot be written any more: going on
                    // would keep every change in memory and the whole WAL
                    // (no checkpoint purges it) until either runs out. The
                    // WAL holds every entry since the last checkpoint; a
                    // restart recovers from it, or says why it cannot.
                    eprintln!(
                        "corekv: fatal: the page store {} cannot be reopened (or replaced) \
                         after a failed checkpoint; stopping",
                        self.db_path.display()
                    );
                    std::process::exit(70);
                }
                Ok(Done { history, complete, view, state }) => {
                    self.history = history;
                    self.rewrite |= !complete;
                    if let Some(view) = view.filter(|_| self.reads_from_disk) {
                        store.rebase(view);
                    }
                    if state.is_some() {
                        self.file_due = state;
                    }
                }
                Err(_) => eprintln!("corekv: the checkpoint thread panicked; checkpoints stop"),
            }
        }
        self.maybe_write_file();
        true
    }

    /// Writes the newest checkpointed state as a snapshot file, unless one
    /// is being written (the newest due is written after it).
    fn maybe_write_file(&mut self) {
        if self.file_writing.as_ref().is_some_and(|w| !w.is_finished()) {
            return;
        }
        if let Some(done) = self.file_writing.take() {
            let _ = done.join();
        }
        let Some((state, meta)) = self.file_due.take() else { return };
        let (dir, wal_dir, policy, shared) =
            (self.snapshot_dir.clone(), self.wal_dir.clone(), self.policy, self.shared.clone());
        let spawned = crate::runtime::spawn_background("snapshot", move || {
            write_snapshot_file(&shared, &dir, &wal_dir, policy, &state, &meta)
        });
        match spawned {
            Ok(handle) => self.file_writing = Some(handle),
            Err(e) => eprintln!("corekv: cannot start a snapshot thread: {e}"),
        }
    }

    fn due(&mut self, applied_index: u64, store: &mut Store) -> bool {
        if !self.idle(store) || self.history.is_none() || self.warm_up.is_some() {
            return false;
        }
        let new_entries = applied_index.saturating_sub(self.last_index);
        let by_count = self.policy.count > 0 && new_entries >= self.policy.count;
        let by_time = self.policy.interval_secs > 0
            && new_entries > 0
            && self.last_at.elapsed().as_secs() >= self.policy.interval_secs;
        by_count || by_time
    }

    /// Records a batch's changes, then starts a checkpoint of `published`
    /// if one is due.
    fn after_batch(
        &mut self,
        shared: &Arc<Shared>,
        published: &Published,
        store: &mut Store,
        changes: Vec<HistoryChange>,
    ) {
        if self.pending.is_empty() {
            self.pending = changes;
        } else {
            self.pending.extend(changes);
        }
        if !self.due(published.applied_index, store) {
            return;
        }
        // Reading from disk, the changes being folded stay readable in a
        // frozen layer until the checkpoint holding them is taken up (`idle`).
        if self.reads_from_disk {
            store.freeze();
        }
        self.last_index = published.applied_index;
        self.last_at = Instant::now();
        let job = Job {
            history: self.history.take().expect("due checks it is here"),
            changes: std::mem::take(&mut self.pending),
            rewrite: std::mem::take(&mut self.rewrite),
            state: published.snapshot.clone(),
            meta: shared.snapshot_meta(published),
            policy: self.policy,
            wal_dir: self.wal_dir.clone(),
            db_path: self.db_path.clone(),
            cache_bytes: self.cache_bytes,
        };
        let shared = shared.clone();
        // The thread is handed the history; if it cannot start, nothing ran.
        let (job_tx, job_rx) = std::sync::mpsc::channel::<Job>();
        let spawned =
            crate::runtime::spawn_low_priority("checkpoint", move || match job_rx.recv() {
                Ok(job) => job.run(&shared),
                Err(_) => Done { history: None, complete: false, view: None, state: None },
            });
        match spawned {
            Ok(handle) => {
                job_tx.send(job).expect("the thread waits for its job");
                self.writing = Some(handle);
            }
            Err(e) => {
                eprintln!("corekv: cannot start a checkpoint thread: {e}");
                self.history = Some(job.history);
                self.rewrite = true;
            }
        }
    }
}

/// Records what the page store's checkpoint or the newest snapshot file now
/// holds (`update`), then purges the WAL segments wholly below what both
/// hold, less `wal_retain_entries`. Until a snapshot file is written, or
/// while writing them fails, nothing is purged: a damaged page store can
/// always be rebuilt from the newest file plus the WAL after it.
fn purge_wal(
    shared: &Shared,
    wal_dir: &Path,
    wal_retain_entries: u64,
    update: impl FnOnce(&mut WalCover),
) {
    // Held while purging: one purge at a time.
    let mut cover = shared.wal_cover.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    update(&mut cover);
    let covered = cover.checkpoint.min(cover.snapshot_file);
    let keep_from = covered.saturating_sub(wal_retain_entries) + 1;
    match crate::wal::purge(wal_dir, keep_from) {
        Ok(purged) => {
            add(&shared.metrics.snapshots.wal_segments_purged, purged as u64);
            shared.wal_first_sequence.fetch_add(purged as u64, Ordering::Relaxed);
        }
        Err(e) => eprintln!("corekv: cannot purge the WAL in {}: {e}", wal_dir.display()),
    }
}

/// Writes one snapshot file (paced, on its own thread), keeps the newest
/// `policy.retain`, then purges the WAL below it (and the checkpoint). A
/// failure is reported: the page store and the WAL hold the state.
fn write_snapshot_file(
    shared: &Shared,
    dir: &Path,
    wal_dir: &Path,
    policy: SnapshotPolicy,
    state: &crate::mvcc::Snapshot,
    meta: &Meta,
) {
    let started = Instant::now();
    let counters = &shared.metrics.snapshots;
    let duty = crate::limits::snapshot_work_fraction;
    match snapshot::save_in_dir(dir, state, meta, duty) {
        Ok((path, summary)) => {
            add(&counters.taken, 1);
            add(&counters.bytes, summary.compressed_bytes);
            eprintln!(
                "corekv: snapshot {} (index {}, revision {}, {} keys) in {} ms",
                path.display(),
                meta.applied_index,
                meta.revision,
                summary.keys,
                started.elapsed().as_millis()
            );
        }
        Err(e) => {
            eprintln!("corekv: snapshot at index {} failed: {e}", meta.applied_index);
            return;
        }
    }
    if let Err(e) = snapshot::retain(dir, policy.retain) {
        eprintln!("corekv: cannot delete old snapshots in {}: {e}", dir.display());
    }
    purge_wal(shared, wal_dir, policy.wal_retain_entries, |cover| {
        cover.snapshot_file = cover.snapshot_file.max(meta.applied_index);
    });
}

/// One checkpoint, on its own thread.
struct Job {
    history: History,
    changes: Vec<HistoryChange>,
    rewrite: bool,
    state: crate::mvcc::Snapshot,
    meta: Meta,
    policy: SnapshotPolicy,
    wal_dir: PathBuf,
    db_path: PathBuf,
    cache_bytes: usize,
}

impl Job {
    /// Checkpoints the page store, then purges the WAL below it. A failure
    /// is reported, not fatal: the WAL still holds every entry, and nothing
    /// is purged.
    fn run(mut self, shared: &Shared) -> Done {
        let started = Instant::now();
        let index = self.meta.applied_index;
        let folded = if self.rewrite {
            self.history.replace_all(&self.state)
        } else {
            self.history.apply(&self.changes)
        };
        drop(std::mem::take(&mut self.changes));
        let (live_keys, size_bytes) = (self.state.live_keys(), self.state.size_bytes());
        let checkpointed = folded.and_then(|()| {
            self.history.checkpoint(index, self.meta.revision, live_keys, size_bytes)
        });
        if let Err(e) = checkpointed {
            eprintln!(
                "corekv: checkpoint of {} at index {index} failed: {e}; the next one rewrites it",
                self.db_path.display()
            );
            drop(self.history);
            let history = if e.is_corruption() {
                replace_damaged(&self.db_path, self.cache_bytes, &e.to_string())
            } else {
                reopen(&self.db_path, self.cache_bytes)
            };
            return Done { history: history.ok(), complete: false, view: None, state: None };
        }
        let checkpointed_ms = started.elapsed().as_millis();
        add(&shared.metrics.snapshots.checkpoints, 1);
        purge_wal(shared, &self.wal_dir, self.policy.wal_retain_entries, |cover| {
            cover.checkpoint = cover.checkpoint.max(index);
        });
        let store = self.history.page_store();
        let db_bytes = store.page_count() * crate::pagestore::page_bytes as u64;
        shared.db_bytes.store(db_bytes, Ordering::Relaxed);
        eprintln!(
            "corekv: checkpoint {} (index {index}, revision {}{}, {} pages, {} free) in {checkpointed_ms} ms",
            self.db_path.display(),
            self.meta.revision,
            if self.rewrite { ", rewritten whole" } else { "" },
            store.page_count(),
            store.free_page_count(),
        );
        let view = self.history.view();
        let state = Some((self.state, self.meta));
        Done { history: Some(self.history), complete: true, view: Some(view), state }
    }
}

/// Why the page store did not open: its content is damaged (`corrupt`: a
/// page or record failed verification), or the file could not be read
/// (nothing is known about its content).
#[derive(Debug)]
pub struct OpenError {
    pub message: String,
    pub corrupt: bool,
}

/// Opens the page store at `path` as its last checkpoint left it.
pub fn open_history(path: &Path, cache_bytes: usize) -> Result<History, OpenError> {
    let error = |message: String, corrupt: bool| OpenError {
        message: format!("{}: {message}", path.display()),
        corrupt,
    };
    let file = DirectPageFile::open(path).map_err(|e| error(e.to_string(), false))?;
    let store = PageStore::open(warn_if_buffered(file, path), cache_bytes).map_err(|e| {
        let corrupt = matches!(e, crate::pagestore::StoreError::Corrupt { .. });
        error(e.to_string(), corrupt)
    })?;
    PagedHistory::open(store).map_err(|e| error(e.to_string(), e.is_corruption()))
}

/// A file system without O_DIRECT (tmpfs) still works, through the OS page
/// cache: said once, on stderr.
fn warn_if_buffered(file: DirectPageFile, path: &Path) -> DirectPageFile {
    if !file.is_direct() {
        eprintln!(
            "corekv: warning: {} cannot be opened with O_DIRECT on this file system; \
             its pages are cached by the OS as well as by --cache-size",
            path.display()
        );
    }
    file
}

/// Creates an empty page store at `path` (which must not exist).
pub fn create_history(path: &Path, cache_bytes: usize) -> Result<History, String> {
    let mut store = DirectPageFile::create_store(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    store.set_cache_bytes(cache_bytes);
    PagedHistory::open(store).map_err(|e| format!("{}: {e}", path.display()))
}

/// Moves a damaged page store aside (kept for inspection, never deleted) and
/// puts an empty one in its place, to be rewritten whole.
pub fn replace_damaged(path: &Path, cache_bytes: usize, why: &str) -> Result<History, String> {
    let replaced = move_damaged_aside(path, why).and_then(|()| create_history(path, cache_bytes));
    if let Err(e) = &replaced {
        eprintln!("corekv: {e}");
    }
    replaced
}

/// Moves a damaged page store aside (kept, never deleted): the next start
/// rebuilds it from a snapshot file and the WAL.
pub fn move_damaged_aside(path: &Path, why: &str) -> Result<(), String> {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let aside = path.with_extension(format!("damaged-{seconds}"));
    eprintln!("corekv: warning: {why}; moving {} to {}", path.display(), aside.display());
    std::fs::rename(path, &aside).map_err(|e| format!("cannot move {} aside: {e}", path.display()))
}

/// The page store as its last checkpoint left it (after a failed one).
fn reopen(path: &Path, cache_bytes: usize) -> Result<History, String> {
    let reopened = open_history(path, cache_bytes).map_err(|e| e.message);
    if let Err(e) = &reopened {
        eprintln!("corekv: cannot reopen {e}");
    }
    reopened
}

/// Where the log driver should run. A write whose connection is served on
/// another core than the driver's wakes both cores' executors, on the way in
/// and on the way back; on the 2-vCPU VMs of docs/performance.md each such
/// wake costs ~50 µs of a 1-client put's latency. So when every write of
/// `limits::driver_follow_batches` batches in a row came from one core, in
/// small batches (`limits::driver_follow_entries_max`), the driver moves
/// there (a lone client's writes then never leave its core); when they
/// come from several, or in larger batches, it moves back home, the core
/// whose CPU takes the WAL disk's interrupts (`runtime::disk_interrupt_cpu`),
/// where group commit under many clients runs fastest. At most one move every
/// `limits::driver_move_interval_ms`.
#[derive(Debug)]
pub struct Follow {
    home: usize,
    /// How long a WAL write is waited for by polling away from home
    /// (`write_spin`).
    spin_away: Duration,
    wanted: usize,
    streak: u32,
    last_move: Option<Instant>,
}

impl Follow {
    /// `spin_away`: zero unless home is the core whose CPU takes the
    /// interrupts of a disk with one queue (`write_spin`).
    pub fn new(home: usize, spin_away: Duration) -> Follow {
        Follow { home, spin_away, wanted: home, streak: 0, last_move: None }
    }

    /// How long the driver, on core `here`, waits for each WAL write by
    /// polling before it sleeps (`WalWriter::set_write_spin`). Away from
    /// home, the lone writer it follows waits for the reply, so the core
    /// has little else to do, and the write's completion, raised on the
    /// home CPU, would otherwise wake this one from sleep (~60 µs on the
    /// VMs of docs/performance.md). At home, the driver never polls: the
    /// completion is finished by a kernel worker on that same CPU, which a
    /// polling executor would hold off until the scheduler's next tick.
    pub fn write_spin(&self, here: usize) -> Duration {
        if here == self.home {
            Duration::ZERO
        } else {
            self.spin_away
        }
    }

    /// Takes note of one batch's origins (the cores of its writes' clients;
    /// None for the member's own); the core to move to, if the driver,
    /// running on `here`, should move now. A batch of more than
    /// `limits::driver_follow_entries_max` writes counts as from several
    /// cores: one busy core (a pipelining client, many connections placed
    /// on one core) gains more from the driver on another CPU than from
    /// saving hops.
    pub fn observe(
        &mut self,
        origins: impl IntoIterator<Item = Option<usize>>,
        here: usize,
        now: Instant,
    ) -> Option<usize> {
        let mut one = None;
        let mut several = false;
        for (n, origin) in origins.into_iter().flatten().enumerate() {
            if n >= limits::driver_follow_entries_max {
                several = true;
                break;
            }
            match one {
                None => one = Some(origin),
                Some(core) if core != origin => {
                    several = true;
                    break;
                }
                Some(_) => {}
            }
        }
        let wanted = match (one, several) {
            (_, true) => self.home,
            (Some(core), false) => core,
            // Only the member's own writes: no client to follow.
            (None, _) => return None,
        };
        if wanted == self.wanted {
            self.streak = self.streak.saturating_add(1);
        } else {
            self.wanted = wanted;
            self.streak = 1;
        }
        let interval = std::time::Duration::from_millis(limits::driver_move_interval_ms);
        let rested = self.last_move.is_none_or(|at| now.duration_since(at) >= interval);
        if wanted == here || self.streak < limits::driver_follow_batches || !rested {
            return None;
        }
        self.last_move = Some(now);
        self.streak = 0;
        Some(wanted)
    }
}

/// The log driver between two cores: everything it owns but the WAL's open
/// file, which belongs to one core's ring (`WalWriter::suspend`).
pub struct Parked {
    pub shared: Arc<Shared>,
    pub store: Store,
    pub wal: Suspended,
    pub proposals: async_channel::Receiver<Proposal>,
    pub checkpoints: Checkpoints,
    pub follow: Follow,
    /// The core it left, to go back to if the WAL cannot be opened where it
    /// goes (None: nowhere to go back to).
    pub from: Option<usize>,
}

pub struct Driver<D: LogDisk> {
    pub shared: Arc<Shared>,
    pub store: Store,
    pub wal: WalWriter<D>,
    pub proposals: async_channel::Receiver<Proposal>,
    pub checkpoints: Checkpoints,
    pub follow: Follow,
    /// The core it runs on.
    pub here: usize,
}

impl<D: LogDisk> Driver<D> {
    /// Takes up a parked driver on core `here`: reopens the WAL on it.
    /// If the WAL's file cannot be opened here, the driver is handed back.
    pub async fn resume(
        disk: D,
        parked: Parked,
        here: usize,
    ) -> Result<Driver<D>, (std::io::Error, Parked)> {
        let Parked { shared, store, wal, proposals, checkpoints, follow, from } = parked;
        match WalWriter::resume(disk, wal).await {
            Ok(mut wal) => {
                wal.set_write_spin(follow.write_spin(here));
                Ok(Driver { shared, store, wal, proposals, checkpoints, follow, here })
            }
            Err((e, wal)) => {
                Err((e, Parked { shared, store, wal, proposals, checkpoints, follow, from }))
            }
        }
    }

    /// Runs until the proposal queue closes (None), or until the writes come
    /// from another core: then the driver is parked, for that core to take
    /// it up (`Follow`).
    pub async fn run(mut self) -> Option<(Parked, usize)> {
        let mut batch: Vec<Proposal> = Vec::with_capacity(limits::batch_entries_max);
        loop {
            // With a checkpoint interval, a quiet member still checkpoints its tail.
            let first = match self.checkpoints.tick() {
                None => self.proposals.recv().await.ok(),
                Some(tick) => match crate::runtime::timeout(tick, self.proposals.recv()).await {
                    Some(received) => received.ok(),
                    None => {
                        self.take_up_warm_up();
                        let published = self.shared.published.load_full();
                        let changes = self.store.take_changes();
                        self.checkpoints.after_batch(
                            &self.shared,
                            &published,
                            &mut self.store,
                            changes,
                        );
                        continue;
                    }
                },
            };
            let first = first?;
            let mut bytes = first.payload.len();
            batch.push(first);
            while batch.len() < limits::batch_entries_max && bytes < limits::batch_bytes_max {
                match self.proposals.try_recv() {
                    Ok(p) => {
                        bytes += p.payload.len();
                        batch.push(p);
                    }
                    Err(_) => break,
                }
            }
            let origins = batch.iter().map(|p| p.origin);
            let to = self.follow.observe(origins, self.here, Instant::now());
            self.step(&mut batch).await;
            if let Some(to) = to {
                return Some((self.park().await, to));
            }
        }
    }

    /// Closes the WAL's file (nothing is in flight between batches).
    async fn park(self) -> Parked {
        let Driver { shared, store, wal, proposals, checkpoints, follow, here } = self;
        let wal = match wal.suspend().await {
            Ok(wal) => wal,
            Err(e) => {
                eprintln!("corekv: fatal: cannot close the WAL to move the log driver: {e}");
                std::process::exit(70);
            }
        };
        Parked { shared, store, wal, proposals, checkpoints, follow, from: Some(here) }
    }

    /// Takes up a finished warm-up (`WarmUp`) and publishes the store in
    /// memory at once: readers stop reading the pages now, not at the next
    /// write.
    fn take_up_warm_up(&mut self) {
        if self.checkpoints.take_up_warm_up(&mut self.store) {
            let published = self.shared.published.load_full();
            self.shared.publish(Published {
                snapshot: self.store.snapshot(),
                applied_index: published.applied_index,
                wal_bytes: published.wal_bytes,
            });
        }
    }

    async fn step(&mut self, batch: &mut Vec<Proposal>) {
        // 1. Append to the log and make it durable.
        let first_index = self.wal.last_index() + 1;
        let entries: Vec<EntryRef<'_>> = batch
            .iter()
            .enumerate()
            .map(|(i, p)| EntryRef {
                term: self.shared.raft_term,
                index: first_index + i as u64,
                payload: &p.payload,
            })
            .collect();
        let (bytes_before, syncs_before) = (self.wal.bytes_written(), self.wal.syncs());
        if let Err(e) = self.wal.append(&entries).await {
            // Never retry an fsync: the page cache state is unknown after a failure.
            eprintln!("corekv: fatal: WAL append failed: {e}; stopping the member");
            std::process::exit(70);
        }
        let log = &self.shared.metrics.log;
        add(&log.batches, 1);
        add(&log.entries, batch.len() as u64);
        add(&log.wal_bytes, self.wal.bytes_written() - bytes_before);
        add(&log.wal_syncs, self.wal.syncs() - syncs_before);
        // 2. Commit: a single voter's durable entries are committed.
        let commit_index = self.wal.last_index();
        // 3. Apply in log order; each reply carries the revision after its entry.
        let mut replies = Vec::with_capacity(batch.len());
        self.store.prefetch(batch.iter().map(|proposal| &proposal.request));
        for proposal in batch.drain(..) {
            let result = self.store.apply(&proposal.request);
            match (&proposal.request, &result) {
                (Request::LeaseGrant(g), Ok(_)) => self.shared.lessor.granted(g.id, g.ttl),
                (Request::LeaseRevoke(id), _) => self.shared.lessor.revoked(*id),
                _ => {}
            }
            if let Err(e) = &result {
                if e.code == crate::error::ErrorCode::Corrupt {
                    // The entry is committed but cannot be applied: going on
                    // would serve a state that differs from the log.
                    eprintln!("corekv: fatal: cannot apply log entry: {}; stopping", e.message);
                    // A page of the store failed verification: the next
                    // start rebuilds it from a snapshot file and the WAL.
                    if crate::mvcc::is_damage(e) {
                        let why = "the page store is damaged";
                        let _ = move_damaged_aside(&self.checkpoints.db_path, why);
                    }
                    std::process::exit(70);
                }
            }
            let header = self.shared.header(self.store.revision());
            replies.push((proposal.reply, proposal.request_id, Response { header, result }));
        }
        // 4. Publish, then acknowledge.
        self.checkpoints.take_up_warm_up(&mut self.store);
        let snapshot = self.store.snapshot();
        let first_sequence = self.shared.wal_first_sequence.load(Ordering::Relaxed);
        let published = Published {
            snapshot,
            applied_index: commit_index,
            wal_bytes: self.wal.disk_bytes(first_sequence),
        };
        let changes = self.store.take_changes();
        let watched = self.shared.watch.prepare(&changes);
        self.checkpoints.after_batch(&self.shared, &published, &mut self.store, changes);
        self.shared.publish(published);
        if let Some(batch) = watched {
            self.shared.watch.record(batch);
        }
        for (reply, request_id, response) in replies {
            // A full or closed channel means the connection is gone.
            let _ = reply.try_send((request_id, Box::new(response)));
        }
        // Write stall: when checkpoints fall behind the writes, stop taking
        // proposals until one catches up, so the changes waiting in memory
        // (and the WAL) stay bounded.
        if self.checkpoints.behind() {
            add(&self.shared.metrics.snapshots.write_stalls, 1);
            let started = Instant::now();
            while self.checkpoints.behind() {
                crate::runtime::sleep(std::time::Duration::from_millis(2)).await;
                self.take_up_warm_up();
                let published = self.shared.published.load_full();
                let changes = self.store.take_changes();
                self.checkpoints.after_batch(&self.shared, &published, &mut self.store, changes);
            }
            eprintln!(
                "corekv: write stall of {} ms: checkpoints fell behind the writes",
                started.elapsed().as_millis()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Feeds `batches` batches of `origins` at `step` apart from `start`;
    /// the moves asked for, as (batch number, core).
    fn feed(
        follow: &mut Follow,
        here: &mut usize,
        origins: &[Option<usize>],
        batches: u32,
        start: Instant,
        step: Duration,
    ) -> Vec<(u32, usize)> {
        let mut moves = Vec::new();
        for n in 0..batches {
            if let Some(to) = follow.observe(origins.iter().copied(), *here, start + step * n) {
                assert_ne!(to, *here);
                moves.push((n, to));
                *here = to;
            }
        }
        moves
    }

    #[test]
    fn the_driver_follows_one_core_and_goes_home_when_writes_come_from_several() {
        let (mut follow, mut here, start) = (Follow::new(1, Duration::ZERO), 1, Instant::now());
        let ms = Duration::from_millis(1);
        let need = limits::driver_follow_batches;
        // A lone writer on core 0: the driver moves there after `need` batches.
        let moves = feed(&mut follow, &mut here, &[Some(0)], need + 10, start, ms);
        assert_eq!(moves, vec![(need - 1, 0)]);
        // Writes from both cores: back home, once a second has passed.
        let later = start + Duration::from_secs(2);
        let mixed = [Some(0), Some(1), Some(0)];
        let moves = feed(&mut follow, &mut here, &mixed, need + 10, later, ms);
        assert_eq!(moves, vec![(need - 1, 1)]);
        // Writes from home alone: the driver stays.
        let later = start + Duration::from_secs(4);
        assert!(feed(&mut follow, &mut here, &[Some(1), None], 500, later, ms).is_empty());
    }

    #[test]
    fn a_streak_broken_by_other_cores_or_too_soon_after_a_move_does_not_move() {
        let (mut follow, mut here, start) = (Follow::new(0, Duration::ZERO), 0, Instant::now());
        let ms = Duration::from_millis(1);
        let need = limits::driver_follow_batches;
        // Alternating lone writers: never `need` in a row from one core.
        for n in 0..2000 {
            let origin = [Some(1 + (n / (need / 2)) as usize % 2)];
            assert_eq!(follow.observe(origin, here, start + ms * n), None, "batch {n}");
        }
        // The member's own writes (a lease's expiry) neither start nor
        // break a streak.
        let later = start + Duration::from_secs(10);
        let moves = feed(&mut follow, &mut here, &[None], 1000, later, ms);
        assert!(moves.is_empty());
        // The alternation ended with `carried` batches from core 1.
        let carried = 1999 % (need / 2) + 1;
        let moves = feed(&mut follow, &mut here, &[Some(1)], need, later, ms);
        assert_eq!(moves, vec![(need - 1 - carried, 1)], "the streak of core 1 went on");
        // Straight after a move, a new lone writer elsewhere waits until a
        // whole interval has passed since it.
        let moved_at = later + ms * (need - 1 - carried);
        let soon = later + ms * need;
        let moves = feed(&mut follow, &mut here, &[Some(0)], 3000, soon, ms);
        let interval = Duration::from_millis(limits::driver_move_interval_ms);
        let first_allowed = ((moved_at + interval) - soon).as_millis() as u32;
        assert_eq!(moves, vec![(first_allowed, 0)]);
    }

    #[test]
    fn large_batches_from_one_core_count_as_several() {
        let (mut follow, mut here, start) = (Follow::new(1, Duration::ZERO), 1, Instant::now());
        let ms = Duration::from_millis(1);
        let need = limits::driver_follow_batches;
        // One pipelining client (or every connection on core 0): batches
        // larger than a lone writer's keep the driver home.
        let busy = vec![Some(0); limits::driver_follow_entries_max + 1];
        assert!(feed(&mut follow, &mut here, &busy, 1000, start, ms).is_empty());
        // Up to the limit, they are a lone writer's.
        let lone = vec![Some(0); limits::driver_follow_entries_max];
        let moves = feed(&mut follow, &mut here, &lone, need, start + ms * 1000, ms);
        assert_eq!(moves, vec![(need - 1, 0)]);
        // And once the driver is there, large batches take it back home.
        let later = start + Duration::from_secs(5);
        let moves = feed(&mut follow, &mut here, &busy, need, later, ms);
        assert_eq!(moves, vec![(need - 1, 1)]);
    }
}
