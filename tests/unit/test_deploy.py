"""The Docker deployment, validated without Docker: the compose file, the worker image,
Prometheus's scrape targets and the Grafana dashboard must agree with the code."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from prometheus_client import CollectorRegistry

from config import Settings
from pe.common.metrics import Metrics
from pe.registry import pe_specs
from pipelines.cli import _parser
from pipelines.kafka.dist import kafka_version
from pipelines.kafka.node import BROKER_DEFAULTS
from pipelines.topology import load_topology

ROOT = Path(__file__).parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
WORKERS = {name: svc for name, svc in SERVICES.items() if svc.get("build")}
PROMETHEUS = yaml.safe_load((ROOT / "deploy/prometheus.yml").read_text())
DASHBOARD = orjson.loads((ROOT / "deploy/grafana/dashboards/crowdstream.json").read_bytes())
#: PEs whose state is one per pipeline: exactly one replica may run them.
SINGLETONS = {spec.name for spec in pe_specs() if spec.singleton}


def _families() -> dict[str, set[str]]:
    """Every metric sample name crowdstream exposes -> its label names."""
    registry = CollectorRegistry()
    metrics = Metrics.create(registry)
    names: dict[str, set[str]] = {}
    for field in vars(metrics).values():
        labels = {"pipeline", *field._labelnames}  # noqa: SLF001
        base = field._name  # noqa: SLF001
        kind = field._type  # noqa: SLF001
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
        for suffix in suffixes.get(kind, [""]):
            names[base + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return names


def _pes(service: dict[str, Any]) -> list[str]:
    args = _parser().parse_args(service["command"])
    assert args.command == "up"
    return list(args.pe)


def test_kafka_runs_in_kraft_mode_from_a_pinned_official_image() -> None:
    kafka = SERVICES["kafka"]
    image, _, tag = kafka["image"].partition(":")
    assert image == "apache/kafka" and re.fullmatch(r"\d+\.\d+\.\d+", tag)
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "zookeeper" not in yaml.safe_dump(kafka).lower()


def test_compose_runs_the_kafka_release_and_broker_settings_of_the_tests() -> None:
    """The embedded broker, every integration test and compose run one Kafka."""
    kafka = SERVICES["kafka"]
    assert kafka["image"] == f"apache/kafka:{kafka_version()}"
    env = kafka["environment"]
    for key, value in BROKER_DEFAULTS.items():
        # The image maps KAFKA_A_B_C to a.b.c.
        assert str(env["KAFKA_" + key.upper().replace(".", "_")]) == value, key


def test_compose_workers_create_topics_with_the_default_retention() -> None:
    """Compose sets no topic setting of its own: its workers declare the topics with
    the same defaults as the tests' workers."""
    for service in WORKERS.values():
        names = set(service["environment"])
        assert not names & {"CROWDSTREAM_RETENTION_MS", "CROWDSTREAM_RETENTION_BYTES"}
    for name, service in SERVICES.items():
        if "image" in service and name not in WORKERS:
            assert not service["image"].endswith(":latest") and ":" in service["image"], name


def test_worker_services_cover_the_pipeline_and_singletons_run_once() -> None:
    topology = load_topology("crisis")
    groups = {name: _pes(service) for name, service in WORKERS.items()}
    covered = [pe for pes in groups.values() for pe in pes]
    assert sorted(set(covered)) == sorted(topology.pes)
    for pe in SINGLETONS:
        assert covered.count(pe) == 1, pe
    # The scalable group holds no singleton; the others are not meant to be scaled.
    scalable = [name for name, pes in groups.items() if not SINGLETONS & set(pes)]
    assert scalable == ["stream"]
    assert "-" in WORKERS["stream"]["ports"][0].split(":")[0]  # a host port per replica


def test_worker_environment_names_real_settings_and_requires_a_model_key() -> None:
    fields = set(Settings.model_fields)
    for name, service in WORKERS.items():
        env = service["environment"]
        for key in env:
            assert key.startswith("CROWDSTREAM_"), (name, key)
            assert key.removeprefix("CROWDSTREAM_").lower() in fields, (name, key)
        assert env["CROWDSTREAM_BROKER"] == "kafka://kafka:9092"
        assert ":?" in env["CROWDSTREAM_MODEL_KEY"]  # compose refuses to start without it
        assert service["depends_on"]["kafka"]["condition"] == "service_healthy"
        assert "/healthz" in " ".join(service["healthcheck"]["test"])


def test_workers_with_operator_endpoints_require_an_operator_token() -> None:
    """The jobs API and the crowd's operator calls are refused on a worker that
    listens beyond loopback without a token: compose must not start it so."""
    for name, service in WORKERS.items():
        if {"jobs", "annotator"} & set(_pes(service)):
            assert service["environment"]["CROWDSTREAM_HTTP_HOST"] == "0.0.0.0"  # noqa: S104
            assert ":?" in service["environment"]["CROWDSTREAM_OPERATOR_TOKEN"], name


def test_grafana_needs_a_sign_in_with_a_password_of_the_operators_choosing() -> None:
    env = SERVICES["grafana"]["environment"]
    assert str(env.get("GF_AUTH_ANONYMOUS_ENABLED", "false")).lower() == "false"
    assert str(env.get("GF_USERS_ALLOW_SIGN_UP", "false")).lower() == "false"
    assert ":?" in env["GF_SECURITY_ADMIN_PASSWORD"]  # no default such as admin


def test_prometheus_scrapes_every_replica_of_every_worker_service() -> None:
    jobs = {job["job_name"]: job for job in PROMETHEUS["scrape_configs"]}
    assert set(jobs) == set(WORKERS)
    for name, service in WORKERS.items():
        (discovery,) = jobs[name]["dns_sd_configs"]
        assert discovery["names"] == [name] and discovery["type"] == "A"
        assert str(discovery["port"]) == service["environment"]["CROWDSTREAM_HTTP_PORT"]


def test_mounted_files_and_image_sources_exist() -> None:
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), (name, source)
    dockerfile = (ROOT / "Dockerfile").read_text()
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source
    assert 'ENTRYPOINT ["crowdstream"]' in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored


def test_grafana_provisions_the_prometheus_datasource_the_dashboard_uses() -> None:
    grafana = SERVICES["grafana"]
    assert not grafana["image"].endswith(":latest")
    sources = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/dashboards/crowdstream.yml").read_text()
    )
    mounted = {v.split(":")[1] for v in grafana["volumes"]}
    assert providers["providers"][0]["options"]["path"] in mounted
    used = {
        target["datasource"]["uid"]
        for panel in DASHBOARD["panels"]
        for target in panel.get("targets", [])
    }
    assert used == {source["uid"]}


def _exprs() -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in DASHBOARD["panels"]
        for target in panel.get("targets", [])
    ]


def test_dashboard_json_has_grafanas_shape() -> None:
    for key in ("uid", "title", "panels", "schemaVersion", "templating", "time"):
        assert key in DASHBOARD, key
    ids = [panel["id"] for panel in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    for panel in DASHBOARD["panels"]:
        assert panel["type"] in {"row", "timeseries", "stat"}
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0
        refs = [target["refId"] for target in panel.get("targets", [])]
        assert len(refs) == len(set(refs))
        if panel["type"] != "row":
            assert refs, panel["title"]
    (variable,) = DASHBOARD["templating"]["list"]
    assert variable["name"] == "pipeline"


@pytest.mark.parametrize(("title", "expr"), _exprs())
def test_every_dashboard_query_uses_real_metrics_and_labels(title: str, expr: str) -> None:
    families = _families()
    used = set(re.findall(r"crowdstream_[a-z_]+", expr))
    assert used, title
    for name in used:
        assert name in families, f"{title}: no metric {name}"
    assert '{pipeline=~"$pipeline"}' in expr, title
    for clause in re.findall(r"by \(([^)]*)\)", expr):
        for label in (part.strip() for part in clause.split(",")):
            assert any(label in families[name] for name in used), f"{title}: no label {label}"


def test_dashboard_shows_what_operators_need() -> None:
    text = " ".join(expr for _, expr in _exprs())
    for metric in (
        "crowdstream_items_out_total",  # throughput
        "crowdstream_end_to_end_latency_seconds_bucket",  # latency percentiles
        "crowdstream_items_shed_total",
        "crowdstream_items_rejected_total",
        "crowdstream_consumer_lag",
        "crowdstream_pool_workers",
        "crowdstream_model_auc",
        "crowdstream_jobs",
    ):
        assert metric in text, metric
    assert "histogram_quantile(0.99" in text
