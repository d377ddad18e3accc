"""The dashboard in headless Chromium: it loads, shows events arriving, and shows alerts.

The API runs in-process on the embedded SQLite event log (the `vitalflow demo` set-up), and
the test writes step events into that log as the dataflow would.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from chromium_driver import chromium, wait_for
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from api.hub import StreamTuning
from api.server import serve_in_thread
from flows.model import Step
from flows.settings import Settings
from sinks.sqlite_event_log import SqliteEventLog

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).parent / "screenshots"
STEPS = tuple(str(step) for step in Step)
SECRET = "browser-test-secret-long-enough-for-hs256!"


def message_events(
    message_id: str,
    device_type: str,
    device_id: str,
    patient_id: str | None,
    last_step: int = 5,
    last_status: str = "success",
    step5_data: dict[str, Any] | None = None,
) -> list[bytes]:
    """The step events of one message, as the dataflow writes them."""
    events = []
    for number, step in enumerate(STEPS[:last_step], start=1):
        status = last_status if number == last_step else "success"
        data: dict[str, Any] = {
            "message_id": message_id,
            "step": step,
            "status": status,
            "device_type": device_type,
            "device_id": device_id,
            "topic": "iMEDE_watch/x",
            "patient_id": patient_id,
            "hospital_id": "H1" if patient_id else None,
            "payload": {},
            "processed_data": {},
            "error": {"code": "E_PARSE", "message": "bad payload"} if status == "error" else None,
            "reason": None,
        }
        if number == 5 and step5_data:
            data.update(step5_data)
        event = {
            "specversion": "1.0",
            "id": f"{message_id}/{step}",
            "source": "vitalflow",
            "type": f"vitalflow.step.{step}",
            "subject": f"{device_type}/{device_id}",
            "time": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            "datacontenttype": "application/json",
            "data": data,
        }
        events.append(json.dumps(event).encode())
    return events


SOS = {
    "severity": "critical",
    "alert": True,
    "processed_data": {
        "observations": [
            {
                "kind": "emergency",
                "values": {},
                "severity": "critical",
                "flags": [{"code": "sos", "severity": "critical", "message": "SOS"}],
            }
        ],
        "count": 1,
        "severity": "critical",
        "alert": True,
    },
}


HIGH_BP = {
    "severity": "high",
    "alert": True,
    "processed_data": {
        "observations": [
            {
                "kind": "blood_pressure",
                "values": {"systolic": 157, "diastolic": 95},
                "severity": "high",
                "flags": [
                    {"code": "bp_stage2", "severity": "high", "message": "Stage 2 hypertension"}
                ],
            }
        ],
        "count": 1,
        "severity": "high",
        "alert": True,
    },
}


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as driver:
        yield driver


@pytest.fixture
def event_log(tmp_path: Path) -> tuple[SqliteEventLog, str]:
    path = tmp_path / "events.db"
    return SqliteEventLog(path), f"sqlite:///{path}"


def connection_state(driver: WebDriver) -> str:
    return str(driver.find_element(By.ID, "conn-state").get_attribute("data-state"))


def test_dashboard_shows_events_arriving_and_an_emergency(
    browser: WebDriver, event_log: tuple[SqliteEventLog, str]
) -> None:
    log, url = event_log
    topic = f"vitalflow.steps.test-{uuid.uuid4().hex[:8]}"
    settings = Settings(auth="off", steps_topic=topic, api_port=0, event_log_url=url)
    # History from before the page opened: shown from /events/recent.
    log.append_many(
        topic, [(b"AVA4", e) for e in message_events("old-1", "AVA4", "08F9E0D1F7B4", "P1")]
    )
    with serve_in_thread(settings) as base:
        browser.get(base + "/")
        wait_for(browser, lambda d: connection_state(d) == "live")
        assert browser.find_element(By.ID, "auth-off").is_displayed()
        assert not browser.find_element(By.ID, "token-form").is_displayed()
        assert len(browser.find_elements(By.CSS_SELECTOR, "#timeline li")) == 1

        live = [
            *message_events("new-ok", "Qube", "QB01", "P2"),
            *message_events(
                "new-err", "AVA4", "08F9E0D1F7B4", None, last_step=2, last_status="error"
            ),
            *message_events("new-sos", "Kati", "861265061482607", "P3", step5_data=SOS),
        ]
        log.append_many(topic, [(None, event) for event in live])

        wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#timeline li")) == 4)
        sos_row = browser.find_element(By.CSS_SELECTOR, '#timeline li[data-message="new-sos"]')
        wait_for(
            browser,
            lambda d: len(sos_row.find_elements(By.CSS_SELECTOR, ".step.s-success")) == 5,
        )
        error_row = browser.find_element(By.CSS_SELECTOR, '#timeline li[data-message="new-err"]')
        assert len(error_row.find_elements(By.CSS_SELECTOR, ".step.s-error")) == 1
        assert len(error_row.find_elements(By.CSS_SELECTOR, ".step.s-none")) == 3
        assert "E_PARSE" in error_row.text

        banner = wait_for(browser, lambda d: d.find_element(By.ID, "alert-banner"))
        wait_for(browser, lambda d: banner.is_displayed())
        assert "EMERGENCY" in banner.text
        assert "SOS" in banner.text
        assert "P3" in banner.text
        assert browser.title.startswith("(!) EMERGENCY")
        assert browser.find_element(By.CSS_SELECTOR, "#alert-list li").text.startswith("EMERGENCY")

        # A lesser alert afterwards is listed, but does not push the SOS off the banner.
        log.append_many(
            topic,
            [(None, e) for e in message_events("new-bp", "AVA4", "D9", "P4", step5_data=HIGH_BP)],
        )
        wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#alert-list li")) == 2)
        assert "SOS" in banner.text
        assert browser.find_element(By.ID, "alert-more").text == "+1 more"
        assert browser.find_element(By.CSS_SELECTOR, "#alert-list li").text.startswith("ALERT")

        kati = '#device-counts tr[data-device-type="Kati"] td:nth-child(2)'
        wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, kati).text == "5")
        stored = '#step-counts tr[data-step="5_medical_stored"] td:nth-child(2)'
        assert browser.find_element(By.CSS_SELECTOR, stored).text == "4"
        assert browser.find_element(By.ID, "kpi-failure").text == "20.0%"

        SCREENSHOTS.mkdir(exist_ok=True)
        shot = SCREENSHOTS / "dashboard.png"
        assert browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000


def test_dashboard_takes_a_token_from_its_url_and_shows_only_what_it_grants(
    browser: WebDriver, event_log: tuple[SqliteEventLog, str]
) -> None:
    log, url = event_log
    topic = f"vitalflow.steps.test-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        auth="jwt", jwt_secret=SECRET, steps_topic=topic, api_port=0, event_log_url=url
    )
    token = jwt.encode({"exp": time.time() + 600, "scope": "patient:P7"}, SECRET, "HS256")
    with serve_in_thread(settings) as base:
        browser.get(base + "/")
        wait_for(browser, lambda d: d.find_element(By.ID, "token-form").is_displayed())
        assert connection_state(browser) == "unauthorized"

        browser.get(f"{base}/?access_token={token}")
        wait_for(browser, lambda d: connection_state(d) == "live")
        assert "access_token" not in browser.current_url
        assert not browser.find_element(By.ID, "auth-off").is_displayed()
        log.append_many(
            topic,
            [(None, e) for e in message_events("theirs", "AVA4", "D1", "P8")]
            + [(None, e) for e in message_events("mine", "AVA4", "D2", "P7")],
        )
        wait_for(
            browser, lambda d: d.find_elements(By.CSS_SELECTOR, '#timeline li[data-message="mine"]')
        )
        assert not browser.find_elements(By.CSS_SELECTOR, '#timeline li[data-message="theirs"]')


def test_dashboard_reconnects_by_itself_and_resumes_without_gaps_or_repeats(
    browser: WebDriver, event_log: tuple[SqliteEventLog, str]
) -> None:
    log, url = event_log
    topic = f"vitalflow.steps.test-{uuid.uuid4().hex[:8]}"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    settings = Settings(auth="off", steps_topic=topic, api_port=port, event_log_url=url)
    quick_retry = StreamTuning(retry_ms=300)

    def rows() -> list[str]:
        items = browser.find_elements(By.CSS_SELECTOR, "#timeline li")
        return [str(li.get_attribute("data-message")) for li in items]

    def add(name: str) -> None:
        log.append_many(topic, [(None, e) for e in message_events(name, "Qube", "QB", "P1")])

    with serve_in_thread(settings, quick_retry) as base:
        browser.get(base + "/")
        wait_for(browser, lambda d: connection_state(d) == "live")
        add("before")
        wait_for(browser, lambda d: rows() == ["before"])
    # The API is gone: events keep being written; the page keeps trying.
    add("while-down-1")
    add("while-down-2")
    wait_for(browser, lambda d: connection_state(d) != "live")
    with serve_in_thread(settings, quick_retry):
        wait_for(browser, lambda d: connection_state(d) == "live", timeout=20)
        add("after")
        wait_for(browser, lambda d: len(rows()) == 4, timeout=20)
        assert sorted(rows()) == ["after", "before", "while-down-1", "while-down-2"]
        stored = '#step-counts tr[data-step="5_medical_stored"] td:nth-child(2)'
        wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, stored).text == "4")
