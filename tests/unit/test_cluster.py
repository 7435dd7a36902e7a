"""Cluster connection settings: TLS and SASL options reach every Kafka client."""

from __future__ import annotations

import ssl
from pathlib import Path

import certifi
import faust
import pytest

from channels.topics import TopicPolicy, pipeline_topics
from config import load_settings
from pipelines.app import build_worker
from pipelines.topology import load_topology
from runtime import cluster
from runtime.follower import Follower, Handler


def test_plaintext_by_default() -> None:
    security = load_settings().security()
    assert security.client_options() == {"security_protocol": "PLAINTEXT"}
    assert security.faust_credentials() is None


def test_sasl_over_tls_reaches_aiokafka_and_faust(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CROWDSTREAM_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("CROWDSTREAM_SSL_CAFILE", certifi.where())
    monkeypatch.setenv("CROWDSTREAM_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("CROWDSTREAM_SASL_USERNAME", "crowdstream")
    monkeypatch.setenv("CROWDSTREAM_SASL_PASSWORD", "s3cret")
    settings = load_settings()
    assert "s3cret" not in repr(settings)
    security = settings.security()
    options = security.client_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "crowdstream"
    assert options["sasl_plain_password"] == "s3cret"  # noqa: S105 (a test value)
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    credentials = security.faust_credentials()
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.ssl_context is options["ssl_context"]


def test_tls_only_gives_faust_ssl_credentials() -> None:
    security = cluster.Security(protocol="SSL", cafile=Path(certifi.where()))
    assert security.client_options()["security_protocol"] == "SSL"
    assert isinstance(security.faust_credentials(), faust.SSLCredentials)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"protocol": "SASL_PLAINTEXT", "username": "u"}, "sasl_password"),
        ({"protocol": "SSL", "cafile": Path("/nonexistent/ca.pem")}, "is not a file"),
        ({"protocol": "SSL", "certfile": Path(certifi.where())}, "go together"),
    ],
)
def test_incomplete_security_settings_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cluster.Security(**options)  # type: ignore[arg-type]


def test_retention_applies_to_data_flow_topics_only() -> None:
    topics = pipeline_topics("crisis", 4)
    day, size = 86_400_000, 256 * 1024 * 1024
    policy = TopicPolicy(1, day, size)
    assert topics["items.raw"].configs(policy) == {
        "min.insync.replicas": "1",
        "retention.ms": str(day),
        "retention.bytes": str(size),
        "segment.bytes": str(size // 4),  # the bound holds to within one segment
    }
    assert topics["crowd.labels"].configs(policy) == {
        "min.insync.replicas": "1",
        "retention.ms": "-1",
        "retention.bytes": "-1",
    }
    assert topics["control.models"].configs(policy) == {
        "min.insync.replicas": "1",
        "cleanup.policy": "compact",
    }
    assert topics["items.raw"].configs(TopicPolicy()) == {"min.insync.replicas": "1"}


@pytest.mark.parametrize(("replicas", "in_sync"), [(1, 1), (2, 1), (3, 2), (5, 2)])
def test_writes_wait_for_two_replicas_once_there_are_three(replicas: int, in_sync: int) -> None:
    configs = pipeline_topics("crisis", 4)["crowd.labels"].configs(TopicPolicy(replicas))
    assert configs["min.insync.replicas"] == str(in_sync)


def test_a_worker_hands_its_security_to_faust_and_to_every_client_it_makes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CROWDSTREAM_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("CROWDSTREAM_SSL_CAFILE", certifi.where())
    made: list[cluster.Security] = []

    def follower(
        bootstrap_servers: list[str],
        topic: str,
        handler: Handler,
        *,
        since_ms: int | None = None,
        security: cluster.Security = cluster.PLAINTEXT,
    ) -> Follower:
        made.append(security)
        return Follower(bootstrap_servers, topic, handler, since_ms=since_ms, security=security)

    worker = build_worker(
        load_settings(data_dir=tmp_path),
        load_topology("crisis"),
        embedded=True,
        new_follower=follower,
    )
    assert isinstance(worker.app.conf.broker_credentials, faust.SSLCredentials)
    assert made and {security.protocol for security in made} == {"SSL"}
    assert worker.context.plane.settings.security.protocol == "SSL"
