"""The Kafka Streams peer (peers/kafka-streams) decides exactly like our processor.

What it proves: fed the same recorded input log, flashsale-processor (ours)
and the peer (Kafka Streams, RocksDB stores with changelogs, exactly_once_v2
by default) emit, for every input record, the same single output:
  * an outcome with every field equal (request_id, product_id, kind, status,
    reason, user_id, quantity, order_id, unit_price, remaining, stock,
    user_total, sale, source_partition, source_offset, decided_at: all of
    them functions of the log), a byte-identical Avro body, the same key and
    the same outcomes partition, in the same order per partition, and no
    headers; or
  * a dead letter with the same reason, source partition/offset/timestamp,
    original key and value bytes, record key and partition, and headers.
It also checks that the log does what it is meant to (every rejection and
dead-letter reason occurs, repeats are answered from memory and forgotten),
so that equality proves something.

How: two sets of scratch topics with 8 partitions, made by flashsale-admin:
A for ours, B for the peer. One log is generated from a fixed seed: sale
commands first, then purchases over several products and partitions with
sale windows (not started, ended), per-user limits, sold-out and
insufficient stock, re-configurations (one refused: stock below units
sold), repeated request IDs (near ones answered from the dedupe memory, far
and late ones forgotten by count or by record time, then decided afresh,
and a scripted run on a partition of its own that hits both limits to the
entry), writers with other schemas (reordered union with extra and missing
fields, a bare record), input headers, and bad records of every
dead-letter reason. It is produced to both requests topics with
confluent-kafka, each record on an explicit partition (murmur2 of its key,
or a wrong one on purpose) and with an explicit timestamp, so the two logs
are identical offset for offset (the delivery reports are checked). Then both processors run side by side
(same dedupe limits, FLASHSALE_DEDUPE_ENTRIES_MAX small so eviction
happens), the outcome and dead-letter topics are read (read_committed)
until every input record is answered on both sides, and the answers are
compared per input record (source partition, source offset; see Answers for
how outcomes are matched to records), with a field-level diff on failure.

Excluded from the comparison, on purpose:
  * the outcome and dead-letter records' Kafka timestamps and offsets: ours
    stamps records when it produces them, the peer with the input record's
    time, and the peer's transaction markers take offsets of their own;
  * a dead letter's `detail` (operator text that quotes each side's Avro
    library errors) and `source_topic` / the source.topic header (each
    names its own requests topic, which is checked instead).

FLASHSALE_PEER_EQ_REQUESTS sets the number of purchases (default 2500, for
CI; 10000 for a longer run). FLASHSALE_PEER_EQ_GUARANTEE runs the peer
with at_least_once instead. Runs against the local stack (dev/up); builds
the peer with dev/peer build. Everything made here (topics, the peer's
changelog topics, consumer groups, registry subjects) is deleted afterwards,
also on failure.
"""

import io
import json
import os
import pathlib
import random
import shutil
import signal
import subprocess
import time
import uuid

import fastavro
import pytest
import requests
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from test_interop import kafka_murmur2  # Kafka's Utils.murmur2, proven there on Kafka's own vectors

ROOT = pathlib.Path(__file__).resolve().parents[3]
BROKERS = os.environ.get("FLASHSALE_BROKERS", "127.0.0.1:19092")
REGISTRY = os.environ.get("FLASHSALE_SCHEMA_REGISTRY_URL", "http://127.0.0.1:18081/apis/ccompat/v7").rstrip("/")
BIN_DIR = pathlib.Path(os.environ.get("FLASHSALE_BIN_DIR", ROOT / "target" / "debug"))
PURCHASES = int(os.environ.get("FLASHSALE_PEER_EQ_REQUESTS", "2500"))
GUARANTEE = os.environ.get("FLASHSALE_PEER_EQ_GUARANTEE", "exactly_once_v2")
PARTITIONS = 8
# Small enough that every partition forgets request IDs by count during the
# run; both sides get it (the limits are deterministic configuration).
DEDUPE_ENTRIES_MAX = 120
HOUR_MS = 3_600_000
DEDUPE_WINDOW_MS = 24 * HOUR_MS  # the default, stated: dedupe_boundaries() relies on it
CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
LOGS = ROOT / ".dev" / "logs"

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z: record times are fixed, never the wall clock
REQUEST_SCHEMA_TEXT = (ROOT / "schemas" / "avro" / "request.avsc").read_text()

# ------------------------------------------------------------------ helpers


def partition_of(key: bytes) -> int:
    return (kafka_murmur2(key) & 0x7FFFFFFF) % PARTITIONS


def raw_schema(schema):
    """The schema without logical types: values decode as the plain ints and
    bytes on the wire (exact comparison, no datetime or Decimal rounding),
    and encode to the same bytes."""
    if isinstance(schema, dict):
        return {k: raw_schema(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [raw_schema(s) for s in schema]
    return schema


def parse(schema_json):
    return fastavro.parse_schema(raw_schema(schema_json))


def encode(parsed, datum) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed, datum)
    return buf.getvalue()


def frame(schema_id: int, body: bytes) -> bytes:
    """The Confluent wire format: magic byte 0, big-endian schema ID, Avro body."""
    return b"\x00" + schema_id.to_bytes(4, "big") + body


def cents_bytes(cents: int) -> bytes:
    """A decimal(18, 2) as Avro bytes: the unscaled value, minimal two's complement."""
    n = 1
    while True:
        try:
            return cents.to_bytes(n, "big", signed=True)
        except OverflowError:
            n += 1


def zigzag(n: int) -> bytes:
    """An Avro int/long, for hand-made (malformed) bodies."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        b = z & 0x7F
        z >>= 7
        if z:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def avro_bytes(b: bytes) -> bytes:
    return zigzag(len(b)) + b


class RegistryClient:
    """The registry calls the test needs (Confluent REST API, Apicurio's ccompat)."""

    def __init__(self):
        self.schemas = {}

    def register(self, subject: str, schema_text: str) -> int:
        answer = requests.post(
            f"{REGISTRY}/subjects/{subject}/versions",
            data=json.dumps({"schema": schema_text}),
            headers={"Content-Type": CONTENT_TYPE},
            timeout=10,
        )
        assert answer.status_code == 200, f"registering {subject}: {answer.status_code} {answer.text}"
        return answer.json()["id"]

    def reader(self, schema_id: int):
        """The writer schema of an ID, parsed without logical types (cached)."""
        if schema_id not in self.schemas:
            answer = requests.get(f"{REGISTRY}/schemas/ids/{schema_id}", timeout=10)
            assert answer.status_code == 200, f"schema {schema_id}: {answer.status_code} {answer.text}"
            text = answer.json()["schema"]
            self.schemas[schema_id] = (json.loads(text), parse(json.loads(text)))
        return self.schemas[schema_id]

    def decode(self, value: bytes):
        assert value[0] == 0, f"not Confluent-framed: {value[:8]!r}"
        schema_id = int.from_bytes(value[1:5], "big")
        _, parsed = self.reader(schema_id)
        return schema_id, fastavro.schemaless_reader(io.BytesIO(value[5:]), parsed, None)

    def delete_subjects(self, prefix: str):
        """Best effort: soft then permanent delete of every subject under prefix."""
        try:
            subjects = requests.get(f"{REGISTRY}/subjects", timeout=10).json()
        except (requests.RequestException, ValueError):
            return
        for s in subjects:
            if s.startswith(prefix):
                for params in ({}, {"permanent": "true"}):
                    try:
                        requests.delete(f"{REGISTRY}/subjects/{s}", params=params, timeout=10)
                    except requests.RequestException:
                        pass


# ------------------------------------------------------- the recorded log

# Writer schemas other than ours, registered under scratch subjects.
EVOLVED = [
    # The union reordered; ConfigureSale with its fields shuffled, stock as an
    # int (promoted to long), starts_at required, ends_at absent (reader
    # default: null) and a field readers do not know.
    {
        "type": "record",
        "name": "ConfigureSale",
        "namespace": "flashsale.v1",
        "fields": [
            {"name": "issued_at", "type": "long"},
            {"name": "command_id", "type": "string"},
            {"name": "product_id", "type": "string"},
            {"name": "stock", "type": "int"},
            {"name": "per_user_limit", "type": "int"},
            {"name": "price", "type": "bytes"},
            {"name": "starts_at", "type": "long"},
            {"name": "note", "type": "string"},
        ],
    },
    # PurchaseRequest with its fields shuffled and an optional extra field.
    {
        "type": "record",
        "name": "PurchaseRequest",
        "namespace": "flashsale.v1",
        "fields": [
            {"name": "product_id", "type": "string"},
            {"name": "channel", "type": ["null", "string"], "default": None},
            {"name": "request_id", "type": "string"},
            {"name": "quantity", "type": "int"},
            {"name": "user_id", "type": "string"},
            {"name": "received_at", "type": "long"},
        ],
    },
]
# A bare PurchaseRequest record, not a union (ours reads it, see avro.rs).
BARE = {
    "type": "record",
    "name": "PurchaseRequest",
    "namespace": "flashsale.v1",
    "fields": [
        {"name": "request_id", "type": "string"},
        {"name": "user_id", "type": "string"},
        {"name": "product_id", "type": "string"},
        {"name": "quantity", "type": "int"},
        {"name": "received_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ],
}
# A record neither side knows: undecodable.
REFUND = {
    "type": "record",
    "name": "RefundRequest",
    "namespace": "flashsale.v1",
    "fields": [{"name": "request_id", "type": "string"}, {"name": "product_id", "type": "string"}],
}

PRODUCTS = [f"eq-sku-{i:02d}" for i in range(14)]
UNKNOWN_PRODUCT = "eq-sku-12"  # never configured
LATE_PRODUCT = "eq-sku-13"  # configured half way through
PURCHASE = "flashsale.v1.PurchaseRequest"
CONFIGURE = "flashsale.v1.ConfigureSale"


class Log:
    """The input log being built: records (key, value, partition, timestamp),
    each with what ours is expected to do with it ("decide" or a dead-letter
    reason), so the test also proves the log exercises what it claims."""

    def __init__(self, ids):
        self.ids = ids
        self.request = parse(json.loads(REQUEST_SCHEMA_TEXT))
        self.evolved = parse(EVOLVED)
        self.bare = parse(BARE)
        self.refund = parse(REFUND)
        self.records = []

    def add(self, key, value, expect, partition=None, headers=None):
        if partition is None:
            partition = partition_of(key) if key is not None else 0
        self.records.append((key, value, partition, T0 + len(self.records), expect, headers))

    def purchase(self, request_id, user, product, quantity, at, writer="request", headers=None):
        fields = {
            "request_id": request_id,
            "user_id": user,
            "product_id": product,
            "quantity": quantity,
            "received_at": at,
        }
        if writer == "evolved":
            value = frame(self.ids["evolved"], encode(self.evolved, (PURCHASE, {**fields, "channel": "app"})))
        elif writer == "bare":
            value = frame(self.ids["bare"], encode(self.bare, fields))
        else:
            value = frame(self.ids["request"], encode(self.request, (PURCHASE, fields)))
        self.add(product.encode(), value, "decide", headers=headers)

    def configure(self, command_id, product, stock, limit, cents, at, starts=None, ends=None, writer="request"):
        fields = {
            "command_id": command_id,
            "product_id": product,
            "stock": stock,
            "per_user_limit": limit,
            "price": cents_bytes(cents),
            "starts_at": starts,
            "ends_at": ends,
            "issued_at": at,
        }
        if writer == "evolved":
            del fields["ends_at"]
            fields.update(starts_at=starts or 0, note="via an evolved writer")
            value = frame(self.ids["evolved"], encode(self.evolved, (CONFIGURE, fields)))
        else:
            value = frame(self.ids["request"], encode(self.request, (CONFIGURE, fields)))
        self.add(product.encode(), value, "decide")

    def bad_records(self):
        """Every dead-letter reason, several ways each: (key, value, partition, reason)."""
        rid = self.ids["request"]
        sku0 = b"eq-sku-00"

        def body(request_id="bad-1", user="u-bad", product="eq-sku-00", quantity=1):
            fields = {"request_id": request_id, "user_id": user, "product_id": product}
            return encode(self.request, (PURCHASE, {**fields, "quantity": quantity, "received_at": T0}))

        def command(**over):
            fields = {
                "command_id": "bad-cmd",
                "product_id": "eq-sku-00",
                "stock": 10,
                "per_user_limit": 1,
                "price": cents_bytes(100),
                "starts_at": None,
                "ends_at": None,
                "issued_at": T0,
            }
            fields.update(over)
            return encode(self.request, (CONFIGURE, fields))

        # Two products on one partition, and one on another, for key mismatches.
        a, b = next((a, b) for a in PRODUCTS for b in PRODUCTS
                    if a < b and partition_of(a.encode()) == partition_of(b.encode()))
        other = next(p for p in PRODUCTS if partition_of(p.encode()) != partition_of(a.encode()))
        purchase_strings = zigzag(0) + avro_bytes(b"bad-utf8") + avro_bytes(b"\xff\xfeu") + avro_bytes(sku0)
        return [
            # undecodable
            (sku0, b"hello, world", None, "undecodable"),
            (sku0, b"\x00\x00\x01", None, "undecodable"),
            (sku0, None, None, "undecodable"),
            (sku0, b"", None, "undecodable"),
            (sku0, frame(rid, zigzag(0) + zigzag(5) + b"ab"), None, "undecodable"),
            (sku0, frame(rid, body() + b"\x00"), None, "undecodable"),
            (sku0, frame(rid, zigzag(2) + body()[1:]), None, "undecodable"),
            (sku0, frame(rid, purchase_strings + zigzag(1) + zigzag(T0)), None, "undecodable"),
            (sku0, frame(rid, command(price=b"")), None, "undecodable"),
            (sku0, frame(rid, command(price=b"\x01" * 17)), None, "undecodable"),
            (sku0, frame(self.ids["refund"], encode(self.refund, {"request_id": "r", "product_id": "eq-sku-00"})),
             None, "undecodable"),
            # unknown_schema
            (sku0, frame(2_000_000_000, body()), None, "unknown_schema"),
            (sku0, frame(1_999_999_999, b"\x00"), None, "unknown_schema"),
            # invalid_content
            (sku0, frame(rid, body(quantity=0)), None, "invalid_content"),
            (sku0, frame(rid, body(quantity=1_000_001)), None, "invalid_content"),
            (sku0, frame(rid, body(request_id="bad id")), None, "invalid_content"),
            (sku0, frame(rid, body(request_id="r" * 65)), None, "invalid_content"),
            (sku0, frame(rid, body(user="")), None, "invalid_content"),
            (sku0, frame(rid, command(per_user_limit=0)), None, "invalid_content"),
            (sku0, frame(rid, command(starts_at=T0 + 10, ends_at=T0 + 10)), None, "invalid_content"),
            (sku0, frame(rid, command(price=cents_bytes(-1))), None, "invalid_content"),
            (sku0, frame(rid, command(stock=1_000_000_000_001)), None, "invalid_content"),
            # key_mismatch
            (None, frame(rid, body()), 3, "key_mismatch"),
            (b"\xff\xfe", frame(rid, body()), partition_of(b"\xff\xfe"), "key_mismatch"),
            (b"eq\xe2\x82", frame(rid, body()), partition_of(b"eq\xe2\x82"), "key_mismatch"),
            (b"bad key!", frame(rid, body()), partition_of(b"bad key!"), "key_mismatch"),
            (b"", frame(rid, body()), partition_of(b""), "key_mismatch"),
            (a.encode(), frame(rid, body(product=b)), None, "key_mismatch"),
            (a.encode(), frame(rid, body(product=other)), None, "key_mismatch"),
            # wrong_partition (the key is checked before the value)
            (sku0, frame(rid, body()), (partition_of(sku0) + 1) % PARTITIONS, "wrong_partition"),
            (b"eq-sku-05", b"garbage", (partition_of(b"eq-sku-05") + 3) % PARTITIONS, "wrong_partition"),
        ]


def dedupe_boundaries(log):
    """The dedupe memory's limits, to the entry, on a product alone on its
    partition (so nothing else is decided there in between):
    DEDUPE_ENTRIES_MAX + 1 decisions forget exactly the first; a jump of the
    record clock by the window forgets exactly the entries older than the
    horizon and keeps the one at it."""
    used = {partition_of(p.encode()) for p in PRODUCTS}
    solo = next(f"eq-solo-{i}" for i in range(1000) if partition_of(f"eq-solo-{i}".encode()) not in used)
    window = DEDUPE_WINDOW_MS
    log.configure("cmd-solo", solo, 1_000_000, 1, 100, T0)  # decision 1, at T0
    for k in range(1, DEDUPE_ENTRIES_MAX):  # decisions 2..max, at T0 + k: all remembered
        log.purchase(f"solo-{k}", f"u-solo-{k}", solo, 1, T0 + k)
    # Decision max + 1 forgets the first (cmd-solo), and only it.
    log.purchase(f"solo-{DEDUPE_ENTRIES_MAX}", "u-solo-last", solo, 1, T0 + DEDUPE_ENTRIES_MAX)
    log.purchase("solo-1", "u-solo-again", solo, 1, T0 + 300)  # remembered: the original answer
    log.configure("cmd-solo", solo, 5_000, 1, 100, T0 + 301)  # forgotten: decided again (forgets solo-1)
    log.purchase("solo-1", "u-solo-again", solo, 1, T0 + 302)  # forgotten: decided again (forgets solo-2)
    # The clock jumps to T0 + 10 + window: solo-3..9 are older than the horizon, solo-10 is at it.
    log.purchase("solo-jump", "u-solo-jump", solo, 1, T0 + 10 + window)
    log.purchase("solo-10", "u-solo-again", solo, 1, T0 + 11 + window)  # at the horizon: remembered
    log.purchase("solo-9", "u-solo-again", solo, 1, T0 + 12 + window)  # past it: decided again


def build_log(ids, purchases: int):
    """The recorded log: deterministic for a given size (fixed seed, fixed times)."""
    rng = random.Random(20260101)
    log = Log(ids)
    span = purchases * 120  # ms of record time the purchases cover

    def at(fraction):
        return T0 + int(span * fraction)

    # Sale commands first: (product, stock, per-user limit, price in cents, starts, ends).
    sales = [
        ("eq-sku-00", 40, 2, 1999, None, None),
        ("eq-sku-01", 1_000_000, 5, 500, at(0.3), None),  # not started for the first 30%
        ("eq-sku-02", 1_000_000, 3, 725, None, at(0.6)),  # ended after 60%
        ("eq-sku-03", 5, 5, 10000, None, None),  # a few units, large quantities
        ("eq-sku-04", 0, 1, 100, None, None),  # nothing to sell
        ("eq-sku-05", 300, 10, 0, at(0.2), at(0.8)),  # free, with a window
        ("eq-sku-06", 200, 1, 1234567890, None, None),
    ]
    for i in range(7, 12):
        sales.append((PRODUCTS[i], rng.randint(20, 400), rng.randint(1, 6), rng.randint(1, 99999), None, None))
    for n, (product, stock, limit, cents, starts, ends) in enumerate(sales):
        log.configure(f"cmd-{product}", product, stock, limit, cents, T0 - 1000 + n, starts, ends)

    # A scripted start, so every rejection reason shows up at any log size.
    # Input headers (a client's trace ID) must not leak into outcomes or dead letters.
    trace = [("trace-id", b"eq-trace-1")]
    log.purchase("script-1", "u-script-1", "eq-sku-03", 4, T0, headers=trace)  # accepted: 1 left
    log.purchase("script-2", "u-script-2", "eq-sku-03", 3, T0 + 1)  # insufficient stock
    log.purchase("script-3", "u-script-3", "eq-sku-00", 3, T0 + 2)  # over the limit of 2
    log.purchase("script-4", "u-script-4", "eq-sku-04", 1, T0 + 3)  # sold out (stock 0)
    log.add(b"eq-sku-04", b"traced garbage", "undecodable", headers=trace)
    log.purchase("script-5", "u-script-5", UNKNOWN_PRODUCT, 1, T0 + 4)  # unknown product
    log.purchase("script-6", "u-script-6", "eq-sku-01", 1, T0 + 5)  # not started
    log.purchase("script-7", "u-script-7", "eq-sku-02", 1, at(0.9))  # ended

    dedupe_boundaries(log)

    # Commands later in the log, by position among the purchases.
    later = {
        int(purchases * 0.25): [("cmd-sku-03-more", "eq-sku-03", 30, 5, 10000, None, None, "request")],
        int(purchases * 0.40): [("cmd-sku-00-shrink", "eq-sku-00", 1, 2, 1999, None, None, "request")],  # refused
        int(purchases * 0.50): [(f"cmd-{LATE_PRODUCT}", LATE_PRODUCT, 150, 3, 4250, None, None, "request")],
        int(purchases * 0.60): [("cmd-sku-06-price", "eq-sku-06", 200, 1, 999, None, None, "request")],
        int(purchases * 0.65): [("cmd-sku-08-evolved", "eq-sku-08", 500, 4, 2500, T0 - 5000, None, "evolved")],
        # The same command ID again, other terms: its first answer, if still remembered.
        int(purchases * 0.70): [("cmd-sku-03-more", "eq-sku-03", 999, 5, 10000, None, None, "request")],
        int(purchases * 0.75): [("cmd-sku-07-closed", "eq-sku-07", 400, 2, 1500, None, at(0.7), "request")],
    }
    bad = log.bad_records()
    bad_at = dict(zip(sorted(rng.sample(range(purchases), len(bad))), bad))

    users = [f"u-{i}" for i in range(max(40, purchases // 40))]
    weights = [14, 8, 8, 6, 5, 8, 7, 6, 6, 6, 6, 6, 4, 5]
    decided = []  # (request_id, product) of purchases so far
    for i in range(purchases):
        for command_id, product, stock, limit, cents, starts, ends, writer in later.get(i, []):
            log.configure(command_id, product, stock, limit, cents, at(i / purchases), starts, ends, writer)
        if i in bad_at:
            key, value, partition, reason = bad_at[i]
            log.add(key, value, reason, partition)
        # Ingress clocks differ: record times are not in log order.
        when = T0 + i * 120 + rng.randint(-2000, 2000)
        quantity = rng.choices([1, 2, 3, 4, 6], [60, 25, 10, 3, 2])[0]
        user = rng.choice(users)
        product = rng.choices(PRODUCTS, weights)[0]
        request_id = f"req-{i}"
        roll = rng.random()
        if decided and roll < 0.06:
            # A repeated request ID: mostly a near one (still remembered),
            # some far (forgotten by count), some on another product.
            near = rng.random() < 0.7
            request_id, product = rng.choice(decided[-30:] if near else decided)
            if rng.random() < 0.15:
                product = rng.choice(PRODUCTS)
            if rng.random() < 0.5:
                quantity = rng.choice([1, 2, 5])
        writer = "evolved" if 0.06 <= roll < 0.09 else "bare" if 0.09 <= roll < 0.11 else "request"
        log.purchase(request_id, user, product, quantity, when, writer)
        decided.append((request_id, product))

    # A late tail, a day and an hour later in record time: every partition
    # that sees it forgets the earlier IDs by time, so recent repeats are
    # decided afresh, and the ended sales stay ended.
    late = T0 + 25 * HOUR_MS
    for j in range(40):
        if j % 2 == 0:
            request_id, product = rng.choice(decided[-100:])
        else:
            request_id, product = f"late-{j}", rng.choice(PRODUCTS)
        log.purchase(request_id, rng.choice(users), product, 1, late + j * 1000)
    return log.records


# -------------------------------------------------------------- the run


def run_admin(topics: dict):
    env = {
        **os.environ,
        "FLASHSALE_BROKERS": BROKERS,
        "FLASHSALE_PARTITIONS": str(PARTITIONS),
        "FLASHSALE_REQUESTS_TOPIC": topics["requests"],
        "FLASHSALE_OUTCOMES_TOPIC": topics["outcomes"],
        "FLASHSALE_DEAD_LETTER_TOPIC": topics["dead-letter"],
        "FLASHSALE_SNAPSHOTS_TOPIC": topics["snapshots"],
    }
    done = subprocess.run(
        [str(BIN_DIR / "flashsale-admin"), "create-topics"], env=env, capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        pytest.fail(f"flashsale-admin create-topics failed:\n{done.stdout}\n{done.stderr}")


def topic_env(topics: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "FLASHSALE_METRICS_LISTEN"}
    env.update(
        FLASHSALE_BROKERS=BROKERS,
        FLASHSALE_SCHEMA_REGISTRY_URL=REGISTRY,
        FLASHSALE_REQUESTS_TOPIC=topics["requests"],
        FLASHSALE_OUTCOMES_TOPIC=topics["outcomes"],
        FLASHSALE_DEAD_LETTER_TOPIC=topics["dead-letter"],
        FLASHSALE_SNAPSHOTS_TOPIC=topics["snapshots"],
        FLASHSALE_DEDUPE_ENTRIES_MAX=str(DEDUPE_ENTRIES_MAX),
        FLASHSALE_DEDUPE_WINDOW_MS=str(DEDUPE_WINDOW_MS),
        NO_COLOR="1",
    )
    return env


def log_tail(path: pathlib.Path, lines=40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} unreadable)"


class Processes:
    """The two processors under test; stopped by SIGTERM (then KILL) whatever happens."""

    def __init__(self):
        self.procs = {}

    def start(self, name, cmd, env, log_path):
        log_path.parent.mkdir(parents=True, exist_ok=True)
        out = open(log_path, "w")
        self.procs[name] = (subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT), out,
                            log_path)

    def alive(self, name):
        return self.procs[name][0].poll() is None

    def stop(self, name, timeout=45):
        """SIGTERM, wait, KILL: the exit status (None when it had to be killed)."""
        proc, out, _ = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
                out.close()
                return None
        out.close()
        return proc.returncode

    def stop_all(self):
        for name in list(self.procs):
            self.stop(name)


@pytest.fixture(scope="module")
def stack():
    """The broker and the registry answer, and our binaries exist: fail (not skip) otherwise."""
    try:
        assert requests.get(f"{REGISTRY}/subjects", timeout=5).status_code == 200
    except (requests.RequestException, AssertionError) as err:
        pytest.fail(f"the schema registry at {REGISTRY} does not answer ({err}): run dev/up")
    try:
        AdminClient({"bootstrap.servers": BROKERS}).list_topics(timeout=10)
    except KafkaException as err:
        pytest.fail(f"the broker at {BROKERS} does not answer ({err}): run dev/up")
    for binary in ("flashsale-processor", "flashsale-admin"):
        if not (BIN_DIR / binary).is_file():
            pytest.fail(f"{BIN_DIR / binary} is missing: build the workspace (dev/up)")


@pytest.fixture(scope="module")
def peer_built(stack):
    """dev/peer build (installs Java/Maven when missing). Skipped, loudly, only
    on a machine that has neither and cannot install them."""
    can_install = shutil.which("apt-get") is not None and (os.geteuid() == 0 or shutil.which("sudo"))
    if not (shutil.which("java") and shutil.which("mvn")) and not can_install:
        print("\n*** SKIPPING the peer equivalence test: no Java/Maven and no way to install them ***\n")
        pytest.skip("Java 17 and Maven are not available and cannot be installed here")
    started = time.monotonic()
    built = subprocess.run([str(ROOT / "dev" / "peer"), "build"], capture_output=True, text=True, timeout=900)
    assert built.returncode == 0, f"dev/peer build failed:\n{built.stdout}\n{built.stderr}"
    return time.monotonic() - started


@pytest.fixture
def scratch(stack):
    """Scratch names for one run, and the deletion of everything they name afterwards."""
    prefix = f"peer-eq-{uuid.uuid4().hex[:10]}"
    sides = {
        side: {t: f"{prefix}.{side}.{t}" for t in ("requests", "outcomes", "dead-letter", "snapshots")}
        for side in ("ours", "peer")
    }
    names = {
        "prefix": prefix,
        "sides": sides,
        "group": f"{prefix}-ours",
        "application_id": f"{prefix}-peer",
        # Under .dev/peer-state (gitignored), not /tmp, which the OS may clean under a running peer.
        "state_dir": str(ROOT / ".dev" / "peer-state" / prefix),
        "processes": Processes(),
    }
    try:
        yield names
    finally:
        names["processes"].stop_all()
        admin = AdminClient({"bootstrap.servers": BROKERS})
        existing = admin.list_topics(timeout=10).topics
        # Ours and the peer's topics, and the peer's changelogs (<application.id>-<store>-changelog).
        doomed = [t for t in existing if t.startswith(prefix)]
        if doomed:
            for future in admin.delete_topics(doomed, operation_timeout=30).values():
                try:
                    future.result(60)
                except KafkaException:
                    pass
        # A group whose last member has only just left may not be empty yet: a few tries.
        groups = [names["group"], names["application_id"]]
        for _ in range(10):
            failed = []
            for group, future in admin.delete_consumer_groups(groups, request_timeout=30).items():
                try:
                    future.result(60)
                except KafkaException as err:
                    if err.args[0].code() != KafkaError.GROUP_ID_NOT_FOUND:
                        failed.append(group)
            if not failed:
                break
            groups = failed
            time.sleep(1)
        RegistryClient().delete_subjects(prefix)
        shutil.rmtree(names["state_dir"], ignore_errors=True)


def produce_twice(records, sides) -> dict:
    """Produces the log to both requests topics; returns each record's
    (partition, offset), checked equal on both."""
    producer = Producer(
        {
            "bootstrap.servers": BROKERS,
            "enable.idempotence": True,  # no duplicates or reordering from retries
            "acks": "all",
            "linger.ms": 5,
        }
    )
    delivered = {}
    errors = []

    def report(index, side):
        def on_delivery(err, msg):
            if err is not None:
                errors.append((index, side, err))
            else:
                delivered[(index, side)] = (msg.partition(), msg.offset())

        return on_delivery

    for index, (key, value, partition, timestamp, _, headers) in enumerate(records):
        for side in ("ours", "peer"):
            while True:
                try:
                    producer.produce(
                        sides[side]["requests"], key=key, value=value, partition=partition,
                        timestamp=timestamp, headers=headers, on_delivery=report(index, side),
                    )
                    break
                except BufferError:
                    producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0, "records still unsent after 60 s"
    assert not errors, errors[:5]
    positions = {}
    for index in range(len(records)):
        ours, peer = delivered[(index, "ours")], delivered[(index, "peer")]
        assert ours == peer, f"record {index} is at {ours} in ours' log but {peer} in the peer's"
        positions[index] = ours
    return positions


class Answers:
    """Reads both sides' outcome and dead-letter topics.

    Dead letters name their exact source position. Outcomes do not: a
    repeated request ID is answered with the original outcome, which names
    the original's offset. But an outcome is keyed by its product, which
    hashes to the partition its input came from (both topics have 8
    partitions), so outcomes partition p holds the answers to the decided
    records of requests partition p, in log order: the n-th outcome there
    answers the n-th record of partition p that was not dead-lettered."""

    def __init__(self, sides, registry):
        self.registry = registry
        self.by_topic = {}
        for side, topics in sides.items():
            self.by_topic[topics["outcomes"]] = (side, "outcome")
            self.by_topic[topics["dead-letter"]] = (side, "dead_letter")
        # side -> outcomes partition -> [answer, in log order]
        self.outcomes = {side: {p: [] for p in range(PARTITIONS)} for side in sides}
        # side -> (source partition, source offset) -> [answer]
        self.dead_letters = {side: {} for side in sides}
        self.consumer = Consumer(
            {
                "bootstrap.servers": BROKERS,
                "group.id": f"peer-eq-reader-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",  # only what the peer's transactions committed
                "auto.offset.reset": "earliest",
            }
        )
        self.consumer.assign([TopicPartition(t, p, 0) for t in self.by_topic for p in range(PARTITIONS)])

    def poll(self, seconds):
        """Reads for up to `seconds`, returning early once nothing more comes."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            msgs = self.consumer.consume(1000, 0.2)
            for msg in msgs:
                if msg.error():
                    continue
                side, kind = self.by_topic[msg.topic()]
                schema_id, value = self.registry.decode(msg.value())
                answer = {
                    "key": msg.key(),
                    "partition": msg.partition(),
                    "schema_id": schema_id,
                    "body": msg.value()[5:],
                    "value": value,
                    "headers": list(msg.headers() or []),
                }
                if kind == "outcome":
                    self.outcomes[side][msg.partition()].append(answer)
                else:
                    position = (value["source_partition"], value["source_offset"])
                    self.dead_letters[side].setdefault(position, []).append(answer)
            if not msgs:
                return

    def complete(self, side, per_partition) -> bool:
        """Whether every record of every partition has an answer (or more)."""
        dead = {}
        for p, _ in self.dead_letters[side]:
            dead[p] = dead.get(p, 0) + 1
        return all(len(self.outcomes[side][p]) + dead.get(p, 0) >= n for p, n in per_partition.items())

    def by_position(self, side, expected) -> dict:
        """(partition, offset) -> the one answer to that record, kind and all."""
        answers = {pos: ("dead_letter", found[0]) for pos, found in self.dead_letters[side].items()}
        for p in range(PARTITIONS):
            decided = sorted(pos for pos in expected if pos[0] == p and pos not in self.dead_letters[side])
            for pos, answer in zip(decided, self.outcomes[side][p]):
                answers[pos] = ("outcome", answer)
        return answers

    def close(self):
        self.consumer.close()


def differences(a: dict, b: dict, keys=None):
    keys = keys or sorted(set(a) | set(b))
    return {k: (a.get(k), b.get(k)) for k in keys if a.get(k) != b.get(k)}


def test_peer_decides_like_our_processor(peer_built, scratch):
    registry = RegistryClient()
    sides = scratch["sides"]
    prefix = scratch["prefix"]
    timings = {"peer build (s)": round(peer_built, 1)}

    for topics in sides.values():
        run_admin(topics)
    # The request schema under both requests subjects (one content, so one ID:
    # the two logs hold the same bytes), and the other writers' schemas.
    ids = {side: registry.register(f"{topics['requests']}-value", REQUEST_SCHEMA_TEXT)
           for side, topics in sides.items()}
    assert ids["ours"] == ids["peer"], f"the registry gave the same schema two IDs: {ids}"
    ids = {
        "request": ids["ours"],
        "evolved": registry.register(f"{prefix}.evolved-value", json.dumps(EVOLVED)),
        "bare": registry.register(f"{prefix}.bare-value", json.dumps(BARE)),
        "refund": registry.register(f"{prefix}.refund-value", json.dumps(REFUND)),
    }

    records = build_log(ids, PURCHASES)
    started = time.monotonic()
    positions = produce_twice(records, sides)
    timings["produce both logs (s)"] = round(time.monotonic() - started, 1)
    expected = {positions[i]: r[4] for i, r in enumerate(records)}
    per_partition = {}
    for p, _ in expected:
        per_partition[p] = per_partition.get(p, 0) + 1
    assert len(per_partition) >= 6, f"the log covers only partitions {sorted(per_partition)}"

    answers = Answers(sides, registry)
    procs = scratch["processes"]
    ours_env = topic_env(sides["ours"])
    ours_env.update(FLASHSALE_PROCESSOR_GROUP=scratch["group"], FLASHSALE_INSTANCE_ID=scratch["group"])
    peer_env = topic_env(sides["peer"])
    peer_env.update(
        FLASHSALE_PEER_APPLICATION_ID=scratch["application_id"],
        FLASHSALE_PEER_STATE_DIR=scratch["state_dir"],
        FLASHSALE_PEER_GUARANTEE=GUARANTEE,
    )
    started = time.monotonic()
    procs.start("ours", [str(BIN_DIR / "flashsale-processor")], ours_env, LOGS / "peer-eq-ours.log")
    procs.start("peer", [str(ROOT / "dev" / "peer"), "run"], peer_env, LOGS / "peer-eq-peer.log")

    # Bounded: generous for a 2-core machine running the whole stack.
    deadline = started + 180 + len(records) * 0.05
    done_at = {}
    try:
        while len(done_at) < 2 and time.monotonic() < deadline:
            answers.poll(1.0)
            for side in sides:
                if side not in done_at and answers.complete(side, per_partition):
                    done_at[side] = round(time.monotonic() - started, 1)
                if side not in done_at and not procs.alive(side):
                    pytest.fail(f"{side} exited early:\n{log_tail(procs.procs[side][2])}")
        for side in sides:
            if side not in done_at:
                got = sum(map(len, answers.outcomes[side].values())) + len(answers.dead_letters[side])
                pytest.fail(f"{side} answered {got} of {len(expected)} records in time\n"
                            f"{log_tail(procs.procs[side][2])}")
        # Late duplicates would arrive now, if there were any.
        answers.poll(3.0)
    finally:
        answers.close()
    timings.update({f"{side}: all {len(records)} records answered (s)": t for side, t in done_at.items()})
    stopped = {side: procs.stop(side) for side in sides}

    problems = compare(expected, per_partition, answers, sides)
    ours = answers.by_position("ours", expected)
    print(f"\npeer equivalence: {PURCHASES} purchases, {len(records)} records, peer {GUARANTEE}")
    for k, v in {**timings, **describe(ours)}.items():
        print(f"  {k}: {v}")
    assert not problems, f"{len(problems)} differences, the first ones:\n" + "\n".join(problems[:25])
    assert stopped == {"ours": 0, "peer": 0}, f"exit statuses after SIGTERM: {stopped}"
    check_coverage(ours, expected)


def compare(expected, per_partition, answers, sides) -> list:
    """Every difference between the two sides, and every departure from one
    answer per record, as readable lines."""
    problems = []
    for side in sides:
        for position, found in answers.dead_letters[side].items():
            if position not in expected:
                problems.append(f"{side}: a dead letter for {position}, which is not in the log")
            if len(found) != 1:
                problems.append(f"{side}: {len(found)} dead letters for {position}")
        for p, n in per_partition.items():
            dead = sum(pos[0] == p for pos in answers.dead_letters[side])
            if len(answers.outcomes[side][p]) + dead != n:
                problems.append(f"{side}: partition {p} has {n} records but {len(answers.outcomes[side][p])} "
                                f"outcomes and {dead} dead letters")
    if problems:
        return problems  # the positions below would not line up

    ours, peer = answers.by_position("ours", expected), answers.by_position("peer", expected)
    for position in sorted(expected):
        (kind_a, a), (kind_b, b) = ours[position], peer[position]
        want = expected[position]
        got = "decide" if kind_a == "outcome" else a["value"]["reason"]
        if got != want:
            # Not a difference between the two, but the log is not what it was meant to be.
            problems.append(f"ours answered {position} with {got}; the log meant {want}")
        if kind_a != kind_b:
            problems.append(f"{position}: ours gave {'an outcome' if kind_a == 'outcome' else 'a dead letter'}, "
                            f"the peer {'an outcome' if kind_b == 'outcome' else 'a dead letter'}")
        elif kind_a == "outcome":
            problems += outcome_differences(position, a, b, answers.registry)
        else:
            problems += dead_letter_differences(position, a, b, sides)
    return problems


def outcome_differences(position, a, b, registry) -> list:
    problems = []
    diff = differences(a["value"], b["value"])
    if diff:
        problems.append(f"{position}: outcome fields differ (ours, peer): {diff}")
    elif a["body"] != b["body"]:
        problems.append(f"{position}: same fields but different Avro bytes: {a['body']!r} {b['body']!r}")
    if a["headers"] or b["headers"]:
        problems.append(f"{position}: outcomes with headers: {a['headers']} {b['headers']}")
    if (a["key"], a["partition"]) != (b["key"], b["partition"]):
        problems.append(f"{position}: outcome key/partition differ: {a['key'], a['partition']} "
                        f"{b['key'], b['partition']}")
    # IDs may differ between registries' subjects; the schemas they name may not.
    if registry.reader(a["schema_id"])[0] != registry.reader(b["schema_id"])[0]:
        problems.append(f"{position}: outcome schemas differ: ids {a['schema_id']} {b['schema_id']}")
    return problems


def dead_letter_differences(position, a, b, sides) -> list:
    problems = []
    # detail: operator text quoting each side's Avro library; source_topic:
    # each names its own requests topic (checked just below).
    fields = ["reason", "source_partition", "source_offset", "source_timestamp", "key", "value"]
    diff = differences(a["value"], b["value"], fields)
    if diff:
        problems.append(f"{position}: dead-letter fields differ (ours, peer): {diff}")
    headers = []
    for side, answer in (("ours", a), ("peer", b)):
        if answer["value"]["source_topic"] != sides[side]["requests"]:
            problems.append(f"{position}: {side}'s dead letter names topic {answer['value']['source_topic']}")
        h = dict(answer["headers"])
        if h.pop("flashsale.dlq.source.topic", None) != sides[side]["requests"].encode():
            problems.append(f"{position}: {side}'s source.topic header does not name its requests topic")
        headers.append(h)
    if headers[0] != headers[1]:
        problems.append(f"{position}: dead-letter headers differ: {headers[0]} {headers[1]}")
    if a["key"] != b["key"]:
        problems.append(f"{position}: dead-letter record keys differ: {a['key']!r} {b['key']!r}")
    if a["key"] is not None and a["partition"] != b["partition"]:
        problems.append(f"{position}: dead letters on partitions {a['partition']} and {b['partition']}")
    return problems


def describe(answers) -> dict:
    """What the log made the processors do (ours' answers; the peer's are equal when the test passes)."""
    counts = {}
    for kind, answer in answers.values():
        v = answer["value"]
        if kind == "outcome":
            key = f"{v['kind']} {v['status']}" + (f" {v['reason']}" if v["reason"] else "")
        else:
            key = f"dead letter {v['reason']}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def check_coverage(answers, expected):
    """The log exercised what the docstring says: otherwise equality proves little."""
    outcomes = {pos: a["value"] for pos, (kind, a) in answers.items() if kind == "outcome"}
    reasons = {o["reason"] for o in outcomes.values()}
    # INVALID_QUANTITY never comes out of a decision: such records are
    # dead-lettered as invalid_content first (classify.rs).
    for reason in ("SOLD_OUT", "INSUFFICIENT_STOCK", "LIMIT_EXCEEDED", "NOT_STARTED", "ENDED",
                   "UNKNOWN_PRODUCT", "INVALID_SALE"):
        assert reason in reasons, f"no outcome was rejected {reason}"
    assert sum(o["status"] == "ACCEPTED" and o["kind"] == "PURCHASE" for o in outcomes.values()) > 50
    dead = {a["value"]["reason"] for kind, a in answers.values() if kind == "dead_letter"}
    assert dead == {"undecodable", "unknown_schema", "invalid_content", "key_mismatch", "wrong_partition"}, dead
    # Each outcome answers its own position, or (a repeat answered from the
    # dedupe memory) names an earlier record with the same request ID.
    remembered = 0
    for (p, offset), o in outcomes.items():
        assert o["source_partition"] == p, f"the outcome for {(p, offset)} names partition {o['source_partition']}"
        if o["source_offset"] != offset:
            original = outcomes.get((p, o["source_offset"]))
            assert original == o, f"the outcome for {(p, offset)} is not the one of {(p, o['source_offset'])}"
            remembered += 1
    # Repeats decided afresh: one request ID decided at two offsets of a partition.
    decided_at = {}
    for (p, offset), o in outcomes.items():
        if o["source_offset"] == offset:
            decided_at.setdefault((p, o["request_id"]), []).append(offset)
    redecided = sum(len(offsets) > 1 for offsets in decided_at.values())
    assert remembered >= 10, f"only {remembered} repeats were answered from the dedupe memory"
    assert redecided >= 5, f"only {redecided} request IDs were forgotten and decided again"
