"""Wait until vitalflow's local services answer their own protocols.

Used by ``deploy/local/up`` and ``deploy/local/status``; runs in the project's venv.

Each service is named ``NAME=ADDRESS``: ``mosquitto=127.0.0.1:1883`` (MQTT CONNECT answered
by CONNACK), ``kafka=127.0.0.1:9092`` (cluster metadata from the admin API) and
``mongo=127.0.0.1:27017`` (MongoDB ``ping``, then ``isMaster``). ``--pid NAME=PID`` makes
the wait for that service fail at once if the process dies. Exit status 0 when all are ready
before ``--timeout`` seconds, else 1, with one line per service on stderr either way.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import struct
import sys
import time
from collections.abc import Callable

PROBE_TIMEOUT_S = 5.0


def _split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host or "127.0.0.1", int(port)


def probe_mqtt(addr: str) -> str:
    """Send an MQTT 3.1.1 CONNECT and expect an accepting CONNACK."""
    host, port = _split_addr(addr)
    client_id = f"vf-ready-{os.getpid()}".encode()
    variable = b"\x00\x04MQTT\x04\x02" + struct.pack("!H", 30)  # level 4, clean session
    payload = struct.pack("!H", len(client_id)) + client_id
    body = variable + payload
    packet = b"\x10" + bytes([len(body)]) + body  # body < 128 bytes: one length byte
    with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S) as sock:
        sock.settimeout(PROBE_TIMEOUT_S)
        sock.sendall(packet)
        reply = b""
        while len(reply) < 4:
            chunk = sock.recv(4 - len(reply))
            if not chunk:
                raise ConnectionError("connection closed before CONNACK")
            reply += chunk
        if reply[0] != 0x20 or reply[1] != 2:
            raise ConnectionError(f"not a CONNACK: {reply!r}")
        if reply[3] != 0:
            raise ConnectionError(f"CONNACK refused the connection (code {reply[3]})")
        sock.sendall(b"\xe0\x00")  # DISCONNECT
    return "CONNACK ok"


def probe_kafka(addr: str) -> str:
    """Ask the broker for cluster metadata through the admin API."""
    from kafka.admin import KafkaAdminClient

    # kafka-python retries a refused bootstrap for bootstrap_timeout_ms (30 s by default)
    # with growing back-off: check the port first, and keep its own waits short.
    socket.create_connection(_split_addr(addr), timeout=PROBE_TIMEOUT_S).close()
    admin = KafkaAdminClient(
        bootstrap_servers=addr,
        client_id="vf-ready",
        request_timeout_ms=int(PROBE_TIMEOUT_S * 1000),
        bootstrap_timeout_ms=int(PROBE_TIMEOUT_S * 1000),
        reconnect_backoff_max_ms=500,
    )
    try:
        cluster = admin.describe_cluster()
    finally:
        admin.close()
    brokers = cluster.get("brokers") or []
    if not brokers:
        raise ConnectionError(f"no brokers in metadata: {cluster!r}")
    if cluster.get("controller_id", -1) < 0:
        raise ConnectionError("no active controller yet")
    return f"cluster {cluster.get('cluster_id')}, {len(brokers)} broker(s)"


def probe_mongo(addr: str) -> str:
    """Run the MongoDB ``ping`` and ``isMaster`` (the legacy ``hello``) commands."""
    import pymongo

    host, port = _split_addr(addr)
    socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()  # fail fast
    client: pymongo.MongoClient = pymongo.MongoClient(
        host,
        port,
        serverSelectionTimeoutMS=int(PROBE_TIMEOUT_S * 1000),
        connectTimeoutMS=int(PROBE_TIMEOUT_S * 1000),
    )
    try:
        client.admin.command("ping")
        # The handshake under its legacy name: mongo-java-server has no `hello` (and logs a
        # stack trace for each unknown command); MongoDB answers both.
        hello = client.admin.command("isMaster")
    finally:
        client.close()
    return f"ping ok, maxWireVersion {hello.get('maxWireVersion')}"


PROBES: dict[str, Callable[[str], str]] = {
    "mosquitto": probe_mqtt,
    "kafka": probe_kafka,
    "mongo": probe_mongo,
}


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or name not in PROBES:
            raise SystemExit(f"bad {what} {value!r}: expected one of {sorted(PROBES)}=...")
        out[name] = rest
    return out


def main(argv: list[str] | None = None) -> int:
    """Probe the named services until all answer or the time is up."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("services", nargs="+", metavar="NAME=HOST:PORT")
    parser.add_argument("--pid", action="append", default=[], metavar="NAME=PID")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # its retries are noisy

    pending = _pairs(args.services, "service")
    pids = {name: int(pid) for name, pid in _pairs(args.pid, "pid").items()}
    start = time.monotonic()
    deadline = start + args.timeout
    last_error: dict[str, str] = {}
    failed: list[str] = []
    while pending:
        for name, addr in list(pending.items()):
            if name in pids and not _pid_alive(pids[name]):
                what = f"process {pids[name]}" if pids[name] > 0 else "the process"
                print(f"{name}: {what} is not running (exited)", file=sys.stderr)
                failed.append(name)
                del pending[name]
                continue
            try:
                detail = PROBES[name](addr)
            except Exception as exc:  # any failure means "not ready yet"
                last_error[name] = f"{type(exc).__name__}: {exc}"
            else:
                elapsed = time.monotonic() - start
                print(f"{name}: ready on {addr} after {elapsed:.1f} s ({detail})", file=sys.stderr)
                del pending[name]
        if not pending:
            break
        if time.monotonic() >= deadline:
            for name, addr in pending.items():
                error = last_error.get(name, "no answer")
                print(
                    f"{name}: NOT ready on {addr} after {args.timeout:.0f} s: {error}",
                    file=sys.stderr,
                )
                failed.append(name)
            break
        time.sleep(0.3)
    if failed:
        print("FAILED: " + " ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
