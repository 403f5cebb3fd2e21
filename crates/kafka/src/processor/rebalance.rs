//! Rebalance callbacks. librdkafka calls them inside `poll`, where the processor can do nothing long:
//! they pause newly assigned partitions (no command is handed out before the state is restored) and
//! queue what happened for the processor loop, which drops or restores state between polls. The loop
//! never polls with a transaction open, so a revocation never meets one. Assigning and unassigning
//! go through [`Membership`], so the consumer always closes.

use std::sync::Mutex;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, ClientContext};

use crate::group::{Member, Membership};

/// A change of ownership, as the loop sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// These partitions (topic, partition) are ours now; they are paused.
    Assigned(Vec<(String, i32)>),
    /// These are no longer ours.
    Revoked(Vec<(String, i32)>),
}

/// The consumer context of the processor.
#[derive(Debug)]
pub struct Rebalances {
    changes: Mutex<Vec<Change>>,
    membership: Membership,
    /// Its lag, fed by librdkafka's statistics (none in tests that make a bare consumer).
    lag: Option<crate::lag::ConsumerLag>,
}

impl Rebalances {
    /// The context of a consumer created from `config`, its lag measured by `lag`.
    pub fn new(config: &ClientConfig, lag: Option<crate::lag::ConsumerLag>) -> Self {
        Self {
            changes: Mutex::new(Vec::new()),
            membership: Membership::new(config),
            lag,
        }
    }

    /// Its lag.
    pub fn lag(&self) -> Option<&crate::lag::ConsumerLag> {
        self.lag.as_ref()
    }

    /// The changes since the last call, in order.
    pub fn take(&self) -> Vec<Change> {
        std::mem::take(&mut *self.changes.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn push(&self, change: Change) {
        self.changes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(change);
    }
}

fn pairs(list: &TopicPartitionList) -> Vec<(String, i32)> {
    list.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

impl ClientContext for Rebalances {
    fn stats(&self, statistics: rdkafka::Statistics) {
        if let Some(lag) = &self.lag {
            lag.statistics(&statistics);
        }
    }
}

impl Member for Rebalances {
    fn membership(&self) -> &Membership {
        &self.membership
    }
}

impl ConsumerContext for Rebalances {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        partitions: &mut TopicPartitionList,
    ) {
        self.membership.rebalance(self, consumer, err, partitions);
    }

    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            tracing::info!(partitions = ?pairs(list), "partitions revoked");
            self.push(Change::Revoked(pairs(list)));
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                if let Err(e) = consumer.pause(list) {
                    tracing::error!(error = %e, "cannot pause assigned partitions");
                }
                tracing::info!(partitions = ?pairs(list), "partitions assigned");
                self.push(Change::Assigned(pairs(list)));
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}
