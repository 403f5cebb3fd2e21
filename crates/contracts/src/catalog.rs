//! The contracts under `avro/`, read as a whole: which record goes on which topic, under which subject,
//! referencing which shared types, and how each may evolve.
//!
//! Layout (docs/adr/0007-contracts.md): `avro/<a>/<b>/<c>/<Record>.avsc` is a record carried on topic
//! `<a>.<b>.<c>` (e.g. `avro/orders/order/commands/PlaceOrder.avsc` on `orders.order.commands`); a file
//! in a folder named `types` is a shared named type other contracts reference by full name, registered
//! under its full name. Subjects follow TopicRecordNameStrategy. Every contract is FULL_TRANSITIVE.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::compat::Level;
use crate::schema;
use crate::subject::topic_record_name;

/// The folder name that marks shared types.
pub const TYPES_DIR: &str = "types";

/// How every contract may evolve (DESIGN: commands and events are FULL_TRANSITIVE).
pub const CONTRACT_LEVEL: Level = Level::FullTransitive;

/// One `.avsc` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contract {
    /// Path relative to the contracts folder.
    pub path: PathBuf,
    /// The record's full name (namespace.name).
    pub full_name: String,
    /// Canonical schema text.
    pub schema: String,
    /// The topic it is carried on; `None` for a shared type.
    pub topic: Option<String>,
    /// Full names of the shared types it references, dependencies first.
    pub references: Vec<String>,
}

impl Contract {
    /// Its registry subject: `<topic>-<full name>`, or the full name for a shared type.
    pub fn subject(&self) -> String {
        match &self.topic {
            Some(topic) => topic_record_name(topic, &self.full_name),
            None => self.full_name.clone(),
        }
    }
}

/// Every contract of a folder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    /// Shared types, each after the types it references.
    pub types: Vec<Contract>,
    /// Records carried on topics, sorted by path.
    pub records: Vec<Contract>,
}

/// A contract that cannot be used, with its file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct CatalogError {
    /// The file (or folder).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

fn err(path: &Path, message: impl Into<String>) -> CatalogError {
    CatalogError {
        path: path.display().to_string(),
        message: message.into(),
    }
}

impl Catalog {
    /// Read every `.avsc` under `dir`.
    pub fn load(dir: &Path) -> Result<Self, CatalogError> {
        let mut files = Vec::new();
        collect(dir, &mut files)?;
        files.sort();
        let mut parsed = Vec::with_capacity(files.len());
        for file in &files {
            let text = std::fs::read_to_string(file)
                .map_err(|e| err(file, format!("cannot read: {e}")))?;
            let relative = file.strip_prefix(dir).unwrap_or(file).to_path_buf();
            parsed.push(read_contract(&relative, &text)?);
        }
        Self::from_contracts(parsed)
    }

    /// Build a catalog from already-read contracts (their references are resolved here).
    fn from_contracts(contracts: Vec<(Contract, Value)>) -> Result<Self, CatalogError> {
        let shared: BTreeMap<String, (Contract, Value)> = contracts
            .iter()
            .filter(|(c, _)| c.topic.is_none())
            .map(|(c, v)| (c.full_name.clone(), (c.clone(), v.clone())))
            .collect();
        let mut catalog = Catalog::default();
        for (mut contract, value) in contracts {
            contract.references =
                references(&value, &contract.full_name, &shared, &mut BTreeSet::new())?;
            let texts: Vec<String> = contract
                .references
                .iter()
                .filter_map(|name| shared.get(name).map(|(c, _)| c.schema.clone()))
                .collect();
            schema::parse(&contract.schema, &texts)
                .map_err(|e| err(&contract.path, format!("not a valid Avro schema: {e}")))?;
            if contract.topic.is_some() {
                catalog.records.push(contract);
            } else {
                catalog.types.push(contract);
            }
        }
        // Shared types after the types they use.
        catalog.types.sort_by_key(|t| t.references.len());
        Ok(catalog)
    }

    /// Every contract, shared types first.
    pub fn all(&self) -> impl Iterator<Item = &Contract> {
        self.types.iter().chain(&self.records)
    }

    /// A [`crate::wire::Writer`] of record `full_name` as this catalog has it (references inlined,
    /// registry id 0), for tests and tools that write records without a registry.
    pub fn writer(&self, full_name: &str) -> Result<crate::wire::Writer, String> {
        let contract = self
            .records
            .iter()
            .chain(&self.types)
            .find(|c| c.full_name == full_name)
            .ok_or_else(|| format!("{full_name} is not in the catalog"))?;
        let text = schema::inline_references(&contract.schema, &self.reference_texts(contract))?;
        crate::wire::Writer::new(0, full_name, &text).map_err(|e| e.to_string())
    }

    /// The schema texts of `contract`'s references, in order, for parsing it.
    pub fn reference_texts(&self, contract: &Contract) -> Vec<String> {
        contract
            .references
            .iter()
            .filter_map(|name| self.types.iter().find(|t| &t.full_name == name))
            .map(|t| t.schema.clone())
            .collect()
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), CatalogError> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| err(dir, format!("cannot read the folder: {e}")))?;
    for entry in entries {
        let path = entry.map_err(|e| err(dir, e.to_string()))?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "avsc") {
            out.push(path);
        }
    }
    Ok(())
}

fn read_contract(relative: &Path, text: &str) -> Result<(Contract, Value), CatalogError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| err(relative, format!("not valid JSON: {e}")))?;
    let name = value["name"]
        .as_str()
        .ok_or_else(|| err(relative, "a contract must be a named record (no \"name\")"))?;
    if value["type"] != "record" {
        return Err(err(relative, "a contract must be a record"));
    }
    let stem = relative
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    if stem != name {
        return Err(err(
            relative,
            format!("the file is named {stem} but the record {name}"),
        ));
    }
    let full_name = match value["namespace"].as_str() {
        Some(ns) if !ns.is_empty() => format!("{ns}.{name}"),
        _ => return Err(err(relative, "a contract needs a namespace")),
    };
    let folders: Vec<&str> = relative
        .parent()
        .map(|p| p.iter().filter_map(|c| c.to_str()).collect())
        .unwrap_or_default();
    let topic = match folders.last() {
        None => {
            return Err(err(
                relative,
                "a contract lives in a folder naming its topic (or in types/)",
            ));
        }
        Some(&TYPES_DIR) => None,
        Some(_) => Some(folders.join(".")),
    };
    let schema = schema::canonical(text).map_err(|e| err(relative, e))?;
    Ok((
        Contract {
            path: relative.to_path_buf(),
            full_name,
            schema,
            topic,
            references: Vec::new(),
        },
        value,
    ))
}

/// The shared types `value` uses (by full name anywhere in it), each after the ones it uses itself.
fn references(
    value: &Value,
    own: &str,
    shared: &BTreeMap<String, (Contract, Value)>,
    visiting: &mut BTreeSet<String>,
) -> Result<Vec<String>, CatalogError> {
    let mut used = BTreeSet::new();
    names_in(value, &mut used);
    let mut out = Vec::new();
    for name in used {
        if name == own {
            continue;
        }
        let Some((contract, inner)) = shared.get(&name) else {
            continue;
        };
        if !visiting.insert(name.clone()) {
            return Err(err(
                &contract.path,
                "shared types reference each other in a cycle",
            ));
        }
        for dep in references(inner, &name, shared, visiting)? {
            if !out.contains(&dep) {
                out.push(dep);
            }
        }
        visiting.remove(&name);
        if !out.contains(&name) {
            out.push(name);
        }
    }
    Ok(out)
}

fn names_in(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::String(s) if s.contains('.') => {
            out.insert(s.clone());
        }
        Value::Array(items) => items.iter().for_each(|v| names_in(v, out)),
        Value::Object(map) => {
            // Only type positions can name a type; docs and defaults are text.
            for (k, v) in map {
                if matches!(k.as_str(), "type" | "items" | "values" | "fields") || v.is_array() {
                    names_in(v, out);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contract(path: &str, json: &str) -> (Contract, Value) {
        read_contract(Path::new(path), json).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn topics_subjects_and_references_follow_the_layout() -> Result<(), CatalogError> {
        let meta = contract(
            "c/types/Meta.avsc",
            r#"{"type":"record","name":"Meta","namespace":"c","fields":[{"name":"id","type":"string"}]}"#,
        );
        let placed = contract(
            "orders/order/events/Placed.avsc",
            r#"{"type":"record","name":"Placed","namespace":"o","doc":"uses c.Meta","fields":[{"name":"m","type":"c.Meta"}]}"#,
        );
        let catalog = Catalog::from_contracts(vec![placed, meta])?;
        assert_eq!(catalog.types.len(), 1);
        let placed = &catalog.records[0];
        assert_eq!(placed.topic.as_deref(), Some("orders.order.events"));
        assert_eq!(placed.subject(), "orders.order.events-o.Placed");
        assert_eq!(placed.references, vec!["c.Meta"]);
        assert_eq!(catalog.types[0].subject(), "c.Meta");
        Ok(())
    }

    #[test]
    fn bad_contracts_are_named() {
        let e = |path: &str, json: &str| {
            read_contract(Path::new(path), json)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(
            e(
                "a/b/X.avsc",
                r#"{"type":"record","name":"Y","namespace":"n","fields":[]}"#
            )
            .contains("named X but the record Y")
        );
        assert!(
            e("a/b/X.avsc", r#"{"type":"record","name":"X","fields":[]}"#)
                .contains("needs a namespace")
        );
        assert!(
            e(
                "X.avsc",
                r#"{"type":"record","name":"X","namespace":"n","fields":[]}"#
            )
            .contains("folder")
        );
        assert!(e("a/X.avsc", "{").contains("not valid JSON"));
        let unknown = contract(
            "a/b/X.avsc",
            r#"{"type":"record","name":"X","namespace":"n","fields":[{"name":"f","type":"n.Missing"}]}"#,
        );
        let err = Catalog::from_contracts(vec![unknown])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("a/b/X.avsc: not a valid Avro schema"), "{err}");
    }

    #[test]
    fn the_repositorys_contracts_load() -> Result<(), CatalogError> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../avro");
        let catalog = Catalog::load(&dir)?;
        assert!(catalog.records.len() >= 27, "{}", catalog.records.len());
        let place = catalog
            .records
            .iter()
            .find(|c| c.full_name == "causeway.orders.order.PlaceOrder")
            .ok_or_else(|| err(&dir, "PlaceOrder missing"))?;
        assert_eq!(
            place.subject(),
            "orders.order.commands-causeway.orders.order.PlaceOrder"
        );
        assert_eq!(place.references, vec!["causeway.orders.OrderLine"]);
        let placed = catalog
            .records
            .iter()
            .find(|c| c.full_name == "causeway.orders.order.OrderPlaced")
            .ok_or_else(|| err(&dir, "OrderPlaced missing"))?;
        assert_eq!(
            placed.references,
            vec!["causeway.EventMetadata", "causeway.orders.OrderLine"]
        );
        Ok(())
    }
}
