"""vitalflow's configuration: one settings object, read once from the environment and `.env`.

Every variable in DESIGN.md has a field here; the CLI maps each to a flag of the same name.
A secret can also come from a file named like its variable in a secrets directory (a
Kubernetes secret volume, say): flags win over the environment, the environment over `.env`,
`.env` over secret files. A rejected value is never echoed (it may be a secret), and a URL
only without its password. A `VITALFLOW_*` name that is no setting (a typo) is reported.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from difflib import get_close_matches
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import dotenv_values
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "CLI_VARIABLES",
    "DEFAULT_SECRETS_DIR",
    "Settings",
    "describe_errors",
    "unknown_variables",
    "vitalflow_variables",
    "without_password",
]

# Read by the CLI itself, before the settings: how to log, and where the secret files are.
CLI_VARIABLES = ("VITALFLOW_LOG_FORMAT", "VITALFLOW_SECRETS_DIR")
# Used when it exists and no other directory is given (`--secrets-dir`, VITALFLOW_SECRETS_DIR).
DEFAULT_SECRETS_DIR = Path("/run/secrets/vitalflow")
# Names of other programs that share the prefix: deploy/local's scripts and the test suite.
_OTHER_PROGRAMS = ("VITALFLOW_LOCAL_", "VITALFLOW_TEST_", "VITALFLOW_PYTHON")

DEFAULT_TOPICS = "ESP32_BLE_GW_TX,dusun_pub,iMEDE_watch/#,CM4_BLE_GW_TX"


class Settings(BaseSettings):
    """Everything vitalflow can be told, with the defaults of DESIGN.md."""

    model_config = SettingsConfigDict(
        env_prefix="VITALFLOW_",
        env_file=".env",
        extra="ignore",
        populate_by_name=True,
        # A rejected value may be a secret: errors name the setting, never echo its value.
        hide_input_in_errors=True,
    )

    mqtt_url: str = "mqtt://127.0.0.1:1883"
    mqtt_topics: str = DEFAULT_TOPICS
    mqtt_qos: int = Field(default=1, ge=0, le=2)
    mqtt_client_id: str = "vitalflow"
    mqtt_share_group: str = "vitalflow"
    # MQTT clients (a shared subscription), and Kafka writers per topic, over the whole
    # cluster: fixed for the life of the recovery data, at least the most processes it will run.
    mqtt_partitions: int = Field(default=1, ge=1)
    mqtt_inbox_size: int = Field(default=20_000, ge=1)
    # Most messages the flow takes from the inbox at a time (Bytewax's batch).
    mqtt_batch_size: int = Field(default=1000, ge=1)
    # How soon the worker polls the inbox again after finding it empty, while messages came
    # within the last second (idle: 20 ms). Shorter waits less, wakes the worker more
    # (connectors.poll_pace: at 100 msg/s, 2 ms: publish -> stored p50 3 ms, 42 % of a core;
    # 20 ms: 14 ms, 34 %).
    mqtt_busy_poll_ms: float = Field(default=2.0, gt=0, le=1000)
    # Received payload bytes waiting for the flow; with the count above, what bounds memory
    # while the flow waits (e.g. for Kafka). One larger message is still taken.
    mqtt_inbox_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    mqtt_ca_file: str | None = None
    # `vitalflow dlq replay` publishes under this prefix (see flows.replay_topic), and the
    # flow subscribes to it next to the device topics.
    mqtt_replay_prefix: str = Field(default="vitalflow/replay", pattern=r"^[^$#+\x00][^#+\x00]*$")

    mongo_url: str = "mongodb://127.0.0.1:27017"
    mongo_db: str = "vitalflow"
    # The longest a single MongoDB call may wait for an answer before it is retried.
    mongo_timeout_seconds: float = Field(default=30.0, gt=0)

    kafka_bootstrap: str = "127.0.0.1:9092"
    steps_topic: str = "vitalflow.steps"
    dlq_topic: str = "vitalflow.dlq"
    # One CloudEvent per alerting observation, keyed by patient (flows.alerts).
    alerts_topic: str = "vitalflow.alerts"
    # `vitalflow alerts webhook` POSTs each alert here, signed with the secret (HMAC-SHA256).
    alert_webhook_url: str | None = None
    alert_webhook_secret: str | None = None
    alert_webhook_group: str = "vitalflow-alert-webhook"
    steps_partitions: int = Field(default=3, ge=1)
    # How the flow's record batches are compressed. lz4 stored the benchmark's step events in
    # 7.9x fewer bytes (disk, network, replicas) at no throughput cost measurable here; gzip
    # cost the flow more CPU than it saved. Consumers need lz4 (Java and librdkafka have it).
    kafka_compression: str = Field(default="lz4", pattern=r"^(none|gzip|lz4)$")
    # `sqlite:///path` replaces Kafka by the embedded event log (the demo); None means Kafka.
    event_log_url: str | None = None

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    auth: str = "jwt"
    jwt_audience: str | None = None
    # An identity provider's signing keys (RS256, chosen by the token's `kid`), and the `iss`
    # every token must carry when set.
    jwt_jwks_url: str | None = None
    jwt_issuer: str | None = None
    api_client_queue: int = Field(default=2000, ge=1)
    api_heartbeat_seconds: float = Field(default=15.0, gt=0)
    api_retry_ms: int = Field(default=3000, ge=0)
    api_replay_buffer: int = Field(default=6000, ge=0)
    api_send_timeout_seconds: float = Field(default=15.0, gt=0)

    dedup_ttl_seconds: float = Field(default=600.0, gt=0)
    dedup_max_per_device: int = Field(default=4096, ge=1)
    lookup_cache_ttl_seconds: float = Field(default=60.0, ge=0)
    lookup_negative_ttl_seconds: float = Field(default=5.0, ge=0)
    # Registries up to this many identifiers are also held whole (`flows.lookup_patient`).
    lookup_preload_max: int = Field(default=200_000, ge=0)
    clock_max_age_days: float = Field(default=7.0, gt=0)
    clock_max_skew_seconds: float = Field(default=300.0, ge=0)
    thresholds_file: Path | None = None

    recovery_dir: Path | None = Path(".vitalflow/recovery")
    # Fixed for the life of the recovery data: the most workers the cluster will ever have
    # (None: this cluster's workers at first start). Process 0 creates them (`vitalflow run`).
    recovery_partitions: int | None = Field(default=None, ge=1)
    epoch_interval_seconds: float = Field(default=1.0, gt=0)
    # Write each batch while the next is parsed (`flows.store_pipeline`); only with recovery.
    store_overlap: bool = True
    # How many batches the overlapped store may have out at once before the worker waits.
    store_in_flight: int = Field(default=2, ge=1)
    workers: int = Field(default=1, ge=1)
    # How long a thread may hold the interpreter lock while others wait (`flows.thread_switching`).
    switch_interval_ms: float = Field(default=1.0, gt=0)
    # One process of a Bytewax cluster: its index and every process's `host:port`, `;`-separated.
    process_id: int | None = Field(default=None, ge=0)
    addresses: str | None = None
    # Prometheus metrics and /healthz of the flow process; None serves neither.
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    # /healthz fails once the source went this long without being polled (a stuck worker).
    health_stall_seconds: float = Field(default=120.0, gt=0)

    @field_validator("mqtt_url")
    @classmethod
    def _an_mqtt_url(cls, url: str) -> str:
        form = "mqtt://host:port or mqtts://host:port"
        return _checked_url(url, ("mqtt", "mqtts"), form, one_host=True)

    @field_validator("mongo_url")
    @classmethod
    def _a_mongo_url(cls, url: str) -> str:
        # The demo's embedded store (`montydb:///path`) has a path, no host.
        if url.lower().startswith("montydb://"):
            return url
        return _checked_url(url, ("mongodb", "mongodb+srv"), "mongodb://host:port", one_host=False)

    @property
    def topics(self) -> list[str]:
        """The MQTT topic filters to subscribe to."""
        return [t.strip() for t in self.mqtt_topics.split(",") if t.strip()]

    @property
    def cluster_addresses(self) -> list[str]:
        """Every process's `host:port`, in process-id order; empty when not a cluster."""
        return [a.strip() for a in (self.addresses or "").split(";") if a.strip()]

    @property
    def processes(self) -> int:
        """How many processes the cluster has (1 when not a cluster)."""
        return max(1, len(self.cluster_addresses))

    @property
    def this_process(self) -> int:
        """The index of this process in the cluster (0 when not a cluster)."""
        return self.process_id or 0

    @property
    def subscriptions(self) -> list[str]:
        """The topic filters the flow subscribes to: the device topics and the replay prefix."""
        return [*self.topics, f"{self.mqtt_replay_prefix.rstrip('/')}/#"]


def without_password(url: str) -> str:
    """Return `url` fit for logs and printed tables: any password replaced by `***`.

    Whatever precedes the last `@` counts as credentials, so a malformed URL is masked too.
    """
    if "@" not in url:
        return url
    credentials, _, host = url.rpartition("@")
    scheme, sep, user = credentials.partition("://")
    if not sep:
        return f"***@{host}"
    return f"{scheme}{sep}{user.split(':')[0]}:***@{host}"


def _checked_url(url: str, schemes: tuple[str, ...], form: str, *, one_host: bool) -> str:
    scheme, sep, rest = url.partition("://")
    host = rest.rpartition("@")[2].split("/")[0].split("?")[0]
    port_ok = True
    if one_host:  # (MongoDB's `h1:27017,h2:27017` is no single port)
        try:
            urlsplit(url).port  # noqa: B018  (raises on a port that is not a number)
        except ValueError:
            port_ok = False
    if not sep or scheme.lower() not in schemes or not host or not port_ok:
        msg = f"must look like {form}, got {without_password(url)!r}"
        raise ValueError(msg)
    return url


def describe_errors(error: ValidationError) -> str:
    """Return what is wrong in `error`, one setting a line, naming variable and flag, no values."""
    lines = []
    for problem in error.errors(include_input=False, include_url=False):
        field = str(problem["loc"][0]) if problem["loc"] else "?"
        message = str(problem["msg"]).removeprefix("Value error, ")
        lines.append(f"VITALFLOW_{field.upper()} (--{field.replace('_', '-')}): {message}")
    return "; ".join(lines)


def vitalflow_variables(
    env_file: Path = Path(".env"), environ: Mapping[str, str] | None = None
) -> dict[str, tuple[str, str]]:
    """Return each `VITALFLOW_*` variable (name upper-cased) with its value and where it is set.

    The environment wins over `env_file`, as it does for the settings.
    """
    found: dict[str, tuple[str, str]] = {}
    if env_file.is_file():
        for name, value in dotenv_values(env_file).items():
            if name.upper().startswith("VITALFLOW_"):
                found[name.upper()] = (value or "", str(env_file))
    for name, value in (os.environ if environ is None else environ).items():
        if name.upper().startswith("VITALFLOW_"):
            found[name.upper()] = (value, "the environment")
    return found


def unknown_variables(
    variables: Mapping[str, tuple[str, str]], secrets_dir: Path | None = None
) -> list[str]:
    """Return a warning for each name that is no setting, with the setting it may be a typo of.

    `variables` as from `vitalflow_variables`; files named `vitalflow_*` in `secrets_dir` too.
    """
    where = {name: place for name, (_value, place) in variables.items()}
    if secrets_dir is not None and secrets_dir.is_dir():
        for path in secrets_dir.iterdir():
            if path.name.upper().startswith("VITALFLOW_"):
                where.setdefault(path.name.upper(), f"secrets dir {secrets_dir}")
    known = {f"VITALFLOW_{name.upper()}" for name in Settings.model_fields} | set(CLI_VARIABLES)
    warnings = []
    for name, place in sorted(where.items()):
        if name in known or name.startswith(_OTHER_PROGRAMS):
            continue
        # Compared without the prefix, which every name shares and which would make any two alike.
        suffixes = {k.removeprefix("VITALFLOW_"): k for k in known}
        guess = get_close_matches(name.removeprefix("VITALFLOW_"), suffixes, n=1, cutoff=0.7)
        hint = f"; did you mean {suffixes[guess[0]]}?" if guess else ""
        warnings.append(f"{name} (set in {place}) is not a vitalflow setting, ignored{hint}")
    return warnings
