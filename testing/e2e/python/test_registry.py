"""confluent-kafka's Schema Registry client against the registry the stack runs.

The local stack runs Apicurio Registry through its Confluent-compatible API
(FLASHSALE_SCHEMA_REGISTRY_URL ends in /apis/ccompat/v7); production may run
a Confluent Schema Registry. These tests prove that the Python side of the
pipeline (SchemaRegistryClient, AvroSerializer, AvroDeserializer) works
against it for the shapes we use: a top-level union of named records as a
topic's value schema, its backward-compatible evolution, refusal of a
breaking change, and the raw HTTP surface curl and kcat use.

Runs against the local stack from dev/up (dev/test exports its endpoints).
Subject names carry a random suffix so the shared registry is never
disturbed.
"""

import json
import os
import uuid

import pytest
import requests

pytest.importorskip("confluent_kafka.schema_registry", reason="needs e2e/python/requirements.txt installed")

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient  # noqa: E402
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer  # noqa: E402
from confluent_kafka.schema_registry.error import SchemaRegistryError  # noqa: E402
from confluent_kafka.serialization import MessageField, SerializationContext  # noqa: E402

CONTENT_TYPE_V1 = "application/vnd.schemaregistry.v1+json"


REGISTRY = os.environ.get("FLASHSALE_SCHEMA_REGISTRY_URL", "http://127.0.0.1:18081/apis/ccompat/v7").rstrip("/")


@pytest.fixture(scope="module")
def registry_url():
    """URL of the stack's registry; fails (not skips) when it does not answer."""
    try:
        answer = requests.get(f"{REGISTRY}/subjects", timeout=5)
    except requests.RequestException as err:
        pytest.fail(f"the schema registry at {REGISTRY} does not answer ({err}): run dev/up")
    assert answer.status_code == 200, answer.text
    return REGISTRY


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
    """With the subject at BACKWARD (what the services set on theirs), v2
    (optional field) registers as version 2 with a new id and reads v1 data;
    test_compatibility and registration both refuse breaking changes (409);
    set_compatibility(NONE) on the subject lets them through."""
    subject = f"{topic}-value"
    ctx = SerializationContext(topic, MessageField.VALUE)
    v1_data = AvroSerializer(client, V1)(PURCHASE, ctx)
    v1_id = client.get_latest_version(subject).schema_id
    # Not left to the registry's default: Confluent's is BACKWARD, Apicurio's
    # is no rule (dev/registry/registry.properties says why it stays so).
    client.set_compatibility(subject_name=subject, level="BACKWARD")
    assert client.get_compatibility(subject) == "BACKWARD"

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
    HTTP surface (the Confluent content type, GET by id) answers what curl
    and kcat users send and expect."""
    with pytest.raises(SchemaRegistryError) as err:
        client.get_latest_version(f"{topic}-missing")
    assert (err.value.http_status_code, err.value.error_code) == (404, 40401)
    with pytest.raises(SchemaRegistryError) as err:
        client.register_schema(f"{topic}-value", Schema('{"type": "nope"}', "AVRO"))
    assert (err.value.http_status_code, err.value.error_code) == (422, 42201)

    res = requests.post(
        f"{registry_url}/subjects/{topic}-raw/versions",
        data=json.dumps({"schema": '"string"'}),
        # Apicurio answers 415 to application/octet-stream, which a Confluent
        # registry accepts: README, "Schema registry", says so.
        headers={"Content-Type": CONTENT_TYPE_V1},
        timeout=5,
    )
    # Confluent answers with its own media type, Apicurio with plain JSON;
    # clients (and jq) take either.
    assert res.status_code == 200, res.text
    assert res.headers["Content-Type"].split(";")[0] in (CONTENT_TYPE_V1, "application/json")
    schema_id = res.json()["id"]
    by_id = requests.get(f"{registry_url}/schemas/ids/{schema_id}", timeout=5)
    # Apicurio adds "schemaType": "AVRO" and "references": [], which a
    # Confluent registry leaves out for Avro; the schema itself is the same.
    assert by_id.json()["schema"] == '"string"'
    assert by_id.json().get("schemaType", "AVRO") == "AVRO"
    assert any(v.subject == f"{topic}-raw" for v in client.get_schema_versions(schema_id))
    assert client.delete_subject(f"{topic}-raw") == [1]
