//! corekvctl: etcdctl 3.4's commands, flags and output, on the native protocol.
//! Output in the simple format is byte for byte what etcdctl prints; `-w json`
//! is etcdctl's JSON shape (base64 keys and values, zero fields left out).
//! Exit codes follow etcdctl: 1 for errors from the server or the network
//! and for flags or commands that do not parse, 3 for unreadable txn input,
//! 4 for an output format, sort or consistency a command does not have, 128
//! for bad arguments.

mod args;
mod endpoint;
mod goflag;
mod lease;
mod print;
mod quoting;
mod snapshot;
mod txn;
mod watch;

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use bytes::Bytes;
use clap::{CommandFactory, FromArgMatches};

pub use args::{Cli, Command};
use args::{DelArgs, GetArgs, OutputFormat, PutArgs};

use crate::client::{Client, ClientError};
use crate::types::*;

pub const exit_error: i32 = 1;
pub const exit_invalid_input: i32 = 3;
/// etcdctl's ExitBadFeature: an output format a command does not have.
pub const exit_bad_feature: i32 = 4;
pub const exit_bad_args: i32 = 128;
/// etcdctl's ExitInterrupted: a watch the server canceled.
pub const exit_interrupted: i32 = 5;

/// A failure and the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    pub fn bad_args(message: impl Into<String>) -> Failure {
        Failure { code: exit_bad_args, message: message.into() }
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        Failure { code: exit_error, message: e.to_string() }
    }
}

/// Runs corekvctl with `argv`; returns the exit code. Output goes to `out`.
/// Arguments are bytes (keys and values need not be UTF-8), as etcdctl's.
/// Global flags not on the command line are read from the process's
/// `ETCDCTL_*` environment variables, as etcdctl reads them.
pub fn main_with(argv: Vec<OsString>, stdin: &mut dyn Read, out: &mut dyn Write) -> i32 {
    let parsed = goflag::go_style(Cli::command())
        .try_get_matches_from(&argv)
        .and_then(|matches| Ok((Cli::from_arg_matches(&matches)?, matches)));
    if let Err(e) = &parsed {
        if let Some(usage) = goflag::usage_after(e, Cli::command(), &argv) {
            let _ = writeln!(out, "{}", usage.trim_end());
            let _ = out.flush();
        }
    }
    let (mut cli, matches) = match parsed.map_err(goflag::clap_failure) {
        Ok(parsed) => parsed,
        Err(Ok(code)) => return code,
        Err(Err(failure)) => {
            eprintln!("Error: {}", failure.message);
            return failure.code;
        }
    };
    let from_env = match cli.reads_env() {
        true => goflag::from_env(&matches, std::env::vars_os()),
        false => Ok(Default::default()),
    };
    let result = from_env.and_then(|(values, warnings)| {
        for warning in warnings {
            eprintln!("Warning: {warning}");
        }
        values.into_iter().try_for_each(|(id, value)| cli.set_global(id, value))?;
        cli.write_out = args::output_format(&cli.output)?;
        run(&cli, stdin, out)
    });
    match result {
        Ok(()) => 0,
        Err(failure) => {
            // An empty message: what went wrong was said already.
            if !failure.message.is_empty() {
                eprintln!("Error: {}", failure.message);
            }
            failure.code
        }
    }
}

/// The longest duration Go (and so etcd) can express, in seconds.
const duration_seconds_max: f64 = i64::MAX as f64 / 1e9;

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) =
        text.trim().split_at(text.trim().find(|c: char| c.is_alphabetic()).unwrap_or(text.len()));
    let value: f64 = number.parse().map_err(|_| format!("invalid duration {text:?}"))?;
    let seconds = match unit {
        "ns" => value / 1e9,
        "us" | "µs" => value / 1e6,
        "ms" => value / 1e3,
        "s" | "" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("invalid duration {text:?}")),
    };
    // Go's durations end at ~292 years; past that, as etcd, an error
    // (and no Instant arithmetic overflowing later).
    if seconds.is_nan() || !(0.0..=duration_seconds_max).contains(&seconds) {
        return Err(format!("invalid duration {text:?}"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn connect(cli: &Cli) -> Result<Client, Failure> {
    // Zero (or negative) is no limit here; etcdctl's deadline would
    // already have passed.
    let dial = match cli.dial_timeout.is_zero() {
        true => cli.command_timeout,
        false => cli.dial_timeout,
    };
    let mut client = Client::connect(&cli.endpoint_list(), dial)?;
    client.set_timeout(cli.command_timeout).map_err(ClientError::Io)?;
    Ok(client)
}

fn run(cli: &Cli, stdin: &mut dyn Read, out: &mut dyn Write) -> Result<(), Failure> {
    let format = cli.write_out;
    let write = |out: &mut dyn Write, bytes: Vec<u8>| {
        out.write_all(&bytes)
            .and_then(|_| out.flush())
            .map_err(|e| Failure { code: exit_error, message: e.to_string() })
    };
    match &cli.command {
        Command::Put(args) => {
            reject_table(format)?;
            let request = put_request(args, Some(stdin))?;
            let (header, body) = connect(cli)?.call(&request)?;
            write(out, print::response(format, &header, &body, args.print_options()))
        }
        Command::Get(args) => {
            reject_table(format)?;
            if args.print_value_only && format != OutputFormat::Simple {
                return Err(Failure::bad_args("print-value-only is only for `--write-out=simple`"));
            }
            let request = get_request(args)?;
            let (header, body) = connect(cli)?.call(&request)?;
            write(out, print::response(format, &header, &body, args.print_options()))
        }
        Command::Del(args) => {
            reject_table(format)?;
            let request = del_request(args)?;
            let (header, body) = connect(cli)?.call(&request)?;
            write(out, print::response(format, &header, &body, print::Options::default()))
        }
        Command::Txn(args) => {
            reject_table(format)?;
            let request = txn::read_txn(stdin, out, args.interactive)?;
            let (header, body) = connect(cli)?.call(&Request::Txn(request))?;
            write(out, print::response(format, &header, &body, print::Options::default()))
        }
        Command::Compaction(args) => {
            let revision = goflag::go_int64(&args.revision)
                .map_err(|message| Failure { code: exit_error, message })?;
            let request = Request::Compact(CompactRequest { revision, physical: args.physical });
            connect(cli)?.call(&request)?;
            write(out, format!("compacted revision {revision}\n").into_bytes())
        }
        Command::Endpoint(endpoint) => match endpoint.command {
            args::EndpointCommand::Status => endpoint::status(cli, out),
            args::EndpointCommand::Health => endpoint::health(cli, out),
        },
        Command::Snapshot(args) => snapshot::run(cli, &args.command, out),
        Command::Watch(args) => {
            reject_table(format)?;
            watch::run(cli, args, out)
        }
        Command::Lease(args) => lease::run(cli, &args.command, out),
        // etcdctl's shape: its own version, then the API it speaks.
        Command::Version => write(
            out,
            format!("corekvctl version: {}\nAPI version: 3.4\n", env!("CARGO_PKG_VERSION"))
                .into_bytes(),
        ),
    }
}

/// etcdctl's ExitBadFeature (4): a sort or consistency it does not know.
fn bad_feature(message: String) -> Failure {
    Failure { code: exit_bad_feature, message }
}

fn reject_table(format: OutputFormat) -> Result<(), Failure> {
    if format == OutputFormat::Table {
        return Err(Failure {
            code: exit_bad_feature,
            message: "table not supported as output format".into(),
        });
    }
    Ok(())
}

/// etcd's prefix end: the key with its last byte below 0xff incremented, or
/// "\0" (every key) when there is none.
pub fn prefix_end(key: &[u8]) -> Vec<u8> {
    let mut end = key.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The key and range end for `key [range_end]` with --prefix / --from-key.
fn key_range(
    key: &OsStr,
    range_end: Option<&OsStr>,
    prefix: bool,
    from_key: bool,
) -> Result<(Bytes, Bytes), Failure> {
    if prefix && from_key {
        return Err(Failure::bad_args(
            "`--prefix` and `--from-key` cannot be set at the same time, choose one",
        ));
    }
    if range_end.is_some() && (prefix || from_key) {
        return Err(Failure::bad_args(
            "too many arguments, only accept one argument when `--prefix` or `--from-key` is set",
        ));
    }
    let key = key.as_bytes();
    let (key, end) = if prefix {
        if key.is_empty() {
            (vec![0], vec![0])
        } else {
            (key.to_vec(), prefix_end(key))
        }
    } else if from_key {
        (if key.is_empty() { vec![0] } else { key.to_vec() }, vec![0])
    } else {
        (key.to_vec(), range_end.map(|end| end.as_bytes().to_vec()).unwrap_or_default())
    };
    Ok((Bytes::from(key), Bytes::from(end)))
}

pub(crate) fn put_request(
    args: &PutArgs,
    stdin: Option<&mut dyn Read>,
) -> Result<Request, Failure> {
    // etcdctl's getPutOp: with --ignore-value no value is taken; otherwise
    // the second argument, or stdin when it holds something.
    let needs = "put command needs 1 argument and input from stdin or 2 arguments";
    let value = match (&args.value, stdin) {
        (Some(_), _) if args.ignore_value => {
            return Err(Failure::bad_args(
                "put command needs only 1 argument when 'ignore-value' is set",
            ))
        }
        (Some(value), _) => value.as_bytes().to_vec(),
        (None, _) if args.ignore_value => Vec::new(),
        (None, Some(stdin)) => {
            let mut value = Vec::new();
            stdin.read_to_end(&mut value).map_err(|_| Failure::bad_args(needs))?;
            if value.is_empty() {
                return Err(Failure::bad_args(needs));
            }
            value
        }
        (None, None) => return Err(Failure::bad_args(needs)),
    };
    let lease = match &args.lease {
        Some(hex) => lease::go_parse_int(hex, 16)
            .map_err(|e| Failure::bad_args(format!("bad lease ID ({e}), expecting ID in Hex")))?,
        None => 0,
    };
    Ok(Request::Put(PutRequest {
        key: Bytes::copy_from_slice(args.key.as_bytes()),
        value: Bytes::from(value),
        lease,
        prev_kv: args.prev_kv,
        ignore_value: args.ignore_value,
        ignore_lease: args.ignore_lease,
    }))
}

pub(crate) fn get_request(args: &GetArgs) -> Result<Request, Failure> {
    let (key, range_end) =
        key_range(&args.key, args.range_end.as_deref(), args.prefix, args.from_key)?;
    let sort_target = match args.sort_by.to_ascii_uppercase().as_str() {
        "" | "KEY" => SortTarget::Key,
        "CREATE" => SortTarget::Create,
        "MODIFY" => SortTarget::Mod,
        "VALUE" => SortTarget::Value,
        "VERSION" => SortTarget::Version,
        _ => return Err(bad_feature(format!("bad sort target {}", args.sort_by))),
    };
    let mut sort_order = match args.order.to_ascii_uppercase().as_str() {
        "" => SortOrder::None,
        "ASCEND" => SortOrder::Ascend,
        "DESCEND" => SortOrder::Descend,
        _ => return Err(bad_feature(format!("bad sort order {}", args.order))),
    };
    // etcdctl: sorting by a target with no order given means ascending.
    if sort_order == SortOrder::None && !args.sort_by.is_empty() {
        sort_order = SortOrder::Ascend;
    }
    let serializable = match args.consistency.as_str() {
        "l" => false,
        "s" => true,
        other => return Err(bad_feature(format!("unknown consistency flag {other:?}"))),
    };
    Ok(Request::Range(RangeRequest {
        key,
        range_end,
        limit: args.limit,
        revision: args.rev,
        sort_order,
        sort_target,
        serializable,
        keys_only: args.keys_only,
        count_only: args.count_only,
        ..Default::default()
    }))
}

pub(crate) fn del_request(args: &DelArgs) -> Result<Request, Failure> {
    let (key, range_end) =
        key_range(&args.key, args.range_end.as_deref(), args.prefix, args.from_key)?;
    Ok(Request::DeleteRange(DeleteRangeRequest { key, range_end, prev_kv: args.prev_kv }))
}
