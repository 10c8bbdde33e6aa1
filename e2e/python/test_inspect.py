"""dev/inspect, the local stand-in for `kcat -s value=avro -r …` that the
README's "Inspecting topics" section documents: proves it prints records
of a real topic as JSON lines, Avro-decoded through the registry, with keys
and headers, after a purchase went through the running pipeline."""

import json
import os
import pathlib
import subprocess
import uuid

import requests

ROOT = pathlib.Path(__file__).resolve().parents[2]
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
