"""What the routers share within one running app: settings, auth, the hub, counters, metrics."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from api.auth import TokenVerifier
from api.hub import StreamHub, StreamTuning
from api.metrics import ApiMetrics
from api.stats import StepStats
from flows.settings import Settings

__all__ = ["ApiRuntime", "get_runtime"]


@dataclass(frozen=True)
class ApiRuntime:
    """The objects the lifespan creates for one app; reached through `get_runtime`."""

    settings: Settings
    tuning: StreamTuning
    verifier: TokenVerifier | None
    hub: StreamHub
    stats: StepStats
    metrics: ApiMetrics

    @property
    def auth_mode(self) -> str:
        """`jwt`, or `off` for the demo."""
        return "off" if self.verifier is None else "jwt"


def get_runtime(request: Request) -> ApiRuntime:
    """FastAPI dependency: the running app's shared objects."""
    runtime: ApiRuntime = request.app.state.runtime
    return runtime
