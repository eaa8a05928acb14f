//! corekvctl's command line, etcdctl's names.

use std::ffi::OsString;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use super::{exit_bad_feature, goflag, print, Failure};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "corekvctl",
    version,
    about = "A command line client for corekv (etcdctl's commands)"
)]
pub struct Cli {
    /// Comma-separated endpoints (host:port); given again, they add up.
    #[arg(long, global = true, default_value = "127.0.0.1:2379", action = ArgAction::Append)]
    pub endpoints: Vec<String>,
    /// Output format (simple, json or table).
    #[arg(
        id = "write_out",
        short = 'w',
        long = "write-out",
        global = true,
        default_value = "simple"
    )]
    pub output: String,
    /// `output`, checked (`output_format`).
    #[arg(skip)]
    pub write_out: OutputFormat,
    /// Timeout for a command, after connecting (a Go duration: 5s, 1m30s).
    #[arg(long, global = true, default_value = "5s", value_parser = goflag::go_duration)]
    pub command_timeout: Duration,
    /// Timeout for connecting to an endpoint (a Go duration).
    #[arg(long, global = true, default_value = "2s", value_parser = goflag::go_duration)]
    pub dial_timeout: Duration,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Whether etcdctl reads the global flags from `ETCDCTL_*` for this
    /// command: those that talk to a server do; `snapshot status|restore`
    /// and `version` not.
    pub fn reads_env(&self) -> bool {
        !matches!(
            &self.command,
            Command::Snapshot(SnapshotArgs {
                command: SnapshotCommand::Status { .. } | SnapshotCommand::Restore(_)
            }) | Command::Version
        )
    }

    /// Sets the global flag `id` (clap's id, the field name) from its
    /// `ETCDCTL_*` variable.
    pub fn set_global(&mut self, id: &str, value: String) -> Result<(), Failure> {
        match id {
            "endpoints" => self.endpoints = vec![value],
            "write_out" => self.output = value,
            "command_timeout" | "dial_timeout" => {
                let duration = goflag::go_duration(&value).map_err(Failure::bad_args)?;
                match id {
                    "command_timeout" => self.command_timeout = duration,
                    _ => self.dial_timeout = duration,
                }
            }
            _ => unreachable!("not a global flag: {id}"),
        }
        Ok(())
    }

    pub fn endpoint_list(&self) -> Vec<String> {
        let endpoints = self.endpoints.iter().flat_map(|e| e.split(','));
        endpoints.map(|e| e.trim().to_string()).filter(|e| !e.is_empty()).collect()
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutputFormat {
    #[default]
    Simple,
    Json,
    Table,
}

/// `-w`'s value: etcdctl's words and exit code (4) for one it does not know.
pub fn output_format(text: &str) -> Result<OutputFormat, Failure> {
    OutputFormat::from_str(text, false).map_err(|_| Failure {
        code: exit_bad_feature,
        message: "unsupported output format".into(),
    })
}

#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Puts the given key into the store.
    Put(PutArgs),
    /// Gets the key or a range of keys.
    Get(GetArgs),
    /// Removes the specified key or range of keys [key, range_end).
    Del(DelArgs),
    /// Txn processes all the requests in one transaction.
    Txn(TxnArgs),
    /// Compacts the event history in corekv.
    Compaction(CompactionArgs),
    /// Endpoint related commands.
    Endpoint(EndpointArgs),
    /// Manages corekv node snapshots.
    Snapshot(SnapshotArgs),
    /// Watches events stream on keys or prefixes.
    Watch(WatchArgs),
    /// Lease related commands.
    Lease(LeaseArgs),
    /// Prints the version of corekvctl.
    Version,
}

#[derive(Args, Debug, Clone)]
pub struct LeaseArgs {
    #[command(subcommand)]
    pub command: LeaseCommand,
}

/// Arguments are optional here so that a missing one gets etcdctl's words.
#[derive(Subcommand, Debug, Clone)]
pub enum LeaseCommand {
    /// Creates leases.
    Grant { ttl: Option<String> },
    /// Revokes leases.
    Revoke { id: Option<String> },
    /// Get lease information.
    Timetolive {
        id: Option<String>,
        /// Get keys attached to this lease.
        #[arg(long)]
        keys: bool,
    },
    /// List all active leases.
    List,
    /// Keeps leases alive (renew).
    KeepAlive {
        id: Option<String>,
        /// Resets the keep-alive time to its original value and exits immediately.
        #[arg(long)]
        once: bool,
    },
}

#[derive(Args, Debug, Clone)]
pub struct WatchArgs {
    /// The key (or prefix), then an optional range end.
    pub keys: Vec<OsString>,
    /// Watch on a prefix if prefix is set.
    #[arg(long)]
    pub prefix: bool,
    /// Revision to start watching.
    #[arg(long, default_value_t = 0)]
    pub rev: i64,
    /// Get the previous key-value pair before the event happens.
    #[arg(long)]
    pub prev_kv: bool,
    /// Get periodic watch progress notification from server.
    #[arg(long)]
    pub progress_notify: bool,
}

#[derive(Args, Debug, Clone)]
pub struct SnapshotArgs {
    #[command(subcommand)]
    pub command: SnapshotCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum SnapshotCommand {
    /// Stores a snapshot of a member's state to the given file.
    Save { file: String },
    /// Gets backend snapshot status of a given file.
    Status { file: String },
    /// Restores a member data directory from a snapshot file.
    Restore(RestoreArgs),
}

#[derive(Args, Debug, Clone)]
pub struct RestoreArgs {
    pub file: String,
    /// Path to the data directory (default: ./<name>.corekv).
    #[arg(long)]
    pub data_dir: Option<String>,
    /// Human-readable name for this member.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Initial cluster configuration for restore bootstrap.
    #[arg(long)]
    pub initial_cluster: Option<String>,
    /// Initial cluster token for the cluster during restore bootstrap.
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// List of this member's peer URLs to advertise to the rest of the cluster.
    #[arg(long, default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: String,
}

/// The operations a txn line may hold: the same flags as the commands.
#[derive(Parser, Debug, Clone)]
#[command(name = "txn-op", no_binary_name = true)]
pub enum TxnOp {
    Put(PutArgs),
    Get(GetArgs),
    Del(DelArgs),
}

#[derive(Args, Debug, Clone)]
pub struct PutArgs {
    pub key: OsString,
    pub value: Option<OsString>,
    /// Lease ID (in hexadecimal) to attach to the key.
    #[arg(long)]
    pub lease: Option<String>,
    /// Return the previous key-value pair before modification.
    #[arg(long)]
    pub prev_kv: bool,
    /// Updates the key using its current value.
    #[arg(long)]
    pub ignore_value: bool,
    /// Updates the key using its current lease.
    #[arg(long)]
    pub ignore_lease: bool,
}

impl PutArgs {
    pub fn print_options(&self) -> print::Options {
        print::Options::default()
    }
}

#[derive(Args, Debug, Clone)]
pub struct GetArgs {
    pub key: OsString,
    pub range_end: Option<OsString>,
    /// Linearizable(l) or Serializable(s).
    #[arg(long, default_value = "l")]
    pub consistency: String,
    /// Order of results; ASCEND or DESCEND (ASCEND by default).
    #[arg(long, default_value = "")]
    pub order: String,
    /// Sort target; CREATE, KEY, MODIFY, VALUE, or VERSION.
    #[arg(long, default_value = "")]
    pub sort_by: String,
    /// Maximum number of results.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true, value_parser = goflag::go_int64)]
    pub limit: i64,
    /// Get keys with matching prefix.
    #[arg(long)]
    pub prefix: bool,
    /// Get keys that are greater than or equal to the given key using byte compare.
    #[arg(long)]
    pub from_key: bool,
    /// Specify the kv revision.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true, value_parser = goflag::go_int64)]
    pub rev: i64,
    /// Get only the keys.
    #[arg(long)]
    pub keys_only: bool,
    /// Get only the count.
    #[arg(long)]
    pub count_only: bool,
    /// Only write values when using the "simple" output format.
    #[arg(long)]
    pub print_value_only: bool,
}

impl GetArgs {
    pub fn print_options(&self) -> print::Options {
        print::Options {
            value_only: self.print_value_only,
            count_only: self.count_only,
            keys: false,
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct DelArgs {
    pub key: OsString,
    pub range_end: Option<OsString>,
    /// Delete keys with matching prefix.
    #[arg(long)]
    pub prefix: bool,
    /// Return deleted key-value pairs.
    #[arg(long)]
    pub prev_kv: bool,
    /// Delete keys that are greater than or equal to the given key using byte compare.
    #[arg(long)]
    pub from_key: bool,
}

#[derive(Args, Debug, Clone)]
pub struct TxnArgs {
    /// Input transaction in interactive mode.
    #[arg(short, long)]
    pub interactive: bool,
}

#[derive(Args, Debug, Clone)]
pub struct CompactionArgs {
    pub revision: String,
    /// Wait for the compaction to physically remove all old revisions.
    #[arg(long)]
    pub physical: bool,
}

#[derive(Args, Debug, Clone)]
pub struct EndpointArgs {
    #[command(subcommand)]
    pub command: EndpointCommand,
}

#[derive(Subcommand, Debug, Clone, Copy)]
pub enum EndpointCommand {
    /// Prints out the status of endpoints specified in `--endpoints` flag.
    Status,
    /// Checks the healthiness of endpoints specified in `--endpoints` flag.
    Health,
}
