//! Per-key order for a consumer runner (`park_keys`): once a record is dead-lettered (the key's
//! *head*), the later records of its key on that partition are dead-lettered behind it (class `parked`)
//! instead of being handled, until the head is replayed or discarded; then they come back in order.
//!
//! What is parked lives in the compacted topic `<group>.parked`, keyed by `<topic>/<partition>/<key>`:
//! - `park:<head offset>,<last offset>`: the key is parked behind its head, and the last record parked
//!   behind it is at `<last offset>` (written by the runner, with its dead letters, before its offsets);
//! - `release:<head offset>,<through>`: the head was discarded by an operator and nothing waits behind it
//!   up to `<through>` (written by the dlq-reprocessor);
//! - a tombstone: the key is free again (written by the runner once a released record is handled).
//!
//! The dlq-reprocessor brings a key's records back through its source partition, the head first, each
//! with the headers [`headers::RELEASE`] (the head's offset) and [`headers::THROUGH`] (the last offset
//! it brings back). The runner handles a released record of its key's head; the key is free once one
//! with `through` at or past the last parked offset is handled. A record parked after the reprocessor
//! looked (it raced the replay) keeps the key parked until the reprocessor brings it back too: the
//! order of a key's records is the order they first arrived in, whatever races.
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
    /// On a record brought back: the last offset (of its key on its partition) released with it.
    pub const THROUGH: &str = "causeway.replay.through";
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
fn release(parked: &mut HashMap<Vec<u8>, Park>, key: &[u8], head: i64, through: i64) {
    if let Some(p) = parked.get(key)
        && p.head == head
        && p.last <= through
    {
        parked.remove(key);
    }
}

/// The parked keys of one group, and the consumer that follows its topic.
pub struct Parking {
    topic: String,
    parked: HashMap<Vec<u8>, Park>,
    tail: BaseConsumer,
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
        let metadata = tail
            .fetch_metadata(Some(&topic), CATCH_UP_TIMEOUT)
            .map_err(|source| Error::Operation {
                operation: "fetch the parked topic's metadata",
                source,
            })?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(Error::MissingTopic(topic));
        }
        let mut list = TopicPartitionList::new();
        for p in partitions {
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
            parked: HashMap::new(),
            tail,
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
        let assignment = self.tail.assignment().map_err(|source| Error::Operation {
            operation: "read the parked topic's assignment",
            source,
        })?;
        let mut ends: HashMap<i32, i64> = HashMap::new();
        for e in assignment.elements() {
            let (_, high) = self
                .tail
                .fetch_watermarks(&self.topic, e.partition(), CATCH_UP_TIMEOUT)
                .map_err(|source| Error::Operation {
                    operation: "read the parked topic's end",
                    source,
                })?;
            ends.insert(e.partition(), high);
        }
        let deadline = Instant::now() + CATCH_UP_TIMEOUT;
        loop {
            let positions = self.tail.position().map_err(|source| Error::Operation {
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
        while let Some(r) = self.tail.poll(wait) {
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
                    release(&mut self.parked, key, head, through);
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

    /// What to do with `m`.
    pub fn decide<M: Message>(&self, m: &M) -> Decision {
        let Some(key) = m.key().filter(|k| k.len() <= MAX_KEY_BYTES) else {
            return Decision::Free;
        };
        let Some(park) = self.parked.get(&park_key(m.topic(), m.partition(), key)) else {
            return Decision::Free;
        };
        match header_number(m, headers::RELEASE) {
            Some(head) if head == park.head => Decision::Released {
                frees: header_number(m, headers::THROUGH).is_some_and(|t| t >= park.last),
            },
            _ => Decision::Behind(park.head),
        }
    }

    /// Park `m`'s key behind `m` itself (it was dead-lettered). False when it has no key to park.
    pub fn head<M: Message>(&mut self, m: &M) -> bool {
        let Some(key) = m.key().filter(|k| k.len() <= MAX_KEY_BYTES) else {
            return false;
        };
        let k = park_key(m.topic(), m.partition(), key);
        let park = Park {
            head: m.offset(),
            last: m.offset(),
        };
        self.pending
            .push((k.clone(), Some(Entry::Park(park).encode())));
        self.parked.insert(k, park);
        true
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

    /// `m`, released, was handled and frees its key.
    pub fn free<M: Message>(&mut self, m: &M) {
        let Some(key) = m.key() else { return };
        let k = park_key(m.topic(), m.partition(), key);
        if self.parked.remove(&k).is_some() {
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
