//! `corekvctl watch KEY [RANGE_END]`: etcdctl's watch, printing each event as
//! it arrives (simple: type, then the previous and the new key and value;
//! JSON: one line per response) until interrupted or canceled by the server.

use std::io::Write;

use super::args::{Cli, OutputFormat, WatchArgs};
use super::{connect, exit_error, exit_interrupted, key_range, print, Failure};
use crate::client::ClientError;
use crate::types::*;

pub fn run(cli: &Cli, args: &WatchArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let (key, range_end) = match args.keys.as_slice() {
        [key] => key_range(key, None, args.prefix, false)?,
        [key, end] => key_range(key, Some(end), args.prefix, false)?,
        [] => return Err(Failure::bad_args("bad number of arguments")),
        _ => {
            return Err(Failure::bad_args(
                "bad number of arguments (running a command per event is not supported)",
            ))
        }
    };
    let mut client = connect(cli)?;
    // A watch waits as long as it takes.
    client.set_timeout(std::time::Duration::ZERO).map_err(ClientError::Io)?;
    let create = WatchCreateRequest {
        key,
        range_end,
        start_revision: args.rev,
        progress_notify: args.progress_notify,
        prev_kv: args.prev_kv,
        ..Default::default()
    };
    let stream = client.send(&Request::WatchCreate(create))?;
    let io = |e: std::io::Error| Failure { code: exit_error, message: e.to_string() };
    loop {
        let response = client.receive(stream)?;
        let header = response.header;
        let watch = match response.result.map_err(ClientError::Server)? {
            ResponseBody::Watch(watch) => watch,
            other => {
                let message = format!("unexpected response {other:?}");
                return Err(ClientError::Protocol(message).into());
            }
        };
        if watch.created && !watch.canceled && watch.events.is_empty() {
            continue;
        }
        if watch.canceled {
            eprintln!("watch was canceled ({})", watch.cancel_reason);
        }
        let progress = watch.events.is_empty() && !watch.canceled && watch.compact_revision == 0;
        if progress && header.revision != 0 {
            writeln!(out, "progress notify: {}", header.revision).map_err(io)?;
        }
        let body = ResponseBody::Watch(watch.clone());
        let printed = print::response(cli.write_out, &header, &body, print::Options::default());
        if cli.write_out == OutputFormat::Json || !watch.events.is_empty() {
            out.write_all(&printed).and_then(|_| out.flush()).map_err(io)?;
        }
        if watch.canceled {
            return Err(Failure {
                code: exit_interrupted,
                message: "watch is canceled by the server".into(),
            });
        }
    }
}
