"""The store the history and FHIR routers read, and which patients a token may read.

`HistoryStore` is opened by the app's lifespan: it creates the history indexes
(`sinks.observation_history.HISTORY_INDEXES`) in a background thread, so an API whose
MongoDB is down still starts and serves the event stream; history requests then get 503.
A patient is readable with `events:all`, with `patient:<id>`, or with `hospital:<id>` of the
patient's hospital. A patient outside the token's scope is a 403 whether or not it exists,
so that a token cannot probe for other hospitals' patients; a missing patient inside it is
a 404.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Request, status
from pymongo.database import Database
from pymongo.errors import PyMongoError

from api.auth import Access, require_access
from flows.settings import Settings
from sinks.mongo_database import TRANSIENT_MONGO_ERRORS, open_database
from sinks.observation_history import ensure_history_indexes

__all__ = [
    "HistoryStore",
    "check_patient",
    "get_database",
    "patients_in_scope",
    "readable_patient",
    "store_errors",
]

logger = logging.getLogger(__name__)

Document = dict[str, Any]


class HistoryStore:
    """The database handle of one app, and the outcome of creating its indexes."""

    def __init__(self, settings: Settings) -> None:
        self.database: Database[Document] = open_database(
            settings.mongo_url, settings.mongo_db, timeout_seconds=settings.mongo_timeout_seconds
        )
        self.indexes: list[str] | None = None
        self._thread = threading.Thread(
            target=self._ensure_indexes, name="vitalflow-history-indexes", daemon=True
        )

    def start(self) -> None:
        """Create the history indexes in the background."""
        self._thread.start()

    def wait_for_indexes(self, timeout: float) -> bool:
        """Wait until the index creation has ended; return True if it succeeded."""
        self._thread.join(timeout)
        return self.indexes is not None

    def close(self) -> None:
        """Close the database client."""
        self.database.client.close()

    def _ensure_indexes(self) -> None:
        try:
            self.indexes = ensure_history_indexes(self.database)
        except PyMongoError as exc:
            logger.warning("history indexes not created (queries will scan): %s", exc)
            return
        logger.info("history indexes ready: %s", ", ".join(self.indexes) or "none")


def get_database(request: Request) -> Database[Document]:
    """FastAPI dependency: the database the history is read from."""
    store: HistoryStore = request.app.state.history_store
    return store.database


@contextlib.contextmanager
def store_errors() -> Iterator[None]:
    """Turn "the store is unreachable" into a 503, which a client may retry."""
    try:
        yield
    except TRANSIENT_MONGO_ERRORS as exc:
        raise HTTPException(
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=f"the observation store is unavailable: {type(exc).__name__}",
            headers={"Retry-After": "5"},
        ) from None


def patients_in_scope(access: Access) -> Document | None:
    """Return the `patients` filter of what the token may read; None when it may read none."""
    if access.everything:
        return {}
    clauses: list[Document] = []
    if access.patients:
        clauses.append({"_id": {"$in": sorted(access.patients)}})
    if access.hospitals:
        clauses.append({"hospital_id": {"$in": sorted(access.hospitals)}})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$or": clauses}


def readable_patient(
    patient_id: Annotated[str, Path(description="The patient's id (`patients._id`)")],
    access: Annotated[Access, Depends(require_access)],
    db: Annotated[Database[Document], Depends(get_database)],
) -> Document:
    """FastAPI dependency: the patient document, or 403 (outside the scope) or 404."""
    return check_patient(patient_id, access, db)


def check_patient(patient_id: str, access: Access, db: Database[Document]) -> Document:
    """Return the patient document; 403 when outside the token's scope, 404 when missing."""
    if not (access.everything or patient_id in access.patients or access.hospitals):
        raise _out_of_scope()
    with store_errors():
        patient = db.patients.find_one({"_id": patient_id}, {"hospital_id": 1})
    hospital = patient.get("hospital_id") if patient else None
    if not access.can_see(patient_id, hospital):
        raise _out_of_scope()
    if patient is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no patient {patient_id!r}")
    return patient


def _out_of_scope() -> HTTPException:
    return HTTPException(
        status.HTTP_403_FORBIDDEN, detail="the token does not grant access to this patient"
    )
