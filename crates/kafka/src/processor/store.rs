//! Aggregate states beyond memory (`[processor] state_dir`, docs/adr/0015-state-beyond-ram.md): the
//! latest changelog record of each aggregate in an on-disk store (causeway-store, one file per
//! instance) with, per changelog partition, a checkpoint: the last changelog record it reflects.
//!
//! - After each committed transaction the batch's changed states are written to the store with the
//!   offsets the broker gave their changelog records (delivery reports): the store only ever holds
//!   committed states. Those writes become durable every `state_flush_ms` and on a clean stop.
//! - A restore reads a partition's changelog from its checkpoint on, and first finds there the very
//!   record the checkpoint names (offset, timestamp, key); a store lost, unreadable, of another
//!   changelog (the record is not there), or older than the changelog's `delete.retention.ms` (a
//!   tombstone may have been compacted away since) is cleared and rebuilt from the beginning. Records
//!   read go to the store as they are, not decoded.
//! - A command reads its aggregate's state from the store when it is not in memory; after each write
//!   the least recently used states beyond `state_cache_states` leave memory.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use causeway_contracts::upcast::Upcasters;
use causeway_contracts::wire::WireError;
use causeway_store::{Batch, Checkpoint, Store};
use rdkafka::ClientContext;
use rdkafka::Message;
use rdkafka::producer::{DeliveryResult, Producer, ProducerContext};

use super::error::{BatchError, ProcessorError};
use super::{Run, now_ms};

/// The transactional producer's context: the last changelog record delivered per partition in the
/// open transaction (the store's next checkpoints).
#[derive(Debug, Default)]
pub(crate) struct Delivered {
    /// The changelog topics whose records are tracked.
    changelogs: Vec<String>,
    /// (changelog index, partition) -> the record with the highest offset.
    last: Mutex<HashMap<(usize, i32), Checkpoint>>,
}

impl Delivered {
    pub(crate) fn new(changelogs: Vec<String>) -> Self {
        Self {
            changelogs,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// Forget what was delivered (a transaction begins).
    pub(super) fn clear(&self) {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// What was delivered since [`Delivered::clear`]: (changelog topic, partition, last record).
    fn take(&self) -> Vec<(&str, i32, Checkpoint)> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.drain()
            .filter_map(|((topic, partition), c)| {
                Some((self.changelogs.get(topic)?.as_str(), partition, c))
            })
            .collect()
    }
}

impl ClientContext for Delivered {}

impl ProducerContext for Delivered {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let Ok(m) = result else {
            return;
        };
        let Some(index) = self.changelogs.iter().position(|t| t == m.topic()) else {
            return;
        };
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let entry = last.entry((index, m.partition()));
        let record = || Checkpoint {
            offset: m.offset(),
            timestamp_ms: m.timestamp().to_millis().unwrap_or(0),
            key: m.key().unwrap_or_default().to_vec(),
            written_at_ms: 0,
        };
        match entry {
            std::collections::hash_map::Entry::Occupied(mut o) => {
                if o.get().offset < m.offset() {
                    o.insert(record());
                }
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(record());
            }
        }
    }
}

/// The instance's on-disk store and what it writes next.
pub(super) struct LocalState {
    pub(super) store: Store,
    /// Changes waiting for the next write.
    batch: Batch,
    /// Most states in memory per host.
    cache_states: usize,
    /// How often writes are made durable.
    flush_every: Duration,
    last_flush: Instant,
    /// Per changelog topic: its `delete.retention.ms`.
    retention_ms: HashMap<String, i64>,
}

impl LocalState {
    pub(super) fn new(
        store: Store,
        cache_states: usize,
        flush_every: Duration,
        retention_ms: HashMap<String, i64>,
    ) -> Self {
        Self {
            store,
            batch: Batch::default(),
            cache_states,
            flush_every,
            last_flush: Instant::now(),
            retention_ms,
        }
    }

    /// The checkpoint of `partition` of `changelog` a restore may start from: `None` when there is
    /// none or it is too old (tombstones may have been compacted away since), and then the partition's
    /// stored states are cleared.
    pub(super) fn usable_checkpoint(
        &self,
        changelog: &str,
        partition: i32,
    ) -> Result<Option<Checkpoint>, ProcessorError> {
        let checkpoint = self
            .store
            .checkpoint(changelog, partition)
            .map_err(|e| ProcessorError::Store(e.to_string()))?;
        let retention = self
            .retention_ms
            .get(changelog)
            .copied()
            .unwrap_or(86_400_000);
        let usable = checkpoint.filter(|c| now_ms().saturating_sub(c.written_at_ms) < retention);
        if usable.is_none() {
            self.clear(changelog, partition)?;
        }
        Ok(usable)
    }

    /// Forget the stored states of `partition` of `changelog`.
    pub(super) fn clear(&self, changelog: &str, partition: i32) -> Result<(), ProcessorError> {
        self.store
            .clear(changelog, partition)
            .map_err(|e| ProcessorError::Store(e.to_string()))
    }

    /// Queue a changelog record read during a restore.
    pub(super) fn restored(
        &mut self,
        changelog: &str,
        partition: i32,
        key: &str,
        value: Option<&[u8]>,
    ) {
        self.batch.put(changelog, partition, key, value);
    }

    /// Write what is queued, with `checkpoints` (changelog, partition, last record); durable when
    /// `durable` or when the last durable write is `state_flush_ms` old.
    pub(super) fn write<'a>(
        &mut self,
        checkpoints: impl IntoIterator<Item = (&'a str, i32, Checkpoint)>,
        durable: bool,
    ) -> Result<(), ProcessorError> {
        let now = now_ms();
        for (changelog, partition, mut c) in checkpoints {
            c.written_at_ms = now;
            self.batch.checkpoint(changelog, partition, c);
        }
        let durable = durable || self.last_flush.elapsed() >= self.flush_every;
        if self.batch.is_empty() && !durable {
            return Ok(());
        }
        self.store
            .write(&self.batch, durable)
            .map_err(|e| ProcessorError::Store(e.to_string()))?;
        self.batch.clear();
        if durable {
            self.last_flush = Instant::now();
        }
        Ok(())
    }
}

impl Run {
    /// Before a command of host `host` on `partition` keyed `key` is decided: its aggregate's state in
    /// memory, read from the store when it left (a registry failure retries the batch).
    pub(super) fn load_state(
        &mut self,
        host: usize,
        partition: i32,
        key: &[u8],
    ) -> Result<(), BatchError> {
        let Some(local) = &self.local else {
            return Ok(());
        };
        let h = &self.hosts[host];
        let (Some(changelog), true) = (h.topics().changelog.as_deref(), h.stores_states()) else {
            return Ok(());
        };
        let Ok(key) = std::str::from_utf8(key) else {
            return Ok(());
        };
        if h.holds(partition, key) {
            return Ok(());
        }
        let Some(bytes) = local
            .store
            .get(changelog, partition, key)
            .map_err(|e| BatchError::Stop(ProcessorError::Store(e.to_string())))?
        else {
            return Ok(());
        };
        let decoded = match self.block_on(self.codec.decode_value(&bytes, &Upcasters::default())) {
            Ok(d) => d,
            Err(e @ WireError::Registry(_)) => return Err(e.into()),
            Err(e) => {
                return Err(BatchError::Stop(ProcessorError::Store(format!(
                    "the stored state of {key} (partition {partition} of {changelog}) cannot be read: {e}"
                ))));
            }
        };
        let changelog = changelog.to_string();
        self.hosts[host]
            .restore(partition, key, Some(&decoded.value))
            .map_err(|why| {
                BatchError::Stop(ProcessorError::Store(format!(
                    "the stored state of {key} (partition {partition} of {changelog}): {why}"
                )))
            })
    }

    /// The open transaction committed: its changed states to the store with their changelog offsets,
    /// then the least recently used states beyond the cache leave memory.
    pub(super) fn store_committed(&mut self) -> Result<(), ProcessorError> {
        let Some(local) = self.local.as_mut() else {
            return Ok(());
        };
        for ((host, partition, aggregate_id), bytes) in &self.batch_states {
            let h = &self.hosts[*host];
            if let (Some(changelog), true) = (h.topics().changelog.as_deref(), h.stores_states()) {
                local
                    .batch
                    .put(changelog, *partition, aggregate_id, Some(bytes));
            }
        }
        let delivered = self.producer.context().take();
        local.write(delivered, false)?;
        let cache = local.cache_states;
        for host in self.hosts.iter_mut().filter(|h| h.stores_states()) {
            host.evict_to(cache);
        }
        Ok(())
    }

    /// Make the store durable (a clean stop).
    pub(super) fn flush_store(&mut self) -> Result<(), ProcessorError> {
        match self.local.as_mut() {
            Some(local) => local.write(Vec::new(), true),
            None => Ok(()),
        }
    }
}
