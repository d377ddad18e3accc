"""An embedded MQTT 3.1.1 broker for `vitalflow demo`: amqtt, in pure Python, on loopback.

It stands in for Mosquitto behind the same seam (an `mqtt://` URL), so the flow and the
simulator connect to it exactly as they would to a real broker. It keeps everything in memory
and, unlike Mosquitto, neither queues QoS 1 messages for an offline session nor redelivers
un-acked ones after a reconnect: good enough for a demo, not for production.

`python -m connectors.embedded_broker --port 0` listens on a free port, prints one line
`listening on mqtt://127.0.0.1:<port>` once it accepts connections, and serves until SIGINT
or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

from amqtt.adapters import (  # type: ignore[import-untyped]
    StreamReaderAdapter,
    StreamWriterAdapter,
)
from amqtt.broker import Broker  # type: ignore[import-untyped]

__all__ = ["READY_PREFIX", "EmbeddedBroker", "main"]

logger = logging.getLogger(__name__)

READY_PREFIX = "listening on "
_LISTENER = "default"


class EmbeddedBroker:
    """An amqtt broker behind a TCP listener of our own on `host:port` (0: any free port).

    The listening socket is ours rather than amqtt's ("external" listener) so that the port
    actually bound is known without reaching into amqtt's internals.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._port = port
        self._broker: Broker | None = None
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        """The `mqtt://host:port` URL clients connect to; only meaningful once started."""
        return f"mqtt://{self._host}:{self._port}"

    async def start(self) -> str:
        """Start accepting MQTT connections; return the URL to connect to."""
        config: dict[str, Any] = {
            "listeners": {_LISTENER: {"type": "external"}},
            # Only anonymous auth: the default set also publishes $SYS topics every 20 s and
            # logs every packet, noise a newcomer does not need.
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
        self._broker = Broker(config)
        await self._broker.start()
        self._server = await asyncio.start_server(self._connected, self._host, self._port)
        self._port = int(self._server.sockets[0].getsockname()[1])
        logger.info("embedded MQTT broker listening on %s", self.url)
        return self.url

    async def stop(self) -> None:
        """Stop accepting connections, then close every session."""
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._broker is not None:
            await self._broker.shutdown()
            self._broker = None

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._broker is None:
            writer.close()
            return
        await self._broker.external_connected(
            StreamReaderAdapter(reader), StreamWriterAdapter(writer), _LISTENER
        )


async def _serve(host: str, port: int) -> None:
    broker = EmbeddedBroker(host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    url = await broker.start()
    # The parent reads this line to learn the port; flush so it does not sit in a buffer.
    print(f"{READY_PREFIX}{url}", flush=True)
    try:
        await stop.wait()
    finally:
        # A client that never closes its session must not hold the shutdown up.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(broker.stop(), timeout=3)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the embedded broker until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m connectors.embedded_broker",
        description="An embedded MQTT 3.1.1 broker (amqtt) for the vitalflow demo.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # amqtt's session state machine logs every transition at INFO.
    logging.getLogger("transitions").setLevel(logging.WARNING)
    asyncio.run(_serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
