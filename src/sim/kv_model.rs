//! A sequential model of one etcd-like key, and a checker that partitions a history of
//! single-key operations by key and checks each key's operations for linearizability.
//!
//! Semantics follow etcd. A missing key has mod_revision 0. A put gives the key its value
//! and a new mod_revision strictly greater than every revision the key had before; a delete
//! removes the key without revealing its own revision, so a later put only has to exceed the
//! revisions seen before the delete. A compare-and-put succeeds exactly when the key's
//! current mod_revision equals the expected one (0 meaning "absent"). Revisions are global
//! across keys, so within one key they are only known to increase.
//!
//! A timed-out operation has output [`KvOutput::Unknown`]: it may or may not have taken
//! effect, and if it did, nobody saw the revision it got. One key's state is therefore not a
//! single concrete state but a set of possibilities (a powerset construction, so that
//! `step` stays deterministic). Each possibility is absent (with a floor under the next
//! revision), present with a known mod_revision, or present with an unpinned mod_revision:
//! "greater than a floor and none of the values a failed compare ruled out". A later get or
//! successful compare that observes a revision pins an unpinned one down. An unknown
//! operation always keeps the "did not take effect" possibility, which also covers a failed
//! compare. Such an operation linearizes within its call and return times; one whose
//! `return_time` is None returns at infinity, so it may take effect any time after its call,
//! or never. A harness that knows a timed-out request may still be applied after the client
//! gave up should record it with `return_time: None`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::linearizability::{check, Model, Operation, Verdict};

/// What a client asked of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvInput {
    Get,
    Put { value: u64 },
    CompareAndPut { expected_mod_revision: u64, value: u64 },
    Delete,
}

/// What a client got back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvOutput {
    Got(Option<(u64 /*value*/, u64 /*mod_revision*/)>),
    Put { revision: u64 }, // the new mod_revision of the key
    CompareFailed,         // CAS: current mod_revision (0 when the key is missing) != expected
    Deleted { existed: bool },
    Unknown, // client timed out: the op may or may not have taken effect
}

/// One operation on one key, with its invocation and return times in logical ticks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvOperation {
    pub key: u64,
    pub client: u64,
    pub input: KvInput,
    pub call: u64,
    pub output: KvOutput,
    pub return_time: Option<u64>,
}

/// The sequential specification of one key, for [`super::linearizability`].
#[derive(Clone, Copy, Debug, Default)]
pub struct KvModel;

/// The set of states one key may be in, sorted and without duplicates.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KvStates(Vec<KeyState>);

/// One possible state of one key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum KeyState {
    /// The key is missing; every revision it ever had is at most `floor`.
    Absent { floor: u64 },
    /// The key holds `value` with mod_revision `revision`.
    Known { value: u64, revision: u64 },
    /// The key holds `value` with a mod_revision above `floor` that is not in `excluded`
    /// (sorted), because the write that set it was never acknowledged.
    Unpinned { value: u64, floor: u64, excluded: Vec<u64> },
}

impl KeyState {
    fn value(&self) -> Option<u64> {
        match *self {
            KeyState::Absent { .. } => None,
            KeyState::Known { value, .. } | KeyState::Unpinned { value, .. } => Some(value),
        }
    }

    /// Whether the key's current mod_revision may be `revision` (0 for a missing key).
    fn may_have_revision(&self, revision: u64) -> bool {
        match self {
            KeyState::Absent { .. } => revision == 0,
            KeyState::Known { revision: current, .. } => *current == revision,
            KeyState::Unpinned { floor, excluded, .. } => {
                revision > *floor && excluded.binary_search(&revision).is_err()
            }
        }
    }

    /// A bound that the revision of the next write to the key must exceed.
    fn next_floor(&self) -> u64 {
        match self {
            KeyState::Absent { floor } => *floor,
            KeyState::Known { revision, .. } => *revision,
            KeyState::Unpinned { floor, excluded, .. } => {
                // The current revision is at least the smallest one not ruled out.
                let mut least = floor + 1;
                while excluded.binary_search(&least).is_ok() {
                    least += 1;
                }
                least
            }
        }
    }

    /// The state after an operation whose output was observed, or None if impossible.
    fn observed(&self, input: &KvInput, output: &KvOutput) -> Option<KeyState> {
        match (input, output) {
            (KvInput::Get, KvOutput::Got(None)) => self.value().is_none().then(|| self.clone()),
            (KvInput::Get, &KvOutput::Got(Some((value, revision)))) => {
                let possible = self.value() == Some(value) && self.may_have_revision(revision);
                possible.then_some(KeyState::Known { value, revision })
            }
            (&KvInput::Put { value }, &KvOutput::Put { revision }) => {
                (revision > self.next_floor()).then_some(KeyState::Known { value, revision })
            }
            (
                &KvInput::CompareAndPut { expected_mod_revision: expected, value },
                &KvOutput::Put { revision },
            ) => {
                let floor = expected.max(self.next_floor());
                let possible = self.may_have_revision(expected) && revision > floor;
                possible.then_some(KeyState::Known { value, revision })
            }
            (
                &KvInput::CompareAndPut { expected_mod_revision: expected, .. },
                KvOutput::CompareFailed,
            ) => self.compare_failed(expected),
            (KvInput::Delete, &KvOutput::Deleted { existed }) => {
                match (self.value().is_some(), existed) {
                    (true, true) => Some(KeyState::Absent { floor: self.next_floor() }),
                    (false, false) => Some(self.clone()),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// The state after a compare against `expected` failed, or None if it had to succeed.
    fn compare_failed(&self, expected: u64) -> Option<KeyState> {
        if !self.may_have_revision(expected) {
            return Some(self.clone());
        }
        match self {
            KeyState::Unpinned { value, floor, excluded } => {
                let mut excluded = excluded.clone();
                let at = excluded.binary_search(&expected).unwrap_err();
                excluded.insert(at, expected);
                Some(KeyState::Unpinned { value: *value, floor: *floor, excluded })
            }
            KeyState::Absent { .. } | KeyState::Known { .. } => None,
        }
    }

    /// The state after an operation with an unknown outcome that did take effect, when that
    /// differs from not taking effect (or from failing, for a compare).
    fn applied_unobserved(&self, input: &KvInput) -> Option<KeyState> {
        let floor = self.next_floor();
        match *input {
            KvInput::Get => None,
            KvInput::Put { value } => Some(KeyState::Unpinned { value, floor, excluded: vec![] }),
            KvInput::CompareAndPut { expected_mod_revision: expected, value } => {
                self.may_have_revision(expected).then(|| KeyState::Unpinned {
                    value,
                    floor: expected.max(floor),
                    excluded: vec![],
                })
            }
            KvInput::Delete => self.value().is_some().then_some(KeyState::Absent { floor }),
        }
    }
}

impl Model for KvModel {
    type State = KvStates;
    type Input = KvInput;
    type Output = KvOutput;

    fn init(&self) -> KvStates {
        KvStates(vec![KeyState::Absent { floor: 0 }])
    }

    fn step(&self, state: &KvStates, input: &KvInput, output: &KvOutput) -> Option<KvStates> {
        let mut next = Vec::with_capacity(state.0.len() + 1);
        for possible in &state.0 {
            if *output == KvOutput::Unknown {
                next.push(possible.clone());
                next.extend(possible.applied_unobserved(input));
            } else {
                next.extend(possible.observed(input, output));
            }
        }
        next.sort_unstable();
        next.dedup();
        (!next.is_empty()).then_some(KvStates(next))
    }
}

/// The most operations of a failing key listed in an error message.
const listed_ops_max: usize = 200;

/// Checks each key's operations for linearizability against [`KvModel`]. Returns the number
/// of operations checked (all of them; gets with unknown outcome are trivially fine and are
/// left out of the search), or a description of the first failing key (lowest key id) with
/// its operations listed one per line in call order.
pub fn check_kv_history(history: &[KvOperation]) -> Result<usize, String> {
    let mut by_key: BTreeMap<u64, Vec<Operation<KvInput, KvOutput>>> = BTreeMap::new();
    for op in history {
        if op.input == KvInput::Get && op.output == KvOutput::Unknown {
            continue; // always possible and changes nothing: it would only slow the search
        }
        by_key.entry(op.key).or_default().push(Operation {
            client: op.client,
            input: op.input.clone(),
            call: op.call,
            output: op.output.clone(),
            return_time: op.return_time,
        });
    }
    for (key, ops) in &by_key {
        if let Verdict::NotLinearizable { longest_prefix, .. } = check(&KvModel, ops) {
            return Err(describe_failure(*key, ops, longest_prefix));
        }
    }
    Ok(history.len())
}

/// A failing key's verdict and its operations, one compact line each, in call order.
fn describe_failure(key: u64, ops: &[Operation<KvInput, KvOutput>], prefix: usize) -> String {
    let operations = ops.len();
    let mut text = format!(
        "key {key} is not linearizable: at most {prefix} of its {operations} \
         operations linearize together; its operations by call time:"
    );
    let mut sorted: Vec<_> = ops.iter().collect();
    sorted.sort_by_key(|op| (op.call, op.return_time.is_none(), op.return_time));
    for op in sorted.iter().take(listed_ops_max) {
        let ret = op.return_time.map_or_else(|| "inf".to_string(), |time| time.to_string());
        let input = match op.input {
            KvInput::Get => "get".to_string(),
            KvInput::Put { value } => format!("put {value}"),
            KvInput::CompareAndPut { expected_mod_revision, value } => {
                format!("cas @{expected_mod_revision} {value}")
            }
            KvInput::Delete => "delete".to_string(),
        };
        let output = match op.output {
            KvOutput::Got(None) => "none".to_string(),
            KvOutput::Got(Some((value, revision))) => format!("{value} @{revision}"),
            KvOutput::Put { revision } => format!("@{revision}"),
            KvOutput::CompareFailed => "compare failed".to_string(),
            KvOutput::Deleted { existed } => format!("existed={existed}"),
            KvOutput::Unknown => "unknown".to_string(),
        };
        let _ = write!(text, "\n  [{}, {ret}] client {}: {input} -> {output}", op.call, op.client);
    }
    if sorted.len() > listed_ops_max {
        let _ = write!(text, "\n  ... and {} more", sorted.len() - listed_ops_max);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn op(input: KvInput, call: u64, ret: Option<u64>, output: KvOutput) -> KvOperation {
        KvOperation { key: 0, client: call, input, call, output, return_time: ret }
    }

    fn get(call: u64, ret: u64, got: Option<(u64, u64)>) -> KvOperation {
        op(KvInput::Get, call, Some(ret), KvOutput::Got(got))
    }

    fn put(call: u64, ret: u64, value: u64, revision: u64) -> KvOperation {
        op(KvInput::Put { value }, call, Some(ret), KvOutput::Put { revision })
    }

    fn cas(call: u64, ret: u64, expected: u64, value: u64, output: KvOutput) -> KvOperation {
        let input = KvInput::CompareAndPut { expected_mod_revision: expected, value };
        op(input, call, Some(ret), output)
    }

    fn del(call: u64, ret: u64, existed: bool) -> KvOperation {
        op(KvInput::Delete, call, Some(ret), KvOutput::Deleted { existed })
    }

    fn unknown(input: KvInput, call: u64, ret: Option<u64>) -> KvOperation {
        op(input, call, ret, KvOutput::Unknown)
    }

    fn ok(history: &[&KvOperation]) -> bool {
        let history: Vec<KvOperation> = history.iter().map(|&op| op.clone()).collect();
        check_kv_history(&history).is_ok()
    }

    #[test]
    fn sequential_valid_history() {
        let history = [
            get(0, 1, None),
            del(2, 3, false),
            put(4, 5, 1, 3),
            get(6, 7, Some((1, 3))),
            cas(8, 9, 3, 2, KvOutput::Put { revision: 4 }),
            cas(10, 11, 3, 9, KvOutput::CompareFailed),
            get(12, 13, Some((2, 4))),
            del(14, 15, true),
            get(16, 17, None),
            cas(18, 19, 4, 9, KvOutput::CompareFailed),
            cas(20, 21, 0, 3, KvOutput::Put { revision: 8 }),
            get(22, 23, Some((3, 8))),
        ];
        assert_eq!(check_kv_history(&history), Ok(12));
        assert_eq!(check_kv_history(&[]), Ok(0));
    }

    #[test]
    fn stale_read_after_completed_put_is_rejected() {
        assert!(!ok(&[&put(0, 1, 1, 1), &put(2, 3, 2, 2), &get(4, 5, Some((1, 1)))]));
    }

    #[test]
    fn lost_write_is_rejected() {
        assert!(!ok(&[&put(0, 1, 1, 3), &get(2, 3, None)]));
        assert!(!ok(&[&put(0, 1, 1, 3), &del(2, 3, false)]));
    }

    #[test]
    fn wrong_compare_outcomes_are_rejected() {
        let first = put(0, 1, 1, 3);
        let succeeded = KvOutput::Put { revision: 4 };
        assert!(!ok(&[&first, &cas(2, 3, 2, 5, succeeded.clone())]));
        assert!(!ok(&[&first, &cas(2, 3, 0, 5, succeeded.clone())]));
        assert!(!ok(&[&cas(2, 3, 1, 5, succeeded)]));
        assert!(!ok(&[&first, &cas(2, 3, 3, 5, KvOutput::CompareFailed)]));
        assert!(!ok(&[&cas(2, 3, 0, 5, KvOutput::CompareFailed)]));
        // The new revision must exceed the compared one.
        assert!(!ok(&[&first, &cas(2, 3, 3, 5, KvOutput::Put { revision: 3 })]));
    }

    #[test]
    fn revisions_going_backwards_are_rejected() {
        let first = put(0, 1, 1, 5);
        assert!(!ok(&[&first, &put(2, 3, 2, 4)]));
        assert!(!ok(&[&first, &put(2, 3, 2, 5)]));
        assert!(!ok(&[&first, &get(2, 3, Some((1, 5))), &get(4, 5, Some((1, 6)))]));
        // A delete keeps the floor: the next put must still exceed the old revision.
        assert!(!ok(&[&first, &del(2, 3, true), &put(4, 5, 2, 3)]));
        assert!(ok(&[&first, &del(2, 3, true), &put(4, 5, 2, 7)]));
        assert!(!ok(&[&put(0, 1, 1, 0)]));
    }

    #[test]
    fn overlapping_ops_valid_in_only_one_order() {
        // The get overlaps the put and saw it: the put went first.
        assert!(ok(&[&put(0, 10, 1, 3), &get(1, 9, Some((1, 3)))]));
        // Two overlapping puts: revisions order them, so a later get must see the second.
        let (a, b) = (put(0, 10, 1, 3), put(1, 9, 2, 4));
        assert!(ok(&[&a, &b, &get(11, 12, Some((2, 4)))]));
        assert!(!ok(&[&a, &b, &get(11, 12, Some((1, 3)))]));
        // Reads during the puts may see the first value, then the second, not the reverse.
        let (first, second) = (get(2, 3, Some((1, 3))), get(4, 5, Some((2, 4))));
        assert!(ok(&[&a, &b, &first, &second]));
        let (first, second) = (get(2, 3, Some((2, 4))), get(4, 5, Some((1, 3))));
        assert!(!ok(&[&a, &b, &first, &second]));
    }

    #[test]
    fn unknown_put_that_took_effect_pins_its_revision_when_observed() {
        let (first, blind) = (put(0, 1, 1, 2), unknown(KvInput::Put { value: 2 }, 3, None));
        let seen = get(10, 11, Some((2, 7)));
        assert!(ok(&[&first, &blind, &seen]));
        // Once pinned, the revision cannot change without a write.
        assert!(!ok(&[&first, &blind, &seen, &get(12, 13, Some((2, 8)))]));
        // The unobserved revision still had to exceed the previous one.
        assert!(!ok(&[&first, &blind, &get(10, 11, Some((2, 2)))]));
        // A put after it must exceed the revision it pinned.
        assert!(!ok(&[&first, &blind, &seen, &put(12, 13, 3, 6)]));
    }

    #[test]
    fn unknown_put_that_did_not_take_effect() {
        let first = put(0, 1, 1, 2);
        let (old, new) = (get(10, 11, Some((1, 2))), get(12, 13, Some((2, 9))));
        // Returning at infinity, it may take effect after the first get.
        let late = unknown(KvInput::Put { value: 2 }, 3, None);
        assert!(ok(&[&first, &late, &old]));
        assert!(ok(&[&first, &late, &old, &new]));
        // Given up at 5, it took effect before then or never.
        let bounded = unknown(KvInput::Put { value: 2 }, 3, Some(5));
        assert!(ok(&[&first, &bounded, &old]));
        assert!(!ok(&[&first, &bounded, &old, &new]));
    }

    #[test]
    fn unknown_compare_and_put() {
        let first = put(0, 1, 1, 2);
        let hit = KvInput::CompareAndPut { expected_mod_revision: 2, value: 5 };
        let miss = KvInput::CompareAndPut { expected_mod_revision: 7, value: 5 };
        let (hit, miss) = (unknown(hit, 3, Some(4)), unknown(miss, 3, Some(4)));
        let seen = get(5, 6, Some((5, 9)));
        assert!(ok(&[&first, &hit, &seen]));
        assert!(ok(&[&first, &hit, &seen, &cas(7, 8, 9, 6, KvOutput::Put { revision: 10 })]));
        assert!(!ok(&[&first, &miss, &seen]));
        assert!(ok(&[&first, &miss, &get(5, 6, Some((1, 2)))]));
    }

    #[test]
    fn compares_narrow_an_unpinned_revision() {
        let blind = unknown(KvInput::Put { value: 1 }, 0, Some(1));
        let failed = cas(2, 3, 5, 9, KvOutput::CompareFailed);
        assert!(!ok(&[&blind, &failed, &get(4, 5, Some((1, 5)))]));
        assert!(ok(&[&blind, &failed, &get(4, 5, Some((1, 6)))]));
        // A compare that succeeded pins the revision it expected.
        let pinned = cas(2, 3, 5, 9, KvOutput::Put { revision: 6 });
        assert!(ok(&[&blind, &pinned, &get(4, 5, Some((9, 6)))]));
        assert!(!ok(&[&blind, &failed, &cas(4, 5, 5, 9, KvOutput::Put { revision: 6 })]));
        // Deleting an unpinned key keeps its least possible revision as the floor.
        let deleted = del(2, 3, true);
        assert!(!ok(&[&blind, &deleted, &put(4, 5, 2, 1)]));
        assert!(ok(&[&blind, &deleted, &put(4, 5, 2, 2)]));
    }

    #[test]
    fn unknown_get_and_delete() {
        let first = put(0, 1, 1, 2);
        let (old, gone) = (get(4, 5, Some((1, 2))), get(4, 5, None));
        let blind_get = unknown(KvInput::Get, 2, None);
        assert_eq!(check_kv_history(&[first.clone(), blind_get, old.clone()]), Ok(3));
        let blind = unknown(KvInput::Delete, 2, Some(3));
        assert!(ok(&[&first, &blind, &gone]));
        assert!(ok(&[&first, &blind, &old]));
        assert!(!ok(&[&first, &blind, &gone, &get(6, 7, Some((1, 2)))]));
        assert!(!ok(&[&first, &blind, &put(4, 5, 3, 2)]));
    }

    #[test]
    fn step_is_deterministic_over_possible_states() {
        let init = KvModel.init();
        let blind = KvModel.step(&init, &KvInput::Put { value: 4 }, &KvOutput::Unknown);
        let expected = KvStates(vec![
            KeyState::Absent { floor: 0 },
            KeyState::Unpinned { value: 4, floor: 0, excluded: vec![] },
        ]);
        assert_eq!(blind.as_ref(), Some(&expected));
        assert_eq!(blind, KvModel.step(&init, &KvInput::Put { value: 4 }, &KvOutput::Unknown));
        let seen = KvOutput::Got(Some((4, 3)));
        let pinned = KvModel.step(&expected, &KvInput::Get, &seen);
        assert_eq!(pinned, Some(KvStates(vec![KeyState::Known { value: 4, revision: 3 }])));
        assert_eq!(KvModel.step(&init, &KvInput::Get, &KvOutput::Put { revision: 1 }), None);
    }

    #[test]
    fn partitions_by_key_and_names_the_failing_key() {
        let on = |key: u64, mut op: KvOperation| {
            op.key = key;
            op
        };
        let history = [
            on(1, put(0, 10, 1, 3)),
            on(2, put(1, 2, 2, 4)),
            on(1, get(11, 12, Some((1, 3)))),
            on(2, get(3, 4, Some((2, 4)))),
        ];
        assert_eq!(check_kv_history(&history), Ok(4));
        let mut broken = history.to_vec();
        broken.push(on(2, get(5, 6, None)));
        let error = check_kv_history(&broken).expect_err("key 2 lost its write");
        assert!(error.starts_with("key 2 is not linearizable"), "{error}");
        assert!(error.contains("[1, 2] client 1: put 2 -> @4"), "{error}");
        assert!(error.contains("[5, 6] client 5: get -> none"), "{error}");
        assert!(!error.contains("put 1"), "{error}");
    }

    /// One generated step: key, client, kind, compare choice, stretch before and after the
    /// linearization point, and fate (0..4: unknown outcome, else acknowledged).
    type Step = (u64, u64, u8, u8, u64, u64, u8);

    fn arbitrary_step() -> impl Strategy<Value = Step> {
        (0..3u64, 0..5u64, 0..4u8, 0..4u8, 0..300u64, 0..300u64, 0..32u8)
    }

    /// A real in-memory KV: per key (value, mod_revision), a global revision counter, and
    /// every revision each key has had.
    #[derive(Default)]
    struct RealKv {
        revision: u64,
        data: HashMap<u64, (u64, u64)>,
        past: HashMap<u64, Vec<u64>>,
    }

    impl RealKv {
        fn input(&self, index: usize, key: u64, kind: u8, choice: u8) -> KvInput {
            let value = index as u64 + 1;
            let current = self.data.get(&key).map_or(0, |&(_, revision)| revision);
            let earlier = self.past.get(&key).and_then(|revs| revs.first()).copied().unwrap_or(1);
            let expected_mod_revision = [current, 0, earlier, self.revision + 1][choice as usize];
            match kind {
                0 => KvInput::Get,
                1 => KvInput::Put { value },
                2 => KvInput::CompareAndPut { expected_mod_revision, value },
                _ => KvInput::Delete,
            }
        }

        fn write(&mut self, key: u64, value: u64) -> u64 {
            self.revision += 1;
            self.data.insert(key, (value, self.revision));
            self.past.entry(key).or_default().push(self.revision);
            self.revision
        }

        fn apply(&mut self, key: u64, input: &KvInput) -> KvOutput {
            let current = self.data.get(&key).copied();
            match *input {
                KvInput::Get => KvOutput::Got(current),
                KvInput::Put { value } => KvOutput::Put { revision: self.write(key, value) },
                KvInput::CompareAndPut { expected_mod_revision, value } => {
                    if current.map_or(0, |(_, revision)| revision) == expected_mod_revision {
                        KvOutput::Put { revision: self.write(key, value) }
                    } else {
                        KvOutput::CompareFailed
                    }
                }
                KvInput::Delete => {
                    let existed = self.data.remove(&key).is_some();
                    self.revision += u64::from(existed);
                    KvOutput::Deleted { existed }
                }
            }
        }
    }

    /// Runs `steps` on a real KV one at a time, each at its own linearization point, and
    /// records a history whose call and return times are stretched around those points.
    fn execute(steps: &[Step]) -> Vec<KvOperation> {
        let mut kv = RealKv::default();
        let mut history = Vec::with_capacity(steps.len());
        for (index, &(key, client, kind, choice, before, after, fate)) in steps.iter().enumerate() {
            let input = kv.input(index, key, kind, choice);
            let point = 1_000 + 100 * index as u64;
            // Fates 0 to 3 time out: 0 and 1 took effect, 2 and 3 did not; odd ones never return.
            let output = match fate {
                0 | 1 => {
                    kv.apply(key, &input);
                    KvOutput::Unknown
                }
                2 | 3 => KvOutput::Unknown,
                _ => kv.apply(key, &input),
            };
            let return_time = (fate >= 4 || fate % 2 == 0).then_some(point + after);
            let call = point - before;
            history.push(KvOperation { key, client, input, call, output, return_time });
        }
        history
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn real_executions_are_linearizable(
            steps in prop::collection::vec(arbitrary_step(), 1..80),
        ) {
            let history = execute(&steps);
            prop_assert_eq!(check_kv_history(&history), Ok(history.len()));
        }

        #[test]
        fn a_read_of_a_value_never_written_is_caught(
            steps in prop::collection::vec(arbitrary_step(), 1..80),
            pick in any::<prop::sample::Index>(),
        ) {
            let mut history = execute(&steps);
            let reads: Vec<usize> = (0..history.len())
                .filter(|&i| matches!(history[i].output, KvOutput::Got(Some(_))))
                .collect();
            prop_assume!(!reads.is_empty());
            let read = reads[pick.index(reads.len())];
            if let KvOutput::Got(Some((value, _))) = &mut history[read].output {
                *value = 1 << 40; // values written are small: this one never was
            }
            prop_assert!(check_kv_history(&history).is_err());
        }
    }
}
