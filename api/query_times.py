"""Times in query strings, read alike by the history routes and `/alerts`.

A time is ISO 8601; one without an offset is taken as UTC. Bad input is a 422 whose `detail`
names the parameter, in the shape FastAPI gives its own validation errors, so that a client
reads both the same way.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import HTTPException, status

__all__ = ["as_utc", "invalid_parameter"]


def invalid_parameter(parameter: str, message: str) -> HTTPException:
    """Return the 422 for a bad query parameter."""
    return HTTPException(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        detail=[{"loc": ["query", parameter], "msg": message, "type": "value_error"}],
    )


def as_utc(parameter: str, moment: datetime | None) -> datetime | None:
    """Return `moment` in UTC (UTC if it has no offset); a 422 if UTC has no such date."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        # Year 1 with a positive offset, or 9999-12-31 with a negative one.
        msg = f"{parameter} ({moment.isoformat()}) is outside the dates UTC can hold"
        raise invalid_parameter(parameter, msg) from None
