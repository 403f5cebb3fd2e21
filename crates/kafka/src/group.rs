//! Consumer-group membership that can always be closed.
//!
//! rdkafka's default rebalance handler asks librdkafka for the group's rebalance protocol and then
//! assigns, both requests to the group's thread that wait for an answer without a timeout. When a
//! consumer is closed right after an assignment arrived (a service stopped moments after it
//! started), the closing consumer still delivers that stale assignment to the rebalance handler;
//! by then the group has terminated, drops the request unanswered, and the close waits forever
//! (librdkafka issue 4041). [`Membership`] replaces that handler: the protocol comes from the
//! configuration (no request), and once the owner marks the consumer as closing, a late assignment
//! is ignored (the group is gone). Revocations are still honoured while closing: the group waits for
//! them before it terminates, so they are always answered.
//!
//! A context holds a [`Membership`], implements [`Member`], and routes `ConsumerContext::rebalance`
//! to [`Membership::rebalance`]. Owning the consumer through [`GroupConsumer`] marks it closing
//! before rdkafka's own `Drop` closes it.

use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::types::RDKafkaRespErr;

/// How a group hands partitions over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Every rebalance revokes everything and assigns anew (range, roundrobin: the default).
    Eager,
    /// Only the partitions that move are revoked and assigned (cooperative-sticky, or the
    /// broker-driven `group.protocol=consumer`).
    Cooperative,
}

impl Protocol {
    /// The protocol `config` selects.
    pub fn of(config: &ClientConfig) -> Self {
        let broker_driven = config
            .get("group.protocol")
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("consumer"));
        let cooperative = config
            .get("partition.assignment.strategy")
            .is_some_and(|s| s.to_ascii_lowercase().contains("cooperative-sticky"));
        if broker_driven || cooperative {
            Self::Cooperative
        } else {
            Self::Eager
        }
    }
}

/// The rebalance handling of one group consumer.
#[derive(Debug)]
pub struct Membership {
    protocol: Protocol,
    closing: AtomicBool,
}

impl Membership {
    /// Membership of a consumer created from `config`.
    pub fn new(config: &ClientConfig) -> Self {
        Self {
            protocol: Protocol::of(config),
            closing: AtomicBool::new(false),
        }
    }

    /// The consumer is about to be closed: assignments that arrive from now on are ignored.
    pub fn close(&self) {
        self.closing.store(true, Ordering::Release);
    }

    /// Whether [`Membership::close`] was called.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Handle a rebalance as rdkafka's default does (pre hook, assign or unassign, post hook), without
    /// asking the group for its protocol, and skipping assignments once closing.
    pub fn rebalance<C: ConsumerContext>(
        &self,
        context: &C,
        consumer: &BaseConsumer<C>,
        err: RDKafkaRespErr,
        partitions: &mut TopicPartitionList,
    ) {
        let assign = err == RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
        if assign && self.is_closing() {
            tracing::debug!(
                partitions = partitions.count(),
                "assignment arrived while closing; ignored"
            );
            return;
        }
        let rebalance = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => Rebalance::Assign(partitions),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => Rebalance::Revoke(partitions),
            other => Rebalance::Error(KafkaError::Rebalance(RDKafkaErrorCode::from(other))),
        };
        context.pre_rebalance(consumer, &rebalance);
        let applied = match (assign, self.protocol) {
            (true, Protocol::Eager) => consumer.assign(partitions),
            (true, Protocol::Cooperative) => consumer.incremental_assign(partitions),
            (false, Protocol::Eager) => consumer.unassign(),
            (false, Protocol::Cooperative) => consumer.incremental_unassign(partitions),
        };
        if let Err(e) = applied {
            tracing::error!(error = %e, assign, "cannot apply the group's rebalance");
        }
        context.post_rebalance(consumer, &rebalance);
    }
}

/// A consumer context that takes part in a group through a [`Membership`].
pub trait Member: ConsumerContext {
    /// Its membership.
    fn membership(&self) -> &Membership;
}

/// Owns a group consumer and marks it closing before the consumer's own `Drop` closes it, so that
/// closing never waits on a stale assignment.
pub struct GroupConsumer<T, C>
where
    T: Consumer<C>,
    C: Member + 'static,
{
    consumer: T,
    context: PhantomData<C>,
}

impl<T, C> GroupConsumer<T, C>
where
    T: Consumer<C>,
    C: Member + 'static,
{
    /// Take ownership of `consumer`.
    pub fn new(consumer: T) -> Self {
        Self {
            consumer,
            context: PhantomData,
        }
    }
}

impl<T, C> std::fmt::Debug for GroupConsumer<T, C>
where
    T: Consumer<C>,
    C: Member + 'static,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupConsumer")
            .field(
                "closing",
                &self.consumer.context().membership().is_closing(),
            )
            .finish_non_exhaustive()
    }
}

impl<T, C> Deref for GroupConsumer<T, C>
where
    T: Consumer<C>,
    C: Member + 'static,
{
    type Target = T;

    fn deref(&self) -> &T {
        &self.consumer
    }
}

impl<T, C> Drop for GroupConsumer<T, C>
where
    T: Consumer<C>,
    C: Member + 'static,
{
    fn drop(&mut self) {
        self.consumer.context().membership().close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        for (k, v) in pairs {
            c.set(*k, *v);
        }
        c
    }

    #[test]
    fn the_protocol_comes_from_the_configuration() {
        assert_eq!(Protocol::of(&config(&[])), Protocol::Eager);
        assert_eq!(
            Protocol::of(&config(&[(
                "partition.assignment.strategy",
                "range,roundrobin"
            )])),
            Protocol::Eager
        );
        assert_eq!(
            Protocol::of(&config(&[(
                "partition.assignment.strategy",
                "Cooperative-Sticky"
            )])),
            Protocol::Cooperative
        );
        assert_eq!(
            Protocol::of(&config(&[("group.protocol", "consumer")])),
            Protocol::Cooperative
        );
        assert_eq!(
            Protocol::of(&config(&[("group.protocol", "classic")])),
            Protocol::Eager
        );
    }

    #[test]
    fn closing_is_remembered() {
        let m = Membership::new(&config(&[]));
        assert!(!m.is_closing());
        m.close();
        assert!(m.is_closing());
    }
}
