//! The job of `saga-orchestrator`: wait for Kafka and the registry, then run the transactional loop
//! (crates/kafka's processor) hosting the configured sagas of the configured domain: one host per saga
//! consuming its inbox, and one router per source topic (the sagas' event stores and the command
//! results) forwarding each input to its instance's inbox partition.

use std::collections::BTreeMap;
use std::sync::Arc;

use causeway_contracts::saga::{Route, SagaRouter};
use causeway_kafka::processor::{Probe, Processor};
use causeway_runtime::ServiceContext;

use crate::config::Config;
use crate::error::Error;
use crate::meters::SagaMeters;

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
    let sagas: Vec<_> = if config.sagas.names.is_empty() {
        domain.sagas.clone()
    } else {
        config
            .sagas
            .names
            .iter()
            .map(|n| {
                domain
                    .saga_type(n)
                    .copied()
                    .ok_or_else(|| Error::UnknownSaga(n.clone()))
            })
            .collect::<Result<_, _>>()?
    };
    if sagas.is_empty() {
        return Err(Error::UnknownSaga(format!(
            "domain {} has no saga",
            domain.name
        )));
    }
    let meters =
        Arc::new(SagaMeters::new(ctx.metrics.registry()).map_err(|e| Error::Task(e.to_string()))?);
    let context = config.processor.context().to_string();
    let (policy, limits) = (config.sagas.policy(), config.processor.limits());
    let mut processor =
        Processor::new(config.kafka.clone(), config.processor.clone()).service("saga-orchestrator");
    // Each source topic gets one router carrying the routes of every saga that reads it; the command
    // results carry the replies of all of them.
    let mut routes: BTreeMap<String, Vec<Route>> = BTreeMap::new();
    for saga in &sagas {
        meters.show(saga.name, saga.deadlines);
        processor = processor.host(saga.host(&context, policy.clone(), limits, meters.clone()));
        let route = saga.route(&context);
        for source in saga.sources {
            routes
                .entry(format!("{context}.{source}.events"))
                .or_default()
                .push(route.clone());
        }
        routes
            .entry(config.processor.results_topic.clone())
            .or_default()
            .push(route);
    }
    for (source, routes) in routes {
        processor = processor.host(Box::new(SagaRouter::new(&source, routes, limits)));
    }
    tracing::info!(
        domain = domain.name,
        sagas = ?sagas.iter().map(|s| s.name).collect::<Vec<_>>(),
        "orchestrating"
    );
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
