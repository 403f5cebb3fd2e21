//! The job of `aggregate-processor`: wait for Kafka and the registry, then run the transactional
//! processor (crates/kafka) hosting the configured aggregates of the configured domain (as the build
//! registers it in causeway-domains) until shutdown.

use causeway_kafka::processor::{Probe, Processor};
use causeway_runtime::ServiceContext;

use crate::config::Config;
use crate::error::Error;

/// Run until shutdown.
pub async fn run(config: Config, ctx: ServiceContext) -> Result<(), Error> {
    let registry = config.processor.registry_url.as_str();
    if !causeway_kafka::processor::wait_for_dependencies(&ctx, &config.kafka, registry).await? {
        return Ok(());
    }
    let domains = causeway_domains::domains();
    let domain = domains
        .get(&config.processor.domain)
        .ok_or_else(|| Error::UnknownDomain(config.processor.domain.clone()))?;
    let names: Vec<&str> = if config.processor.aggregates.is_empty() {
        domain.aggregate_names()
    } else {
        config
            .processor
            .aggregates
            .iter()
            .map(String::as_str)
            .collect()
    };
    let (window, limits) = (config.processor.window(), config.processor.limits());
    let mut processor = Processor::new(config.kafka.clone(), config.processor.clone());
    for name in names {
        let aggregate = domain
            .aggregate_type(name)
            .ok_or_else(|| Error::UnknownAggregate(name.to_string()))?;
        processor = processor.host(aggregate.host(config.processor.context(), window, limits));
    }
    let runtime = tokio::runtime::Handle::current();
    let shutdown = ctx.shutdown.clone();
    let metrics = ctx.metrics.clone();
    let probes = ctx.clone();
    tokio::task::spawn_blocking(move || {
        processor.run(runtime, shutdown, metrics.registry(), move |probe| {
            probes.set_ready(probe == Probe::Ready);
            probes.set_healthy(probe != Probe::Stuck);
        })
    })
    .await
    .map_err(|e| Error::Task(e.to_string()))??;
    Ok(())
}
