//! The member's configuration: etcd's flag names where etcd has the concept,
//! so that operators' habits carry over, plus `--cores`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use clap::Parser;

use crate::limits;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "corekv",
    version,
    about = "corekv: an etcd-compatible, thread-per-core key-value store"
)]
pub struct Config {
    /// Human-readable name for this member.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Path to the data directory (default: ./<name>.corekv).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Comma-separated URLs to listen on for client traffic.
    #[arg(long, default_value = "http://127.0.0.1:2379")]
    pub listen_client_urls: String,
    /// Comma-separated client URLs to advertise (default: the listen URLs).
    #[arg(long)]
    pub advertise_client_urls: Option<String>,
    /// Comma-separated URLs to listen on for peer traffic.
    #[arg(long, default_value = "http://127.0.0.1:2380")]
    pub listen_peer_urls: String,
    /// This member's peer URLs to advertise (default: the listen peer URLs).
    #[arg(long)]
    pub initial_advertise_peer_urls: Option<String>,
    /// Initial cluster configuration, name=peer-url pairs (default: this member alone).
    #[arg(long)]
    pub initial_cluster: Option<String>,
    /// Initial cluster state ('new' or 'existing').
    #[arg(long, default_value = "new")]
    pub initial_cluster_state: String,
    /// Initial cluster token, mixed into the cluster and member ids.
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// Executors (one per core) serving clients; default: every available CPU.
    #[arg(long)]
    pub cores: Option<usize>,
    /// How long an idle core polls for work before it sleeps, in microseconds.
    /// Spinning turns a cross-core wake-up from ~75 µs into ~17 µs (PLATFORM.md)
    /// at the price of CPU while lightly loaded.
    #[arg(long, default_value_t = 0)]
    pub spin_before_park_us: u64,
    /// When the log driver follows a lone writer to a CPU other than the
    /// one taking the WAL disk's interrupts (a disk with one queue), it
    /// polls for each WAL write's completion for up to this long before
    /// checking on a timer instead (microseconds; 0: never poll). A lone
    /// put's latency drops by ~60-80 µs on small VMs, for the CPU of the
    /// wait.
    #[arg(long, default_value_t = limits::wal_spin_us_default)]
    pub experimental_wal_spin_us: u64,
    /// Size of each WAL segment file in bytes.
    #[arg(long, default_value_t = limits::wal_segment_bytes_default)]
    pub wal_segment_bytes: u64,
    /// Applied entries that trigger a snapshot to DATA_DIR/snapshots (and a
    /// WAL purge below it); 0: never by count.
    #[arg(long, default_value_t = 100_000)]
    pub snapshot_count: u64,
    /// Seconds after which new entries trigger a snapshot; 0: never by time.
    #[arg(long, default_value_t = 0)]
    pub snapshot_interval: u64,
    /// Snapshots kept in DATA_DIR/snapshots (the newest N; at least 1).
    #[arg(long, default_value_t = 5)]
    pub snapshot_retain: usize,
    /// Bytes of clean pages the page store (DATA_DIR/db) keeps in memory;
    /// a suffix K, M or G (powers of 1024) may follow the number.
    #[arg(long, default_value = "64M", value_parser = parse_bytes)]
    pub cache_size: u64,
    /// How often a watch created with progress_notify that got no events
    /// since the last time is sent a progress notification (e.g. 10m, 5s).
    #[arg(long, default_value = "10m", value_parser = parse_interval)]
    pub experimental_watch_progress_notify_interval: std::time::Duration,
    /// A snapshot stream (`corekvctl snapshot save`) whose client takes no
    /// data for this long is ended, freeing its place among the few served
    /// at once (e.g. 60s, 5m).
    #[arg(long, default_value = "60s", value_parser = parse_interval)]
    pub experimental_snapshot_stall_timeout: std::time::Duration,
    /// Changes that may wait in memory for a running checkpoint before the
    /// member stops taking writes until it catches up (a write stall);
    /// default: 200000 or twice --snapshot-count, whichever is more.
    #[arg(long)]
    pub experimental_checkpoint_backlog: Option<usize>,
    /// Serve reads of history older than the last checkpoint from the page
    /// store (DATA_DIR/db) instead of memory: start-up loads nothing and the
    /// data may outgrow memory, but ranges that count or return many keys
    /// read pages (no in-memory key index yet). Default: the whole history
    /// is kept in memory too.
    #[arg(long, default_value_t = false)]
    pub experimental_reads_from_disk: bool,
    /// At start-up, load the page store's checkpoint into memory before
    /// serving, however short the WAL tail after it. Default: after a short
    /// tail the member serves from the checkpoint's pages while it loads
    /// them (docs/architecture.md, "Start-up").
    #[arg(long, default_value_t = false)]
    pub experimental_load_before_serving: bool,
    /// Which core serves a new connection: `cpu`, the core pinned to the
    /// CPU that receives its packets (unless that core holds more than its
    /// share); `hash`, the core that accepted it (the kernel's SO_REUSEPORT
    /// hash of its addresses).
    #[arg(long, value_enum, default_value = "cpu")]
    pub connection_placement: ConnectionPlacement,
    /// Entries kept in the WAL below the newest snapshot (for followers that
    /// lag a little, once there are followers).
    #[arg(long, default_value_t = 5_000)]
    pub wal_retain_entries: u64,
}

/// `--connection-placement` (`server::placement`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConnectionPlacement {
    Cpu,
    Hash,
}

/// When the member snapshots itself, and what it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotPolicy {
    pub count: u64,
    pub interval_secs: u64,
    pub retain: usize,
    pub wal_retain_entries: u64,
    /// Changes that may wait for a running checkpoint before writes stall.
    pub backlog_max: usize,
}

/// The configuration checked and resolved.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub name: String,
    pub data_dir: PathBuf,
    pub client_addresses: Vec<SocketAddr>,
    pub peer_addresses: Vec<SocketAddr>,
    pub cores: usize,
    pub wal_segment_bytes: u64,
    pub spin_before_park_us: u64,
    pub wal_spin: std::time::Duration,
    pub snapshots: SnapshotPolicy,
    pub cache_bytes: usize,
    pub reads_from_disk: bool,
    pub load_before_serving: bool,
    pub connection_placement: ConnectionPlacement,
    pub watch_progress_interval: std::time::Duration,
    pub snapshot_stall_timeout: std::time::Duration,
    pub cluster_id: u64,
    pub member_id: u64,
}

/// A positive duration such as 10m, 5s or 500ms.
fn parse_interval(text: &str) -> Result<std::time::Duration, String> {
    let interval = crate::ctl::parse_duration(text)?;
    if interval.is_zero() {
        return Err(format!("invalid duration {text:?}: must be positive"));
    }
    Ok(interval)
}

fn parse_urls(flag: &str, urls: &str) -> Result<Vec<SocketAddr>, String> {
    let mut out = Vec::new();
    for url in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        let rest = if let Some(rest) = url.strip_prefix("http://") {
            rest
        } else if url.starts_with("https://") || url.starts_with("unixs://") {
            return Err(format!("--{flag}: {url}: TLS is not supported yet"));
        } else {
            return Err(format!("--{flag}: {url}: expected http://host:port"));
        };
        let host_port = rest.trim_end_matches('/');
        let mut resolved = host_port
            .to_socket_addrs()
            .map_err(|e| format!("--{flag}: {url}: {e}"))?
            .filter(|a| a.is_ipv4())
            .collect::<Vec<_>>();
        resolved.truncate(1);
        if resolved.is_empty() {
            return Err(format!("--{flag}: {url}: no IPv4 address"));
        }
        out.extend(resolved);
    }
    if out.is_empty() {
        return Err(format!("--{flag}: no URL given"));
    }
    Ok(out)
}

/// A byte count: digits, then optionally K, M or G (KiB, MiB, GiB; a
/// trailing "iB" or "B" is allowed too).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let lower = trimmed.to_ascii_lowercase();
    let unit = lower.trim_end_matches("ib").trim_end_matches('b');
    let (digits, shift) = match unit.chars().last() {
        Some('k') => (&unit[..unit.len() - 1], 10),
        Some('m') => (&unit[..unit.len() - 1], 20),
        Some('g') => (&unit[..unit.len() - 1], 30),
        _ => (unit, 0),
    };
    let number: u64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("{text}: expected a byte count such as 268435456, 256M or 1G"))?;
    number.checked_mul(1 << shift).ok_or_else(|| format!("{text}: too large"))
}

fn id_of(parts: &[&str]) -> u64 {
    let joined = parts.join("\u{0}");
    xxhash_rust::xxh3::xxh3_64(joined.as_bytes()).max(1)
}

/// Every listening address on a port of its own: each core binds the
/// client addresses with SO_REUSEPORT, so an address listed twice (or a
/// peer address on a client port) would not fail to bind as in etcd but
/// quietly share the port's connections with the wrong listener. Port 0
/// (any free port) would give each core a different one.
fn check_distinct(client: &[SocketAddr], peer: &[SocketAddr]) -> Result<(), String> {
    let all: Vec<&SocketAddr> = client.iter().chain(peer).collect();
    for (i, a) in all.iter().enumerate() {
        if a.port() == 0 {
            return Err(format!("{a}: port 0 is not supported: name the port"));
        }
        // An unspecified address covers its own family (and [::] both).
        let covers = |wide: &SocketAddr, other: &SocketAddr| {
            wide.ip().is_unspecified() && (wide.is_ipv6() || other.is_ipv4())
        };
        let overlaps = |b: &&&SocketAddr| {
            a.port() == b.port() && (a.ip() == b.ip() || covers(a, b) || covers(b, a))
        };
        if let Some(b) = all[i + 1..].iter().find(overlaps) {
            return Err(format!("listen address {b}: address already in use (also {a})"));
        }
    }
    Ok(())
}

impl Config {
    pub fn resolve(&self) -> Result<Resolved, String> {
        if self.name.is_empty() {
            return Err("--name must not be empty".into());
        }
        let client_addresses = parse_urls("listen-client-urls", &self.listen_client_urls)?;
        let peer_addresses = parse_urls("listen-peer-urls", &self.listen_peer_urls)?;
        check_distinct(&client_addresses, &peer_addresses)?;
        if let Some(urls) = &self.advertise_client_urls {
            parse_urls("advertise-client-urls", urls)?;
        }
        let advertise_peer =
            self.initial_advertise_peer_urls.clone().unwrap_or(self.listen_peer_urls.clone());
        parse_urls("initial-advertise-peer-urls", &advertise_peer)?;
        let initial_cluster =
            self.initial_cluster.clone().unwrap_or(format!("{}={}", self.name, advertise_peer));
        let members: Vec<&str> =
            initial_cluster.split(',').map(str::trim).filter(|m| !m.is_empty()).collect();
        for member in &members {
            let Some((name, url)) = member.split_once('=') else {
                return Err(format!("--initial-cluster: {member}: expected name=url"));
            };
            parse_urls("initial-cluster", url)?;
            if members.len() > 1 || name != self.name {
                return Err(format!(
                    "--initial-cluster: {initial_cluster}: only a single-member cluster naming this \
                     member ({}) is supported so far",
                    self.name
                ));
            }
        }
        match self.initial_cluster_state.as_str() {
            "new" | "existing" => {}
            other => {
                return Err(format!("--initial-cluster-state: {other}: expected new or existing"))
            }
        }
        let available = crate::runtime::available_cpus().len();
        let cores = self.cores.unwrap_or(available);
        if cores == 0 || cores > limits::cores_max {
            return Err(format!("--cores: {cores}: expected 1 to {}", limits::cores_max));
        }
        if self.wal_segment_bytes < limits::wal_segment_bytes_min
            || !self.wal_segment_bytes.is_multiple_of(limits::io_alignment_bytes as u64)
        {
            return Err(format!(
                "--wal-segment-bytes: {}: expected a multiple of {} of at least {}",
                self.wal_segment_bytes,
                limits::io_alignment_bytes,
                limits::wal_segment_bytes_min
            ));
        }
        if self.snapshot_retain == 0 {
            return Err("--snapshot-retain: 0: keep at least 1 snapshot".into());
        }
        let member_id = id_of(&[&advertise_peer, &self.initial_cluster_token]);
        let cluster_id = id_of(&[&member_id.to_string(), &self.initial_cluster_token]);
        Ok(Resolved {
            name: self.name.clone(),
            data_dir: self
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("{}.corekv", self.name))),
            client_addresses,
            peer_addresses,
            cores,
            wal_segment_bytes: self.wal_segment_bytes,
            spin_before_park_us: self.spin_before_park_us,
            wal_spin: std::time::Duration::from_micros(self.experimental_wal_spin_us),
            snapshots: SnapshotPolicy {
                count: self.snapshot_count,
                interval_secs: self.snapshot_interval,
                retain: self.snapshot_retain,
                wal_retain_entries: self.wal_retain_entries,
                backlog_max: self.experimental_checkpoint_backlog.unwrap_or(
                    limits::checkpoint_pending_changes_max
                        .max((self.snapshot_count as usize).saturating_mul(2)),
                ),
            },
            cache_bytes: self.cache_size as usize,
            reads_from_disk: self.experimental_reads_from_disk,
            load_before_serving: self.experimental_load_before_serving,
            connection_placement: self.connection_placement,
            watch_progress_interval: self.experimental_watch_progress_notify_interval,
            snapshot_stall_timeout: self.experimental_snapshot_stall_timeout,
            cluster_id,
            member_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Result<Resolved, String> {
        let mut all = vec!["corekv"];
        all.extend_from_slice(args);
        Config::try_parse_from(all).map_err(|e| e.to_string())?.resolve()
    }

    #[test]
    fn no_flags_is_a_single_member_on_etcds_ports() {
        let r = config(&[]).unwrap();
        assert_eq!(r.data_dir, PathBuf::from("default.corekv"));
        assert_eq!(r.client_addresses, vec!["127.0.0.1:2379".parse().unwrap()]);
        assert_eq!(r.peer_addresses, vec!["127.0.0.1:2380".parse().unwrap()]);
        assert_ne!(r.member_id, r.cluster_id);
    }

    #[test]
    fn bad_flags_get_clear_errors() {
        assert!(config(&["--listen-client-urls", "https://127.0.0.1:1"])
            .unwrap_err()
            .contains("TLS"));
        assert!(config(&["--listen-client-urls", "127.0.0.1:1"]).unwrap_err().contains("http://"));
        assert!(config(&["--initial-cluster", "a=http://127.0.0.1:1,b=http://127.0.0.1:2"])
            .unwrap_err()
            .contains("single-member"));
        assert!(config(&["--cores", "0"]).unwrap_err().contains("--cores"));
        assert!(config(&["--wal-segment-bytes", "4097"]).unwrap_err().contains("segment"));
        assert!(config(&["--snapshot-retain", "0"]).unwrap_err().contains("--snapshot-retain"));
        assert!(config(&["--snapshot-count", "x"]).unwrap_err().contains("snapshot-count"));
        assert!(config(&["--cache-size", "12Q"]).unwrap_err().contains("byte count"));
        let same = ["--listen-peer-urls", "http://127.0.0.1:2379"];
        assert!(config(&same).unwrap_err().contains("already in use"));
        let any = ["--listen-client-urls", "http://0.0.0.0:2380"];
        assert!(config(&any).unwrap_err().contains("already in use"));
        let twice = ["--listen-client-urls", "http://127.0.0.1:5000,http://127.0.0.1:5000"];
        assert!(config(&twice).unwrap_err().contains("already in use"));
        let zero = ["--listen-client-urls", "http://127.0.0.1:0"];
        assert!(config(&zero).unwrap_err().contains("port 0"));
        let other_ip = ["--listen-client-urls", "http://127.0.0.1:2379,http://127.0.0.2:2379"];
        assert_eq!(config(&other_ip).unwrap().client_addresses.len(), 2);
        for huge in
            ["99999999999999999999s", "10000000000000000000s", &format!("1{}", "0".repeat(400))]
        {
            let flag = ["--experimental-watch-progress-notify-interval", huge];
            assert!(config(&flag).unwrap_err().contains("invalid duration"), "{huge}");
        }
        assert!(config(&["--snapshot-count", &u64::MAX.to_string()]).is_ok());
    }

    #[test]
    fn byte_counts_take_binary_suffixes() {
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        assert_eq!(parse_bytes("256M").unwrap(), 256 << 20);
        assert_eq!(parse_bytes("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("8kb").unwrap(), 8 << 10);
        assert!(parse_bytes("").is_err() && parse_bytes("M").is_err());
        assert!(parse_bytes("99999999999G").is_err());
        assert_eq!(config(&[]).unwrap().cache_bytes, 64 << 20);
    }
}
