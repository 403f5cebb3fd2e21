//! Replay and discard, one way for the API (one letter or all matching a filter) and the automatic
//! redrive: each letter is checked (still parked, replayable, under the loop guard), held by a lock so
//! that two operators never act on it at once, acted on, moved to its new state, and the whole action
//! recorded on the audit topic before it is answered. A dry run checks and says what would happen,
//! and changes nothing.

use std::collections::HashMap;

use causeway_kafka::KafkaConfig;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use rdkafka::producer::FutureProducer;
use serde::Serialize;

use crate::audit::{Action, Audit, Kind, Outcome};
use crate::index::{Index, Letter, Position, State, now_ms};
use crate::records::{self, Unreadable};
use causeway_kafka::parking::{Entry, Parking, park_key};

/// How long one action may hold a letter.
const LOCK_MS: u64 = 120_000;

/// What an action does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// Send back to the source.
    Replay,
    /// Give up on it.
    Discard,
}

/// What became (or would become) of one letter.
#[derive(Debug, Clone, Serialize)]
pub struct Done {
    /// The letter.
    pub letter_id: String,
    /// `replayed`, `discarded`, `would replay`, `would discard`, or `refused`.
    pub outcome: &'static str,
    /// What it means: where it went, or why it was refused.
    pub detail: String,
}

/// An action's answer.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Its id on the audit topic (absent for a dry run).
    pub action_id: Option<String>,
    /// Whether it was a dry run.
    pub dry_run: bool,
    /// Each letter.
    pub letters: Vec<Done>,
    /// Letters per outcome.
    pub counts: HashMap<&'static str, usize>,
}

/// Why an action failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum ActError {
    /// Redis failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The action was done but could not be recorded: the audit topic must be fixed.
    #[error("the action was done but its audit record could not be written: {0}")]
    Audit(String),
    /// Nothing was done: it could not be recorded.
    #[error("{0}")]
    NotRecordable(String),
}

/// The reprocessor's action metrics.
#[derive(Debug, Clone)]
pub struct Meters {
    /// Replays by group and trigger (operator, redrive).
    pub replays: IntCounterVec,
    /// Discards by group.
    pub discards: IntCounterVec,
    /// Replays refused by the loop guard, by group.
    pub loop_guard: IntCounterVec,
    /// Dead letters indexed by group and class.
    pub letters: IntCounterVec,
    /// Parked dead letters by group.
    pub depth: IntGaugeVec,
    /// Age of the oldest parked dead letter by group, seconds.
    pub oldest: IntGaugeVec,
    /// Parked records waiting behind a head (per-key order).
    pub behind: prometheus::IntGauge,
}

impl Meters {
    /// The action series of `group` shown at zero, so that dashboards see its replays, discards and
    /// refusals from the first dead letter on.
    pub fn show(&self, group: &str) {
        for trigger in ["operator", "redrive"] {
            self.replays.with_label_values(&[group, trigger]);
        }
        self.discards.with_label_values(&[group]);
        self.loop_guard.with_label_values(&[group]);
    }

    /// Registered in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        use causeway_observe::metrics::names;
        let replays = IntCounterVec::new(
            Opts::new(
                names::DLQ_REPLAYS_TOTAL,
                "Dead letters sent back to their source, by group and trigger (operator, redrive).",
            ),
            &["group", "trigger"],
        )?;
        let discards = IntCounterVec::new(
            Opts::new(
                names::DLQ_DISCARDS_TOTAL,
                "Dead letters discarded, by group.",
            ),
            &["group"],
        )?;
        let loop_guard = IntCounterVec::new(
            Opts::new(
                names::DLQ_LOOP_GUARD_TOTAL,
                "Replays refused because the record was replayed dlq.max_replays times already, by group.",
            ),
            &["group"],
        )?;
        let letters = IntCounterVec::new(
            Opts::new(
                names::DLQ_LETTERS_TOTAL,
                "Dead letters indexed, by group and error class.",
            ),
            &["group", "class"],
        )?;
        let depth = IntGaugeVec::new(
            Opts::new(
                names::DLQ_DEPTH_RECORDS,
                "Dead letters parked (neither replayed nor discarded), by group.",
            ),
            &["group"],
        )?;
        let oldest = IntGaugeVec::new(
            Opts::new(
                names::DLQ_OLDEST_AGE_SECONDS,
                "Age of the oldest parked dead letter, by group, in seconds (0 when none).",
            ),
            &["group"],
        )?;
        let behind = prometheus::IntGauge::new(
            names::DLQ_PARKED_BEHIND_RECORDS,
            "Dead letters waiting behind their key's head (per-key order), every group.",
        )?;
        registry.register(Box::new(behind.clone()))?;
        for m in [&replays, &discards, &loop_guard, &letters] {
            registry.register(Box::new(m.clone()))?;
        }
        registry.register(Box::new(depth.clone()))?;
        registry.register(Box::new(oldest.clone()))?;
        Ok(Self {
            replays,
            discards,
            loop_guard,
            letters,
            depth,
            oldest,
            behind,
        })
    }
}

/// Where actions are done.
#[derive(Clone)]
pub struct Desk {
    /// The index.
    pub index: Index,
    /// To read records back.
    pub kafka: KafkaConfig,
    /// To replay.
    pub producer: FutureProducer,
    /// To record.
    pub audit: Audit,
    /// The loop guard.
    pub max_replays: u32,
    /// Metrics.
    pub meters: Meters,
}

impl std::fmt::Debug for Desk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Desk")
            .field("index", &self.index)
            .field("max_replays", &self.max_replays)
            .finish_non_exhaustive()
    }
}

fn source_of(l: &Letter) -> Option<String> {
    l.source
        .as_ref()
        .map(|s| format!("{}/{}@{}", s.topic, s.partition, s.offset))
}

/// One record to send back: its letter, the replay count it carries, and the per-key release it is
/// part of.
#[derive(Debug, Clone)]
struct Send {
    letter: Letter,
    count: u32,
    release: Option<Released>,
    /// The head it follows, when it is released with it.
    with_head: Option<String>,
}

/// A record's part in a per-key release: the head's offset, and `through` on the last one.
#[derive(Debug, Clone, Copy)]
struct Released {
    head: i64,
    through: Option<i64>,
}

/// A per-key release with nothing to send: written to the group's parked topic.
#[derive(Debug, Clone)]
struct Release {
    letter: Letter,
    head: i64,
    through: i64,
}

/// What one held letter leads to.
#[derive(Debug, Default)]
struct Plan {
    /// Records to send: plain replays (any order between keys; source order kept).
    plain: Vec<Send>,
    /// Per-key releases: each sent head first, the rest only once the first is in.
    groups: Vec<Vec<Send>>,
    /// Letters to mark discarded.
    discards: Vec<Letter>,
    /// Releases to write to the parked topic (after the discards they belong to).
    releases: Vec<Release>,
    /// Letters locked for the records behind a head (unlocked at the end).
    locked: Vec<Letter>,
    /// Letters refused while planning, and why.
    refused: Vec<(Letter, String)>,
    /// Letters already in a release group.
    planned: std::collections::HashSet<String>,
}

impl Desk {
    /// Why `act` cannot be done to `l`, if it cannot (the index is asked about the head `l` waits
    /// behind).
    async fn refusal(&self, act: Act, l: &Letter) -> Result<Option<String>, ActError> {
        if l.state != State::Parked {
            return Ok(Some(format!("it is {} already", l.state.as_str())));
        }
        if act == Act::Replay {
            if l.source.is_none() {
                return Ok(Some(
                    "the dead letter does not say where the record came from (no causeway.dlq.topic/partition/offset headers)"
                        .into(),
                ));
            }
            if l.behind.is_some() {
                let heads = self.index.heads_of(l).await?;
                let waiting: Vec<&str> = heads
                    .iter()
                    .filter(|h| h.state == State::Parked)
                    .map(|h| h.id.as_str())
                    .collect();
                if !waiting.is_empty() || heads.is_empty() {
                    return Ok(Some(format!(
                        "it waits behind {} (per-key order): replay or discard that one, and its key's records follow it",
                        if waiting.is_empty() {
                            format!("offset {} of its partition", l.behind.unwrap_or(0))
                        } else {
                            waiting.join(", ")
                        }
                    )));
                }
                // Released behind its finished head: not a replay of its own, no loop guard.
                return Ok(None);
            }
            if l.replays >= self.max_replays {
                return Ok(Some(format!(
                    "loop guard: the record was replayed {} times already (dlq.max_replays = {}); fix its cause and discard it, or raise the limit",
                    l.replays, self.max_replays
                )));
            }
        }
        Ok(None)
    }

    /// The parked letters behind the head at `head` of `group` (but `held`), locked for `action`
    /// and read again, deduplicated by source offset (a record read twice was dead-lettered twice), in
    /// source order; the last offset ever parked behind it; and whether every one could be locked.
    async fn behind(
        &self,
        group: &str,
        head: &Position,
        held: &[Letter],
        action: &str,
        plan: &mut Plan,
    ) -> Result<(Vec<Letter>, i64, bool), ActError> {
        let (all, through) = self.index.followers(group, head).await?;
        let mut out: Vec<Letter> = Vec::new();
        let mut complete = true;
        for f in all {
            let offset = f.source.as_ref().map_or(-1, |s| s.offset);
            if f.state != State::Parked || plan.planned.contains(&f.id) {
                continue;
            }
            let twice = |out: &[Letter]| {
                out.iter()
                    .any(|o| o.source.as_ref().map_or(-2, |s| s.offset) == offset)
            };
            // Asked for too: locked by this action already.
            if let Some(h) = held.iter().find(|h| h.id == f.id) {
                plan.planned.insert(h.id.clone());
                if !twice(&out) {
                    out.push(h.clone());
                }
                continue;
            }
            match self.hold(&f.id, action).await? {
                Some(now) if now.state == State::Parked => {
                    plan.locked.push(now.clone());
                    plan.planned.insert(now.id.clone());
                    if !twice(&out) {
                        out.push(now);
                    }
                }
                Some(now) => plan.locked.push(now),
                None => complete = false,
            }
        }
        out.sort_by_key(|l| l.source.as_ref().map_or(0, |s| s.offset));
        Ok((out, through, complete))
    }

    /// What `act` on the held letter `h` leads to.
    async fn plan(
        &self,
        act: Act,
        h: &Letter,
        held: &[Letter],
        action: &str,
        plan: &mut Plan,
    ) -> Result<(), ActError> {
        let source = h.source.clone();
        // The head the key's records wait behind, when `h` is one of them (its head is done) or is
        // the head itself.
        let release_at: Option<Position> = if h.parks_key {
            source.clone()
        } else {
            Index::head_position(h)
        };
        let Some(head) = release_at else {
            match act {
                Act::Replay => plan.plain.push(Send {
                    count: h.replays + 1,
                    release: None,
                    with_head: None,
                    letter: h.clone(),
                }),
                Act::Discard => plan.discards.push(h.clone()),
            }
            return Ok(());
        };
        if h.behind.is_some() && act == Act::Discard {
            // Given up on while its head still waits: the head's release brings the rest (its
            // `through` counts this one).
            let heads = self.index.heads_of(h).await?;
            if heads.is_empty() || heads.iter().any(|x| x.state == State::Parked) {
                plan.discards.push(h.clone());
                return Ok(());
            }
        }
        let (mut followers, through, complete) =
            self.behind(&h.group, &head, held, action, plan).await?;
        if !complete {
            plan.refused.push((
                h.clone(),
                "another action is working on records of its key; try again".into(),
            ));
            return Ok(());
        }
        plan.planned.insert(h.id.clone());
        followers.retain(|f| f.id != h.id);
        let mut group: Vec<Send> = Vec::new();
        match act {
            Act::Replay => {
                let me = Send {
                    count: if h.behind.is_some() {
                        h.replays
                    } else {
                        h.replays + 1
                    },
                    release: Some(Released {
                        head: head.offset,
                        through: None,
                    }),
                    with_head: None,
                    letter: h.clone(),
                };
                group.push(me);
            }
            Act::Discard => plan.discards.push(h.clone()),
        }
        for f in followers.drain(..) {
            // A record released with its key, not replayed on its own: its count stays.
            group.push(Send {
                count: f.replays,
                release: Some(Released {
                    head: head.offset,
                    through: None,
                }),
                with_head: (f.behind.is_some() && h.parks_key).then(|| h.id.clone()),
                letter: f,
            });
        }
        group.sort_by_key(|s| s.letter.source.as_ref().map_or(0, |p| p.offset));
        match group.last_mut() {
            Some(last) => {
                if let Some(r) = &mut last.release {
                    r.through = Some(through);
                }
                plan.groups.push(group);
            }
            // Nothing to bring back: the runner is told through its parked topic.
            None => plan.releases.push(Release {
                letter: h.clone(),
                head: head.offset,
                through,
            }),
        }
        Ok(())
    }

    /// Do `act` to `letters` as `operator` (a dry run changes nothing and records nothing). A head of
    /// a parked key takes its key's parked records along (released behind it, in order).
    pub async fn act(
        &self,
        act: Act,
        letters: Vec<Letter>,
        operator: &str,
        filter: Option<String>,
        dry_run: bool,
        kind: Kind,
    ) -> Result<Report, ActError> {
        if !dry_run {
            self.audit.ready().await.map_err(ActError::NotRecordable)?;
        }
        let action_id = uuid::Uuid::now_v7().to_string();
        let by = if kind == Kind::Redrive {
            "redrive"
        } else {
            operator
        };
        let mut done: Vec<Done> = Vec::with_capacity(letters.len());
        let mut held: Vec<Letter> = Vec::new();
        let mut plan = Plan::default();
        let mut outcomes = Vec::new();
        let worked = self
            .act_held(
                act,
                letters,
                by,
                dry_run,
                kind,
                &action_id,
                &mut done,
                &mut held,
                &mut plan,
                &mut outcomes,
            )
            .await;
        // Whatever happened, what this action holds is let go (else it waits for the locks to expire).
        let ids: Vec<&str> = held
            .iter()
            .chain(&plan.locked)
            .map(|l| l.id.as_str())
            .collect();
        if let Err(e) = self.index.unlock_many(&ids, &action_id).await {
            tracing::warn!(error = %e, letters = ids.len(), "cannot unlock dead letters; their locks expire in two minutes");
        }
        worked?;
        let mut counts: HashMap<&'static str, usize> = HashMap::new();
        for d in &done {
            *counts.entry(d.outcome).or_default() += 1;
        }
        if dry_run {
            return Ok(Report {
                action_id: None,
                dry_run,
                letters: done,
                counts,
            });
        }
        // Refusals before the lock are recorded too: an operator asked for them. Redrive's own
        // refusals (it looks again every pass) are not.
        if kind != Kind::Redrive {
            for d in done.iter().filter(|d| d.outcome == "refused") {
                if !outcomes.iter().any(|o| o.letter_id == d.letter_id) {
                    outcomes.push(Outcome {
                        letter_id: d.letter_id.clone(),
                        group: String::new(),
                        source: None,
                        key: None,
                        outcome: format!("refused: {}", d.detail),
                    });
                }
            }
        } else {
            outcomes.retain(|o| !o.outcome.starts_with("refused"));
        }
        if !outcomes.is_empty() {
            self.audit
                .record(&Action {
                    action_id: action_id.clone(),
                    action: kind,
                    operator: by.to_string(),
                    at: now_ms(),
                    filter,
                    letters: outcomes,
                })
                .await
                .map_err(ActError::Audit)?;
        }
        Ok(Report {
            action_id: Some(action_id),
            dry_run,
            letters: done,
            counts,
        })
    }

    /// The part of [`Desk::act`] that holds letters: check and lock them, plan, send, move their
    /// states; what it locked is in `held` and `plan.locked` for the caller to let go.
    #[allow(clippy::too_many_arguments)]
    async fn act_held(
        &self,
        act: Act,
        letters: Vec<Letter>,
        by: &str,
        dry_run: bool,
        kind: Kind,
        action_id: &str,
        done: &mut Vec<Done>,
        held: &mut Vec<Letter>,
        plan: &mut Plan,
        outcomes: &mut Vec<Outcome>,
    ) -> Result<(), ActError> {
        let mut candidates: Vec<Letter> = Vec::with_capacity(letters.len());
        let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
        for l in letters {
            if !seen.insert(l.id.clone()) {
                continue;
            }
            if let Some(why) = self.refusal(act, &l).await? {
                if l.state == State::Parked
                    && l.behind.is_none()
                    && l.replays >= self.max_replays
                    && act == Act::Replay
                    && !dry_run
                {
                    self.meters.loop_guard.with_label_values(&[&l.group]).inc();
                }
                done.push(Done {
                    letter_id: l.id.clone(),
                    outcome: "refused",
                    detail: why,
                });
                continue;
            }
            if dry_run {
                let followers = match (l.parks_key, &l.source) {
                    (true, Some(s)) => self
                        .index
                        .followers(&l.group, s)
                        .await?
                        .0
                        .iter()
                        .filter(|f| f.state == State::Parked)
                        .count(),
                    _ => 0,
                };
                let along = if followers > 0 {
                    format!("; {followers} records of its key follow it")
                } else {
                    String::new()
                };
                done.push(Done {
                    letter_id: l.id.clone(),
                    outcome: match act {
                        Act::Replay => "would replay",
                        Act::Discard => "would discard",
                    },
                    detail: match act {
                        Act::Replay => format!(
                            "to {} as replay {} of at most {}{along}",
                            source_of(&l).unwrap_or_default(),
                            l.replays + 1,
                            self.max_replays
                        ),
                        Act::Discard => {
                            format!("it would be marked discarded and never replayed{along}")
                        }
                    },
                });
                continue;
            }
            candidates.push(l);
        }
        // Locked and read again together (another action may have finished some meanwhile).
        let ids: Vec<&str> = candidates.iter().map(|l| l.id.as_str()).collect();
        let locked = self.index.lock_many(&ids, action_id, LOCK_MS).await?;
        let mine: Vec<&str> = ids
            .iter()
            .zip(&locked)
            .filter(|(_, l)| **l)
            .map(|(id, _)| *id)
            .collect();
        let mut now = self.index.get_many(&mine).await?.into_iter();
        for (l, got) in candidates.iter().zip(locked) {
            if !got {
                done.push(Done {
                    letter_id: l.id.clone(),
                    outcome: "refused",
                    detail: "another action is working on it".into(),
                });
                continue;
            }
            match now.next().flatten() {
                Some(now) => match self.refusal(act, &now).await? {
                    None => held.push(now),
                    Some(why) => {
                        done.push(Done {
                            letter_id: l.id.clone(),
                            outcome: "refused",
                            detail: why,
                        });
                        // Let go with the rest.
                        plan.locked.push(now);
                    }
                },
                None => plan.locked.push(l.clone()),
            }
        }
        for h in held.iter() {
            if plan.planned.contains(&h.id) || plan.locked.iter().any(|l| l.id == h.id) {
                continue;
            }
            self.plan(act, h, held, action_id, plan).await?;
        }
        // In source order: a partition's records arrive as they first did.
        let position = |s: &Send| {
            s.letter
                .source
                .as_ref()
                .map(|p| (p.topic.clone(), p.partition, p.offset))
        };
        plan.plain.sort_by_key(position);
        plan.groups
            .sort_by_key(|g| g.first().map(position).unwrap_or_default());
        let mut note = |l: &Letter, outcome: &'static str, detail: String, done: &mut Vec<Done>| {
            outcomes.push(Outcome {
                letter_id: l.id.clone(),
                group: l.group.clone(),
                source: source_of(l),
                key: l.key.clone(),
                outcome: if outcome == "refused" {
                    format!("refused: {detail}")
                } else {
                    outcome.to_string()
                },
            });
            done.push(Done {
                letter_id: l.id.clone(),
                outcome,
                detail,
            });
        };
        for (l, why) in &plan.refused {
            note(l, "refused", why.clone(), done);
        }
        let sent = self.send(&plan.plain, &plan.groups).await;
        let sends: Vec<&Send> = plan
            .plain
            .iter()
            .chain(plan.groups.iter().flatten())
            .collect();
        let trigger = if kind == Kind::Redrive {
            "redrive"
        } else {
            "operator"
        };
        let mut replayed: Vec<(&Send, String)> = Vec::new();
        for (s, result) in sends.into_iter().zip(sent) {
            match result {
                Ok(detail) => {
                    let detail = match &s.with_head {
                        Some(head) => format!("{detail}, released behind {head}"),
                        None => detail,
                    };
                    replayed.push((s, detail));
                }
                Err(why) => note(&s.letter, "refused", why, done),
            }
        }
        // A discard whose key cannot be released is not done: its key would stay parked.
        let released = self.write_releases(&plan.releases).await;
        let mut unreleased: HashMap<String, String> = HashMap::new();
        for (r, result) in plan.releases.iter().zip(released) {
            if let Err(why) = result {
                unreleased.insert(
                    r.letter.id.clone(),
                    format!(
                        "its key cannot be released (the records behind it stay parked): {why}"
                    ),
                );
            }
        }
        let discarded: Vec<&Letter> = plan
            .discards
            .iter()
            .filter(|d| !unreleased.contains_key(&d.id))
            .collect();
        // Every state moved in one round (pipelined).
        let mut moves: Vec<(&Letter, State, State, &str, &str)> = replayed
            .iter()
            .map(|(s, detail)| {
                (
                    &s.letter,
                    State::Parked,
                    State::Replayed,
                    by,
                    detail.as_str(),
                )
            })
            .collect();
        moves.extend(
            discarded
                .iter()
                .map(|d| (*d, State::Parked, State::Discarded, by, "")),
        );
        self.index.transition_many(&moves).await?;
        for (s, detail) in replayed {
            self.meters
                .replays
                .with_label_values(&[s.letter.group.as_str(), trigger])
                .inc();
            let outcome = if s.with_head.is_some() {
                "released"
            } else {
                "replayed"
            };
            note(&s.letter, outcome, detail, done);
        }
        for d in &plan.discards {
            if let Some(why) = unreleased.get(&d.id) {
                note(d, "refused", why.clone(), done);
                continue;
            }
            self.meters.discards.with_label_values(&[&d.group]).inc();
            note(d, "discarded", String::new(), done);
        }
        Ok(())
    }

    /// Lock letter `id` for `action` and read it again under the lock (another action may have
    /// finished it meanwhile); `None` when another action holds it.
    async fn hold(&self, id: &str, action: &str) -> Result<Option<Letter>, ActError> {
        if !self.index.lock(id, action, LOCK_MS).await? {
            return Ok(None);
        }
        match self.index.get(id).await? {
            Some(l) => Ok(Some(l)),
            None => {
                self.index.unlock(id, action).await?;
                Ok(None)
            }
        }
    }

    /// Write the per-key releases that have no record to carry them to the groups' parked topics
    /// (the key's bytes as the index keeps them: the dead letter itself may be gone).
    async fn write_releases(&self, releases: &[Release]) -> Vec<Result<(), String>> {
        let mut out = Vec::with_capacity(releases.len());
        for r in releases {
            let key = r.letter.key_hex.as_deref().and_then(crate::index::unhex);
            let result = match (key, &r.letter.source) {
                (Some(key), Some(source)) => {
                    let k = park_key(&source.topic, source.partition, &key);
                    let value = Entry::Release(r.head, r.through).encode();
                    records::send_raw(
                        &self.producer,
                        &Parking::topic_of(&r.letter.group),
                        &k,
                        value.as_bytes(),
                    )
                    .await
                }
                _ => Err("the dead letter has no key bytes or no source".into()),
            };
            out.push(result);
        }
        out
    }

    /// Send `plain` (in order, pipelined) and each of `groups` (its first record, and the rest only
    /// once the first is in): per send, in that order, where it went or why it could not.
    async fn send(&self, plain: &[Send], groups: &[Vec<Send>]) -> Vec<Result<String, String>> {
        let all: Vec<&Send> = plain.iter().chain(groups.iter().flatten()).collect();
        if all.is_empty() {
            return Vec::new();
        }
        let mut positions: Vec<Position> = all.iter().map(|s| s.letter.dlq.clone()).collect();
        positions.extend(
            all.iter()
                .filter(|s| s.letter.value_omitted)
                .filter_map(|s| s.letter.source.clone()),
        );
        let kafka = self.kafka.clone();
        let fetched =
            match tokio::task::spawn_blocking(move || records::fetch(&kafka, &positions)).await {
                Ok(f) => f,
                Err(e) => return all.iter().map(|_| Err(format!("{e}"))).collect(),
            };
        let now = now_ms();
        let build = |s: &Send| -> Result<(records::Replay, String), String> {
            let l = &s.letter;
            let to = l.source.as_ref().ok_or("no source")?;
            let get = |p: &Position| fetched.get(&(p.topic.clone(), p.partition, p.offset));
            let dead_letter = match get(&l.dlq) {
                Some(Ok(m)) => m,
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err(Unreadable::Gone(l.id.clone()).to_string()),
            };
            let value = if l.value_omitted {
                match get(to) {
                    Some(Ok(m)) => rdkafka::Message::payload(m).map(<[u8]>::to_vec),
                    Some(Err(e)) => {
                        return Err(format!(
                            "the value was left out of the dead letter and the source cannot give it: {e}"
                        ));
                    }
                    None => return Err("the value was left out of the dead letter".into()),
                }
            } else {
                None
            };
            let release = s.release.map(|r| records::Release {
                head: r.head,
                through: r.through,
                group: l.group.clone(),
            });
            Ok((
                records::replay(
                    &l.id,
                    dead_letter,
                    value.as_deref(),
                    to,
                    s.count,
                    release,
                    now,
                ),
                format!(
                    "to {}/{} as replay {} of at most {}",
                    to.topic, to.partition, s.count, self.max_replays
                ),
            ))
        };
        let mut out: Vec<Result<String, String>> = Vec::with_capacity(all.len());
        // Plain replays: enqueued in order (a full queue waits, never reorders), then awaited.
        let mut pending = Vec::new();
        for s in plain {
            match build(s) {
                Ok((replay, detail)) => {
                    pending.push((
                        out.len(),
                        detail,
                        records::enqueue(&self.producer, replay).await,
                    ));
                    out.push(Ok(String::new()));
                }
                Err(e) => out.push(Err(e)),
            }
        }
        for (i, detail, queued) in pending {
            out[i] = match queued {
                Ok(delivery) => records::delivered(delivery).await.map(|()| detail),
                Err(e) => Err(e),
            };
        }
        // Per-key releases: the first record in before the rest go, and none after one that cannot
        // (the last carries `through`: it must not free the key past a record left behind).
        for group in groups {
            let mut stopped = false;
            let mut pending = Vec::new();
            for (n, s) in group.iter().enumerate() {
                if stopped {
                    out.push(Err(
                        "not sent: a record before it in its key's release could not be".into(),
                    ));
                    continue;
                }
                match build(s) {
                    Ok((replay, detail)) => {
                        let queued = records::enqueue(&self.producer, replay).await;
                        if n == 0 {
                            let result = match queued {
                                Ok(delivery) => records::delivered(delivery).await.map(|()| detail),
                                Err(e) => Err(e),
                            };
                            stopped = result.is_err();
                            out.push(result);
                        } else {
                            stopped = queued.is_err();
                            pending.push((out.len(), detail, queued));
                            out.push(Ok(String::new()));
                        }
                    }
                    Err(e) => {
                        stopped = true;
                        out.push(Err(e));
                    }
                }
            }
            for (i, detail, queued) in pending {
                out[i] = match queued {
                    Ok(delivery) => records::delivered(delivery).await.map(|()| detail),
                    Err(e) => Err(e),
                };
            }
        }
        out
    }
}
