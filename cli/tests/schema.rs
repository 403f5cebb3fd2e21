//! `causeway schema` as a user runs it: `check` on the repository's contracts and on edited copies,
//! `register` against the registry of the test stack, twice.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use causeway_testcontainers::process::run_to_exit;
use causeway_testcontainers::{stack, unique};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_causeway");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn causeway(args: &[&str]) -> (Option<i32>, String, String) {
    let mut command = Command::new(BIN);
    command.args(args).current_dir(repo());
    let (status, out, err) =
        run_to_exit(&mut command, Duration::from_secs(120)).unwrap_or_else(|e| panic!("{e}"));
    (status.code(), out, err)
}

/// A copy of avro/ (with its lock file) that a test may edit.
fn copy_of_contracts() -> PathBuf {
    let dir = std::env::temp_dir().join(unique("avro"));
    let status = Command::new("cp")
        .arg("-r")
        .arg(repo().join("avro"))
        .arg(&dir)
        .status()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success());
    dir
}

fn edit(file: &Path, change: impl FnOnce(&mut Value)) {
    let mut value: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap_or_default())
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    change(&mut value);
    std::fs::write(file, value.to_string()).unwrap_or_else(|e| panic!("{e}"));
}

fn check(dir: &Path) -> (Option<i32>, String, String) {
    let d = dir.display().to_string();
    let lock = dir.join("contracts.lock.json").display().to_string();
    causeway(&["schema", "check", "--dir", &d, "--lock", &lock])
}

#[test]
fn the_repositorys_contracts_match_their_lock_file() {
    let (code, out, err) = causeway(&["schema", "check"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains(" 0 incompatible, 0 removed"), "{out}");
    assert!(!out.contains("new "), "every contract is locked: {out}");
}

#[test]
fn an_incompatible_edit_fails_naming_subject_field_and_rule() {
    let dir = copy_of_contracts();
    edit(&dir.join("orders/order/commands/PlaceOrder.avsc"), |v| {
        if let Some(fields) = v["fields"].as_array_mut() {
            fields.push(json!({ "name": "gift_wrap", "type": "boolean" }));
        }
    });
    let (code, out, err) = check(&dir);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        out.contains("INCOMPATIBLE  orders.order.commands-causeway.orders.order.PlaceOrder"),
        "{out}"
    );
    assert!(
        out.contains("'gift_wrap'")
            && out.contains("no default")
            && out.contains("FULL_TRANSITIVE"),
        "{out}"
    );

    // Removing a published contract fails too.
    let dir = copy_of_contracts();
    std::fs::remove_file(dir.join("orders/order/events/OrderShipped.avsc"))
        .unwrap_or_else(|e| panic!("{e}"));
    let (code, out, _) = check(&dir);
    assert_eq!(code, Some(1));
    assert!(
        out.contains("REMOVED       causeway.orders.order.OrderShipped"),
        "{out}"
    );
}

#[test]
fn a_compatible_edit_passes_and_lock_records_it() {
    let dir = copy_of_contracts();
    edit(&dir.join("orders/order/commands/PlaceOrder.avsc"), |v| {
        if let Some(fields) = v["fields"].as_array_mut() {
            fields.push(json!({ "name": "gift_wrap", "type": "boolean", "default": false, "doc": "Wrap it." }));
        }
    });
    let (code, out, err) = check(&dir);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("changed       causeway.orders.order.PlaceOrder"),
        "{out}"
    );

    let d = dir.display().to_string();
    let lock = dir.join("contracts.lock.json").display().to_string();
    let (code, out, err) = causeway(&["schema", "lock", "--dir", &d, "--lock", &lock]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("recorded 1 new versions"), "{out}");
    let (_, out, _) = check(&dir);
    assert!(out.contains(" 0 changed compatibly"), "{out}");

    // The next edit is checked against both versions: dropping the default breaks version 1.
    edit(&dir.join("orders/order/commands/PlaceOrder.avsc"), |v| {
        if let Some(o) = v["fields"]
            .as_array_mut()
            .and_then(|f| f.last_mut())
            .and_then(Value::as_object_mut)
        {
            o.remove("default");
        }
    });
    let (code, out, _) = check(&dir);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("version 1"), "{out}");
}

#[test]
fn bad_contract_files_are_usage_errors() {
    let dir = copy_of_contracts();
    std::fs::write(dir.join("orders/order/commands/Broken.avsc"), "{ not json")
        .unwrap_or_else(|e| panic!("{e}"));
    let (code, _, err) = check(&dir);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("Broken.avsc: not valid JSON"), "{err}");
}

#[test]
fn register_is_idempotent_against_the_registry() {
    let registry = stack().registry_url.as_str();
    let (code, first, err) = causeway(&["schema", "register", "--registry", registry]);
    assert_eq!(code, Some(0), "{first}{err}");
    assert!(
        first.contains("orders.order.commands-causeway.orders.order.PlaceOrder"),
        "{first}"
    );
    let (code, second, err) = causeway(&["schema", "register", "--registry", registry]);
    assert_eq!(code, Some(0), "{second}{err}");
    assert_eq!(first, second, "a second registration changes nothing");

    let (code, _, err) = causeway(&["schema", "register", "--registry", "http://127.0.0.1:9"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("did not answer"), "{err}");
}
