//! The Prometheus registry of a service and the names of every metric the suite exports. Names follow
//! `causeway_<area>_<what>_<unit>`; they are constants here so that dashboards, alert rules and code
//! agree on one spelling.

use prometheus::{Encoder, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

/// Metric names. Dashboards and alert rules in helm/ refer to these exact strings.
pub mod names {
    /// Gauge, always 1, labelled with the service name and version.
    pub const SERVICE_INFO: &str = "causeway_service_info";
    /// Gauge: 1 while the service reports ready on `/readyz`, else 0.
    pub const SERVICE_READY: &str = "causeway_service_ready";
    /// Gauge: Unix time the process started, in seconds.
    pub const SERVICE_START_TIME_SECONDS: &str = "causeway_service_start_time_seconds";
    /// Gauge: 1 while a schema registry instance is the elected writer, else 0.
    pub const REGISTRY_LEADER: &str = "causeway_registry_leader";
    /// Counter: commands processed, by `aggregate` and `outcome` (accepted, rejected, duplicate,
    /// dead_lettered).
    pub const PROCESSOR_COMMANDS_TOTAL: &str = "causeway_processor_commands_total";
    /// Counter: processor transactions, by `result` (committed, aborted).
    pub const PROCESSOR_TRANSACTIONS_TOTAL: &str = "causeway_processor_transactions_total";
    /// Histogram: command records per processor transaction.
    pub const PROCESSOR_BATCH_RECORDS: &str = "causeway_processor_batch_records";
    /// Histogram: processor transaction duration, begin to commit, in seconds.
    pub const PROCESSOR_TRANSACTION_SECONDS: &str = "causeway_processor_transaction_seconds";
    /// Counter: changelog records read while restoring state, by `aggregate`.
    pub const PROCESSOR_RESTORED_RECORDS_TOTAL: &str = "causeway_processor_restored_records_total";
    /// Counter: command records found off their key's home partition and forwarded there, by aggregate type.
    pub const PROCESSOR_FORWARDED_TOTAL: &str = "causeway_processor_forwarded_commands_total";
    /// Counter: records handled by a consumer runner (projectors), by `group` and `outcome` (written,
    /// skipped, dead_lettered).
    pub const CONSUMER_RECORDS_TOTAL: &str = "causeway_consumer_records_total";
    /// Counter: transient failures a consumer runner retried, by `group`.
    pub const CONSUMER_RETRIES_TOTAL: &str = "causeway_consumer_retries_total";
    /// Histogram: time a consumer runner took per batch (prepare, write, store offsets), in seconds.
    pub const CONSUMER_BATCH_SECONDS: &str = "causeway_consumer_batch_seconds";
    /// Gauge: records not yet handled by a consumer runner, by `group`, `topic` and `partition`.
    pub const CONSUMER_LAG_RECORDS: &str = "causeway_consumer_lag_records";
    /// Gauge: how far behind a consumer runner is in time, by `group`, `topic` and `partition`: 0 when
    /// nothing waits, else now minus the timestamp of the last record handled there (absent until one
    /// is), in seconds.
    pub const CONSUMER_LAG_SECONDS: &str = "causeway_consumer_lag_seconds";
    /// Gauge: keys whose records wait behind a dead letter (per-key order, `park_keys`), by `group`.
    pub const CONSUMER_PARKED_KEYS: &str = "causeway_consumer_parked_keys";
    /// Histogram: from an event's time (`occurred_at`) to its change applied to a read model, by
    /// `projection`, in seconds.
    pub const PROJECTION_FRESHNESS_SECONDS: &str = "causeway_projection_freshness_seconds";
    /// Counter: dead letters indexed by the dlq-reprocessor, by `group` and `class`.
    pub const DLQ_LETTERS_TOTAL: &str = "causeway_dlq_letters_total";
    /// Gauge: dead letters parked (neither replayed nor discarded), by `group`.
    pub const DLQ_DEPTH_RECORDS: &str = "causeway_dlq_depth_records";
    /// Gauge: age of the oldest parked dead letter, by `group`, in seconds (0 when none).
    pub const DLQ_OLDEST_AGE_SECONDS: &str = "causeway_dlq_oldest_age_seconds";
    /// Counter: dead letters sent back to their source, by `group` and `trigger` (operator, redrive).
    pub const DLQ_REPLAYS_TOTAL: &str = "causeway_dlq_replays_total";
    /// Counter: dead letters discarded by an operator, by `group`.
    pub const DLQ_DISCARDS_TOTAL: &str = "causeway_dlq_discards_total";
    /// Gauge: dead letters waiting behind their key's head (per-key order), every group.
    pub const DLQ_PARKED_BEHIND_RECORDS: &str = "causeway_dlq_parked_behind_records";
    /// Counter: replays refused by the loop guard (`dlq.max_replays`), by `group`.
    pub const DLQ_LOOP_GUARD_TOTAL: &str = "causeway_dlq_loop_guard_total";
    /// HTTP requests answered, by route, method and status (counter).
    pub const HTTP_REQUESTS_TOTAL: &str = "causeway_http_requests_total";
    /// Time to answer an HTTP request, by route and method, in seconds (histogram).
    pub const HTTP_REQUEST_SECONDS: &str = "causeway_http_request_seconds";
    /// Saga instances held, by saga and status (gauge).
    pub const SAGA_INSTANCES: &str = "causeway_saga_instances";
    /// Saga instances finished, by saga and status (completed, compensated, failed).
    pub const SAGA_FINISHED_TOTAL: &str = "causeway_saga_finished_total";
    /// Saga instances that began compensating, by saga.
    pub const SAGA_COMPENSATIONS_TOTAL: &str = "causeway_saga_compensations_total";
    /// Saga deadlines fired, by saga and deadline.
    pub const SAGA_DEADLINES_FIRED_TOTAL: &str = "causeway_saga_deadlines_fired_total";
    /// Time saga instances spent in a step, by saga and step, in seconds.
    pub const SAGA_STEP_SECONDS: &str = "causeway_saga_step_seconds";
    /// Time from a saga instance's start to its end, by saga and status, in seconds.
    pub const SAGA_DURATION_SECONDS: &str = "causeway_saga_duration_seconds";
    /// Unix time the open saga instance longest in its current step entered it, by saga, in seconds; 0
    /// when none is open (gauge). The stuck-saga alert compares it with the time.
    pub const SAGA_OLDEST_OPEN_STEP_TIMESTAMP_SECONDS: &str =
        "causeway_saga_oldest_open_step_timestamp_seconds";
}

/// A service's metrics registry with the metrics every service has.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    ready: IntGauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A registry for `service` at `version`, with the common metrics registered.
    pub fn new(service: &str, version: &str) -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let info = IntGaugeVec::new(
            Opts::new(names::SERVICE_INFO, "Service name and version; always 1."),
            &["service", "version"],
        )?;
        info.with_label_values(&[service, version]).set(1);
        registry.register(Box::new(info))?;

        let ready = IntGauge::new(
            names::SERVICE_READY,
            "Whether the service reports ready (1) or not (0).",
        )?;
        registry.register(Box::new(ready.clone()))?;

        let started = IntGauge::new(
            names::SERVICE_START_TIME_SECONDS,
            "Unix time the process started, in seconds.",
        )?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        started.set(i64::try_from(now).unwrap_or(i64::MAX));
        registry.register(Box::new(started))?;

        Ok(Self { registry, ready })
    }

    /// The registry, for registering a service's own metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Record readiness (mirrors `/readyz`).
    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// The Prometheus text exposition of every registered metric.
    pub fn encode(&self) -> Result<String, prometheus::Error> {
        let mut buf = Vec::with_capacity(4096);
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_service_and_readiness() -> Result<(), prometheus::Error> {
        let m = Metrics::new("command-gateway", "0.1.0")?;
        m.set_ready(true);
        let text = m.encode()?;
        assert!(
            text.contains(r#"causeway_service_info{service="command-gateway",version="0.1.0"} 1"#)
        );
        assert!(text.lines().any(|l| l == "causeway_service_ready 1"));
        Ok(())
    }
}
