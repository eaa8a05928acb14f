//! The member: recovery, cores, listeners, the log driver.
//!
//! Start-up, in order: lock the data dir; check the ports are free (glommio's
//! bind sets SO_REUSEPORT, which would silently share a port with a stale
//! server); replay the WAL into the store; start one executor per core. The
//! log driver starts on its home core (the disk interrupt's, else core 0)
//! and may move to any core's seat (`driver_seat`); every core accepts
//! clients on the client port.

pub mod config;
mod connection;
mod driver;
mod lessor;
mod outbox;
mod placement;
mod shared;
mod watch;

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

pub use config::{Config, Resolved};
pub use connection::encode_frame;

use crate::limits;
use crate::metrics::Metrics;
use crate::mvcc::paged::PagedView;
use crate::mvcc::Store;
use crate::protocol::codec;
use crate::runtime::{self, DmaDisk, Listener};
use crate::snapshot;
use crate::types::Request;
use crate::wal;
use driver::{Driver, Parked};
use placement::Placed;
use shared::{Published, Shared};

/// The Raft term of a single voter (there is no election to move it).
const single_voter_term: u64 = 1;

/// The data dir is private, as etcd makes it (0700): it holds every key
/// and value. An existing one with wider permissions is used, with a
/// warning (as etcd does).
fn create_data_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if dir.is_dir() {
        let mode = fs::metadata(dir).map(|m| m.permissions().mode() & 0o777).unwrap_or(0o700);
        if mode & 0o077 != 0 {
            eprintln!(
                "corekv: warning: data dir {} has permission {mode:o}; 700 is recommended \
                 to keep other users from reading the data",
                dir.display()
            );
        }
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create data dir {}: {e}", dir.display()))
}

fn lock_data_dir(dir: &Path) -> Result<fs::File, String> {
    create_data_dir(dir)?;
    let path = dir.join("LOCK");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    // SAFETY: flock on a file descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(format!("data dir {} is in use by another corekv process", dir.display()));
    }
    Ok(file)
}

/// Every core binds with SO_REUSEPORT, which would silently share the port
/// with a live server: so first make sure nobody answers there. A listener of
/// a member killed a moment ago can still answer for a few milliseconds (its
/// io_uring is torn down after the process exits), so a connection is retried
/// for a while before the port counts as taken. A plain bind is no test:
/// connections a killed member left behind make it fail.
fn check_port_free(address: SocketAddr, what: &str) -> Result<(), String> {
    use std::time::{Duration, Instant};
    let mut probe = address;
    if probe.ip().is_unspecified() {
        probe.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let busy = format!("cannot listen for {what} on {address}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpStream::connect_timeout(&probe, Duration::from_millis(500)) {
            // A port in the ephemeral range can connect to itself (TCP
            // simultaneous open): that is no server either.
            Ok(stream) if stream.local_addr().ok() == stream.peer_addr().ok() => break,
            Ok(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(_) => return Err(format!("{busy}: another process is listening there")),
            Err(_) => break,
        }
    }
    Listener::check_bind(address).map_err(|e| format!("{busy}: {e}"))
}

/// What start-up recovered: the state, the WAL's tail, the page store, and
/// where the state came from.
struct Recovery {
    store: Store,
    wal: wal::Recovered,
    history: driver::History,
    /// The page store lags the state (loaded from a snapshot file instead):
    /// the first checkpoint rewrites it whole.
    rewrite: bool,
    /// The applied index the state was loaded at (before the WAL replay).
    base_index: u64,
    /// The checkpoint the store reads until it is loaded into memory
    /// (`driver::WarmUp`); None when the store is already whole in memory,
    /// or reads from disk by choice.
    warm_up: Option<PagedView>,
    /// The applied index the newest snapshot file's header names (0: none).
    newest_file_index: u64,
}

/// Opens the page store at DATA_DIR/db, creating it if it does not exist. A
/// store that does not open because it is damaged (a page or record failed
/// verification, named in the message) is moved aside, not deleted, and a
/// new one made: the state then comes from a snapshot file and the WAL, or
/// start-up fails saying what is missing. A store that cannot be read (an
/// I/O error) fails start-up and is left as it is.
/// Answers whether it was replaced.
fn open_history(config: &Resolved) -> Result<(driver::History, bool), String> {
    let path = config.data_dir.join("db");
    if !path.exists() {
        return Ok((driver::create_history(&path, config.cache_bytes)?, false));
    }
    match driver::open_history(&path, config.cache_bytes) {
        Ok(history) => Ok((history, false)),
        Err(e) if e.corrupt => {
            Ok((driver::replace_damaged(&path, config.cache_bytes, &e.message)?, true))
        }
        // A file that cannot be read is not known to be damaged: it stays.
        Err(e) => Err(format!("cannot open the page store {}", e.message)),
    }
}

/// The applied index of the newest snapshot file whose header is sound.
fn newest_snapshot_index(dir: &Path) -> Result<u64, String> {
    let files =
        snapshot::list(dir, true).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    Ok(files
        .iter()
        .rev()
        .find_map(|path| snapshot::read_meta(path).ok())
        .map_or(0, |m| m.applied_index))
}

/// Why recovery failed: the page store turned out damaged while it was read
/// (past what opening it checks), or anything else.
enum Failed {
    DamagedDb(String),
    Other(String),
}

impl From<String> for Failed {
    fn from(message: String) -> Failed {
        Failed::Other(message)
    }
}

/// Loads the state from the page store, or from the newest valid snapshot
/// file if that is newer, then replays the WAL after it. A page store found
/// damaged while loading it (a page that opening does not read) is moved
/// aside like one that does not open, and the state rebuilt from a snapshot
/// file and the WAL (or start-up refused, saying what is missing).
fn recover(config: &Resolved) -> Result<Recovery, String> {
    match recover_once(config) {
        Ok(recovery) => Ok(recovery),
        Err(Failed::Other(message)) => Err(message),
        Err(Failed::DamagedDb(message)) => {
            let path = config.data_dir.join("db");
            driver::move_damaged_aside(&path, &message)?;
            recover_once(config).map_err(|failed| match failed {
                Failed::DamagedDb(message) | Failed::Other(message) => message,
            })
        }
    }
}

fn recover_once(config: &Resolved) -> Result<Recovery, Failed> {
    let started = std::time::Instant::now();
    let (mut history, damaged) = open_history(config)?;
    let snapshot_dir = config.data_dir.join("snapshots");
    let db_index = history.applied_index();
    // The state the WAL is replayed over: a snapshot file's, or (None) the
    // page store's, read once the WAL tail's length is known.
    let newest_file_index = newest_snapshot_index(&snapshot_dir)?;
    let (from_file, base_index, rewrite) = if damaged || newest_file_index > db_index {
        let loaded = snapshot::load_newest(&snapshot_dir, |e| {
            eprintln!("corekv: warning: {e}; trying an older snapshot")
        })
        .map_err(|e| format!("cannot read {}: {e}", snapshot_dir.display()))?;
        match loaded {
            Some((path, meta, store)) if damaged || meta.applied_index > db_index => {
                eprintln!(
                    "corekv: loaded snapshot {} (index {}, revision {}) in {} ms",
                    path.display(),
                    meta.applied_index,
                    meta.revision,
                    started.elapsed().as_millis()
                );
                (Some(store), meta.applied_index, true)
            }
            _ if damaged => (Some(Store::new()), 0, true),
            _ => (None, db_index, false),
        }
    } else {
        (None, db_index, false)
    };
    // Entries are applied in batches, each read ahead from the page store
    // first (a store over a checkpoint reads each written key's current
    // version there: one by one, a restart would wait for each read). Over
    // the page store's checkpoint the first entries are held until it is
    // known whether the tail is short enough to serve before loading
    // (`warm_up_limit`).
    let limit = if from_file.is_some() { 0 } else { warm_up_limit(&mut history, config) };
    let mut store: Option<Store> = from_file.map(recording);
    let mut held: Vec<(u64, Request)> = Vec::new();
    let mut failure: Option<Failed> = None;
    let wal_dir = config.data_dir.join("wal");
    let recovered =
        wal::recover_after(&wal_dir, config.wal_segment_bytes, base_index, |_, index, payload| {
            if failure.is_some() {
                return;
            }
            match codec::decode_request(&payload) {
                Ok(request) => held.push((index, request)),
                Err(e) => {
                    failure = Some(format!("WAL entry {index} does not decode: {e}").into());
                    return;
                }
            }
            if store.is_none() && held.len() > limit {
                match load_history(&mut history, config, started, false) {
                    Ok(loaded) => store = Some(recording(loaded)),
                    Err(e) => failure = Some(e),
                }
            }
            if let Some(store) = &mut store {
                if held.len() >= limits::replay_batch_entries {
                    failure = replay(store, &mut held).err();
                }
            }
        })
        .map_err(|e| e.to_string())?;
    if let Some(failure) = failure {
        return Err(failure);
    }
    // A snapshot file names an applied index: every entry up to it was
    // acknowledged. If that file did not load (damaged after a restore,
    // which leaves no WAL), and neither the page store nor the WAL reaches
    // it, those entries are missing: refuse, never start without them.
    if recovered.last_index < newest_file_index {
        return Err(Failed::Other(format!(
            "entries {}..={newest_file_index} are missing: a snapshot file in {} holds \
             applied index {newest_file_index} but does not load, and the page store and \
             the WAL end at index {} (restore the snapshot again)",
            recovered.last_index + 1,
            snapshot_dir.display(),
            recovered.last_index
        )));
    }
    if let Some((file, offset)) = &recovered.truncated {
        eprintln!("corekv: WAL: cut a torn tail at {} offset {offset}", file.display());
    }
    let mut warm_up = None;
    let mut store = match store {
        Some(store) => store,
        None => {
            let serve_first = limit > 0;
            if serve_first {
                warm_up = Some(history.view());
            }
            recording(load_history(&mut history, config, started, serve_first)?)
        }
    };
    // Replayed over the pages, the tail's batches read many of the same
    // key-entry leaves: a page cache of the configured size (64 MiB by
    // default) evicts them between batches. Larger while replaying.
    let replay_cache = match warm_up {
        Some(_) => config.cache_bytes.max(limits::replay_cache_bytes),
        None => config.cache_bytes,
    };
    history.page_store_mut().set_cache_bytes(replay_cache);
    replay(&mut store, &mut held)?;
    history.page_store_mut().set_cache_bytes(config.cache_bytes);
    Ok(Recovery { store, wal: recovered, history, rewrite, base_index, warm_up, newest_file_index })
}

fn recording(mut store: Store) -> Store {
    store.record_changes(true);
    store
}

/// Applies `entries` (the WAL's, in order), the page store reads of each
/// batch of `limits::replay_batch_entries` issued together first (what one
/// batch reads stays within the default page cache).
/// A page of the store read while replaying that fails verification is
/// `Failed::DamagedDb` (the store is then moved aside and rebuilt).
fn replay(store: &mut Store, entries: &mut Vec<(u64, Request)>) -> Result<(), Failed> {
    for batch in entries.chunks(limits::replay_batch_entries) {
        store.prefetch(batch.iter().map(|(_, request)| request));
        for (index, request) in batch {
            if let Err(e) = store.apply(request) {
                if e.code == crate::error::ErrorCode::Corrupt {
                    let message = format!("WAL entry {index} cannot be applied: {}", e.message);
                    if crate::mvcc::is_damage(&e) {
                        return Err(Failed::DamagedDb(message));
                    }
                    return Err(Failed::Other(message));
                }
            }
        }
    }
    entries.clear();
    Ok(())
}

/// How many WAL entries after the page store's checkpoint still let the
/// member serve before the checkpoint is loaded into memory (0: never): a
/// store over the pages replays an entry in ~30 µs of page reads, the load
/// takes ~0.7 µs a key (`limits::warm_up_tail_ratio`). Not with leases held
/// (over the pages, finding each lease's keys reads every live key), nor
/// when reads stay on the pages anyway (`--experimental-reads-from-disk`), nor
/// when asked to load first (`--experimental-load-before-serving`).
fn warm_up_limit(history: &mut driver::History, config: &Resolved) -> usize {
    if config.reads_from_disk
        || config.load_before_serving
        || history.applied_index() == 0
        || !history.view().leases().is_ok_and(|leases| leases.is_empty())
    {
        return 0;
    }
    let live_keys = history.totals().live_keys.max(0) as u64;
    (live_keys / limits::warm_up_tail_ratio).min(limits::warm_up_tail_max) as usize
}

/// The store from the page store's checkpoint: read from the pages (nothing
/// loaded) with `--experimental-reads-from-disk` or when the member serves
/// first (`serve_first`: the checkpoint is loaded meanwhile, `WarmUp`),
/// else loaded into memory.
fn load_history(
    history: &mut driver::History,
    config: &Resolved,
    started: std::time::Instant,
    serve_first: bool,
) -> Result<Store, Failed> {
    let path = config.data_dir.join("db");
    let failed = |e: crate::mvcc::paged::HistoryError| {
        let message = format!("{}: {e}", path.display());
        if e.is_corruption() {
            Failed::DamagedDb(message)
        } else {
            Failed::Other(message)
        }
    };
    let store = if config.reads_from_disk || serve_first {
        Store::with_base(history.view()).map_err(failed)?
    } else {
        history.load().map_err(failed)?
    };
    if history.applied_index() > 0 {
        let (how, meanwhile) = match (config.reads_from_disk, serve_first) {
            (false, false) => ("loaded", ""),
            (false, true) => ("opened", "; loading it into memory while serving"),
            (true, _) => ("opened", ""),
        };
        eprintln!(
            "corekv: {how} checkpoint {} (index {}, revision {}, {} keys) in {} ms{meanwhile}",
            path.display(),
            history.applied_index(),
            history.revision(),
            history.totals().live_keys,
            started.elapsed().as_millis()
        );
    }
    Ok(store)
}

/// The sequence number of the oldest WAL segment left in `dir`.
fn first_wal_sequence(dir: &Path) -> u64 {
    wal::list_segments(dir, false).ok().and_then(|s| s.first().map(|(n, _)| *n)).unwrap_or(0)
}

/// Runs the member until the process is stopped.
pub fn run(config: Resolved) -> Result<(), String> {
    let _lock = lock_data_dir(&config.data_dir)?;
    for address in &config.client_addresses {
        check_port_free(*address, "clients")?;
    }
    for address in &config.peer_addresses {
        check_port_free(*address, "peers")?;
    }
    let started = std::time::Instant::now();
    let Recovery {
        store,
        wal: recovered,
        history,
        rewrite,
        base_index,
        warm_up,
        newest_file_index,
    } = recover(&config)?;
    eprintln!(
        "corekv: member {:x} ({}) recovered up to log entry {} (checkpoint at {}), revision {}, \
         data dir {}, in {} ms",
        config.member_id,
        config.name,
        recovered.last_index,
        base_index,
        store.revision(),
        config.data_dir.display(),
        started.elapsed().as_millis()
    );
    // Loading the checkpoint runs on huge pages, as it was measured against
    // the restart target (512× fewer faults); then they are turned off.
    let warm_up = match warm_up {
        Some(view) => Some(
            driver::WarmUp::start(view)
                .map_err(|e| format!("cannot start a thread to load the checkpoint: {e}"))?,
        ),
        None => {
            crate::runtime::disable_transparent_huge_pages();
            None
        }
    };
    let wal_first_sequence = first_wal_sequence(&config.data_dir.join("wal"));
    let (proposals_tx, proposals_rx) = async_channel::bounded(limits::proposals_queued_max);
    let published = Published {
        snapshot: store.snapshot(),
        applied_index: recovered.last_index,
        wal_bytes: (recovered.tail.sequence + 1 - wal_first_sequence) * config.wal_segment_bytes,
    };
    let shared = Arc::new(Shared {
        cluster_id: config.cluster_id,
        member_id: config.member_id,
        raft_term: single_voter_term,
        published: ArcSwap::from_pointee(published),
        proposals: proposals_tx,
        metrics: Metrics::new(config.cores),
        wal_first_sequence: AtomicU64::new(wal_first_sequence),
        wal_cover: Mutex::new(shared::WalCover {
            checkpoint: history.applied_index(),
            snapshot_file: newest_file_index,
        }),
        db_bytes: AtomicU64::new(
            history.page_store().page_count() * crate::pagestore::page_bytes as u64,
        ),
        watch: watch::WatchLog::new(config.cores, config.watch_progress_interval),
        lessor: lessor::Lessor::new(store.snapshot().leases()),
        placement: placement::Placement::new(
            config.cores,
            config.connection_placement == config::ConnectionPlacement::Cpu,
        ),
        snapshot_stall_timeout: config.snapshot_stall_timeout,
    });
    let driver_parts =
        Mutex::new(Some((store, proposals_rx, recovered, history, rewrite, base_index, warm_up)));
    let driver_parts = Arc::new(driver_parts);
    let config = Arc::new(config);
    let spin = std::time::Duration::from_micros(config.spin_before_park_us);
    // The log driver's home (and the lessor's core) is the core whose CPU
    // takes the WAL disk's completion interrupts, if one does
    // (`disk_interrupt_cpu`); the driver follows a lone writer elsewhere.
    let wal_dir = config.data_dir.join("wal");
    let interrupt_cpu = runtime::disk_interrupt_cpu(&wal_dir);
    let driver_core = interrupt_cpu.and_then(|cpu| runtime::core_on_cpu(config.cores, cpu));
    // Away from home, the driver polls for its WAL writes only if home is
    // where they all complete: the disk has one hardware queue, whose
    // interrupt a core's CPU takes (`Follow::write_spin`).
    let one_queue = runtime::disk_queues(&wal_dir) == Some(1);
    let spin_away = if driver_core.is_some() && one_queue {
        config.wal_spin
    } else {
        std::time::Duration::ZERO
    };
    if let (Some(core), Some(cpu)) = (driver_core, interrupt_cpu) {
        eprintln!("corekv: log driver on core {core} (CPU {cpu} takes the WAL disk's interrupts)");
    }
    let driver_core = driver_core.unwrap_or(0);
    // Every core has a seat the log driver can move to (`driver::Follow`).
    let (seats, arrivals): (Vec<_>, Vec<_>) =
        (0..config.cores).map(|_| async_channel::bounded::<Parked>(1)).unzip();
    let seats = Arc::new(seats);
    let arrivals = Arc::new(Mutex::new(arrivals.into_iter().map(Some).collect::<Vec<_>>()));
    runtime::run_cores(config.cores, "corekv", spin, move |core| {
        let (shared, config, driver_parts) = (shared.clone(), config.clone(), driver_parts.clone());
        let (seats, arrivals) = (seats.clone(), arrivals.clone());
        async move {
            if let Err(e) = runtime::probe_dma_reads(&config.data_dir, core).await {
                eprintln!("corekv: fatal: {e}");
                std::process::exit(1);
            }
            let arrivals = arrivals.lock().unwrap()[core].take().expect("one seat per core");
            let mut first = None;
            if core == driver_core {
                let parts = driver_parts.lock().unwrap().take().expect("the driver starts once");
                let parked = parked_driver(&config, shared.clone(), parts, driver_core, spin_away);
                // Opened before this core serves clients: a WAL that cannot
                // be written stops the start-up.
                match Driver::resume(DmaDisk, parked, core).await {
                    Ok(driver) => first = Some(driver),
                    Err((e, _)) => {
                        eprintln!("corekv: fatal: cannot open the WAL for writing: {e}");
                        std::process::exit(1);
                    }
                }
            }
            runtime::spawn(driver_seat(core, first, arrivals, seats.clone()));
            if core == driver_core {
                runtime::spawn(lessor::run(shared.clone()));
                for address in &config.peer_addresses {
                    runtime::spawn(refuse_peers(*address));
                }
            }
            serve_clients(&config, shared, core).await;
        }
    })
    .map_err(|e| format!("cannot start the cores: {e}"))
}

/// What the log driver starts with.
type DriverParts = (
    Store,
    async_channel::Receiver<shared::Proposal>,
    wal::Recovered,
    driver::History,
    bool,
    u64,
    Option<driver::WarmUp>,
);

/// The log driver as recovery leaves it, before any core took it up.
fn parked_driver(
    config: &Resolved,
    shared: Arc<Shared>,
    (store, proposals, recovered, history, rewrite, base_index, warm_up): DriverParts,
    home: usize,
    spin_away: std::time::Duration,
) -> Parked {
    let wal_dir = config.data_dir.join("wal");
    let wal = wal::Suspended::at_tail(
        &wal_dir,
        config.wal_segment_bytes,
        recovered.last_index,
        recovered.tail,
    );
    let checkpoints =
        driver::Checkpoints::new(config, shared.clone(), history, rewrite, base_index, warm_up);
    let follow = driver::Follow::new(home, spin_away);
    Parked { shared, store, wal, proposals, checkpoints, follow, from: None }
}

/// Core `core`'s seat for the log driver: runs it (`first`, then whenever
/// it moves here), and hands it on to the core it moves to next. If the
/// WAL cannot be opened here (out of file descriptors, say), the driver
/// goes back to the core it came from; if it cannot be opened there
/// either, the member stops.
async fn driver_seat(
    core: usize,
    mut first: Option<Driver<DmaDisk>>,
    arrivals: async_channel::Receiver<Parked>,
    seats: Arc<Vec<async_channel::Sender<Parked>>>,
) {
    loop {
        let driver = match first.take() {
            Some(driver) => driver,
            None => {
                let Ok(parked) = arrivals.recv().await else { return };
                match Driver::resume(DmaDisk, parked, core).await {
                    Ok(driver) => driver,
                    Err((e, mut parked)) => {
                        let Some(from) = parked.from.take() else {
                            eprintln!(
                                "corekv: fatal: cannot open the WAL for writing on core {core}: \
                                 {e}; stopping"
                            );
                            std::process::exit(70);
                        };
                        eprintln!(
                            "corekv: cannot open the WAL for writing on core {core}: {e}; \
                             the log driver goes back to core {from}"
                        );
                        hand_over(&seats, from, parked);
                        continue;
                    }
                }
            }
        };
        let spin = driver.wal.write_spin();
        if !spin.is_zero() {
            eprintln!(
                "corekv: log driver on core {core} polls up to {} µs for each WAL write",
                spin.as_micros()
            );
        }
        let Some((parked, to)) = driver.run().await else { return };
        eprintln!("corekv: log driver moves from core {core} to core {to}, following its writes");
        hand_over(&seats, to, parked);
    }
}

/// Seats the parked driver on core `to` (its seat is empty: there is one
/// driver).
fn hand_over(seats: &[async_channel::Sender<Parked>], to: usize, parked: Parked) {
    if seats[to].try_send(parked).is_err() {
        eprintln!("corekv: fatal: core {to} cannot take the log driver; stopping");
        std::process::exit(70);
    }
}

/// The peer port is held (as etcd holds it) but no peer protocol exists yet:
/// connections are closed at once.
async fn refuse_peers(address: SocketAddr) {
    let Ok(listener) = Listener::bind(address) else {
        eprintln!("corekv: cannot listen for peers on {address}");
        return;
    };
    while let Ok(stream) = listener.accept().await {
        drop(stream);
    }
}

async fn serve_clients(config: &Resolved, shared: Arc<Shared>, core: usize) {
    let mut listeners = Vec::new();
    for address in &config.client_addresses {
        match Listener::bind(*address) {
            Ok(listener) => listeners.push(Rc::new(listener)),
            Err(e) => {
                eprintln!("corekv: fatal: cannot listen for clients on {address}: {e}");
                std::process::exit(1);
            }
        }
    }
    if core == 0 {
        let addresses: Vec<String> =
            config.client_addresses.iter().map(|a| a.to_string()).collect();
        let placement = match config.connection_placement {
            config::ConnectionPlacement::Cpu => "the core on the CPU that receives its packets",
            config::ConnectionPlacement::Hash => "the core that accepted it",
        };
        eprintln!(
            "corekv: serving clients on {} with {} cores (each connection on {placement})",
            addresses.join(","),
            config.cores
        );
    }
    let accepting = listeners.into_iter().map(|listener| {
        let shared = shared.clone();
        async move {
            loop {
                match listener.accept().await {
                    Ok(stream) => {
                        if let Placed::Here(stream) =
                            shared.placement.place(stream, core, &shared.metrics)
                        {
                            runtime::spawn(connection::serve(stream, shared.clone(), core));
                        }
                    }
                    Err(e) => {
                        eprintln!("corekv: accept failed on core {core}: {e}");
                        runtime::sleep(std::time::Duration::from_millis(10)).await;
                    }
                }
            }
        }
    });
    for task in accepting.collect::<Vec<_>>() {
        runtime::spawn(task);
    }
    // Connections other cores accepted for this one (`placement`).
    let inbox = shared.placement.inbox(core);
    runtime::spawn(async move {
        while let Ok(handed) = inbox.recv().await {
            runtime::spawn(connection::serve(handed.into_stream(), shared.clone(), core));
        }
    });
    // The executor lives as long as the process.
    std::future::pending::<()>().await;
}
