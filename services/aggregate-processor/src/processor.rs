//! The job of `aggregate-processor`: wait for Kafka and the registry, then run the transactional
//! processor (crates/kafka) hosting the configured aggregates of the domain until shutdown.

use causeway_core::tracked::DedupWindow;
use causeway_kafka::processor::{Host, Hosted, Processor};
use causeway_orders::inventory::Inventory;
use causeway_orders::order::Order;
use causeway_orders::payment::Account;
use causeway_runtime::ServiceContext;

use crate::config::Config;
use crate::error::Error;

/// The host of aggregate type `name` (validated against the domain's list at config load).
fn host(name: &str, context: &str, window: DedupWindow) -> Option<Box<dyn Hosted>> {
    Some(match name {
        "order" => Box::new(Host::<Order>::new(context, window)),
        "inventory" => Box::new(Host::<Inventory>::new(context, window)),
        "payment" => Box::new(Host::<Account>::new(context, window)),
        _ => return None,
    })
}

/// Run until shutdown.
pub async fn run(config: Config, ctx: ServiceContext) -> Result<(), Error> {
    if !causeway_kafka::client::wait_for_broker(&ctx, &config.kafka).await? {
        return Ok(());
    }
    let registry = config.processor.registry_url.clone();
    let http = reqwest::Client::new();
    let reachable = ctx
        .wait_for("schema registry", || {
            let http = http.clone();
            let url = format!("{}/subjects", registry.trim_end_matches('/'));
            async move {
                http.get(url)
                    .send()
                    .await
                    .and_then(|r| r.error_for_status())
                    .map(|_| ())
                    .map_err(|e| Error::Registry(e.to_string()))
            }
        })
        .await?;
    if !reachable {
        return Ok(());
    }
    let window = config.processor.window();
    let mut processor = Processor::new(config.kafka.clone(), config.processor.clone());
    for name in &config.processor.aggregates {
        let hosted = host(name, &config.processor.context, window)
            .ok_or_else(|| Error::UnknownAggregate(name.clone()))?;
        processor = processor.host(hosted);
    }
    let runtime = tokio::runtime::Handle::current();
    let shutdown = ctx.shutdown.clone();
    let metrics = ctx.metrics.clone();
    let ready = ctx.clone();
    tokio::task::spawn_blocking(move || {
        processor.run(runtime, shutdown, metrics.registry(), |r| {
            ready.set_ready(r)
        })
    })
    .await
    .map_err(|e| Error::Task(e.to_string()))??;
    Ok(())
}
