"""The API's real access log (uvicorn over loopback, no other services): no token in clear."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from api.server import build_server
from flows.settings import Settings

SECRET = "access-log-test-secret-long-enough-for-hs256"


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, _Lines]]:
    settings = Settings(
        auth="jwt",
        jwt_secret=SECRET,
        api_host="127.0.0.1",
        api_port=0,
        event_log_url=f"sqlite:///{tmp_path / 'events.db'}",
    )
    server = build_server(settings, log_level="info", access_log=True)
    lines = _Lines()
    access_log = logging.getLogger("uvicorn.access")
    access_log.addHandler(lines)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", lines
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
        access_log.removeHandler(lines)


def test_a_token_under_an_encoded_parameter_name_is_not_in_the_access_log(
    served: tuple[str, _Lines],
) -> None:
    base, lines = served
    token = jwt.encode({"exp": time.time() + 60, "scope": "events:all"}, SECRET, "HS256")
    response = httpx.get(f"{base}/events/recent?access%5Ftoken={token}&limit=1", timeout=10)
    assert response.status_code == 200
    deadline = time.monotonic() + 5
    while not any("/events/recent" in line for line in lines.lines):
        assert time.monotonic() < deadline, "no access log line"
        time.sleep(0.02)
    [line] = [line for line in lines.lines if "/events/recent" in line]
    assert token.split(".")[1] not in line
    assert "access%5Ftoken=[redacted]&limit=1" in line
