"""The command line: flags win over the environment, and each command gets the settings read once.

The flag-over-environment tests run `vitalflow` in a fresh interpreter, because the bug they
guard against happened at import time (the flow built from the environment when the CLI
imported it); Bytewax's runner is replaced by one that reports the flow it was given.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flows.cli import build_parser, settings_from

# Runs `main(argv)` with Bytewax's runner replaced; prints what the flow would connect to.
_RUN_WITHOUT_BYTEWAX = """
import json, sys
import bytewax.run

def report(flow, **options):
    target = flow.substeps[0].source._target
    print(json.dumps({
        "mqtt": [target.host, target.port],
        "workers": options["workers_per_process"],
        "recovery": options["recovery_config"] is not None,
    }))

bytewax.run.cli_main = report
from flows.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _vitalflow_run(tmp_path: Path, env: dict[str, str], *flags: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VITALFLOW_")}
    return subprocess.run(
        [sys.executable, "-c", _RUN_WITHOUT_BYTEWAX, "run", "--no-recovery", *flags],
        # No `.env` of the developer's in the way: the test says the whole environment.
        cwd=tmp_path,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_an_mqtt_url_flag_wins_over_a_garbage_environment_value(tmp_path: Path) -> None:
    result = _vitalflow_run(
        tmp_path,
        {"VITALFLOW_MQTT_URL": "garbage", "VITALFLOW_WORKERS": "many"},
        "--mqtt-url",
        "mqtt://flag.example.test:1884",
        "--workers",
        "2",
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == {
        "mqtt": ["flag.example.test", 1884],
        "workers": 2,
        "recovery": False,
    }


def test_a_garbage_mqtt_url_without_a_flag_is_reported_without_a_traceback(
    tmp_path: Path,
) -> None:
    result = _vitalflow_run(tmp_path, {"VITALFLOW_MQTT_URL": "garbage"})
    assert result.returncode == 2
    assert "invalid configuration" in result.stderr
    assert "'garbage'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_setting_of_the_wrong_type_is_reported_without_a_traceback(tmp_path: Path) -> None:
    result = _vitalflow_run(tmp_path, {"VITALFLOW_WORKERS": "many"})
    assert result.returncode == 2
    assert "invalid configuration" in result.stderr
    assert "Traceback" not in result.stderr


def test_settings_take_the_flags_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VITALFLOW_MONGO_DB", "from_environment")
    monkeypatch.setenv("VITALFLOW_MQTT_URL", "garbage")
    args = build_parser().parse_args(["seed", "--mqtt-url", "mqtt://flag.example.test"])
    settings = settings_from(args)
    assert settings.mqtt_url == "mqtt://flag.example.test"
    assert settings.mongo_db == "from_environment"


def test_no_recovery_turns_recovery_off_whatever_the_environment_says(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("VITALFLOW_RECOVERY_DIR", str(tmp_path))
    assert settings_from(build_parser().parse_args(["run", "--no-recovery"])).recovery_dir is None
