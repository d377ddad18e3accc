"""`vitalflow api`: serve the SSE API and the dashboard until interrupted."""

from __future__ import annotations

import logging

from api.auth import AuthConfigError
from api.server import serve
from flows.settings import Settings

__all__ = ["serve_api"]

logger = logging.getLogger("vitalflow")


def serve_api(settings: Settings) -> int:
    """Serve the API on `settings.api_host`:`settings.api_port`; return the exit code."""
    try:
        serve(settings)
    except AuthConfigError as exc:
        logger.error("vitalflow api: %s", exc)
        return 2
    return 0
