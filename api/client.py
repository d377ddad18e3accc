"""A small asyncio client for the SSE API: for downstream services, the benchmark and tests.

It speaks just enough HTTP/1.1 (one GET, chunked or identity body) to read a stream with
hundreds of connections in one process cheaply, records when each frame arrived, and keeps
the last `id:` seen so a caller can resume exactly (`open_stream(..., last_event_id=...)`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

__all__ = ["SseConnection", "SseFrame", "SseHttpError", "SseParser", "open_stream"]


class SseHttpError(Exception):
    """The server answered with another status than 200."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:200]}")
        self.status = status
        self.body = body


@dataclass(frozen=True, slots=True)
class SseFrame:
    """One dispatched SSE frame and when it arrived (`time.time()` seconds)."""

    event: str
    data: str
    id: str | None
    retry: int | None
    received_at: float

    def json(self) -> Any:
        """Return the data parsed as JSON."""
        return json.loads(self.data)


class SseParser:
    """Incremental text/event-stream parser (WHATWG rules, minus the BOM)."""

    def __init__(self) -> None:
        self._buffer = ""
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._retry: int | None = None
        self.last_id: str | None = None

    def feed(self, text: str, received_at: float | None = None) -> list[SseFrame]:
        """Parse more text; return the frames it completes."""
        received_at = time.time() if received_at is None else received_at
        self._buffer += text.replace("\r\n", "\n").replace("\r", "\n")
        *lines, self._buffer = self._buffer.split("\n")
        frames = []
        for line in lines:
            if not line:
                if self._data or self._event:
                    frames.append(
                        SseFrame(
                            self._event or "message",
                            "\n".join(self._data),
                            self._id,
                            self._retry,
                            received_at,
                        )
                    )
                self._event, self._data, self._id, self._retry = "", [], None, None
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                self._data.append(value)
            elif name == "event":
                self._event = value
            elif name == "id" and "\0" not in value:
                self._id = value
                self.last_id = value
            elif name == "retry" and value.isascii() and value.isdigit():
                self._retry = int(value)
        return frames


class SseConnection:
    """An open stream; iterate it for frames. `last_event_id` is the newest id received."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, chunked: bool
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._chunked = chunked
        self._parser = SseParser()
        self._ready: deque[SseFrame] = deque()
        self.closed = False

    @property
    def last_event_id(self) -> str | None:
        """The id to resume from."""
        return self._parser.last_id

    async def _read_block(self) -> bytes:
        if not self._chunked:
            return await self._reader.read(65536)
        size_line = await self._reader.readline()
        if not size_line:
            return b""
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            await self._reader.readline()
            return b""
        block = await self._reader.readexactly(size + 2)
        return block[:-2]

    async def next_frame(self, timeout: float | None = None) -> SseFrame | None:
        """Return the next frame, or None once the server has ended the stream."""
        async with asyncio.timeout(timeout):
            while not self._ready:
                if self.closed:
                    return None
                try:
                    block = await self._read_block()
                except (asyncio.IncompleteReadError, ConnectionError):
                    block = b""
                if not block:
                    self.closed = True
                    continue
                self._ready.extend(self._parser.feed(block.decode("utf-8"), time.time()))
            return self._ready.popleft()

    def __aiter__(self) -> AsyncIterator[SseFrame]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[SseFrame]:
        while (frame := await self.next_frame()) is not None:
            yield frame

    async def close(self) -> None:
        """Close the connection (the server sees a disconnect)."""
        self.closed = True
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()


async def open_stream(
    url: str,
    *,
    params: dict[str, str] | None = None,
    token: str | None = None,
    last_event_id: str | None = None,
    receive_buffer: int | None = None,
    timeout: float = 10.0,
) -> SseConnection:
    """GET `url` as an event stream; raise `SseHttpError` for another status than 200.

    `receive_buffer` sets the socket's receive buffer (bytes), for simulating slow readers.
    """
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    query = parts.query
    if params:
        query = "&".join(q for q in (query, urlencode(params, doseq=True)) if q)
    target = (parts.path or "/") + (f"?{query}" if query else "")
    headers = [
        f"GET {target} HTTP/1.1",
        f"Host: {host}:{port}",
        "Accept: text/event-stream",
        "Cache-Control: no-cache",
    ]
    if token:
        headers.append(f"Authorization: Bearer {token}")
    if last_event_id:
        headers.append(f"Last-Event-ID: {last_event_id}")
    async with asyncio.timeout(timeout):
        if receive_buffer is not None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, (host, port))
            reader, writer = await asyncio.open_connection(sock=sock, limit=2**20)
        else:
            reader, writer = await asyncio.open_connection(
                host, port, ssl=parts.scheme == "https" or None, limit=2**20
            )
        writer.write(("\r\n".join(headers) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()
        status_line = await reader.readline()
        fields: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            fields[name.strip().lower()] = value.strip()
    try:
        status = int(status_line.split()[1])
    except (IndexError, ValueError):
        writer.close()
        msg = f"not an HTTP response: {status_line[:80]!r}"
        raise SseHttpError(0, msg) from None
    chunked = "chunked" in fields.get("transfer-encoding", "").lower()
    if status != 200:
        length = int(fields.get("content-length", "0") or 0)
        async with asyncio.timeout(timeout):
            body = await reader.readexactly(length) if length else await reader.read(65536)
        writer.close()
        raise SseHttpError(status, body.decode("utf-8", "replace"))
    return SseConnection(reader, writer, chunked)
