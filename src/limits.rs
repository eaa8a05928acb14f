//! Every limit corekv enforces, in one place (STYLE rule 7). Units come last in
//! each name. Relations between limits are checked at compile time below.

/// Largest request etcd accepts by default (`--max-request-bytes`, 1.5 MiB).
pub const request_bytes_max: usize = 1536 * 1024;
/// Largest frame body on the native protocol: a maximal request plus room for
/// the flatbuffers tables around it. Bigger frames close the connection.
pub const frame_bytes_max: usize = 2 * 1024 * 1024;
/// Largest response frame the server writes: a range whose response would be
/// bigger is answered with `request is too large` (etcd's gRPC cap is similar).
pub const response_bytes_max: usize = 64 * 1024 * 1024;
/// Largest key.
pub const key_bytes_max: usize = 32 * 1024;
/// Largest value: a single put carrying it still fits in one request.
pub const value_bytes_max: usize = request_bytes_max - key_bytes_max - 1024;
/// etcd's `--max-txn-ops` default: compares, success ops and failure ops each.
pub const txn_ops_max: usize = 128;
/// Nesting depth of txns inside txns.
pub const txn_depth_max: usize = 8;
/// Requests one connection may have in flight before the server stops reading
/// from it (back-pressure, not an error).
pub const connection_requests_in_flight_max: usize = 1024;
/// Encoded responses queued for one connection's socket writer.
pub const connection_responses_queued_max: usize = 1024;
/// Bytes a connection's queue may hold before its watches wait for the
/// client (a slow client then reads history when it catches up): this base
/// plus `watch_queue_bytes_per_watcher` for each watch of the connection.
pub const watch_queue_bytes_base: usize = 4 * 1024 * 1024;
/// See `watch_queue_bytes_base`.
pub const watch_queue_bytes_per_watcher: usize = 16 * 1024;
/// Snapshots streamed to clients at once (`corekvctl snapshot save`), each on
/// a thread of its own; more are refused until one ends.
pub const snapshot_streams_max: usize = 4;
/// The most a connection's watches may queue, however many it has.
pub const watch_queue_bytes_max: usize = 64 * 1024 * 1024;
/// Bytes of other responses (reads, writes' answers, snapshot chunks) a
/// connection's queue may hold before the connection stops reading requests
/// until its client reads; a larger response still goes when the queue is
/// empty.
pub const connection_queue_bytes_max: usize = 8 * 1024 * 1024;
/// A core's watch hub starts its next round no sooner than this long per
/// response of its last round after that round began (at most
/// `watch_round_pause_max`; the round's own time counts): under a heavy
/// fan-out the revisions applied meanwhile go out together, one response
/// per watch and one socket write per connection for several revisions,
/// instead of one each per revision. Sending is most of a round's cost
/// (the loopback TCP path and the client's wakeup), so pacing by responses
/// keeps it to a bounded share of the core. A round of a few responses
/// waits a few microseconds: low fan-out keeps its latency.
pub const watch_round_pause_per_response: std::time::Duration = std::time::Duration::from_micros(2);
/// See `watch_round_pause_per_response`: the most a round waits, and so the
/// most latency pacing adds to an event.
pub const watch_round_pause_max: std::time::Duration = std::time::Duration::from_millis(2);
/// Threads per core for reads that wait on the disk (a range or read-only
/// txn that needs a page not in the page cache): that many in flight per core,
/// while the core serves everything else.
pub const blocking_threads_per_core: usize = 8;
/// WAL entries a restart applies per batch, each batch's page store reads
/// issued together first (`Store::prefetch`).
pub const replay_batch_entries: usize = 4096;
/// A restart serves before loading the page store's checkpoint into memory
/// (and loads it meanwhile) when the WAL entries after the checkpoint number
/// at most its live keys / this: replaying an entry over the pages took ~30
/// µs here (a key entry and a version read), loading ~0.7 µs a key, and the
/// restart takes the shorter of the two.
pub const warm_up_tail_ratio: u64 = 40;
/// The page cache while a restart replays the WAL tail over the checkpoint's
/// pages (then back to `--cache-size`).
pub const replay_cache_bytes: usize = 512 << 20;
/// At most this many WAL entries are held decoded while start-up decides.
pub const warm_up_tail_max: u64 = 100_000;
/// Proposals queued from all cores to the log driver.
pub const proposals_queued_max: usize = 8192;
/// Entries in one WAL append (one fdatasync).
pub const batch_entries_max: usize = 4096;
/// Bytes of entries in one WAL append.
pub const batch_bytes_max: usize = 8 * 1024 * 1024;
/// Consecutive batches whose writes all came from one other core (or, for
/// its home core, from several) before the log driver moves there.
pub const driver_follow_batches: u32 = 64;
/// The most writes a batch may hold and still count as a lone writer's:
/// larger ones count as from several cores (`driver::Follow`).
pub const driver_follow_entries_max: usize = 4;
/// The log driver moves at most this often, however the writes shift.
pub const driver_move_interval_ms: u64 = 1000;
/// Default size of a WAL segment file.
pub const wal_segment_bytes_default: u64 = 64 * 1024 * 1024;
/// `--experimental-wal-spin-us`: longer than nearly every WAL write on the
/// development VMs (fdatasync p99 0.3–1 ms), short enough that a disk
/// gone slow costs little CPU before the driver sleeps instead.
pub const wal_spin_us_default: u64 = 1000;
/// Smallest WAL segment a member accepts (tests use small ones).
pub const wal_segment_bytes_min: u64 = 4 * 1024 * 1024;
/// O_DIRECT alignment used for every WAL write (the disk needs 512, see PLATFORM).
pub const io_alignment_bytes: usize = 4096;
/// Largest flatbuffers table count a request may contain (verifier bound).
pub const request_tables_max: usize = 64 * 1024;
/// Cores a member runs at most.
pub const cores_max: usize = 256;

const _: () = assert!(frame_bytes_max > request_bytes_max);
const _: () = assert!(value_bytes_max + key_bytes_max < request_bytes_max);
const _: () = assert!(batch_bytes_max >= frame_bytes_max);
// A segment holds the largest record with its header page to spare.
const _: () = assert!(wal_segment_bytes_min as usize >= frame_bytes_max + 2 * io_alignment_bytes);
const _: () = assert!(wal_segment_bytes_default.is_multiple_of(io_alignment_bytes as u64));
/// The share of wall time a snapshot writer works (it sleeps the rest): the
/// walk and compression of a large state would otherwise take the memory
/// bandwidth and caches that requests need (docs/performance.md).
pub const snapshot_work_fraction: f64 = 0.25;
/// Changes that may wait in memory for a checkpoint while one runs (by
/// default; twice `--snapshot-count` if that is more, or
/// `--experimental-checkpoint-backlog`): beyond it the log driver stops
/// taking writes until the checkpoint catches up.
pub const checkpoint_pending_changes_max: usize = 200_000;
/// The shortest lease TTL granted (seconds): etcd's ceil(3/2 × election ticks
/// × heartbeat) with its defaults (10 ticks of 100 ms), since corekv's
/// timings are etcd's defaults.
pub const lease_ttl_min_secs: i64 = 2;
/// How often the member looks for expired leases, and the most revocations
/// it proposes each time (etcd's leaseRevokeRate: 1,000 per second).
pub const lease_tick_ms: u64 = 100;
pub const lease_revokes_per_tick: usize = 100;
/// How often the member checkpoints the lease clock and renewed deadlines
/// through the log (bounds what a restart can add to a lease: docs/leases.md).
pub const lease_checkpoint_ms: u64 = 500;
/// Deadlines per checkpoint entry (the rest go in the next one).
pub const lease_checkpoint_deadlines_max: usize = 8192;
/// The least a lease has left when a member starts (etcd's election
/// timeout, by which it extends leases when a member starts leading).
pub const lease_restart_grace_ms: i64 = 1000;
/// A revocation proposed but not applied after this long is proposed again.
pub const lease_revoke_retry_ms: i64 = 2000;
