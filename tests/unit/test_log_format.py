"""`--log-format json`: every line on stderr is one JSON object, with message id and step when
the record is about one message."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from flows.log_format import TEXT_FORMAT, JsonFormatter, ScrubbingFormatter
from sinks.kafka_writer import _message_of

# `vitalflow` with Bytewax's runner replaced by one that logs a line about a message and fails.
_RUN_WITHOUT_BYTEWAX = """
import logging, sys
import bytewax.run

def report(flow, **options):
    logging.getLogger("flows.parse").warning(
        "about one message", extra={"message_id": "m-1", "step": "2_payload_parsed"}
    )
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("vitalflow").exception("with a traceback")

bytewax.run.cli_main = report
from flows.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _vitalflow(tmp_path: Path, env: dict[str, str], *arguments: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VITALFLOW_")}
    return subprocess.run(
        [sys.executable, "-c", _RUN_WITHOUT_BYTEWAX, *arguments],
        cwd=tmp_path,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _json_lines(stderr: str) -> list[dict[str, str]]:
    lines = [json.loads(line) for line in stderr.splitlines()]
    assert lines, "nothing logged"
    for line in lines:
        assert {"time", "level", "logger", "message"} <= line.keys()
        assert line["time"].endswith("Z")
    return lines


def test_every_line_of_a_json_run_is_a_json_object_with_message_id_and_step(
    tmp_path: Path,
) -> None:
    result = _vitalflow(
        tmp_path,
        {
            "VITALFLOW_MONGO_URL": "mongodb://flow:s3cret@db.example.test:27017",
            "VITALFLOW_MQTT_URLL": "typo",
        },
        "--log-format",
        "json",
        "run",
        "--no-recovery",
    )
    assert result.returncode == 0, result.stderr
    lines = _json_lines(result.stderr)
    messages = [line["message"] for line in lines]
    assert any("did you mean VITALFLOW_MQTT_URL?" in m for m in messages)
    assert any(m.startswith("vitalflow run: mqtt ") for m in messages)
    [about] = [line for line in lines if line["message"] == "about one message"]
    assert about["message_id"] == "m-1"
    assert about["step"] == "2_payload_parsed"
    assert about["logger"] == "flows.parse"
    assert about["level"] == "WARNING"
    [failed] = [line for line in lines if line["message"] == "with a traceback"]
    assert "RuntimeError: boom" in failed["exception"]
    assert "s3cret" not in result.stderr


def test_the_environment_chooses_json_and_a_configuration_error_is_json_too(
    tmp_path: Path,
) -> None:
    result = _vitalflow(
        tmp_path,
        {"VITALFLOW_LOG_FORMAT": "json", "VITALFLOW_MQTT_URL": "htp://user:s3cret@host"},
        "run",
    )
    assert result.returncode == 2
    [line] = _json_lines(result.stderr)
    assert line["level"] == "ERROR"
    assert "VITALFLOW_MQTT_URL (--mqtt-url)" in line["message"]
    assert "s3cret" not in result.stderr


def test_an_unknown_log_format_is_an_error(tmp_path: Path) -> None:
    result = _vitalflow(tmp_path, {"VITALFLOW_LOG_FORMAT": "xml"}, "run")
    assert result.returncode == 2
    assert "VITALFLOW_LOG_FORMAT (--log-format): must be one of text, json" in result.stderr


def test_a_record_without_a_message_carries_no_message_fields() -> None:
    record = logging.LogRecord("vitalflow", logging.INFO, __file__, 1, "plain %s", ("line",), None)
    assert set(json.loads(JsonFormatter().format(record))) == {"time", "level", "logger", "message"}


def test_a_refused_record_is_logged_with_the_message_it_was_about() -> None:
    event = {"specversion": "1.0", "data": {"message_id": "m-2", "step": "5_medical_stored"}}
    letter = {"message_id": "m-3", "reason": {"step": "2_payload_parsed", "code": "bad"}}
    assert _message_of(json.dumps(event).encode()) == {
        "message_id": "m-2",
        "step": "5_medical_stored",
    }
    assert _message_of(json.dumps(letter).encode()) == {
        "message_id": "m-3",
        "step": "2_payload_parsed",
    }
    assert _message_of(b"\x00not json") == {}


def test_a_citizen_id_in_any_logger_s_line_is_redacted_and_message_ids_kept() -> None:
    # A driver's error may quote a query: the lookup's `$in` holds registry keys.
    text = 'devices lookup failed: {"_id": {"$in": ["citizen_id:3570300400000"]}}'
    message_id = "3a7d1500000000000000f000abc1e2f3"
    record = logging.LogRecord(
        "sinks.mongo_database", logging.ERROR, __file__, 1, "%s (%s)", (text, message_id), None
    )
    for inner in (JsonFormatter(), logging.Formatter(TEXT_FORMAT)):
        line = ScrubbingFormatter(inner).format(record)
        assert "3570300400000" not in line
        assert "citizen_id:[redacted]" in line
        assert message_id in line
