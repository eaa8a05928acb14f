//! A linearizability checker for histories of operations against a sequential model.
//!
//! The algorithm is the one of Wing and Gong as improved by Lowe, in the shape popularised by
//! the porcupine checker. Every operation contributes two events, its call and its return,
//! and the events are sorted by time. When a call and a return share a time stamp the call
//! sorts first, so the two operations overlap: the checker is lenient about ties. An
//! operation that never returned (its outcome is unknown) returns at infinity, after every
//! other event. A return stamped before its own call is treated as returning at the call.
//!
//! The sorted events form a doubly linked list. The search walks that list from its head. At
//! a call it asks the model whether the operation can take effect now, from the current
//! state and with the output it actually produced. If it can, and the pair (set of
//! linearized operations, resulting state) has never been reached before, the operation is
//! linearized: its call and return events are unlinked from the list, the previous state is
//! pushed on an explicit stack, and the walk restarts at the head. Otherwise the walk moves
//! on to the next event. Reaching a return event means that operation's deadline has come
//! and no remaining candidate could be linearized before it, so the search backtracks: it
//! pops the most recently linearized operation, restores its state, relinks its two events
//! in their old places and resumes the walk just after its call. An empty list means every
//! operation was linearized, so the history is linearizable; needing to backtrack with an
//! empty stack means every order has been tried, so it is not.
//!
//! Invariants the search keeps:
//! - The list holds exactly the events of operations not on the stack, in time order, and
//!   the operations on the stack, bottom to top, form a valid sequential execution whose
//!   last state is the current state.
//! - Events are unlinked and relinked in strict stack order, so a relinked event's stored
//!   neighbours are exactly its neighbours again (the "dancing links" argument).
//! - The bitset of linearized operations grows by one bit per push and shrinks by the same
//!   bit per pop, so it always names the operations on the stack.
//! - The cache holds every (bitset, state) pair ever pushed. The set of remaining operations
//!   and the model state determine whether a pair can be completed, so meeting a cached pair
//!   again can only repeat work already done, and that branch is pruned.
//!
//! Backtracking uses a heap-allocated stack rather than recursion, so histories of any
//! depth are safe. The cache costs one bitset per explored node, quadratic memory on long
//! sequential histories; partition histories (per key, say) to keep each search small.

use std::collections::HashSet;
use std::fmt::Debug;
use std::hash::Hash;

/// A sequential specification: a state machine whose steps are checked against outputs.
pub trait Model {
    type State: Clone + Eq + Hash + Debug;
    type Input: Debug;
    type Output: Debug;
    fn init(&self) -> Self::State;
    /// The state after applying `input` that produced `output`, or None when
    /// that output is impossible from `state`.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: &Self::Output,
    ) -> Option<Self::State>;
}

/// One operation of a history: who issued it, what it asked, what it got and when.
#[derive(Clone, Debug)]
pub struct Operation<I, O> {
    pub client: u64,
    pub input: I,
    /// Time of invocation.
    pub call: u64,
    pub output: O,
    /// None: never returned (timed out, outcome unknown) = returns at infinity.
    pub return_time: Option<u64>,
}

/// The outcome of a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// `longest_prefix` is the largest number of operations the search managed to linearize
    /// together in one sequential order; `operations` is the size of the history.
    NotLinearizable {
        longest_prefix: usize,
        operations: usize,
    },
}

/// Checks whether `history` is linearizable with respect to `model`. Never gives up.
pub fn check<M: Model>(model: &M, history: &[Operation<M::Input, M::Output>]) -> Verdict {
    Search::new(model, history).run(None).expect("a search without a step budget always finishes")
}

/// Like [`check`], but returns None once the search has taken more than `max_steps` steps
/// (one step is one visit to an event of the list: a step attempt or a backtrack).
pub fn check_with_budget<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    max_steps: u64,
) -> Option<Verdict> {
    Search::new(model, history).run(Some(max_steps))
}

/// A fixed-size set of operation indices, one bit each.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Bitset {
    words: Vec<u64>,
}

impl Bitset {
    fn new(bits: usize) -> Self {
        Bitset { words: vec![0; bits.div_ceil(64)] }
    }

    fn set(&mut self, bit: usize) {
        self.words[bit / 64] |= 1 << (bit % 64);
    }

    fn clear(&mut self, bit: usize) {
        self.words[bit / 64] &= !(1 << (bit % 64));
    }

    #[cfg(test)]
    fn contains(&self, bit: usize) -> bool {
        self.words[bit / 64] & (1 << (bit % 64)) != 0
    }

    #[cfg(test)]
    fn count(&self) -> usize {
        self.words.iter().map(|word| word.count_ones() as usize).sum()
    }
}

/// One event in the doubly linked list. Node 0 is the head sentinel.
#[derive(Clone, Debug)]
struct Node {
    /// Index of the operation in the history (unused for the sentinel).
    op: usize,
    /// For a call event, the node of its matching return event; None for a return.
    ret: Option<usize>,
    prev: usize,
    next: Option<usize>,
}

/// The events of a history, sorted by time, as a doubly linked list over a vector.
struct EventList {
    nodes: Vec<Node>,
}

impl EventList {
    fn new<I, O>(history: &[Operation<I, O>]) -> Self {
        // Sort key: (returns at infinity, time, 0 for a call / 1 for a return, operation).
        let mut events: Vec<(bool, u64, u8, usize)> = Vec::with_capacity(2 * history.len());
        for (index, op) in history.iter().enumerate() {
            events.push((false, op.call, 0, index));
            match op.return_time {
                Some(time) => events.push((false, time.max(op.call), 1, index)),
                None => events.push((true, 0, 1, index)),
            }
        }
        events.sort_unstable();
        let sentinel = Node { op: usize::MAX, ret: None, prev: 0, next: None };
        let mut nodes = vec![sentinel; events.len() + 1];
        let mut return_node = vec![0; history.len()];
        for (position, &(_, _, kind, op)) in events.iter().enumerate() {
            let index = position + 1;
            let next = (index < events.len()).then_some(index + 1);
            nodes[index] = Node { op, ret: None, prev: index - 1, next };
            if kind == 1 {
                return_node[op] = index;
            }
        }
        nodes[0].next = (!events.is_empty()).then_some(1);
        for (position, &(_, _, kind, op)) in events.iter().enumerate() {
            if kind == 0 {
                nodes[position + 1].ret = Some(return_node[op]);
            }
        }
        EventList { nodes }
    }

    fn first(&self) -> Option<usize> {
        self.nodes[0].next
    }

    fn next(&self, node: usize) -> Option<usize> {
        self.nodes[node].next
    }

    fn unlink(&mut self, node: usize) {
        let Node { prev, next, .. } = self.nodes[node];
        self.nodes[prev].next = next;
        if let Some(next) = next {
            self.nodes[next].prev = prev;
        }
    }

    fn relink(&mut self, node: usize) {
        let Node { prev, next, .. } = self.nodes[node];
        self.nodes[prev].next = Some(node);
        if let Some(next) = next {
            self.nodes[next].prev = node;
        }
    }

    /// Removes a call event and its return event from the list.
    fn lift(&mut self, call: usize, ret: usize) {
        self.unlink(call);
        self.unlink(ret);
    }

    /// Undoes the matching [`EventList::lift`]; lifts must be undone in reverse order.
    fn unlift(&mut self, call: usize, ret: usize) {
        self.relink(ret);
        self.relink(call);
    }
}

/// The state of one depth-first search over the linearizations of a history.
struct Search<'a, M: Model> {
    model: &'a M,
    history: &'a [Operation<M::Input, M::Output>],
    list: EventList,
    linearized: Bitset,
    state: M::State,
    /// Every (linearized set, state) pair ever pushed.
    cache: HashSet<(Bitset, M::State)>,
    /// The linearized calls, oldest first, each with the state from before it.
    stack: Vec<(usize, M::State)>,
    longest: usize,
}

impl<'a, M: Model> Search<'a, M> {
    fn new(model: &'a M, history: &'a [Operation<M::Input, M::Output>]) -> Self {
        Search {
            model,
            history,
            list: EventList::new(history),
            linearized: Bitset::new(history.len()),
            state: model.init(),
            cache: HashSet::new(),
            stack: Vec::new(),
            longest: 0,
        }
    }

    /// Runs the search to a verdict, or to None once more than `step_budget` steps were taken.
    fn run(mut self, step_budget: Option<u64>) -> Option<Verdict> {
        let mut cursor = self.list.first();
        let mut steps: u64 = 0;
        while let Some(node) = cursor {
            steps += 1;
            if step_budget.is_some_and(|budget| steps > budget) {
                return None;
            }
            let ret = self.list.nodes[node].ret;
            cursor = match ret {
                Some(ret) if self.try_linearize(node, ret) => self.list.first(),
                Some(_) => self.list.next(node),
                None => match self.backtrack() {
                    Some(call) => self.list.next(call),
                    None => {
                        let operations = self.history.len();
                        let longest_prefix = self.longest;
                        return Some(Verdict::NotLinearizable { longest_prefix, operations });
                    }
                },
            };
        }
        Some(Verdict::Linearizable)
    }

    /// Linearizes the operation of the call event `call` now, if the model allows it and the
    /// resulting (linearized set, state) pair is new. Returns whether it did.
    fn try_linearize(&mut self, call: usize, ret: usize) -> bool {
        let op_index = self.list.nodes[call].op;
        let op = &self.history[op_index];
        let Some(next_state) = self.model.step(&self.state, &op.input, &op.output) else {
            return false;
        };
        let mut next_set = self.linearized.clone();
        next_set.set(op_index);
        if !self.cache.insert((next_set.clone(), next_state.clone())) {
            return false;
        }
        let previous = std::mem::replace(&mut self.state, next_state);
        self.stack.push((call, previous));
        self.linearized = next_set;
        self.list.lift(call, ret);
        self.longest = self.longest.max(self.stack.len());
        true
    }

    /// Undoes the most recent linearization and returns its call event, or None when
    /// nothing is left to undo.
    fn backtrack(&mut self) -> Option<usize> {
        let (call, previous) = self.stack.pop()?;
        let node = &self.list.nodes[call];
        let (op_index, ret) = (node.op, node.ret.expect("stacked nodes are call events"));
        self.state = previous;
        self.linearized.clear(op_index);
        self.list.unlift(call, ret);
        Some(call)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A read/write register holding a u64, initially 0.
    struct Register;

    #[derive(Clone, Copy, Debug)]
    enum Reg {
        Read,
        Write(u64),
    }

    impl Model for Register {
        type State = u64;
        type Input = Reg;
        type Output = u64; // the value read; ignored for writes
        fn init(&self) -> u64 {
            0
        }
        fn step(&self, state: &u64, input: &Reg, output: &u64) -> Option<u64> {
            match *input {
                Reg::Write(value) => Some(value),
                Reg::Read => (*output == *state).then_some(*state),
            }
        }
    }

    fn op(input: Reg, output: u64, call: u64, ret: Option<u64>) -> Operation<Reg, u64> {
        Operation { client: 0, input, call, output, return_time: ret }
    }

    fn w(value: u64, call: u64, ret: u64) -> Operation<Reg, u64> {
        op(Reg::Write(value), 0, call, Some(ret))
    }

    fn r(value: u64, call: u64, ret: u64) -> Operation<Reg, u64> {
        op(Reg::Read, value, call, Some(ret))
    }

    fn linearizable(history: &[Operation<Reg, u64>]) -> bool {
        check(&Register, history) == Verdict::Linearizable
    }

    #[test]
    fn bitset_sets_clears_and_counts() {
        let mut set = Bitset::new(130);
        assert_eq!(set.words.len(), 3);
        for bit in [0, 63, 64, 129] {
            set.set(bit);
        }
        assert!(set.contains(63) && set.contains(64) && !set.contains(65));
        assert_eq!(set.count(), 4);
        set.clear(64);
        assert!(!set.contains(64));
        assert_eq!(set.count(), 3);
        assert_eq!(Bitset::new(0).words.len(), 0);
    }

    #[test]
    fn empty_history_is_linearizable() {
        assert!(linearizable(&[]));
    }

    #[test]
    fn sequential_valid_and_stale_read() {
        assert!(linearizable(&[w(1, 0, 1), r(1, 2, 3), w(2, 4, 5), r(2, 6, 7)]));
        let stale = [w(1, 0, 1), w(2, 2, 3), r(1, 4, 5)];
        let verdict = check(&Register, &stale);
        assert_eq!(verdict, Verdict::NotLinearizable { longest_prefix: 2, operations: 3 });
    }

    #[test]
    fn overlapping_ops_valid_in_only_one_order() {
        // The read overlaps both writes; it saw 1, so write(1) went last.
        assert!(linearizable(&[w(1, 0, 10), w(2, 1, 9), r(1, 2, 20)]));
        // A later read sees 2: write(2) must follow write(1), but the first read saw 1 after
        // both writes had returned.
        assert!(!linearizable(&[w(1, 0, 10), w(2, 1, 9), r(1, 11, 12), r(2, 13, 14)]));
        // A read concurrent with a write may see either value, but not the new one and then
        // the old one in sequence.
        assert!(linearizable(&[w(1, 0, 10), r(1, 1, 2), r(1, 3, 4)]));
        assert!(!linearizable(&[w(1, 0, 10), r(1, 1, 2), r(0, 3, 4)]));
    }

    #[test]
    fn equal_times_overlap_but_strictly_earlier_returns_precede() {
        // The write returns at 5 and the read is called at 5: they overlap.
        assert!(linearizable(&[w(1, 0, 5), r(0, 5, 6)]));
        // Returned at 4, strictly before the read's call: the read must see it.
        assert!(!linearizable(&[w(1, 0, 4), r(0, 5, 6)]));
    }

    #[test]
    fn return_before_call_counts_as_return_at_call() {
        let backwards = op(Reg::Write(1), 0, 10, Some(3));
        assert!(linearizable(&[backwards.clone(), r(0, 10, 11)]));
        assert!(!linearizable(&[backwards, r(0, 11, 12)]));
    }

    #[test]
    fn never_returned_ops_may_take_effect_late_or_never_be_seen() {
        let pending = op(Reg::Write(7), 0, 1, None);
        assert!(linearizable(&[pending.clone(), r(0, 2, 3), r(7, 100, 101)]));
        assert!(linearizable(&[pending.clone(), r(0, 2, 3), r(0, 100, 101)]));
        assert!(!linearizable(&[pending.clone(), r(7, 2, 3), r(0, 100, 101)]));
        // A pending read must still be explained by some state after its call.
        assert!(!linearizable(&[w(1, 0, 1), op(Reg::Read, 5, 2, None)]));
    }

    #[test]
    fn deep_sequential_history_does_not_overflow_the_stack() {
        let history: Vec<_> = (0..5_000u64)
            .flat_map(|i| [w(i, 4 * i, 4 * i + 1), r(i, 4 * i + 2, 4 * i + 3)])
            .collect();
        assert!(linearizable(&history));
        let mut broken = history;
        broken.last_mut().expect("non-empty").output = 12_345;
        let verdict = check(&Register, &broken);
        assert_eq!(verdict, Verdict::NotLinearizable { longest_prefix: 9_999, operations: 10_000 });
    }

    #[test]
    fn step_budget_gives_up_or_finishes() {
        let history: Vec<_> = (0..50u64).map(|i| w(i, 2 * i, 2 * i + 1)).collect();
        assert_eq!(check_with_budget(&Register, &history, 10), None);
        assert_eq!(check_with_budget(&Register, &history, 50), Some(Verdict::Linearizable));
        assert_eq!(check_with_budget(&Register, &[], 0), Some(Verdict::Linearizable));
    }

    /// Tries every order of `history` that respects real time: exponential, tiny inputs only.
    fn brute_force(history: &[Operation<Reg, u64>]) -> bool {
        fn precedes(a: &Operation<Reg, u64>, b: &Operation<Reg, u64>) -> bool {
            a.return_time.is_some_and(|ret| ret.max(a.call) < b.call)
        }
        fn extend(history: &[Operation<Reg, u64>], used: &mut Vec<bool>, state: u64) -> bool {
            if used.iter().all(|&u| u) {
                return true;
            }
            for i in 0..history.len() {
                let blocked =
                    (0..history.len()).any(|j| !used[j] && precedes(&history[j], &history[i]));
                if used[i] || blocked {
                    continue;
                }
                if let Some(next) = Register.step(&state, &history[i].input, &history[i].output) {
                    used[i] = true;
                    let found = extend(history, used, next);
                    used[i] = false;
                    if found {
                        return true;
                    }
                }
            }
            false
        }
        extend(history, &mut vec![false; history.len()], 0)
    }

    fn arbitrary_op() -> impl Strategy<Value = Operation<Reg, u64>> {
        (any::<bool>(), 0..3u64, 0..12u64, 0..6u64, 0..8u8).prop_map(
            |(write, value, call, length, pending)| {
                let input = if write { Reg::Write(value + 1) } else { Reg::Read };
                let ret = (pending != 0).then_some(call + length);
                op(input, if write { 0 } else { value }, call, ret)
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn agrees_with_brute_force(history in prop::collection::vec(arbitrary_op(), 0..7)) {
            let expected = brute_force(&history);
            prop_assert_eq!(linearizable(&history), expected, "history: {:?}", history);
        }

        #[test]
        fn stretched_sequential_executions_are_linearizable(
            ops in prop::collection::vec((any::<bool>(), 0..40u64, 0..40u64), 1..60),
        ) {
            let mut state = 0;
            let mut history = Vec::new();
            for (i, &(write, before, after)) in ops.iter().enumerate() {
                let point = 100 + 10 * i as u64;
                let (input, output) = if write {
                    state = i as u64 + 1;
                    (Reg::Write(state), 0)
                } else {
                    (Reg::Read, state)
                };
                history.push(op(input, output, point - before, Some(point + after)));
            }
            prop_assert!(linearizable(&history));
        }
    }
}
