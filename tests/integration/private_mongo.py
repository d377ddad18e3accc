"""A private MongoDB-wire server for tests and benchmarks that stop and start their own.

mongo-java-server with vitalflow's launcher (`deploy/mongo/`), from the jars and classes
`deploy/local/install mongo` puts in the cache, on a free port with its data in a directory of
the caller's: the same program `deploy/local/up` runs as the `mongo` service.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

from pymongo import MongoClient

from flows.parent_death import die_with_parent

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mongo_home() -> Path:
    """Where `deploy/local/install mongo` put the jars (libs/) and the launcher (classes/)."""
    pom = (REPO / "deploy/mongo/pom.xml").read_text()
    found = re.search(r"<mongo-java-server.version>(.+?)</", pom)
    assert found, "no mongo-java-server.version in deploy/mongo/pom.xml"
    cache = Path(os.environ.get("VITALFLOW_LOCAL_CACHE_DIR", REPO / "deploy/local/.cache"))
    return cache / f"mongo-{found[1]}"


class PrivateMongoServer:
    """One mongo-java-server process; `backend` is ``h2`` (a file in workdir) or ``memory``."""

    def __init__(
        self,
        workdir: Path,
        backend: str = "h2",
        port: int | None = None,
        *,
        classes: Path | None = None,
        java_options: tuple[str, ...] = ("-Xmx512m", "-XX:+UseSerialGC"),
    ) -> None:
        self.port = port or free_port()
        self.backend = backend
        # Another build of the launcher (a benchmark's before and after), and the JVM's heap
        # and collector (a benchmark runs the local settings; tests a small serial heap).
        self.classes = classes
        self.java_options = java_options
        self.data = workdir / f"mongo-{backend}"
        self.data.mkdir(parents=True, exist_ok=True)
        self.log = workdir / f"mongo-{backend}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}"

    def start(self) -> None:
        home = mongo_home()
        classes = self.classes or home / "classes"
        launcher = classes / "VitalflowMongoServer.class"
        assert launcher.is_file(), f"{launcher} missing: run deploy/local/install mongo"
        self.process = subprocess.Popen(
            [
                "java",
                *self.java_options,
                "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
                "-cp",
                f"{home}/libs/*:{classes}",
                "VitalflowMongoServer",
                "--listen",
                f"127.0.0.1:{self.port}",
                "--data",
                str(self.data),
                "--backend",
                self.backend,
            ],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
        client: MongoClient[dict[str, Any]] = MongoClient(self.url, serverSelectionTimeoutMS=30000)
        try:
            client.admin.command("ping")
        finally:
            client.close()

    def stop(self) -> None:
        """SIGTERM: the launcher closes its clients and commits and closes the store."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)
