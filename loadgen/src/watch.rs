//! The watch workload: `--watchers` watches, spread over `--conns`
//! connections, on one prefix (or, with `--watch-distinct`, one key each),
//! while `--clients` writers put keys under it. Every value starts with the
//! time it was sent, so each delivered event gives a delivery latency (put
//! sent → event received). Checks that every watcher gets every revision of
//! its keys exactly once, in order, and reports events delivered per second.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use corekv::protocol::{self, codec, FrameDecoder, Preface};
use corekv::types::*;
use flatbuffers::FlatBufferBuilder;
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{key_of, parse_duration, Args, Handle, Target};

/// The prefix every key of the workload has (`key_of` keys start with 'k').
const PREFIX: &[u8] = b"k";
const PREFIX_END: &[u8] = b"l";

fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// A value of `size` bytes (at least 16) that starts with the send time.
fn stamped(size: usize) -> Bytes {
    let mut value = format!("{:016x}", now_nanos()).into_bytes();
    value.resize(size.max(16), b'v');
    Bytes::from(value)
}

fn stamp_of(value: &[u8]) -> Option<u64> {
    u64::from_str_radix(std::str::from_utf8(value.get(..16)?).ok()?, 16).ok()
}

pub struct Totals {
    /// Watchers created, over all threads.
    ready: AtomicUsize,
    /// Set once the writers are done: the newest revision written.
    last_revision: AtomicI64,
    /// The revision before the first put.
    first_revision: AtomicI64,
    writing: AtomicBool,
    puts: AtomicU64,
    events: AtomicU64,
    missing: AtomicU64,
    duplicates: AtomicU64,
    /// Revisions of each key written (for `--watch-distinct`): per key, how
    /// many puts it got.
    per_key: Vec<AtomicU64>,
}

/// One watcher's view of its stream.
#[derive(Default, Clone)]
struct Seen {
    last: i64,
    events: u64,
}

struct Checker {
    seen: Vec<Seen>,
    histogram: Histogram<u64>,
}

impl Checker {
    /// An event for watcher `w` at `revision` with `value`, in a response
    /// received at `now` (nanoseconds); answers whether it was
    /// new (the caller counts those, once per response).
    fn event(
        &mut self,
        totals: &Totals,
        w: usize,
        revision: i64,
        value: &[u8],
        distinct: bool,
        now: u64,
    ) -> bool {
        let seen = &mut self.seen[w];
        if revision <= seen.last {
            totals.duplicates.fetch_add(1, Relaxed);
            return false;
        }
        if !distinct && seen.last > 0 && revision != seen.last + 1 {
            totals.missing.fetch_add((revision - seen.last - 1) as u64, Relaxed);
        }
        seen.last = revision;
        seen.events += 1;
        if let Some(sent) = stamp_of(value) {
            let micros = now.saturating_sub(sent) / 1000;
            let _ = self.histogram.record(micros.clamp(1, 60_000_000));
        }
        true
    }
}

/// The keys watcher `w` watches.
fn watched(args: &Args, w: usize) -> (Bytes, Bytes) {
    if args.watch_distinct {
        (key_of(w as u64 % args.keyspace, args.key_size), Bytes::new())
    } else {
        (Bytes::from_static(PREFIX), Bytes::from_static(PREFIX_END))
    }
}

/// A connection to a corekv server, past the protocol preface.
async fn native_stream(endpoint: &str) -> Result<TcpStream, String> {
    let mut stream = TcpStream::connect(endpoint).await.map_err(|e| format!("{endpoint}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    stream.write_all(&protocol::preface()).await.map_err(|e| e.to_string())?;
    let mut preface = [0u8; protocol::preface_bytes];
    stream.read_exact(&mut preface).await.map_err(|e| e.to_string())?;
    if !matches!(protocol::parse_preface(&preface), Preface::Native { .. }) {
        return Err(format!("{endpoint}: not a corekv server"));
    }
    Ok(stream)
}

/// Whether a connection's watchers are done: the writers have stopped and
/// each has seen the last revision written, or the drain time ran out.
fn drained(
    args: &Args,
    totals: &Totals,
    watchers: &[usize],
    checker: &RefCell<Checker>,
    drain_until: &mut Option<Instant>,
) -> bool {
    let last = totals.last_revision.load(Relaxed);
    if last == 0 {
        return false;
    }
    let checker = checker.borrow();
    let done = watchers.iter().all(|w| checker.seen[*w].last >= last || args.watch_distinct);
    done || Instant::now() > *drain_until.get_or_insert(Instant::now() + DRAIN_TIME)
}

/// Watches on one native connection until every watcher has seen the last
/// revision (or the drain time runs out).
async fn native_watchers(
    args: Arc<Args>,
    totals: Arc<Totals>,
    endpoint: String,
    watchers: Vec<usize>,
    checker: Rc<RefCell<Checker>>,
) -> Result<(), String> {
    let mut stream = native_stream(&endpoint).await?;
    // Request id r + 1 is watcher watchers[r]'s stream.
    let mut fbb = FlatBufferBuilder::new();
    let mut frames = Vec::new();
    for (r, w) in watchers.iter().enumerate() {
        let (key, range_end) = watched(&args, *w);
        let create = WatchCreateRequest { key, range_end, ..Default::default() };
        let body = codec::encode_request(&mut fbb, &Request::WatchCreate(create));
        protocol::write_frame(&mut frames, r as u64 + 1, body);
    }
    stream.write_all(&frames).await.map_err(|e| e.to_string())?;
    let mut decoder = FrameDecoder::for_responses();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut created = 0;
    let mut drain_until = None::<Instant>;
    loop {
        if drained(&args, &totals, &watchers, &checker, &mut drain_until) {
            return Ok(());
        }
        let read = tokio::time::timeout(Duration::from_millis(50), stream.read(&mut buffer)).await;
        let n = match read {
            Err(_) => continue,
            Ok(Ok(0)) => return Err("the server closed a watch connection".into()),
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(e.to_string()),
        };
        decoder.push(&buffer[..n]);
        let mut new_events = 0;
        while let Ok(Some((header, body))) = decoder.next_frame() {
            // Read in place (no copy of the events): this loop is what a
            // watch client pays per event.
            let options =
                flatbuffers::VerifierOptions { max_tables: 16 * 1024 * 1024, ..Default::default() };
            let response = flatbuffers::root_with_opts::<protocol::wire::Response>(&options, &body)
                .map_err(|e| format!("malformed watch response: {e}"))?;
            if let Some(error) = response.error() {
                return Err(format!("watch error: {}", error.message().unwrap_or("")));
            }
            let Some(watch) = response.body_as_watch_response() else {
                return Err(format!("unexpected response to watch stream {}", header.request_id));
            };
            let w = watchers[header.request_id as usize - 1];
            if watch.created() {
                created += 1;
                if created == watchers.len() {
                    totals.ready.fetch_add(watchers.len(), Relaxed);
                }
            }
            if watch.canceled() {
                return Err(format!("watch {w} canceled: {}", watch.cancel_reason().unwrap_or("")));
            }
            // Received now: read once per response, as for etcd's.
            let now = now_nanos();
            let mut checker = checker.borrow_mut();
            for event in watch.events().into_iter().flatten() {
                let Some(kv) = event.kv() else { continue };
                let value = kv.value().map_or(&[][..], |v| v.bytes());
                let revision = kv.mod_revision();
                new_events +=
                    checker.event(&totals, w, revision, value, args.watch_distinct, now) as u64;
            }
        }
        totals.events.fetch_add(new_events, Relaxed);
    }
}

/// The same on one etcd client: all its watches on one gRPC watch stream.
async fn etcd_watchers(
    args: Arc<Args>,
    totals: Arc<Totals>,
    endpoint: String,
    watchers: Vec<usize>,
    checker: Rc<RefCell<Checker>>,
) -> Result<(), String> {
    use etcd_client::WatchOptions;
    let client = etcd_client::Client::connect([format!("http://{endpoint}")], None)
        .await
        .map_err(|e| format!("{endpoint}: {e}"))?;
    let options = |w: usize| {
        let (key, range_end) = watched(&args, w);
        let options = WatchOptions::new();
        let options =
            if range_end.is_empty() { options } else { options.with_range(range_end.to_vec()) };
        (key.to_vec(), options)
    };
    let (key, first) = options(watchers[0]);
    let (mut watcher, mut stream) =
        client.watch_client().watch(key, Some(first)).await.map_err(|e| e.to_string())?;
    // Watch ids in creation order (etcd numbers them on the stream).
    let mut ids = std::collections::HashMap::new();
    ids.insert(watcher.watch_id(), watchers[0]);
    for w in &watchers[1..] {
        let (key, options) = options(*w);
        watcher.watch(key, Some(options)).await.map_err(|e| e.to_string())?;
    }
    let mut pending_ids = watchers[1..].iter().copied();
    let mut created = 1;
    if created == watchers.len() {
        totals.ready.fetch_add(watchers.len(), Relaxed);
    }
    let mut drain_until = None::<Instant>;
    loop {
        if drained(&args, &totals, &watchers, &checker, &mut drain_until) {
            return Ok(());
        }
        let message = match tokio::time::timeout(Duration::from_millis(50), stream.message()).await
        {
            Err(_) => continue,
            Ok(message) => message.map_err(|e| e.to_string())?,
        };
        let Some(response) = message else { return Err("etcd closed a watch stream".into()) };
        if response.created() {
            if let Some(w) = pending_ids.next() {
                ids.insert(response.watch_id(), w);
                created += 1;
                if created == watchers.len() {
                    totals.ready.fetch_add(watchers.len(), Relaxed);
                }
            }
            continue;
        }
        if response.canceled() {
            return Err(format!("watch canceled: {}", response.cancel_reason()));
        }
        let Some(&w) = ids.get(&response.watch_id()) else { continue };
        let mut checker = checker.borrow_mut();
        let now = now_nanos();
        let mut new_events = 0;
        for event in response.events() {
            if let Some(kv) = event.kv() {
                let (revision, distinct) = (kv.mod_revision(), args.watch_distinct);
                new_events += checker.event(&totals, w, revision, kv.value(), distinct, now) as u64;
            }
        }
        totals.events.fetch_add(new_events, Relaxed);
    }
}

/// A watcher on the prefix whose connection is never read: held open until
/// `done` is set.
async fn stalled_watcher(
    args: Arc<Args>,
    endpoint: String,
    done: Arc<AtomicBool>,
) -> Result<(), String> {
    match args.target {
        Target::Corekv => {
            let mut stream = native_stream(&endpoint).await?;
            let create = WatchCreateRequest {
                key: Bytes::from_static(PREFIX),
                range_end: Bytes::from_static(PREFIX_END),
                ..Default::default()
            };
            let mut fbb = FlatBufferBuilder::new();
            let mut frame = Vec::new();
            protocol::write_frame(
                &mut frame,
                1,
                codec::encode_request(&mut fbb, &Request::WatchCreate(create)),
            );
            stream.write_all(&frame).await.map_err(|e| e.to_string())?;
            while !done.load(Relaxed) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            drop(stream);
        }
        Target::Etcd => {
            let client = etcd_client::Client::connect([format!("http://{endpoint}")], None)
                .await
                .map_err(|e| format!("{endpoint}: {e}"))?;
            let options = etcd_client::WatchOptions::new().with_range(PREFIX_END.to_vec());
            let (_watcher, _stream) = client
                .watch_client()
                .watch(PREFIX.to_vec(), Some(options))
                .await
                .map_err(|e| e.to_string())?;
            while !done.load(Relaxed) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    Ok(())
}

/// How long watchers wait for the last events once the writers stop.
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// One writer: `--writer-depth` closed loops sharing one connection, each
/// putting at full speed until the deadline (the keys interleave: loop `d`
/// of writer `index` puts keys `index + (d + k * depth) * clients`).
async fn writer(
    args: Arc<Args>,
    totals: Arc<Totals>,
    endpoint: String,
    index: usize,
    deadline: Instant,
) -> Result<i64, String> {
    let target = Rc::new(match args.target {
        Target::Corekv => Handle::Native(crate::native::Connection::connect(&endpoint).await?),
        Target::Etcd => Handle::Etcd(crate::etcd::connect(&endpoint).await?),
    });
    let depth = args.writer_depth.max(1);
    let loops: Vec<_> = (0..depth)
        .map(|d| {
            let first = (index + d * args.clients) as u64;
            let step = (args.clients * depth) as u64;
            let (args, totals, target) = (args.clone(), totals.clone(), target.clone());
            tokio::task::spawn_local(async move {
                put_loop(&args, &totals, &target, first, step, deadline).await
            })
        })
        .collect();
    let mut newest = 0;
    for each in loops {
        newest = newest.max(each.await.map_err(|e| e.to_string())??);
    }
    Ok(newest)
}

/// Puts keys `first`, `first + step`, … one at a time until the deadline;
/// answers the newest revision written.
async fn put_loop(
    args: &Args,
    totals: &Totals,
    target: &Handle,
    first: u64,
    step: u64,
    deadline: Instant,
) -> Result<i64, String> {
    let mut newest = 0;
    let mut i = first;
    while Instant::now() < deadline {
        let key = key_of(i % args.keyspace, args.key_size);
        let value = stamped(args.val_size);
        let revision = match target {
            Handle::Native(native) => {
                let put = PutRequest { key, value, ..Default::default() };
                let response = native.call(&Request::Put(put)).await?;
                response.result.map_err(|e| e.to_string())?;
                response.header.revision
            }
            Handle::Etcd(kv) => {
                let mut kv = kv.clone();
                let response =
                    kv.put(key.to_vec(), value.to_vec(), None).await.map_err(|e| e.to_string())?;
                response.header().map_or(0, |h| h.revision())
            }
        };
        totals.per_key[(i % args.keyspace) as usize].fetch_add(1, Relaxed);
        newest = newest.max(revision);
        totals.puts.fetch_add(1, Relaxed);
        i += step;
    }
    Ok(newest)
}

/// The revision a put of a scratch key outside the prefix lands at.
async fn current_revision(args: &Args, endpoint: &str) -> Result<i64, String> {
    Ok(match args.target {
        Target::Corekv => {
            let native = crate::native::Connection::connect(endpoint).await?;
            native.call(&Request::Status).await?.header.revision
        }
        Target::Etcd => {
            let mut kv = crate::etcd::connect(endpoint).await?;
            let response = kv.get("loadgen-revision", None).await.map_err(|e| e.to_string())?;
            response.header().map_or(0, |h| h.revision())
        }
    })
}

/// Runs the workload; answers the JSON line.
pub fn run(args: Args, threads: usize) -> Result<serde_json::Value, String> {
    let args = Arc::new(args);
    let endpoints = super::endpoint_list(&args.endpoints);
    let conns = args.conns.unwrap_or(args.watchers.min(64)).clamp(1, args.watchers.max(1));
    let totals = Arc::new(Totals {
        ready: AtomicUsize::new(0),
        last_revision: AtomicI64::new(0),
        first_revision: AtomicI64::new(0),
        writing: AtomicBool::new(false),
        puts: AtomicU64::new(0),
        events: AtomicU64::new(0),
        missing: AtomicU64::new(0),
        duplicates: AtomicU64::new(0),
        per_key: (0..args.keyspace).map(|_| AtomicU64::new(0)).collect(),
    });
    let duration = parse_duration(&args.duration)?;
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (args, totals, endpoints) = (args.clone(), totals.clone(), endpoints.clone());
            std::thread::spawn(move || -> Result<(Histogram<u64>, Vec<Seen>), String> {
                super::pin_thread(&args, t);
                super::run_local(async move {
                    let checker = Rc::new(RefCell::new(Checker {
                        seen: vec![Seen::default(); args.watchers],
                        histogram: Histogram::new_with_bounds(1, 60_000_000, 3).unwrap(),
                    }));
                    let mut tasks = Vec::new();
                    let stalled_done = Arc::new(AtomicBool::new(false));
                    let stalled: Vec<_> = (t..args.stalled)
                        .step_by(threads)
                        .map(|s| {
                            let endpoint = endpoints[s % endpoints.len()].clone();
                            tokio::task::spawn_local(stalled_watcher(
                                args.clone(),
                                endpoint,
                                stalled_done.clone(),
                            ))
                        })
                        .collect();
                    for c in (t..conns).step_by(threads) {
                        let watchers: Vec<usize> = (c..args.watchers).step_by(conns).collect();
                        let endpoint = endpoints[c % endpoints.len()].clone();
                        let (a, tt, ch) = (args.clone(), totals.clone(), checker.clone());
                        tasks.push(tokio::task::spawn_local(async move {
                            match a.target {
                                Target::Corekv => {
                                    native_watchers(a, tt, endpoint, watchers, ch).await
                                }
                                Target::Etcd => etcd_watchers(a, tt, endpoint, watchers, ch).await,
                            }
                        }));
                    }
                    // Writers start once every watcher exists.
                    while totals.ready.load(Relaxed) < args.watchers {
                        if started.elapsed() > Duration::from_secs(120) {
                            return Err("watchers were not all created in 2 minutes".to_string());
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    if t == 0 {
                        eprintln!("loadgen: {} watchers ready", args.watchers);
                        tokio::time::sleep(Duration::from_secs_f64(args.settle.max(0.0))).await;
                        let first = current_revision(&args, &endpoints[0]).await?;
                        totals.first_revision.store(first, Relaxed);
                        totals.writing.store(true, Relaxed);
                    }
                    while !totals.writing.load(Relaxed) {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    let deadline = Instant::now() + duration;
                    let writers: Vec<_> = (t..args.clients)
                        .step_by(threads)
                        .map(|w| {
                            let endpoint = endpoints[w % endpoints.len()].clone();
                            tokio::task::spawn_local(writer(
                                args.clone(),
                                totals.clone(),
                                endpoint,
                                w,
                                deadline,
                            ))
                        })
                        .collect();
                    let mut newest = 0;
                    for w in writers {
                        newest = newest.max(w.await.map_err(|e| e.to_string())??);
                    }
                    WRITERS_DONE.fetch_add(1, Relaxed);
                    NEWEST.fetch_max(newest, Relaxed);
                    while WRITERS_DONE.load(Relaxed) < threads {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    totals.last_revision.store(NEWEST.load(Relaxed).max(1), Relaxed);
                    for task in tasks {
                        task.await.map_err(|e| e.to_string())??;
                    }
                    stalled_done.store(true, Relaxed);
                    for task in stalled {
                        task.await.map_err(|e| e.to_string())??;
                    }
                    let checker = checker.borrow();
                    Ok((checker.histogram.clone(), checker.seen.clone()))
                })
            })
        })
        .collect();
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let mut seen = vec![Seen::default(); args.watchers];
    for worker in workers {
        let (h, s) = worker.join().map_err(|_| "a loadgen thread panicked".to_string())??;
        histogram.add(h).map_err(|e| e.to_string())?;
        for (all, mine) in seen.iter_mut().zip(s) {
            if mine.events > 0 {
                *all = mine;
            }
        }
    }
    // Missing: what each watcher should have seen and did not.
    let (first, last) = (totals.first_revision.load(Relaxed), totals.last_revision.load(Relaxed));
    let puts = totals.puts.load(Relaxed);
    let mut missing = totals.missing.load(Relaxed);
    for (w, s) in seen.iter().enumerate() {
        let expected = if args.watch_distinct {
            totals.per_key[w % args.keyspace as usize].load(Relaxed)
        } else {
            (last - first).max(0) as u64
        };
        missing += expected.saturating_sub(s.events);
    }
    let events = totals.events.load(Relaxed);
    let seconds = duration.as_secs_f64();
    let q = |q: f64| histogram.value_at_quantile(q);
    Ok(serde_json::json!({
        "workload": "watch",
        "target": format!("{:?}", args.target).to_lowercase(),
        "watchers": args.watchers,
        "stalled": args.stalled,
        "distinct": args.watch_distinct,
        "conns": conns,
        "writers": args.clients,
        "writer_depth": args.writer_depth,
        "threads": threads,
        "key_size": args.key_size,
        "val_size": args.val_size,
        "keyspace": args.keyspace,
        "puts": puts,
        "puts_per_sec": (puts as f64 / seconds).round(),
        "events": events,
        "events_per_sec": (events as f64 / seconds).round(),
        "missing": missing,
        "duplicates": totals.duplicates.load(Relaxed),
        "seconds": seconds,
        "p50_us": q(0.5),
        "p90_us": q(0.9),
        "p99_us": q(0.99),
        "p999_us": q(0.999),
        "max_us": histogram.max(),
    }))
}

static WRITERS_DONE: AtomicUsize = AtomicUsize::new(0);
static NEWEST: AtomicI64 = AtomicI64::new(0);
