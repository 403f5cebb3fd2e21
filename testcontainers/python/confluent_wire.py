"""Encodes and decodes records in Confluent's wire format with Confluent's own Python client.

  confluent_wire.py decode REGISTRY_URL HEX            -> the record as JSON (timestamps as epoch ms)
  confluent_wire.py encode REGISTRY_URL TOPIC JSON     -> hex of the record, encoded with the latest
                                                          schema of its TopicRecordNameStrategy subject
For encode, JSON is {"full_name": ..., "value": {...}}. Exits 1 with the reason on failure.
"""
import datetime
import json
import sys

from confluent_kafka.schema_registry import SchemaRegistryClient, topic_record_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext


def plain(value):
    if isinstance(value, datetime.datetime):
        return int(value.timestamp() * 1000)
    raise TypeError(f"cannot show {type(value)}")


def main():
    mode, url = sys.argv[1], sys.argv[2]
    client = SchemaRegistryClient({"url": url})
    if mode == "decode":
        data = bytes.fromhex(sys.argv[3])
        record = AvroDeserializer(client)(data, SerializationContext("any", MessageField.VALUE))
        print(json.dumps(record, default=plain))
    elif mode == "encode":
        topic, request = sys.argv[3], json.loads(sys.argv[4])
        subject = f"{topic}-{request['full_name']}"
        latest = client.get_latest_version(subject)
        serializer = AvroSerializer(client, latest.schema, conf={
            "auto.register.schemas": False,
            "use.latest.version": True,
            "subject.name.strategy": topic_record_subject_name_strategy,
        })
        data = serializer(request["value"], SerializationContext(topic, MessageField.VALUE))
        print(data.hex())
    else:
        print(f"unknown mode {mode}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
