//! The reference domain: an online shop's Order, Inventory (per SKU) and Payment (per account)
//! aggregates and the OrderFulfilment saga. It is what `make demo` runs and what the tests exercise;
//! a user replaces this crate with their own domain and keeps every service.
//!
//! # Layout
//! - [`TOPOLOGY`]: the domain's Kafka topics (`topology.toml`), applied by `causeway topics apply`.
//! - [`contracts`]: the commands and events of `avro/orders/` as Rust types.
//! - [`order`], [`inventory`], [`payment`]: the aggregates: their rules, pure (`handle` decides,
//!   `apply` folds), each tested given/when/then.
//! - [`fulfilment`]: the OrderFulfilment saga (reserve, pay, confirm; compensate in reverse order),
//!   pure, tested given/when/then with time under the test's control.
//! - [`projections`]: the read models (order by id, stock by SKU, account balance), pure mappings
//!   from events to document changes, each tested given/when/then.
//! - [`hosting`]: how each aggregate's commands, events and state map to their Avro records, for the
//!   aggregate processor.
#![forbid(unsafe_code)]

pub mod contracts;
pub mod fulfilment;
pub mod hosting;
pub mod inventory;
pub mod order;
pub mod payment;
pub mod projections;

/// The domain's topology file, as text (see `topology.toml` beside this crate's Cargo.toml).
pub const TOPOLOGY: &str = include_str!("../topology.toml");

/// The bounded context name: the first segment of every topic of this domain.
pub const CONTEXT: &str = "orders";

/// The aggregate types of this domain, as they appear in topic names (`orders.<aggregate>.*`).
pub const AGGREGATES: [&str; 3] = ["order", "inventory", "payment"];

#[cfg(test)]
mod tests {
    use super::*;
    use causeway_kafka::Topology;

    fn topology() -> Topology {
        Topology::parse(TOPOLOGY, "domains/orders/topology.toml").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn every_aggregate_has_co_partitioned_commands_events_and_changelog() {
        let t = topology();
        for aggregate in AGGREGATES {
            let counts: Vec<i32> = ["commands", "events", "changelog"]
                .iter()
                .map(|kind| {
                    let name = format!("{CONTEXT}.{aggregate}.{kind}");
                    let spec = t.topics.iter().find(|s| s.name == name);
                    spec.map(|s| t.partitions_of(s))
                        .unwrap_or_else(|| panic!("{name} is not declared"))
                })
                .collect();
            assert!(
                counts.windows(2).all(|w| w[0] == w[1]),
                "{aggregate}: {counts:?}"
            );
        }
    }

    #[test]
    fn event_stores_are_kept_forever_and_changelogs_compacted() {
        let t = topology();
        for spec in &t.topics {
            let configs = spec.configs();
            if spec.name.ends_with(".events") {
                assert_eq!(
                    configs.get("retention.ms").map(String::as_str),
                    Some("-1"),
                    "{}",
                    spec.name
                );
            }
            if spec.name.ends_with(".changelog") {
                assert_eq!(
                    configs.get("cleanup.policy").map(String::as_str),
                    Some("compact"),
                    "{}",
                    spec.name
                );
            }
        }
    }
}
