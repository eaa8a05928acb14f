//! The key interval of a request, in etcd's three spellings:
//! `range_end` empty → the single key; `range_end` = "\0" → every key ≥ `key`
//! (and `key` = "\0" too → every key); otherwise the half-open [key, range_end).

use std::ops::Bound;

use bytes::Bytes;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Span {
    Single(Bytes),
    /// [start, end); `end` None means unbounded.
    Interval(Bytes, Option<Bytes>),
}

impl Span {
    pub fn new(key: &Bytes, range_end: &Bytes) -> Span {
        if range_end.is_empty() {
            Span::Single(key.clone())
        } else if range_end.as_ref() == [0u8] {
            Span::Interval(key.clone(), None)
        } else {
            Span::Interval(key.clone(), Some(range_end.clone()))
        }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        match self {
            Span::Single(k) => k.as_ref() == key,
            Span::Interval(start, end) => {
                start.as_ref() <= key && end.as_ref().is_none_or(|e| key < e.as_ref())
            }
        }
    }

    /// Whether the span can hold no key at all (start ≥ end).
    pub fn is_empty(&self) -> bool {
        matches!(self, Span::Interval(start, Some(end)) if start >= end)
    }

    pub fn intersects(&self, other: &Span) -> bool {
        match (self, other) {
            (Span::Single(k), s) | (s, Span::Single(k)) => s.contains(k),
            (Span::Interval(a0, a1), Span::Interval(b0, b1)) => {
                if self.is_empty() || other.is_empty() {
                    return false;
                }
                let a_before_b_ends = b1.as_ref().is_none_or(|b1| a0 < b1);
                let b_before_a_ends = a1.as_ref().is_none_or(|a1| b0 < a1);
                a_before_b_ends && b_before_a_ends
            }
        }
    }

    /// Bounds over keys, for ordered-map range queries.
    pub fn bounds(&self) -> (Bound<Bytes>, Bound<Bytes>) {
        match self {
            Span::Single(k) => (Bound::Included(k.clone()), Bound::Included(k.clone())),
            Span::Interval(start, None) => (Bound::Included(start.clone()), Bound::Unbounded),
            Span::Interval(start, Some(end)) if start >= end => {
                (Bound::Included(start.clone()), Bound::Included(start.clone()))
            }
            Span::Interval(start, Some(end)) => {
                (Bound::Included(start.clone()), Bound::Excluded(end.clone()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(key: &str, end: &str) -> Span {
        Span::new(&Bytes::copy_from_slice(key.as_bytes()), &Bytes::copy_from_slice(end.as_bytes()))
    }

    #[test]
    fn etcd_spellings() {
        assert!(s("a", "").contains(b"a"));
        assert!(!s("a", "").contains(b"ab"));
        assert!(s("a", "c").contains(b"b"));
        assert!(!s("a", "c").contains(b"c"));
        assert!(s("a", "\0").contains(b"zzz"));
        assert!(!s("b", "\0").contains(b"a"));
        assert!(s("\0", "\0").contains(b"\x01"));
        assert!(s("b", "a").is_empty());
        assert!(!s("b", "a").contains(b"b"));
    }

    #[test]
    fn intersections() {
        assert!(s("a", "c").intersects(&s("b", "")));
        assert!(!s("a", "c").intersects(&s("c", "")));
        assert!(s("a", "c").intersects(&s("b", "d")));
        assert!(!s("a", "b").intersects(&s("b", "c")));
        assert!(s("a", "\0").intersects(&s("x", "y")));
        assert!(!s("b", "a").intersects(&s("a", "\0")));
    }
}
