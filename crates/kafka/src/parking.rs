//! Per-key order for a consumer runner (`park_keys`): once a record is dead-lettered (the key's
//! *head*), the later records of its key on that partition are dead-lettered behind it (class `parked`)
//! instead of being handled, until the head is replayed or discarded; then they come back in order.
//!
//! What is parked lives in the compacted topic `<group>.parked`, keyed by `<topic>/<partition>/<key>`:
//! - `park:<head offset>,<last offset>`: the key is parked behind its head, and the last record parked
//!   behind it is at `<last offset>` (written by the runner, with its dead letters, before its offsets);
//! - `release:<head offset>,<through>`: the head is done and nothing parked behind it up to `<through>`
//!   comes back (a discard; written by the dlq-reprocessor); the owner then writes the outcome;
//! - a tombstone: the key is free again (written by the runner).
//!
//! The dlq-reprocessor brings a key's records back through its source partition, the head first, each
//! with [`headers::RELEASE`] (the head's offset) and [`headers::GROUP`] (the group it is released for);
//! the last one also with [`headers::THROUGH`]: the last offset ever parked behind the head that it knows
//! of. The runner handles a released record of its key's head (its own group's), and frees the key when
//! one whose `through` is at or past the last offset it parked is handled. A record parked after the
//! reprocessor looked (it raced the release) keeps the key parked until the reprocessor brings it back
//! too: the order of a key's records is the order they first arrived in, whatever the races. A released
//! record that fails again is the new head; the records released with it wait behind it.
//!
//! Every instance reads the whole topic; an instance applies what it did not write (the reprocessor's
//! releases, and the writes of the partitions' previous owners, read up to the end after each assignment).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::config::{KafkaConfig, OffsetMode};
use crate::error::Error;

/// Header names of per-key order.
pub mod headers {
    /// On a record dead-lettered behind its key's head: the head's offset on the same partition.
    pub const BEHIND: &str = "causeway.dlq.behind";
    /// On a dead letter whose key is parked behind it (the head): `true`.
    pub const PARKS_KEY: &str = "causeway.dlq.parks-key";
    /// On a record brought back by the reprocessor: the offset of the head it was released from.
    pub const RELEASE: &str = "causeway.replay.release";
    /// On the last record of a release: the last offset (of its key on its partition) ever parked
    /// behind the head, discarded ones included. Handling it frees the key.
    pub const THROUGH: &str = "causeway.replay.through";
    /// On a record brought back: the consumer group it is released for (other groups read it as any
    /// record).
    pub const GROUP: &str = "causeway.replay.group";
}

/// Longest key that is parked: longer keys are cut in dead letters, so they could not be released.
pub const MAX_KEY_BYTES: usize = 1024;

/// How long reading the topic to its end may take.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);

/// The key of `key` (of `topic`/`partition`) in the parked topic.
pub fn park_key(topic: &str, partition: i32, key: &[u8]) -> Vec<u8> {
    let mut k = format!("{topic}/{partition}/").into_bytes();
    k.extend_from_slice(key);
    k
}

/// The topic/partition part of a parked topic key, and the record key.
fn split_key(k: &[u8]) -> Option<(&str, i32, &[u8])> {
    let first = k.iter().position(|b| *b == b'/')?;
    let rest = &k[first + 1..];
    let second = rest.iter().position(|b| *b == b'/')?;
    let topic = std::str::from_utf8(&k[..first]).ok()?;
    let partition = std::str::from_utf8(&rest[..second]).ok()?.parse().ok()?;
    Some((topic, partition, &rest[second + 1..]))
}

/// A parked key: its head's offset and the last offset parked behind it (or the head's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Park {
    /// The head's offset.
    pub head: i64,
    /// The last offset of the key parked (the head's when nothing waits behind it).
    pub last: i64,
}

/// A value of the parked topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// Parked.
    Park(Park),
    /// Released by an operator: head, through.
    Release(i64, i64),
}

impl Entry {
    /// Its bytes.
    pub fn encode(&self) -> String {
        match self {
            Entry::Park(p) => format!("park:{},{}", p.head, p.last),
            Entry::Release(h, t) => format!("release:{h},{t}"),
        }
    }

    /// The entry `raw` is, if any.
    pub fn decode(raw: &[u8]) -> Option<Self> {
        let s = std::str::from_utf8(raw).ok()?;
        let (kind, numbers) = s.split_once(':')?;
        let (a, b) = numbers.split_once(',')?;
        let (a, b) = (a.parse().ok()?, b.parse().ok()?);
        match kind {
            "park" => Some(Entry::Park(Park { head: a, last: b })),
            "release" => Some(Entry::Release(a, b)),
            _ => None,
        }
    }
}

/// What [`Parking::head`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Headed {
    /// No key to park (none, or longer than [`MAX_KEY_BYTES`]).
    NotParked,
    /// The record is its key's head.
    Head,
    /// The key was parked behind an older head meanwhile: the record waits behind it.
    Behind(i64),
    /// The record is the head now, in place of the later record at this offset (of its batch), which
    /// waits behind it.
    Replaced(i64),
}

/// What to do with a record whose key may be parked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Its key is free: handle it.
    Free,
    /// Its key is parked behind the head at this offset: dead-letter it behind.
    Behind(i64),
    /// Released from its key's head: handle it; the key is free once it is written when `frees`.
    Released {
        /// Whether it brings back the last record parked.
        frees: bool,
    },
}

/// A record's header as a number.
fn header_number<M: Message>(m: &M, name: &str) -> Option<i64> {
    let value = crate::headers::last_value(m.headers()?, name)?;
    std::str::from_utf8(value).ok()?.trim().parse().ok()
}

/// An operator's release: the key is free if its head is `head` and nothing was parked past `through`.
fn release(parked: &mut HashMap<Vec<u8>, Park>, key: &[u8], head: i64, through: i64) -> bool {
    if let Some(p) = parked.get(key)
        && p.head == head
        && p.last <= through
    {
        parked.remove(key);
        return true;
    }
    false
}

/// The parked keys of one group, and the consumer that follows its topic.
pub struct Parking {
    topic: String,
    group: String,
    parked: HashMap<Vec<u8>, Park>,
    /// Follows the topic (none in unit tests of the rules).
    tail: Option<BaseConsumer>,
    /// Writes to make durable with the batch's dead letters: key, value (None: a tombstone).
    pending: Vec<(Vec<u8>, Option<String>)>,
}

impl std::fmt::Debug for Parking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parking")
            .field("topic", &self.topic)
            .field("parked", &self.parked.len())
            .finish_non_exhaustive()
    }
}

impl Parking {
    /// The parked topic of `group`: `<group>.parked`.
    pub fn topic_of(group: &str) -> String {
        format!("{group}.parked")
    }

    /// Follow `<group>.parked` (which must exist), read to its end.
    pub fn open(kafka: &KafkaConfig, group: &str) -> Result<Self, Error> {
        let topic = Self::topic_of(group);
        let tail: BaseConsumer = kafka
            .consumer_config(
                "parking",
                &format!("{group}-parking"),
                OffsetMode::Transactional,
            )
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|source| Error::Client {
                what: "parked-keys reader",
                source,
            })?;
        let partitions = crate::lag::partition_ends(&tail, &topic, CATCH_UP_TIMEOUT)?;
        let mut list = TopicPartitionList::new();
        for (p, _, _) in partitions {
            list.add_partition_offset(&topic, p, Offset::Beginning)
                .map_err(|source| Error::Operation {
                    operation: "assign the parked topic",
                    source,
                })?;
        }
        tail.assign(&list).map_err(|source| Error::Operation {
            operation: "assign the parked topic",
            source,
        })?;
        let mut parking = Self {
            topic,
            group: group.to_string(),
            parked: HashMap::new(),
            tail: Some(tail),
            pending: Vec::new(),
        };
        parking.catch_up()?;
        Ok(parking)
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Read the topic to its end now, applying everything in its order (at the start, and after each
    /// assignment: the previous owners' writes). This instance's own writes read again in their order end
    /// where its memory is: the last write of each key decides.
    pub fn catch_up(&mut self) -> Result<(), Error> {
        let Some(tail) = &self.tail else {
            return Ok(());
        };
        // Partitions with nothing to read (empty, or compacted down to nothing) are read already.
        let ends: HashMap<i32, i64> =
            crate::lag::partition_ends(tail, &self.topic, CATCH_UP_TIMEOUT)?
                .into_iter()
                .filter(|(_, low, end)| end > low)
                .map(|(p, _, end)| (p, end))
                .collect();
        let deadline = Instant::now() + CATCH_UP_TIMEOUT;
        loop {
            let Some(tail) = &self.tail else {
                return Ok(());
            };
            let positions = tail.position().map_err(|source| Error::Operation {
                operation: "read the parked topic's position",
                source,
            })?;
            let behind = ends.iter().any(|(p, end)| {
                let at = positions
                    .find_partition(&self.topic, *p)
                    .and_then(|e| match e.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    })
                    .unwrap_or(0);
                at < *end
            });
            if !behind {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Task(format!(
                    "{} was not read to its end within {CATCH_UP_TIMEOUT:?}",
                    self.topic
                )));
            }
            self.poll(Duration::from_millis(100), &|_, _| false);
        }
    }

    /// Apply what arrived (waiting `wait` at most for the first record), except the writes of
    /// partitions `own` says this instance holds: it wrote them (its memory is ahead of them).
    pub fn poll(&mut self, wait: Duration, own: &impl Fn(&str, i32) -> bool) {
        let mut wait = wait;
        while let Some(r) = self.tail.as_ref().and_then(|t| t.poll(wait)) {
            wait = Duration::ZERO;
            let m = match r {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, topic = %self.topic, "reading the parked topic");
                    return;
                }
            };
            let Some(key) = m.key() else { continue };
            let held = split_key(key).is_some_and(|(t, p, _)| own(t, p));
            match m.payload().and_then(Entry::decode) {
                Some(Entry::Release(head, through)) => {
                    let freed = release(&mut self.parked, key, head, through);
                    // The owner writes the outcome after the release, so that the topic's latest
                    // value of the key (all compaction keeps) says it.
                    if held {
                        let value = match (freed, self.parked.get(key)) {
                            (true, _) | (false, None) => None,
                            (false, Some(p)) => Some(Entry::Park(*p).encode()),
                        };
                        self.pending.push((key.to_vec(), value));
                    }
                }
                Some(Entry::Park(park)) if !held => {
                    self.parked.insert(key.to_vec(), park);
                }
                None if !held && m.payload().is_none() => {
                    self.parked.remove(key);
                }
                _ => {}
            }
        }
    }

    /// Whether `m` was released by the reprocessor for this group from its key's head `head`.
    fn released_from<M: Message>(&self, m: &M, head: i64) -> bool {
        let group = m
            .headers()
            .and_then(|h| crate::headers::last_value(h, headers::GROUP));
        header_number(m, headers::RELEASE) == Some(head) && group == Some(self.group.as_bytes())
    }

    /// What to do with `m`.
    pub fn decide<M: Message>(&self, m: &M) -> Decision {
        // The common case, per record: nothing parked, nothing to look up.
        if self.parked.is_empty() {
            return Decision::Free;
        }
        let Some(key) = m.key().filter(|k| k.len() <= MAX_KEY_BYTES) else {
            return Decision::Free;
        };
        let Some(park) = self.parked.get(&park_key(m.topic(), m.partition(), key)) else {
            return Decision::Free;
        };
        if self.released_from(m, park.head) {
            return Decision::Released {
                frees: header_number(m, headers::THROUGH).is_some_and(|t| t >= park.last),
            };
        }
        if m.offset() == park.head {
            // The head itself, read again (its batch's offsets were not stored): handled again, as
            // any record read twice; it is dead-lettered again if it still fails.
            return Decision::Free;
        }
        Decision::Behind(park.head)
    }

    /// `m` is being dead-lettered: park its key behind it. `released` when `m` was released from its
    /// key's head (it failed again: it is the head now, the old one is done).
    pub fn head<M: Message>(&mut self, m: &M, released: bool) -> Headed {
        let Some(key) = m.key().filter(|k| k.len() <= MAX_KEY_BYTES) else {
            return Headed::NotParked;
        };
        let k = park_key(m.topic(), m.partition(), key);
        let (park, outcome) = match self.parked.get(&k).copied() {
            // A later record of its batch became the head first (it failed earlier, at preparing):
            // this one, older, is the head, and that one waits behind it.
            Some(p) if p.head > m.offset() => (
                Park {
                    head: m.offset(),
                    last: p.last.max(m.offset()),
                },
                Headed::Replaced(p.head),
            ),
            Some(p) if !released && p.head == m.offset() => (
                Park {
                    last: p.last.max(m.offset()),
                    ..p
                },
                Headed::Head,
            ),
            // Parked behind an older head meanwhile: it waits behind that one.
            Some(p) if !released && p.head < m.offset() => (
                Park {
                    last: p.last.max(m.offset()),
                    ..p
                },
                Headed::Behind(p.head),
            ),
            Some(p) => (
                Park {
                    head: m.offset(),
                    last: p.last.max(m.offset()),
                },
                Headed::Head,
            ),
            None => (
                Park {
                    head: m.offset(),
                    last: m.offset(),
                },
                Headed::Head,
            ),
        };
        self.pending
            .push((k.clone(), Some(Entry::Park(park).encode())));
        self.parked.insert(k, park);
        outcome
    }

    /// The head `m`'s key waits behind, if it is parked.
    pub fn head_of<M: Message>(&self, m: &M) -> Option<i64> {
        let key = m.key()?;
        self.parked
            .get(&park_key(m.topic(), m.partition(), key))
            .map(|p| p.head)
    }

    /// `m` was dead-lettered behind its key's head.
    pub fn behind<M: Message>(&mut self, m: &M) {
        let Some(key) = m.key() else { return };
        let k = park_key(m.topic(), m.partition(), key);
        if let Some(p) = self.parked.get_mut(&k) {
            p.last = p.last.max(m.offset());
            let value = Entry::Park(*p).encode();
            self.pending.push((k, Some(value)));
        }
    }

    /// `m`, released and handled, frees its key if it still brings back the last record parked (a
    /// record of the batch may have parked the key again since it was read).
    pub fn free<M: Message>(&mut self, m: &M) {
        let Some(key) = m.key() else { return };
        let k = park_key(m.topic(), m.partition(), key);
        let Some(park) = self.parked.get(&k).copied() else {
            return;
        };
        let through = header_number(m, headers::THROUGH);
        if self.released_from(m, park.head) && through.is_some_and(|t| t >= park.last) {
            self.parked.remove(&k);
            self.pending.push((k, None));
        }
    }

    /// Whether writes wait to be made durable.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The writes to make durable (with the batch's dead letters), taken.
    pub fn take_pending(&mut self) -> Vec<(Vec<u8>, Option<String>)> {
        std::mem::take(&mut self.pending)
    }

    /// How many keys are parked (every partition).
    pub fn len(&self) -> usize {
        self.parked.len()
    }

    /// Whether no key is parked.
    pub fn is_empty(&self) -> bool {
        self.parked.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::Timestamp;
    use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};

    fn rules(group: &str) -> Parking {
        Parking {
            topic: format!("{group}.parked"),
            group: group.into(),
            parked: HashMap::new(),
            tail: None,
            pending: Vec::new(),
        }
    }

    fn record(offset: i64, release: Option<(i64, Option<i64>, &str)>) -> OwnedMessage {
        let mut h = OwnedHeaders::new();
        if let Some((head, through, group)) = release {
            let head = head.to_string();
            h = h
                .insert(Header {
                    key: headers::RELEASE,
                    value: Some(head.as_str()),
                })
                .insert(Header {
                    key: headers::GROUP,
                    value: Some(group),
                });
            if let Some(t) = through {
                let t = t.to_string();
                h = h.insert(Header {
                    key: headers::THROUGH,
                    value: Some(t.as_str()),
                });
            }
        }
        OwnedMessage::new(
            Some(b"v".to_vec()),
            Some(b"k".to_vec()),
            "t".into(),
            Timestamp::CreateTime(0),
            0,
            offset,
            Some(h),
        )
    }

    #[test]
    fn a_key_waits_behind_its_head_and_is_freed_by_the_last_record_released() {
        let mut p = rules("g");
        assert_eq!(p.head(&record(10, None), false), Headed::Head);
        // Read again after a crash: the head is handled again, not parked behind itself.
        assert_eq!(p.decide(&record(10, None)), Decision::Free);
        assert_eq!(p.decide(&record(12, None)), Decision::Behind(10));
        p.behind(&record(12, None));
        // Released for another group: as any record of a parked key.
        assert_eq!(
            p.decide(&record(50, Some((10, Some(12), "other")))),
            Decision::Behind(10)
        );
        // The head, then the one behind it with `through`: only that frees the key.
        let head = record(50, Some((10, None, "g")));
        assert_eq!(p.decide(&head), Decision::Released { frees: false });
        p.free(&head);
        assert_eq!(p.head_of(&head), Some(10));
        let last = record(51, Some((10, Some(12), "g")));
        assert_eq!(p.decide(&last), Decision::Released { frees: true });
        p.free(&last);
        assert_eq!(p.head_of(&last), None);
        assert_eq!(p.decide(&record(60, None)), Decision::Free);
    }

    #[test]
    fn a_record_parked_after_the_release_was_prepared_keeps_the_key() {
        let mut p = rules("g");
        p.head(&record(10, None), false);
        let last = record(50, Some((10, Some(10), "g")));
        assert_eq!(p.decide(&last), Decision::Released { frees: true });
        // A later record of the same batch was parked meanwhile: freeing re-checks.
        p.behind(&record(55, None));
        p.free(&last);
        assert_eq!(p.head_of(&last), Some(10));
    }

    #[test]
    fn a_released_head_that_fails_again_is_the_new_head_and_an_older_failure_replaces_a_later() {
        let mut p = rules("g");
        p.head(&record(10, None), false);
        assert_eq!(
            p.head(&record(50, Some((10, None, "g"))), true),
            Headed::Head
        );
        assert_eq!(p.head_of(&record(0, None)), Some(50));
        // Followers released from the old head now wait behind the new one.
        assert_eq!(
            p.decide(&record(51, Some((10, Some(12), "g")))),
            Decision::Behind(50)
        );
        // In one batch, 70 failed at preparing (head), then 65 was refused at writing: 65 is the head.
        let mut q = rules("g");
        q.head(&record(70, None), false);
        assert_eq!(q.head(&record(65, None), false), Headed::Replaced(70));
        assert_eq!(q.head_of(&record(0, None)), Some(65));
        assert_eq!(q.head(&record(80, None), false), Headed::Behind(65));
    }

    #[test]
    fn an_operators_release_frees_only_when_nothing_was_parked_past_it() {
        let mut parked = HashMap::new();
        parked.insert(b"k".to_vec(), Park { head: 10, last: 14 });
        assert!(!release(&mut parked, b"k", 10, 12));
        assert!(!release(&mut parked, b"k", 9, 20));
        assert!(release(&mut parked, b"k", 10, 14));
        assert!(parked.is_empty());
    }

    #[test]
    fn entries_and_keys_round_trip() {
        for e in [
            Entry::Park(Park { head: 4, last: 9 }),
            Entry::Release(4, 12),
        ] {
            assert_eq!(Entry::decode(e.encode().as_bytes()), Some(e));
        }
        assert_eq!(Entry::decode(b"park:x,1"), None);
        let k = park_key("orders.order.events", 3, b"a/b");
        assert_eq!(split_key(&k), Some(("orders.order.events", 3, &b"a/b"[..])));
    }
}
