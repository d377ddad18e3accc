"""`vitalflow demo`: the whole system on one machine, on embedded defaults, in one command.

The command is a supervisor. It owns every part as a child process: an embedded MQTT broker
(`connectors.embedded_broker`), the dataflow (`vitalflow run`), the API with the dashboard
(`vitalflow api`) and the simulator (`vitalflow simulate`). The document store (montydb on
disk) and the event log (SQLite) are libraries inside the dataflow and the API, reached
through the same seams as MongoDB and Kafka (`montydb://` and `sqlite:///` URLs), so the flow
and the API run exactly the code they run in production. The demo patients and their devices
are registered first, in this process, so the simulator's traffic finds its patients.

Each embedded default gives way to the real service as soon as its setting is given
(`VITALFLOW_MQTT_URL`, `VITALFLOW_MONGO_URL`, `VITALFLOW_KAFKA_BOOTSTRAP`, or
`VITALFLOW_EVENT_LOG_URL`; in the environment, `.env` or as a flag). Every child gets its
configuration through `VITALFLOW_*` variables, as a user would give it.

Stopping: Ctrl-C (SIGINT), SIGTERM or SIGHUP stop every part together: SIGINT to each, then
SIGTERM, then SIGKILL after short grace periods. Each child runs in a session of its own, so
the terminal's Ctrl-C reaches only the supervisor, which then stops the children itself, and
on Linux each child is killed by the kernel should the supervisor itself be killed.
A part that dies on its own is reported, with the end of its log, and everything stops.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import IO, Any

from connectors.embedded_broker import READY_PREFIX
from flows.commands.seed import seed_registry
from flows.parent_death import die_with_parent
from flows.settings import Settings, without_password

__all__ = ["run_demo"]

# The simulator and the seed must agree on the roster, or every message is an unknown device.
ROSTER_SEED = 7
ROSTER_PATIENTS = 12
# Emergencies are rare on a ward: about one every three minutes at the default 5 msg/s
# (SOS and falls alike), against a few threshold alerts a minute (flows.simulator.vital_signs).
SOS_FRACTION = 0.001

BROKER_READY_TIMEOUT = 20.0
API_READY_TIMEOUT = 120.0
# Grace periods when stopping: SIGINT lets each part finish cleanly, SIGTERM is the
# second ask, SIGKILL the last word; together "within a few seconds".
INTERRUPT_GRACE = 3.0
TERMINATE_GRACE = 1.5
_POLL = 0.2
_LOG_TAIL_LINES = 25

_SOURCE_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class _StopRequest:
    """Set by a signal handler; the supervisor polls it instead of being interrupted."""

    signal_name: str | None = None

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        self.signal_name = signal.Signals(signum).name

    @property
    def requested(self) -> bool:
        return self.signal_name is not None


@dataclass
class _Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    log_file: IO[bytes]


class _PartFailed(Exception):
    """A part could not start, or stopped on its own."""


@dataclass
class _Supervisor:
    """The children of the demo, started in order and stopped in reverse order."""

    stop: _StopRequest
    children: list[_Child] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        log: Path,
        *,
        pipe_stdout: bool = False,
    ) -> _Child:
        log_file = log.open("wb")
        process = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if pipe_stdout else log_file,
            stderr=log_file,
            # Own process group: Ctrl-C in the terminal goes to the supervisor only, which
            # then stops the parts in order, and a part's whole group can be signalled.
            start_new_session=True,
            # No part outlives the demo if it dies without stopping them (kill -9).
            preexec_fn=die_with_parent,
        )
        child = _Child(name, process, log, log_file)
        self.children.append(child)
        return child

    def check(self) -> None:
        """Raise `_PartFailed` if a part has exited while it should be running."""
        for child in self.children:
            code = child.process.poll()
            if code is not None:
                how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
                msg = f"{child.name} stopped unexpectedly ({how})"
                raise _PartFailed(msg, child)

    def wait_for(self, ready: Callable[[], bool], timeout: float, what: str, blame: _Child) -> bool:
        """Poll `ready` until it holds; False if a stop was requested first."""
        deadline = time.monotonic() + timeout
        while not ready():
            self.check()
            if self.stop.requested:
                return False
            if time.monotonic() > deadline:
                msg = f"{what} did not happen within {timeout:.0f} s"
                raise _PartFailed(msg, blame)
            time.sleep(_POLL)
        return True

    def stop_all(self) -> None:
        """Stop every part, newest first: SIGINT, then SIGTERM, then SIGKILL, to each group."""
        running = [c for c in reversed(self.children) if c.process.poll() is None]
        for signum, grace in (
            (signal.SIGINT, INTERRUPT_GRACE),
            (signal.SIGTERM, TERMINATE_GRACE),
            (signal.SIGKILL, None),
        ):
            for child in running:
                _signal_group(child.process, signum)
            deadline = time.monotonic() + (grace or TERMINATE_GRACE)
            while running and time.monotonic() < deadline:
                running = [c for c in running if c.process.poll() is None]
                time.sleep(0.05)
            if not running:
                break
        for child in self.children:
            # A leader gone does not mean its group is: sweep what it may have spawned.
            _signal_group(child.process, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(timeout=1)
            if child.process.stdout is not None:
                child.process.stdout.close()
            child.log_file.close()


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


@dataclass(frozen=True)
class _Plan:
    """What the demo runs: the settings every part gets, and which services are embedded."""

    settings: Settings
    exported: frozenset[str]
    embedded_broker: bool
    embedded_store: bool
    embedded_log: bool


def _plan(settings: Settings, data_dir: Path) -> _Plan:
    given = set(settings.model_fields_set)
    overrides: dict[str, Any] = {}
    embedded_store = "mongo_url" not in given
    if embedded_store:
        overrides["mongo_url"] = f"montydb://{data_dir / 'store'}"
    embedded_log = "event_log_url" not in given and "kafka_bootstrap" not in given
    if embedded_log:
        overrides["event_log_url"] = f"sqlite:///{data_dir / 'events.db'}"
    if "recovery_dir" not in given:
        overrides["recovery_dir"] = data_dir / "recovery"
    if "auth" not in given:
        overrides["auth"] = "off"
    settings = settings.model_copy(update=overrides)
    exported = frozenset(given | set(overrides) | {"api_host", "api_port"})
    return _Plan(
        settings=settings,
        exported=exported,
        embedded_broker="mqtt_url" not in given,
        embedded_store=embedded_store,
        embedded_log=embedded_log,
    )


def _child_env(settings: Settings, names: frozenset[str]) -> dict[str, str]:
    env = dict(os.environ)
    for name in sorted(names):
        value = getattr(settings, name)
        if value is None:
            continue
        env[f"VITALFLOW_{name.upper()}"] = (
            str(value).lower() if isinstance(value, bool) else str(value)
        )
    # Line by line into the logs, and the same vitalflow source whatever the working directory.
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_SOURCE_ROOT), env.get("PYTHONPATH")) if p)
    return env


def _vitalflow(*arguments: str, log_level: str) -> list[str]:
    return [sys.executable, "-m", "flows.cli", "--log-level", log_level, *arguments]


def _read_ready_line(child: _Child, supervisor: _Supervisor) -> str | None:
    """Return the broker's URL from its ready line; None if a stop was requested first."""
    stdout = child.process.stdout
    assert stdout is not None  # started with pipe_stdout
    deadline = time.monotonic() + BROKER_READY_TIMEOUT
    while time.monotonic() < deadline:
        supervisor.check()
        if supervisor.stop.requested:
            return None
        readable, _, _ = select.select([stdout], [], [], _POLL)
        if readable:
            line = stdout.readline().decode(errors="replace").strip()
            if line.startswith(READY_PREFIX):
                return line.removeprefix(READY_PREFIX)
    msg = f"the MQTT broker did not start within {BROKER_READY_TIMEOUT:.0f} s"
    raise _PartFailed(msg, child)


def _answers(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    return check


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _browser_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _table(rows: list[tuple[str, str, str, str]]) -> str:
    header = ("part", "what", "where", "pid")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    return "\n".join(
        "  "
        + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )


def _summary(
    plan: _Plan, children: dict[str, _Child], data_dir: Path, dashboard: str, rate: float
) -> str:
    s = plan.settings

    def pid(name: str) -> str:
        return str(children[name].process.pid) if name in children else "-"

    log_variable = "VITALFLOW_EVENT_LOG_URL" if s.event_log_url else "VITALFLOW_KAFKA_BOOTSTRAP"
    library = "(a library in the dataflow)"
    shared = "(a library in the dataflow and the API)"
    rows = [
        (
            "MQTT broker",
            "embedded (amqtt)" if plan.embedded_broker else "yours (VITALFLOW_MQTT_URL)",
            without_password(s.mqtt_url),
            pid("MQTT broker"),
        ),
        (
            "document store",
            "embedded (montydb, on disk)" if plan.embedded_store else "yours (VITALFLOW_MONGO_URL)",
            without_password(s.mongo_url) + f" db {s.mongo_db}",
            library if plan.embedded_store else "-",
        ),
        (
            "event log",
            "embedded (SQLite)" if plan.embedded_log else f"yours ({log_variable})",
            s.event_log_url or f"kafka {s.kafka_bootstrap} topics {s.steps_topic}, {s.dlq_topic}",
            shared if plan.embedded_log else "-",
        ),
        ("dataflow", "vitalflow run", f"recovery {s.recovery_dir}", pid("dataflow")),
        (
            "simulator",
            "vitalflow simulate",
            f"{rate:g} msg/s: AVA4, Kati, Qube; duplicates, malformed, unknown, SOS",
            pid("simulator"),
        ),
        ("API + dashboard", "vitalflow api", dashboard, pid("API")),
    ]
    lines = [
        "",
        "vitalflow demo is running:",
        "",
        _table(rows),
        "",
        f"  data: {data_dir}   logs: {data_dir / 'logs'}",
    ]
    if plan.embedded_log:
        lines.append(
            f"  replay dead letters: VITALFLOW_EVENT_LOG_URL={s.event_log_url} "
            f"VITALFLOW_MQTT_URL={without_password(s.mqtt_url)} vitalflow dlq replay"
        )
    unset = [
        variable
        for variable, embedded in (
            ("VITALFLOW_MQTT_URL", plan.embedded_broker),
            ("VITALFLOW_MONGO_URL", plan.embedded_store),
            ("VITALFLOW_KAFKA_BOOTSTRAP", plan.embedded_log),
        )
        if embedded
    ]
    if unset:
        lines.append(
            f"  your own services instead: set {', '.join(unset)} (see vitalflow demo --help)"
        )
    if s.auth == "off":
        lines.append(
            "  WARNING: API auth is off (demo only): anyone who reaches "
            f"{s.api_host}:{s.api_port} sees every event"
        )
    lines += ["", f"Dashboard: {dashboard}   (Ctrl-C stops everything)", ""]
    return "\n".join(lines)


@contextlib.contextmanager
def _signals_to(stop: _StopRequest) -> Iterator[None]:
    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {signum: signal.signal(signum, stop) for signum in handled}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _seed(settings: Settings) -> str:
    return str(seed_registry(settings, seed=ROSTER_SEED, patients=ROSTER_PATIENTS))


def run_demo(
    settings: Settings,
    *,
    data_dir: Path,
    rate: float,
    duration: float | None = None,
    log_level: str = "INFO",
) -> int:
    """Run `vitalflow demo` until Ctrl-C, `duration` or a part's failure; return the exit code.

    `settings` are the ones the user gave (flags over environment): what they set is used,
    every other service is embedded. 0 after a requested stop, 1 when a part failed, 2 when
    the API port is taken.
    """
    data_dir = data_dir.expanduser().resolve()
    (data_dir / "logs").mkdir(parents=True, exist_ok=True)
    plan = _plan(settings, data_dir)
    settings = plan.settings
    if not _port_free(settings.api_host, settings.api_port):
        print(
            f"vitalflow demo: {settings.api_host}:{settings.api_port} is already in use; "
            "stop what listens there or pass --api-port",
            file=sys.stderr,
        )
        return 2
    stop = _StopRequest()
    supervisor = _Supervisor(stop)
    started = time.monotonic()
    with _signals_to(stop):
        try:
            return _run(plan, supervisor, data_dir, rate, duration, log_level, started)
        except _PartFailed as failure:
            message, child = failure.args
            print(f"\nvitalflow demo: {message}", file=sys.stderr)
            if child is not None:
                tail = _tail(child.log)
                if tail:
                    print(f"--- last lines of {child.log} ---\n{tail}\n---", file=sys.stderr)
            return 1
        finally:
            if stop.requested:
                print(f"\nvitalflow demo: {stop.signal_name}, stopping every part", flush=True)
            supervisor.stop_all()
            print("vitalflow demo: stopped", flush=True)


def _run(
    plan: _Plan,
    supervisor: _Supervisor,
    data_dir: Path,
    rate: float,
    duration: float | None,
    log_level: str,
    started: float,
) -> int:
    settings = plan.settings
    logs = data_dir / "logs"
    children: dict[str, _Child] = {}
    if plan.embedded_broker:
        broker = supervisor.start(
            "MQTT broker",
            [
                sys.executable,
                "-m",
                "connectors.embedded_broker",
                "--port",
                "0",
                "--log-level",
                log_level,
            ],
            _child_env(settings, plan.exported),
            logs / "broker.log",
            pipe_stdout=True,
        )
        children[broker.name] = broker
        url = _read_ready_line(broker, supervisor)
        if url is None:
            return 0
        settings = settings.model_copy(update={"mqtt_url": url})
    plan = replace(plan, settings=settings, exported=plan.exported | {"mqtt_url"})
    env = _child_env(settings, plan.exported)

    try:
        registered = _seed(settings)
    except Exception as exc:
        msg = f"registering the demo patients failed: {type(exc).__name__}: {exc}"
        raise _PartFailed(msg, None) from exc
    print(f"vitalflow demo: demo patients and their devices registered: {registered}", flush=True)
    if supervisor.stop.requested:
        return 0

    for name, argv, log in (
        ("dataflow", _vitalflow("run", log_level=log_level), "flow.log"),
        ("API", _vitalflow("api", log_level=log_level), "api.log"),
        (
            "simulator",
            _vitalflow(
                "simulate",
                "--rate",
                f"{rate:g}",
                "--seed",
                str(ROSTER_SEED),
                "--patients",
                str(ROSTER_PATIENTS),
                "--sos-fraction",
                f"{SOS_FRACTION:g}",
                log_level=log_level,
            ),
            "simulator.log",
        ),
    ):
        children[name] = supervisor.start(name, argv, env, logs / log)

    dashboard = f"http://{_browser_host(settings.api_host)}:{settings.api_port}/"
    answering = _answers(dashboard)
    if not supervisor.wait_for(answering, API_READY_TIMEOUT, "the dashboard", children["API"]):
        return 0
    print(_summary(plan, children, data_dir, dashboard, rate), flush=True)
    print(f"vitalflow demo: up in {time.monotonic() - started:.1f} s", flush=True)

    deadline = None if duration is None else time.monotonic() + duration
    while not supervisor.stop.requested:
        supervisor.check()
        if deadline is not None and time.monotonic() >= deadline:
            print(f"vitalflow demo: {duration:g} s are up, stopping", flush=True)
            break
        time.sleep(_POLL)
    return 0
