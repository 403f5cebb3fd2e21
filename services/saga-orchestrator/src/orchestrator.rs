//! The job of `saga-orchestrator`. Until its real work lands it waits for Kafka,
//! says it is not built yet (never ready), and runs until the shutdown signal.

use causeway_runtime::ServiceContext;

use crate::config::Config;
use crate::error::Error;

/// Run until shutdown.
pub async fn run(config: Config, ctx: ServiceContext) -> Result<(), Error> {
    if !causeway_kafka::client::wait_for_broker(&ctx, &config.kafka).await? {
        return Ok(());
    }
    ctx.not_built("saga orchestration (planned)");
    ctx.shutdown.wait().await;
    Ok(())
}
