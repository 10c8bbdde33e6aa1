"""The README's "Inspecting topics" commands, tried against the local stack:

* dev/inspect (Avro-decoded JSON lines, the local stand-in for kcat's
  `-s value=avro -r …`, which Debian's kcat lacks) prints a real outcome;
* Debian's kcat lists the topics (`-L`) and reads a dead letter's key and
  headers;
* Kafka's own console consumer, from the jars dev/up fetched
  (dev/kafka-tool), reads the same headers.
"""

import json
import os
import pathlib
import subprocess
import time
import uuid

import requests
from confluent_kafka import Producer

ROOT = pathlib.Path(__file__).resolve().parents[3]
INGRESS = os.environ.get("FLASHSALE_INGRESS_URL", "http://127.0.0.1:18080")
OUTCOMES = os.environ.get("FLASHSALE_OUTCOMES_TOPIC", "flashsale.outcomes")


def test_inspect_prints_decoded_outcomes():
    product = f"inspect-{uuid.uuid4().hex[:12]}"
    sale = {"product_id": product, "stock": 1, "per_user_limit": 1, "price": "1.00"}
    assert requests.post(f"{INGRESS}/api/v1/sales", json=sale, timeout=10).status_code == 201
    run = subprocess.run(
        [str(ROOT / "dev" / "inspect"), OUTCOMES, "--max", "100000", "--timeout", "5"],
        capture_output=True, text=True, timeout=300, check=True,
    )
    records = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    ours = [r for r in records if r["key"] == product]
    assert ours, f"no outcome for {product} among {len(records)} records"
    value = ours[0]["value"]
    assert value["product_id"] == product
    assert value["kind"] == "SALE_CONFIGURED" and value["status"] == "ACCEPTED"


BROKERS = os.environ.get("FLASHSALE_BROKERS", "127.0.0.1:19092")
REQUESTS = os.environ.get("FLASHSALE_REQUESTS_TOPIC", "flashsale.requests")
DEAD_LETTER = os.environ.get("FLASHSALE_DEAD_LETTER_TOPIC", "flashsale.dead-letter")
TOPICS = [REQUESTS, OUTCOMES, DEAD_LETTER, os.environ.get("FLASHSALE_SNAPSHOTS_TOPIC", "flashsale.snapshots")]
PARTITIONS = int(os.environ.get("FLASHSALE_PARTITIONS", "8"))


def test_kcat_lists_every_topic_with_its_partitions():
    """`kcat -L`, as the README writes it, against the local broker: the four
    topics exist with the deployment's partition count."""
    run = subprocess.run(["kcat", "-b", BROKERS, "-L", "-J"], capture_output=True, text=True, timeout=60, check=True)
    topics = {t["topic"]: len(t["partitions"]) for t in json.loads(run.stdout)["topics"]}
    for topic in TOPICS:
        assert topics.get(topic) == PARTITIONS, (topic, topics.get(topic))


def _dead_letter_for_undecodable_record() -> str:
    """Produces bytes that are not Avro to the requests topic, keyed by a
    fresh product ID on its murmur2 partition, and returns that key: the
    processor must dead-letter it as `undecodable`."""
    key = f"inspect-bad-{uuid.uuid4().hex[:12]}"
    producer = Producer({"bootstrap.servers": BROKERS, "partitioner": "murmur2_random", "acks": "all"})
    producer.produce(REQUESTS, key=key.encode(), value=b"not avro at all")
    assert producer.flush(30) == 0
    return key


def _until(timeout_s, attempt):
    """Calls `attempt` until it returns something truthy or time runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = attempt()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(1)


def test_kcat_reads_dead_letter_keys_and_headers():
    """The README's kcat command for the dead-letter topic, without Avro
    (Debian's kcat has none): keys and the reason headers of a record the
    processor refused."""
    key = _dead_letter_for_undecodable_record()

    def attempt():
        run = subprocess.run(
            ["kcat", "-b", BROKERS, "-t", DEAD_LETTER, "-C", "-o", "beginning", "-e", "-q", "-f", "%k\t%h\n"],
            capture_output=True, text=True, timeout=120, check=True,
        )
        return [line for line in run.stdout.splitlines() if line.startswith(key + "\t")]

    lines = _until(60, attempt)
    assert lines, f"no dead letter keyed {key}"
    headers = dict(h.split("=", 1) for h in lines[0].split("\t", 1)[1].split(","))
    assert headers["flashsale.dlq.reason"] == "undecodable"
    assert headers["flashsale.dlq.source.topic"] == REQUESTS


def test_kafka_console_consumer_reads_dead_letter_headers():
    """Kafka's own console consumer, from the fetched jars (dev/kafka-tool),
    prints the same dead letter's key and headers."""
    key = _dead_letter_for_undecodable_record()

    def attempt():
        run = subprocess.run(
            [str(ROOT / "dev" / "kafka-tool"), "console-consumer", "--topic", DEAD_LETTER, "--from-beginning",
             "--timeout-ms", "5000", "--formatter-property", "print.key=true",
             "--formatter-property", "print.headers=true", "--formatter-property", "print.value=false"],
            capture_output=True, text=True, errors="replace", timeout=180,
        )
        return [line for line in run.stdout.splitlines() if line.endswith(f"\t{key}")]

    lines = _until(60, attempt)
    assert lines, f"no dead letter keyed {key} from the console consumer"
    assert "flashsale.dlq.reason:undecodable" in lines[0]
