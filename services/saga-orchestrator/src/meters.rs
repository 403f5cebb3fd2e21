//! The orchestrator's saga metrics (names in causeway_observe::metrics::names), fed by the saga hosts
//! once what they report is committed.

use causeway_contracts::saga::SagaObserver;
use causeway_core::saga::Status;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// The saga metrics.
pub struct SagaMeters {
    instances: IntGaugeVec,
    finished: IntCounterVec,
    compensations: IntCounterVec,
    fired: IntCounterVec,
    step_seconds: HistogramVec,
    duration_seconds: HistogramVec,
    oldest_open_step: IntGaugeVec,
}

impl SagaMeters {
    /// Registered in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        use causeway_observe::metrics::names;
        let instances = IntGaugeVec::new(
            Opts::new(
                names::SAGA_INSTANCES,
                "Saga instances held by this process, by saga and status.",
            ),
            &["saga", "status"],
        )?;
        let finished = IntCounterVec::new(
            Opts::new(
                names::SAGA_FINISHED_TOTAL,
                "Saga instances finished, by saga and status (completed, compensated, failed).",
            ),
            &["saga", "status"],
        )?;
        let compensations = IntCounterVec::new(
            Opts::new(
                names::SAGA_COMPENSATIONS_TOTAL,
                "Saga instances that began compensating, by saga.",
            ),
            &["saga"],
        )?;
        let fired = IntCounterVec::new(
            Opts::new(
                names::SAGA_DEADLINES_FIRED_TOTAL,
                "Saga deadlines fired, by saga and deadline.",
            ),
            &["saga", "deadline"],
        )?;
        let buckets = prometheus::exponential_buckets(0.005, 2.0, 16)?;
        let step_seconds = HistogramVec::new(
            HistogramOpts::new(
                names::SAGA_STEP_SECONDS,
                "Time saga instances spent in a step, by saga and step, in seconds.",
            )
            .buckets(buckets.clone()),
            &["saga", "step"],
        )?;
        let duration_seconds = HistogramVec::new(
            HistogramOpts::new(
                names::SAGA_DURATION_SECONDS,
                "Time from a saga instance's start to its end, by saga and status, in seconds.",
            )
            .buckets(buckets),
            &["saga", "status"],
        )?;
        let oldest_open_step = IntGaugeVec::new(
            Opts::new(
                names::SAGA_OLDEST_OPEN_STEP_TIMESTAMP_SECONDS,
                "Unix time the open saga instance longest in its current step entered it, by saga; 0 \
                 when none is open.",
            ),
            &["saga"],
        )?;
        registry.register(Box::new(instances.clone()))?;
        registry.register(Box::new(oldest_open_step.clone()))?;
        registry.register(Box::new(finished.clone()))?;
        registry.register(Box::new(compensations.clone()))?;
        registry.register(Box::new(fired.clone()))?;
        registry.register(Box::new(step_seconds.clone()))?;
        registry.register(Box::new(duration_seconds.clone()))?;
        Ok(Self {
            instances,
            finished,
            compensations,
            fired,
            step_seconds,
            duration_seconds,
            oldest_open_step,
        })
    }

    /// Every series of `saga` (its statuses, outcomes and `deadlines`) shown, at zero until something
    /// happens, so that dashboards and alerts see the saga from its start.
    pub fn show(&self, saga: &str, deadlines: &[(&str, i64)]) {
        for status in Status::ALL {
            self.instances.with_label_values(&[saga, status.as_str()]);
            if status.is_terminal() {
                self.finished.with_label_values(&[saga, status.as_str()]);
            }
        }
        self.compensations.with_label_values(&[saga]);
        self.oldest_open_step.with_label_values(&[saga]);
        for (deadline, _) in deadlines {
            self.fired.with_label_values(&[saga, deadline]);
        }
    }
}

impl SagaObserver for SagaMeters {
    fn moved(&self, saga: &'static str, from: Option<Status>, to: Option<Status>) {
        if let Some(from) = from {
            self.instances
                .with_label_values(&[saga, from.as_str()])
                .dec();
        }
        if let Some(to) = to {
            self.instances.with_label_values(&[saga, to.as_str()]).inc();
        }
    }

    fn compensating(&self, saga: &'static str) {
        self.compensations.with_label_values(&[saga]).inc();
    }

    fn finished(&self, saga: &'static str, status: Status, ms: i64) {
        self.finished
            .with_label_values(&[saga, status.as_str()])
            .inc();
        self.duration_seconds
            .with_label_values(&[saga, status.as_str()])
            .observe(ms.max(0) as f64 / 1000.0);
    }

    fn fired(&self, saga: &'static str, name: &str) {
        self.fired.with_label_values(&[saga, name]).inc();
    }

    fn oldest_open_step(&self, saga: &'static str, since_ms: Option<i64>) {
        self.oldest_open_step
            .with_label_values(&[saga])
            .set(since_ms.map_or(0, |ms| ms.max(0) / 1000));
    }

    fn stepped(&self, saga: &'static str, step: &str, ms: i64) {
        self.step_seconds
            .with_label_values(&[saga, step])
            .observe(ms.max(0) as f64 / 1000.0);
    }
}
