//! Subject naming. A topic carries several record types (every command of an aggregate on one topic, so
//! that per-key order holds across types), so subjects follow Confluent's TopicRecordNameStrategy:
//! `<topic>-<record full name>`.

/// The registry subject of record `full_name` (namespace plus name) on `topic`.
pub fn topic_record_name(topic: &str, full_name: &str) -> String {
    let mut subject = String::with_capacity(topic.len() + 1 + full_name.len());
    subject.push_str(topic);
    subject.push('-');
    subject.push_str(full_name);
    subject
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_is_topic_dash_full_name() {
        assert_eq!(
            topic_record_name("orders.order.commands", "causeway.orders.order.PlaceOrder"),
            "orders.order.commands-causeway.orders.order.PlaceOrder"
        );
    }
}
