//! What the processor keeps per aggregate beside the domain's own state: its version and the recent
//! command ids with their outcomes. Both live in the aggregate's changelog record, so idempotency and
//! optimistic concurrency are exactly as durable as the events (DESIGN: "Both live in the state").
//!
//! Pure, like the domain: [`Tracked::decide`] says what a command does, [`Tracked::prepare`] computes
//! the aggregate after it without touching this one, and [`Tracked::commit`] keeps that. Between the
//! two the processor builds every record the command leads to; if any cannot be built, the command is
//! dropped and the aggregate is as if it never came (all or nothing).

use std::collections::VecDeque;

use crate::aggregate::{Aggregate, CONFLICT, Rejection};

/// How many command ids, for how long, and in how many bytes an aggregate remembers. A command resent
/// after it left the window is processed again, so the window must outlast the longest retry of any
/// producer. The byte bound keeps the changelog record of an aggregate under the topic's message size
/// whatever the ids and reasons are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupWindow {
    /// Most command ids kept per aggregate.
    pub max_commands: usize,
    /// Longest a command id is kept, in milliseconds.
    pub max_age_ms: i64,
    /// Most bytes of remembered commands per aggregate (see [`Seen::weight`]); the newest is always kept.
    pub max_bytes: usize,
}

impl Default for DedupWindow {
    fn default() -> Self {
        Self {
            max_commands: 100,
            max_age_ms: 7 * 24 * 3600 * 1000,
            max_bytes: 64 * 1024,
        }
    }
}

/// What became of a command: the answer a resend gets again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Its events were recorded; the aggregate's version after them.
    Accepted {
        /// Version after the command's events.
        version: i64,
    },
    /// A rule (or a version conflict) said no.
    Rejected {
        /// Machine-readable code.
        code: String,
        /// For a person.
        reason: String,
    },
}

/// A command id remembered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The command id.
    pub command_id: String,
    /// When it was processed (the command record's timestamp), ms since the epoch.
    pub at_ms: i64,
    /// Its outcome.
    pub outcome: Outcome,
}

impl Seen {
    /// What it costs in the window's byte bound: its strings plus a fixed overhead for the numbers.
    pub fn weight(&self) -> usize {
        let strings = match &self.outcome {
            Outcome::Accepted { .. } => 0,
            Outcome::Rejected { code, reason } => code.len() + reason.len(),
        };
        self.command_id.len() + strings + 24
    }
}

/// What a command does to a tracked aggregate.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision<E> {
    /// Seen before: answer its first outcome again, emit nothing.
    Duplicate(Outcome),
    /// Record these events; the aggregate reaches `version`.
    Accept {
        /// The events, in order.
        events: Vec<E>,
        /// Version after them.
        version: i64,
    },
    /// Rejected: nothing is recorded but the outcome.
    Reject(Rejection),
}

/// An aggregate with its version and recent commands.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tracked<A> {
    /// The domain's state.
    pub aggregate: A,
    /// Number of events recorded so far (0: none).
    pub version: i64,
    /// Recent command ids, oldest first.
    pub recent: VecDeque<Seen>,
}

impl<A: Aggregate> Tracked<A> {
    /// Decide what `command` (with its id and optional expected version) does.
    pub fn decide(
        &self,
        command_id: &str,
        expected_version: Option<i64>,
        command: &A::Command,
    ) -> Decision<A::Event> {
        if let Some(seen) = self
            .recent
            .iter()
            .rev()
            .find(|s| s.command_id == command_id)
        {
            return Decision::Duplicate(seen.outcome.clone());
        }
        if let Some(expected) = expected_version
            && expected != self.version
        {
            return Decision::Reject(Rejection::new(
                CONFLICT,
                format!(
                    "expected version {expected}, but the aggregate is at version {}",
                    self.version
                ),
            ));
        }
        match self.aggregate.handle(command) {
            Ok(events) => {
                let version = self.version + i64::try_from(events.len()).unwrap_or(i64::MAX);
                Decision::Accept { events, version }
            }
            Err(rejection) => Decision::Reject(rejection),
        }
    }

    /// What `decision` makes of this aggregate, computed without changing it: the domain state after
    /// the accepted events (`None`: unchanged), the version, the command remembered and how many of the
    /// oldest remembered commands leave the window. A duplicate changes nothing (`None`). `at_ms` is the
    /// window's clock for this command; it never goes back behind the newest remembered command, so a
    /// command stamped in the past (a replay, a late producer) is not aged out by the next one.
    pub fn prepare(
        &self,
        command_id: &str,
        at_ms: i64,
        decision: &Decision<A::Event>,
        window: DedupWindow,
    ) -> Option<Next<A>> {
        let at_ms = self
            .recent
            .back()
            .map_or(at_ms, |newest| newest.at_ms.max(at_ms));
        let (aggregate, version, outcome) = match decision {
            Decision::Duplicate(_) => return None,
            Decision::Accept { events, version } => (
                Some(events.iter().fold(self.aggregate.clone(), A::apply)),
                *version,
                Outcome::Accepted { version: *version },
            ),
            Decision::Reject(r) => (
                None,
                self.version,
                Outcome::Rejected {
                    code: r.code.to_string(),
                    reason: r.reason.clone(),
                },
            ),
        };
        let seen = Seen {
            command_id: command_id.to_string(),
            at_ms,
            outcome,
        };
        // The window after `seen` joins it: the oldest leave while it is too long, too old or too big.
        let oldest_kept = at_ms.saturating_sub(window.max_age_ms);
        let mut len = self.recent.len() + 1;
        let mut bytes: usize = self.recent.iter().map(Seen::weight).sum::<usize>() + seen.weight();
        let mut evicted = 0;
        for old in &self.recent {
            if len > window.max_commands || old.at_ms < oldest_kept || bytes > window.max_bytes {
                len -= 1;
                bytes -= old.weight();
                evicted += 1;
            } else {
                break;
            }
        }
        Some(Next {
            aggregate,
            version,
            seen,
            evicted,
        })
    }

    /// The remembered commands as they will be once `next` is committed, oldest first.
    pub fn recent_after<'a>(&'a self, next: &'a Next<A>) -> impl Iterator<Item = &'a Seen> {
        self.recent
            .iter()
            .skip(next.evicted)
            .chain(std::iter::once(&next.seen))
    }

    /// Keep what [`Tracked::prepare`] computed.
    pub fn commit(&mut self, next: Next<A>) {
        if let Some(aggregate) = next.aggregate {
            self.aggregate = aggregate;
        }
        self.version = next.version;
        self.recent.drain(..next.evicted.min(self.recent.len()));
        self.recent.push_back(next.seen);
    }

    /// Prepare and commit at once (for callers with nothing to build in between).
    pub fn record(
        &mut self,
        command_id: &str,
        at_ms: i64,
        decision: &Decision<A::Event>,
        window: DedupWindow,
    ) {
        if let Some(next) = self.prepare(command_id, at_ms, decision, window) {
            self.commit(next);
        }
    }
}

/// A tracked aggregate after one command, not yet kept: see [`Tracked::prepare`].
#[derive(Debug, Clone, PartialEq)]
pub struct Next<A> {
    /// The domain state after the command's events; `None` when it has none.
    pub aggregate: Option<A>,
    /// The version after the command.
    pub version: i64,
    /// The command, remembered.
    pub seen: Seen,
    /// How many of the oldest remembered commands leave the window.
    pub evicted: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A counter that refuses to go above 3.
    #[derive(Debug, Clone, Default, PartialEq)]
    struct Counter(i64);

    impl Aggregate for Counter {
        type Command = i64;
        type Event = i64;
        const TYPE: &'static str = "counter";

        fn handle(&self, add: &i64) -> Result<Vec<i64>, Rejection> {
            if self.0 + add > 3 {
                Err(Rejection::new("too_big", "at most 3"))
            } else {
                Ok(vec![*add])
            }
        }

        fn apply(self, add: &i64) -> Self {
            Counter(self.0 + add)
        }
    }

    fn run(
        t: &mut Tracked<Counter>,
        id: &str,
        at: i64,
        expected: Option<i64>,
        add: i64,
        w: DedupWindow,
    ) -> Decision<i64> {
        let d = t.decide(id, expected, &add);
        t.record(id, at, &d, w);
        d
    }

    #[test]
    fn a_resent_command_gets_its_first_answer_and_changes_nothing() {
        let w = DedupWindow::default();
        let mut t = Tracked::<Counter>::default();
        assert_eq!(
            run(&mut t, "a", 1, None, 2, w),
            Decision::Accept {
                events: vec![2],
                version: 1
            }
        );
        assert_eq!(
            run(&mut t, "a", 2, None, 2, w),
            Decision::Duplicate(Outcome::Accepted { version: 1 })
        );
        assert_eq!((t.aggregate.0, t.version), (2, 1));

        let rejected = run(&mut t, "b", 3, None, 5, w);
        assert!(matches!(rejected, Decision::Reject(ref r) if r.code == "too_big"));
        assert_eq!(
            run(&mut t, "b", 4, None, 1, w),
            Decision::Duplicate(Outcome::Rejected {
                code: "too_big".into(),
                reason: "at most 3".into()
            }),
            "a resent rejected command is rejected again, even if it would now pass"
        );
        assert_eq!(t.version, 1);
    }

    #[test]
    fn a_stale_expected_version_is_a_conflict() {
        let w = DedupWindow::default();
        let mut t = Tracked::<Counter>::default();
        run(&mut t, "a", 1, Some(0), 1, w);
        let stale = run(&mut t, "b", 2, Some(0), 1, w);
        assert!(
            matches!(stale, Decision::Reject(ref r) if r.code == CONFLICT),
            "{stale:?}"
        );
        assert_eq!(
            run(&mut t, "c", 3, Some(1), 1, w),
            Decision::Accept {
                events: vec![1],
                version: 2
            }
        );
    }

    #[test]
    fn the_window_is_bounded_by_count_and_age() {
        let w = DedupWindow {
            max_commands: 2,
            max_age_ms: 100,
            max_bytes: 1 << 20,
        };
        let mut t = Tracked::<Counter>::default();
        run(&mut t, "a", 0, None, 0, w);
        run(&mut t, "b", 10, None, 0, w);
        run(&mut t, "c", 20, None, 0, w);
        let ids: Vec<&str> = t.recent.iter().map(|s| s.command_id.as_str()).collect();
        assert_eq!(ids, vec!["b", "c"], "count bound");
        run(&mut t, "d", 115, None, 0, w);
        let ids: Vec<&str> = t.recent.iter().map(|s| s.command_id.as_str()).collect();
        assert_eq!(ids, vec!["c", "d"], "b is older than 100 ms");
        run(&mut t, "e", 500, None, 0, w);
        let ids: Vec<&str> = t.recent.iter().map(|s| s.command_id.as_str()).collect();
        assert_eq!(ids, vec!["e"], "age bound");
        // Forgotten ids are processed again.
        assert!(matches!(t.decide("a", None, &0), Decision::Accept { .. }));
    }

    #[test]
    fn the_window_is_bounded_in_bytes_and_keeps_the_newest() {
        let w = DedupWindow {
            max_commands: 100,
            max_age_ms: 1_000,
            max_bytes: 100,
        };
        let mut t = Tracked::<Counter>::default();
        run(&mut t, "a".repeat(30).as_str(), 0, None, 0, w);
        run(&mut t, "b".repeat(30).as_str(), 1, None, 0, w);
        assert_eq!(t.recent.len(), 1, "two of 54 bytes exceed 100");
        assert!(t.recent[0].command_id.starts_with('b'));
        run(&mut t, "c".repeat(500).as_str(), 2, None, 0, w);
        assert_eq!(
            t.recent.len(),
            1,
            "the newest is kept even alone over the bound"
        );
        assert!(t.recent[0].command_id.starts_with('c'));
    }

    #[test]
    fn prepare_changes_nothing_until_commit() {
        let w = DedupWindow::default();
        let mut t = Tracked::<Counter>::default();
        run(&mut t, "a", 1, None, 1, w);
        let before = t.clone();
        let decision = t.decide("b", None, &2);
        let next = t
            .prepare("b", 2, &decision, w)
            .unwrap_or_else(|| panic!("not a duplicate"));
        assert_eq!(t, before, "prepare leaves the aggregate as it was");
        let ids: Vec<&str> = t
            .recent_after(&next)
            .map(|s| s.command_id.as_str())
            .collect();
        assert_eq!(ids, vec!["a", "b"]);
        t.commit(next);
        assert_eq!((t.aggregate.0, t.version, t.recent.len()), (3, 2, 2));
        assert!(
            t.prepare("b", 3, &t.decide("b", None, &2), w).is_none(),
            "a duplicate"
        );
    }

    #[test]
    fn a_command_stamped_in_the_past_is_not_aged_out_by_the_next() {
        let w = DedupWindow {
            max_commands: 100,
            max_age_ms: 100,
            max_bytes: 1 << 20,
        };
        let mut t = Tracked::<Counter>::default();
        run(&mut t, "a", 1_000, None, 0, w);
        run(&mut t, "old", 0, None, 0, w);
        run(&mut t, "b", 1_050, None, 0, w);
        assert!(
            matches!(t.decide("old", None, &0), Decision::Duplicate(_)),
            "the late command is remembered at the aggregate's clock"
        );
    }
}
