"""Running the API: `serve(settings)` for `vitalflow api`, `serve_in_thread` for the demo and tests.

Uvicorn waits for open responses before it shuts down, and an SSE stream never finishes by
itself, so `ApiServer` first asks every stream to send its final `close` frame and end; the
clients reconnect to another process (or this one, restarted) and resume where they were.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote_plus

import uvicorn
from fastapi import FastAPI
from typing_extensions import override
from uvicorn.config import LOGGING_CONFIG

from api.app import create_app
from api.hub import StreamTuning
from api.runtime import ApiRuntime
from flows.settings import Settings

__all__ = ["ApiServer", "build_server", "serve", "serve_in_thread"]

logger = logging.getLogger(__name__)

_TOKEN_PARAMETER = "access_token"


def _redact_query(target: str) -> str:
    """Return `target` (a path with its query) with every `access_token` value redacted.

    Names are compared decoded, as the app reads them, so that an encoded spelling such as
    `access%5Ftoken=`, which the app accepts as the token, is redacted too.
    """
    path, sep, query = target.partition("?")
    if not sep:
        return target
    pairs = []
    for pair in query.split("&"):
        name, eq, _ = pair.partition("=")
        if eq and unquote_plus(name) == _TOKEN_PARAMETER:
            pair = f"{name}=[redacted]"
        pairs.append(pair)
    return f"{path}?{'&'.join(pairs)}"


class _RedactTokens(logging.Filter):
    """Keeps bearer tokens passed in the query string (for EventSource) out of access logs."""

    @override
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(
                _redact_query(arg) if isinstance(arg, str) else arg for arg in record.args
            )
        return True


def _redact_access_log() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _RedactTokens) for f in access.filters):
        access.addFilter(_RedactTokens())


class ApiServer(uvicorn.Server):
    """A uvicorn server that ends the app's SSE streams before waiting for connections."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Send every stream its `close` frame, then shut down as uvicorn does."""
        runtime: ApiRuntime | None = getattr(self.app.state, "runtime", None)
        if runtime is not None:
            await runtime.hub.drain_streams(runtime.tuning.shutdown_grace_seconds)
        await super().shutdown(sockets)


def build_server(
    settings: Settings,
    tuning: StreamTuning | None = None,
    log_level: str = "info",
    access_log: bool = True,
    log_config: dict[str, Any] | None = LOGGING_CONFIG,
) -> ApiServer:
    """Build an `ApiServer` for the app of `settings`, on `api_host`:`api_port`.

    `log_config` None leaves uvicorn's records to the handlers already configured.
    """
    _redact_access_log()
    app = create_app(settings, tuning)
    config = uvicorn.Config(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_level=log_level,
        access_log=access_log,
        log_config=log_config,
        # Streams are closed first, so what is left to wait for is short requests.
        timeout_graceful_shutdown=5,
        proxy_headers=False,
    )
    return ApiServer(config, app)


def serve(settings: Settings) -> None:
    """Run the API until SIGINT/SIGTERM (`vitalflow api`)."""
    # uvicorn's lines through the CLI's handler: one format (`--log-format`) for every line.
    build_server(settings, log_config=None).run()


@contextmanager
def serve_in_thread(
    settings: Settings,
    tuning: StreamTuning | None = None,
    log_level: str = "warning",
    startup_timeout: float = 30.0,
) -> Iterator[str]:
    """Run the API in a background thread; yields its base URL, stops it on exit.

    `settings.api_port` 0 picks a free port.
    """
    server = build_server(settings, tuning, log_level=log_level, access_log=False)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.api_host, settings.api_port))
    port = sock.getsockname()[1]
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="vitalflow-api", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            msg = "the API did not start"
            raise RuntimeError(msg)
        time.sleep(0.02)
    try:
        yield f"http://{settings.api_host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
