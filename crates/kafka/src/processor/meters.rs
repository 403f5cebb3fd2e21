//! The processor's metrics (names in causeway_observe::metrics::names).

use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry};

pub(super) struct Meters {
    pub commands: IntCounterVec,
    pub forwarded: IntCounterVec,
    pub transactions: IntCounterVec,
    pub batch_records: Histogram,
    pub transaction_seconds: Histogram,
    pub restored: IntCounterVec,
}

impl Meters {
    /// The series of aggregate type `aggregate` at zero, so that dashboards see it before it is used.
    pub fn show(&self, aggregate: &str) {
        for outcome in ["accepted", "rejected", "duplicate", "dead_lettered"] {
            self.commands.with_label_values(&[aggregate, outcome]);
        }
        self.forwarded.with_label_values(&[aggregate]);
    }

    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        use causeway_observe::metrics::names;
        let commands = IntCounterVec::new(
            Opts::new(
                names::PROCESSOR_COMMANDS_TOTAL,
                "Commands processed, by aggregate type and outcome (accepted, rejected, duplicate, dead_lettered).",
            ),
            &["aggregate", "outcome"],
        )?;
        let forwarded = IntCounterVec::new(
            Opts::new(
                names::PROCESSOR_FORWARDED_TOTAL,
                "Command records found off their key's murmur2 home partition (a producer on another \
                 partitioner) and forwarded there, by aggregate type.",
            ),
            &["aggregate"],
        )?;
        let transactions = IntCounterVec::new(
            Opts::new(
                names::PROCESSOR_TRANSACTIONS_TOTAL,
                "Transactions, by result (committed, aborted).",
            ),
            &["result"],
        )?;
        let batch_records = Histogram::with_opts(
            HistogramOpts::new(
                names::PROCESSOR_BATCH_RECORDS,
                "Command records per transaction.",
            )
            .buckets(vec![
                1.0, 5.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0,
            ]),
        )?;
        let transaction_seconds = Histogram::with_opts(
            HistogramOpts::new(
                names::PROCESSOR_TRANSACTION_SECONDS,
                "Time from begin to commit of a transaction, in seconds.",
            )
            .buckets(prometheus::exponential_buckets(0.001, 2.0, 14)?),
        )?;
        let restored = IntCounterVec::new(
            Opts::new(
                names::PROCESSOR_RESTORED_RECORDS_TOTAL,
                "Changelog records read while restoring state, by aggregate type.",
            ),
            &["aggregate"],
        )?;
        // Both results shown from the start: an abort rate reads 0, not nothing.
        for result in ["committed", "aborted"] {
            transactions.with_label_values(&[result]);
        }
        registry.register(Box::new(commands.clone()))?;
        registry.register(Box::new(forwarded.clone()))?;
        registry.register(Box::new(transactions.clone()))?;
        registry.register(Box::new(batch_records.clone()))?;
        registry.register(Box::new(transaction_seconds.clone()))?;
        registry.register(Box::new(restored.clone()))?;
        Ok(Self {
            commands,
            forwarded,
            transactions,
            batch_records,
            transaction_seconds,
            restored,
        })
    }
}
