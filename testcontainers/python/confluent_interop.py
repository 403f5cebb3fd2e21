"""Drives the schema registry with Confluent's own Python client, as an outside user would.

Usage: confluent_interop.py REGISTRY_URL KAFKA_BOOTSTRAP TOPIC

Registers, reads, looks up, checks and deletes schemas through SchemaRegistryClient; serializes records
with AvroSerializer (which registers the schema itself), sends them through Kafka with Confluent's
Producer, reads them back with its Consumer and AvroDeserializer (which fetches the schema by id).
Prints one JSON object with what it saw; exits 1 with the reason on the first surprise.
"""
import json
import sys

from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

ORDER_V1 = {
    "type": "record", "name": "OrderPlaced", "namespace": "interop",
    "fields": [{"name": "order_id", "type": "string"}, {"name": "total_cents", "type": "long"}],
}
ORDER_V2 = dict(ORDER_V1, fields=ORDER_V1["fields"] + [{"name": "note", "type": "string", "default": ""}])
BREAKING = dict(ORDER_V1, fields=ORDER_V1["fields"] + [{"name": "coupon", "type": "string"}])


def check(condition, what):
    if not condition:
        print(f"interop: {what}", file=sys.stderr)
        sys.exit(1)


def main():
    url, bootstrap, topic = sys.argv[1:4]
    client = SchemaRegistryClient({"url": url})
    subject = f"{topic}-value"
    seen = {}

    v1_id = client.register_schema(subject, Schema(json.dumps(ORDER_V1), "AVRO"))
    check(v1_id == client.register_schema(subject, Schema(json.dumps(ORDER_V1, indent=2), "AVRO")),
          "re-registering the same schema gave another id")
    fetched = client.get_schema(v1_id)
    check(json.loads(fetched.schema_str) == ORDER_V1, f"get_schema({v1_id}) returned {fetched.schema_str}")
    check(fetched.schema_type == "AVRO", f"schema_type {fetched.schema_type}")
    latest = client.get_latest_version(subject)
    check((latest.schema_id, latest.version, latest.subject) == (v1_id, 1, subject), f"latest {latest}")
    looked_up = client.lookup_schema(subject, Schema(json.dumps(ORDER_V1), "AVRO"))
    check(looked_up.version == 1, f"lookup {looked_up}")
    check(subject in client.get_subjects(), "subject missing from get_subjects")

    check(client.test_compatibility(subject, Schema(json.dumps(ORDER_V2), "AVRO")), "v2 should be compatible")
    check(not client.test_compatibility(subject, Schema(json.dumps(BREAKING), "AVRO")), "breaking change accepted")
    try:
        client.register_schema(subject, Schema(json.dumps(BREAKING), "AVRO"))
        check(False, "a breaking schema was registered")
    except SchemaRegistryError as e:
        check(e.http_status_code == 409, f"breaking registration answered {e.http_status_code}")
        seen["incompatible_message"] = e.error_message
    client.set_compatibility(subject_name=subject, level="FULL")
    check(client.get_compatibility(subject) == "FULL", "subject level not FULL")
    v2_id = client.register_schema(subject, Schema(json.dumps(ORDER_V2), "AVRO"))
    check(client.get_versions(subject) == [1, 2], f"versions {client.get_versions(subject)}")
    try:
        client.get_version(subject, 9)
        check(False, "version 9 exists")
    except SchemaRegistryError as e:
        check((e.http_status_code, e.error_code) == (404, 40402), f"missing version: {e}")

    # Serialize with Confluent's serializer (auto-registers under TopicNameStrategy), through Kafka, back.
    data_topic = topic
    serializer = AvroSerializer(client, json.dumps(ORDER_V2))
    deserializer = AvroDeserializer(client)
    records = [{"order_id": f"o-{i}", "total_cents": i * 100, "note": "β" * i} for i in range(5)]
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    ctx = SerializationContext(data_topic, MessageField.VALUE)
    failures = []
    for r in records:
        payload = serializer(r, ctx)
        check(payload[0] == 0 and int.from_bytes(payload[1:5], "big") == v2_id, "not Confluent's wire format")
        producer.produce(data_topic, key=r["order_id"], value=payload,
                         on_delivery=lambda err, _msg: failures.append(str(err)) if err else None)
    check(producer.flush(30) == 0 and not failures, f"records not delivered: {failures}")
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-interop",
                         "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
    consumer.subscribe([data_topic])
    back = []
    for _ in range(60):
        m = consumer.poll(1.0)
        if m is None or m.error():
            if len(back) == len(records):
                break
            continue
        back.append(deserializer(m.value(), ctx))
        if len(back) == len(records):
            break
    consumer.close()
    check(back == records, f"read back {back}")

    check(client.delete_version(subject, 1) == 1, "soft delete of version 1")
    check(client.get_versions(subject) == [2], "versions after soft delete")
    deleted = client.delete_subject(subject)
    check(deleted == [2], f"delete_subject returned {deleted}")
    permanently = client.delete_subject(subject, permanent=True)
    check(sorted(permanently) == [1, 2], f"permanent delete returned {permanently}")
    check(subject not in client.get_subjects(), "subject still listed")

    seen.update({"v1_id": v1_id, "v2_id": v2_id, "records": len(back)})
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
