//! Service configuration: one TOML file, then `CAUSEWAY__SECTION__KEY` environment variables on top.
//!
//! Rules (docs/adr/0004-configuration.md):
//! - unknown keys are errors, in the file and in the environment;
//! - an environment value takes the type of the key it overrides (`CAUSEWAY__ADMIN__LISTEN=...` is a
//!   string because `admin.listen` is); map entries that do not exist yet are strings, or literals where
//!   the target wants a number or a boolean;
//! - every error names the key and where its value came from (the file, or the environment variable);
//! - cross-field checks run at start-up ([`Validate`]), before anything connects anywhere.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Prefix of environment overrides; sections are separated by a double underscore.
pub const ENV_PREFIX: &str = "CAUSEWAY__";

/// The admin HTTP server every service runs (`/metrics`, `/healthz`, `/readyz`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address the admin server binds, e.g. `0.0.0.0:9400` in a pod.
    pub listen: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9400)),
        }
    }
}

/// A failed start-up check: which key, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Dotted path of the offending key, e.g. `kafka.bootstrap_servers`.
    pub key: String,
    /// What is wrong, in a sentence.
    pub message: String,
}

impl Invalid {
    /// An error about `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Cross-field and value checks that serde cannot express.
pub trait Validate {
    /// Every problem found; empty when the config is usable.
    fn validate(&self) -> Vec<Invalid>;
}

/// Why a config could not be loaded. Always fatal: the service refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("config file {} is not valid TOML: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A key is unknown or has a value of the wrong type or form.
    #[error("config key `{key}` (from {origin}): {message}")]
    Key {
        /// Dotted path of the key.
        key: String,
        /// Where its value came from.
        origin: Origin,
        /// What is wrong.
        message: String,
    },
    /// Start-up validation failed.
    #[error("invalid config ({}): {}", path.display(), join_invalid(.problems))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found.
        problems: Vec<Invalid>,
    },
}

fn join_invalid(problems: &[Invalid]) -> String {
    problems
        .iter()
        .map(|p| format!("key `{}`: {}", p.key, p.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Where a config value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The config file.
    File(PathBuf),
    /// An environment variable.
    Env(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "file {}", path.display()),
            Origin::Env(var) => write!(f, "environment variable {var}"),
        }
    }
}

/// Load `path`, apply the process's `CAUSEWAY__*` environment, and validate.
pub fn load<T>(path: &Path) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Serialize + Validate,
{
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    load_from(path, &text, std::env::vars())
}

/// [`load`] with the file's text and the environment given, for tests and tools.
pub fn load_from<T>(
    path: &Path,
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Serialize + Validate,
{
    let file: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Syntax {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })?;
    let file_origin = Origin::File(path.to_path_buf());
    let mut config: T = deserialize(toml::Value::Table(file), &[], &file_origin)?;

    let overrides = env_overrides(env);
    if !overrides.is_empty() {
        config = apply_overrides(&config, &overrides, &file_origin)?;
    }

    let problems = config.validate();
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            problems,
        })
    }
}

/// One `CAUSEWAY__A__B=value` variable: its name, the key path it names and its value.
#[derive(Debug, Clone)]
struct Override {
    var: String,
    path: Vec<String>,
    value: String,
}

fn env_overrides(env: impl IntoIterator<Item = (String, String)>) -> Vec<Override> {
    let mut out: Vec<Override> = env
        .into_iter()
        .filter_map(|(var, value)| {
            let rest = var.strip_prefix(ENV_PREFIX)?;
            let path = rest.split("__").map(str::to_ascii_lowercase).collect();
            Some(Override { var, path, value })
        })
        .collect();
    // Deterministic order, whatever the environment's.
    out.sort_by(|a, b| a.var.cmp(&b.var));
    out
}

/// How an override's string is typed when the key has no value to take a type from.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Typing {
    AsString,
    AsLiteral,
}

fn apply_overrides<T>(config: &T, overrides: &[Override], file: &Origin) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Serialize,
{
    // The current config (defaults included) tells each overridden key its type.
    let base = toml::Value::try_from(config).map_err(|e| ConfigError::Key {
        key: String::new(),
        origin: file.clone(),
        message: format!("cannot represent the config as TOML: {e}"),
    })?;
    let mut typing = vec![Typing::AsString; overrides.len()];
    loop {
        let mut value = base.clone();
        for (o, t) in overrides.iter().zip(&typing) {
            set_path(&mut value, o, *t)?;
        }
        match deserialize::<T>(value, overrides, file) {
            Ok(config) => return Ok(config),
            Err(ConfigError::Key {
                key,
                origin,
                message,
            }) => {
                // A new key guessed as a string where the target wants a number or a boolean:
                // retry it once as a literal.
                let retry = overrides.iter().position(|o| o.path.join(".") == key);
                match retry {
                    Some(i)
                        if typing[i] == Typing::AsString
                            && message.contains("invalid type: string") =>
                    {
                        typing[i] = Typing::AsLiteral;
                    }
                    _ => {
                        return Err(ConfigError::Key {
                            key,
                            origin,
                            message,
                        });
                    }
                }
            }
            Err(other) => return Err(other),
        }
    }
}

fn set_path(root: &mut toml::Value, o: &Override, typing: Typing) -> Result<(), ConfigError> {
    let key_error = |message: String| ConfigError::Key {
        key: o.path.join("."),
        origin: Origin::Env(o.var.clone()),
        message,
    };
    let (last, parents) = o
        .path
        .split_last()
        .filter(|(last, _)| !last.is_empty())
        .ok_or_else(|| key_error("the variable names no key".into()))?;
    let mut node = root;
    for segment in parents {
        let table = node
            .as_table_mut()
            .ok_or_else(|| key_error(format!("`{segment}` is inside a value, not a section")))?;
        node = table
            .entry(segment.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    }
    let table = node
        .as_table_mut()
        .ok_or_else(|| key_error("its parent is a value, not a section".into()))?;
    let typed = match table.get(last.as_str()) {
        Some(existing) => typed_like(existing, &o.value).map_err(key_error)?,
        None => match typing {
            Typing::AsString => toml::Value::String(o.value.clone()),
            Typing::AsLiteral => parse_literal(&o.value).map_err(key_error)?,
        },
    };
    table.insert(last.clone(), typed);
    Ok(())
}

/// `raw` read as a value of the same TOML type as `existing`.
fn typed_like(existing: &toml::Value, raw: &str) -> Result<toml::Value, String> {
    use toml::Value;
    let trimmed = raw.trim();
    Ok(match existing {
        Value::String(_) => Value::String(raw.to_string()),
        Value::Integer(_) => Value::Integer(
            trimmed
                .parse()
                .map_err(|_| format!("expected an integer, got {raw:?}"))?,
        ),
        Value::Float(_) => Value::Float(
            trimmed
                .parse()
                .map_err(|_| format!("expected a number, got {raw:?}"))?,
        ),
        Value::Boolean(_) => Value::Boolean(match trimmed.to_ascii_lowercase().as_str() {
            "true" => true,
            "false" => false,
            _ => return Err(format!("expected true or false, got {raw:?}")),
        }),
        Value::Array(_) | Value::Datetime(_) => parse_literal(raw)?,
        Value::Table(_) => {
            return Err("names a section; set its keys one by one (CAUSEWAY__SECTION__KEY)".into());
        }
    })
}

/// A TOML literal (an array, such as a list of tokens). The value is never repeated in the error: it
/// may hold a secret.
fn parse_literal(raw: &str) -> Result<toml::Value, String> {
    let doc = format!("v = {raw}");
    let not_toml = |detail: &str| {
        format!("is not a TOML value{detail} (the value is not shown: it may hold a secret)")
    };
    let mut table: toml::Table = toml::from_str(&doc).map_err(|e| {
        let at = e
            .span()
            .map(|s| format!(" at byte {}", s.start.saturating_sub(4)))
            .unwrap_or_default();
        not_toml(&at)
    })?;
    table.remove("v").ok_or_else(|| not_toml(""))
}

/// serde's TOML messages end with "in `section`" on a line of its own; the key already says where.
fn first_line(message: &str) -> String {
    message
        .lines()
        .next()
        .unwrap_or_default()
        .trim_end()
        .to_string()
}

fn deserialize<T: DeserializeOwned>(
    value: toml::Value,
    overrides: &[Override],
    file: &Origin,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let key = e.path().to_string();
        let origin = overrides
            .iter()
            .rev()
            .find(|o| {
                let joined = o.path.join(".");
                key == joined || key.starts_with(&format!("{joined}."))
            })
            .map(|o| Origin::Env(o.var.clone()))
            .unwrap_or_else(|| file.clone());
        ConfigError::Key {
            key,
            origin,
            message: first_line(&e.into_inner().to_string()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Sample {
        admin: AdminConfig,
        kafka: KafkaLike,
        batch_size: u32,
    }

    #[derive(Debug, Serialize, Deserialize, PartialEq, Default)]
    #[serde(deny_unknown_fields, default)]
    struct KafkaLike {
        bootstrap_servers: String,
        properties: BTreeMap<String, String>,
        linger_ms: Option<u64>,
    }

    impl Default for Sample {
        fn default() -> Self {
            Self {
                admin: AdminConfig::default(),
                kafka: KafkaLike::default(),
                batch_size: 500,
            }
        }
    }

    impl Validate for Sample {
        fn validate(&self) -> Vec<Invalid> {
            let mut out = Vec::new();
            if self.batch_size == 0 {
                out.push(Invalid::new("batch_size", "must be at least 1"));
            }
            out
        }
    }

    fn load_sample(text: &str, env: &[(&str, &str)]) -> Result<Sample, ConfigError> {
        load_from(
            Path::new("svc.toml"),
            text,
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn file_values_and_defaults() -> Result<(), ConfigError> {
        let c = load_sample("[kafka]\nbootstrap_servers = \"k:9092\"\n", &[])?;
        assert_eq!(c.kafka.bootstrap_servers, "k:9092");
        assert_eq!(c.batch_size, 500);
        assert_eq!(c.admin, AdminConfig::default());
        Ok(())
    }

    #[test]
    fn unknown_key_in_file_is_named_with_the_file() {
        let err = load_sample("[kafka]\nbootstrap_server = \"k:9092\"\n", &[])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("`kafka.bootstrap_server`"), "{err}");
        assert!(err.contains("file svc.toml"), "{err}");
        assert!(err.contains("unknown field"), "{err}");
    }

    #[test]
    fn bad_value_in_file_is_named() {
        let err = load_sample("[admin]\nlisten = \"nowhere\"\n", &[])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("`admin.listen`"), "{err}");
    }

    #[test]
    fn syntax_error_names_the_file() {
        let err = load_sample("[kafka\n", &[])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("svc.toml is not valid TOML"), "{err}");
    }

    #[test]
    fn env_overrides_take_the_type_of_their_key() -> Result<(), ConfigError> {
        let c = load_sample(
            "batch_size = 10\n",
            &[
                ("CAUSEWAY__BATCH_SIZE", "20"),
                ("CAUSEWAY__KAFKA__BOOTSTRAP_SERVERS", "1234"),
                ("CAUSEWAY__ADMIN__LISTEN", "0.0.0.0:9999"),
                ("CAUSEWAY__KAFKA__PROPERTIES__acks", "1"),
                ("CAUSEWAY__KAFKA__LINGER_MS", "7"),
                ("UNRELATED", "x"),
            ],
        )?;
        assert_eq!(c.batch_size, 20);
        assert_eq!(c.kafka.bootstrap_servers, "1234");
        assert_eq!(c.admin.listen.port(), 9999);
        assert_eq!(
            c.kafka.properties.get("acks").map(String::as_str),
            Some("1")
        );
        assert_eq!(c.kafka.linger_ms, Some(7));
        Ok(())
    }

    #[test]
    fn unknown_env_key_names_the_variable() {
        let err = load_sample("", &[("CAUSEWAY__KAFKA__NOPE", "1")])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("`kafka.nope`"), "{err}");
        assert!(
            err.contains("environment variable CAUSEWAY__KAFKA__NOPE"),
            "{err}"
        );
    }

    #[test]
    fn bad_env_value_names_the_variable() {
        let err = load_sample("", &[("CAUSEWAY__BATCH_SIZE", "lots")])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("`batch_size`"), "{err}");
        assert!(err.contains("CAUSEWAY__BATCH_SIZE"), "{err}");
        assert!(err.contains("expected an integer"), "{err}");
    }

    #[test]
    fn validation_names_the_key_and_file() {
        let err = load_sample("batch_size = 0\n", &[])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("svc.toml"), "{err}");
        assert!(
            err.contains("key `batch_size`: must be at least 1"),
            "{err}"
        );
    }
}
