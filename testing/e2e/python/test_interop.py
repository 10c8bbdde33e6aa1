"""Interop with the official Confluent Python client (confluent-kafka).

An external team produces purchase requests straight to the requests topic
with confluent-kafka's AvroSerializer, SchemaRegistryClient and the murmur2
partitioner, exactly as they would against Apache Kafka and Confluent Schema
Registry; the running pipeline decides them; an AvroDeserializer reads the
outcomes back. This proves (1) our schemas and wire format are what standard
Confluent tooling produces and reads, (2) librdkafka's murmur2_random puts
every key on the partition our processors own (Kafka's Java murmur2,
re-implemented independently below), and (3) the registry the stack runs speaks
the REST API real clients use.

Runs against the local stack from dev/up (dev/test exports its endpoints).
"""

import json
import os
import pathlib
import time
import uuid

import pytest
import requests
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

ROOT = pathlib.Path(__file__).resolve().parents[3]
BROKERS = os.environ.get("FLASHSALE_BROKERS", "127.0.0.1:19092")
REGISTRY = os.environ.get("FLASHSALE_SCHEMA_REGISTRY_URL", "http://127.0.0.1:18081/apis/ccompat/v7")
INGRESS = os.environ.get("FLASHSALE_INGRESS_URL", "http://127.0.0.1:18080")
REQUESTS = os.environ.get("FLASHSALE_REQUESTS_TOPIC", "flashsale.requests")
OUTCOMES = os.environ.get("FLASHSALE_OUTCOMES_TOPIC", "flashsale.outcomes")


def kafka_murmur2(data: bytes) -> int:
    """Kafka's Utils.murmur2, written from the algorithm, as a signed int."""
    seed, m, r = 0x9747B28C, 0x5BD1E995, 24
    mask = 0xFFFFFFFF
    length = len(data)
    h = (seed ^ length) & mask
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & mask
        k ^= k >> r
        k = (k * m) & mask
        h = (h * m) & mask
        h ^= k
    tail = data[length - length % 4 :]
    if len(tail) == 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if len(tail) >= 1:
        h ^= tail[0]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def expected_partition(key: str, count: int) -> int:
    return (kafka_murmur2(key.encode()) & 0x7FFFFFFF) % count


def test_murmur2_matches_kafka_vectors():
    """The Python murmur2 used below agrees with Kafka's own test vectors."""
    assert kafka_murmur2(b"21") == -973932308
    assert kafka_murmur2(b"foobar") == -790332482
    assert kafka_murmur2(b"a-little-bit-long-string") == -985981536


def stack_up() -> bool:
    try:
        return requests.get(f"{INGRESS}/health", timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def registry():
    if not stack_up():
        pytest.fail(f"the local stack is not running at {INGRESS}: run dev/up")
    return SchemaRegistryClient({"url": REGISTRY})


def configure_sale(product: str, stock: int, per_user_limit: int, price: str) -> None:
    """Configures a sale through the ingress, as an operator would."""
    sale = {"product_id": product, "stock": stock, "per_user_limit": per_user_limit, "price": price}
    answer = requests.post(f"{INGRESS}/api/v1/sales", json=sale, timeout=10)
    assert answer.status_code == 201, answer.text


def requests_partitions() -> int:
    """The requests topic's partition count, as the broker reports it."""
    metadata = Consumer({"bootstrap.servers": BROKERS, "group.id": "interop-meta"}).list_topics(REQUESTS, timeout=10)
    return len(metadata.topics[REQUESTS].partitions)


def request_serializer(registry) -> AvroSerializer:
    """confluent-kafka's serializer for the requests topic, from our schema file."""
    schema_str = (ROOT / "schemas" / "avro" / "request.avsc").read_text()
    return AvroSerializer(registry, schema_str, conf={"auto.register.schemas": True})


def tail_outcomes(partitions: int) -> Consumer:
    consumer = Consumer(
        {
            "bootstrap.servers": BROKERS,
            "group.id": f"interop-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    assignment = []
    for p in range(partitions):
        _, high = consumer.get_watermark_offsets(TopicPartition(OUTCOMES, p), timeout=10)
        assignment.append(TopicPartition(OUTCOMES, p, high))
    consumer.assign(assignment)
    return consumer


def test_external_avro_producer_is_decided_and_outcomes_read_back(registry):
    """20 buyers race for 5 units through Kafka directly: 5 ACCEPTED, 15
    REJECTED SOLD_OUT, each record on its murmur2 partition."""
    product = f"py-{uuid.uuid4().hex[:12]}"
    configure_sale(product, stock=5, per_user_limit=1, price="4.50")

    partitions = requests_partitions()
    outcomes = tail_outcomes(partitions)
    serializer = request_serializer(registry)
    producer = Producer(
        {
            "bootstrap.servers": BROKERS,
            "partitioner": "murmur2_random",
            "enable.idempotence": True,
            "acks": "all",
        }
    )
    delivered = []

    def on_delivery(err, msg):
        assert err is None, err
        delivered.append((msg.key().decode(), msg.partition()))

    request_ids = []
    for i in range(20):
        request_id = f"py-req-{uuid.uuid4().hex[:16]}"
        request_ids.append(request_id)
        record = {
            "request_id": request_id,
            "user_id": f"py-user-{i}",
            "product_id": product,
            "quantity": 1,
            "received_at": int(time.time() * 1000),
        }
        value = serializer(record, SerializationContext(REQUESTS, MessageField.VALUE))
        producer.produce(REQUESTS, key=product.encode(), value=value, on_delivery=on_delivery)
    assert producer.flush(30) == 0
    assert len(delivered) == 20
    assert all(p == expected_partition(k, partitions) for k, p in delivered), delivered

    deserializer = AvroDeserializer(registry)
    seen = {}
    deadline = time.time() + 60
    while len(seen) < 20 and time.time() < deadline:
        msg = outcomes.poll(1.0)
        if msg is None or msg.error():
            continue
        outcome = deserializer(msg.value(), SerializationContext(OUTCOMES, MessageField.VALUE))
        if outcome["request_id"] in request_ids:
            assert msg.key().decode() == product
            seen[outcome["request_id"]] = outcome
    outcomes.close()
    assert len(seen) == 20, f"only {len(seen)} outcomes arrived"
    statuses = sorted(o["status"] for o in seen.values())
    assert statuses.count("ACCEPTED") == 5
    assert statuses.count("REJECTED") == 15
    assert {o["reason"] for o in seen.values() if o["status"] == "REJECTED"} == {"SOLD_OUT"}
    assert min(o["remaining"] for o in seen.values()) == 0


def test_transactional_producer_only_committed_records_are_decided(registry):
    """An external producer writing requests in Kafka transactions: the
    records of a committed transaction are decided, those of an aborted one
    never are, and a plain record written after the abort is decided too (the
    partition keeps flowing past the transaction markers). Proves the
    processor reads with isolation.level=read_committed, and that the offsets
    the markers and aborted records take are stepped over, not waited for.
    How: 3 purchases committed, 2 aborted, 1 plain, all on one product (one
    partition, so log order is decision order); the plain one's outcome
    arrives only after everything before it in the log was decided, so
    "no outcome for the aborted two" is final once it is there."""
    product = f"py-txn-{uuid.uuid4().hex[:12]}"
    configure_sale(product, stock=10, per_user_limit=10, price="2.00")
    outcomes = tail_outcomes(requests_partitions())
    serializer = request_serializer(registry)

    def record(tag):
        request = {
            "request_id": f"py-txn-{tag}-{uuid.uuid4().hex[:12]}",
            "user_id": f"py-txn-user-{tag}",
            "product_id": product,
            "quantity": 1,
            "received_at": int(time.time() * 1000),
        }
        return request["request_id"], serializer(request, SerializationContext(REQUESTS, MessageField.VALUE))

    common = {"bootstrap.servers": BROKERS, "partitioner": "murmur2_random", "acks": "all", "enable.idempotence": True}
    txn = Producer({**common, "transactional.id": f"interop-{uuid.uuid4()}"})
    txn.init_transactions(30)

    def transaction(tag, count, finish):
        """One transaction of `count` purchases, ended by `finish`; their IDs."""
        txn.begin_transaction()
        ids = []
        for i in range(count):
            request_id, value = record(f"{tag}{i}")
            ids.append(request_id)
            txn.produce(REQUESTS, key=product.encode(), value=value)
        txn.flush(30)
        finish(30)
        return ids

    committed = transaction("c", 3, txn.commit_transaction)
    aborted = transaction("a", 2, txn.abort_transaction)
    plain_id, value = record("plain")
    plain = Producer(common)
    plain.produce(REQUESTS, key=product.encode(), value=value)
    assert plain.flush(30) == 0

    deserializer = AvroDeserializer(registry)
    seen = {}
    deadline = time.time() + 60
    while plain_id not in seen and time.time() < deadline:
        msg = outcomes.poll(1.0)
        if msg is None or msg.error() or msg.key() != product.encode():
            continue
        outcome = deserializer(msg.value(), SerializationContext(OUTCOMES, MessageField.VALUE))
        seen[outcome["request_id"]] = outcome
    outcomes.close()
    assert plain_id in seen, f"the plain record after the aborted transaction was not decided: {sorted(seen)}"
    assert all(seen.get(r, {}).get("status") == "ACCEPTED" for r in committed), seen
    assert not any(r in seen for r in aborted), f"an aborted record was decided: {seen}"
    assert seen[plain_id]["status"] == "ACCEPTED" and seen[plain_id]["remaining"] == 6
