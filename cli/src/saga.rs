//! `causeway saga`: saga instances as their changelog (`<context>.<saga>.changelog`, compacted) holds
//! them: one instance (`show`), instances by status and age (`list`), open instances stuck in one step
//! longer than a threshold (`stuck`). Read straight from Kafka (read_committed) and decoded through the
//! registry; only the envelope every saga's state record shares is interpreted, so any domain's sagas
//! print the same way.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use causeway_contracts::upcast::Upcasters;
use causeway_contracts::wire::Codec;
use causeway_kafka::client::ReadsToEnd;
use causeway_kafka::config::OffsetMode;
use causeway_kafka::lag::partition_ends;
use causeway_kafka::partitioner::home_partition;
use clap::{Args, Subcommand};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::{Value, json};

use crate::KafkaArgs;
use crate::when::{duration, now_ms, parse_duration, utc};

#[derive(Debug, Subcommand)]
pub enum SagaCommand {
    /// One instance: its status and step, the commands it awaits (with their attempts), its running
    /// deadlines and its history of steps with times.
    Show(ShowArgs),
    /// Instances, oldest first, filtered by status and age.
    List(ListArgs),
    /// Open instances (running or compensating, or awaiting a reply) in their current step for longer
    /// than a threshold, longest first.
    Stuck(StuckArgs),
}

/// Which saga, and where its changelog is.
#[derive(Debug, Args)]
pub struct SagaArgs {
    /// The saga (as its domain names it).
    #[arg(long, default_value = "order-fulfilment")]
    saga: String,
    /// The first segment of its topics (`<context>.<saga>.changelog`).
    #[arg(long, default_value = "orders")]
    context: String,
    /// The schema registry. The default is the local stack of `make up`.
    #[arg(
        long,
        env = "CAUSEWAY_REGISTRY_URL",
        default_value = "http://127.0.0.1:18081"
    )]
    registry: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    kafka: KafkaArgs,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The saga id (for OrderFulfilment, the order id).
    id: String,
    #[command(flatten)]
    saga: SagaArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only these statuses (comma-separated): running, compensating, completed, compensated, failed.
    #[arg(long, value_delimiter = ',')]
    status: Vec<String>,
    /// Only instances started at least this long ago (e.g. 30s, 10m, 2h).
    #[arg(long, value_parser = parse_duration)]
    older_than: Option<i64>,
    /// Only instances started at most this long ago.
    #[arg(long, value_parser = parse_duration)]
    newer_than: Option<i64>,
    /// At most this many.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    limit: u32,
    #[command(flatten)]
    saga: SagaArgs,
}

#[derive(Debug, Args)]
pub struct StuckArgs {
    /// In their current step for at least this long (e.g. 30s, 10m, 2h).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    longer_than: i64,
    /// At most this many.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    limit: u32,
    #[command(flatten)]
    saga: SagaArgs,
}

/// The statuses a saga instance can have.
const STATUSES: [&str; 5] = [
    "running",
    "compensating",
    "completed",
    "compensated",
    "failed",
];

pub async fn run(cmd: SagaCommand) -> ExitCode {
    match cmd {
        SagaCommand::Show(args) => show(args).await,
        SagaCommand::List(args) => list(args).await,
        SagaCommand::Stuck(args) => stuck(args).await,
    }
}

/// How long a read of the changelog may wait for Kafka, and for the next record while it reads.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Why the changelog could not be read: bad input (exit 2) or Kafka and the registry (exit 1).
enum ReadError {
    /// The arguments name nothing readable (an unknown saga or context, a bad property).
    Input(String),
    /// Kafka or the registry failed.
    Failed(String),
}

impl ReadError {
    fn exit(self, what: &str) -> ExitCode {
        match self {
            ReadError::Input(e) => {
                eprintln!("causeway saga {what}: {e}");
                ExitCode::from(2)
            }
            ReadError::Failed(e) => {
                eprintln!("causeway saga {what}: {e}");
                ExitCode::FAILURE
            }
        }
    }
}

/// The instances read: the latest record of each key, and how many records could not be read.
struct Read {
    instances: Vec<Value>,
    unreadable: usize,
}

/// The latest record of every key of the saga's changelog (only `only`'s partition and key when
/// given), decoded as JSON; keys whose latest record is a tombstone are left out. A record that cannot
/// be decoded is counted and skipped; a record that is not a saga's state makes the whole read bad
/// input (the arguments name another changelog).
async fn read_latest(args: &SagaArgs, only: Option<&str>) -> Result<Read, ReadError> {
    let topic = format!("{}.{}.changelog", args.context, args.saga);
    let kafka = args.kafka.config().map_err(ReadError::Input)?;
    let mut config = kafka.consumer_config(
        "causeway-cli",
        &format!("causeway-cli-saga-{}", std::process::id()),
        OffsetMode::Transactional,
    );
    config.set("enable.partition.eof", "true");
    let consumer: BaseConsumer<ReadsToEnd> = config
        .create_with_context(ReadsToEnd)
        .map_err(|e| ReadError::Input(format!("cannot create a Kafka consumer: {e}")))?;
    let ends = partition_ends(&consumer, &topic, TIMEOUT).map_err(|e| match e {
        causeway_kafka::Error::MissingTopic(_) => ReadError::Input(format!(
            "{topic} does not exist: is {} a saga of context {}? (`causeway topics apply` creates it)",
            args.saga, args.context
        )),
        other => ReadError::Failed(format!("{topic}: {other}")),
    })?;
    let count = i32::try_from(ends.len()).unwrap_or(i32::MAX);
    let home = only.map(|id| home_partition(id.as_bytes(), count));
    let mut list = TopicPartitionList::new();
    let mut remaining = std::collections::HashSet::new();
    for (partition, low, end) in ends {
        if home.is_some_and(|h| h != partition) || end <= low {
            continue;
        }
        list.add_partition_offset(&topic, partition, Offset::Beginning)
            .map_err(|e| ReadError::Failed(format!("{topic}: {e}")))?;
        remaining.insert(partition);
    }
    let mut latest: HashMap<String, Option<Vec<u8>>> = HashMap::new();
    if !remaining.is_empty() {
        consumer
            .assign(&list)
            .map_err(|e| ReadError::Failed(format!("cannot read {topic}: {e}")))?;
    }
    // However long the changelog, the read goes on while records come; it gives up only when none
    // has come for TIMEOUT.
    let mut last_progress = std::time::Instant::now();
    while !remaining.is_empty() {
        if last_progress.elapsed() > TIMEOUT {
            return Err(ReadError::Failed(format!(
                "{topic}: partitions {remaining:?} were not read to their end (nothing came for {TIMEOUT:?})"
            )));
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                remaining.remove(&p);
            }
            Some(Err(e)) => return Err(ReadError::Failed(format!("{topic}: {e}"))),
            Some(Ok(m)) => {
                last_progress = std::time::Instant::now();
                let Some(key) = m.key().map(|k| String::from_utf8_lossy(k).into_owned()) else {
                    continue;
                };
                if only.is_some_and(|id| id != key) {
                    continue;
                }
                latest.insert(key, m.payload().map(<[u8]>::to_vec));
            }
        }
    }
    let codec = Codec::new(&args.registry);
    let mut read = Read {
        instances: Vec::with_capacity(latest.len()),
        unreadable: 0,
    };
    for (key, payload) in latest {
        let Some(bytes) = payload else { continue };
        let json = match codec.decode_value(&bytes, &Upcasters::default()).await {
            Ok(decoded) => Value::try_from(decoded.value).map_err(|e| e.to_string()),
            Err(causeway_contracts::wire::WireError::Registry(e)) => {
                return Err(ReadError::Failed(format!("the schema registry: {e}")));
            }
            Err(e) => Err(e.to_string()),
        };
        match json {
            Ok(json) if is_saga_record(&json) => read.instances.push(json),
            Ok(_) => {
                return Err(ReadError::Input(format!(
                    "{topic} is not a saga's changelog (its records have no saga_id, status and \
                     step): is {} a saga?",
                    args.saga
                )));
            }
            Err(e) => {
                eprintln!("causeway saga: {topic} {key}: cannot read its latest record: {e}");
                read.unreadable += 1;
            }
        }
    }
    Ok(read)
}

/// Whether `v` has the envelope every saga state record has.
fn is_saga_record(v: &Value) -> bool {
    ["saga_id", "status", "step", "step_since", "started_at"]
        .iter()
        .all(|f| v.get(f).is_some())
}

/// The exit code after printing what could be read: 1 when some records could not be.
fn done(read: &Read, what: &str) -> ExitCode {
    if read.unreadable == 0 {
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "causeway saga {what}: {} record(s) could not be read and are not shown",
        read.unreadable
    );
    ExitCode::FAILURE
}

fn text<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get(field).and_then(Value::as_str).unwrap_or("")
}

fn number(v: &Value, field: &str) -> i64 {
    v.get(field).and_then(Value::as_i64).unwrap_or(0)
}

fn items<'a>(v: &'a Value, field: &str) -> &'a [Value] {
    v.get(field)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Open: not done (a terminal status with nothing awaited).
fn is_open(v: &Value) -> bool {
    matches!(text(v, "status"), "running" | "compensating") || !items(v, "pending").is_empty()
}

/// An instance as JSON for `--json`: the envelope, its domain state, and the awaited commands without
/// their bytes.
fn summary(v: &Value) -> Value {
    let pending: Vec<Value> = items(v, "pending")
        .iter()
        .map(|p| {
            json!({
                "key": text(p, "key"),
                "command_id": text(p, "command_id"),
                "attempts": number(p, "attempts"),
                "first_sent_at": number(p, "first_sent_at"),
                "retry_at": number(p, "retry_at"),
                "topic": text(p, "topic"),
                "record_key": text(p, "record_key"),
            })
        })
        .collect();
    json!({
        "saga_id": text(v, "saga_id"),
        "status": text(v, "status"),
        "step": text(v, "step"),
        "open": is_open(v),
        "started_at": number(v, "started_at"),
        "step_since": number(v, "step_since"),
        "updated_at": number(v, "updated_at"),
        "deadlines_fired": number(v, "deadlines_fired"),
        "pending": pending,
        "timers": v.get("timers").cloned().unwrap_or(Value::Null),
        "history": v.get("history").cloned().unwrap_or(Value::Null),
        "state": v.get("state").cloned().unwrap_or(Value::Null),
    })
}

async fn show(args: ShowArgs) -> ExitCode {
    let found = match read_latest(&args.saga, Some(&args.id)).await {
        Ok(found) => found,
        Err(e) => return e.exit("show"),
    };
    let Some(v) = found.instances.first() else {
        if found.unreadable > 0 {
            return done(&found, "show");
        }
        eprintln!(
            "causeway saga show: no instance {:?} of saga {} (context {})",
            args.id, args.saga.saga, args.saga.context
        );
        return ExitCode::from(2);
    };
    if args.saga.json {
        say!("{}", summary(v));
        return ExitCode::SUCCESS;
    }
    let now = now_ms();
    say!(
        "saga {} {}: {}, step {} for {}",
        args.saga.saga,
        text(v, "saga_id"),
        text(v, "status"),
        text(v, "step"),
        duration(now - number(v, "step_since"))
    );
    say!(
        "started {} UTC, last changed {} UTC; deadlines fired: {}",
        utc(number(v, "started_at")),
        utc(number(v, "updated_at")),
        number(v, "deadlines_fired")
    );
    let pending = items(v, "pending");
    if pending.is_empty() {
        say!("awaiting: nothing");
    }
    for p in pending {
        let retry = number(p, "retry_at") - now;
        say!(
            "awaiting: {} ({} to {} {}), sent {} time(s), {} {}",
            text(p, "key"),
            text(p, "command_id"),
            text(p, "topic"),
            text(p, "record_key"),
            number(p, "attempts"),
            if retry >= 0 {
                "next send or give-up in"
            } else {
                "overdue by"
            },
            duration(retry.abs())
        );
    }
    let timers = items(v, "timers");
    if timers.is_empty() {
        say!("deadlines: none pending");
    }
    for t in timers {
        let at = number(t, "at");
        say!(
            "deadline: {} at {} UTC ({} {})",
            text(t, "name"),
            utc(at),
            if at >= now { "in" } else { "overdue by" },
            duration((at - now).abs())
        );
    }
    say!("history:");
    for h in items(v, "history") {
        say!(
            "  {} UTC  {:<20} {}",
            utc(number(h, "at")),
            text(h, "step"),
            text(h, "what")
        );
    }
    if let Some(state) = v.get("state") {
        say!("state: {state}");
    }
    ExitCode::SUCCESS
}

/// Print `rows` (already filtered and sorted) as a table or JSON.
fn print(rows: &[&Value], json_out: bool, total: usize, what: &str) {
    if json_out {
        let all: Vec<Value> = rows.iter().map(|v| summary(v)).collect();
        say!("{}", json!({ "instances": all, "matched": total }));
        return;
    }
    if rows.is_empty() {
        say!("no {what}");
        return;
    }
    let now = now_ms();
    say!(
        "{:<24} {:<13} {:<20} {:>12} {:>12}  {}",
        "SAGA ID",
        "STATUS",
        "STEP",
        "IN STEP",
        "AGE",
        "AWAITING"
    );
    for v in rows {
        let awaiting: Vec<&str> = items(v, "pending").iter().map(|p| text(p, "key")).collect();
        say!(
            "{:<24} {:<13} {:<20} {:>12} {:>12}  {}",
            text(v, "saga_id"),
            text(v, "status"),
            text(v, "step"),
            duration(now - number(v, "step_since")),
            duration(now - number(v, "started_at")),
            awaiting.join(",")
        );
    }
    if total > rows.len() {
        say!("({} of {total} shown; --limit for more)", rows.len());
    }
}

async fn list(args: ListArgs) -> ExitCode {
    if let Some(bad) = args.status.iter().find(|s| !STATUSES.contains(&s.as_str())) {
        eprintln!("causeway saga list: unknown status {bad:?}; use one of {STATUSES:?}");
        return ExitCode::from(2);
    }
    let read = match read_latest(&args.saga, None).await {
        Ok(read) => read,
        Err(e) => return e.exit("list"),
    };
    let now = now_ms();
    let mut rows: Vec<&Value> = read
        .instances
        .iter()
        .filter(|v| args.status.is_empty() || args.status.iter().any(|s| s == text(v, "status")))
        .filter(|v| {
            let age = now - number(v, "started_at");
            args.older_than.is_none_or(|o| age >= o) && args.newer_than.is_none_or(|n| age <= n)
        })
        .collect();
    rows.sort_by_key(|v| (number(v, "started_at"), text(v, "saga_id").to_string()));
    let total = rows.len();
    rows.truncate(usize::try_from(args.limit).unwrap_or(usize::MAX));
    print(&rows, args.saga.json, total, "instances match");
    done(&read, "list")
}

async fn stuck(args: StuckArgs) -> ExitCode {
    let read = match read_latest(&args.saga, None).await {
        Ok(read) => read,
        Err(e) => return e.exit("stuck"),
    };
    let now = now_ms();
    let mut rows: Vec<&Value> = read
        .instances
        .iter()
        .filter(|v| is_open(v) && now - number(v, "step_since") >= args.longer_than)
        .collect();
    rows.sort_by_key(|v| (number(v, "step_since"), text(v, "saga_id").to_string()));
    let total = rows.len();
    rows.truncate(usize::try_from(args.limit).unwrap_or(usize::MAX));
    let what = format!(
        "instance in one step for {} or longer",
        duration(args.longer_than)
    );
    print(&rows, args.saga.json, total, &what);
    done(&read, "stuck")
}
