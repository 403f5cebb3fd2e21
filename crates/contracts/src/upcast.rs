//! Upcasters: how a consumer reads records written with a contract that has since been replaced.
//!
//! A breaking change is a new record (new full name) plus an upcaster from the old one (DESIGN). The
//! event store keeps the old records forever, so every reader passes what it decodes through
//! [`Upcasters::apply`], which turns an old record into the current one, step by step (v1 to v2 to v3),
//! before it becomes a Rust value.

use std::collections::HashMap;

use apache_avro::types::Value;

/// Turns records of one full name into records of a newer one.
pub trait Upcaster: Send + Sync {
    /// The full name of the records it reads.
    fn from(&self) -> &str;
    /// The full name of the records it produces.
    fn to(&self) -> &str;
    /// The newer record for `value`, or why it cannot be made (the record is then poison).
    fn upcast(&self, value: Value) -> Result<Value, String>;
}

/// A set of upcasters, keyed by the name they read.
#[derive(Default)]
pub struct Upcasters {
    by_name: HashMap<String, Box<dyn Upcaster>>,
}

impl std::fmt::Debug for Upcasters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.by_name.keys()).finish()
    }
}

/// The longest chain followed before giving up (a cycle of upcasters is a bug).
const MAX_STEPS: usize = 32;

impl Upcasters {
    /// Add an upcaster; a second one for the same name replaces the first.
    pub fn with(mut self, upcaster: impl Upcaster + 'static) -> Self {
        self.by_name
            .insert(upcaster.from().to_string(), Box::new(upcaster));
        self
    }

    /// Upcast `value`, written as `full_name`, as far as the chain goes: the final name and value.
    pub fn apply(&self, full_name: &str, value: Value) -> Result<(String, Value), String> {
        let mut name = full_name.to_string();
        let mut value = value;
        for _ in 0..MAX_STEPS {
            let Some(step) = self.by_name.get(&name) else {
                return Ok((name, value));
            };
            value = step
                .upcast(value)
                .map_err(|e| format!("upcasting {name} to {}: {e}", step.to()))?;
            name = step.to().to_string();
        }
        Err(format!(
            "upcasting {full_name} did not end after {MAX_STEPS} steps (a cycle?)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// v1 had `amount` in whole euros; v2 has `amount_cents`; v3 adds `currency`.
    struct V1ToV2;
    impl Upcaster for V1ToV2 {
        fn from(&self) -> &str {
            "shop.PaidV1"
        }
        fn to(&self) -> &str {
            "shop.PaidV2"
        }
        fn upcast(&self, value: Value) -> Result<Value, String> {
            let Value::Record(fields) = value else {
                return Err("not a record".into());
            };
            Ok(Value::Record(
                fields
                    .into_iter()
                    .map(|(name, v)| match (name.as_str(), v) {
                        ("amount", Value::Long(euros)) => {
                            ("amount_cents".to_string(), Value::Long(euros * 100))
                        }
                        (_, v) => (name, v),
                    })
                    .collect(),
            ))
        }
    }

    struct V2ToV3;
    impl Upcaster for V2ToV3 {
        fn from(&self) -> &str {
            "shop.PaidV2"
        }
        fn to(&self) -> &str {
            "shop.PaidV3"
        }
        fn upcast(&self, value: Value) -> Result<Value, String> {
            let Value::Record(mut fields) = value else {
                return Err("not a record".into());
            };
            fields.push(("currency".into(), Value::String("EUR".into())));
            Ok(Value::Record(fields))
        }
    }

    #[test]
    fn chains_apply_in_order_and_current_records_pass_through() {
        let upcasters = Upcasters::default().with(V1ToV2).with(V2ToV3);
        let v1 = Value::Record(vec![("amount".into(), Value::Long(12))]);
        let (name, value) = upcasters
            .apply("shop.PaidV1", v1)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(name, "shop.PaidV3");
        assert_eq!(
            value,
            Value::Record(vec![
                ("amount_cents".into(), Value::Long(1200)),
                ("currency".into(), Value::String("EUR".into())),
            ])
        );
        let current = Value::Record(vec![]);
        assert_eq!(
            upcasters.apply("shop.PaidV3", current.clone()),
            Ok(("shop.PaidV3".into(), current))
        );
        assert!(upcasters.apply("shop.PaidV1", Value::Null).is_err());
    }
}
