"""The `vitalflow` command line: run, api, simulate, seed, dlq replay, fhir export, alerts, demo.

This module only parses and dispatches: the settings are built once here and handed to the
command's function in `flows.commands.<command>`. Every setting of `Settings` is also a
flag (`VITALFLOW_MQTT_URL` is `--mqtt-url`); a flag given on the command line wins over the
environment and `.env`, even over an invalid value there, and both win over the files of the
secrets directory (`--secrets-dir`). A `VITALFLOW_*` name that is no setting is warned about.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, get_args

from pydantic import ValidationError

from flows.log_format import LOG_FORMATS, configure_logging
from flows.settings import (
    DEFAULT_SECRETS_DIR,
    Settings,
    describe_errors,
    unknown_variables,
    vitalflow_variables,
)

__all__ = ["main"]

logger = logging.getLogger("vitalflow")


def _add_settings_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("settings (each also VITALFLOW_<NAME> in the environment)")
    for name, info in Settings.model_fields.items():
        types = [
            t for t in (get_args(info.annotation) or (info.annotation,)) if t is not type(None)
        ]
        kind = types[0] if types else str
        flag = "--" + name.replace("_", "-")
        if kind is bool:
            group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None)
        else:
            convert: Any = kind if kind in (int, float, Path) else str
            group.add_argument(flag, dest=name, type=convert, default=None, metavar=name.upper())


class ConfigurationError(Exception):
    """A configuration the CLI cannot start with, said in a sentence."""


def settings_from(args: argparse.Namespace, secrets_dir: Path | None = None) -> Settings:
    """Build the settings: secret files, `.env`, environment, overridden by the flags given."""
    given = {
        n: getattr(args, n) for n in Settings.model_fields if getattr(args, n, None) is not None
    }
    if getattr(args, "no_recovery", False):
        given["recovery_dir"] = None
    return Settings(**given, _secrets_dir=secrets_dir)  # type: ignore[call-arg]


def secrets_dir_of(args: argparse.Namespace, variables: dict[str, tuple[str, str]]) -> Path | None:
    """Return the secrets directory: the flag, else VITALFLOW_SECRETS_DIR, else the default."""
    chosen = args.secrets_dir or variables.get("VITALFLOW_SECRETS_DIR", ("", ""))[0]
    if not chosen:
        return DEFAULT_SECRETS_DIR if DEFAULT_SECRETS_DIR.is_dir() else None
    directory = Path(chosen)
    if not directory.is_dir():
        msg = f"secrets directory {directory} does not exist or is not a directory"
        raise ConfigurationError(msg)
    return directory


# Each handler maps the parsed arguments of its command onto the command's function; the
# commands are imported when chosen, so `vitalflow --help` loads none of Bytewax, uvicorn or Kafka.


def _run(settings: Settings, args: argparse.Namespace) -> int:
    from flows.commands.run import run_dataflow

    return run_dataflow(settings)


def _api(settings: Settings, args: argparse.Namespace) -> int:
    from flows.commands.api import serve_api

    return serve_api(settings)


def _simulate(settings: Settings, args: argparse.Namespace) -> int:
    from flows.commands.simulate import simulate

    return simulate(
        settings,
        rate=args.rate,
        duration=args.duration,
        count=args.count,
        patients=args.patients,
        seed=args.seed,
        duplicate_fraction=args.duplicate_fraction,
        malformed_fraction=args.malformed_fraction,
        unknown_fraction=args.unknown_fraction,
        sos_fraction=args.sos_fraction,
    )


def _seed(settings: Settings, args: argparse.Namespace) -> int:
    from flows.commands.seed import seed

    return seed(settings, roster_seed=args.seed, patients=args.patients)


def _dlq_replay(settings: Settings, args: argparse.Namespace) -> int:
    from flows.commands.dlq_replay import replay

    return replay(
        settings,
        group_id=args.group_id,
        from_beginning=args.from_beginning,
        limit=args.limit,
        codes=set(args.code) if args.code else None,
        dry_run=args.dry_run,
        timeout_s=args.timeout,
    )


def _fhir_export(settings: Settings, args: argparse.Namespace) -> int:
    from flows.commands.fhir_export import export

    return export(
        settings, since=args.since, out=args.out, patient_id=args.patient, hospital_id=args.hospital
    )


def _alerts_webhook(settings: Settings, args: argparse.Namespace) -> int:
    from flows.commands.alert_webhook import serve_webhook

    return serve_webhook(settings)


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from flows.commands.demo import run_demo

    return run_demo(
        settings,
        data_dir=args.data_dir,
        rate=args.rate,
        duration=args.duration,
        log_level=args.log_level,
    )


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the whole command line."""
    parser = argparse.ArgumentParser(
        prog="vitalflow", description="Live medical-device telemetry pipeline."
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=None,
        help="text, or json: one JSON object a line (default: VITALFLOW_LOG_FORMAT, else text)",
    )
    parser.add_argument(
        "--secrets-dir",
        default=None,
        help="a directory of files named like the variables (VITALFLOW_JWT_SECRET, ...) holding "
        f"their values (default: VITALFLOW_SECRETS_DIR, else {DEFAULT_SECRETS_DIR} if it exists)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the dataflow against the configured services")
    run.add_argument("--no-recovery", action="store_true", help="run without Bytewax recovery")
    _add_settings_flags(run)
    run.set_defaults(handler=_run)

    api = commands.add_parser("api", help="serve the SSE API and the dashboard")
    _add_settings_flags(api)
    api.set_defaults(handler=_api)

    simulate = commands.add_parser("simulate", help="publish realistic device traffic")
    simulate.add_argument("--rate", type=float, default=10.0, help="messages per second")
    simulate.add_argument(
        "--duration", type=float, default=None, help="seconds (default: until --count or Ctrl-C)"
    )
    simulate.add_argument("--count", type=int, default=None, help="messages to publish")
    simulate.add_argument(
        "--patients", type=int, default=12, help="patients in the roster (as seeded)"
    )
    simulate.add_argument("--seed", type=int, default=7, help="roster and traffic seed (as seeded)")
    simulate.add_argument("--duplicate-fraction", type=float, default=0.05)
    simulate.add_argument("--malformed-fraction", type=float, default=0.02)
    simulate.add_argument("--unknown-fraction", type=float, default=0.03)
    simulate.add_argument("--sos-fraction", type=float, default=0.005)
    _add_settings_flags(simulate)
    simulate.set_defaults(handler=_simulate)

    seed = commands.add_parser("seed", help="register the demo patients and their devices")
    seed.add_argument("--patients", type=int, default=12)
    seed.add_argument("--seed", type=int, default=7)
    _add_settings_flags(seed)
    seed.set_defaults(handler=_seed)

    dlq = commands.add_parser("dlq", help="dead letters")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True)
    replay = dlq_commands.add_parser(
        "replay",
        help="re-publish dead letters (exact bytes) under the replay prefix the flow listens on",
        description="Re-publish dead letters to <mqtt-replay-prefix>/<delivery>/<original topic>: "
        "the flow processes each as its original topic's message, never as a duplicate, and "
        "stores nothing twice.",
    )
    replay.add_argument(
        "--from-beginning", action="store_true", help="replay all, not only new ones"
    )
    replay.add_argument("--limit", type=int, default=None)
    replay.add_argument("--code", action="append", help="only this error code (repeatable)")
    replay.add_argument("--dry-run", action="store_true")
    replay.add_argument(
        "--group-id",
        default="vitalflow-dlq-replay",
        help="consumer group: letters already replayed (or passed over by --code) by this group "
        "are not replayed again unless --from-beginning",
    )
    replay.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for letters")
    _add_settings_flags(replay)
    replay.set_defaults(handler=_dlq_replay)

    fhir = commands.add_parser("fhir", help="FHIR R4")
    fhir_commands = fhir.add_subparsers(dest="fhir_command", required=True)
    export = fhir_commands.add_parser(
        "export",
        help="write a patient's or a hospital's Observations as FHIR NDJSON (Bulk Data format)",
    )
    export.add_argument(
        "--since",
        required=True,
        type=datetime.fromisoformat,
        help="observations stored at or after this ISO 8601 time (with its zone)",
    )
    whose = export.add_mutually_exclusive_group(required=True)
    whose.add_argument("--patient", help="one patient's id")
    whose.add_argument("--hospital", help="the patients of this hospital")
    export.add_argument("--out", type=Path, required=True, help="the .ndjson file to write")
    _add_settings_flags(export)
    export.set_defaults(handler=_fhir_export)

    alerts = commands.add_parser("alerts", help="alerts")
    alerts_commands = alerts.add_subparsers(dest="alerts_command", required=True)
    webhook = alerts_commands.add_parser(
        "webhook",
        help="POST every alert to VITALFLOW_ALERT_WEBHOOK_URL, HMAC-signed, retried with backoff",
        description="A consumer group of its own on the alerts topic (VITALFLOW_ALERT_WEBHOOK_"
        "GROUP): resumes after a restart where it stopped, and never slows the flow down.",
    )
    _add_settings_flags(webhook)
    webhook.set_defaults(handler=_alerts_webhook)

    demo = commands.add_parser(
        "demo",
        help="the whole system on embedded defaults, no servers needed",
        description=(
            "Starts an embedded MQTT broker (amqtt), an embedded document store (montydb, on "
            "disk), an embedded event log (SQLite, with Kafka's position semantics), the "
            "dataflow, the simulator and the API with the dashboard on http://127.0.0.1:8000 "
            "(auth off). Set VITALFLOW_MQTT_URL, VITALFLOW_MONGO_URL, VITALFLOW_KAFKA_BOOTSTRAP "
            "or VITALFLOW_EVENT_LOG_URL (or the matching flags) to use a real service instead. "
            "Data and logs go to --data-dir; delete it to start over."
        ),
    )
    demo.add_argument("--data-dir", type=Path, default=Path(".vitalflow/demo"))
    demo.add_argument("--rate", type=float, default=5.0, help="simulated messages per second")
    demo.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    _add_settings_flags(demo)
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `vitalflow` command line."""
    args = build_parser().parse_args(argv)
    # Read once, here: every command gets these settings and reads no environment itself.
    variables = vitalflow_variables()
    log_format = args.log_format or variables.get("VITALFLOW_LOG_FORMAT", ("text", ""))[0]
    configure_logging(args.log_level, "json" if log_format.lower() == "json" else "text")
    if log_format.lower() not in LOG_FORMATS:
        logger.error(
            "vitalflow %s: invalid configuration: VITALFLOW_LOG_FORMAT (--log-format): "
            "must be one of %s",
            args.command,
            ", ".join(LOG_FORMATS),
        )
        return 2
    try:
        secrets_dir = secrets_dir_of(args, variables)
        for warning in unknown_variables(variables, secrets_dir):
            logger.warning("vitalflow %s: %s", args.command, warning)
        settings = settings_from(args, secrets_dir)
        return int(args.handler(settings, args))
    except ValidationError as exc:
        # A setting with a value of the wrong kind: say which, without a traceback and without
        # the value, which may be a secret.
        logger.error("vitalflow %s: invalid configuration: %s", args.command, describe_errors(exc))
        return 2
    except ConfigurationError as exc:
        logger.error("vitalflow %s: invalid configuration: %s", args.command, exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
