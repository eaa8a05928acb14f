//! `corekvctl snapshot save|status|restore`, as etcdctl 3.4 has them.
//!
//! - save FILE: streams a snapshot from one member into FILE.part, checks it
//!   end to end, then renames it to FILE ("Snapshot saved at FILE").
//! - status FILE: checks the file and prints etcdctl's fields: hash, revision,
//!   total keys (versions, as etcd counts its key bucket) and total size.
//! - restore FILE: checks the file and builds a fresh member data dir from it
//!   (offline); the member started on that dir serves the snapshot's state.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::args::{OutputFormat, SnapshotCommand};
use super::print::{human_bytes, table};
use super::{connect, exit_error, Cli, Failure};
use crate::server::Config;
use crate::snapshot::{self, Meta, Summary};
use crate::types::{Request, Response, ResponseBody};

fn failure(message: impl Into<String>) -> Failure {
    Failure { code: exit_error, message: message.into() }
}

pub fn run(cli: &Cli, command: &SnapshotCommand, out: &mut dyn Write) -> Result<(), Failure> {
    let text = match command {
        SnapshotCommand::Save { file } => save(cli, Path::new(file))?,
        SnapshotCommand::Status { file } => status_text(cli.write_out, Path::new(file))?,
        SnapshotCommand::Restore(args) => restore(args)?,
    };
    out.write_all(text.as_bytes()).and_then(|_| out.flush()).map_err(|e| failure(e.to_string()))
}

fn save(cli: &Cli, file: &Path) -> Result<String, Failure> {
    if cli.endpoint_list().len() != 1 {
        return Err(failure(format!(
            "snapshot must be requested to one selected node, not multiple {:?}",
            cli.endpoint_list()
        )));
    }
    // As etcdctl: FILE.part, private to its owner, is removed on any failure.
    let part = PathBuf::from(format!("{}.part", file.display()));
    let saved = save_to(cli, &part, file);
    if saved.is_err() {
        let _ = fs::remove_file(&part);
    }
    saved
}

/// Streams the snapshot into `part`, checks it, renames it to `file`.
fn save_to(cli: &Cli, part: &Path, file: &Path) -> Result<String, Failure> {
    let io = |e: std::io::Error| failure(format!("{}: {e}", part.display()));
    let mut output = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(part)
        .map_err(io)?;
    let mut client = connect(cli)?;
    let id = client.send(&Request::Snapshot)?;
    loop {
        match client.receive(id)? {
            Response { result: Ok(ResponseBody::Snapshot(chunk)), .. } => {
                output.write_all(&chunk.blob).map_err(io)?;
                if chunk.done {
                    break;
                }
            }
            Response { result: Ok(other), .. } => {
                return Err(failure(format!("unexpected response to a snapshot: {other:?}")));
            }
            Response { result: Err(e), .. } => return Err(failure(e.to_string())),
        }
    }
    output.sync_all().map_err(io)?;
    drop(output);
    if let Err(e) = snapshot::status(part) {
        return Err(failure(format!("the received snapshot does not check out: {e}")));
    }
    fs::rename(part, file).map_err(io)?;
    Ok(format!("Snapshot saved at {}\n", file.display()))
}

fn check(file: &Path) -> Result<(Meta, Summary), Failure> {
    snapshot::status(file).map_err(|e| failure(e.to_string()))
}

fn status_text(format: OutputFormat, file: &Path) -> Result<String, Failure> {
    let (meta, summary) = check(file)?;
    let total_size = fs::metadata(file).map_err(|e| failure(e.to_string()))?.len();
    let hash = summary.hash32();
    Ok(match format {
        OutputFormat::Simple => format!(
            "{hash:x}, {}, {}, {}\n",
            meta.revision,
            summary.versions,
            human_bytes(total_size)
        ),
        OutputFormat::Json => format!(
            "{{\"hash\":{hash},\"revision\":{},\"totalKey\":{},\"totalSize\":{total_size}}}\n",
            meta.revision, summary.versions
        ),
        OutputFormat::Table => table(
            &["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"],
            &[vec![
                format!("{hash:x}"),
                meta.revision.to_string(),
                summary.versions.to_string(),
                human_bytes(total_size),
            ]],
        ),
    })
}

fn restore(args: &super::args::RestoreArgs) -> Result<String, Failure> {
    let file = Path::new(&args.file);
    let (meta, _) = check(file)?;
    // The member flags are checked exactly as the member will check them.
    let mut argv = vec!["corekv".to_string(), "--name".into(), args.name.clone()];
    let flags = [
        ("--initial-cluster", &args.initial_cluster),
        ("--initial-cluster-token", &Some(args.initial_cluster_token.clone())),
        ("--initial-advertise-peer-urls", &Some(args.initial_advertise_peer_urls.clone())),
    ];
    for (flag, value) in flags {
        if let Some(value) = value {
            argv.extend([flag.to_string(), value.clone()]);
        }
    }
    let data_dir = PathBuf::from(args.data_dir.clone().unwrap_or(format!("{}.corekv", args.name)));
    argv.extend(["--data-dir".to_string(), data_dir.display().to_string()]);
    let config = <Config as clap::Parser>::try_parse_from(&argv)
        .map_err(|e| failure(e.to_string()))?
        .resolve()
        .map_err(failure)?;
    if data_dir.exists() {
        return Err(failure(format!("data-dir {:?} exists", data_dir.display().to_string())));
    }
    let snapshots = config.data_dir.join("snapshots");
    let io = |e: std::io::Error| failure(format!("{}: {e}", config.data_dir.display()));
    // Private to its owner, as etcdctl makes a restored data dir.
    let mut private = fs::DirBuilder::new();
    private.recursive(true).mode(0o700);
    for dir in [&config.data_dir, &snapshots, &config.data_dir.join("wal")] {
        private.create(dir).map_err(io)?;
    }
    snapshot::install_in_dir(&snapshots, file, &meta).map_err(io)?;
    snapshot::sync_dir(&config.data_dir).map_err(io)?;
    eprintln!(
        "restored snapshot {} (revision {}, index {}) into {}",
        file.display(),
        meta.revision,
        meta.applied_index,
        config.data_dir.display()
    );
    Ok(String::new())
}
