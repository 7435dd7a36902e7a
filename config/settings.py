"""The settings model.

Sources, strongest first: keyword arguments (command-line flags), ``CROWDSTREAM_*``
environment variables, the YAML file named by ``CROWDSTREAM_CONFIG``, and the
bundled ``config/defaults.yaml``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, get_args

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from channels.topics import TopicPolicy
from pipelines.proxies import TrustedProxies
from runtime.cluster import Security

__all__ = ["DEFAULTS_FILE", "Settings", "load_settings"]

DEFAULTS_FILE = Path(__file__).with_name("defaults.yaml")

#: The built-in crowds; the ``crowd`` setting also takes ``package.module:factory``.
CrowdMode = Literal["simulated", "web", "none"]


class Settings(BaseSettings):
    """Resolved, immutable configuration of one crowdstream process."""

    model_config = SettingsConfigDict(env_prefix="CROWDSTREAM_", frozen=True, extra="forbid")

    broker: str = Field(
        "kafka://localhost:9092",
        description="Broker URL(s), comma separated, `kafka://host:port`. Env: CROWDSTREAM_BROKER.",
    )
    pipeline: str = Field("crisis", description="Pipeline name or topology YAML path.")
    http_host: str = Field("127.0.0.1", description="Address of the worker's HTTP server.")
    http_port: int = Field(8000, ge=0, le=65535, description="Port of the worker's HTTP server.")
    http_read_timeout_s: float = Field(
        30.0,
        gt=0,
        description="How long the HTTP server waits for a new connection's request head "
        "(it is closed after), and for a body (plus a second per 64 KiB; `408` after).",
    )
    http_write_timeout_s: float = Field(
        30.0,
        gt=0,
        description="How long an event stream (results, crowd tasks) waits for its client "
        "to take what it is sent; a client that reads nothing is dropped.",
    )
    trusted_proxies: str = Field(
        "127.0.0.1,::1",
        description="Reverse proxies in front of the HTTP server, comma separated "
        "addresses or networks (10.0.0.0/8): from them, the client address of every "
        "per-client limit is the one Forwarded or X-Forwarded-For names, and they may "
        "hold any number of connections. Default: a proxy on this host (loopback), as "
        "uvicorn and gunicorn trust; empty: the peer's address, always.",
    )
    http_allowed_hosts: str = Field(
        "",
        description="Host names the HTTP server answers to besides IP addresses and "
        "localhost, comma separated; pages served under them may call it too. Unset: any "
        "name on a server that listens beyond loopback, no other on one that listens on "
        "loopback.",
    )
    http_connections_per_client: int = Field(
        64,
        ge=1,
        description="Open HTTP connections allowed per client address; more are "
        "answered `429` and closed. Behind a proxy or NAT, clients share an address.",
    )
    embedded_broker_port: int = Field(9092, ge=1, le=65535)
    embedded_broker_heap_mb: int = Field(
        512, ge=128, le=65536, description="Java heap of the embedded Kafka broker."
    )
    kafka_cache_dir: Path | None = Field(
        None,
        description="Where the Apache Kafka release of the embedded broker is fetched to "
        "(once per version); unset: $XDG_CACHE_HOME/crowdstream (~/.cache/crowdstream).",
    )
    data_dir: Path = Field(
        Path(".crowdstream"),
        description="Local data: the embedded broker's log (`kafka/`) and Faust's files.",
    )
    partitions: int = Field(4, ge=1, le=1024, description="Partitions of every data-flow topic.")
    replication_factor: int = Field(
        1, ge=1, le=16, description="Replication factor of the topics crowdstream creates."
    )
    retention_ms: int | None = Field(
        24 * 3600 * 1000,
        ge=60_000,
        description="Time retention of the data-flow topics crowdstream creates (items.*); "
        "null: the broker's default. Crowd tasks and labels, jobs and their results are "
        "kept forever (they rebuild state and were paid for); control.models and "
        "crowd.pool are compacted.",
    )
    retention_bytes: int | None = Field(
        256 * 1024 * 1024,
        ge=1024 * 1024,
        description="Size retention of each partition of the data-flow topics (items.*); "
        "null: no size bound. With time retention it bounds the disk a long run uses.",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How clients connect to the brokers."
    )
    ssl_cafile: Path | None = Field(
        None, description="CA bundle that signs the brokers' certificates."
    )
    ssl_certfile: Path | None = Field(None, description="Client certificate (mutual TLS).")
    ssl_keyfile: Path | None = Field(None, description="Key of the client certificate.")
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    broker_wait_s: float = Field(
        300.0,
        ge=0,
        description="How long a starting command waits for the broker to answer before it "
        "fails (it retries with backoff and logs each attempt).",
    )
    rebalance_timeout_s: float = Field(
        60.0,
        gt=0,
        description="How long a consumer-group rebalance waits for members to rejoin.",
    )
    fetch_wait_ms: int = Field(
        500,
        ge=1,
        le=10_000,
        description="Longest a consumer fetch waits when no data is there (Kafka answers "
        "as soon as data arrives, so this adds no latency).",
    )
    crowd: str = Field(
        "simulated",
        description="Which crowd the annotator uses: `simulated`, `web` (people in "
        "browsers), `none` (no annotator), or `package.module:factory`, a crowd adapter "
        "of your own (docs/crowd.md).",
    )
    crowd_join: Literal["open", "invite"] = Field(
        "open",
        description="Web crowd: `open` lets anyone with a display name join while the pool "
        "has openings; `invite` needs an invite code from the operator.",
    )
    crowd_token_key: SecretStr | None = Field(
        None,
        min_length=16,
        description="Web crowd: key that signs worker tokens. Unset: a random key per "
        "process, so tokens end when the worker restarts.",
    )
    crowd_token_ttl_s: float = Field(
        12 * 3600,
        ge=60,
        description="Web crowd: lifetime of a worker token (renewed by heartbeats).",
    )
    webhook_secret: SecretStr | None = Field(
        None,
        min_length=16,
        description="Key of the HMAC-SHA256 signature on every webhook (the notifier "
        "PE); needed when the topology lists webhooks.",
    )
    operator_token: SecretStr | None = Field(
        None,
        min_length=16,
        description="Bearer token of the operator endpoints: the jobs API "
        "(`/api/v1/jobs...`) and the web crowd's `/api/v1/operator/...`. Unset: they "
        "answer on a server that listens on loopback only, and are disabled on others.",
    )
    results_token: SecretStr | None = Field(
        None,
        min_length=16,
        description="Bearer token of the results API (`/api/v1/classified...`). Unset: "
        "it answers whoever reaches the worker.",
    )
    results_streams_per_client: int = Field(
        4,
        ge=1,
        description="Result streams one client address may hold open (every worker "
        "holds at most 100).",
    )
    model_key: SecretStr | None = Field(
        None,
        min_length=16,
        description="Key that signs model updates on `control.models` (HMAC-SHA256); "
        "every worker of a pipeline needs the same one. Required, except for a worker "
        "that runs its own embedded broker (`up --embedded`): there a public development "
        "key is used.",
    )
    crowd_rate_per_ip: float = Field(
        20.0,
        gt=0,
        description="Web crowd: requests a second allowed per client address, for calls "
        "without a valid worker token (joins, operator calls, bad tokens).",
    )
    crowd_rate_per_worker: float = Field(
        5.0,
        gt=0,
        description="Web crowd: requests a second allowed per worker (a person answering "
        "as fast as tasks come sends under one a second).",
    )
    log_level: Literal["debug", "info", "warn", "error"] = "info"
    log_format: Literal["text", "json"] = Field(
        "text",
        description="`text` for people, `json` for one object per line with the pipeline, "
        "PE and ids a record is about (pipelines/logs.py).",
    )

    @field_validator("broker")
    @classmethod
    def _check_broker(cls, value: str) -> str:
        for url in value.split(","):
            host_port = url.strip().removeprefix("kafka://")
            host, sep, port = host_port.rpartition(":")
            if not sep or not host or not port.isdigit():
                msg = f"broker URL {url!r} is not of the form kafka://host:port"
                raise ValueError(msg)
        return value

    @field_validator("crowd")
    @classmethod
    def _check_crowd(cls, value: str) -> str:
        if value not in get_args(CrowdMode):
            # Imported here: only a plug-in crowd needs the annotator's modules.
            from pe.annotator.plugin import crowd_factory

            crowd_factory(value)  # a spec that names no callable is refused at start
        return value

    def security(self) -> Security:
        """The TLS/SASL options of this process's Kafka clients (checked here)."""
        password = self.sasl_password.get_secret_value() if self.sasl_password else None
        return Security(
            protocol=self.security_protocol,
            cafile=self.ssl_cafile,
            certfile=self.ssl_certfile,
            keyfile=self.ssl_keyfile,
            sasl_mechanism=self.sasl_mechanism,
            username=self.sasl_username,
            password=password,
        )

    def topic_policy(self) -> TopicPolicy:
        """How the topics crowdstream creates are replicated and kept."""
        return TopicPolicy(self.replication_factor, self.retention_ms, self.retention_bytes)

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: str) -> str:
        TrustedProxies.parse(value)  # a bad entry is refused at start, with its name
        return value

    @property
    def proxies(self) -> TrustedProxies:
        """``trusted_proxies``, parsed."""
        return TrustedProxies.parse(self.trusted_proxies)

    @property
    def allowed_hosts(self) -> frozenset[str]:
        """``http_allowed_hosts`` as a set of names."""
        return frozenset(
            name.strip() for name in self.http_allowed_hosts.split(",") if name.strip()
        )

    @property
    def bootstrap_servers(self) -> list[str]:
        """The broker addresses as ``host:port`` strings for aiokafka."""
        return [url.strip().removeprefix("kafka://") for url in self.broker.split(",")]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        files: list[Path] = [DEFAULTS_FILE]
        user_file = os.environ.get("CROWDSTREAM_CONFIG")
        if user_file:
            path = Path(user_file)
            if not path.is_file():
                msg = f"CROWDSTREAM_CONFIG names {user_file!r}, which is not a file"
                raise FileNotFoundError(msg)
            files.append(path)
        # Later YAML files override earlier ones.
        return (
            init_settings,
            env_settings,
            YamlConfigSettingsSource(settings_cls, yaml_file=files),
        )


def load_settings(**overrides: object) -> Settings:
    """Build settings, dropping overrides that are ``None`` (flags not given)."""
    given = {key: value for key, value in overrides.items() if value is not None}
    return Settings(**given)  # type: ignore[arg-type]  # keys are checked by extra="forbid"
