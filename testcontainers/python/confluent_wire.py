"""Encodes and decodes records in Confluent's wire format with Confluent's own Python client.

  confluent_wire.py decode REGISTRY_URL HEX            -> the record as JSON (timestamps as epoch ms)
  confluent_wire.py encode REGISTRY_URL TOPIC JSON     -> hex of the record, encoded with the latest
                                                          schema of its TopicRecordNameStrategy subject
  confluent_wire.py produce REGISTRY_URL BOOTSTRAP TOPIC KEY JSON
                                                       -> encodes as above and sends it with Confluent's
                                                          Producer (acks=all, murmur2_random partitioner:
                                                          the Java client's placement of keys); prints
                                                          the partition and offset
  confluent_wire.py produce-file REGISTRY_URL BOOTSTRAP TOPIC PARTITIONER FILE
                                                       -> sends every record of FILE (a JSON array of
                                                          {"key": ..., "full_name": ..., "value": {...}}),
                                                          in order, with Confluent's Producer on
                                                          PARTITIONER (e.g. its default,
                                                          consistent_random); prints {"partitions":
                                                          [partition of each record]}
For encode and produce, JSON is {"full_name": ..., "value": {...}}. Exits 1 with the reason on failure.
"""
import datetime
import json
import sys

from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient, topic_record_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext


def plain(value):
    if isinstance(value, datetime.datetime):
        return int(value.timestamp() * 1000)
    raise TypeError(f"cannot show {type(value)}")


def encode(client, topic, request):
    subject = f"{topic}-{request['full_name']}"
    latest = client.get_latest_version(subject)
    serializer = AvroSerializer(client, latest.schema, conf={
        "auto.register.schemas": False,
        "use.latest.version": True,
        "subject.name.strategy": topic_record_subject_name_strategy,
    })
    return serializer(request["value"], SerializationContext(topic, MessageField.VALUE))


def main():
    mode, url = sys.argv[1], sys.argv[2]
    client = SchemaRegistryClient({"url": url})
    if mode == "decode":
        data = bytes.fromhex(sys.argv[3])
        record = AvroDeserializer(client)(data, SerializationContext("any", MessageField.VALUE))
        print(json.dumps(record, default=plain))
    elif mode == "encode":
        topic, request = sys.argv[3], json.loads(sys.argv[4])
        print(encode(client, topic, request).hex())
    elif mode == "produce":
        bootstrap, topic, key, request = sys.argv[3], sys.argv[4], sys.argv[5], json.loads(sys.argv[6])
        data = encode(client, topic, request)
        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                             "enable.idempotence": True, "partitioner": "murmur2_random"})
        delivered = {}

        def report(err, msg):
            delivered["err"], delivered["msg"] = err, msg

        producer.produce(topic, key=key.encode(), value=data, on_delivery=report)
        producer.flush(30)
        if delivered.get("err") is not None or "msg" not in delivered:
            print(f"produce failed: {delivered.get('err')}", file=sys.stderr)
            sys.exit(1)
        msg = delivered["msg"]
        print(json.dumps({"partition": msg.partition(), "offset": msg.offset()}))
    elif mode == "produce-file":
        bootstrap, topic, partitioner, path = sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
        with open(path) as f:
            records = json.load(f)
        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                             "enable.idempotence": True, "partitioner": partitioner})
        partitions = [None] * len(records)
        failures = []

        def report_at(i):
            def report(err, msg):
                if err is not None:
                    failures.append(str(err))
                else:
                    partitions[i] = msg.partition()
            return report

        for i, record in enumerate(records):
            data = encode(client, topic, record)
            producer.produce(topic, key=record["key"].encode(), value=data, on_delivery=report_at(i))
            producer.poll(0)
        producer.flush(60)
        if failures or None in partitions:
            print(f"produce failed: {failures[:3]}", file=sys.stderr)
            sys.exit(1)
        print(json.dumps({"partitions": partitions}))
    else:
        print(f"unknown mode {mode}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
