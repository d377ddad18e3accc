"""vitalflow's configuration: one settings object, read once from the environment and `.env`.

Every variable in DESIGN.md has a field here; the CLI maps each to a flag of the same name.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "without_password"]

DEFAULT_TOPICS = "ESP32_BLE_GW_TX,dusun_pub,iMEDE_watch/#,CM4_BLE_GW_TX"


class Settings(BaseSettings):
    """Everything vitalflow can be told, with the defaults of DESIGN.md."""

    model_config = SettingsConfigDict(
        env_prefix="VITALFLOW_", env_file=".env", extra="ignore", populate_by_name=True
    )

    mqtt_url: str = "mqtt://127.0.0.1:1883"
    mqtt_topics: str = DEFAULT_TOPICS
    mqtt_qos: int = Field(default=1, ge=0, le=2)
    mqtt_client_id: str = "vitalflow"
    mqtt_share_group: str = "vitalflow"
    mqtt_partitions: int = Field(default=1, ge=1)
    mqtt_inbox_size: int = Field(default=20_000, ge=1)
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
    clock_max_age_days: float = Field(default=7.0, gt=0)
    clock_max_skew_seconds: float = Field(default=300.0, ge=0)
    thresholds_file: Path | None = None

    recovery_dir: Path | None = Path(".vitalflow/recovery")
    epoch_interval_seconds: float = Field(default=1.0, gt=0)
    workers: int = Field(default=1, ge=1)

    @property
    def topics(self) -> list[str]:
        """The MQTT topic filters to subscribe to."""
        return [t.strip() for t in self.mqtt_topics.split(",") if t.strip()]

    @property
    def subscriptions(self) -> list[str]:
        """The topic filters the flow subscribes to: the device topics and the replay prefix."""
        return [*self.topics, f"{self.mqtt_replay_prefix.rstrip('/')}/#"]


def without_password(url: str) -> str:
    """Return `url` fit for logs and printed tables: any password replaced by `***`."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        credentials, _, host = rest.rpartition("@")
        return f"{scheme}{sep}{credentials.split(':')[0]}:***@{host}"
    return url
