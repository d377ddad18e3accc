"""The FastAPI application: `create_app(settings)` wires the routers to one hub per process."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from api.auth import build_verifier
from api.feed import open_feed
from api.history_access import HistoryStore
from api.hub import StreamHub, StreamTuning
from api.metrics import ApiMetrics
from api.routers import alerts, dashboard, events, fhir, history, observability, patients
from api.runtime import ApiRuntime
from api.stats import StepStats
from flows.settings import Settings

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

# Long enough for a local Kafka to answer and the replay buffer to load; if the feed is slower
# the app serves anyway (streams get 503 + Retry-After until it is ready).
_STARTUP_WAIT_SECONDS = 15.0


def create_app(settings: Settings, tuning: StreamTuning | None = None) -> FastAPI:
    """Build the app; the feed is opened and read only while the app runs (its lifespan).

    Raises `api.auth.AuthConfigError` when auth is on without a key, and `ValueError` for an
    unsupported `event_log_url`, before anything is served.
    """
    verifier = build_verifier(settings)
    tuning = tuning or StreamTuning.from_settings(settings)
    open_feed(settings)  # fail now on a bad feed configuration, not in the background

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stats, metrics = StepStats(), ApiMetrics()
        hub = StreamHub(lambda: open_feed(settings), tuning, stats, metrics)
        app.state.runtime = ApiRuntime(settings, tuning, verifier, hub, stats, metrics)
        app.state.history_store = history_store = HistoryStore(settings)
        history_store.start()
        await hub.start()
        if not await hub.wait_ready(_STARTUP_WAIT_SECONDS):
            logger.warning("serving before the event feed is ready: %s", hub.detail)
        try:
            yield
        finally:
            await hub.stop()
            history_store.close()

    app = FastAPI(
        title="vitalflow",
        summary="Live step events of the vitalflow pipeline over Server-Sent Events",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.include_router(events.router)
    app.include_router(observability.router)
    app.include_router(patients.router)
    app.include_router(history.router)
    app.include_router(fhir.router)
    app.include_router(alerts.router)
    app.include_router(dashboard.router)
    app.mount("/static", StaticFiles(directory=dashboard.STATIC_DIR), name="static")
    return app


async def _invalid_request(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's own 422 shape, without the values it refused.

    Echoed, a refused value can carry what a client should not see again in a log or a
    proxy's cache (a citizen ID), and one holding a lone surrogate (an escape from D800 to
    DFFF in a JSON body) could not even be encoded: FastAPI's default handler answered 500.
    """
    assert isinstance(exc, RequestValidationError)
    detail = [
        {
            "loc": [_printable(part) for part in error.get("loc", ())],
            "msg": _printable(error.get("msg", "")),
            "type": _printable(error.get("type", "")),
        }
        for error in exc.errors()
    ]
    return JSONResponse(status_code=422, content={"detail": detail})


def _printable(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")
