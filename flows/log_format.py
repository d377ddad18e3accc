"""How vitalflow's commands log: lines of text, or one JSON object a line for log shippers.

`--log-format json` (or VITALFLOW_LOG_FORMAT=json) gives every record as
`{"time", "level", "logger", "message"}`, plus `message_id` and `step` when the record is
about one message (passed as `extra=` by the flow's log calls) and `exception` with the
traceback when there is one. The messages are the same as in text: personal data stays out
of them as it does of step events (`flows.redact`), and as a last guard every line, of any
logger (a driver's error quoting a query, say), has its citizen-ID-shaped runs of 13 digits
redacted.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

from typing_extensions import override

from flows.redact import scrub_citizen_ids

__all__ = ["LOG_FORMATS", "JsonFormatter", "LogFormat", "ScrubbingFormatter", "configure_logging"]

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Record attributes a log call may set through `extra=` and that the JSON line carries.
_MESSAGE_FIELDS = ("message_id", "step")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    @override
    def format(self, record: logging.LogRecord) -> str:
        created = datetime.fromtimestamp(record.created, UTC)
        line: dict[str, Any] = {
            "time": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _MESSAGE_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = str(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class ScrubbingFormatter(logging.Formatter):
    """`inner`'s lines with citizen IDs redacted (`flows.redact.scrub_citizen_ids`)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self._inner = inner

    @override
    def format(self, record: logging.LogRecord) -> str:
        return scrub_citizen_ids(self._inner.format(record))


def configure_logging(level: str, log_format: LogFormat) -> None:
    """Send every record at `level` or above to stderr, as text or as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    json_lines = log_format == "json"
    lines = JsonFormatter() if json_lines else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(ScrubbingFormatter(lines))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # kafka-python narrates every connection at INFO.
    logging.getLogger("kafka").setLevel(logging.WARNING)
