//! The domains this build hosts, for every service: the one place a domain is registered. A service
//! hosts the domain its config names (`[processor] domain = "orders"`); services/ and crates/kafka never
//! name a domain. To add yours: a crate under domains/ that exports a
//! [`causeway_contracts::domain::Domain`], a dependency on it in this crate's Cargo.toml, and one line
//! below (docs/add-a-domain.md walks through it).
#![forbid(unsafe_code)]

use causeway_contracts::domain::Domains;

/// Every domain of this build.
pub fn domains() -> Domains {
    Domains(vec![
        causeway_orders::hosting::domain(),
        causeway_counter::domain(),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_each_domain_has_aggregates() {
        let all = domains();
        let mut names = all.names();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.0.len(), "two domains share a name");
        for d in &all.0 {
            assert!(!d.aggregates.is_empty(), "{} has no aggregate", d.name);
        }
    }
}
