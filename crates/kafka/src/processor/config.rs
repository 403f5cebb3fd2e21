//! The `[processor]` section of a processor's config.

use causeway_contracts::hosting::Limits;
use causeway_core::tracked::DedupWindow;
use causeway_runtime::Invalid;
use serde::{Deserialize, Serialize};

/// How the transactional processor runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessorConfig {
    /// The domain whose aggregates this process hosts, by the name it is registered under
    /// (domains/hosted lists the domains a build has).
    pub domain: String,
    /// The bounded context: the first segment of every topic (`<context>.<aggregate>.commands`).
    /// Empty: the domain's name.
    pub context: String,
    /// The aggregate types of the domain this process hosts. Empty: all of them.
    pub aggregates: Vec<String>,
    /// The consumer group. Dead letters go to `<group_id>.dlq`.
    pub group_id: String,
    /// The producer's transactional id: unique per process and stable across its restarts (a restart
    /// then aborts the transaction a crash left open at once). Empty: `<group_id>-<host name>`.
    pub transactional_id: String,
    /// The schema registry.
    pub registry_url: String,
    /// The command results topic.
    pub results_topic: String,
    /// Most command records in one transaction.
    pub max_batch_records: usize,
    /// Longest a batch collects records before its transaction begins, in ms. A batch also ends as soon
    /// as nothing more is fetched, so under light load transactions are small and quick.
    pub commit_interval_ms: u64,
    /// librdkafka's `transaction.timeout.ms`: how long a transaction left open by a crashed process
    /// blocks read_committed readers before the broker aborts it.
    pub transaction_timeout_ms: u64,
    /// Most command ids remembered per aggregate (idempotency window, by count).
    pub dedup_max_commands: usize,
    /// Longest a command id is remembered, in ms (idempotency window, by age). The window's clock is
    /// the command record's timestamp, never later than the processor's clock.
    pub dedup_max_age_ms: i64,
    /// Most bytes of remembered command ids and rejection reasons per aggregate (idempotency window,
    /// by size), so that no state record outgrows its topic's message size.
    pub dedup_max_bytes: usize,
    /// `/readyz` answers 503 while no batch has committed for this long although work is waiting, in ms.
    pub stall_ready_ms: u64,
    /// `/healthz` answers 503 (a restart is the better cure) once that has lasted this long, in ms.
    pub stall_health_ms: u64,
    /// Most bytes of a command id, aggregate id or correlation id; a command with a longer one is
    /// dead-lettered.
    pub max_id_bytes: usize,
    /// Most bytes of a rejection or dead-letter reason; longer ones are cut.
    pub max_reason_bytes: usize,
    /// The folder where the instance keeps aggregate states on disk (one file per instance, named by
    /// its transactional id), with the changelog offset they reflect: a restart reads only the
    /// changelog written since, and decoded states in memory are bounded by `state_cache_states`
    /// however many aggregates there are. Empty: states live in memory only and each start reads the
    /// whole changelog. Sagas always restore from their changelog.
    pub state_dir: String,
    /// Most aggregate states held in memory when `state_dir` is set; beyond, the least recently used
    /// are dropped and read back from disk when a command needs them.
    pub state_cache_states: usize,
    /// Memory for the on-disk store's own page cache, in bytes.
    pub state_store_cache_bytes: usize,
    /// How often the on-disk store is made durable, in ms. A crash loses at most this much of it,
    /// which the next start reads again from the changelog.
    pub state_flush_ms: u64,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        let window = DedupWindow::default();
        let limits = Limits::default();
        Self {
            domain: String::new(),
            context: String::new(),
            aggregates: Vec::new(),
            group_id: "aggregate-processor".into(),
            transactional_id: String::new(),
            registry_url: "http://127.0.0.1:18081".into(),
            results_topic: "causeway.command-results".into(),
            max_batch_records: 500,
            commit_interval_ms: 50,
            transaction_timeout_ms: 60_000,
            dedup_max_commands: window.max_commands,
            dedup_max_age_ms: window.max_age_ms,
            dedup_max_bytes: window.max_bytes,
            stall_ready_ms: 30_000,
            stall_health_ms: 300_000,
            max_id_bytes: limits.max_id_bytes,
            max_reason_bytes: limits.max_reason_bytes,
            state_dir: String::new(),
            state_cache_states: 10_000,
            state_store_cache_bytes: 16 * 1024 * 1024,
            state_flush_ms: 5_000,
        }
    }
}

impl ProcessorConfig {
    /// The idempotency window.
    pub fn window(&self) -> DedupWindow {
        DedupWindow {
            max_commands: self.dedup_max_commands,
            max_age_ms: self.dedup_max_age_ms,
            max_bytes: self.dedup_max_bytes,
        }
    }

    /// The size limits on what a command brings in.
    pub fn limits(&self) -> Limits {
        Limits {
            max_id_bytes: self.max_id_bytes,
            max_reason_bytes: self.max_reason_bytes,
        }
    }

    /// The bounded context: `context`, or the domain's name when it is empty.
    pub fn context(&self) -> &str {
        if self.context.is_empty() {
            &self.domain
        } else {
            &self.context
        }
    }

    /// The transaction timeout in force: librdkafka's `transaction.timeout.ms` when `kafka` passes one,
    /// else `transaction_timeout_ms`.
    pub fn effective_transaction_timeout(&self, kafka: &crate::KafkaConfig) -> std::time::Duration {
        let ms = kafka
            .properties
            .get("transaction.timeout.ms")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(self.transaction_timeout_ms);
        std::time::Duration::from_millis(ms)
    }

    /// The file of the instance's on-disk store, when `state_dir` is set.
    pub fn state_file(&self) -> Option<std::path::PathBuf> {
        (!self.state_dir.is_empty()).then(|| {
            let name: String = self
                .transactional_id()
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            std::path::Path::new(&self.state_dir).join(format!("{name}.redb"))
        })
    }

    /// The dead-letter topic.
    pub fn dlq_topic(&self) -> String {
        format!("{}.dlq", self.group_id)
    }

    /// The transactional id, defaulted from the group and host name.
    pub fn transactional_id(&self) -> String {
        if !self.transactional_id.is_empty() {
            return self.transactional_id.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        format!("{}-{}", self.group_id, host)
    }

    /// What is wrong with it, keys prefixed with `section`.
    pub fn check(&self, section: &str) -> Vec<Invalid> {
        let mut out = Vec::new();
        let mut bad = |key: &str, message: &str| {
            out.push(Invalid::new(format!("{section}.{key}"), message));
        };
        if self.domain.is_empty() {
            bad("domain", "name the domain to host");
        }
        if self.group_id.is_empty() {
            bad("group_id", "must not be empty");
        }
        if !self.registry_url.starts_with("http://") && !self.registry_url.starts_with("https://") {
            bad("registry_url", "must be an http:// or https:// URL");
        }
        if self.results_topic.is_empty() {
            bad("results_topic", "must not be empty");
        }
        if self.max_batch_records == 0 {
            bad("max_batch_records", "must be at least 1");
        }
        if self.commit_interval_ms == 0 {
            bad("commit_interval_ms", "must be at least 1");
        }
        if self.transaction_timeout_ms < 1000 {
            bad("transaction_timeout_ms", "must be at least 1000");
        }
        if self.dedup_max_commands == 0 {
            bad("dedup_max_commands", "must be at least 1");
        }
        if self.dedup_max_age_ms <= 0 {
            bad("dedup_max_age_ms", "must be positive");
        }
        if self.dedup_max_bytes < 1024 {
            bad("dedup_max_bytes", "must be at least 1024");
        }
        if self.stall_ready_ms < 1000 {
            bad("stall_ready_ms", "must be at least 1000");
        }
        if self.stall_health_ms <= self.stall_ready_ms {
            bad("stall_health_ms", "must be more than stall_ready_ms");
        }
        if !(16..=65_536).contains(&self.max_id_bytes) {
            bad("max_id_bytes", "must be between 16 and 65536");
        }
        if !(64..=65_536).contains(&self.max_reason_bytes) {
            bad("max_reason_bytes", "must be between 64 and 65536");
        }
        if self.state_cache_states < 10 {
            bad("state_cache_states", "must be at least 10");
        }
        if self.state_store_cache_bytes < 1024 * 1024 {
            bad(
                "state_store_cache_bytes",
                "must be at least 1048576 (1 MiB)",
            );
        }
        if self.state_flush_ms == 0 {
            bad("state_flush_ms", "must be at least 1");
        }
        out
    }
}
