"""GET /stats (counts and rates), GET /health (dependencies) and GET /metrics (Prometheus)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response, status
from prometheus_client import CONTENT_TYPE_LATEST

from api.auth import Access, require_access
from api.models import DependencyHealth, HealthReport, StatsReport
from api.runtime import ApiRuntime, get_runtime

__all__ = ["router"]

router = APIRouter(tags=["observability"])


@router.get(
    "/stats",
    summary="Counts by device type, step and status, success and failure rates, throughput",
    response_model=StatsReport,
    responses={401: {"description": "Token missing, malformed, badly signed or expired"}},
)
async def stats(
    runtime: Annotated[ApiRuntime, Depends(get_runtime)],
    access: Annotated[Access, Depends(require_access)],
) -> StatsReport:
    """Count the events this process has read, restricted to the token's scope."""
    return runtime.stats.report(access)


@router.get(
    "/health",
    summary="Liveness and the state of each dependency (no token needed)",
    response_model=HealthReport,
    responses={503: {"model": HealthReport, "description": "A dependency is down"}},
)
async def health(
    runtime: Annotated[ApiRuntime, Depends(get_runtime)], response: Response
) -> HealthReport:
    """200 when the event feed answers, 503 (same body) while it does not."""
    hub = runtime.hub
    report = HealthReport(
        status="ok" if hub.state == "ok" else "degraded",
        auth="off" if runtime.verifier is None else "jwt",
        clients=hub.client_count,
        dependencies=[
            DependencyHealth(
                name=f"event feed ({hub.feed_description})", state=hub.state, detail=hub.detail
            )
        ],
    )
    if report.status != "ok":
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return report


@router.get(
    "/metrics",
    summary="Prometheus metrics (no token needed)",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Text exposition"}},
)
async def metrics(runtime: Annotated[ApiRuntime, Depends(get_runtime)]) -> Response:
    """Events consumed and sent, clients connected and dropped, consumer lag, per-step counts."""
    return Response(runtime.metrics.render(), media_type=CONTENT_TYPE_LATEST)
