//! The ClickHouse client.
//!
//! Two settings matter (measured, docs/adr/0005-test-stack.md): TCP_NODELAY on the HTTP connector (without
//! it each INSERT waits ~40 ms on delayed ACKs; with it ~2 ms), and row validation off, because ClickHouse
//! 18.16 knows neither `RowBinaryWithNamesAndTypes` nor the `describe_include_subcolumns` setting the
//! validation uses. Table DDL stays in the subset that 18.16 and current servers share.

use std::time::Duration;

use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::ClickHouseConfig;
use crate::error::Error;

/// Idle pooled connections are closed before ClickHouse's own keep-alive (3 s by default) closes them.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(2);

/// A client for the configured server.
pub fn client(config: &ClickHouseConfig) -> clickhouse::Client {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_keepalive(Some(Duration::from_secs(60)));
    let http = HttpClient::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .build(connector);
    let mut client = clickhouse::Client::with_http_client(http)
        .with_url(&config.url)
        .with_database(&config.database)
        .with_user(&config.user)
        .with_validation(false);
    if !config.password.is_empty() {
        client = client.with_password(&config.password);
    }
    client
}

/// Succeeds when the server answers a query.
pub async fn ping(client: &clickhouse::Client) -> Result<(), Error> {
    let one: u8 = client.query("SELECT toUInt8(1)").fetch_one().await?;
    if one == 1 {
        Ok(())
    } else {
        Err(Error::ClickHouse(clickhouse::error::Error::BadResponse(
            format!("SELECT 1 returned {one}"),
        )))
    }
}
