//! Restoring the state of assigned partitions: committed offsets first (so a previous owner's last
//! transaction has ended), then the changelog to its end (read_committed), then position and resume.
//!
//! A restore runs in steps of at most [`STEP`] between polls of the group consumer, so however long a
//! changelog is, the consumer keeps polling (its restoring partitions paused, the others processing)
//! and `max.poll.interval.ms` is never exceeded: the instance keeps its membership.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use causeway_contracts::upcast::Upcasters;
use causeway_contracts::wire::WireError;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::error::ProcessorError;
use super::rebalance::Rebalances;
use super::{CALL_TIMEOUT, Owned, PartitionState, Run};
use crate::client::ReadsToEnd;
use crate::config::OffsetMode;
use crate::error::Error;

/// Longest one restore step reads before the loop polls the group consumer again.
const STEP: Duration = Duration::from_millis(100);

/// How long the restore consumer waits for its partitions' leaders before it is assigned anyway (the
/// loop waits meanwhile).
const METADATA_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a restore waits after a registry failure before it reads on.
const REGISTRY_BACKOFF: Duration = Duration::from_millis(500);

/// How long the committed offsets may take to become stable before the loop polls again and retries
/// (a previous owner's transaction still open holds them back until it ends).
const COMMITTED_TIMEOUT: Duration = Duration::from_secs(1);

/// A restore in progress: the command partitions it restores, their committed offsets, and one
/// changelog reader per hosted aggregate type.
pub(super) struct Restore {
    owned: Vec<Owned>,
    committed: TopicPartitionList,
    readers: Vec<Reader>,
    started: Instant,
    /// After a registry failure: not before this.
    retry_at: Option<Instant>,
}

impl Restore {
    fn records_read(&self) -> u64 {
        self.readers.iter().map(|r| r.read).sum()
    }

    /// Whether it restores `owned`.
    pub(super) fn covers(&self, owned: &Owned) -> bool {
        self.owned.contains(owned)
    }
}

/// Where a reader got to in one step.
enum Step {
    /// Its changelog partitions are read to their end.
    Done,
    /// Not yet: go on next turn.
    Later,
    /// The registry failed: go on after [`REGISTRY_BACKOFF`].
    Backoff,
    /// It lost its place: the restore starts over.
    Restart,
}

struct Reader {
    host: usize,
    consumer: BaseConsumer<ReadsToEnd>,
    remaining: HashSet<i32>,
    /// Changelog records read so far.
    read: u64,
    /// Its records go to the on-disk store as they are (the host's states are read back from there
    /// when needed), not into memory.
    stored: Option<Stored>,
}

/// A changelog read into the on-disk store.
struct Stored {
    /// The changelog topic.
    topic: String,
    /// Per partition started from a checkpoint: the record it names, still to be found first.
    verify: std::collections::HashMap<i32, causeway_store::Checkpoint>,
    /// Per partition: the last record read (the next checkpoint).
    last: std::collections::HashMap<i32, causeway_store::Checkpoint>,
    /// Schema ids found to be the host's state record.
    known: HashSet<u32>,
}

impl Run {
    /// One step of restoring the partitions waiting for it: start a restore, read some of the
    /// changelog, or finish (position and resume). `Ok(true)` when a restore finished.
    pub(super) fn restore_pending(
        &mut self,
        consumer: &BaseConsumer<Rebalances>,
    ) -> Result<bool, ProcessorError> {
        if self.restore.is_none() && !self.start_restore(consumer)? {
            return Ok(false);
        }
        let Some(mut restore) = self.restore.take() else {
            return Ok(false);
        };
        if restore.retry_at.is_some_and(|at| Instant::now() < at) {
            self.restore = Some(restore);
            return Ok(false);
        }
        let deadline = Instant::now() + STEP;
        let before = restore.records_read();
        let result = self.restore_step(&mut restore, deadline);
        if restore.records_read() > before {
            // Reading a long changelog is progress, not a stall.
            self.progress.moved();
        }
        match result? {
            Step::Done => {}
            Step::Later => {
                self.restore = Some(restore);
                return Ok(false);
            }
            Step::Backoff => {
                restore.retry_at = Some(Instant::now() + REGISTRY_BACKOFF);
                self.restore = Some(restore);
                return Ok(false);
            }
            Step::Restart => return Ok(false),
        }
        self.finish_restore(consumer, restore)
    }

    /// Read each reader's changelog on, until all are at their end or the step's time is up.
    fn restore_step(
        &mut self,
        restore: &mut Restore,
        deadline: Instant,
    ) -> Result<Step, ProcessorError> {
        for reader in &mut restore.readers {
            match self.read_changelog(reader, deadline)? {
                Step::Done => {}
                // Interrupted (the step's time, a registry outage, shutdown): go on next turn.
                // Restart: the partitions stay Restoring, and the next turn starts a new restore.
                other => return Ok(other),
            }
        }
        Ok(Step::Done)
    }

    /// Every changelog is read: position the command partitions at their committed offsets and resume.
    fn finish_restore(
        &mut self,
        consumer: &BaseConsumer<Rebalances>,
        restore: Restore,
    ) -> Result<bool, ProcessorError> {
        // Position at the committed offsets (when none: the earliest record, or for a host that
        // starts at the end, the end, committed with the next transaction so that a restart before
        // any record arrives does not skip what came meanwhile), then resume.
        let mut unanchored = Vec::new();
        for element in restore.committed.elements() {
            let owned = self.owned(element.topic(), element.partition());
            let at_end = owned.is_some_and(|(h, _)| self.hosts[h].starts_at_end());
            let offset = match (element.offset(), owned) {
                (Offset::Offset(o), _) => Offset::Offset(o),
                // Anchored before and not committed yet (the transaction that would have aborted):
                // the same place, not a later end.
                (_, Some(o)) if at_end && self.anchor.contains(&o) => {
                    match self.positions.get(&o) {
                        Some(&at) => Offset::Offset(at),
                        None => Offset::Beginning,
                    }
                }
                // No committed offset: the beginning, or the end (the last stable offset: this
                // consumer reads committed), either way known as a number, so that a transaction that
                // fires something due there carries it.
                (_, owned) => {
                    match consumer.fetch_watermarks(
                        element.topic(),
                        element.partition(),
                        CALL_TIMEOUT,
                    ) {
                        Ok((low, end)) => {
                            let at = if at_end { end } else { low };
                            if let Some(o) = owned {
                                unanchored.push((o, at, at_end));
                            }
                            Offset::Offset(at)
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, topic = element.topic(), partition = element.partition(), "cannot find where to start; will retry");
                            self.restore = Some(restore);
                            return Ok(false);
                        }
                    }
                }
            };
            if let Err(e) =
                consumer.seek(element.topic(), element.partition(), offset, CALL_TIMEOUT)
            {
                tracing::warn!(error = %e, topic = element.topic(), partition = element.partition(), "seek failed; will retry");
                self.restore = Some(restore);
                return Ok(false);
            }
        }
        // A partition started at its end stays paused until that offset is committed (the next
        // transaction carries it): a crash before would start it at a later end, skipping records.
        let mut resumed = TopicPartitionList::new();
        for element in restore.committed.elements() {
            let owned = self.owned(element.topic(), element.partition());
            let held = owned.is_some_and(|o| {
                unanchored.iter().any(|(u, _, at_end)| *u == o && *at_end)
                    || self.anchor.contains(&o)
            });
            if !held {
                resumed.add_partition(element.topic(), element.partition());
            }
        }
        consumer
            .resume(&resumed)
            .map_err(|source| Error::Operation {
                operation: "resume restored partitions",
                source,
            })?;
        for owned in &restore.owned {
            self.partitions.insert(*owned, PartitionState::Ready);
        }
        for (host, partition) in &restore.owned {
            self.hosts[*host].restored(*partition);
        }
        for element in restore.committed.elements() {
            let owned = self.owned(element.topic(), element.partition());
            match (owned, element.offset()) {
                (Some(owned), Offset::Offset(o)) => {
                    self.positions.insert(owned, o);
                }
                (Some(owned), _) => {
                    self.positions.remove(&owned);
                }
                (None, _) => {}
            }
        }
        for (owned, at, at_end) in unanchored {
            self.positions.insert(owned, at);
            if at_end {
                self.anchor.insert(owned);
            }
        }

        let states: usize = self.hosts.iter().map(|h| h.states()).sum();
        tracing::info!(
            partitions = restore.owned.len(),
            states,
            ms = restore.started.elapsed().as_millis() as u64,
            "state restored; partitions resumed"
        );
        Ok(true)
    }

    /// Begin restoring every partition waiting for it. `Ok(false)` when there is none, or its committed
    /// offsets are not stable yet (tried again next turn).
    fn start_restore(
        &mut self,
        consumer: &BaseConsumer<Rebalances>,
    ) -> Result<bool, ProcessorError> {
        let owned: Vec<Owned> = self
            .partitions
            .iter()
            .filter(|(_, s)| **s == PartitionState::Restoring)
            .map(|(o, _)| *o)
            .collect();
        if owned.is_empty() {
            return Ok(false);
        }
        // The on-disk store is opened now, when the group has given this instance partitions (and
        // so fenced an older one under its identity, which lets go of the file as it stops).
        if let Some(local) = self.local.as_mut() {
            if !local.open()? {
                return Ok(false);
            }
            // What an abandoned restore queued (states with their checkpoints) is written first, so
            // that the checkpoints read next are the latest.
            local.write(std::iter::empty(), false)?;
        }
        let started = Instant::now();
        // Committed offsets first: with read_committed, the broker answers only once no transactional
        // offset commit is pending, so a previous owner's last transaction has ended (committed or
        // aborted) before the changelog is read.
        let mut commands = TopicPartitionList::new();
        for &(host, partition) in &owned {
            commands.add_partition(&self.hosts[host].topics().input, partition);
        }
        let committed = match consumer.committed_offsets(commands, COMMITTED_TIMEOUT) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "committed offsets not stable yet; will retry");
                return Ok(false);
            }
        };
        let mut readers = Vec::new();
        for host in 0..self.hosts.len() {
            let parts: Vec<i32> = owned
                .iter()
                .filter(|(h, _)| *h == host)
                .map(|(_, p)| *p)
                .collect();
            if parts.is_empty() {
                continue;
            }
            for &p in &parts {
                self.hosts[host].drop_partition(p);
            }
            // A host with no changelog (a router) has nothing to restore: it is only positioned.
            if let Some(topic) = self.hosts[host].topics().changelog.clone() {
                readers.push(self.reader(host, &topic, &parts)?);
            }
        }
        self.restore = Some(Restore {
            owned,
            committed,
            readers,
            started,
            retry_at: None,
        });
        Ok(true)
    }

    /// A consumer of `partitions` of host `host`'s changelog from the beginning (read_committed).
    fn reader(
        &mut self,
        host: usize,
        topic: &str,
        partitions: &[i32],
    ) -> Result<Reader, ProcessorError> {
        let mut config = self.kafka.consumer_config(
            &format!("{}-restore", self.service),
            &format!("{}-restore", self.config.group_id),
            OffsetMode::Transactional,
        );
        config.set("enable.partition.eof", "true");
        // Its prefetch bounded too (it reads as fast as the store takes the records).
        for (key, value) in [
            ("queued.min.messages", "10000"),
            ("queued.max.messages.kbytes", "16384"),
        ] {
            if !self.kafka.properties.contains_key(key) {
                config.set(key, value);
            }
        }
        let consumer: BaseConsumer<ReadsToEnd> =
            config
                .create_with_context(ReadsToEnd)
                .map_err(|source| Error::Client {
                    what: "restore consumer",
                    source,
                })?;
        // The partitions' leaders known before they are assigned: a partition assigned at its
        // beginning with no leader known yet waits out librdkafka's 500 ms offset query retry (measured:
        // a 10,000 record restore took 540 ms, 400 of them before the first record).
        if let Err(e) = consumer.fetch_metadata(Some(topic), METADATA_TIMEOUT) {
            tracing::warn!(error = %e, topic, "cannot read the changelog's metadata before restoring it");
        }
        // With the on-disk store: each partition from its checkpoint when it has a usable one.
        let mut stored = match (&self.local, self.hosts[host].stores_states()) {
            (Some(_), true) => Some(Stored {
                topic: topic.to_string(),
                verify: std::collections::HashMap::new(),
                last: std::collections::HashMap::new(),
                known: HashSet::new(),
            }),
            _ => None,
        };
        let mut list = TopicPartitionList::new();
        for &p in partitions {
            let mut from = Offset::Beginning;
            if let (Some(local), Some(stored)) = (self.local.as_mut(), stored.as_mut())
                && let Some(checkpoint) = local.usable_checkpoint(topic, p)?
            {
                from = Offset::Offset(checkpoint.offset);
                stored.verify.insert(p, checkpoint);
            }
            list.add_partition_offset(topic, p, from)
                .map_err(|source| Error::Operation {
                    operation: "assign the changelog",
                    source,
                })?;
        }
        consumer.assign(&list).map_err(|source| Error::Operation {
            operation: "assign the changelog",
            source,
        })?;
        Ok(Reader {
            host,
            consumer,
            remaining: partitions.iter().copied().collect(),
            read: 0,
            stored,
        })
    }

    /// Read `reader`'s changelog until its end or `deadline`.
    fn read_changelog(
        &mut self,
        reader: &mut Reader,
        deadline: Instant,
    ) -> Result<Step, ProcessorError> {
        if reader.stored.is_some() {
            return self.read_changelog_to_store(reader, deadline);
        }
        let host = reader.host;
        let aggregate = self.hosts[host].aggregate_type();
        let restored = self.meters.restored.with_label_values(&[aggregate]);
        while !reader.remaining.is_empty() {
            if self.shutdown.is_triggered() || Instant::now() >= deadline {
                return Ok(Step::Later);
            }
            match reader.consumer.poll(Duration::from_millis(10)) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    reader.remaining.remove(&p);
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, aggregate, "restore consumer error")
                }
                Some(Ok(m)) => {
                    let topic = m.topic();
                    let fail = |why: String| ProcessorError::Changelog {
                        topic: topic.to_string(),
                        partition: m.partition(),
                        offset: m.offset(),
                        why,
                    };
                    let key = m
                        .key()
                        .map(|k| std::str::from_utf8(k).map_err(|e| fail(format!("key: {e}"))))
                        .transpose()?
                        .ok_or_else(|| fail("no key".into()))?;
                    let value = match m.payload() {
                        None => None,
                        Some(bytes) => {
                            match self
                                .block_on(self.codec.decode_value(bytes, &Upcasters::default()))
                            {
                                Ok(d) => Some(d.value),
                                Err(WireError::Registry(e)) => {
                                    // Read this record again next turn.
                                    tracing::warn!(error = %e, "registry unavailable while restoring; retrying");
                                    if let Err(e) = reader.consumer.seek(
                                        topic,
                                        m.partition(),
                                        Offset::Offset(m.offset()),
                                        CALL_TIMEOUT,
                                    ) {
                                        tracing::warn!(error = %e, "cannot rewind the restore; starting it again");
                                        return Ok(Step::Restart);
                                    }
                                    return Ok(Step::Backoff);
                                }
                                Err(e) => return Err(fail(e.to_string())),
                            }
                        }
                    };
                    self.hosts[host]
                        .restore(m.partition(), key, value.as_ref())
                        .map_err(fail)?;
                    restored.inc();
                    reader.read += 1;
                }
            }
        }
        Ok(Step::Done)
    }

    /// Read `reader`'s changelog into the on-disk store until its end or `deadline`: each partition
    /// started from a checkpoint must first show the record the checkpoint names, else its stored
    /// states are not this changelog's (or are too far behind) and it is read again from the start.
    fn read_changelog_to_store(
        &mut self,
        reader: &mut Reader,
        deadline: Instant,
    ) -> Result<Step, ProcessorError> {
        let aggregate = self.hosts[reader.host].aggregate_type();
        let restored = self.meters.restored.with_label_values(&[aggregate]);
        let state_record = self.hosts[reader.host].state_record();
        let (Some(stored), true) = (reader.stored.as_mut(), self.local.is_some()) else {
            return Ok(Step::Done);
        };
        let mut outcome = Step::Done;
        while !reader.remaining.is_empty() {
            if self.shutdown.is_triggered() || Instant::now() >= deadline {
                outcome = Step::Later;
                break;
            }
            let stale = |p: i32, why: &str, stored: &mut Stored| {
                tracing::warn!(topic = %stored.topic, partition = p, why, "the stored states do not follow the changelog; reading it from the start");
                stored.verify.remove(&p);
                stored.last.remove(&p);
                p
            };
            let mut restart = None;
            match reader.consumer.poll(Duration::from_millis(10)) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    if stored.verify.contains_key(&p) {
                        restart = Some(stale(
                            p,
                            "the checkpoint is past the changelog's end",
                            stored,
                        ));
                    } else {
                        reader.remaining.remove(&p);
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, aggregate, "restore consumer error")
                }
                Some(Ok(m)) => {
                    let p = m.partition();
                    let Some(key) = m.key() else {
                        return Err(ProcessorError::Changelog {
                            topic: stored.topic.clone(),
                            partition: p,
                            offset: m.offset(),
                            why: "no key".into(),
                        });
                    };
                    let timestamp = m.timestamp().to_millis().unwrap_or(0);
                    if let Some(checkpoint) = stored.verify.get(&p) {
                        if checkpoint.offset == m.offset()
                            && checkpoint.timestamp_ms == timestamp
                            && checkpoint.key == key
                        {
                            // The store reflects the changelog up to here: read on from the next.
                            stored.verify.remove(&p);
                            continue;
                        }
                        restart = Some(stale(p, "the checkpoint's record is not there", stored));
                    } else {
                        let key =
                            std::str::from_utf8(key).map_err(|e| ProcessorError::Changelog {
                                topic: stored.topic.clone(),
                                partition: p,
                                offset: m.offset(),
                                why: format!("key: {e}"),
                            })?;
                        match m
                            .payload()
                            .map(|b| self.is_state_record(stored, b, state_record))
                        {
                            None | Some(Some(true)) => {}
                            Some(Some(false)) => {
                                return Err(ProcessorError::Changelog {
                                    topic: stored.topic.clone(),
                                    partition: p,
                                    offset: m.offset(),
                                    why: format!("not a {state_record} in the wire format"),
                                });
                            }
                            // The registry cannot say: read this record again after a pause.
                            Some(None) => {
                                if let Err(e) = reader.consumer.seek(
                                    &stored.topic,
                                    p,
                                    Offset::Offset(m.offset()),
                                    CALL_TIMEOUT,
                                ) {
                                    tracing::warn!(error = %e, "cannot rewind the restore; starting it again");
                                    if let Some(local) = self.local.as_mut() {
                                        local.forget()?;
                                    }
                                    return Ok(Step::Restart);
                                }
                                return Ok(Step::Backoff);
                            }
                        }
                        let Some(local) = self.local.as_mut() else {
                            return Ok(Step::Restart);
                        };
                        local.restored(
                            &stored.topic,
                            p,
                            key.to_string(),
                            m.payload().map(<[u8]>::to_vec),
                        );
                        // The checkpoint is as old as the record it names, not the time it was read:
                        // a tombstone older than delete.retention.ms may be gone by the next start.
                        let last =
                            stored
                                .last
                                .entry(p)
                                .or_insert_with(|| causeway_store::Checkpoint {
                                    offset: 0,
                                    timestamp_ms: 0,
                                    key: Vec::new(),
                                    written_at_ms: 0,
                                });
                        last.offset = m.offset();
                        last.timestamp_ms = timestamp;
                        last.written_at_ms = timestamp.min(super::now_ms());
                        last.key.clear();
                        last.key.extend_from_slice(key.as_bytes());
                        restored.inc();
                        reader.read += 1;
                    }
                }
            }
            if let Some(p) = restart {
                let Some(local) = self.local.as_mut() else {
                    return Ok(Step::Restart);
                };
                local.clear(&stored.topic, p)?;
                if let Err(e) =
                    reader
                        .consumer
                        .seek(&stored.topic, p, Offset::Beginning, CALL_TIMEOUT)
                {
                    tracing::warn!(error = %e, "cannot rewind the restore; starting it again");
                    // What this step read goes: the restore starts over from the checkpoints.
                    local.forget()?;
                    return Ok(Step::Restart);
                }
            }
        }
        // What was read, with where it got to, queued for the store (written in large batches): a
        // restore interrupted goes on from the last one written.
        let Some(local) = self.local.as_mut() else {
            return Ok(Step::Restart);
        };
        let topic = stored.topic.clone();
        let checkpoints: Vec<(i32, causeway_store::Checkpoint)> = stored.last.drain().collect();
        local.queue(
            checkpoints.into_iter().map(|(p, c)| (topic.as_str(), p, c)),
            matches!(outcome, Step::Done),
        )?;
        Ok(outcome)
    }

    /// Whether `bytes` is a changelog record of the host's state record: framed (magic byte, schema
    /// id), and the first record of each schema id decoded whole and named `state_record`. Records
    /// are stored undecoded; one that frames but does not decode stops the processor when a command
    /// reads it back.
    /// `None` when the registry cannot be asked.
    fn is_state_record(
        &self,
        stored: &mut Stored,
        bytes: &[u8],
        state_record: &str,
    ) -> Option<bool> {
        let id = match bytes {
            [0, a, b, c, d, ..] => u32::from_be_bytes([*a, *b, *c, *d]),
            _ => return Some(false),
        };
        if stored.known.contains(&id) {
            return Some(true);
        }
        match self.block_on(self.codec.decode_value(bytes, &Upcasters::default())) {
            Ok(d) if d.full_name == state_record => {
                stored.known.insert(id);
                Some(true)
            }
            Ok(_) => Some(false),
            Err(WireError::Registry(e)) => {
                tracing::warn!(error = %e, "registry unavailable while restoring; retrying");
                None
            }
            Err(_) => Some(false),
        }
    }
}
