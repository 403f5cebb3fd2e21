//! Restoring the state of assigned partitions: committed offsets first (so a previous owner's last
//! transaction has ended), then the changelog to its end (read_committed), then position and resume.

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
use crate::config::OffsetMode;
use crate::error::Error;

impl Run {
    /// Restore every partition waiting for it, then position and resume it.
    pub(super) fn restore_pending(
        &mut self,
        consumer: &BaseConsumer<Rebalances>,
    ) -> Result<bool, ProcessorError> {
        let pending: Vec<Owned> = self
            .partitions
            .iter()
            .filter(|(_, s)| **s == PartitionState::Restoring)
            .map(|(o, _)| *o)
            .collect();
        if pending.is_empty() {
            return Ok(false);
        }
        let started = Instant::now();
        // 1. Committed offsets first: with read_committed, the broker answers only once no transactional
        //    offset commit is pending, so a previous owner's last transaction has ended (committed or
        //    aborted) before the changelog is read.
        let mut commands = TopicPartitionList::new();
        for &(host, partition) in &pending {
            commands.add_partition(&self.hosts[host].topics().commands, partition);
        }
        let committed = match consumer.committed_offsets(commands.clone(), CALL_TIMEOUT) {
            Ok(c) => c,
            Err(e) => {
                // Leave them Restoring: the next turn of the loop tries again.
                tracing::warn!(error = %e, "cannot read committed offsets; will retry");
                std::thread::sleep(Duration::from_millis(200));
                return Ok(false);
            }
        };
        // 2. The changelog of each, to its end.
        for host in 0..self.hosts.len() {
            let parts: Vec<i32> = pending
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
            if !self.restore_changelog(host, &parts)? {
                return Ok(false); // shutting down
            }
        }
        // 3. Position at the committed offsets (the earliest record when none), then resume.
        for element in committed.elements() {
            let offset = match element.offset() {
                Offset::Offset(o) => Offset::Offset(o),
                _ => Offset::Beginning,
            };
            if let Err(e) =
                consumer.seek(element.topic(), element.partition(), offset, CALL_TIMEOUT)
            {
                tracing::warn!(error = %e, topic = element.topic(), partition = element.partition(), "seek failed; will retry");
                return Ok(false);
            }
        }
        consumer
            .resume(&commands)
            .map_err(|source| Error::Operation {
                operation: "resume restored partitions",
                source,
            })?;
        for owned in &pending {
            self.partitions.insert(*owned, PartitionState::Ready);
        }
        let states: usize = self.hosts.iter().map(|h| h.states()).sum();
        tracing::info!(
            partitions = pending.len(),
            states,
            ms = started.elapsed().as_millis() as u64,
            "state restored; partitions resumed"
        );
        Ok(true)
    }

    /// Read `partitions` of host `host`'s changelog from the beginning to the end (read_committed).
    /// `Ok(false)` when shutdown interrupted it.
    fn restore_changelog(
        &mut self,
        host: usize,
        partitions: &[i32],
    ) -> Result<bool, ProcessorError> {
        let topic = self.hosts[host].topics().changelog.clone();
        let mut config = self.kafka.consumer_config(
            "aggregate-processor-restore",
            &format!("{}-restore", self.config.group_id),
            OffsetMode::Transactional,
        );
        config.set("enable.partition.eof", "true");
        let restorer: BaseConsumer = config.create().map_err(|source| Error::Client {
            what: "restore consumer",
            source,
        })?;
        let mut list = TopicPartitionList::new();
        for &p in partitions {
            list.add_partition_offset(&topic, p, Offset::Beginning)
                .map_err(|source| Error::Operation {
                    operation: "assign the changelog",
                    source,
                })?;
        }
        restorer.assign(&list).map_err(|source| Error::Operation {
            operation: "assign the changelog",
            source,
        })?;
        let mut remaining: HashSet<i32> = partitions.iter().copied().collect();
        let aggregate = self.hosts[host].aggregate_type();
        let restored = self.meters.restored.with_label_values(&[aggregate]);
        while !remaining.is_empty() {
            if self.shutdown.is_triggered() {
                return Ok(false);
            }
            match restorer.poll(Duration::from_millis(200)) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    remaining.remove(&p);
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, topic = %topic, "restore consumer error")
                }
                Some(Ok(m)) => {
                    let fail = |why: String| ProcessorError::Changelog {
                        topic: topic.clone(),
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
                            let decoded = loop {
                                match self
                                    .block_on(self.codec.decode_value(bytes, &Upcasters::default()))
                                {
                                    Ok(d) => break d,
                                    Err(WireError::Registry(e)) => {
                                        tracing::warn!(error = %e, "registry unavailable while restoring; retrying");
                                        std::thread::sleep(Duration::from_millis(500));
                                        if self.shutdown.is_triggered() {
                                            return Ok(false);
                                        }
                                    }
                                    Err(e) => return Err(fail(e.to_string())),
                                }
                            };
                            Some(decoded.value)
                        }
                    };
                    self.hosts[host]
                        .restore(m.partition(), key, value.as_ref())
                        .map_err(fail)?;
                    restored.inc();
                }
            }
        }
        Ok(true)
    }
}
