//! Runs the deterministic cluster simulator (docs/raft.md, "Simulator").
//!
//!   cargo run --release --example sim -- --seeds 10000            # a long hunt
//!   cargo run --release --example sim -- --seed 42 --members 5 --profile faults
//!
//! Without --members/--profile each seed picks its own shape
//! (`SimConfig::from_seed`). Prints one summary line; every failing seed is
//! printed with its violations and a one-line replay command. Exits 1 if any
//! seed failed.

use std::time::Instant;

use corekv::raft::DeliberateBug;
use corekv::sim::{run, SimConfig};

struct Args {
    start: u64,
    count: u64,
    members: Option<u64>,
    faults: Option<bool>,
    lease_reads: bool,
    bug: Option<DeliberateBug>,
    verbose: bool,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        start: 0,
        count: 100,
        members: None,
        faults: None,
        lease_reads: false,
        bug: None,
        verbose: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--seed" => {
                args.start = value()?.parse().map_err(|e| format!("--seed: {e}"))?;
                args.count = 1;
            }
            "--start" => args.start = value()?.parse().map_err(|e| format!("--start: {e}"))?,
            "--seeds" => args.count = value()?.parse().map_err(|e| format!("--seeds: {e}"))?,
            "--members" => {
                args.members = Some(value()?.parse().map_err(|e| format!("--members: {e}"))?)
            }
            "--profile" => {
                args.faults = Some(match value()?.as_str() {
                    "faults" => true,
                    "calm" => false,
                    other => return Err(format!("--profile: faults or calm, not {other}")),
                })
            }
            "--lease-reads" => args.lease_reads = true,
            "--bug" => args.bug = Some(parse_bug(&value()?)?),
            "--verbose" => args.verbose = true,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(args)
}

fn parse_bug(name: &str) -> Result<DeliberateBug, String> {
    Ok(match name {
        "CommitOldTermsByCounting" => DeliberateBug::CommitOldTermsByCounting,
        "VoteWithoutLogCheck" => DeliberateBug::VoteWithoutLogCheck,
        "ReadWithoutReadIndex" => DeliberateBug::ReadWithoutReadIndex,
        "SkipPersistingVote" => DeliberateBug::SkipPersistingVote,
        other => return Err(format!("unknown bug {other}")),
    })
}

fn main() {
    let args = parse().unwrap_or_else(|e| {
        eprintln!("sim: {e}");
        std::process::exit(2);
    });
    // Failures are reported with their seed; the default hook's backtrace
    // for each caught panic would only bury them.
    if args.count > 1 {
        std::panic::set_hook(Box::new(|_| {}));
    }
    let started = Instant::now();
    let (mut failed, mut operations, mut faults, mut ticks, mut entries) = (0u64, 0, 0, 0, 0);
    for seed in args.start..args.start + args.count {
        let mut config = SimConfig::from_seed(seed);
        if let Some(members) = args.members {
            config.members = members;
        }
        if let Some(faults) = args.faults {
            config.faults = faults;
        }
        config.lease_reads |= args.lease_reads;
        config.bug = args.bug;
        let report = run(config);
        operations += report.operations_checked;
        faults += report.stats.faults;
        ticks += report.stats.ticks;
        entries += report.entries_applied;
        if !report.violations.is_empty() {
            failed += 1;
            println!("{report}");
        } else if args.verbose {
            println!("{report}");
        }
    }
    println!(
        "sim: {} seeds from {}, {failed} failed; {operations} operations checked, {entries} \
         entries applied, {faults} faults injected, {ticks} ticks; {:.1} s",
        args.count,
        args.start,
        started.elapsed().as_secs_f64()
    );
    if failed > 0 {
        std::process::exit(1);
    }
}
