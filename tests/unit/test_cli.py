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


def test_a_bad_mqtt_url_scheme_is_reported_clearly_and_never_shows_the_password(
    tmp_path: Path,
) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VITALFLOW_")}
    env = {**clean, "VITALFLOW_MQTT_URL": "htp://user:s3cret@host"}
    results = [
        subprocess.run(
            command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        for command in (
            [sys.executable, "-m", "flows.cli", "run", "--no-recovery"],
            # Bytewax's own runner: a traceback, but still no password in it.
            [sys.executable, "-m", "bytewax.run", "flows.pipeline:flow"],
        )
    ]
    for result in results:
        assert result.returncode != 0
        assert "s3cret" not in result.stderr + result.stdout
        assert "must look like mqtt://host:port" in result.stderr
    assert results[0].returncode == 2
    assert "VITALFLOW_MQTT_URL (--mqtt-url)" in results[0].stderr
    assert "Traceback" not in results[0].stderr


def test_a_misspelt_variable_is_warned_about_with_the_setting_it_resembles(
    tmp_path: Path,
) -> None:
    (tmp_path / ".env").write_text("VITALFLOW_JWT_SECERT=x\n")
    result = _vitalflow_run(tmp_path, {"VITALFLOW_MONGO_URLL": "mongodb://elsewhere"})
    assert result.returncode == 0, result.stderr
    assert "VITALFLOW_MONGO_URLL (set in the environment) is not a vitalflow setting" in (
        result.stderr
    )
    assert "did you mean VITALFLOW_MONGO_URL?" in result.stderr
    assert "VITALFLOW_JWT_SECERT (set in .env)" in result.stderr
    assert "did you mean VITALFLOW_JWT_SECRET?" in result.stderr


def test_the_start_line_names_the_mongo_url_without_its_password(tmp_path: Path) -> None:
    result = _vitalflow_run(
        tmp_path, {"VITALFLOW_MONGO_URL": "mongodb://flow:s3cret@db.example.test:27017"}
    )
    assert result.returncode == 0, result.stderr
    assert "mongo mongodb://flow:***@db.example.test:27017 db vitalflow" in result.stderr
    assert "s3cret" not in result.stderr


def test_secrets_come_from_files_below_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "VITALFLOW_JWT_SECRET").write_text("from-a-file-0123456789abcdef0123\n")
    (secrets / "vitalflow_mongo_url").write_text("mongodb://flow:pw@db.example.test\n")
    (secrets / "VITALFLOW_MONGO_DB").write_text("from_file\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VITALFLOW_JWT_SECRET", raising=False)
    monkeypatch.delenv("VITALFLOW_MONGO_URL", raising=False)
    monkeypatch.setenv("VITALFLOW_MONGO_DB", "from_environment")
    parser = build_parser()
    settings = settings_from(parser.parse_args(["run"]), secrets)
    assert settings.jwt_secret == "from-a-file-0123456789abcdef0123"
    assert settings.mongo_url == "mongodb://flow:pw@db.example.test"
    assert settings.mongo_db == "from_environment"


def test_the_secrets_dir_flag_reaches_the_command_and_a_missing_one_is_an_error(
    tmp_path: Path,
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "VITALFLOW_MQTT_URL").write_text("mqtt://user:pw@from-a-file.example.test:1885")
    (secrets / "VITALFLOW_MQTT_URLL").write_text("typo")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VITALFLOW_")}
    found = subprocess.run(
        [
            sys.executable,
            "-c",
            _RUN_WITHOUT_BYTEWAX,
            "--secrets-dir",
            str(secrets),
            "run",
            "--no-recovery",
        ],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout.splitlines()[-1])["mqtt"] == ["from-a-file.example.test", 1885]
    assert "did you mean VITALFLOW_MQTT_URL?" in found.stderr
    missing = _vitalflow_run(tmp_path, {"VITALFLOW_SECRETS_DIR": str(tmp_path / "nowhere")})
    assert missing.returncode == 2
    assert "secrets directory" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_kafka_compression_is_lz4_by_default_a_flag_sets_it_and_an_unknown_codec_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("VITALFLOW_KAFKA_COMPRESSION", raising=False)
    monkeypatch.chdir(tmp_path)  # no developer's `.env`
    assert settings_from(build_parser().parse_args(["seed"])).kafka_compression == "lz4"
    args = build_parser().parse_args(["seed", "--kafka-compression", "none"])
    assert settings_from(args).kafka_compression == "none"
    # snappy and zstd need libraries the project does not install: said at start, not at
    # the first batch.
    result = _vitalflow_run(tmp_path, {"VITALFLOW_KAFKA_COMPRESSION": "snappy"})
    assert result.returncode == 2
    assert "VITALFLOW_KAFKA_COMPRESSION" in result.stderr and "lz4" in result.stderr
    assert "Traceback" not in result.stderr
