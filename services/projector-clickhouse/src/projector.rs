//! The job of `projector-clickhouse`. Until projections land it waits for Kafka and ClickHouse,
//! says it is not built yet (never ready), and runs until the shutdown signal.

use causeway_runtime::ServiceContext;

use crate::config::Config;
use crate::error::Error;
use crate::sink;

/// Run until shutdown.
pub async fn run(config: Config, ctx: ServiceContext) -> Result<(), Error> {
    if !causeway_kafka::client::wait_for_broker(&ctx, &config.kafka).await? {
        return Ok(());
    }
    let client = sink::client(&config.clickhouse);
    if !ctx.wait_for("clickhouse", || sink::ping(&client)).await? {
        return Ok(());
    }
    ctx.not_built("projections into ClickHouse (planned)");
    ctx.shutdown.wait().await;
    Ok(())
}
