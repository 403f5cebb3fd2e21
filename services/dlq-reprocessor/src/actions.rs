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

impl Desk {
    /// Why `act` cannot be done to `l`, if it cannot.
    fn refusal(&self, act: Act, l: &Letter) -> Option<String> {
        if l.state != State::Parked {
            return Some(format!("it is {} already", l.state.as_str()));
        }
        if act == Act::Replay {
            if l.source.is_none() {
                return Some(
                    "the dead letter does not say where the record came from (no causeway.dlq.topic/partition/offset headers)"
                        .into(),
                );
            }
            if l.replays >= self.max_replays {
                return Some(format!(
                    "loop guard: the record was replayed {} times already (dlq.max_replays = {}); fix its cause and discard it, or raise the limit",
                    l.replays, self.max_replays
                ));
            }
        }
        None
    }

    /// Do `act` to `letters` as `operator` (a dry run changes nothing and records nothing).
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
        let mut done: Vec<Done> = Vec::with_capacity(letters.len());
        let mut held: Vec<Letter> = Vec::new();
        for l in letters {
            if let Some(why) = self.refusal(act, &l) {
                if l.state == State::Parked && l.replays >= self.max_replays && !dry_run {
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
                done.push(Done {
                    letter_id: l.id.clone(),
                    outcome: match act {
                        Act::Replay => "would replay",
                        Act::Discard => "would discard",
                    },
                    detail: match act {
                        Act::Replay => format!(
                            "to {} as replay {} of at most {}",
                            source_of(&l).unwrap_or_default(),
                            l.replays + 1,
                            self.max_replays
                        ),
                        Act::Discard => "it would be marked discarded and never replayed".into(),
                    },
                });
                continue;
            }
            if !self.index.lock(&l.id, &action_id, LOCK_MS).await? {
                done.push(Done {
                    letter_id: l.id.clone(),
                    outcome: "refused",
                    detail: "another action is working on it".into(),
                });
                continue;
            }
            // Read again under the lock: another action may have finished it meanwhile.
            match self.index.get(&l.id).await? {
                Some(now) if self.refusal(act, &now).is_none() => held.push(now),
                Some(now) => {
                    done.push(Done {
                        letter_id: l.id.clone(),
                        outcome: "refused",
                        detail: self.refusal(act, &now).unwrap_or_default(),
                    });
                    self.index.unlock(&l.id, &action_id).await?;
                }
                None => {
                    self.index.unlock(&l.id, &action_id).await?;
                }
            }
        }
        let mut outcomes = Vec::new();
        if !held.is_empty() {
            let results = match act {
                Act::Replay => self.replay(&held).await,
                Act::Discard => held.iter().map(|_| Ok(String::new())).collect(),
            };
            for (l, result) in held.iter().zip(results) {
                let (to, outcome, detail) = match (&result, act) {
                    (Ok(detail), Act::Replay) => (State::Replayed, "replayed", detail.clone()),
                    (Ok(_), Act::Discard) => (State::Discarded, "discarded", String::new()),
                    (Err(why), _) => (State::Parked, "refused", why.clone()),
                };
                if to != State::Parked {
                    let by = if kind == Kind::Redrive {
                        "redrive"
                    } else {
                        operator
                    };
                    self.index
                        .transition(l, State::Parked, to, by, &detail)
                        .await?;
                    match act {
                        Act::Replay => self
                            .meters
                            .replays
                            .with_label_values(&[
                                l.group.as_str(),
                                if kind == Kind::Redrive {
                                    "redrive"
                                } else {
                                    "operator"
                                },
                            ])
                            .inc(),
                        Act::Discard => self.meters.discards.with_label_values(&[&l.group]).inc(),
                    }
                }
                self.index.unlock(&l.id, &action_id).await?;
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
            }
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
                    operator: operator.to_string(),
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

    /// Replay `letters` (held): read them back, send each to its source partition in source order;
    /// per letter, where it went or why it could not.
    async fn replay(&self, letters: &[Letter]) -> Vec<Result<String, String>> {
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
        // In source order, so that the records of one partition arrive as they first did.
        let mut order: Vec<usize> = (0..letters.len()).collect();
        order.sort_by_key(|i| {
            letters[*i]
                .source
                .as_ref()
                .map(|s| (s.topic.clone(), s.partition, s.offset))
        });
        let mut out: Vec<Result<String, String>> =
            letters.iter().map(|_| Ok(String::new())).collect();
        let mut pending = Vec::new();
        let now = now_ms();
        for i in order {
            let l = &letters[i];
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
            let replay =
                records::replay(&l.id, dead_letter, value.as_deref(), to, l.replays + 1, now);
            let detail = format!(
                "to {}/{} as replay {} of at most {}",
                to.topic,
                to.partition,
                l.replays + 1,
                self.max_replays
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
