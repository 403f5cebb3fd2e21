//! Aggregate states beyond memory (`[processor] state_dir`, docs/adr/0015-state-beyond-ram.md): the
//! latest changelog record of each aggregate in an on-disk store (causeway-store, one file per
//! instance) with, per changelog partition, a checkpoint: the last changelog record it reflects.
//!
//! - After each committed transaction the batch's changed states are written to the store with the
//!   offsets the broker gave their changelog records (delivery reports): the store only ever holds
//!   committed states. Those writes become durable every `state_flush_ms` and on a clean stop. They run
//!   on a thread of their own while the loop goes on; a store read or the next write waits for them.
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

/// How many bytes of changelog records a restore reads before writing them to the store.
const RESTORE_WRITE_BYTES: usize = 32 << 20;

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
        // A record librdkafka reports delivered without an offset (a retried batch the broker had
        // already written: DUPLICATE_SEQUENCE_NUMBER) names no place; the partition's checkpoint
        // then stays behind, which is safe (the store is ahead of it).
        let Ok(m) = result else {
            return;
        };
        if m.offset() < 0 {
            return;
        }
        let Some(index) = self.changelogs.iter().position(|t| t == m.topic()) else {
            return;
        };
        let timestamp_ms = m.timestamp().to_millis().unwrap_or(0);
        let key = m.key().unwrap_or_default();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match last.entry((index, m.partition())) {
            std::collections::hash_map::Entry::Occupied(mut o) => {
                let c = o.get_mut();
                if c.offset < m.offset() {
                    c.offset = m.offset();
                    c.timestamp_ms = timestamp_ms;
                    c.key.clear();
                    c.key.extend_from_slice(key);
                }
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(Checkpoint {
                    offset: m.offset(),
                    timestamp_ms,
                    key: key.to_vec(),
                    written_at_ms: 0,
                });
            }
        }
    }
}

/// What a write on a thread of its own ends with.
type WriteResult = Result<(), causeway_store::StoreError>;

/// The instance's on-disk store and what it writes next.
pub(super) struct LocalState {
    /// Its file, and the memory for its cache.
    file: std::path::PathBuf,
    cache_bytes: usize,
    /// Open once the first restore begins.
    store: Option<std::sync::Arc<Store>>,
    /// A write under way on a thread of its own (a committed batch's states, a restore's records)
    /// while the loop goes on; the next write and every read of states wait for it first
    /// ([`LocalState::settle`]).
    writing: std::cell::RefCell<Option<std::thread::JoinHandle<WriteResult>>>,
    /// When opening last found the file held by another process (the warning is not repeated).
    held_since: Option<Instant>,
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
        file: std::path::PathBuf,
        cache_bytes: usize,
        cache_states: usize,
        flush_every: Duration,
        retention_ms: HashMap<String, i64>,
    ) -> Self {
        Self {
            file,
            cache_bytes,
            store: None,
            writing: std::cell::RefCell::new(None),
            held_since: None,
            batch: Batch::default(),
            cache_states,
            flush_every,
            last_flush: Instant::now(),
            retention_ms,
        }
    }

    /// Open the file if it is not yet: `Ok(false)` while another process holds it (an older instance
    /// under this identity, fenced and stopping).
    pub(super) fn open(&mut self) -> Result<bool, ProcessorError> {
        if self.store.is_some() {
            return Ok(true);
        }
        match Store::open(&self.file, self.cache_bytes) {
            Ok(store) => {
                tracing::info!(file = %self.file.display(), cache_states = self.cache_states, "aggregate states on disk");
                self.store = Some(std::sync::Arc::new(store));
                self.held_since = None;
                Ok(true)
            }
            Err(e) if e.is_held() => {
                if self.held_since.is_none() {
                    tracing::warn!(error = %e, "the state store is held by another process; restoring when it lets go");
                    self.held_since = Some(Instant::now());
                }
                Ok(false)
            }
            Err(e) => Err(ProcessorError::Store(e.to_string())),
        }
    }

    /// The open store.
    pub(super) fn store(&self) -> Result<&std::sync::Arc<Store>, ProcessorError> {
        self.store
            .as_ref()
            .ok_or_else(|| ProcessorError::Store(format!("{} is not open", self.file.display())))
    }

    /// The checkpoint of `partition` of `changelog` a restore may start from: `None` when there is
    /// none or it is too old (tombstones may have been compacted away since), and then the partition's
    /// stored states are cleared.
    pub(super) fn usable_checkpoint(
        &mut self,
        changelog: &str,
        partition: i32,
    ) -> Result<Option<Checkpoint>, ProcessorError> {
        let checkpoint = self
            .store()?
            .checkpoint(changelog, partition)
            .map_err(|e| ProcessorError::Store(e.to_string()))?;
        // Unknown (the topic's config could not be read): no checkpoint is trusted.
        let retention = self.retention_ms.get(changelog).copied().unwrap_or(0);
        let usable = checkpoint.filter(|c| now_ms().saturating_sub(c.written_at_ms) < retention);
        if usable.is_none() {
            self.clear(changelog, partition)?;
        }
        Ok(usable)
    }

    /// Wait for the write under way, if any; its failure is this call's.
    pub(super) fn settle(&self) -> Result<(), ProcessorError> {
        let Some(writing) = self.writing.take() else {
            return Ok(());
        };
        match writing.join() {
            Ok(written) => written.map_err(|e| ProcessorError::Store(e.to_string())),
            Err(_) => Err(ProcessorError::Store(format!(
                "the write to {} panicked",
                self.file.display()
            ))),
        }
    }

    /// Forget the stored states of `partition` of `changelog`, those queued for it too.
    pub(super) fn clear(&mut self, changelog: &str, partition: i32) -> Result<(), ProcessorError> {
        self.settle()?;
        self.batch.drop_partition(changelog, partition);
        self.store()?
            .clear(changelog, partition)
            .map_err(|e| ProcessorError::Store(e.to_string()))
    }

    /// Queue a changelog record read during a restore.
    pub(super) fn restored(
        &mut self,
        changelog: &str,
        partition: i32,
        key: String,
        value: Option<Vec<u8>>,
    ) {
        self.batch.put(changelog, partition, key, value);
    }

    /// Queue `checkpoints` of what a restore step read. Once [`RESTORE_WRITE_BYTES`] are queued they
    /// are written on a thread of their own while the restore reads on (one write at a time, in
    /// order); when `durable` (the restore is done) everything queued is written and made durable
    /// before this returns. The restoring partitions' states are read only after that.
    pub(super) fn queue<'a>(
        &mut self,
        checkpoints: impl IntoIterator<Item = (&'a str, i32, Checkpoint)>,
        durable: bool,
    ) -> Result<(), ProcessorError> {
        if durable {
            return self.write(checkpoints, true);
        }
        self.checkpoint(checkpoints);
        if self.batch.bytes() < RESTORE_WRITE_BYTES {
            return Ok(());
        }
        self.write_behind(false)
    }

    /// Write what is queued with `checkpoints` on a thread of its own while the loop goes on (durable
    /// when `state_flush_ms` is due: the fsync off the loop). Whatever reads the store or writes it
    /// next waits for it first ([`LocalState::settle`]).
    pub(super) fn write_committed<'a>(
        &mut self,
        checkpoints: impl IntoIterator<Item = (&'a str, i32, Checkpoint)>,
    ) -> Result<(), ProcessorError> {
        match self.due(checkpoints, false) {
            Some(durable) => self.write_behind(durable),
            None => Ok(()),
        }
    }

    /// Hand what is queued to a thread that writes it, once the previous such write is done.
    fn write_behind(&mut self, durable: bool) -> Result<(), ProcessorError> {
        self.settle()?;
        let store = std::sync::Arc::clone(self.store()?);
        let batch = std::mem::take(&mut self.batch);
        let spawned = std::thread::Builder::new()
            .name("causeway-store-write".into())
            .spawn(move || store.write(&batch, durable));
        match spawned {
            Ok(handle) => {
                self.writing.replace(Some(handle));
                if durable {
                    self.last_flush = Instant::now();
                }
                Ok(())
            }
            Err(e) => Err(ProcessorError::Store(format!(
                "cannot start a thread to write {}: {e}",
                self.file.display()
            ))),
        }
    }

    /// Forget what is queued (a restore that starts over); a write under way completes (what it
    /// writes comes with its checkpoints).
    pub(super) fn forget(&mut self) -> Result<(), ProcessorError> {
        self.settle()?;
        self.batch.clear();
        Ok(())
    }

    /// Queue `checkpoints` with what is queued; whether to write now, and durably (`durable`, or
    /// `state_flush_ms` since the last durable write): `None` when there is nothing to write.
    fn due<'a>(
        &mut self,
        checkpoints: impl IntoIterator<Item = (&'a str, i32, Checkpoint)>,
        durable: bool,
    ) -> Option<bool> {
        self.checkpoint(checkpoints);
        let durable = durable || self.flush_due();
        (durable || !self.batch.is_empty()).then_some(durable)
    }

    /// Queue `checkpoints` (changelog, partition, last record) with the states they cover.
    fn checkpoint<'a>(
        &mut self,
        checkpoints: impl IntoIterator<Item = (&'a str, i32, Checkpoint)>,
    ) {
        for (changelog, partition, c) in checkpoints {
            self.batch.checkpoint(changelog, partition, c);
        }
    }

    /// Whether the next write is a durable one.
    fn flush_due(&self) -> bool {
        self.last_flush.elapsed() >= self.flush_every
    }

    /// Write what is queued, with `checkpoints` (changelog, partition, last record, its
    /// `written_at_ms` set); durable when `durable` or when the last durable write is
    /// `state_flush_ms` old.
    pub(super) fn write<'a>(
        &mut self,
        checkpoints: impl IntoIterator<Item = (&'a str, i32, Checkpoint)>,
        durable: bool,
    ) -> Result<(), ProcessorError> {
        let Some(durable) = self.due(checkpoints, durable) else {
            return Ok(());
        };
        self.settle()?;
        self.store()?
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
        // The last batch's states may still be on their way to the store.
        local.settle().map_err(BatchError::Stop)?;
        let Some(bytes) = local
            .store()
            .map_err(BatchError::Stop)?
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
        // Not open: no restore has begun, so no state of a store-backed host was decided.
        let Some(local) = self.local.as_mut().filter(|l| l.store.is_some()) else {
            return Ok(());
        };
        // Moved out, not copied: the next batch starts with them cleared.
        for ((host, partition, aggregate_id), bytes) in self.batch_states.drain() {
            let h = &self.hosts[host];
            if let (Some(changelog), true) = (h.topics().changelog.as_deref(), h.stores_states()) {
                local
                    .batch
                    .put(changelog, partition, aggregate_id, Some(bytes));
            }
        }
        let now = now_ms();
        let mut checkpoints = self.producer.context().take();
        if local.flush_due() {
            refresh(local, &self.hosts, &self.partitions, &mut checkpoints)?;
        }
        for (_, _, c) in &mut checkpoints {
            c.written_at_ms = now;
        }
        local.write_committed(checkpoints)?;
        let cache = local.cache_states;
        for host in self.hosts.iter_mut().filter(|h| h.stores_states()) {
            host.evict_to(cache);
        }
        Ok(())
    }

    /// Make the store durable (a clean stop), its owned partitions' checkpoints refreshed.
    pub(super) fn flush_store(&mut self) -> Result<(), ProcessorError> {
        let Some(local) = self.local.as_mut().filter(|l| l.store.is_some()) else {
            return Ok(());
        };
        let mut checkpoints = Vec::new();
        refresh(local, &self.hosts, &self.partitions, &mut checkpoints)?;
        let now = now_ms();
        for (_, _, c) in &mut checkpoints {
            c.written_at_ms = now;
        }
        local.write(checkpoints, true)
    }
}

/// Add to `checkpoints` those of the partitions this instance owns and has restored, and that are not
/// there yet, to be written again as of now: they reflect their changelog up to now (this instance
/// alone writes them), written to lately or not, so that an idle partition's checkpoint does not age
/// past `delete.retention.ms`.
fn refresh<'a>(
    local: &LocalState,
    hosts: &'a [Box<dyn causeway_contracts::hosting::Hosted>],
    partitions: &HashMap<super::Owned, super::PartitionState>,
    checkpoints: &mut Vec<(&'a str, i32, Checkpoint)>,
) -> Result<(), ProcessorError> {
    for (&(host, partition), state) in partitions {
        let h = &hosts[host];
        let (Some(changelog), true) = (h.topics().changelog.as_deref(), h.stores_states()) else {
            continue;
        };
        if *state != super::PartitionState::Ready
            || checkpoints
                .iter()
                .any(|(t, p, _)| *p == partition && *t == changelog)
        {
            continue;
        }
        if let Some(c) = local
            .store()?
            .checkpoint(changelog, partition)
            .map_err(|e| ProcessorError::Store(e.to_string()))?
        {
            checkpoints.push((changelog, partition, c));
        }
    }
    Ok(())
}
