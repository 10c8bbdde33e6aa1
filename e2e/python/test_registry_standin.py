"""Interop test: confluent-kafka's Schema Registry client against flashsale-dev-registry.

flashsale-dev-registry is a DEVELOPMENT STAND-IN for the Confluent Schema
Registry (production uses the real one). These tests prove that the Python
side of the pipeline (SchemaRegistryClient, AvroSerializer, AvroDeserializer)
works against it for the shapes we use: a top-level union of named records as
a topic's value schema, its backward-compatible evolution, and refusal of a
breaking change. No Kafka broker is needed.

The stand-in is started from the built binary (``cargo build -p
flashsale-dev-registry``; override the path with FLASHSALE_DEV_REGISTRY_BIN)
on a free loopback port with a temporary data dir, so the test is
self-contained. Only when that binary is missing does it fall back to
FLASHSALE_SCHEMA_REGISTRY_URL, if that answers. Subject names carry a random
suffix so a shared registry is never disturbed.
"""

import json
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests

pytest.importorskip("confluent_kafka.schema_registry", reason="needs e2e/python/requirements.txt installed")

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient  # noqa: E402
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer  # noqa: E402
from confluent_kafka.schema_registry.error import SchemaRegistryError  # noqa: E402
from confluent_kafka.serialization import MessageField, SerializationContext  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTENT_TYPE_V1 = "application/vnd.schemaregistry.v1+json"


def _binary() -> Path:
    """Where the built stand-in is expected."""
    override = os.environ.get("FLASHSALE_DEV_REGISTRY_BIN")
    if override:
        return Path(override)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target"))
    if not target.is_absolute():
        target = REPO_ROOT / target
    return target / "debug" / "flashsale-dev-registry"


def _free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        return requests.get(f"{url}/health", timeout=1).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def registry_url(tmp_path_factory):
    """URL of a running stand-in; stops it (SIGTERM) afterwards and checks it exits cleanly."""
    binary = _binary()
    if not binary.exists():
        shared = os.environ.get("FLASHSALE_SCHEMA_REGISTRY_URL", "").rstrip("/")
        if shared and _healthy(shared):
            yield shared
            return
        pytest.fail(f"{binary} is missing: run `cargo build -p flashsale-dev-registry` first")

    url = f"http://127.0.0.1:{_free_port()}"
    data_dir = tmp_path_factory.mktemp("registry-data")
    log_path = data_dir.parent / "registry.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(binary), "--listen", url.removeprefix("http://"), "--data-dir", str(data_dir)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 15
        while not _healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"stand-in did not come up:\n{log_path.read_text()}")
            time.sleep(0.1)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
    # Graceful shutdown: SIGTERM must end the process with status 0.
    assert code == 0, log_path.read_text()
    assert "NOT FOR PRODUCTION" in log_path.read_text()


@pytest.fixture
def client(registry_url):
    return SchemaRegistryClient({"url": registry_url})


@pytest.fixture
def topic():
    """A fresh topic name per test, so subjects never collide."""
    return f"flashsale.requests.test-{uuid.uuid4().hex[:12]}"


CONFIGURE_SALE = {
    "type": "record",
    "name": "ConfigureSale",
    "namespace": "flashsale.v1",
    "fields": [
        {"name": "sale_id", "type": "string"},
        {"name": "stock", "type": "long"},
    ],
}


def purchase_request(extra_fields=(), user_id_type="string"):
    return {
        "type": "record",
        "name": "PurchaseRequest",
        "namespace": "flashsale.v1",
        "fields": [
            {"name": "request_id", "type": "string"},
            {"name": "user_id", "type": user_id_type},
            {"name": "quantity", "type": "int"},
            *extra_fields,
        ],
    }


OPTIONAL_CHANNEL = {"name": "channel", "type": ["null", "string"], "default": None}

# The request topic's value schema: a top-level union of two named records.
V1 = json.dumps([purchase_request(), CONFIGURE_SALE])
# PurchaseRequest gains an optional field: backward compatible.
V2 = json.dumps([purchase_request([OPTIONAL_CHANNEL]), CONFIGURE_SALE])
# PurchaseRequest.user_id changes type: breaks readers of old data.
V3_TYPE_CHANGE = json.dumps([purchase_request([OPTIONAL_CHANNEL], user_id_type="int"), CONFIGURE_SALE])
# PurchaseRequest gains a required field: old data has no value for it.
V3_REQUIRED = json.dumps(
    [purchase_request([OPTIONAL_CHANNEL, {"name": "store", "type": "string"}]), CONFIGURE_SALE]
)

PURCHASE = {"request_id": "r-1", "user_id": "u-42", "quantity": 2}
CONFIGURE = {"sale_id": "sale-7", "stock": 1000}


def test_serializer_registers_union_and_round_trips(client, registry_url, topic):
    """AvroSerializer auto-registers the union under <topic>-value, frames records
    with its id, and AvroDeserializer resolves that id back; both union branches
    survive the round trip."""
    ctx = SerializationContext(topic, MessageField.VALUE)
    serializer = AvroSerializer(client, V1, conf={"auto.register.schemas": True})
    deserializer = AvroDeserializer(client)

    for record in (PURCHASE, CONFIGURE):
        framed = serializer(record, ctx)
        assert framed[0] == 0, "Confluent wire format starts with magic byte 0"
        assert deserializer(framed, ctx) == record

    latest = client.get_latest_version(f"{topic}-value")
    assert latest.version == 1
    assert int.from_bytes(serializer(PURCHASE, ctx)[1:5], "big") == latest.schema_id
    assert json.loads(latest.schema.schema_str) == json.loads(V1)
    # A fresh client (no cache) resolves the id through GET /schemas/ids/{id}.
    fresh = SchemaRegistryClient({"url": registry_url})
    assert json.loads(fresh.get_schema(latest.schema_id).schema_str) == json.loads(V1)
    assert f"{topic}-value" in fresh.get_subjects()


def test_evolution_compatibility_and_refusal(client, topic):
    """v2 (optional field) registers as version 2 with a new id and reads v1 data;
    test_compatibility and registration both refuse breaking changes (409);
    set_compatibility(NONE) on the subject lets them through."""
    subject = f"{topic}-value"
    ctx = SerializationContext(topic, MessageField.VALUE)
    v1_data = AvroSerializer(client, V1)(PURCHASE, ctx)
    v1_id = client.get_latest_version(subject).schema_id

    assert client.test_compatibility(subject, Schema(V2, "AVRO")) is True
    v2_id = client.register_schema(subject, Schema(V2, "AVRO"))
    assert v2_id != v1_id
    # The client caches "latest" from the call above; drop that cache.
    client.clear_latest_caches()
    latest = client.get_latest_version(subject)
    assert (latest.version, latest.schema_id) == (2, v2_id)
    assert client.get_versions(subject) == [1, 2]
    assert client.lookup_schema(subject, Schema(V1, "AVRO")).version == 1

    # A consumer on v2 reads v1 data: the new optional field takes its default.
    reader = AvroDeserializer(client, schema_str=V2)
    assert reader(v1_data, ctx) == {**PURCHASE, "channel": None}

    for breaking in (V3_TYPE_CHANGE, V3_REQUIRED):
        assert client.test_compatibility(subject, Schema(breaking, "AVRO")) is False
        with pytest.raises(SchemaRegistryError) as err:
            client.register_schema(subject, Schema(breaking, "AVRO"))
        assert (err.value.http_status_code, err.value.error_code) == (409, 409)
        assert "incompatible" in err.value.error_message
    assert client.get_versions(subject) == [1, 2]

    client.set_compatibility(subject_name=subject, level="NONE")
    assert client.get_compatibility(subject) == "NONE"
    assert client.test_compatibility(subject, Schema(V3_TYPE_CHANGE, "AVRO")) is True
    assert client.register_schema(subject, Schema(V3_TYPE_CHANGE, "AVRO")) not in (v1_id, v2_id)


def test_errors_and_raw_http(client, registry_url, topic):
    """Confluent error codes reach the client as SchemaRegistryError, and the raw
    HTTP surface (content type, octet-stream bodies) matches what kcat and curl use."""
    with pytest.raises(SchemaRegistryError) as err:
        client.get_latest_version(f"{topic}-missing")
    assert (err.value.http_status_code, err.value.error_code) == (404, 40401)
    with pytest.raises(SchemaRegistryError) as err:
        client.register_schema(f"{topic}-value", Schema('{"type": "nope"}', "AVRO"))
    assert (err.value.http_status_code, err.value.error_code) == (422, 42201)

    res = requests.post(
        f"{registry_url}/subjects/{topic}-raw/versions",
        data=json.dumps({"schema": '"string"'}),
        headers={"Content-Type": "application/octet-stream"},
        timeout=5,
    )
    assert res.status_code == 200 and res.headers["Content-Type"] == CONTENT_TYPE_V1
    schema_id = res.json()["id"]
    by_id = requests.get(f"{registry_url}/schemas/ids/{schema_id}", timeout=5)
    assert by_id.json() == {"schema": '"string"'}
    assert any(v.subject == f"{topic}-raw" for v in client.get_schema_versions(schema_id))
    assert client.delete_subject(f"{topic}-raw") == [1]
