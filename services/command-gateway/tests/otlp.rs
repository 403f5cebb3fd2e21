//! With `OTEL_EXPORTER_OTLP_ENDPOINT` set, a service exports spans over OTLP; a collector that is not
//! there must neither stop it from becoming ready nor hold up its exit on SIGTERM.

mod common;

use std::path::Path;
use std::time::Duration;

use causeway_testcontainers::process::{ServiceProcess, free_port};
use causeway_testcontainers::stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_does_not_block_start_or_stop() {
    let s = stack();
    common::provision(&s.kafka_bootstrap, &s.registry_url).await;
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let api = format!("127.0.0.1:{}", free_port());
    let env = [
        ("CAUSEWAY__HTTP__LISTEN", api.as_str()),
        (
            "CAUSEWAY__KAFKA__BOOTSTRAP_SERVERS",
            s.kafka_bootstrap.as_str(),
        ),
        ("CAUSEWAY__GATEWAY__REGISTRY_URL", s.registry_url.as_str()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_EXPORT_TIMEOUT", "1000"),
    ];
    let mut service = ServiceProcess::start(
        Path::new(env!("CARGO_BIN_EXE_command-gateway")),
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/command-gateway.toml")),
        &env,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    service
        .wait_ready(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    let log = service.log();
    assert!(
        log.contains(r#""otlp":true"#),
        "the service did not turn OTLP export on:\n{log}"
    );
    let exit = service
        .terminate(Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(exit.success(), "{exit}");
}

/// A receiving collector: the OTLP/gRPC trace service, keeping every span it is sent.
mod collector {
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};

    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
        TraceService, TraceServiceServer,
    };
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    };

    /// (service.name, span name, trace id as hex) of each span received.
    pub type Received = Arc<Mutex<Vec<(String, String, String)>>>;

    struct Receiver(Received);

    #[tonic::async_trait]
    impl TraceService for Receiver {
        async fn export(
            &self,
            request: tonic::Request<ExportTraceServiceRequest>,
        ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
            let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
            for resource in request.into_inner().resource_spans {
                let service = resource
                    .resource
                    .iter()
                    .flat_map(|r| r.attributes.iter())
                    .find(|a| a.key == "service.name")
                    .and_then(|a| a.value.as_ref())
                    .map(|v| format!("{:?}", v.value))
                    .unwrap_or_default();
                for scope in resource.scope_spans {
                    for span in scope.spans {
                        let trace: String =
                            span.trace_id.iter().map(|b| format!("{b:02x}")).collect();
                        seen.push((service.clone(), span.name, trace));
                    }
                }
            }
            Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
        }
    }

    /// Serve on a free loopback port until the runtime ends.
    pub async fn start() -> (SocketAddr, Received) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let received = Received::default();
        let service = TraceServiceServer::new(Receiver(Arc::clone(&received)));
        tokio::spawn(async move {
            let incoming = tokio_stream_of(listener);
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
        });
        (addr, received)
    }

    fn tokio_stream_of(
        listener: tokio::net::TcpListener,
    ) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
        futures::stream::unfold(listener, |listener| async move {
            let accepted = listener.accept().await.map(|(stream, _)| stream);
            Some((accepted, listener))
        })
    }
}

/// A POSTed command's span reaches a receiving collector over OTLP, under the gateway's service name
/// and the caller's trace id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_a_receiving_collector() {
    let (collector, received) = collector::start().await;
    let endpoint = format!("http://{collector}");
    let api: std::net::SocketAddr = format!("127.0.0.1:{}", free_port())
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    let api_text = api.to_string();
    let s = stack();
    common::provision(&s.kafka_bootstrap, &s.registry_url).await;
    let env = [
        ("CAUSEWAY__HTTP__LISTEN", api_text.as_str()),
        (
            "CAUSEWAY__KAFKA__BOOTSTRAP_SERVERS",
            s.kafka_bootstrap.as_str(),
        ),
        ("CAUSEWAY__GATEWAY__REGISTRY_URL", s.registry_url.as_str()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
    ];
    let mut service = ServiceProcess::start(
        Path::new(env!("CARGO_BIN_EXE_command-gateway")),
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/command-gateway.toml")),
        &env,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let answer = tokio::task::spawn_blocking(move || {
        service
            .wait_ready(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{e}"));
        let body = r#"{"sku":"otlp-sku","quantity":1}"#;
        let answer = causeway_testcontainers::process::http_request_with(
            api,
            "POST",
            "/v1/commands/inventory/AddStock",
            &[("traceparent", traceparent.as_str())],
            Some(body),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        (service, answer)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let (service, answer) = answer;
    assert_eq!(answer.status, 202, "{}", answer.body);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let found = received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|(svc, _, trace)| svc.contains("command-gateway") && trace == trace_id);
        if found {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no span of the command's trace reached the collector; received: {:?}",
            received.lock().unwrap_or_else(|p| p.into_inner())
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::task::spawn_blocking(move || {
        let exit = service
            .terminate(Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(exit.success(), "{exit}");
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}
