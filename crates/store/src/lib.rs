//! The processor's local state store: the latest changelog record of each aggregate, by changelog
//! partition and key, in one redb file per processor instance, with a checkpoint per partition: the
//! changelog offset the stored records reflect. On a restart the processor reads only the changelog
//! from the checkpoint on; a store lost, unreadable or stale (docs/adr/0015-state-beyond-ram.md) is
//! rebuilt from the whole changelog.
//!
//! The store only ever holds what a committed Kafka transaction wrote: the processor writes it after
//! the commit (or while reading the changelog, which it reads committed). Writes are not made durable
//! one by one: [`Store::write`] with `durable = false` is lost by a crash, and the file reopens at the
//! last durable write, whose checkpoint is older, so that the changelog read after the crash covers the
//! difference.

use std::path::{Path, PathBuf};

use redb::{Database, Durability, ReadableDatabase, ReadableTableMetadata, TableDefinition};

/// The layout of the records this crate writes; a file of another version is rebuilt.
const FORMAT: u32 = 1;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// A failure of the store: the file cannot be opened, read or written.
#[derive(Debug, thiserror::Error)]
#[error("state store {path}: {what}: {why}")]
pub struct StoreError {
    path: PathBuf,
    what: &'static str,
    why: String,
}

impl StoreError {
    /// Whether the file is held by another process (it may let go soon).
    pub fn is_held(&self) -> bool {
        self.what == HELD
    }
}

/// [`StoreError::what`] of a file another process holds.
const HELD: &str = "open (held)";

/// The last changelog record a partition's stored states reflect: where a restart reads on from, and
/// what it must find there for the store to be the changelog's (not one of a topic deleted and
/// created again, or of another cluster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The offset of that record.
    pub offset: i64,
    /// Its timestamp (ms).
    pub timestamp_ms: i64,
    /// Its key.
    pub key: Vec<u8>,
    /// When the checkpoint was written (ms since the epoch): a store older than the changelog's
    /// `delete.retention.ms` may miss tombstones compacted away since.
    pub written_at_ms: i64,
}

impl Checkpoint {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(28 + self.key.len());
        out.extend_from_slice(&FORMAT.to_be_bytes());
        out.extend_from_slice(&self.offset.to_be_bytes());
        out.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        out.extend_from_slice(&self.written_at_ms.to_be_bytes());
        out.extend_from_slice(&self.key);
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let format = u32::from_be_bytes(bytes.get(0..4)?.try_into().ok()?);
        if format != FORMAT {
            return None;
        }
        let long = |at: usize| -> Option<i64> {
            Some(i64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
        };
        Some(Self {
            offset: long(4)?,
            timestamp_ms: long(12)?,
            written_at_ms: long(20)?,
            key: bytes.get(28..)?.to_vec(),
        })
    }
}

/// The name of a partition's table of states.
fn states_table(topic: &str, partition: i32) -> String {
    format!("states/{topic}/{partition}")
}

/// The meta key of a partition's checkpoint.
fn checkpoint_key(topic: &str, partition: i32) -> String {
    format!("checkpoint/{topic}/{partition}")
}

/// Changes to write in one transaction of the store.
#[derive(Debug, Default)]
pub struct Batch {
    /// The partitions it touches: (topic, partition).
    tables: Vec<(String, i32)>,
    /// (table index, key, value; `None` deletes), in the order given.
    puts: Vec<(usize, String, Option<Vec<u8>>)>,
    /// (table index, checkpoint).
    checkpoints: Vec<(usize, Checkpoint)>,
    /// The keys' and values' bytes.
    bytes: usize,
}

impl Batch {
    fn table(&mut self, topic: &str, partition: i32) -> usize {
        match self
            .tables
            .iter()
            .position(|(t, p)| *p == partition && t == topic)
        {
            Some(i) => i,
            None => {
                self.tables.push((topic.to_string(), partition));
                self.tables.len() - 1
            }
        }
    }

    /// Store `value` (a changelog record's bytes; `None`: a tombstone) for `key` of `partition`.
    pub fn put(&mut self, topic: &str, partition: i32, key: String, value: Option<Vec<u8>>) {
        let table = self.table(topic, partition);
        self.bytes += PUT_OVERHEAD + key.len() + value.as_ref().map_or(0, Vec::len);
        self.puts.push((table, key, value));
    }

    /// About the memory it holds: its keys and values and a fixed cost per put.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Forget what it holds for `partition` of `topic` (a partition whose stored states are cleared).
    pub fn drop_partition(&mut self, topic: &str, partition: i32) {
        let Some(table) = self
            .tables
            .iter()
            .position(|(t, p)| *p == partition && t == topic)
        else {
            return;
        };
        self.puts.retain(|(t, _, _)| *t != table);
        self.checkpoints.retain(|(t, _)| *t != table);
        self.bytes = self
            .puts
            .iter()
            .map(|(_, k, v)| PUT_OVERHEAD + k.len() + v.as_ref().map_or(0, Vec::len))
            .sum();
    }

    /// Record that `partition` of `topic` now reflects its changelog up to `checkpoint`.
    pub fn checkpoint(&mut self, topic: &str, partition: i32, checkpoint: Checkpoint) {
        let table = self.table(topic, partition);
        self.checkpoints.push((table, checkpoint));
    }

    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.puts.is_empty() && self.checkpoints.is_empty()
    }

    /// Forget what it holds, keeping its memory.
    pub fn clear(&mut self) {
        self.tables.clear();
        self.puts.clear();
        self.checkpoints.clear();
        self.bytes = 0;
    }
}

/// Whether opening failed because of what the file holds (not a store, damaged, of an older
/// format), rather than because of the machine (I/O, permissions, space).
fn unreadable(e: &redb::DatabaseError) -> bool {
    match e {
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(_))
        | redb::DatabaseError::UpgradeRequired(_)
        | redb::DatabaseError::RepairAborted => true,
        redb::DatabaseError::Storage(redb::StorageError::Io(io)) => {
            io.kind() == std::io::ErrorKind::InvalidData
        }
        _ => false,
    }
}

/// What a put costs in memory beside its key and value (the tuple, the two allocations).
const PUT_OVERHEAD: usize = 64;

/// One instance's store: a redb file.
pub struct Store {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    fn error(&self, what: &'static str, why: impl std::fmt::Display) -> StoreError {
        StoreError {
            path: self.path.clone(),
            what,
            why: why.to_string(),
        }
    }

    /// Open (or create) the store at `path` with at most `cache_bytes` of memory for its cache. A file
    /// that is not a store of this version is set aside (renamed `*.unreadable`) and a new one is
    /// created: the changelog rebuilds it.
    pub fn open(path: &Path, cache_bytes: usize) -> Result<Self, StoreError> {
        let fail = |what: &'static str, why: String| StoreError {
            path: path.to_path_buf(),
            what,
            why,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| fail("create its folder", e.to_string()))?;
        }
        let create = || Database::builder().set_cache_size(cache_bytes).create(path);
        // redb may panic on a file damaged outside it (its documentation says so): that file is
        // unreadable like a corrupted one, not a reason to exit and fail again at every restart.
        let opened = std::panic::catch_unwind(create).unwrap_or_else(|panic| {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(redb::DatabaseError::Storage(redb::StorageError::Corrupted(
                format!("redb panicked opening it: {why}"),
            )))
        });
        let db = match opened {
            Ok(db) => db,
            // A file that is not (or no longer) a store of this version: rebuilt from the changelog.
            Err(e) if unreadable(&e) => {
                let aside = path.with_extension(format!(
                    "unreadable-{}",
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0)
                ));
                std::fs::rename(path, &aside)
                    .map_err(|r| fail("set an unreadable file aside", format!("{e}; {r}")))?;
                create().map_err(|e| fail("create", e.to_string()))?
            }
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(fail(
                    HELD,
                    "another process has it open (an older instance under the same transactional \
                     id, or two instances sharing one state folder and id)"
                        .into(),
                ));
            }
            // I/O and the like: the file may be fine; fail and let a restart try again.
            Err(e) => return Err(fail("open", e.to_string())),
        };
        let store = Self {
            db,
            path: path.to_path_buf(),
        };
        Ok(store)
    }

    /// The checkpoint of `partition` of `topic`, if its states are stored.
    pub fn checkpoint(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Option<Checkpoint>, StoreError> {
        let read = self.db.begin_read().map_err(|e| self.error("read", e))?;
        let meta = match read.open_table(META) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.error("read", e)),
        };
        let found = meta
            .get(checkpoint_key(topic, partition).as_str())
            .map_err(|e| self.error("read", e))?;
        Ok(found.and_then(|v| Checkpoint::decode(v.value())))
    }

    /// The stored record of `key` in `partition` of `topic`.
    pub fn get(
        &self,
        topic: &str,
        partition: i32,
        key: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let read = self.db.begin_read().map_err(|e| self.error("read", e))?;
        let name = states_table(topic, partition);
        let table = match read.open_table(TableDefinition::<&str, &[u8]>::new(&name)) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.error("read", e)),
        };
        let found = table.get(key).map_err(|e| self.error("read", e))?;
        Ok(found.map(|v| v.value().to_vec()))
    }

    /// How many states `partition` of `topic` holds.
    pub fn len(&self, topic: &str, partition: i32) -> Result<u64, StoreError> {
        let read = self.db.begin_read().map_err(|e| self.error("read", e))?;
        let name = states_table(topic, partition);
        match read.open_table(TableDefinition::<&str, &[u8]>::new(&name)) {
            Ok(t) => t.len().map_err(|e| self.error("read", e)),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
            Err(e) => Err(self.error("read", e)),
        }
    }

    /// Forget the states and checkpoint of `partition` of `topic` (durably).
    pub fn clear(&self, topic: &str, partition: i32) -> Result<(), StoreError> {
        let write = self.begin(true)?;
        let name = states_table(topic, partition);
        write
            .delete_table(TableDefinition::<&str, &[u8]>::new(&name))
            .map_err(|e| self.error("write", e))?;
        {
            let mut meta = write.open_table(META).map_err(|e| self.error("write", e))?;
            meta.remove(checkpoint_key(topic, partition).as_str())
                .map_err(|e| self.error("write", e))?;
        }
        write.commit().map_err(|e| self.error("commit", e))
    }

    /// Write `batch` in one transaction: all of it or none. With `durable`, it and every write before
    /// it survive a crash once this returns; without, a crash may take them back to the last durable
    /// write.
    pub fn write(&self, batch: &Batch, durable: bool) -> Result<(), StoreError> {
        let write = self.begin(durable)?;
        {
            // Table by table, each opened once; within a table in key order, which the B-tree takes
            // far faster than random order (a restore writes thousands of keys at once), the puts of
            // one key in the order given (the last wins: the sort is stable).
            let mut order: Vec<usize> = (0..batch.puts.len()).collect();
            order.sort_by(|&a, &b| {
                let (ta, ka, _) = &batch.puts[a];
                let (tb, kb, _) = &batch.puts[b];
                ta.cmp(tb).then_with(|| ka.cmp(kb))
            });
            for (index, (topic, partition)) in batch.tables.iter().enumerate() {
                let first = order.partition_point(|&i| batch.puts[i].0 < index);
                let last = order.partition_point(|&i| batch.puts[i].0 <= index);
                if first == last {
                    continue;
                }
                let name = states_table(topic, *partition);
                let mut table = write
                    .open_table(TableDefinition::<&str, &[u8]>::new(&name))
                    .map_err(|e| self.error("write", e))?;
                for (_, key, value) in order[first..last].iter().map(|&i| &batch.puts[i]) {
                    match value {
                        Some(v) => table.insert(key.as_str(), v.as_slice()).map(|_| ()),
                        None => table.remove(key.as_str()).map(|_| ()),
                    }
                    .map_err(|e| self.error("write", e))?;
                }
            }
            let mut meta = write.open_table(META).map_err(|e| self.error("write", e))?;
            for (index, checkpoint) in &batch.checkpoints {
                let Some((topic, partition)) = batch.tables.get(*index) else {
                    continue;
                };
                meta.insert(
                    checkpoint_key(topic, *partition).as_str(),
                    checkpoint.encode().as_slice(),
                )
                .map_err(|e| self.error("write", e))?;
            }
        }
        write.commit().map_err(|e| self.error("commit", e))
    }

    /// Make every write so far durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        let write = self.begin(true)?;
        write.commit().map_err(|e| self.error("commit", e))
    }

    /// A write transaction; a durable one also saves the allocator's state, so that reopening after
    /// a crash is quick instead of a repair that reads the whole file.
    fn begin(&self, durable: bool) -> Result<redb::WriteTransaction, StoreError> {
        let mut write = self.db.begin_write().map_err(|e| self.error("write", e))?;
        if durable {
            write.set_quick_repair(true);
        } else {
            write
                .set_durability(Durability::None)
                .map_err(|e| self.error("write", e))?;
        }
        Ok(write)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "causeway-store-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        dir.join("instance.redb")
    }

    fn checkpoint(offset: i64) -> Checkpoint {
        Checkpoint {
            offset,
            timestamp_ms: 1000 + offset,
            key: format!("k{offset}").into_bytes(),
            written_at_ms: 5,
        }
    }

    #[test]
    fn states_and_checkpoints_are_kept_by_partition() -> Result<(), StoreError> {
        let p = path("kept");
        {
            let store = Store::open(&p, 1 << 20)?;
            assert_eq!(store.checkpoint("t", 0)?, None);
            let mut batch = Batch::default();
            batch.put("t", 0, "a".into(), Some(b"one".to_vec()));
            batch.put("t", 1, "a".into(), Some(b"other".to_vec()));
            batch.put("t", 0, "b".into(), Some(b"two".to_vec()));
            batch.checkpoint("t", 0, checkpoint(7));
            store.write(&batch, true)?;
            let mut batch = Batch::default();
            batch.put("t", 0, "b".into(), None);
            batch.checkpoint("t", 0, checkpoint(9));
            store.write(&batch, false)?;
            store.flush()?;
        }
        let store = Store::open(&p, 1 << 20)?;
        assert_eq!(store.get("t", 0, "a")?, Some(b"one".to_vec()));
        assert_eq!(store.get("t", 1, "a")?, Some(b"other".to_vec()));
        assert_eq!(store.get("t", 0, "b")?, None);
        assert_eq!(store.len("t", 0)?, 1);
        assert_eq!(store.checkpoint("t", 0)?, Some(checkpoint(9)));
        assert_eq!(store.checkpoint("t", 1)?, None);
        store.clear("t", 0)?;
        assert_eq!(store.get("t", 0, "a")?, None);
        assert_eq!(store.checkpoint("t", 0)?, None);
        assert_eq!(store.get("t", 1, "a")?, Some(b"other".to_vec()));
        Ok(())
    }

    /// Puts are written in key order, and of one key's puts in a batch the last wins (a tombstone
    /// after a value deletes it, a value after a tombstone stays).
    #[test]
    fn the_last_put_of_a_key_in_a_batch_wins() -> Result<(), StoreError> {
        let p = path("last");
        let store = Store::open(&p, 1 << 20)?;
        let mut batch = Batch::default();
        for round in 0..3u8 {
            for key in ["z", "m", "a", "q"] {
                batch.put("t", 2, key.into(), Some(vec![round]));
            }
        }
        batch.put("t", 2, "m".into(), None);
        batch.put("t", 2, "q".into(), None);
        batch.put("t", 2, "q".into(), Some(b"back".to_vec()));
        batch.put("t", 3, "a".into(), Some(b"other".to_vec()));
        assert_eq!(batch.bytes(), 16 * PUT_OVERHEAD + 12 * 2 + 2 + 5 + 6);
        store.write(&batch, false)?;
        assert_eq!(store.get("t", 2, "z")?, Some(vec![2]));
        assert_eq!(store.get("t", 2, "a")?, Some(vec![2]));
        assert_eq!(store.get("t", 2, "m")?, None);
        assert_eq!(store.get("t", 2, "q")?, Some(b"back".to_vec()));
        assert_eq!(store.get("t", 3, "a")?, Some(b"other".to_vec()));
        assert_eq!(store.len("t", 2)?, 3);
        Ok(())
    }

    #[test]
    fn a_file_that_is_not_a_store_is_set_aside_and_replaced() -> Result<(), StoreError> {
        let p = path("garbage");
        std::fs::create_dir_all(p.parent().unwrap_or(Path::new("."))).map_err(|e| StoreError {
            path: p.clone(),
            what: "test",
            why: e.to_string(),
        })?;
        std::fs::write(&p, vec![0x5a; 10_000]).map_err(|e| StoreError {
            path: p.clone(),
            what: "test",
            why: e.to_string(),
        })?;
        let store = Store::open(&p, 1 << 20)?;
        assert_eq!(store.checkpoint("t", 0)?, None);
        let set_aside = std::fs::read_dir(p.parent().unwrap_or(Path::new(".")))
            .map(|d| {
                d.filter_map(Result::ok)
                    .any(|e| e.file_name().to_string_lossy().contains(".unreadable-"))
            })
            .unwrap_or(false);
        assert!(set_aside, "the unreadable file is kept aside");
        Ok(())
    }

    #[test]
    fn checkpoints_of_another_format_are_not_read() {
        let mut bytes = checkpoint(3).encode();
        assert_eq!(Checkpoint::decode(&bytes), Some(checkpoint(3)));
        bytes[3] = 99;
        assert_eq!(Checkpoint::decode(&bytes), None);
        assert_eq!(Checkpoint::decode(&bytes[..10]), None);
    }
}
