//! The job of `projector-redis`. Until projections land it waits for Kafka and Redis, says it
//! is not built yet (never ready), and runs until the shutdown signal.

use causeway_runtime::ServiceContext;

use crate::config::Config;
use crate::error::Error;
use crate::store;

/// Run until shutdown.
pub async fn run(config: Config, ctx: ServiceContext) -> Result<(), Error> {
    if !causeway_kafka::client::wait_for_broker(&ctx, &config.kafka).await? {
        return Ok(());
    }
    if !ctx.wait_for("redis", || store::ping(&config.redis)).await? {
        return Ok(());
    }
    ctx.not_built("projections into Redis (planned)");
    ctx.shutdown.wait().await;
    Ok(())
}
