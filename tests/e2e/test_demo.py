"""`vitalflow demo`, run as a newcomer runs it: one command, no servers configured.

Each test starts the real command in a subprocess (no VITALFLOW_* variable, an empty working
directory, a fresh data directory, a free API port), waits for the dashboard, and checks over
HTTP what a user would see: observations stored and step events streaming through all five
steps. Every wait is bounded, and every demo is stopped in a `finally`, with a check that
none of its processes survives it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import psutil
import pytest
from pymongo import MongoClient

from flows.fhir import FHIR_KINDS
from flows.model import Step
from flows.parent_death import die_with_parent
from sinks.embedded_store import open_embedded_database
from sinks.sqlite_event_log import SqliteEventLog

REPO_ROOT = Path(__file__).resolve().parents[2]
STEPS = tuple(str(step) for step in Step)
DASHBOARD_TIMEOUT = 150.0  # a cold start on a busy CI machine imports a lot
TRAFFIC_TIMEOUT = 120.0
STOP_WITHIN = 10.0  # "a few seconds", with room for a loaded machine


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def vitalflow_command() -> list[str]:
    """The console script the README tells users to run, or the module if not installed."""
    script = Path(sys.executable).with_name("vitalflow")
    return [str(script)] if script.exists() else [sys.executable, "-m", "flows.cli"]


def newcomer_env() -> dict[str, str]:
    """The environment of someone who configured nothing: no VITALFLOW_* variable at all."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VITALFLOW_")}
    if not Path(sys.executable).with_name("vitalflow").exists():
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


@dataclass
class DemoRun:
    """A running `vitalflow demo` and everything needed to check on it and stop it."""

    process: subprocess.Popen[bytes]
    base_url: str
    data_dir: Path
    output: Path
    launched_at: datetime
    launched_monotonic: float
    seen: dict[int, psutil.Process] = field(default_factory=dict)

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def remember_processes(self) -> list[psutil.Process]:
        """Note every descendant now alive, so the final check covers all that ever ran."""
        try:
            for child in psutil.Process(self.process.pid).children(recursive=True):
                self.seen.setdefault(child.pid, child)
        except psutil.NoSuchProcess:
            pass
        return list(self.seen.values())

    def survivors(self) -> list[psutil.Process]:
        alive = []
        for proc in self.seen.values():
            try:
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
            except psutil.NoSuchProcess:
                continue
        return alive

    def child_running(self, module_or_command: str) -> psutil.Process:
        for proc in self.remember_processes():
            try:
                if module_or_command in " ".join(proc.cmdline()):
                    return proc
            except psutil.NoSuchProcess:
                continue
        pytest.fail(f"no demo process runs {module_or_command!r}:\n{self.text()}")

    def get(self, path: str, **params: Any) -> Any:
        response = httpx.get(f"{self.base_url}{path}", params=params, timeout=15)
        response.raise_for_status()
        return response.json()


def wait_for_dashboard(run: DemoRun) -> None:
    deadline = time.monotonic() + DASHBOARD_TIMEOUT
    while time.monotonic() < deadline:
        if run.process.poll() is not None:
            pytest.fail(f"vitalflow demo exited with {run.process.returncode}:\n{run.text()}")
        run.remember_processes()
        # As a user: wait for the demo to print where the dashboard is, then open it.
        if "Dashboard: " in run.text():
            try:
                if httpx.get(run.base_url + "/", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
        time.sleep(0.25)
    pytest.fail(f"the dashboard did not answer within {DASHBOARD_TIMEOUT:.0f} s:\n{run.text()}")


def stop(run: DemoRun) -> float:
    """Ctrl-C the demo as a terminal would; return how long it took to exit (inf: it didn't)."""
    run.remember_processes()
    if run.process.poll() is not None:
        return 0.0
    started = time.monotonic()
    run.process.send_signal(signal.SIGINT)
    try:
        run.process.wait(timeout=STOP_WITHIN * 3)
    except subprocess.TimeoutExpired:
        return float("inf")
    return time.monotonic() - started


def kill_leftovers(run: DemoRun) -> None:
    """Last resort, so that a failing test leaves nothing running on the machine."""
    if run.process.poll() is None:
        run.process.kill()
        run.process.wait(timeout=10)
    for proc in run.survivors():
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(list(run.seen.values()), timeout=10)


@contextmanager
def demo_running(
    workdir: Path, *arguments: str, settings: dict[str, str] | None = None
) -> Iterator[DemoRun]:
    """Run `vitalflow demo` until the dashboard answers; always stop it and its parts after.

    `settings` are VITALFLOW_* variables to set; without them nothing is configured.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    output = workdir / "demo-output.txt"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [
                *vitalflow_command(),
                "demo",
                "--data-dir",
                str(workdir / "data"),
                "--api-port",
                str(port),
                *arguments,
            ],
            cwd=workdir,
            env={**newcomer_env(), **(settings or {})},
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            # As in a terminal: the demo's own group, so the test can Ctrl-C it alone.
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
    run = DemoRun(
        process=process,
        base_url=f"http://127.0.0.1:{port}",
        data_dir=workdir / "data",
        output=output,
        launched_at=datetime.now(UTC),
        launched_monotonic=time.monotonic(),
    )
    try:
        wait_for_dashboard(run)
        yield run
    finally:
        try:
            stop(run)
        finally:
            kill_leftovers(run)


def sse_frames(run: DemoRun, timeout: float, **params: str) -> Iterator[dict[str, Any]]:
    """Yield the step-event frames of GET /events ({'id', 'event', 'data'}) for `timeout` s."""
    deadline = time.monotonic() + timeout
    headers = {}
    if "last_event_id_header" in params:
        headers["Last-Event-ID"] = params.pop("last_event_id_header")
    with httpx.stream(
        "GET",
        f"{run.base_url}/events",
        params=params,
        headers=headers,
        timeout=httpx.Timeout(10.0, read=20.0),
    ) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        frame: dict[str, Any] = {}
        for line in response.iter_lines():
            if time.monotonic() > deadline:
                return
            if not line:
                # Step events only: the stream also sends control frames (`ready`, `close`).
                if "data" in frame and frame.get("event") in STEPS:
                    yield frame
                frame = {}
                continue
            name, _, value = line.partition(":")
            if name in ("id", "event", "data"):
                frame[name] = value.removeprefix(" ")


@dataclass
class Traffic:
    """What the step events of the demo showed, accumulated frame by frame."""

    chains: dict[str, dict[str, str]] = field(default_factory=dict)
    device_types: set[str] = field(default_factory=set)
    outcomes: set[tuple[str, str, str]] = field(default_factory=set)
    stored: list[dict[str, Any]] = field(default_factory=list)
    first_event_time: datetime | None = None

    def add(self, frame: dict[str, Any]) -> None:
        event = json.loads(frame["data"])
        data = event["data"]
        assert frame.get("event") == data["step"]
        assert event["specversion"] == "1.0" and event["source"] == "vitalflow"
        when = datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
        if self.first_event_time is None or when < self.first_event_time:
            self.first_event_time = when
        self.chains.setdefault(data["message_id"], {})[data["step"]] = data["status"]
        self.device_types.add(str(data.get("device_type")))
        reason = (data.get("error") or {}).get("code") or data.get("reason") or ""
        self.outcomes.add((data["step"], data["status"], str(reason)))
        if data["step"] == "5_medical_stored" and data["status"] == "success":
            self.stored.append(data)

    def complete_chains(self) -> int:
        return sum(
            1 for steps in self.chains.values() if all(steps.get(s) == "success" for s in STEPS)
        )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    with demo_running(tmp_path_factory.mktemp("demo"), "--rate", "10") as run:
        yield run


def test_demo_prints_what_runs_where(demo: DemoRun) -> None:
    text = demo.text()
    for expected in (
        "MQTT broker",
        "embedded (amqtt)",
        "mqtt://127.0.0.1:",
        "document store",
        f"montydb://{demo.data_dir / 'store'}",
        "event log",
        f"sqlite:///{demo.data_dir / 'events.db'}",
        "dataflow",
        "simulator",
        f"{demo.base_url}/",
        "Ctrl-C",
        "VITALFLOW_MQTT_URL",
    ):
        assert expected in text, f"{expected!r} missing from:\n{text}"


def test_demo_stores_observations_and_streams_all_five_steps(
    demo: DemoRun, record_property: Any
) -> None:
    traffic = Traffic()
    # From the very first event of the log: resume position 0 of the one partition.
    for frame in sse_frames(demo, TRAFFIC_TIMEOUT, last_event_id="0-0"):
        traffic.add(frame)
        if traffic.complete_chains() >= 5 and len(traffic.stored) >= 5:
            break
    assert traffic.complete_chains() >= 5, f"chains seen: {list(traffic.chains.values())[:20]}"
    assert traffic.first_event_time is not None
    first_event_after = (traffic.first_event_time - demo.launched_at).total_seconds()
    record_property("seconds_from_command_to_first_event", round(first_event_after, 1))
    print(f"\nvitalflow demo: first step event {first_event_after:.1f} s after the command")

    # What the events say is stored is in the store: read the demo's on-disk store directly.
    store = open_embedded_database(f"montydb://{demo.data_dir / 'store'}", "vitalflow")
    for data in traffic.stored[:5]:
        ids = [o["id"] for o in data["processed_data"]["observations"]]
        found = {d["_id"]: d for d in store.observations.find({"_id": {"$in": ids}})}
        assert sorted(found) == sorted(ids)
        for doc in found.values():
            assert doc["patient_id"] == data["patient_id"]
            assert doc["measured_at"].utcoffset() is not None

    recent = demo.get("/events/recent", step="5_medical_stored", status="success", limit=10)
    assert recent["events"], recent
    assert all(e["data"]["step"] == "5_medical_stored" for e in recent["events"])
    stats = demo.get("/stats")
    assert stats["by_step"]["5_medical_stored"]["success"] >= 1, stats
    assert stats["messages"]["stored"] >= 1, stats


def test_the_demo_serves_patients_history_alerts_and_fhir_from_its_store(demo: DemoRun) -> None:
    # What the history API, FHIR and alert endpoints offer works on the demo's embedded store
    # too (auth is off in the demo), as soon as its traffic has stored something.
    def patients_with_vitals() -> list[dict[str, Any]]:
        # Vitals FHIR has a mapping for: a watch's steps, sleep or location alone gives an
        # empty Bundle (what the demo's first seconds sometimes store first).
        items = demo.get("/patients")["items"]
        return [p for p in items if {str(k) for k in FHIR_KINDS} & set(p["last_vitals"])]

    deadline = time.monotonic() + TRAFFIC_TIMEOUT
    while not (patients := patients_with_vitals()) and time.monotonic() < deadline:
        time.sleep(1)
    assert patients, "no patient with stored vitals"
    patient = patients[0]
    kind = next(iter(patient["last_vitals"]))

    page = demo.get(f"/patients/{patient['id']}/observations", kind=kind, limit=5)
    assert page["items"] and all(o["kind"] == kind for o in page["items"])
    # The latest vital the patient holds is one of its stored readings of that kind.
    held = patient["last_vitals"][kind]["observation_id"]
    history = demo.get(f"/patients/{patient['id']}/observations", kind=kind, limit=1000)
    assert held in {o["id"] for o in history["items"]}
    summary = demo.get(f"/patients/{patient['id']}/observations/summary", kind=kind)
    assert summary["computed_in"] == "api" and sum(b["count"] for b in summary["buckets"]) >= 1

    bundle = demo.get("/fhir/Observation", patient=patient["id"], _count=5)
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    assert bundle["entry"], bundle
    assert all(e["resource"]["resourceType"] == "Observation" for e in bundle["entry"])
    assert isinstance(demo.get("/alerts", state="all")["items"], list)


def test_demo_traffic_covers_every_device_family_and_its_failure_modes(demo: DemoRun) -> None:
    wanted = {
        "families": lambda t: {"AVA4", "Kati", "Qube"} <= t.device_types,
        "a duplicate": lambda t: any(s == "skipped" and "duplicate" in r for _, s, r in t.outcomes),
        "a malformed payload": lambda t: (
            ("2_payload_parsed", "error") in {(step, status) for step, status, _ in t.outcomes}
        ),
        "an unknown device": lambda t: (
            ("3_patient_lookup", "error", "unknown_device") in t.outcomes
        ),
    }
    traffic = Traffic()
    for frame in sse_frames(demo, TRAFFIC_TIMEOUT, last_event_id="0-0"):
        traffic.add(frame)
        if all(check(traffic) for check in wanted.values()):
            break
    missing = [name for name, check in wanted.items() if not check(traffic)]
    assert not missing, f"never seen: {missing}; outcomes {sorted(traffic.outcomes)}"


def test_sse_resumes_after_the_last_event_id_without_loss_or_repeats(demo: DemoRun) -> None:
    first = []
    for frame in sse_frames(demo, 60, last_event_id="0-0"):
        first.append(frame)
        if len(first) == 12:
            break
    assert len(first) == 12
    resumed = []
    for frame in sse_frames(demo, 60, last_event_id_header=first[3]["id"]):
        resumed.append(frame)
        if len(resumed) == 8:
            break
    assert [f["id"] for f in resumed] == [f["id"] for f in first[4:12]]
    assert [json.loads(f["data"])["id"] for f in resumed] == [
        json.loads(f["data"])["id"] for f in first[4:12]
    ]


def test_the_demos_dead_letters_replay_through_its_flow_as_its_summary_says(
    demo: DemoRun,
) -> None:
    log = SqliteEventLog(demo.data_dir / "events.db")
    try:

        def unknown_letters() -> list[dict[str, Any]]:
            letters = [json.loads(r.value) for r in log.read("vitalflow.dlq", 0, 10_000)]
            return [x for x in letters if x["reason"]["code"] == "unknown_device"]

        deadline = time.monotonic() + TRAFFIC_TIMEOUT
        while len(unknown_letters()) < 2:
            assert time.monotonic() < deadline, "no unknown-device dead letters in the demo"
            time.sleep(0.5)
        letters = unknown_letters()[:2]
        # The command as the demo's summary prints it.
        [hint] = [line for line in demo.text().splitlines() if "replay dead letters:" in line]
        variables = dict(word.split("=", 1) for word in hint.split() if "=" in word)
        assert set(variables) == {"VITALFLOW_EVENT_LOG_URL", "VITALFLOW_MQTT_URL"}
        replay = subprocess.run(
            [*vitalflow_command(), "dlq", "replay", "--code", "unknown_device", "--limit", "2"],
            env=newcomer_env() | variables,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert replay.returncode == 0, replay.stdout + replay.stderr
        assert "replayed 2" in replay.stdout, replay.stdout

        # The copies go through the demo's flow again as second deliveries: still unknown
        # devices, so error chains (and letters) of their own, not duplicates.
        wanted = {f"{x['message_id']}/d2/3_patient_lookup" for x in letters}
        deadline = time.monotonic() + TRAFFIC_TIMEOUT
        while True:
            events = [json.loads(r.value) for r in log.read("vitalflow.steps", 0, 1_000_000)]
            seen = {e["id"]: e for e in events if e["id"] in wanted}
            if len(seen) == len(wanted):
                break
            assert time.monotonic() < deadline, f"replayed chains never ended: {wanted - set(seen)}"
            time.sleep(0.5)
        assert {e["data"]["error"]["code"] for e in seen.values()} == {"unknown_device"}
    finally:
        log.close()


def test_ctrl_c_stops_every_part_within_seconds_and_leaves_no_process(tmp_path: Path) -> None:
    with demo_running(tmp_path, "--rate", "10") as run:
        # Busy: wait until messages go all the way through before pulling the plug.
        for frame in sse_frames(run, TRAFFIC_TIMEOUT, last_event_id="0-0"):
            if json.loads(frame["data"])["data"]["step"] == "5_medical_stored":
                break
        parts = run.remember_processes()
        assert len(parts) >= 4, [p.cmdline() for p in parts]  # broker, flow, API, simulator
        took = stop(run)
        assert took < STOP_WITHIN, f"took {took:.1f} s to stop:\n{run.text()}"
        assert run.process.returncode == 0, run.text()
        assert run.survivors() == []
        assert "stopped" in run.text()


def test_a_part_that_dies_is_reported_and_stops_the_whole_demo(tmp_path: Path) -> None:
    with demo_running(tmp_path) as run:
        flow = run.child_running("flows.cli --log-level INFO run")
        flow.kill()
        run.process.wait(timeout=STOP_WITHIN * 2)
        assert run.process.returncode == 1
        text = run.text()
        assert "dataflow stopped unexpectedly (killed by SIGKILL)" in text, text
        psutil.wait_procs(list(run.seen.values()), timeout=5)
        assert run.survivors() == []


def test_real_services_replace_the_embedded_ones_once_their_variables_are_set(
    services: Any, unique_id: str, tmp_path: Path
) -> None:
    client_id = f"vf-test-demo-{unique_id}"
    database = f"vf_test_demo_{unique_id}"
    settings = {
        **services.env,
        "VITALFLOW_MQTT_CLIENT_ID": client_id,
        "VITALFLOW_MONGO_DB": database,
        "VITALFLOW_STEPS_TOPIC": f"vitalflow.steps.test-demo-{unique_id}",
        "VITALFLOW_DLQ_TOPIC": f"vitalflow.dlq.test-demo-{unique_id}",
    }
    try:
        with demo_running(tmp_path, "--rate", "10", settings=settings) as run:
            text = run.text()
            for expected in (
                "yours (VITALFLOW_MQTT_URL)",
                services.mqtt_url,
                "yours (VITALFLOW_MONGO_URL)",
                services.mongo_url,
                "yours (VITALFLOW_KAFKA_BOOTSTRAP)",
                f"kafka {services.kafka_bootstrap}",
            ):
                assert expected in text, f"{expected!r} missing from:\n{text}"
            assert "embedded (" not in text, text
            commands = [" ".join(p.cmdline()) for p in run.remember_processes()]
            assert not any("embedded_broker" in c for c in commands), commands
            traffic = Traffic()
            for frame in sse_frames(run, TRAFFIC_TIMEOUT):
                traffic.add(frame)
                if traffic.complete_chains() >= 3:
                    break
            assert traffic.complete_chains() >= 3, list(traffic.chains.values())[:20]
            stored = MongoClient(services.mongo_url)[database].observations.count_documents({})
            assert stored >= 1
        assert not (run.data_dir / "store").exists()
        assert not (run.data_dir / "events.db").exists()
    finally:
        # Leave the shared services as found: no persistent session queueing device traffic
        # for a flow that will never come back, no test database.
        session = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"{client_id}-mqtt-0",
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        host, port = services.mqtt_url.removeprefix("mqtt://").split(":")
        session.connect(host, int(port))
        session.loop_start()
        deadline = time.monotonic() + 10
        while not session.is_connected() and time.monotonic() < deadline:
            time.sleep(0.05)
        session.disconnect()
        session.loop_stop()
        MongoClient(services.mongo_url).drop_database(database)


def test_demo_refuses_a_taken_api_port_before_starting_anything(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                *vitalflow_command(),
                "demo",
                "--data-dir",
                str(tmp_path / "data"),
                "--api-port",
                str(port),
            ],
            cwd=tmp_path,
            env=newcomer_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2
    assert f"127.0.0.1:{port} is already in use" in result.stderr


def test_demo_help_says_what_is_embedded_and_how_to_use_real_services(tmp_path: Path) -> None:
    result = subprocess.run(
        [*vitalflow_command(), "demo", "--help"],
        cwd=tmp_path,
        env=newcomer_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    text = " ".join(result.stdout.split())
    for expected in (
        "amqtt",
        "montydb",
        "SQLite",
        "http://127.0.0.1:8000",
        "VITALFLOW_MQTT_URL",
        "VITALFLOW_MONGO_URL",
        "VITALFLOW_KAFKA_BOOTSTRAP",
    ):
        assert expected in text, f"{expected!r} missing from demo --help"
