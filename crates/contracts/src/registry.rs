//! A small client of a Confluent-compatible registry: enough to register a [`Catalog`] of contracts,
//! idempotently (`causeway schema register`, `make demo`, tests).
//!
//! Each topic record is registered self-contained, its shared types written in (docs/adr/0007): many
//! clients resolve schema references poorly or not at all (schema_registry_converter 6 only finds
//! references spelled `.namespace.Name`), and a self-contained subject reads the same everywhere.

use serde_json::{Value, json};

use crate::catalog::{CONTRACT_LEVEL, Catalog, Contract};
use crate::schema;

/// One registered contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// The subject.
    pub subject: String,
    /// The schema id.
    pub id: i64,
    /// The subject's version holding it.
    pub version: i64,
}

/// How long any registry call may take, connect included: every call the suite makes to a registry has
/// this bound (a registry that stalls is a transient failure, not a hang).
pub const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The HTTP client every caller of a registry uses: bounded connect and call time.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(3))
        .timeout(CALL_TIMEOUT)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// A registry that did not answer (unreachable, or an error status): transient, its callers wait.
#[derive(Debug, thiserror::Error)]
#[error("schema registry at {url}: {why}")]
pub struct Unanswered {
    /// Where it was asked.
    pub url: String,
    /// What happened.
    pub why: String,
}

impl causeway_core::Classify for Unanswered {
    fn class(&self) -> causeway_core::ErrorClass {
        causeway_core::ErrorClass::Transient
    }
}

/// Whether the registry at `base` answers (`GET /subjects`), for a service waiting for it at start.
pub async fn answers(base: &str) -> Result<(), Unanswered> {
    let url = format!("{}/subjects", base.trim_end_matches('/'));
    http_client()
        .get(&url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map(|_| ())
        .map_err(|e| Unanswered {
            url,
            why: e.to_string(),
        })
}

/// A registry at a base URL.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    http: reqwest::Client,
    base: String,
}

impl RegistryClient {
    /// A client for the registry at `base` (e.g. `http://127.0.0.1:18081`).
    pub fn new(base: &str) -> Self {
        Self {
            http: http_client(),
            base: base.trim_end_matches('/').to_string(),
        }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> Result<Value, String> {
        let response = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("Content-Type", "application/vnd.schemaregistry.v1+json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| format!("the registry at {} did not answer: {e}", self.base))?;
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            Ok(value)
        } else {
            Err(format!(
                "the registry answered {status}: {}",
                value["message"].as_str().unwrap_or("(no message)")
            ))
        }
    }

    /// Register every topic record of `catalog`, self-contained, each subject at FULL_TRANSITIVE.
    /// `each` sees every registration as it happens. Re-registering changes nothing.
    pub async fn register_catalog(
        &self,
        catalog: &Catalog,
        mut each: impl FnMut(&Registered),
    ) -> Result<Vec<Registered>, String> {
        let mut out = Vec::new();
        for contract in &catalog.records {
            let schema =
                schema::inline_references(&contract.schema, &catalog.reference_texts(contract))
                    .map_err(|e| format!("{}: {e}", contract.path.display()))?;
            let registered = self
                .register(contract, &schema)
                .await
                .map_err(|e| format!("{}: {e}", contract.subject()))?;
            each(&registered);
            out.push(registered);
        }
        Ok(out)
    }

    async fn register(&self, contract: &Contract, schema: &str) -> Result<Registered, String> {
        let subject = contract.subject();
        let path = encode(&subject);
        self.call(
            reqwest::Method::PUT,
            &format!("/config/{path}"),
            json!({ "compatibility": CONTRACT_LEVEL.as_str() }),
        )
        .await?;
        let body = json!({ "schema": schema, "schemaType": "AVRO" });
        let registered = self
            .call(
                reqwest::Method::POST,
                &format!("/subjects/{path}/versions"),
                body.clone(),
            )
            .await?;
        let found = self
            .call(reqwest::Method::POST, &format!("/subjects/{path}"), body)
            .await?;
        match (registered["id"].as_i64(), found["version"].as_i64()) {
            (Some(id), Some(version)) => Ok(Registered {
                subject,
                id,
                version,
            }),
            _ => Err(format!("unexpected answers: {registered} / {found}")),
        }
    }
}

/// A subject in a URL path: subjects may hold `/` (and anything else), so everything but unreserved
/// characters is percent-encoded.
pub fn encode(subject: &str) -> String {
    subject
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn subjects_are_percent_encoded() {
        assert_eq!(super::encode("a/b c-d.e"), "a%2Fb%20c-d.e");
    }
}
