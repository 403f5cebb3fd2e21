//! The transaction of one batch, by librdkafka's contract: begin, fill, send the offsets with the
//! group metadata, wait for the deliveries, commit. A retriable error of a call is answered by the same
//! call again (until it resolves, or shutdown); an abortable one by an abort and a retry of the batch
//! from restored state; a fatal one stops the processor.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::FORWARDED;
use super::error::{BatchError, ProcessorError, TxnClass, fatal, is_fencing, txn_class};
use super::rebalance::Rebalances;
use super::store::Delivered;
use super::{CALL_TIMEOUT, ProcessorConfig, Run};
use crate::config::KafkaConfig;
use crate::error::Error;

/// A transactional call, run on a thread of its own by [`Run::bounded`].
type Call = Box<dyn FnOnce(&BaseProducer<Delivered>) -> Result<(), KafkaError> + Send>;

/// How long a transactional call may block (its own timeout is [`CALL_TIMEOUT`]) before the processor
/// gives up on the producer.
const HUNG_CALL: Duration = Duration::from_secs(60);

/// How long the loop sleeps between serving delivery reports while it waits for the producer (a full
/// queue, or the deliveries before a commit). rdkafka's own `poll` would spin through its timeout.
const DELIVERY_WAIT: Duration = Duration::from_micros(200);

/// The transactional producer, initialised (a previous incarnation's open transaction is aborted).
/// `smallest_topic_limit` is the smallest `max.message.bytes` of the topics it writes to: the broker
/// applies that limit to a whole record batch, and librdkafka does not split a batch the broker refused,
/// so batches are kept within it.
pub(super) fn producer(
    service: &str,
    kafka: &KafkaConfig,
    config: &ProcessorConfig,
    transactional_id: &str,
    smallest_topic_limit: usize,
    delivered: Delivered,
) -> Result<BaseProducer<Delivered>, ProcessorError> {
    let mut producer_config = kafka.transactional_producer_config(service, transactional_id);
    if !kafka.properties.contains_key("batch.size") {
        // Room for the record batch's own header (61 bytes) and some slack.
        let batch = smallest_topic_limit.saturating_sub(512).max(1024);
        producer_config.set("batch.size", batch.min(1_000_000).to_string());
    }
    if !kafka.properties.contains_key("transaction.timeout.ms") {
        producer_config.set(
            "transaction.timeout.ms",
            config.transaction_timeout_ms.to_string(),
        );
    }
    let producer: BaseProducer<Delivered> = producer_config
        .create_with_context(delivered)
        .map_err(|source| Error::Client {
            what: "transactional producer",
            source,
        })?;
    // A broker connection up first: init_transactions asks some broker for the transaction coordinator,
    // and when none is up yet librdkafka asks again only 500 ms later (measured: half of the
    // restarts took 500 ms longer).
    if let Err(e) = producer
        .client()
        .fetch_metadata(Some(&config.results_topic), Duration::from_secs(2))
    {
        tracing::warn!(error = %e, "the transactional producer cannot read metadata yet");
    }
    let mut attempts = 0;
    loop {
        match producer.init_transactions(CALL_TIMEOUT) {
            Ok(()) => return Ok(producer),
            Err(e) if is_fencing(&e) => return Err(ProcessorError::Fenced(e)),
            // Retriable (the coordinator is loading, or the broker is briefly away): the same call.
            Err(e) if txn_class(&e) == TxnClass::Retriable && attempts < 10 => {
                attempts += 1;
                tracing::warn!(error = %e, attempts, "init_transactions: retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(source) => {
                return Err(ProcessorError::Kafka(Error::Operation {
                    operation: "init_transactions",
                    source,
                }));
            }
        }
    }
}

impl Run {
    pub(super) fn process(
        &mut self,
        consumer: &BaseConsumer<Rebalances>,
        batch: &[BorrowedMessage<'_>],
    ) -> Result<(), BatchError> {
        let started = Instant::now();
        self.transaction_began = started;
        if let Err(e) = self.producer.begin_transaction() {
            // A transaction left open (an abort that did not finish) makes begin fail: abort it.
            let cause = match txn_class(&e) {
                TxnClass::Fatal => BatchError::Stop(self.fatal(e)),
                _ => BatchError::Retry(format!("begin_transaction: {e}")),
            };
            return Err(self.abort_for(cause));
        }
        self.batch_counts.clear();
        self.producer.context().clear();
        if let Err(e) = self.fill(batch) {
            return Err(self.abort_for(e));
        }
        let t_fill = started.elapsed();
        let mut offsets = TopicPartitionList::new();
        let mut next: HashMap<(&str, i32), i64> = HashMap::new();
        for m in batch {
            let o = next.entry((m.topic(), m.partition())).or_insert(0);
            *o = (*o).max(m.offset() + 1);
        }
        // A partition where something due fired and no record was read: its offset as committed, so
        // that the transaction carries the group's generation (a zombie's is fenced).
        let mut fired_only = Vec::new();
        for &(host, partition) in self.fired.iter().chain(&self.anchor) {
            let topic = self.hosts[host].topics().input.as_str();
            if next.contains_key(&(topic, partition)) {
                continue;
            }
            if fired_only
                .iter()
                .any(|(t, p, _)| t == topic && *p == partition)
            {
                continue;
            }
            if let Some(&offset) = self.positions.get(&(host, partition)) {
                fired_only.push((topic.to_string(), partition, offset));
            }
        }
        for ((topic, partition), offset) in &next {
            if let Err(e) = offsets.add_partition_offset(topic, *partition, Offset::Offset(*offset))
            {
                return Err(self.abort_for(e.into()));
            }
        }
        for (topic, partition, offset) in &fired_only {
            if let Err(e) = offsets.add_partition_offset(topic, *partition, Offset::Offset(*offset))
            {
                return Err(self.abort_for(e.into()));
            }
        }
        let sent = if offsets.count() == 0 {
            Ok(())
        } else {
            self.retrying("send_offsets_to_transaction", || {
                let group = consumer
                    .group_metadata()
                    .ok_or_else(|| BatchError::Retry("no consumer group metadata yet".into()))?;
                let offsets = offsets.clone();
                Ok(Box::new(move |p: &BaseProducer<Delivered>| {
                    p.send_offsets_to_transaction(&offsets, &group, CALL_TIMEOUT)
                }))
            })
        };
        if let Err(e) = sent {
            return Err(self.abort_for(e));
        }
        let t_offsets = started.elapsed();
        if let Err(e) = self.await_deliveries() {
            return Err(self.abort_for(e.into()));
        }
        let t_deliveries = started.elapsed();
        if let Err(e) = self.retrying("commit_transaction", || {
            Ok(Box::new(|p: &BaseProducer<Delivered>| {
                p.commit_transaction(CALL_TIMEOUT)
            }))
        }) {
            return Err(self.abort_for(e));
        }
        let t_commit = started.elapsed();
        self.meters
            .transactions
            .with_label_values(&["committed"])
            .inc();
        // The spans of the transaction's inputs end with it.
        self.spans.clear();
        // Committed: its states to the local store, written on a thread while the loop goes on (a
        // failure there stops the process at the store's next use; the restart reads them from the
        // changelog).
        self.store_committed().map_err(BatchError::Stop)?;
        // Where a transaction's time went, for a latency investigation
        // (RUST_LOG=causeway_kafka::processor=debug).
        tracing::debug!(
            records = batch.len(),
            fill_us = t_fill.as_micros(),
            offsets_us = t_offsets.saturating_sub(t_fill).as_micros(),
            deliveries_us = t_deliveries.saturating_sub(t_offsets).as_micros(),
            commit_us = t_commit.saturating_sub(t_deliveries).as_micros(),
            store_us = started.elapsed().saturating_sub(t_commit).as_micros(),
            "transaction committed"
        );
        for ((topic, partition), offset) in next {
            if let Some(owned) = self.owned(topic, partition) {
                self.positions.insert(owned, offset);
            }
        }
        if let Some(lag) = consumer.context().lag() {
            lag.handled_batch(batch);
        }
        self.fired.clear();
        // Partitions started at their end: their offset is committed now, they may be read.
        let mut anchored = TopicPartitionList::new();
        for &(host, partition) in &self.anchor {
            anchored.add_partition(&self.hosts[host].topics().input, partition);
        }
        if anchored.count() > 0
            && let Err(e) = consumer.resume(&anchored)
        {
            tracing::warn!(error = %e, "cannot resume the partitions started at their end");
        }
        self.anchor.clear();
        for host in &mut self.hosts {
            host.durable();
        }
        // A batch that needed states command by command is behind us.
        self.strict = false;
        // Counted once committed: an aborted batch is processed again.
        for ((host, outcome), n) in self.batch_counts.drain() {
            let aggregate = self.hosts[host].aggregate_type();
            if outcome == FORWARDED {
                self.meters
                    .forwarded
                    .with_label_values(&[aggregate])
                    .inc_by(n);
            } else {
                self.meters
                    .commands
                    .with_label_values(&[aggregate, outcome])
                    .inc_by(n);
            }
        }
        self.meters.batch_records.observe(batch.len() as f64);
        self.meters
            .transaction_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// The call `make` builds, again while it fails with a retriable error (librdkafka: "the same call
    /// may be retried"), until it succeeds, fails otherwise, or shutdown fires. Each call is bounded
    /// ([`Run::bounded`]).
    fn retrying(
        &self,
        what: &'static str,
        make: impl Fn() -> Result<Call, BatchError>,
    ) -> Result<(), BatchError> {
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.bounded(what, make()?)? {
                Ok(()) => return Ok(()),
                Err(e) => match txn_class(&e) {
                    // Retriable, but not for ever: once the transaction has been open longer than
                    // transaction.timeout.ms the broker has aborted it, and a call that still cannot
                    // complete (a commit whose messages cannot be flushed) never will.
                    TxnClass::Retriable
                        if !self.shutdown.is_triggered()
                            && self.transaction_began.elapsed()
                                < self.transaction_timeout + CALL_TIMEOUT =>
                    {
                        tracing::warn!(error = %e, call = what, "retriable; calling again");
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                    // A commit whose outcome is unknown is never aborted (that could undo a committed
                    // batch): the next producer's init_transactions settles it.
                    TxnClass::Retriable if what == "commit_transaction" => {
                        return Err(BatchError::Stop(ProcessorError::CommitUnresolved(
                            e.to_string(),
                        )));
                    }
                    TxnClass::Retriable | TxnClass::Abortable => {
                        return Err(BatchError::Retry(format!("{what}: {e}")));
                    }
                    TxnClass::Fatal => return Err(BatchError::Stop(self.fatal(e))),
                },
            }
        }
    }

    /// Run a transactional call on a thread of its own and wait at most [`HUNG_CALL`] for it. librdkafka's
    /// `send_offsets_to_transaction` can block far past its timeout when the group coordinator's broker
    /// is lost (librdkafka issues 5456 and 5511, open in the bundled 2.12.1); a client in that state
    /// never recovers, so the processor stops for a restart with a new one.
    fn bounded(
        &self,
        what: &'static str,
        call: Call,
    ) -> Result<Result<(), KafkaError>, BatchError> {
        let producer = Arc::clone(&self.producer);
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let spawned = std::thread::Builder::new()
            .name("causeway-txn".into())
            .spawn(move || {
                let _ = tx.send(call(&producer));
            });
        if let Err(e) = spawned {
            return Err(BatchError::Retry(format!(
                "cannot start a thread for {what}: {e}"
            )));
        }
        // Meanwhile this thread serves the delivery reports: librdkafka's abort (which purges what is
        // still queued) and commit (which flushes) complete only once those reports are polled.
        let started = Instant::now();
        loop {
            match rx.recv_timeout(Duration::from_millis(5)) {
                Ok(result) => return Ok(result),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                    if started.elapsed() < HUNG_CALL =>
                {
                    self.producer.poll(Duration::ZERO);
                }
                Err(_) => {
                    return Err(BatchError::Stop(ProcessorError::Hung {
                        call: what,
                        after: HUNG_CALL,
                    }));
                }
            }
        }
    }

    /// Abort the open transaction after `cause`; what the batch then means (a fatal cause, or an abort
    /// that failed fatally, stops the processor).
    fn abort_for(&mut self, cause: BatchError) -> BatchError {
        for host in &mut self.hosts {
            host.aborted();
        }
        let why = if matches!(cause, BatchError::Stop(_)) {
            "the processor stopped in this transaction (its outcome is the broker's)"
        } else {
            "the transaction aborted; the input is processed again"
        };
        for cx in self.spans.drain(..) {
            causeway_observe::propagation::failed(&cx, why);
        }
        self.batch_states.clear();
        self.batch_counts.clear();
        if let BatchError::Stop(_) = cause {
            // A fatal producer cannot abort; the broker (or the next incarnation) will.
            return cause;
        }
        self.meters
            .transactions
            .with_label_values(&["aborted"])
            .inc();
        match self.retrying("abort_transaction", || {
            Ok(Box::new(|p: &BaseProducer<Delivered>| {
                p.abort_transaction(CALL_TIMEOUT)
            }))
        }) {
            Ok(()) => cause,
            Err(BatchError::Stop(e)) => BatchError::Stop(e),
            // Shutdown interrupted a retriable abort: the broker (or the next incarnation's
            // init_transactions) aborts the transaction.
            Err(BatchError::Retry(_)) if self.shutdown.is_triggered() => cause,
            // Neither done nor retriable: the producer's state is unknown, and every later begin
            // would fail. Stop for a restart with a new producer.
            Err(BatchError::Retry(why)) => BatchError::Stop(ProcessorError::AbortFailed(why)),
        }
    }

    /// The processor's error for a fatal error of the open transaction.
    fn fatal(&self, e: KafkaError) -> ProcessorError {
        fatal(
            e,
            self.transaction_began.elapsed(),
            self.transaction_timeout,
        )
    }

    /// Send `record`, waiting while librdkafka's queue is full.
    pub(super) fn send(&self, mut record: BaseRecord<'_, [u8], [u8]>) -> Result<(), KafkaError> {
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    self.producer.poll(Duration::ZERO);
                    std::thread::sleep(DELIVERY_WAIT);
                    record = back;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// Serve delivery reports until every record sent is acknowledged. rdkafka's `commit_transaction`
    /// flushes first, but its flush polls in 100 ms slices (its `poll` always waits out its timeout,
    /// spinning through the last millisecond), which would put a 100 ms floor under every transaction.
    /// Here: serve what has arrived, sleep [`DELIVERY_WAIT`], again.
    fn await_deliveries(&self) -> Result<(), KafkaError> {
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            self.producer.poll(Duration::ZERO);
            if self.producer.in_flight_count() == 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(KafkaError::Flush(RDKafkaErrorCode::MessageTimedOut));
            }
            std::thread::sleep(DELIVERY_WAIT);
        }
    }
}
