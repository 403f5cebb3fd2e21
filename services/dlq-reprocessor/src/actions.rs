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
}

impl Meters {
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
/// part of (the head's offset, the last offset released).
#[derive(Debug, Clone)]
struct Send {
    letter: Letter,
    count: u32,
    release: Option<(i64, i64)>,
    /// The head it follows, when it is released with it.
    with_head: Option<String>,
}

/// A per-key release with nothing to send: written to the group's parked topic.
#[derive(Debug, Clone)]
struct Release {
    letter: Letter,
    head: i64,
    through: i64,
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
                // Released with its head: not a replay of its own, no loop guard.
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
        let action_id = uuid::Uuid::now_v7().to_string();
        let by = if kind == Kind::Redrive {
            "redrive"
        } else {
            operator
        };
        let mut done: Vec<Done> = Vec::with_capacity(letters.len());
        let mut held: Vec<Letter> = Vec::new();
        for l in letters {
            if held.iter().any(|h| h.id == l.id) {
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
                let followers = if l.parks_key {
                    self.index
                        .followers(&l)
                        .await?
                        .0
                        .iter()
                        .filter(|f| f.state == State::Parked)
                        .count()
                } else {
                    0
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
            match self.hold(&l.id, &action_id).await? {
                Some(now) if self.refusal(act, &now).await?.is_none() => held.push(now),
                Some(now) => {
                    done.push(Done {
                        letter_id: l.id.clone(),
                        outcome: "refused",
                        detail: self.refusal(act, &now).await?.unwrap_or_default(),
                    });
                    self.index.unlock(&l.id, &action_id).await?;
                }
                None => done.push(Done {
                    letter_id: l.id.clone(),
                    outcome: "refused",
                    detail: "another action is working on it".into(),
                }),
            }
        }
        // What to send back and what to release, per letter held.
        let mut sends: Vec<Send> = Vec::new();
        let mut releases: Vec<Release> = Vec::new();
        let mut discards: Vec<Letter> = Vec::new();
        let mut followers_held: Vec<Letter> = Vec::new();
        for h in &held {
            let mut release = None;
            if h.parks_key {
                let (followers, through) = self.index.followers(h).await?;
                release = Some((h.source.as_ref().map_or(0, |s| s.offset), through));
                let mut any = false;
                for f in followers {
                    if f.state != State::Parked || held.iter().any(|x| x.id == f.id) {
                        continue;
                    }
                    if self.index.lock(&f.id, &action_id, LOCK_MS).await? {
                        any = true;
                        sends.push(Send {
                            count: f.replays,
                            release,
                            with_head: Some(h.id.clone()),
                            letter: f.clone(),
                        });
                        followers_held.push(f);
                    }
                }
                if act == Act::Discard && !any {
                    releases.push(Release {
                        letter: h.clone(),
                        head: release.map_or(0, |r| r.0),
                        through,
                    });
                }
            } else if let (Some(head), Some(source)) = (h.behind, &h.source) {
                // A record behind a head already done (it raced the head's release).
                let anchor = Letter {
                    source: Some(Position {
                        offset: head,
                        ..source.clone()
                    }),
                    ..h.clone()
                };
                let (_, through) = self.index.followers(&anchor).await?;
                release = Some((head, through));
                if act == Act::Discard {
                    releases.push(Release {
                        letter: h.clone(),
                        head,
                        through,
                    });
                }
            }
            match act {
                Act::Replay => sends.push(Send {
                    count: if h.behind.is_some() {
                        h.replays
                    } else {
                        h.replays + 1
                    },
                    release,
                    with_head: None,
                    letter: h.clone(),
                }),
                Act::Discard => discards.push(h.clone()),
            }
        }
        // Sent in source order, so that a partition's records arrive as they first did.
        sends.sort_by_key(|s| {
            s.letter
                .source
                .as_ref()
                .map(|p| (p.topic.clone(), p.partition, p.offset))
        });
        let sent = self.send(&sends).await;
        let released = self.write_releases(&releases).await;
        let mut outcomes = Vec::new();
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
        for (s, result) in sends.iter().zip(sent) {
            let l = &s.letter;
            match result {
                Ok(detail) => {
                    let detail = match &s.with_head {
                        Some(head) => format!("{detail}, released behind {head}"),
                        None => detail,
                    };
                    self.index
                        .transition(l, State::Parked, State::Replayed, by, &detail)
                        .await?;
                    self.meters
                        .replays
                        .with_label_values(&[
                            l.group.as_str(),
                            if kind == Kind::Redrive {
                                "redrive"
                            } else {
                                "operator"
                            },
                        ])
                        .inc();
                    note(
                        l,
                        if s.with_head.is_some() {
                            "released"
                        } else {
                            "replayed"
                        },
                        detail,
                        &mut done,
                    );
                }
                Err(why) => note(l, "refused", why, &mut done),
            }
        }
        for d in &discards {
            let failed = releases
                .iter()
                .zip(&released)
                .find(|(r, _)| r.letter.id == d.id)
                .and_then(|(_, r)| r.as_ref().err().cloned());
            match failed {
                Some(why) => note(d, "refused", why, &mut done),
                None => {
                    self.index
                        .transition(d, State::Parked, State::Discarded, by, "")
                        .await?;
                    self.meters.discards.with_label_values(&[&d.group]).inc();
                    note(d, "discarded", String::new(), &mut done);
                }
            }
        }
        for l in held.iter().chain(&followers_held) {
            self.index.unlock(&l.id, &action_id).await?;
        }
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
        // Refusals before the lock are recorded too: an operator asked for them.
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
    /// (the key read from the dead letter itself: the index keeps it as text).
    async fn write_releases(&self, releases: &[Release]) -> Vec<Result<(), String>> {
        if releases.is_empty() {
            return Vec::new();
        }
        let positions: Vec<Position> = releases.iter().map(|r| r.letter.dlq.clone()).collect();
        let kafka = self.kafka.clone();
        let fetched =
            match tokio::task::spawn_blocking(move || records::fetch(&kafka, &positions)).await {
                Ok(f) => f,
                Err(e) => return releases.iter().map(|_| Err(e.to_string())).collect(),
            };
        let mut out = Vec::with_capacity(releases.len());
        for r in releases {
            let d = &r.letter.dlq;
            let result = match (
                fetched.get(&(d.topic.clone(), d.partition, d.offset)),
                &r.letter.source,
            ) {
                (Some(Ok(m)), Some(source)) => match rdkafka::Message::key(m) {
                    Some(key) => {
                        let k = park_key(&source.topic, source.partition, key);
                        let value = Entry::Release(r.head, r.through).encode();
                        records::send_raw(
                            &self.producer,
                            &Parking::topic_of(&r.letter.group),
                            &k,
                            value.as_bytes(),
                        )
                        .await
                    }
                    None => Ok(()),
                },
                (Some(Err(e)), _) => Err(e.to_string()),
                _ => Ok(()),
            };
            out.push(result);
        }
        out
    }

    /// Send `sends` back (read from their DLQ, and from the source when the dead letter left the
    /// value out): per send, where it went or why it could not.
    async fn send(&self, sends: &[Send]) -> Vec<Result<String, String>> {
        if sends.is_empty() {
            return Vec::new();
        }
        let letters: Vec<&Letter> = sends.iter().map(|s| &s.letter).collect();
        let mut positions: Vec<Position> = letters.iter().map(|l| l.dlq.clone()).collect();
        positions.extend(
            letters
                .iter()
                .filter(|l| l.value_omitted)
                .filter_map(|l| l.source.clone()),
        );
        let kafka = self.kafka.clone();
        let fetched =
            match tokio::task::spawn_blocking(move || records::fetch(&kafka, &positions)).await {
                Ok(f) => f,
                Err(e) => return letters.iter().map(|_| Err(format!("{e}"))).collect(),
            };
        let get = |p: &Position| fetched.get(&(p.topic.clone(), p.partition, p.offset));
        let mut out: Vec<Result<String, String>> =
            letters.iter().map(|_| Ok(String::new())).collect();
        let mut pending = Vec::new();
        let now = now_ms();
        for (i, s) in sends.iter().enumerate() {
            let l = &s.letter;
            let Some(to) = &l.source else {
                out[i] = Err("no source".into());
                continue;
            };
            let dead_letter = match get(&l.dlq) {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    out[i] = Err(e.to_string());
                    continue;
                }
                None => {
                    out[i] = Err(Unreadable::Gone(l.id.clone()).to_string());
                    continue;
                }
            };
            let value = if l.value_omitted {
                match get(to) {
                    Some(Ok(m)) => rdkafka::Message::payload(m).map(<[u8]>::to_vec),
                    Some(Err(e)) => {
                        out[i] = Err(format!(
                            "the value was left out of the dead letter and the source cannot give it: {e}"
                        ));
                        continue;
                    }
                    None => {
                        out[i] = Err("the value was left out of the dead letter".into());
                        continue;
                    }
                }
            } else {
                None
            };
            let replay = records::replay(
                &l.id,
                dead_letter,
                value.as_deref(),
                to,
                s.count,
                s.release,
                now,
            );
            let detail = format!(
                "to {}/{} as replay {} of at most {}",
                to.topic, to.partition, s.count, self.max_replays
            );
            // Enqueued in order; the idempotent producer keeps that order per partition.
            pending.push((i, detail, records::send(&self.producer, replay)));
        }
        let results = futures::future::join_all(
            pending
                .into_iter()
                .map(|(i, detail, send)| async move { (i, detail, send.await) }),
        )
        .await;
        for (i, detail, sent) in results {
            out[i] = sent.map(|()| detail);
        }
        out
    }
}
