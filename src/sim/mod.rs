//! The deterministic cluster simulator (feature `sim`): 3- or 5-member
//! clusters running the real Raft core (`crate::raft`) with an etcd-like KV
//! state machine, a simulated network (delay, drop, duplicate, reorder,
//! symmetric and asymmetric partitions), simulated disks (a crash loses the
//! write in flight or tears it), crashes and restarts, membership changes and
//! leadership transfers, and clients that time out and retry.
//!
//! One thread, one seed: a run is a pure function of its `SimConfig`, so a
//! failing seed replays exactly with the command in its report.
//!
//! A run has two phases. During the fault phase faults are injected; then
//! everything heals (members restart, the network becomes reliable) and the
//! liveness phase requires a leader within `leader_bound_ms` and every
//! client's operations to complete within `liveness_bound_ms`. Checkers
//! (`checker`) watch safety throughout; at the end the client history is
//! checked for linearizability per key (`kv_model`, `linearizability`).

mod checker;
mod client;
mod disk;
mod faults;
mod kv;
pub mod kv_model;
pub mod linearizability;
mod member;
pub mod pipeline;
mod rng;
mod world;

use std::fmt;

use crate::raft::DeliberateBug;

pub use world::World;

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    pub members: u64,
    pub faults: bool,
    pub lease_reads: bool,
    pub bug: Option<DeliberateBug>,
    pub clients: u64,
    pub fault_phase_ms: u64,
    pub leader_bound_ms: u64,
    pub liveness_bound_ms: u64,
}

impl SimConfig {
    pub fn new(seed: u64, members: u64, faults: bool) -> SimConfig {
        SimConfig {
            seed,
            members,
            faults,
            lease_reads: false,
            bug: None,
            clients: 4,
            fault_phase_ms: 3_000,
            leader_bound_ms: 1_500,
            liveness_bound_ms: 4_000,
        }
    }

    /// The seed's own choice of cluster shape, so a range of seeds covers
    /// every mix: 3 or 5 members, faults or not, lease reads or ReadIndex.
    pub fn from_seed(seed: u64) -> SimConfig {
        let mut config =
            SimConfig::new(seed, if seed.is_multiple_of(2) { 3 } else { 5 }, seed % 4 < 3);
        config.lease_reads = seed % 8 >= 6;
        config
    }

    /// One command line that reproduces this run exactly.
    pub fn replay_command(&self) -> String {
        let mut command = format!(
            "cargo run --release --example sim -- --seed {} --members {} --profile {}",
            self.seed,
            self.members,
            if self.faults { "faults" } else { "calm" }
        );
        if self.lease_reads {
            command.push_str(" --lease-reads");
        }
        if let Some(bug) = self.bug {
            command.push_str(&format!(" --bug {bug:?}"));
        }
        command
    }
}

#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub ticks: u64,
    pub messages: u64,
    pub faults: u64,
}

#[derive(Clone, Debug)]
pub struct Report {
    pub config: SimConfig,
    pub stats: Stats,
    pub operations_checked: usize,
    pub operations_completed: u64,
    pub entries_applied: usize,
    pub violations: Vec<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {} members {} {}: {} ops checked ({} completed), {} entries applied, {} faults, \
             {} ticks, {} messages",
            self.config.seed,
            self.config.members,
            if self.config.faults { "faults" } else { "calm" },
            self.operations_checked,
            self.operations_completed,
            self.entries_applied,
            self.stats.faults,
            self.stats.ticks,
            self.stats.messages
        )?;
        for violation in &self.violations {
            write!(f, "\n  VIOLATION: {violation}")?;
        }
        if !self.violations.is_empty() {
            write!(f, "\n  replay: {}", self.config.replay_command())?;
        }
        Ok(())
    }
}

/// Runs one seed to the end; a panic inside the core (a failed assertion)
/// is reported as a violation rather than unwinding further.
pub fn run(config: SimConfig) -> Report {
    let attempt = config.clone();
    match std::panic::catch_unwind(move || run_unguarded(attempt)) {
        Ok(report) => report,
        Err(panic) => {
            let text = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Report {
                config,
                stats: Stats::default(),
                operations_checked: 0,
                operations_completed: 0,
                entries_applied: 0,
                violations: vec![format!("panic: {text}")],
            }
        }
    }
}

fn run_unguarded(config: SimConfig) -> Report {
    let mut world = World::new(config.clone());
    let mut violations = Vec::new();
    let mut leader_seen = false;
    let mut completed_at_heal = Vec::new();
    while world.step() {
        if !world.checker.violations.is_empty() {
            break;
        }
        let Some(healed) = world.healing_since else {
            if world.now >= config.fault_phase_ms {
                world.heal();
                completed_at_heal = world.clients.iter().map(|c| c.completed).collect();
            }
            continue;
        };
        let waited = world.now - healed;
        leader_seen |= world.leader().is_some();
        if !leader_seen && waited > config.leader_bound_ms {
            violations
                .push(format!("liveness: no leader {waited} ms after healing{}", world.describe()));
            break;
        }
        let done =
            world.clients.iter().zip(&completed_at_heal).all(|(c, &at)| c.completed >= at + 2);
        if done && leader_seen {
            break;
        }
        if waited > config.liveness_bound_ms {
            violations.push(format!(
                "liveness: client operations still pending {waited} ms after healing{}",
                world.describe()
            ));
            break;
        }
    }
    world.check_logs();
    let mut all = std::mem::take(&mut world.checker.violations);
    all.extend(violations);
    let operations_checked = match kv_model::check_kv_history(&world.history) {
        Ok(count) => count,
        Err(text) => {
            all.push(format!("linearizability: {text}"));
            0
        }
    };
    Report {
        operations_completed: world.clients.iter().map(|c| c.completed).sum(),
        entries_applied: world.checker.applied_entries(),
        stats: world.stats.clone(),
        operations_checked,
        violations: all,
        config,
    }
}
