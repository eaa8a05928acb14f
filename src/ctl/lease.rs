//! `corekvctl lease grant|revoke|timetolive|list|keep-alive`: etcdctl 3.4's
//! lease commands, their words, exit codes and output.

use std::io::Write;
use std::time::Duration;

use super::args::{Cli, LeaseCommand, OutputFormat};
use super::{connect, exit_error, print, Failure};
use crate::client::{Client, ClientError};
use crate::types::*;

/// etcdctl's ExitBadConnection: what `keep-alive --once` exits with when
/// the lease is gone.
const exit_bad_connection: i32 = 2;

/// Go's strconv.ParseInt(text, radix, 64), with its error text.
pub fn go_parse_int(text: &str, radix: u32) -> Result<i64, String> {
    let quoted = serde_json::to_string(text).unwrap_or_default();
    i64::from_str_radix(text, radix).map_err(|e| {
        let why = match e.kind() {
            std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                "value out of range"
            }
            _ => "invalid syntax",
        };
        format!("strconv.ParseInt: parsing {quoted}: {why}")
    })
}

fn lease_id(id: &Option<String>, missing: &str) -> Result<i64, Failure> {
    let id = id.as_deref().ok_or_else(|| Failure::bad_args(missing))?;
    go_parse_int(id, 16)
        .map_err(|e| Failure::bad_args(format!("bad lease ID arg ({e}), expecting ID in Hex")))
}

pub fn run(cli: &Cli, command: &LeaseCommand, out: &mut dyn Write) -> Result<(), Failure> {
    let format = cli.write_out;
    if format == OutputFormat::Table {
        return Err(Failure {
            code: super::exit_bad_feature,
            message: "table not supported as output format".into(),
        });
    }
    let write = |out: &mut dyn Write, bytes: &[u8]| {
        out.write_all(bytes)
            .and_then(|_| out.flush())
            .map_err(|e| Failure { code: exit_error, message: e.to_string() })
    };
    let print = |header: &ResponseHeader, body: &ResponseBody, keys: bool| {
        print::response(format, header, body, print::Options { keys, ..Default::default() })
    };
    match command {
        LeaseCommand::Grant { ttl } => {
            let ttl = ttl
                .as_deref()
                .ok_or_else(|| Failure::bad_args("lease grant command needs TTL argument"))?;
            let ttl =
                go_parse_int(ttl, 10).map_err(|e| Failure::bad_args(format!("bad TTL ({e})")))?;
            let request = Request::LeaseGrant(LeaseGrantRequest { ttl, id: 0 });
            let (header, body) = connect(cli)?.call(&request).map_err(|e| failed("grant", e))?;
            write(out, &print(&header, &body, false))
        }
        LeaseCommand::Revoke { id } => {
            let id = lease_id(id, "lease revoke command needs 1 argument")?;
            let (header, body) =
                connect(cli)?.call(&Request::LeaseRevoke(id)).map_err(|e| failed("revoke", e))?;
            match format {
                OutputFormat::Json => write(out, &print(&header, &body, false)),
                _ => write(out, format!("lease {id:016x} revoked\n").as_bytes()),
            }
        }
        LeaseCommand::Timetolive { id, keys } => {
            let id = lease_id(id, "lease timetolive command needs lease ID as argument")?;
            let request = Request::LeaseTimeToLive(LeaseTimeToLiveRequest { id, keys: *keys });
            let (header, body) = connect(cli)?.call(&request).map_err(bad_connection)?;
            write(out, &print(&header, &body, *keys))
        }
        LeaseCommand::List => {
            let (header, body) =
                connect(cli)?.call(&Request::LeaseLeases).map_err(bad_connection)?;
            write(out, &print(&header, &body, false))
        }
        LeaseCommand::KeepAlive { id, once } => {
            let id = lease_id(id, "lease keep-alive command needs lease ID as argument")?;
            let mut client = connect(cli)?;
            loop {
                let (header, ttl) = keep_alive(&mut client, id)?;
                if ttl <= 0 {
                    if *once {
                        return Err(Failure {
                            code: exit_bad_connection,
                            message: crate::error::ErrorCode::LeaseNotFound.message().into(),
                        });
                    }
                    // etcdctl says so in the simple format only.
                    if format == OutputFormat::Json {
                        return Ok(());
                    }
                    return write(out, format!("lease {id:016x} expired or revoked.\n").as_bytes());
                }
                let body = ResponseBody::LeaseKeepAlive(LeaseKeepAliveResponse { id, ttl });
                write(out, &print(&header, &body, false))?;
                if *once {
                    return Ok(());
                }
                // etcd's client renews a third of the TTL ahead.
                std::thread::sleep(Duration::from_millis((ttl as u64 * 1000 / 3).max(500)));
            }
        }
    }
}

fn keep_alive(client: &mut Client, id: i64) -> Result<(ResponseHeader, i64), Failure> {
    match client.call(&Request::LeaseKeepAlive(id)).map_err(bad_connection)? {
        (header, ResponseBody::LeaseKeepAlive(k)) => Ok((header, k.ttl)),
        (_, other) => Err(ClientError::Protocol(format!("unexpected response {other:?}")).into()),
    }
}

/// etcdctl exits 2 (ExitBadConnection) when timetolive, list or keep-alive fail.
fn bad_connection(e: ClientError) -> Failure {
    Failure { code: exit_bad_connection, message: e.to_string() }
}

/// etcdctl's "failed to grant lease (…)" wording for grant and revoke.
fn failed(what: &str, e: ClientError) -> Failure {
    Failure { code: exit_error, message: format!("failed to {what} lease ({e})") }
}
