//! The deterministic simulator in the README test command: 200 seeds mixing
//! 3- and 5-member clusters, fault-heavy and fault-free runs, ReadIndex and
//! lease reads (`SimConfig::from_seed`); and proof that the checkers catch
//! deliberately broken Raft rules. Long hunts: `cargo run --release --example
//! sim -- --seeds 10000`.

use corekv::raft::DeliberateBug;
use corekv::sim::{run, SimConfig};

#[test]
fn two_hundred_seeds_pass_every_checker() {
    let (mut faulty, mut calm, mut operations) = (0, 0, 0);
    let mut failures = Vec::new();
    for seed in 0..200 {
        let config = SimConfig::from_seed(seed);
        if config.faults {
            faulty += 1;
        } else {
            calm += 1;
        }
        let report = run(config);
        operations += report.operations_checked;
        if !report.violations.is_empty() {
            failures.push(report.to_string());
        }
    }
    assert!(failures.is_empty(), "{} seeds failed:\n{}", failures.len(), failures.join("\n"));
    assert!(faulty >= 100 && calm >= 40, "seed mix: {faulty} with faults, {calm} calm");
    assert!(operations > 20_000, "too few operations checked: {operations}");
}

/// Runs seeds with `bug` until a checker reports a violation; returns it.
fn first_caught(bug: DeliberateBug, seeds: u64) -> Option<String> {
    (0..seeds).find_map(|seed| {
        let mut config = SimConfig::from_seed(seed);
        config.bug = Some(bug);
        let report = run(config);
        report.violations.first().map(|v| format!("seed {seed}: {v}"))
    })
}

#[test]
fn granting_votes_without_the_log_check_is_caught() {
    let caught = first_caught(DeliberateBug::VoteWithoutLogCheck, 200).expect("not caught");
    assert!(caught.contains("leader completeness") || caught.contains("linearizab"), "{caught}");
}

#[test]
fn serving_reads_without_read_index_is_caught() {
    let caught = first_caught(DeliberateBug::ReadWithoutReadIndex, 200).expect("not caught");
    assert!(caught.contains("linearizability"), "{caught}");
}

#[test]
fn forgetting_the_vote_across_a_restart_is_caught() {
    let caught = first_caught(DeliberateBug::SkipPersistingVote, 3_000).expect("not caught");
    assert!(caught.contains("election safety") || caught.contains("two leaders"), "{caught}");
}

#[test]
fn a_seed_replays_exactly() {
    let config = SimConfig::from_seed(12);
    let (a, b) = (run(config.clone()), run(config));
    assert_eq!(a.to_string(), b.to_string());
    assert_eq!(a.stats.messages, b.stats.messages);
}
