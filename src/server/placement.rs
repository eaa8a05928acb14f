//! Which core serves a new connection.
//!
//! Every core accepts on the client port (SO_REUSEPORT spreads connections
//! by a hash of their addresses). A connection is then served by the core
//! pinned to the CPU that processes its packets (SO_INCOMING_CPU: over
//! loopback the client's CPU, over a NIC the CPU taking its receive queue),
//! so a request and its reply never wake a second CPU on their way between
//! the socket and the core. That saved about a tenth of the server's CPU
//! per put at 64 clients (docs/performance.md). A core already holding more than
//! its share (`slack`) is passed over for the least-loaded one, so that a
//! NIC with a single receive queue (every packet on one CPU) still spreads
//! connections over all cores. `--connection-placement hash` keeps each
//! connection on the core that accepted it.

use std::sync::atomic::Ordering::Relaxed;

use crate::metrics::Metrics;
use crate::runtime::{self, HandedStream, Stream};

/// Connections handed to a core and not yet taken up by it.
const inbox_depth: usize = 1024;

/// How many more open connections than the least-loaded core a core may
/// hold and still be given the connections its CPU receives: one at first
/// (two connections from one CPU go to two cores, as on a NIC with one
/// receive queue), then a quarter more.
fn slack(least: u64) -> u64 {
    1.max(least / 4)
}

/// The core to serve a new connection accepted on `here`: of the cores on
/// the CPU that processed its packets (`local`; `here` when none is known),
/// the one with the fewest open connections, unless it holds `slack` or
/// more above the least-loaded core; then the least-loaded core. Among
/// equals, `here` (no handover).
pub fn choose(local: &[usize], here: usize, open: &[u64]) -> usize {
    let candidates = if local.is_empty() { std::slice::from_ref(&here) } else { local };
    let best = fewest(candidates.iter().copied(), here, open);
    let least_loaded = fewest(0..open.len(), here, open);
    let least = open[least_loaded];
    if open[best] < least + slack(least) {
        best
    } else {
        least_loaded
    }
}

/// Of `cores`, the one with the fewest open connections: `here` if it is
/// one of those, else the first.
fn fewest(cores: impl Iterator<Item = usize> + Clone, here: usize, open: &[u64]) -> usize {
    let least = cores.clone().map(|core| open[core]).min().expect("at least one core");
    let mut with_least = cores.filter(|core| open[*core] == least);
    with_least.clone().find(|core| *core == here).or_else(|| with_least.next()).expect("some core")
}

pub struct Placement {
    /// `--connection-placement cpu` (else each connection
    /// stays on the core that accepted it).
    by_cpu: bool,
    /// The CPU each core is pinned to.
    core_cpus: Vec<usize>,
    inboxes: Vec<(async_channel::Sender<HandedStream>, async_channel::Receiver<HandedStream>)>,
}

pub enum Placed {
    /// Serve it on the accepting core.
    Here(Stream),
    /// Handed to another core's inbox.
    Handed,
}

impl Placement {
    pub fn new(cores: usize, by_cpu: bool) -> Placement {
        Placement {
            by_cpu,
            core_cpus: runtime::core_cpus(cores),
            inboxes: (0..cores).map(|_| async_channel::bounded(inbox_depth)).collect(),
        }
    }

    /// The connections other cores hand to `core`.
    pub fn inbox(&self, core: usize) -> async_channel::Receiver<HandedStream> {
        self.inboxes[core].1.clone()
    }

    /// Places `stream`, accepted on core `here`, and counts it open on the
    /// core that will serve it (that core's `connections_open`; the serving
    /// task takes it off when the connection ends).
    pub fn place(&self, stream: Stream, here: usize, metrics: &Metrics) -> Placed {
        let core = if self.by_cpu {
            let open: Vec<u64> =
                metrics.cores.iter().map(|c| c.connections_open.load(Relaxed)).collect();
            let local: Vec<usize> = match runtime::incoming_cpu(&stream) {
                Some(cpu) => {
                    (0..self.core_cpus.len()).filter(|c| self.core_cpus[*c] == cpu).collect()
                }
                None => Vec::new(),
            };
            choose(&local, here, &open)
        } else {
            here
        };
        let stays = |stream| {
            metrics.cores[here].connections_open.fetch_add(1, Relaxed);
            Placed::Here(stream)
        };
        if core == here {
            return stays(stream);
        }
        let handed = match HandedStream::new(stream) {
            Ok(handed) => handed,
            Err(stream) => return stays(stream),
        };
        metrics.cores[core].connections_open.fetch_add(1, Relaxed);
        match self.inboxes[core].0.try_send(handed) {
            Ok(()) => Placed::Handed,
            Err(refused) => {
                metrics.cores[core].connections_open.fetch_sub(1, Relaxed);
                stays(refused.into_inner().into_stream())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_goes_to_the_core_on_its_cpu() {
        assert_eq!(choose(&[1], 0, &[5, 5]), 1);
        assert_eq!(choose(&[0], 1, &[5, 5]), 0);
        // Within the slack of the least-loaded core.
        assert_eq!(choose(&[1], 0, &[0, 0]), 1);
        assert_eq!(choose(&[1], 0, &[100, 124]), 1);
        // Several cores on that CPU: the least loaded of them, the
        // accepting one among equals.
        assert_eq!(choose(&[1, 3], 0, &[3, 4, 3, 3]), 3);
        assert_eq!(choose(&[1, 3], 3, &[2, 2, 2, 2]), 3);
        assert_eq!(choose(&[1, 3], 0, &[2, 2, 2, 2]), 1);
    }

    #[test]
    fn without_a_known_cpu_it_stays_where_it_was_accepted() {
        assert_eq!(choose(&[], 1, &[3, 3]), 1);
        assert_eq!(choose(&[], 0, &[3, 3]), 0);
    }

    #[test]
    fn a_core_at_its_share_is_passed_over_for_the_least_loaded() {
        // Every packet on CPU 0 (a NIC with one receive queue): the second
        // connection already goes to the other core.
        assert_eq!(choose(&[0], 0, &[1, 0]), 1);
        assert_eq!(choose(&[0], 1, &[125, 100]), 1);
        // The accepting core among equally least-loaded ones.
        assert_eq!(choose(&[0], 2, &[20, 3, 3]), 2);
        assert_eq!(choose(&[0], 0, &[20, 3, 3]), 1);
        // Without a known CPU too.
        assert_eq!(choose(&[], 0, &[20, 3]), 1);
    }

    #[test]
    fn connections_from_one_cpu_spread_evenly() {
        for cores in [2usize, 3, 16] {
            let mut open = vec![0u64; cores];
            for n in 1..=400 {
                let core = choose(&[0], 0, &open);
                open[core] += 1;
                let (least, most) = (*open.iter().min().unwrap(), *open.iter().max().unwrap());
                assert!(most <= least + slack(least), "after {n}: {open:?}");
            }
        }
    }

    #[test]
    fn connections_from_every_cpu_in_turn_stay_on_their_cpus() {
        let mut open = [0u64; 2];
        for n in 0..64 {
            let cpu = n % 2;
            assert_eq!(choose(&[cpu], 1 - cpu, &open), cpu);
            open[cpu] += 1;
        }
    }
}
