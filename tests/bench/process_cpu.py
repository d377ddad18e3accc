"""What bounds a benchmark figure: CPU per process over a phase, and a py-spy profile.

The local services are found by the port they listen on (1883 the MQTT broker, 9092 Kafka,
27017 the MongoDB-wire server), so the accounting holds whichever implementation serves
each port. CPU is given in % of one core (200 % = both cores of this machine).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psutil

__all__ = ["CpuMeter", "Profile", "cpu_seconds", "service_processes"]

_ROOT = f"{Path(__file__).resolve().parents[2]}/"
SERVICE_PORTS = {"mosquitto": 1883, "kafka": 9092, "mongo-wire": 27017}


def service_processes() -> dict[str, psutil.Process]:
    """Return the processes listening on the service ports, named by role and program."""
    found: dict[str, psutil.Process] = {}
    wanted = {port: role for role, port in SERVICE_PORTS.items()}
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status != psutil.CONN_LISTEN or conn.pid is None:
            continue
        role = wanted.get(conn.laddr.port)
        if role is None:
            continue
        process = psutil.Process(conn.pid)
        found[f"{role} ({process.name()})"] = process
    return found


def cpu_seconds(process: psutil.Process) -> float:
    """Return the CPU seconds `process` itself has used so far (0 once it is gone)."""
    try:
        # Own time only: the benchmark's children (flow, watcher, py-spy) have lines of their own.
        times = process.cpu_times()
        return times.user + times.system
    except psutil.NoSuchProcess:
        return 0.0


@dataclass
class CpuMeter:
    """CPU seconds each process spent between `start()` and `stop()`."""

    processes: dict[str, psutil.Process] = field(default_factory=dict)
    _before: dict[str, float] = field(default_factory=dict)
    _after: dict[str, float] = field(default_factory=dict)
    _machine_before: psutil._common.scputimes | None = None
    _machine_busy: float = 0.0
    _started: float = 0.0
    elapsed: float = 0.0

    def add(self, name: str, pid: int | None, *, from_zero: bool = False) -> None:
        """Account for `pid` too; `from_zero` counts all its CPU (a process started for the run)."""
        if pid is None:
            return
        self.processes[name] = psutil.Process(pid)
        if self._started and not from_zero:
            self._before[name] = cpu_seconds(self.processes[name])
        elif from_zero:
            self._before[name] = 0.0

    def start(self) -> None:
        self._started = time.perf_counter()
        self._machine_before = psutil.cpu_times()
        for name, process in self.processes.items():
            self._before.setdefault(name, cpu_seconds(process))

    def stop(self) -> None:
        """Read every process's CPU now: call it before the processes of the run end."""
        self.elapsed = time.perf_counter() - self._started
        for name, process in self.processes.items():
            self._after[name] = cpu_seconds(process)
        after = psutil.cpu_times()
        before = self._machine_before
        assert before is not None
        idle = (after.idle + after.iowait) - (before.idle + before.iowait)
        total = sum(after) - sum(before)
        self._machine_busy = 1 - idle / total if total > 0 else 0.0

    def _used(self) -> dict[str, float]:
        """CPU seconds of each process between `start()` and `stop()`."""
        return {n: self._after.get(n, 0.0) - self._before.get(n, 0.0) for n in self.processes}

    def headline(self) -> str:
        """Return one line: the busiest processes and how busy the machine was."""
        used = self._used()
        busiest = sorted(used.items(), key=lambda item: -item[1])[:4]
        others = self._machine_busy * psutil.cpu_count() * self.elapsed - sum(used.values())
        return (
            ", ".join(f"{name} {100 * seconds / self.elapsed:.0f} %" for name, seconds in busiest)
            + f"; other work {100 * max(others, 0.0) / self.elapsed:.0f} %; machine "
            f"{100 * self._machine_busy:.0f} % busy (% of one core; {psutil.cpu_count()} cores)"
        )

    def per_message(self, messages: int) -> str:
        """Return the CPU each process spent per message, busiest first, and the sum.

        Steadier than msg/s when the machine's speed drifts between sittings (other tenants):
        what a change saves shows here even when the throughput moves with the machine.
        """
        used = self._used()
        busiest = sorted(used.items(), key=lambda item: -item[1])
        parts = [f"{name} {1000 * seconds / messages:.2f}" for name, seconds in busiest]
        total = 1000 * sum(used.values()) / messages
        return f"CPU per message, ms: {', '.join(parts)}; all listed {total:.2f}"

    def report(self, indent: str = "    ") -> str:
        """Return one line per process, busiest first, and the whole machine."""
        used = self._used()
        lines = [
            f"{indent}{name:<34} {seconds:7.1f} s CPU = {100 * seconds / self.elapsed:5.0f} % "
            "of a core"
            for name, seconds in sorted(used.items(), key=lambda item: -item[1])
        ]
        others = self._machine_busy * psutil.cpu_count() * self.elapsed - sum(used.values())
        lines.append(
            f"{indent}{'everything else on the machine':<34} {max(others, 0.0):7.1f} s CPU"
        )
        lines.append(
            f"{indent}machine: {100 * self._machine_busy:.0f} % busy over {self.elapsed:.1f} s "
            f"({psutil.cpu_count()} cores)"
        )
        return "\n".join(lines)


@dataclass
class Profile:
    """A `py-spy record` of one process, summarised as the functions it spent its time in."""

    output: Path
    process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> str | None:
        """Return the py-spy executable, next to this Python's or on PATH."""
        beside = Path(sys.executable).with_name("py-spy")
        return str(beside) if beside.exists() else shutil.which("py-spy")

    def start(self, pid: int, seconds: float) -> None:
        executable = self.available()
        if executable is None:
            msg = "py-spy is not installed: pip install py-spy (it is in the dev extra)"
            raise RuntimeError(msg)
        self.process = subprocess.Popen(
            [
                executable,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(max(1, int(seconds))),
                "--rate",
                "50",
                "--format",
                "raw",
                "--output",
                str(self.output),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def summary(self, top: int = 15, indent: str = "    ") -> str:
        """Wait for py-spy; return the busiest functions, self and inclusive time."""
        if self.process is None:
            return f"{indent}(no profile)"
        self.process.wait(timeout=600)
        if not self.output.exists():
            return f"{indent}(py-spy wrote nothing: is ptrace allowed here?)"
        own: Counter[str] = Counter()
        inclusive: Counter[str] = Counter()
        total = 0
        for line in self.output.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            total += count
            frames = [_short(frame) for frame in stack.split(";")]
            own[frames[-1]] += count
            for frame in set(frames):
                inclusive[frame] += count
        if not total:
            return f"{indent}(no samples)"
        lines = [f"{indent}{total} samples of the flow's Python threads, {self.output}"]
        lines.append(f"{indent}self time:")
        lines.extend(
            f"{indent}  {100 * n / total:5.1f} %  {name}" for name, n in own.most_common(top)
        )
        lines.append(f"{indent}inclusive (project code and libraries):")
        interesting = [
            (name, n)
            for name, n in inclusive.most_common()
            if not name.startswith(("<module>", "run_main", "_run", "main ", "_run_module"))
        ]
        lines.extend(f"{indent}  {100 * n / total:5.1f} %  {name}" for name, n in interesting[:top])
        return "\n".join(lines)


def _short(frame: str) -> str:
    """`func (path/to/site-packages/pkg/mod.py:12)` -> `func (pkg/mod.py)`."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", _ROOT, "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})" if path else name
