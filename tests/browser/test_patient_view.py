"""The patient view and shared acknowledgements in headless Chromium.

The API runs in-process on the demo's embedded store (montydb) and SQLite event log; the test
stores observations and writes step events as the dataflow would. Screenshots are saved to
tests/browser/screenshots/ for people to look at.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from chromium_driver import chromium, wait_for
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from api.server import serve_in_thread
from flows.codes_and_flags import enrich_reading
from flows.latest_vitals import latest_vitals
from flows.model import ObservationKind, Reading, Step
from flows.settings import Settings
from flows.thresholds import Thresholds
from sinks.mongo_database import open_database
from sinks.sqlite_event_log import SqliteEventLog

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).parent / "screenshots"
SECRET = "patient-view-test-secret-long-enough-for-hs256!"
HR, BP = ObservationKind.HEART_RATE, ObservationKind.BLOOD_PRESSURE


def token(scope: str, sub: str) -> str:
    return jwt.encode({"exp": time.time() + 600, "scope": scope, "sub": sub}, SECRET, "HS256")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as driver:
        yield driver


class Ward:
    """The store and event log the API reads, written the way the dataflow writes them."""

    def __init__(self, tmp_path: Path) -> None:
        self.settings = Settings(
            auth="jwt",
            jwt_secret=SECRET,
            api_port=0,
            mongo_url=f"montydb://{tmp_path / 'store'}",
            mongo_db="vf",
            event_log_url=f"sqlite:///{tmp_path / 'events.db'}",
            steps_topic=f"vitalflow.steps.test-{uuid.uuid4().hex[:8]}",
        )
        self.db = open_database(
            self.settings.mongo_url,
            self.settings.mongo_db,
            timeout_seconds=self.settings.mongo_timeout_seconds,
        )
        self.log = SqliteEventLog(tmp_path / "events.db")
        self.count = 0
        self.db.patients.insert_many(
            [
                {"_id": "P1", "hospital_id": "H1"},
                {"_id": "P2", "hospital_id": "H1"},
                {"_id": "P9", "hospital_id": "H2"},
            ]
        )

    def store(
        self,
        patient: str,
        kind: ObservationKind,
        values: dict[str, Any],
        ago: timedelta,
        **attrs: Any,
    ) -> dict[str, Any]:
        """Store one reading, update the patient's latest vitals, write its step events."""
        self.count += 1
        message_id = uuid.uuid4().hex
        measured_at = datetime.now(UTC).replace(microsecond=0) - ago
        reading = Reading(kind, values, measured_at, measured_at, attributes=attrs)
        doc = {
            "_id": f"{message_id}:0",
            "patient_id": patient,
            "hospital_id": "H1" if patient != "P9" else "H2",
            "kind": str(kind),
            "device_type": "Kati",
            "device_id": "861265061482607",
            "message_id": message_id,
            "measured_at": measured_at,
            "received_at": measured_at,
            "values": values,
            "attributes": attrs,
            **enrich_reading(reading, Thresholds()),
        }
        self.db.observations.insert_one(doc)
        held = (self.db.patients.find_one({"_id": patient}) or {}).get("last_vitals", {})
        if (
            str(kind) not in held
            or held[str(kind)]["measured_at"].replace(tzinfo=UTC) <= measured_at
        ):
            self.db.patients.update_one(
                {"_id": patient}, {"$set": {f"last_vitals.{kind}": latest_vitals(doc)}}
            )
        self.log.append_many(self.settings.steps_topic, [(None, e) for e in self.events(doc)])
        return doc

    def events(self, doc: dict[str, Any]) -> list[bytes]:
        summary = {
            "observations": [
                {k: doc[k] for k in ("kind", "values", "flags", "severity")} | {"id": doc["_id"]}
            ],
            "count": 1,
            "severity": doc["severity"],
            "alert": doc["alert"],
        }
        events = []
        for step in Step:
            data: dict[str, Any] = {
                "message_id": doc["message_id"],
                "step": str(step),
                "status": "success",
                "device_type": doc["device_type"],
                "device_id": doc["device_id"],
                "topic": "iMEDE_watch/x",
                "patient_id": doc["patient_id"],
                "hospital_id": doc["hospital_id"],
                "payload": {},
                "processed_data": summary if step is Step.STORED else {},
                "error": None,
                "reason": None,
            }
            if step is Step.STORED:
                data |= {"severity": doc["severity"], "alert": doc["alert"]}
            event = {
                "specversion": "1.0",
                "id": f"{doc['message_id']}/{step}",
                "source": "vitalflow",
                "type": f"vitalflow.step.{step}",
                "subject": "Kati/861265061482607",
                "time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "datacontenttype": "application/json",
                "data": data,
            }
            events.append(json.dumps(event).encode())
        return events


@pytest.fixture
def ward(tmp_path: Path) -> Iterator[Ward]:
    made = Ward(tmp_path)
    yield made
    made.db.client.close()


def chart_points(driver: WebDriver, kind: str) -> int:
    # Read in one script: a chart redrawn between finding it and reading it (a live reading
    # arriving) would otherwise be a stale element.
    value = driver.execute_script(
        "const chart = document.querySelector(arguments[0]);"
        "return chart ? chart.getAttribute('data-points') : null;",
        f'.chart[data-kind="{kind}"]',
    )
    return int(value or 0)


def test_patient_list_and_a_patients_day_with_a_reading_arriving_live(
    browser: WebDriver, ward: Ward
) -> None:
    for hours in range(6, 0, -1):
        ward.store("P1", HR, {"heart_rate": 70 + hours}, timedelta(hours=hours))
    ward.store("P1", BP, {"systolic": 128, "diastolic": 82, "pulse": 71}, timedelta(hours=2))
    ward.store("P2", BP, {"systolic": 195, "diastolic": 118, "pulse": 90}, timedelta(minutes=20))
    ward.store("P9", HR, {"heart_rate": 80}, timedelta(minutes=5))
    ward.store("P1", HR, {"heart_rate": 66}, timedelta(days=2))  # outside the last 24 h

    with serve_in_thread(ward.settings) as base:
        browser.get(f"{base}/static/patients.html?access_token={token('hospital:H1', 'nurse-a')}")
        wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#patients tbody tr"))
        rows = browser.find_elements(By.CSS_SELECTOR, "#patients tbody tr")
        assert [r.get_attribute("data-patient") for r in rows] == ["P1", "P2"]
        p2 = browser.find_element(By.CSS_SELECTOR, 'tr[data-patient="P2"]')
        assert p2.get_attribute("data-severity") == "critical"
        assert "195/118" in p2.text
        assert "sev-critical" in p2.find_element(By.CSS_SELECTOR, ".sev").get_attribute("class")
        assert "access_token" not in browser.current_url

        browser.find_element(By.CSS_SELECTOR, 'tr[data-patient="P1"]').click()
        wait_for(browser, lambda d: chart_points(d, "heart_rate") == 6)
        assert chart_points(browser, "blood_pressure") == 1
        assert len(browser.find_elements(By.CSS_SELECTOR, "#readings tbody tr")) == 7
        thresholds = browser.find_elements(
            By.CSS_SELECTOR, '.chart[data-kind="heart_rate"] .threshold'
        )
        assert len(thresholds) == 2
        assert browser.find_elements(By.CSS_SELECTOR, '.chart[data-kind="heart_rate"] rect.bucket')

        # A reading stored while the page is open shows up without a reload.
        fresh = ward.store("P1", HR, {"heart_rate": 135}, timedelta(seconds=5))
        wait_for(browser, lambda d: chart_points(d, "heart_rate") == 7)
        row = browser.find_element(
            By.CSS_SELECTOR, f'#readings tr[data-observation="{fresh["_id"]}"]'
        )
        assert "heart_rate 135" in row.text and "high" in row.text

        SCREENSHOTS.mkdir(exist_ok=True)
        shot = SCREENSHOTS / "patient_view.png"
        assert browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000

        # Another hospital's patient is refused, not shown.
        browser.get(f"{base}/static/patients.html#patient=P9")
        wait_for(browser, lambda d: "scope" in d.find_element(By.ID, "conn-state").text)
        assert not browser.find_elements(By.CSS_SELECTOR, ".chart")


def test_an_acknowledgement_on_one_screen_shows_on_another(browser: WebDriver, ward: Ward) -> None:
    sos = ward.store("P1", ObservationKind.EMERGENCY, {}, timedelta(seconds=30), event="sos")

    with serve_in_thread(ward.settings) as base:
        browser.get(f"{base}/?access_token={token('hospital:H1', 'nurse-a')}")
        first = browser.current_window_handle
        browser.switch_to.new_window("window")
        second = browser.current_window_handle
        browser.get(f"{base}/?access_token={token('patient:P1', 'nurse-b')}")
        for handle in (first, second):
            browser.switch_to.window(handle)
            wait_for(browser, lambda d: d.find_element(By.ID, "alert-banner").is_displayed())
            item = browser.find_element(By.CSS_SELECTOR, "#alert-list li")
            assert item.get_attribute("data-alert-ids") == sos["_id"]

        browser.switch_to.window(first)
        browser.find_element(By.ID, "alert-ack").click()
        assert not browser.find_element(By.ID, "alert-banner").is_displayed()
        wait_for(browser, lambda d: ward.db.alert_acks.find_one({"_id": sos["_id"]}))
        assert ward.db.alert_acks.find_one({"_id": sos["_id"]})["by"] == "nurse-a"

        browser.switch_to.window(second)
        wait_for(browser, lambda d: not d.find_element(By.ID, "alert-banner").is_displayed())
        item = browser.find_element(By.CSS_SELECTOR, "#alert-list li")
        wait_for(browser, lambda d: "acknowledged by nurse-a" in item.text)
        assert "acked" in (item.get_attribute("class") or "")
        SCREENSHOTS.mkdir(exist_ok=True)
        assert browser.save_screenshot(str(SCREENSHOTS / "alert_acknowledged.png"))
        browser.close()
        browser.switch_to.window(first)
