//! The published versions of every contract, kept in `avro/contracts.lock.json` (full name to the list
//! of its canonical texts, oldest first), and the check CI runs: each contract as it is now against
//! every version published before, under [`CONTRACT_LEVEL`].

use std::collections::BTreeMap;
use std::path::Path;

use crate::catalog::{CONTRACT_LEVEL, Catalog, CatalogError, Contract};
use crate::compat::{self, Previous};
use crate::schema;

/// The lock file's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Lock {
    /// Full name to its published canonical texts, oldest first.
    pub versions: BTreeMap<String, Vec<String>>,
}

/// What [`Lock::check`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Contracts never published (fine; `lock` records them).
    pub new: Vec<String>,
    /// Contracts as published.
    pub unchanged: Vec<String>,
    /// Contracts changed compatibly with every published version (fine; `lock` records them).
    pub changed: Vec<String>,
    /// Contracts changed incompatibly: (subject, every problem).
    pub incompatible: Vec<(String, Vec<String>)>,
    /// Published contracts whose file is gone: readers of old data would lose their schema.
    pub removed: Vec<String>,
}

impl CheckReport {
    /// Whether CI may pass.
    pub fn ok(&self) -> bool {
        self.incompatible.is_empty() && self.removed.is_empty()
    }
}

impl Lock {
    /// Read a lock file; a missing file is an empty lock.
    pub fn load(path: &Path) -> Result<Self, CatalogError> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| CatalogError {
                path: path.display().to_string(),
                message: format!("not a contracts lock file: {e}"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(CatalogError {
                path: path.display().to_string(),
                message: format!("cannot read: {e}"),
            }),
        }
    }

    /// Write the lock file (pretty, stable order, so diffs read well).
    pub fn save(&self, path: &Path) -> Result<(), CatalogError> {
        let text = serde_json::to_string_pretty(self).map_err(|e| CatalogError {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        std::fs::write(path, text + "\n").map_err(|e| CatalogError {
            path: path.display().to_string(),
            message: format!("cannot write: {e}"),
        })
    }

    /// Check every contract of `catalog` against its published versions.
    pub fn check(&self, catalog: &Catalog) -> CheckReport {
        let mut report = CheckReport::default();
        for contract in catalog.all() {
            let published = self
                .versions
                .get(&contract.full_name)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            match published.last() {
                None => report.new.push(contract.full_name.clone()),
                Some(last) if *last == contract.schema => {
                    report.unchanged.push(contract.full_name.clone())
                }
                Some(_) => {
                    let problems = problems_against(catalog, contract, published);
                    if problems.is_empty() {
                        report.changed.push(contract.full_name.clone());
                    } else {
                        report.incompatible.push((contract.subject(), problems));
                    }
                }
            }
        }
        for name in self.versions.keys() {
            if !catalog.all().any(|c| &c.full_name == name) {
                report.removed.push(name.clone());
            }
        }
        report
    }

    /// Record the current text of every new or changed contract; returns how many were recorded.
    pub fn record(&mut self, catalog: &Catalog) -> usize {
        let mut recorded = 0;
        for contract in catalog.all() {
            let versions = self.versions.entry(contract.full_name.clone()).or_default();
            if versions.last() != Some(&contract.schema) {
                versions.push(contract.schema.clone());
                recorded += 1;
            }
        }
        recorded
    }
}

fn problems_against(catalog: &Catalog, contract: &Contract, published: &[String]) -> Vec<String> {
    let references = catalog.reference_texts(contract);
    let current = match schema::parse(&contract.schema, &references) {
        Ok(s) => s,
        Err(e) => return vec![format!("does not parse: {e}")],
    };
    let mut parsed = Vec::with_capacity(published.len());
    for (i, text) in published.iter().enumerate() {
        match schema::parse(text, &references) {
            Ok(s) => parsed.push((i, s)),
            Err(e) => return vec![format!("published version {} no longer parses: {e}", i + 1)],
        }
    }
    let previous: Vec<Previous<'_>> = parsed
        .iter()
        .map(|(i, schema)| Previous {
            version: i32::try_from(i + 1).unwrap_or(i32::MAX),
            schema,
        })
        .collect();
    compat::check(CONTRACT_LEVEL, &current, &previous).unwrap_or_else(|e| vec![e.to_string()])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog_with(fields: &str) -> (tempdir::Dir, Catalog) {
        let dir = tempdir::Dir::new();
        let file = dir.path.join("shop/orders/commands/Place.avsc");
        std::fs::create_dir_all(file.parent().unwrap_or(&dir.path))
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            &file,
            format!(r#"{{"type":"record","name":"Place","namespace":"shop","fields":[{fields}]}}"#),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let catalog = Catalog::load(&dir.path).unwrap_or_else(|e| panic!("{e}"));
        (dir, catalog)
    }

    mod tempdir {
        pub struct Dir {
            pub path: std::path::PathBuf,
        }
        impl Dir {
            pub fn new() -> Self {
                static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let path =
                    std::env::temp_dir().join(format!("contracts-lock-{}-{n}", std::process::id()));
                let _ = std::fs::remove_dir_all(&path);
                Self { path }
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.path);
            }
        }
    }

    #[test]
    fn new_then_unchanged_then_compatible_then_incompatible() {
        let v1 = r#"{"name":"id","type":"string"}"#;
        let (_d1, c1) = catalog_with(v1);
        let mut lock = Lock::default();
        assert_eq!(lock.check(&c1).new, vec!["shop.Place"]);
        assert_eq!(lock.record(&c1), 1);
        assert_eq!(lock.check(&c1).unchanged, vec!["shop.Place"]);

        let (_d2, compatible) = catalog_with(&format!(
            r#"{v1},{{"name":"note","type":"string","default":""}}"#
        ));
        let report = lock.check(&compatible);
        assert_eq!(report.changed, vec!["shop.Place"]);
        assert!(report.ok());

        let (_d3, breaking) = catalog_with(&format!(r#"{v1},{{"name":"qty","type":"int"}}"#));
        let report = lock.check(&breaking);
        assert!(!report.ok());
        let (subject, problems) = &report.incompatible[0];
        assert_eq!(subject, "shop.orders.commands-shop.Place");
        assert!(
            problems[0].contains("'qty'") && problems[0].contains("FULL_TRANSITIVE"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_removed_contract_fails_the_check() {
        let (_d, catalog) = catalog_with(r#"{"name":"id","type":"string"}"#);
        let mut lock = Lock::default();
        lock.versions
            .insert("shop.Gone".into(), vec!["\"string\"".into()]);
        let report = lock.check(&catalog);
        assert_eq!(report.removed, vec!["shop.Gone"]);
        assert!(!report.ok());
    }
}
