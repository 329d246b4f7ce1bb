//! Loss, duplicate and order detection for one gap-free numbered stream.
//!
//! A stream is either a ringcast room's `seq` as one member sees it, or one
//! publisher's counter as one member sees it (for servers without sequence
//! numbers). Numbers arrive in order when all is well. A jump forward leaves
//! a *gap* (possibly lost, possibly only late); a number inside a gap fills
//! it and counts as *reordered*; a number that is neither new nor a gap is a
//! *duplicate*. Gaps are kept as ranges, so a long outage costs one entry.

/// Per-stream state. `next` is the number expected next.
#[derive(Debug, Clone, Default)]
pub struct SeqTracker {
    next: u64,
    /// Missing numbers as half-open ranges `[start, end)`, oldest first.
    gaps: Vec<(u64, u64)>,
    /// Numbers accepted for the first time.
    pub unique: u64,
    /// Numbers seen again.
    pub duplicated: u64,
    /// Numbers that arrived after a later one.
    pub reordered: u64,
}

/// At most this many gap ranges are kept per stream; older ones are given up as lost.
const MAX_GAPS: usize = 64;

impl SeqTracker {
    /// A tracker expecting `first` next.
    pub fn starting_at(first: u64) -> Self {
        SeqTracker {
            next: first,
            ..Default::default()
        }
    }

    /// The number expected next.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Records one received number.
    #[inline]
    pub fn observe(&mut self, n: u64) {
        if n == self.next {
            self.next += 1;
            self.unique += 1;
        } else if n > self.next {
            if self.gaps.len() == MAX_GAPS {
                self.gaps.remove(0);
            }
            self.gaps.push((self.next, n));
            self.next = n + 1;
            self.unique += 1;
        } else {
            self.fill(n);
        }
    }

    #[cold]
    fn fill(&mut self, n: u64) {
        let Some(i) = self.gaps.iter().position(|&(s, e)| s <= n && n < e) else {
            self.duplicated += 1;
            return;
        };
        self.reordered += 1;
        self.unique += 1;
        let (s, e) = self.gaps[i];
        match (n == s, n + 1 == e) {
            (true, true) => {
                self.gaps.remove(i);
            }
            (true, false) => self.gaps[i].0 = n + 1,
            (false, true) => self.gaps[i].1 = n,
            (false, false) => {
                self.gaps[i].1 = n;
                self.gaps.insert(i + 1, (n + 1, e));
            }
        }
    }

    /// Numbers still missing between the first and the highest seen.
    pub fn missing(&self) -> u64 {
        self.gaps.iter().map(|&(s, e)| e - s).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seq: &[u64]) -> SeqTracker {
        let mut t = SeqTracker::starting_at(1);
        for &n in seq {
            t.observe(n);
        }
        t
    }

    #[test]
    fn in_order_stream_is_clean() {
        let t = run(&[1, 2, 3, 4, 5]);
        assert_eq!(
            (t.unique, t.duplicated, t.reordered, t.missing(), t.next()),
            (5, 0, 0, 0, 6)
        );
    }

    #[test]
    fn gap_counts_missing_until_filled() {
        let t = run(&[1, 2, 5, 6]);
        assert_eq!((t.unique, t.missing()), (4, 2));
        let t = run(&[1, 2, 5, 6, 4, 3]);
        assert_eq!(
            (t.unique, t.missing(), t.reordered, t.duplicated),
            (6, 0, 2, 0)
        );
    }

    #[test]
    fn fill_in_middle_of_gap_splits_it() {
        let t = run(&[1, 10, 5]);
        assert_eq!((t.missing(), t.reordered), (7, 1));
        let t = run(&[1, 10, 5, 2, 3, 4, 6, 7, 8, 9]);
        assert_eq!((t.missing(), t.reordered, t.unique), (0, 8, 10));
    }

    #[test]
    fn duplicates_are_not_reorders() {
        let t = run(&[1, 2, 2, 3, 1, 5, 3]);
        assert_eq!(
            (t.duplicated, t.reordered, t.unique, t.missing()),
            (3, 0, 4, 1)
        );
        // A filled gap number seen twice is a reorder then a duplicate.
        let t = run(&[1, 3, 2, 2]);
        assert_eq!((t.duplicated, t.reordered, t.unique), (1, 1, 3));
    }

    #[test]
    fn gap_list_is_bounded() {
        let mut t = SeqTracker::starting_at(0);
        for i in 0..1000u64 {
            t.observe(i * 2 + 1);
        }
        assert_eq!(t.gaps.len(), MAX_GAPS);
        assert_eq!(t.unique, 1000);
    }
}
