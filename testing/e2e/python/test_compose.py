"""docker-compose.yml, for users with Docker (no Docker engine runs here).

Proves the file parses, names every service the README promises (Apache
Kafka in KRaft mode and Apicurio Registry at the very versions the local
stack fetches, MySQL 8, Redis 7 and the flashsale services built from the
Dockerfile), gives the long-running ones healthchecks, and configures the
services with the same FLASHSALE_* variables the README documents, pointed
at the compose services.
"""

import pathlib
import re

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[3]


def load():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def pom_property(folder, name):
    """A version pinned in dev/FOLDER/pom.xml, the local stack's source of truth."""
    pom = (ROOT / "dev" / folder / "pom.xml").read_text()
    return re.search(rf"<{re.escape(name)}>([^<]+)</{re.escape(name)}>", pom).group(1)


def env_of(service):
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return env


def test_compose_names_the_stack_and_services():
    services = load()["services"]
    for name in ["kafka", "schema-registry", "mysql", "redis", "processor", "sink-mysql", "sink-redis", "ingress"]:
        assert name in services, name
    assert services["kafka"]["image"] == f"apache/kafka:{pom_property('kafka', 'kafka.version')}"
    registry = services["schema-registry"]["image"]
    assert registry == f"apicurio/apicurio-registry:{pom_property('registry', 'apicurio.version')}"
    assert services["mysql"]["image"].startswith("mysql:8")
    assert services["redis"]["image"].startswith("redis:7")
    for name in ["kafka", "schema-registry", "mysql", "redis", "processor", "sink-mysql", "sink-redis", "ingress"]:
        assert "healthcheck" in services[name], f"{name} has a healthcheck"


def test_services_use_the_readme_variables():
    services = load()["services"]
    for name in ["processor", "sink-mysql", "sink-redis", "ingress"]:
        env = env_of(services[name])
        assert env["FLASHSALE_BROKERS"].startswith("kafka:"), name
        assert env["FLASHSALE_SCHEMA_REGISTRY_URL"].startswith("http://schema-registry:"), name
        assert env["FLASHSALE_SCHEMA_REGISTRY_URL"].endswith("/apis/ccompat/v7"), name
    for name in ["sink-mysql", "ingress"]:
        assert "@mysql:" in env_of(services[name])["FLASHSALE_MYSQL_URL"], name
    for store in ["mysql", "redis"]:
        service = services[f"sink-{store}"]
        chosen = env_of(service).get("FLASHSALE_SINK_STORE") or service["command"][service["command"].index("--store") + 1]
        assert chosen == store
    # The image ships the services and the operator binary, and nothing of
    # the test tooling; every command compose runs is one it ships.
    dockerfile = (ROOT / "Dockerfile").read_text()
    shipped = {"flashsale-processor", "flashsale-sink", "flashsale-ingress", "flashsale-admin"}
    for binary in shipped:
        assert f"target/release/{binary}" in dockerfile, binary
    for tool in ["flashsale-demo", "flashsale-loadgen", "flashsale-bench", "flashsale-baseline", "flashsale-restore-bench"]:
        assert tool not in dockerfile, tool
    ours = {
        name: service["command"][0]
        for name, service in load()["services"].items()
        if service.get("command") and service["command"][0].startswith("flashsale-")
    }
    assert {"processor", "sink-mysql", "sink-redis", "ingress"} <= set(ours), ours
    for name, binary in ours.items():
        assert binary in shipped, (name, binary)
