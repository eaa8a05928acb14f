//! loadgen: drives corekv (native protocol) or etcd (v3 gRPC) with the same
//! workloads, thread-per-core: one tokio current-thread runtime per thread,
//! each with its share of connections and clients. Closed loop by default;
//! with `--rate`, open loop with latency measured from each request's intended
//! send time (no coordinated omission). Prints a progress line per second on
//! stderr and one JSON line per run on stdout.

mod etcd;
mod lease;
mod native;
mod watch;

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use corekv::types::*;
use hdrhistogram::Histogram;

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    Put,
    Get,
    Range,
    Txn,
    Mixed,
    /// `--watchers` watches on the keys' prefix while `--clients` writers put.
    Watch,
    /// Each client grants a lease with a key, renews it (keep-alive) in a
    /// closed loop, then revokes it.
    Lease,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Corekv,
    Etcd,
}

#[derive(Parser, Debug, Clone)]
#[command(name = "loadgen", about = "Load generator for corekv and etcd")]
struct Args {
    workload: Workload,
    /// Comma-separated host:port endpoints; connections are spread over them.
    #[arg(long, default_value = "127.0.0.1:2379")]
    endpoints: String,
    #[arg(long, value_enum, default_value = "corekv")]
    target: Target,
    /// Concurrent clients (each has one request outstanding in closed loop).
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Connections shared by the clients (default: one per client, up to 64).
    #[arg(long)]
    conns: Option<usize>,
    /// Load-generating threads (default: every available CPU).
    #[arg(long)]
    threads: Option<usize>,
    /// Pin load-generating thread N to the Nth available CPU (round-robin):
    /// thread-per-core clients, each connection's packets sent from one CPU
    /// as a NIC's receive queue delivers a remote client's. `--pin false`:
    /// threads move between CPUs as the scheduler likes.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pin: bool,
    /// How long to run (e.g. 10s, 500ms, 1m).
    #[arg(long, default_value = "10s")]
    duration: String,
    /// Stop after this many operations (0: no limit).
    #[arg(long, default_value_t = 0)]
    total: u64,
    #[arg(long, default_value_t = 32)]
    key_size: usize,
    #[arg(long, default_value_t = 256)]
    val_size: usize,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 10_000)]
    keyspace: u64,
    /// Target operations per second over all clients (open loop); 0: closed loop.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Serializable reads (served locally) instead of linearizable ones.
    #[arg(long)]
    serializable: bool,
    /// Keys per range request.
    #[arg(long, default_value_t = 100)]
    range_keys: i64,
    /// Fraction of reads in the mixed workload.
    #[arg(long, default_value_t = 0.9)]
    read_ratio: f64,
    /// Write every key once before measuring (default: for read workloads).
    #[arg(long)]
    prefill: Option<bool>,
    /// Watches opened by the watch workload (over --conns connections).
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    /// Watch workload: each watcher watches one key (watcher i: key i of the
    /// keyspace) instead of the whole prefix.
    #[arg(long)]
    watch_distinct: bool,
    /// Watch workload: seconds to wait once every watcher exists, before the
    /// writers start (to measure the server's memory with watchers only).
    #[arg(long, default_value_t = 0.0)]
    settle: f64,
    /// Watch workload: this many more watchers on the prefix, each on a
    /// connection of its own that is never read (stalled clients).
    #[arg(long, default_value_t = 0)]
    stalled: usize,
    /// Watch workload: puts each writer keeps in flight on its connection
    /// (each a closed loop; etcd's client multiplexes them on one HTTP/2
    /// connection, corekv's on one native connection).
    #[arg(long, default_value_t = 1)]
    writer_depth: usize,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    corekv::ctl::parse_duration(text)
}

/// The key for index `i`, exactly `size` bytes.
fn key_of(i: u64, size: usize) -> Bytes {
    let digits = format!("{i}");
    let mut key = vec![b'k'; size.max(digits.len() + 1)];
    let start = key.len() - digits.len();
    key[start..].copy_from_slice(digits.as_bytes());
    Bytes::from(key)
}

/// A small, fast, per-client random number generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Clone)]
enum Handle {
    Native(Rc<native::Connection>),
    Etcd(etcd_client::KvClient),
}

struct Shared {
    args: Args,
    value: Bytes,
    ops: AtomicU64,
    errors: AtomicU64,
    claimed: AtomicU64,
    stop: AtomicBool,
    first_error: std::sync::Mutex<Option<String>>,
}

enum Op {
    Put(u64),
    Get(u64),
    Range(u64),
    Txn(u64),
}

async fn execute(
    handle: &mut Handle,
    op: &Op,
    shared: &Shared,
    known: &mut HashMap<u64, i64>,
) -> Result<(), String> {
    let args = &shared.args;
    match (handle, op) {
        (Handle::Native(c), Op::Put(i)) => {
            let put = PutRequest {
                key: key_of(*i, args.key_size),
                value: shared.value.clone(),
                ..Default::default()
            };
            c.call(&Request::Put(put)).await?.result.map(drop).map_err(|e| e.to_string())
        }
        (Handle::Native(c), Op::Get(i)) => {
            let get = RangeRequest {
                key: key_of(*i, args.key_size),
                serializable: args.serializable,
                ..Default::default()
            };
            c.call(&Request::Range(get)).await?.result.map(drop).map_err(|e| e.to_string())
        }
        (Handle::Native(c), Op::Range(i)) => {
            let range = RangeRequest {
                key: key_of(*i, args.key_size),
                range_end: Bytes::from_static(b"\0"),
                limit: args.range_keys,
                serializable: args.serializable,
                ..Default::default()
            };
            c.call(&Request::Range(range)).await?.result.map(drop).map_err(|e| e.to_string())
        }
        (Handle::Native(c), Op::Txn(i)) => {
            let key = key_of(*i, args.key_size);
            let txn = TxnRequest {
                compare: vec![Compare {
                    target: CompareTarget::Mod,
                    result: CompareResult::Equal,
                    key: key.clone(),
                    number: known.get(i).copied().unwrap_or(0),
                    ..Default::default()
                }],
                success: vec![RequestOp::Put(PutRequest {
                    key: key.clone(),
                    value: shared.value.clone(),
                    ..Default::default()
                })],
                failure: vec![RequestOp::Range(RangeRequest { key, ..Default::default() })],
            };
            let response = c.call(&Request::Txn(txn)).await?;
            let revision = response.header.revision;
            match response.result.map_err(|e| e.to_string())? {
                ResponseBody::Txn(t) if t.succeeded => {
                    known.insert(*i, revision);
                }
                ResponseBody::Txn(t) => {
                    let current = match t.responses.first() {
                        Some(ResponseOp::Range(r)) => r.kvs.first().map_or(0, |kv| kv.mod_revision),
                        _ => 0,
                    };
                    known.insert(*i, current);
                }
                other => return Err(format!("unexpected response {other:?}")),
            }
            Ok(())
        }
        (Handle::Etcd(kv), Op::Put(i)) => {
            etcd::put(kv, &key_of(*i, args.key_size), &shared.value).await
        }
        (Handle::Etcd(kv), Op::Get(i)) => {
            etcd::get(kv, &key_of(*i, args.key_size), args.serializable).await
        }
        (Handle::Etcd(kv), Op::Range(i)) => {
            etcd::range(kv, &key_of(*i, args.key_size), args.range_keys, args.serializable).await
        }
        (Handle::Etcd(kv), Op::Txn(i)) => {
            let key = key_of(*i, args.key_size);
            let (revision, _) =
                etcd::txn(kv, &key, &shared.value, known.get(i).copied().unwrap_or(0)).await?;
            known.insert(*i, revision);
            Ok(())
        }
    }
}

fn choose(args: &Args, rng: &mut Rng) -> Op {
    let key = rng.below(args.keyspace);
    match args.workload {
        Workload::Put => Op::Put(key),
        Workload::Get => Op::Get(key),
        Workload::Range => Op::Range(key),
        Workload::Txn => Op::Txn(key),
        Workload::Mixed if rng.unit() < args.read_ratio => Op::Get(key),
        Workload::Mixed | Workload::Watch | Workload::Lease => Op::Put(key),
    }
}

/// One client: closed loop, or open loop at `interval` per request.
async fn client(
    mut handle: Handle,
    shared: Arc<Shared>,
    index: usize,
    start: Instant,
    deadline: Instant,
    histogram: Rc<std::cell::RefCell<Histogram<u64>>>,
) {
    let args = &shared.args;
    let mut rng = Rng(0x9E3779B97F4A7C15 ^ ((index as u64 + 1) * 0x2545F4914F6CDD1D));
    let mut known = HashMap::new();
    let interval =
        (args.rate > 0.0).then(|| Duration::from_secs_f64(args.clients as f64 / args.rate));
    let mut intended =
        start + interval.map_or(Duration::ZERO, |i| i.mul_f64(index as f64 / args.clients as f64));
    loop {
        if let Some(interval) = interval {
            tokio::time::sleep_until(intended.into()).await;
            intended += interval;
        }
        let now = Instant::now();
        if now >= deadline || shared.stop.load(Relaxed) {
            return;
        }
        if args.total > 0 && shared.claimed.fetch_add(1, Relaxed) >= args.total {
            return;
        }
        let sent = interval.map_or(now, |i| intended - i);
        let op = choose(args, &mut rng);
        match execute(&mut handle, &op, &shared, &mut known).await {
            Ok(()) => {
                let micros = sent.elapsed().as_micros().max(1) as u64;
                let _ = histogram.borrow_mut().record(micros.min(60_000_000));
                shared.ops.fetch_add(1, Relaxed);
            }
            Err(e) => {
                shared.errors.fetch_add(1, Relaxed);
                shared.first_error.lock().unwrap().get_or_insert(e);
                if let Handle::Native(c) = &handle {
                    if c.call(&Request::Status).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

async fn connect(args: &Args, endpoint: &str) -> Result<Handle, String> {
    Ok(match args.target {
        Target::Corekv => Handle::Native(native::Connection::connect(endpoint).await?),
        Target::Etcd => Handle::Etcd(etcd::connect(endpoint).await?),
    })
}

/// Writes every key of `range` once (not measured).
async fn prefill(
    handles: &[Handle],
    shared: &Arc<Shared>,
    keys: std::ops::Range<u64>,
) -> Result<(), String> {
    let per = (keys.end - keys.start).div_ceil(handles.len() as u64 * 8).max(1);
    let mut tasks = Vec::new();
    let mut start = keys.start;
    let mut n = 0;
    while start < keys.end {
        let end = (start + per).min(keys.end);
        let mut handle = handles[n % handles.len()].clone();
        let shared = shared.clone();
        tasks.push(tokio::task::spawn_local(async move {
            let mut known = HashMap::new();
            for i in start..end {
                execute(&mut handle, &Op::Put(i), &shared, &mut known).await?;
            }
            Ok::<(), String>(())
        }));
        start = end;
        n += 1;
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

fn run_thread(
    shared: Arc<Shared>,
    thread: usize,
    threads: usize,
) -> Result<Histogram<u64>, String> {
    pin_thread(&shared.args, thread);
    run_local(async move {
        let args = &shared.args;
        let endpoints = endpoint_list(&args.endpoints);
        let conns = args.conns.unwrap_or(args.clients.min(64)).max(threads);
        let my_conns = conns / threads + usize::from(thread < conns % threads);
        let my_clients = args.clients / threads + usize::from(thread < args.clients % threads);
        let mut handles = Vec::new();
        for c in 0..my_conns.max(1) {
            handles
                .push(connect(args, &endpoints[(thread + c * threads) % endpoints.len()]).await?);
        }
        let prefill_wanted = args.prefill.unwrap_or(args.workload != Workload::Put);
        if prefill_wanted {
            let per = args.keyspace.div_ceil(threads as u64);
            let keys = (thread as u64 * per).min(args.keyspace)
                ..((thread as u64 + 1) * per).min(args.keyspace);
            prefill(&handles, &shared, keys).await?;
        }
        PREFILLED.fetch_add(1, Relaxed);
        while PREFILLED.load(Relaxed) < threads {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let start = Instant::now();
        let deadline = start + parse_duration(&args.duration)?;
        let histogram = Rc::new(std::cell::RefCell::new(
            Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap(),
        ));
        let tasks: Vec<_> = (0..my_clients)
            .map(|c| {
                let handle = handles[c % handles.len()].clone();
                let index = thread + c * threads;
                tokio::task::spawn_local(client(
                    handle,
                    shared.clone(),
                    index,
                    start,
                    deadline,
                    histogram.clone(),
                ))
            })
            .collect();
        for task in tasks {
            let _ = task.await;
        }
        let histogram = histogram.borrow().clone();
        Ok(histogram)
    })
}

/// With `--pin` (the default), pins load-generating thread `thread` to
/// the available CPUs' `thread`th (round-robin).
fn pin_thread(args: &Args, thread: usize) {
    if args.pin {
        let cpus = corekv::runtime::available_cpus();
        corekv::runtime::pin_current_thread(cpus[thread % cpus.len()]);
    }
}

/// The `--endpoints` list (comma-separated, blanks dropped).
fn endpoint_list(endpoints: &str) -> Vec<String> {
    endpoints.split(',').map(str::trim).filter(|e| !e.is_empty()).map(String::from).collect()
}

/// Runs `work` on this thread's own tokio runtime (current-thread, local
/// tasks): loadgen's threads are each a single-threaded client.
fn run_local<T>(work: impl std::future::Future<Output = Result<T, String>>) -> Result<T, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    tokio::task::LocalSet::new().block_on(&runtime, work)
}

/// Threads done prefilling: measuring starts when all are.
static PREFILLED: AtomicUsize = AtomicUsize::new(0);

fn main() {
    let args = Args::parse();
    if let Err(e) = parse_duration(&args.duration) {
        eprintln!("loadgen: --duration: {e}");
        std::process::exit(2);
    }
    if args.clients == 0 || args.keyspace == 0 || args.rate < 0.0 {
        eprintln!("loadgen: --clients and --keyspace must be positive, --rate not negative");
        std::process::exit(2);
    }
    let threads = args
        .threads
        .unwrap_or_else(|| corekv::runtime::available_cpus().len())
        .clamp(1, args.clients);
    if args.workload == Workload::Lease {
        match lease::run(args, threads) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("loadgen: error: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    if args.workload == Workload::Watch {
        // Threads read the watchers' connections; writers are few.
        let threads = args
            .threads
            .unwrap_or_else(|| corekv::runtime::available_cpus().len())
            .clamp(1, args.conns.unwrap_or(64).max(1));
        match watch::run(args, threads) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("loadgen: error: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    let value = Bytes::from((0..args.val_size).map(|i| b'a' + (i % 26) as u8).collect::<Vec<u8>>());
    let shared = Arc::new(Shared {
        args: args.clone(),
        value,
        ops: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        claimed: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        first_error: std::sync::Mutex::new(None),
    });
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("loadgen-{t}"))
                .spawn(move || run_thread(shared, t, threads))
                .unwrap()
        })
        .collect();
    // Progress, once a second, once every thread has finished prefilling.
    while PREFILLED.load(Relaxed) < threads && !workers.iter().all(|w| w.is_finished()) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let start = Instant::now();
    let mut last = 0;
    let mut next = start + Duration::from_secs(1);
    while !workers.iter().all(|w| w.is_finished()) {
        std::thread::sleep(Duration::from_millis(20));
        if Instant::now() >= next {
            let ops = shared.ops.load(Relaxed);
            eprintln!(
                "loadgen: {:>4.0}s {:>9} ops/s {:>10} ops {:>6} errors",
                start.elapsed().as_secs_f64(),
                ops - last,
                ops,
                shared.errors.load(Relaxed)
            );
            last = ops;
            next += Duration::from_secs(1);
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    for worker in workers {
        match worker.join().unwrap() {
            Ok(h) => histogram.add(h).unwrap(),
            Err(e) => {
                eprintln!("loadgen: error: {e}");
                std::process::exit(1);
            }
        }
    }
    let ops = shared.ops.load(Relaxed);
    let errors = shared.errors.load(Relaxed);
    if let Some(e) = shared.first_error.lock().unwrap().as_ref() {
        eprintln!("loadgen: first error: {e}");
    }
    let q = |q: f64| histogram.value_at_quantile(q);
    let line = serde_json::json!({
        "workload": format!("{:?}", args.workload).to_lowercase(),
        "target": format!("{:?}", args.target).to_lowercase(),
        "clients": args.clients,
        "conns": args.conns.unwrap_or(args.clients.min(64)).max(threads),
        "threads": threads,
        "serializable": args.serializable,
        "rate": args.rate,
        "key_size": args.key_size,
        "val_size": args.val_size,
        "keyspace": args.keyspace,
        "ops": ops,
        "errors": errors,
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "ops_per_sec": (ops as f64 / seconds).round(),
        "p50_us": q(0.5),
        "p90_us": q(0.9),
        "p99_us": q(0.99),
        "p999_us": q(0.999),
        "max_us": histogram.max(),
    });
    println!("{line}");
}
