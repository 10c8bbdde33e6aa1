# Named read_topic.py, not inspect.py: that would shadow the standard library.
"""Print the records of a flashsale topic as JSON lines, Avro-decoded
through the schema registry: the local stand-in for
`kcat -C -s key=s -s value=avro -r $FLASHSALE_SCHEMA_REGISTRY_URL`.
Run it through dev/inspect, which supplies the Python environment."""

import argparse
import base64
import datetime
import decimal
import json
import os
import sys

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext


def plain(value):
    """JSON has no bytes, decimals or datetimes: show them readably."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, (decimal.Decimal, datetime.datetime)):
        return str(value)
    raise TypeError(type(value))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("topic", help="e.g. flashsale.outcomes, flashsale.dead-letter")
    parser.add_argument("--max", type=int, default=100, help="stop after this many records (default 100)")
    parser.add_argument("--tail", action="store_true", help="start at the end of each partition, not the beginning")
    parser.add_argument("--timeout", type=float, default=5.0, help="stop after this many idle seconds (default 5)")
    args = parser.parse_args()
    brokers = os.environ.get("FLASHSALE_BROKERS", "127.0.0.1:19092")
    registry = os.environ.get("FLASHSALE_SCHEMA_REGISTRY_URL", "http://127.0.0.1:18081/apis/ccompat/v7")
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": "flashsale-inspect", "enable.auto.commit": False})
    metadata = consumer.list_topics(args.topic, timeout=10).topics[args.topic]
    if metadata.error is not None:
        sys.exit(f"dev/inspect: {args.topic}: {metadata.error}")
    assignment = []
    for p in metadata.partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(args.topic, p), timeout=10)
        assignment.append(TopicPartition(args.topic, p, high if args.tail else low))
    consumer.assign(assignment)
    decode = AvroDeserializer(SchemaRegistryClient({"url": registry}))
    context = SerializationContext(args.topic, MessageField.VALUE)
    printed = 0
    while printed < args.max:
        msg = consumer.poll(args.timeout)
        if msg is None:
            break
        if msg.error():
            continue
        headers = {k: (v.decode(errors="replace") if v else None) for k, v in (msg.headers() or [])}
        try:
            value = decode(msg.value(), context) if msg.value() else None
        except Exception as e:  # an undecodable record is shown, not fatal
            value = {"undecodable": str(e)}
        key = msg.key().decode(errors="replace") if msg.key() else None
        record = {"partition": msg.partition(), "offset": msg.offset(), "key": key, "headers": headers, "value": value}
        print(json.dumps(record, default=plain))
        printed += 1
    consumer.close()


if __name__ == "__main__":
    main()
