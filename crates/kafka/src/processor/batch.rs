//! The loop: poll a batch with no transaction open, process it in one transaction, react to rebalances
//! between polls, and after an aborted transaction restore the touched partitions and read them again.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::topic_partition_list::TopicPartitionList;

use super::error::{BatchError, ProcessorError, consumer_fenced};
use super::rebalance::{Change, Rebalances};
use super::{Owned, PartitionState, Run};

impl Run {
    pub(super) fn run(
        &mut self,
        consumer: &BaseConsumer<Rebalances>,
    ) -> Result<(), ProcessorError> {
        let interval = Duration::from_millis(self.config.commit_interval_ms);
        let mut backoff = Duration::from_millis(100);
        let mut announced = false;
        let mut lag_at = Instant::now();
        while !self.shutdown.is_triggered() {
            // Collect a batch: what is already fetched, up to `max_batch_records` or the commit
            // interval, without waiting for more (light load: small batches, low latency; heavy load:
            // full ones). BorrowedMessages keep librdkafka's buffers: no copy of any payload.
            let mut batch: Vec<BorrowedMessage<'_>> = Vec::new();
            let mut deadline: Option<Instant> = None;
            while batch.len() < self.config.max_batch_records {
                let timeout = match deadline {
                    // While a restore is in progress the loop comes back to it at once.
                    None if self.restore.is_some() => Duration::from_millis(1),
                    None => Duration::from_millis(100),
                    Some(_) => Duration::ZERO,
                };
                let polled = consumer.poll(timeout);
                self.apply_changes(consumer, &mut batch);
                match polled {
                    Some(Ok(m)) => {
                        let Some(owned) = self.owned(m.topic(), m.partition()) else {
                            continue;
                        };
                        if self.partitions.get(&owned) != Some(&PartitionState::Ready) {
                            // Not restored yet: dropped here, read again after the rewind.
                            continue;
                        }
                        deadline.get_or_insert_with(|| Instant::now() + interval);
                        batch.push(m);
                    }
                    Some(Err(e)) if consumer_fenced(&e) => {
                        // Fatal to this consumer (librdkafka): nothing uncommitted is kept.
                        return Err(ProcessorError::ConsumerFatal(e));
                    }
                    Some(Err(e)) => tracing::warn!(error = %e, "consumer error"),
                    None if deadline.is_some() => break,
                    None => {}
                }
                if deadline.is_none_or(|d| Instant::now() >= d) {
                    break;
                }
            }
            let restoring = self
                .partitions
                .values()
                .any(|s| *s == PartitionState::Restoring);
            let due = self.anything_due();
            self.progress.busy(!batch.is_empty() || restoring || due);
            if !batch.is_empty() || due || !self.anchor.is_empty() {
                match self.process(consumer, &batch) {
                    Ok(()) => {
                        self.progress.moved();
                        backoff = Duration::from_millis(100);
                    }
                    Err(BatchError::Stop(e)) => return Err(e),
                    Err(BatchError::Retry(why)) => {
                        let mut touched: HashSet<Owned> = batch
                            .iter()
                            .filter_map(|m| self.owned(m.topic(), m.partition()))
                            .collect();
                        touched.extend(self.fired.drain());
                        tracing::warn!(error = %why, partitions = touched.len(), "transaction aborted; restoring the partitions it touched and retrying");
                        drop(batch);
                        self.recover(consumer, &touched);
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
            if lag_at.elapsed() >= Duration::from_secs(1) {
                lag_at = Instant::now();
                if let Some(lag) = consumer.context().lag() {
                    lag.update_seconds(super::now_ms());
                }
            }
            if self.restore_pending(consumer)? {
                self.progress.moved();
            }
            if !announced && self.restored() {
                // Ready stays on through later rebalances: they pause only the partitions that move.
                announced = true;
                self.progress.restored();
                tracing::info!(
                    partitions = self.partitions.len(),
                    "first assignment restored"
                );
            }
        }
        tracing::info!("processor stopping: no transaction open");
        Ok(())
    }

    /// Whether a host has something due now (a saga's deadline or retry) on a partition it owns.
    fn anything_due(&self) -> bool {
        let now = super::now_ms();
        self.hosts
            .iter()
            .enumerate()
            .any(|(i, h)| !h.due(now, 1, &|p| self.can_fire((i, p))).is_empty())
    }

    /// Whether what is due on `owned` may fire: it is ready, and its position is known (a transaction
    /// that fires there carries that offset, so that the group fences a zombie's).
    pub(super) fn can_fire(&self, owned: Owned) -> bool {
        self.partitions.get(&owned) == Some(&PartitionState::Ready)
            && self.positions.contains_key(&owned)
    }

    /// Every partition of the group's assignment (once there was one) is restored.
    fn restored(&self) -> bool {
        self.assigned
            && self
                .partitions
                .values()
                .all(|s| *s == PartitionState::Ready)
    }

    /// Apply what the rebalance callbacks queued: drop revoked partitions (their states and their
    /// records in the batch being collected), note assigned ones for restoring.
    fn apply_changes(
        &mut self,
        consumer: &BaseConsumer<Rebalances>,
        batch: &mut Vec<BorrowedMessage<'_>>,
    ) {
        for change in consumer.context().take() {
            match change {
                Change::Revoked(list) => {
                    let mut gone = HashSet::new();
                    for (topic, partition) in list {
                        if let Some(owned) = self.owned(&topic, partition) {
                            self.partitions.remove(&owned);
                            self.positions.remove(&owned);
                            self.anchor.remove(&owned);
                            self.hosts[owned.0].drop_partition(partition);
                            gone.insert(owned);
                        }
                    }
                    // A restore of a partition no longer ours is abandoned; the partitions it was
                    // restoring that are still ours start a new one.
                    if self
                        .restore
                        .as_ref()
                        .is_some_and(|r| gone.iter().any(|o| r.covers(o)))
                    {
                        self.restore = None;
                    }
                    batch.retain(|m| {
                        self.owned(m.topic(), m.partition())
                            .is_some_and(|o| !gone.contains(&o))
                    });
                }
                Change::Assigned(list) => {
                    self.assigned = true;
                    for (topic, partition) in list {
                        if let Some(owned) = self.owned(&topic, partition) {
                            self.partitions.insert(owned, PartitionState::Restoring);
                        }
                    }
                }
            }
        }
    }

    /// After an aborted transaction: the partitions it touched forget their states (the transaction may
    /// have changed them) and are restored and rewound as if newly assigned. The others, untouched, go on.
    fn recover(&mut self, consumer: &BaseConsumer<Rebalances>, touched: &HashSet<Owned>) {
        let mut paused = TopicPartitionList::new();
        for (&(host, partition), state) in self.partitions.iter_mut() {
            if !touched.contains(&(host, partition)) {
                continue;
            }
            *state = PartitionState::Restoring;
            self.hosts[host].drop_partition(partition);
            paused.add_partition(&self.hosts[host].topics().input, partition);
        }
        if let Err(e) = consumer.pause(&paused) {
            tracing::warn!(error = %e, "cannot pause partitions for restoring");
        }
    }
}
