"""Opening the MongoDB database vitalflow stores into, with the options every user needs.

Every failure is logged with the server it came from (never its password): an outage while it
is waited out (`sinks.backoff`), an error that stops the flow, the write errors of a batch,
and, at start, a server that does not answer (`check_database`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar, cast

from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    ConnectionFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
)

from sinks.backoff import call_with_backoff

__all__ = [
    "TRANSIENT_MONGO_ERRORS",
    "check_database",
    "log_write_errors",
    "mongo_call",
    "open_database",
    "server_name",
    "write_errors",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_DUPLICATE_KEY = 11000

# Kept here rather than imported so that a MongoDB deployment never imports montydb.
EMBEDDED_SCHEME = "montydb://"

# Errors that mean "the server is not there right now", worth waiting out.
TRANSIENT_MONGO_ERRORS: tuple[type[BaseException], ...] = (
    AutoReconnect,
    ConnectionFailure,
    ServerSelectionTimeoutError,
)


def open_database(
    url: str, name: str, *, timeout_seconds: float = 30.0
) -> Database[dict[str, Any]]:
    """Connect (lazily) to the server at `url` and return its database `name`.

    A `montydb://` URL opens the demo's embedded store instead of a MongoDB server.
    `timeout_seconds` bounds every wait for an answer.
    """
    if url.startswith(EMBEDDED_SCHEME):
        from sinks.embedded_store import open_embedded_database

        # A stand-in with the subset of pymongo's Database that vitalflow uses, not a subclass.
        return cast(
            "Database[dict[str, Any]]",
            open_embedded_database(url, name),
        )
    timeout_ms = int(timeout_seconds * 1000)
    # Every wait is bounded: a server that stops answering mid-call raises a network timeout
    # (retried by `mongo_call`, every write being idempotent) instead of stalling the flow.
    try:
        client: MongoClient[dict[str, Any]] = MongoClient(
            url,
            tz_aware=True,
            serverSelectionTimeoutMS=5000,
            connectTimeoutMS=5000,
            socketTimeoutMS=timeout_ms,
            appname="vitalflow",
        )
    except (PyMongoError, ValueError) as exc:
        logger.error("MongoDB %s cannot be used: %s", _masked(url), exc)
        raise
    return client[name]


def check_database(url: str, name: str, *, timeout_seconds: float = 30.0) -> None:
    """Ping the server at `url` until it answers, saying while it does not (at start).

    Without it a store that is away or refuses vitalflow's credentials would be reported only
    once the first message needs it. Nothing to reach for the embedded store.
    """
    if url.startswith(EMBEDDED_SCHEME):
        return
    db = open_database(url, name, timeout_seconds=timeout_seconds)
    server = server_name(db)
    try:
        mongo_call(db, "ping", lambda: db.command("ping"))
    except PyMongoError:
        return  # logged with its server by `mongo_call`; the flow meets it again when it writes
    finally:
        db.client.close()
    logger.info("MongoDB %s answers", server)


def server_name(db: Database[dict[str, Any]]) -> str:
    """Return the servers and database `db` talks to, for logs (never with a password)."""
    name = getattr(db, "name", "?")
    try:
        nodes = db.client.topology_description.server_descriptions()
    except AttributeError:
        return f"the embedded store/{name}"
    return "mongodb " + ",".join(f"{host}:{port}" for host, port in nodes) + f"/{name}"


def mongo_call(db: Database[dict[str, Any]], what: str, call: Callable[[], T]) -> T:
    """Run one call on `db`, waiting out outages, reported while slow (`sinks.waiting`).

    Any other error is logged with the server before it is raised; a batch's write errors are
    for the caller (`write_errors`).
    """
    server = server_name(db)
    try:
        return call_with_backoff(call, what, TRANSIENT_MONGO_ERRORS, server=server)
    except BulkWriteError:
        raise
    except PyMongoError as exc:
        logger.error("%s on %s failed: %s: %s", what, server, type(exc).__name__, exc)
        raise


def log_write_errors(db: Database[dict[str, Any]], what: str, errors: dict[int, str]) -> None:
    """Log, with the server, that some writes of a batch failed (they become error events)."""
    if errors:
        first = errors[min(errors)]
        logger.warning(
            "%s on %s: %d write error(s), the first: %s", what, server_name(db), len(errors), first
        )


def write_errors(
    db: Database[dict[str, Any]], write: Callable[[], object], what: str
) -> dict[int, str]:
    """Run a bulk write on `db`, waiting out outages; return its errors by operation index.

    A duplicate key counts as done: the document is there from an earlier pass.
    """
    try:
        mongo_call(db, what, write)
    except BulkWriteError as exc:
        errors: dict[int, str] = {}
        for error in exc.details.get("writeErrors", []):
            if error.get("code") == _DUPLICATE_KEY or "duplicate key" in str(
                error.get("errmsg", "")
            ):
                continue
            errors[int(error["index"])] = f"{what}: {error.get('errmsg', 'write error')}"
        log_write_errors(db, what, errors)
        return errors
    return {}


def _masked(url: str) -> str:
    # Whatever precedes the last `@` counts as credentials (flows.settings.without_password).
    if "@" not in url:
        return url
    scheme, sep, _credentials = url.rpartition("@")[0].partition("://")
    return f"{scheme}{sep}***@{url.rpartition('@')[2]}"
