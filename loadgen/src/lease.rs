//! The lease workload: each of `--clients` clients grants a lease (TTL 60 s)
//! and attaches a key to it, then renews it in a closed loop until the
//! deadline (corekv: one LeaseKeepAlive request per renewal; etcd: one
//! message each way on the client's LeaseKeepAlive stream, as etcd's own
//! clients renew), and finally revokes it. Reports renewals per second with
//! their latency, and checks that every renewal answered the granted TTL
//! and that every revoke removed its key.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use corekv::types::*;
use hdrhistogram::Histogram;

use super::{key_of, parse_duration, run_local, Args, Target};

const TTL: i64 = 60;

struct Totals {
    /// Clients set up (lease granted, key put): renewals start once all are.
    ready: AtomicUsize,
    renewals: AtomicU64,
    /// Renewals that answered another TTL than the one granted.
    wrong: AtomicU64,
    /// Keys still there after their lease was revoked.
    left: AtomicU64,
}

/// Waits until every client is set up; answers when renewals start.
async fn all_ready(args: &Args, totals: &Totals) -> Instant {
    totals.ready.fetch_add(1, Relaxed);
    while totals.ready.load(Relaxed) < args.clients {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Instant::now()
}

/// One corekv client: grant, put a key with the lease, renew until the
/// deadline, revoke.
async fn native_client(
    args: Arc<Args>,
    totals: Arc<Totals>,
    endpoint: String,
    index: usize,
    duration: Duration,
    histogram: Rc<RefCell<Histogram<u64>>>,
) -> Result<(), String> {
    let connection = crate::native::Connection::connect(&endpoint).await?;
    let call = |request: Request| {
        let connection = connection.clone();
        async move {
            let response = connection.call(&request).await?;
            response.result.map_err(|e| e.to_string())
        }
    };
    let id = match call(Request::LeaseGrant(LeaseGrantRequest { ttl: TTL, id: 0 })).await? {
        ResponseBody::LeaseGrant(g) => g.id,
        other => return Err(format!("grant: {other:?}")),
    };
    let key = key_of(index as u64, args.key_size);
    let put = PutRequest {
        key: key.clone(),
        value: Bytes::from_static(b"v"),
        lease: id,
        ..Default::default()
    };
    call(Request::Put(put)).await?;
    let deadline = all_ready(&args, &totals).await + duration;
    while Instant::now() < deadline {
        let sent = Instant::now();
        match call(Request::LeaseKeepAlive(id)).await? {
            ResponseBody::LeaseKeepAlive(k) if k.ttl == TTL => {}
            _ => {
                totals.wrong.fetch_add(1, Relaxed);
            }
        }
        let _ = histogram.borrow_mut().record(sent.elapsed().as_micros().max(1) as u64);
        totals.renewals.fetch_add(1, Relaxed);
    }
    call(Request::LeaseRevoke(id)).await?;
    let get = RangeRequest { key, ..Default::default() };
    if let ResponseBody::Range(r) = call(Request::Range(get)).await? {
        totals.left.fetch_add(r.kvs.len() as u64, Relaxed);
    }
    Ok(())
}

/// One etcd client, the same through etcd-client's lease and KV clients.
async fn etcd_client(
    args: Arc<Args>,
    totals: Arc<Totals>,
    endpoint: String,
    index: usize,
    duration: Duration,
    histogram: Rc<RefCell<Histogram<u64>>>,
) -> Result<(), String> {
    let client = etcd_client::Client::connect([format!("http://{endpoint}")], None)
        .await
        .map_err(|e| format!("{endpoint}: {e}"))?;
    let (mut leases, mut kv) = (client.lease_client(), client.kv_client());
    let id = leases.grant(TTL, None).await.map_err(|e| e.to_string())?.id();
    let key = key_of(index as u64, args.key_size);
    let options = etcd_client::PutOptions::new().with_lease(id);
    kv.put(key.to_vec(), b"v".to_vec(), Some(options)).await.map_err(|e| e.to_string())?;
    // (keep_alive sends a first renewal and takes its answer.)
    let (mut keeper, mut stream) = leases.keep_alive(id).await.map_err(|e| e.to_string())?;
    let deadline = all_ready(&args, &totals).await + duration;
    while Instant::now() < deadline {
        let sent = Instant::now();
        keeper.keep_alive().await.map_err(|e| e.to_string())?;
        match stream.message().await.map_err(|e| e.to_string())? {
            Some(answer) if answer.ttl() == TTL => {}
            Some(_) => {
                totals.wrong.fetch_add(1, Relaxed);
            }
            None => return Err("etcd closed the keep-alive stream".into()),
        }
        let _ = histogram.borrow_mut().record(sent.elapsed().as_micros().max(1) as u64);
        totals.renewals.fetch_add(1, Relaxed);
    }
    drop((keeper, stream));
    leases.revoke(id).await.map_err(|e| e.to_string())?;
    let left = kv.get(key.to_vec(), None).await.map_err(|e| e.to_string())?.kvs().len();
    totals.left.fetch_add(left as u64, Relaxed);
    Ok(())
}

pub fn run(args: Args, threads: usize) -> Result<serde_json::Value, String> {
    let args = Arc::new(args);
    let endpoints = super::endpoint_list(&args.endpoints);
    let totals = Arc::new(Totals {
        ready: AtomicUsize::new(0),
        renewals: AtomicU64::new(0),
        wrong: AtomicU64::new(0),
        left: AtomicU64::new(0),
    });
    let duration = parse_duration(&args.duration)?;
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (args, totals, endpoints) = (args.clone(), totals.clone(), endpoints.clone());
            std::thread::spawn(move || -> Result<Histogram<u64>, String> {
                super::pin_thread(&args, t);
                run_local(async move {
                    let histogram = Rc::new(RefCell::new(
                        Histogram::new_with_bounds(1, 60_000_000, 3).unwrap(),
                    ));
                    let tasks: Vec<_> = (t..args.clients)
                        .step_by(threads)
                        .map(|c| {
                            let endpoint = endpoints[c % endpoints.len()].clone();
                            let (a, tt, h) = (args.clone(), totals.clone(), histogram.clone());
                            tokio::task::spawn_local(async move {
                                match a.target {
                                    Target::Corekv => {
                                        native_client(a, tt, endpoint, c, duration, h).await
                                    }
                                    Target::Etcd => {
                                        etcd_client(a, tt, endpoint, c, duration, h).await
                                    }
                                }
                            })
                        })
                        .collect();
                    for task in tasks {
                        task.await.map_err(|e| e.to_string())??;
                    }
                    let histogram = histogram.borrow().clone();
                    Ok(histogram)
                })
            })
        })
        .collect();
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    for worker in workers {
        let part = worker.join().map_err(|_| "a loadgen thread panicked".to_string())??;
        histogram.add(&part).map_err(|e| e.to_string())?;
    }
    let seconds = duration.as_secs_f64();
    let renewals = totals.renewals.load(Relaxed);
    Ok(serde_json::json!({
        "workload": "lease",
        "target": format!("{:?}", args.target).to_lowercase(),
        "clients": args.clients,
        "renewals": renewals,
        "renewals_per_sec": (renewals as f64 / seconds).round(),
        "p50_us": histogram.value_at_quantile(0.5),
        "p99_us": histogram.value_at_quantile(0.99),
        "max_us": histogram.max(),
        "wrong_ttl": totals.wrong.load(Relaxed),
        "keys_left_after_revoke": totals.left.load(Relaxed),
        "seconds": started.elapsed().as_secs_f64(),
    }))
}
