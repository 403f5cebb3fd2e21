//! `causeway projections`: the read models of a domain and how far their projector is behind.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::KafkaArgs;

#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Per projection, the records its projector has not applied yet and how old the oldest is.
    Status(StatusArgs),
    /// Rebuild a projection's read model (in Redis, or its table in ClickHouse) from offset 0 beside
    /// the live one, switch reads to it once complete, and delete the old one; the projectors keep
    /// running meanwhile.
    Rebuild(RebuildArgs),
}

#[derive(Debug, Args)]
pub struct RebuildArgs {
    /// The projection (e.g. order-by-id).
    name: String,
    /// The domain (as the build registers it).
    #[arg(long, default_value = "orders")]
    domain: String,
    /// The first segment of the event topics (default: the domain's name).
    #[arg(long)]
    context: Option<String>,
    /// The projector's key or table prefix (its `projector.prefix`).
    #[arg(long, default_value = "causeway")]
    prefix: String,
    /// Which projector's store: projector-redis's read models or projector-clickhouse's tables.
    #[arg(long, value_enum, default_value_t = Store::Redis)]
    store: Store,
    /// The Redis of the read models (`--store redis`). The default is the local stack of `make up`.
    #[arg(
        long,
        env = "CAUSEWAY_REDIS_URL",
        default_value = "redis://127.0.0.1:16379"
    )]
    redis: String,
    /// ClickHouse's HTTP interface (`--store clickhouse`). The default is the local stack of `make up`.
    #[arg(
        long,
        env = "CAUSEWAY_CLICKHOUSE_URL",
        default_value = "http://127.0.0.1:18123"
    )]
    clickhouse: String,
    /// The ClickHouse database of the tables.
    #[arg(long, default_value = "default")]
    clickhouse_database: String,
    /// The ClickHouse user; its password, if any, is read from CAUSEWAY_CLICKHOUSE_PASSWORD (never
    /// from the command line, where other users of the machine could see it).
    #[arg(long, default_value = "default")]
    clickhouse_user: String,
    /// The schema registry. The default is the local stack of `make up`.
    #[arg(
        long,
        env = "CAUSEWAY_REGISTRY_URL",
        default_value = "http://127.0.0.1:18081"
    )]
    registry: String,
    #[command(flatten)]
    kafka: KafkaArgs,
}

/// The store a rebuild writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Store {
    /// projector-redis's read models.
    Redis,
    /// projector-clickhouse's documents tables (and the views over them).
    Clickhouse,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The domain (as the build registers it).
    #[arg(long, default_value = "orders")]
    domain: String,
    /// The first segment of the event topics (default: the domain's name).
    #[arg(long)]
    context: Option<String>,
    /// The projector's consumer group (its `projector.group_id`).
    #[arg(long, default_value = "projector-redis")]
    group: String,
    /// How long to wait for the brokers, in seconds.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    timeout: u64,
    /// One line per partition too (committed offset, end, lag).
    #[arg(long)]
    partitions: bool,
    #[command(flatten)]
    kafka: KafkaArgs,
}

pub async fn run(cmd: ProjectionsCommand) -> ExitCode {
    match cmd {
        ProjectionsCommand::Status(args) => status(args).await,
        ProjectionsCommand::Rebuild(args) => rebuild(args).await,
    }
}

async fn rebuild(args: RebuildArgs) -> ExitCode {
    let kafka = match args.kafka.config() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("causeway projections rebuild: {e}");
            return ExitCode::from(2);
        }
    };
    let domains = causeway_domains::domains();
    let Some(domain) = domains.get(&args.domain) else {
        eprintln!(
            "causeway projections rebuild: unknown domain {:?}; this build hosts {:?}",
            args.domain,
            domains.names()
        );
        return ExitCode::from(2);
    };
    let Some(projection) = domain.projection_type(&args.name) else {
        eprintln!(
            "causeway projections rebuild: domain {:?} has no projection {:?}; it has {:?}",
            domain.name,
            args.name,
            domain
                .projections
                .iter()
                .map(|p| p.name)
                .collect::<Vec<_>>()
        );
        return ExitCode::from(2);
    };
    match args.store {
        Store::Redis if redis::Client::open(args.redis.as_str()).is_err() => {
            eprintln!(
                "causeway projections rebuild: --redis {:?} is not a Redis URL",
                args.redis
            );
            return ExitCode::from(2);
        }
        Store::Clickhouse
            if !(args.clickhouse.starts_with("http://")
                || args.clickhouse.starts_with("https://")) =>
        {
            eprintln!(
                "causeway projections rebuild: --clickhouse {:?} is not an http:// or https:// URL of ClickHouse's HTTP interface",
                args.clickhouse
            );
            return ExitCode::from(2);
        }
        _ => {}
    }
    let context = args
        .context
        .clone()
        .unwrap_or_else(|| domain.name.to_string());
    let hosted = projection.host();
    let fields = hosted.fields();
    let name = hosted.name();
    let projections: Vec<&'static str> = domain.projections.iter().map(|p| p.name).collect();
    let views = match projector_clickhouse::tables::views(domain, &projections) {
        Ok(v) => v,
        Err(e) => {
            eprintln!(
                "causeway projections rebuild: domain {:?}: {e}",
                domain.name
            );
            return ExitCode::FAILURE;
        }
    };
    let runtime = tokio::runtime::Handle::current();
    let store = args.store;
    let outcome = tokio::task::spawn_blocking(move || {
        let source = causeway_kafka::rebuild::Source {
            kafka: &kafka,
            registry_url: &args.registry,
            context: &context,
            prefix: &args.prefix,
        };
        let progress = |p: causeway_kafka::rebuild::Progress| {
            let left = p.total.saturating_sub(p.events) as f64 / p.rate.max(1.0);
            say!(
                "generation {}: {} of about {} records, {:.0}/s, about {:.0} s left",
                p.generation,
                p.events,
                p.total,
                p.rate,
                left
            );
        };
        match store {
            Store::Redis => {
                let redis = causeway_redis::RedisConfig {
                    url: args.redis.clone(),
                };
                let mut side =
                    projector_redis::rebuild::Store::connect(&redis, &args.prefix, name, &runtime)
                        .map_err(|e| e.to_string())?;
                causeway_kafka::rebuild::rebuild(&source, hosted, &mut side, &runtime, progress)
                    .map_err(|e| e.to_string())
            }
            Store::Clickhouse => {
                let clickhouse = projector_clickhouse::config::ClickHouseConfig {
                    url: args.clickhouse.clone(),
                    database: args.clickhouse_database.clone(),
                    user: args.clickhouse_user.clone(),
                    password: std::env::var("CAUSEWAY_CLICKHOUSE_PASSWORD").unwrap_or_default(),
                };
                let mut side = projector_clickhouse::rebuild::Store::new(
                    &clickhouse,
                    &args.prefix,
                    name,
                    fields,
                    views,
                    projections,
                    &runtime,
                );
                causeway_kafka::rebuild::rebuild(&source, hosted, &mut side, &runtime, progress)
                    .map_err(|e| e.to_string())
            }
        }
    })
    .await;
    let unit = match store {
        Store::Redis => "keys",
        Store::Clickhouse => "rows",
    };
    match outcome {
        Ok(Ok(o)) => {
            say!(
                "{}: reads switched from generation {} to {} ({} events replayed, {} poison skipped, in {:.1} s)",
                name,
                o.old,
                o.new,
                o.events,
                o.poison,
                o.elapsed.as_secs_f64()
            );
            match o.retired {
                Ok(n) => {
                    say!("generation {} deleted ({n} {unit})", o.old);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!(
                        "causeway projections rebuild: reads switched, but deleting generation {} failed: {e} (the next rebuild of {name} deletes it)",
                        o.old
                    );
                    ExitCode::FAILURE
                }
            }
        }
        Ok(Err(e)) => {
            eprintln!("causeway projections rebuild: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("causeway projections rebuild: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn status(args: StatusArgs) -> ExitCode {
    let kafka = match args.kafka.config() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("causeway projections status: {e}");
            return ExitCode::from(2);
        }
    };
    let domains = causeway_domains::domains();
    let Some(domain) = domains.get(&args.domain) else {
        eprintln!(
            "causeway projections status: unknown domain {:?}; this build hosts {:?}",
            args.domain,
            domains.names()
        );
        return ExitCode::from(2);
    };
    let context = args
        .context
        .clone()
        .unwrap_or_else(|| domain.name.to_string());
    let mut topics: Vec<String> = domain
        .projections
        .iter()
        .map(|p| format!("{context}.{}.events", p.aggregate))
        .collect();
    topics.sort();
    topics.dedup();
    let group = args.group.clone();
    let timeout = Duration::from_secs(args.timeout);
    let lag = tokio::task::spawn_blocking(move || {
        causeway_kafka::lag::group_lag(&kafka, &group, &topics, timeout)
    })
    .await;
    let lag = match lag {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => {
            eprintln!("causeway projections status: {e}");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("causeway projections status: {e}");
            return ExitCode::FAILURE;
        }
    };
    say!("group {}", args.group);
    say!(
        "{:<20} {:<36} {:>12} {:>12}",
        "PROJECTION",
        "TOPIC",
        "LAG_RECORDS",
        "BEHIND_S"
    );
    for p in &domain.projections {
        let topic = format!("{context}.{}.events", p.aggregate);
        let parts: Vec<_> = lag.iter().filter(|l| l.topic == topic).collect();
        let records: i64 = parts.iter().map(|l| l.records).sum();
        let behind = parts
            .iter()
            .filter_map(|l| l.seconds)
            .fold(0.0f64, f64::max);
        // How old the oldest waiting record is could not be read: say so rather than 0.
        let unknown = parts.iter().any(|l| l.records > 0 && l.seconds.is_none());
        let behind = if unknown {
            "-".to_string()
        } else {
            format!("{behind:.1}")
        };
        say!(
            "{:<20} {:<36} {:>12} {:>12}",
            p.name,
            topic,
            records,
            behind
        );
        if args.partitions {
            for l in &parts {
                say!(
                    "  [{}] committed {} end {} lag {} behind {}",
                    l.partition,
                    l.committed.map_or("-".to_string(), |c| c.to_string()),
                    l.end,
                    l.records,
                    l.seconds.map_or("-".to_string(), |s| format!("{s:.1}"))
                );
            }
        }
    }
    ExitCode::SUCCESS
}
