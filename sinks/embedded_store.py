"""The embedded document store of `vitalflow demo`: montydb on disk, behind pymongo's interface.

`open_database` returns an `EmbeddedDatabase` when the URL it is given is
`montydb:///<directory>`, so the flow, the seed and the API run the same code on it as on
MongoDB. montydb (SQLite storage, one file per collection) enforces `_id` uniqueness, which is
all vitalflow's idempotency relies on, and queries like MongoDB; this adapter adds what it
lacks or does differently:

- `bulk_write` (montydb has none), applied one operation at a time;
- `insert_many(ordered=False)` that inserts every document it can and reports duplicates in a
  pymongo `BulkWriteError` (montydb inserts nothing and raises a bare `sqlite3` error);
- pymongo's exceptions instead of montydb's, and "database is locked" as `AutoReconnect`, so
  the flow's retry on transient store errors covers it;
- one montydb client per thread, because montydb's SQLite engine keeps its current connection
  on the client and two threads sharing one would trip over each other;
- one idle SQLite connection per collection file kept open for the life of the process:
  montydb opens and closes a connection for every operation, and closing the last
  connection of a WAL database checkpoints it and deletes the WAL, which made every write
  ten times slower (about 15 ms instead of 1.5 ms here).

Each operation opens and commits its own SQLite transaction (WAL journal), so several
processes may read while one writes; writers from several processes are serialised by SQLite.
Every write does a full scan when it needs to match a filter: fine for a demo's patients and
devices, not for production volumes.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import montydb  # type: ignore[import-untyped]
import montydb.errors  # type: ignore[import-untyped]
from pymongo import DeleteMany, DeleteOne, InsertOne, ReplaceOne, UpdateMany, UpdateOne
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    DuplicateKeyError,
    OperationFailure,
    WriteError,
)
from pymongo.results import (
    BulkWriteResult,
    DeleteResult,
    InsertManyResult,
    InsertOneResult,
    UpdateResult,
)

__all__ = [
    "EMBEDDED_SCHEME",
    "EmbeddedClient",
    "EmbeddedCollection",
    "EmbeddedDatabase",
    "open_embedded_database",
]

EMBEDDED_SCHEME = "montydb://"

_DUPLICATE_KEY = 11000
# montydb marks a configured repository with this file (montydb.configure), and its SQLite
# engine keeps each collection in `<repository>/<database>/<collection>.collection`.
_STORAGE_MARKER = ".monty.storage"
_COLLECTION_SUFFIX = ".collection"

_kept_open: dict[str, sqlite3.Connection] = {}
_files_lock = threading.Lock()

Document = dict[str, Any]


def open_embedded_database(url: str, name: str) -> EmbeddedDatabase:
    """Open (creating it if needed) database `name` in the montydb repository `url` names.

    `url` is `montydb:///absolute/dir` or `montydb://relative/dir`, as montydb spells it.
    """
    if not url.startswith(EMBEDDED_SCHEME):
        msg = f"an embedded store URL starts with {EMBEDDED_SCHEME!r}, got {url!r}"
        raise ValueError(msg)
    repository = Path(url.removeprefix(EMBEDDED_SCHEME) or ".")
    if not (repository / _STORAGE_MARKER).is_file():
        # Configure once only: montydb rewrites its config files on every `set_storage`, and
        # another process reading them half-written would pick the wrong engine. BSON gives
        # the same types back as pymongo (its datetimes, its UTC tzinfo).
        montydb.set_storage(str(repository), storage="sqlite", use_bson=True)
    return EmbeddedDatabase(str(repository), name)


def _keep_open(path: Path) -> None:
    """Hold an idle connection to the collection file once it exists, for the process's life.

    It never reads or writes, so it takes no lock; it only keeps montydb's per-operation
    connections from being the last one, whose close would checkpoint the WAL every time.
    """
    key = str(path)
    if key in _kept_open:
        return
    with _files_lock:
        if key in _kept_open or not path.is_file():
            return
        # mode=rw: never create the file; montydb creates it, with its table, on first write.
        keeper = sqlite3.connect(f"file:{path}?mode=rw", uri=True, check_same_thread=False)
        # SQLite opens a file lazily: one read joins the WAL's shared memory, which is what
        # counts as "open" when another connection closes. The read ends at once, no lock held.
        keeper.execute("SELECT count(*) FROM sqlite_master").fetchone()
        _kept_open[key] = keeper


@contextlib.contextmanager
def _pymongo_errors() -> Iterator[None]:
    """Raise pymongo's exception for each montydb or SQLite one, so callers catch the same."""
    try:
        yield
    except montydb.errors.DuplicateKeyError as exc:
        raise DuplicateKeyError(str(exc), _DUPLICATE_KEY, exc.details) from exc
    except montydb.errors.WriteError as exc:
        raise WriteError(str(exc), exc.code, exc.details) from exc
    except montydb.errors.OperationFailure as exc:
        raise OperationFailure(str(exc), exc.code, exc.details) from exc
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise AutoReconnect(f"embedded store busy: {exc}") from exc
        raise OperationFailure(f"embedded store: {exc}") from exc


class EmbeddedClient:
    """A pymongo `MongoClient` look-alike over a montydb repository: `client["db"]`."""

    def __init__(self, repository: str) -> None:
        self._repository = repository

    def __getitem__(self, name: str) -> EmbeddedDatabase:
        return EmbeddedDatabase(self._repository, name)

    def get_database(self, name: str) -> EmbeddedDatabase:
        """Return database `name` (created on first write)."""
        return EmbeddedDatabase(self._repository, name)

    @property
    def admin(self) -> EmbeddedDatabase:
        """The `admin` database, for `client.admin.command("ping")`."""
        return EmbeddedDatabase(self._repository, "admin")

    def close(self) -> None:
        """Do nothing: every operation opens and closes its own SQLite connection."""


class EmbeddedDatabase:
    """A pymongo `Database` look-alike over a montydb repository: `db.name` or `db["name"]`."""

    def __init__(self, repository: str, name: str) -> None:
        self._repository = repository
        self._name = name
        self._local = threading.local()

    @property
    def name(self) -> str:
        """The database name."""
        return self._name

    @property
    def client(self) -> EmbeddedClient:
        """The client this database belongs to (`db.client.close()` works as with pymongo)."""
        return EmbeddedClient(self._repository)

    @property
    def repository(self) -> str:
        """The directory montydb keeps its files in."""
        return self._repository

    def __getitem__(self, name: str) -> EmbeddedCollection:
        return EmbeddedCollection(self, name)

    def __getattr__(self, name: str) -> EmbeddedCollection:
        if name.startswith("_"):
            raise AttributeError(name)
        return EmbeddedCollection(self, name)

    def get_collection(self, name: str) -> EmbeddedCollection:
        """Return collection `name` (created on first write)."""
        return EmbeddedCollection(self, name)

    def list_collection_names(self) -> list[str]:
        """Names of the collections that hold (or held) documents."""
        with _pymongo_errors():
            return sorted(self._client()[self._name].list_collection_names())

    def command(self, command: str | Mapping[str, Any], **_kwargs: Any) -> Document:
        """Answer `ping` like a MongoDB server does: an embedded store is always reachable."""
        name = command if isinstance(command, str) else next(iter(command), "")
        if name == "ping":
            return {"ok": 1.0}
        msg = f"the embedded store does not implement the {name!r} command"
        raise OperationFailure(msg)

    def monty_collection(self, name: str, *, for_write: bool = False) -> Any:
        """Return the montydb collection `name` of this thread's client.

        `for_write` creates the collection first if needed, under a lock: montydb creates the
        file before its table, so a second thread writing in between would find no table.
        """
        path = Path(self._repository, self._name, name + _COLLECTION_SUFFIX)
        collections: dict[str, Any] | None = getattr(self._local, "collections", None)
        if collections is None:
            collections = self._local.collections = {}
        if name not in collections:
            collections[name] = self._client()[self._name][name]
        if for_write and not path.is_file():
            with _files_lock, _pymongo_errors():
                if not path.is_file():
                    self._client()[self._name].create_collection(name)
        _keep_open(path)
        return collections[name]

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            # synchronous=NORMAL in WAL mode, as the demo's event log does: durable across
            # a crash of any process, only a power cut can lose the last commits; FULL, the
            # default, made every single-document write wait for a disk flush.
            client = self._local.client = montydb.MontyClient(
                self._repository, tz_aware=True, synchronous="NORMAL"
            )
        return client


class EmbeddedCollection:
    """A pymongo `Collection` look-alike: the operations vitalflow uses, with pymongo's results."""

    def __init__(self, database: EmbeddedDatabase, name: str) -> None:
        self._database = database
        self._name = name

    @property
    def name(self) -> str:
        """The collection name."""
        return self._name

    @property
    def full_name(self) -> str:
        """`<database>.<collection>`, as in pymongo."""
        return f"{self._database.name}.{self._name}"

    @property
    def database(self) -> EmbeddedDatabase:
        """The database this collection belongs to."""
        return self._database

    @property
    def _monty(self) -> Any:
        return self._database.monty_collection(self._name)

    @property
    def _monty_for_write(self) -> Any:
        return self._database.monty_collection(self._name, for_write=True)

    def find(self, *args: Any, **kwargs: Any) -> Any:
        """Return a cursor (montydb's, which supports `sort`, `limit`, `skip` like pymongo's)."""
        with _pymongo_errors():
            return self._monty.find(*args, **kwargs)

    def find_one(self, *args: Any, **kwargs: Any) -> Document | None:
        """Return the first matching document, or None."""
        with _pymongo_errors():
            found: Document | None = self._monty.find_one(*args, **kwargs)
            return found

    def count_documents(self, filter: Mapping[str, Any], **kwargs: Any) -> int:
        """Count the matching documents."""
        with _pymongo_errors():
            return int(self._monty.count_documents(dict(filter), **kwargs))

    def estimated_document_count(self) -> int:
        """Count every document (exactly: there is no metadata to estimate from)."""
        with _pymongo_errors():
            return int(self._monty.count_documents({}))

    def distinct(self, key: str, filter: Mapping[str, Any] | None = None) -> list[Any]:
        """Return the distinct values of `key` among the matching documents."""
        with _pymongo_errors():
            return list(self._monty.distinct(key, dict(filter) if filter else None))

    def insert_one(self, document: Document, **_kwargs: Any) -> InsertOneResult:
        """Insert one document; `DuplicateKeyError` if its `_id` is taken."""
        with _pymongo_errors():
            result = self._monty_for_write.insert_one(document)
        return InsertOneResult(result.inserted_id, acknowledged=True)

    def insert_many(
        self, documents: Sequence[Document], ordered: bool = True, **_kwargs: Any
    ) -> InsertManyResult:
        """Insert the documents one by one, as pymongo's `insert_many` would in one batch.

        Ordered: stop at the first error; unordered: insert all that can be. Either way the
        failures are reported in a `BulkWriteError` whose `details["writeErrors"]` entries
        carry the document's `index`, `code` (11000 for a taken `_id`) and `errmsg`.
        """
        self.bulk_write([InsertOne(d) for d in documents], ordered=ordered)
        return InsertManyResult([d["_id"] for d in documents], acknowledged=True)

    def update_one(
        self,
        filter: Mapping[str, Any],
        update: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        upsert: bool = False,
        array_filters: list[Mapping[str, Any]] | None = None,
        **_kwargs: Any,
    ) -> UpdateResult:
        """Update the first matching document, or insert one if `upsert` and none matches."""
        return self._update("update_one", filter, update, upsert, array_filters)

    def update_many(
        self,
        filter: Mapping[str, Any],
        update: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        upsert: bool = False,
        array_filters: list[Mapping[str, Any]] | None = None,
        **_kwargs: Any,
    ) -> UpdateResult:
        """Update every matching document, or insert one if `upsert` and none matches."""
        return self._update("update_many", filter, update, upsert, array_filters)

    def _update(
        self,
        method: str,
        filter: Mapping[str, Any],
        update: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        upsert: bool,
        array_filters: list[Mapping[str, Any]] | None,
    ) -> UpdateResult:
        with _pymongo_errors():
            result = getattr(self._monty_for_write, method)(
                dict(filter), _update_spec(update), upsert=upsert, array_filters=array_filters
            )
        return UpdateResult(result.raw_result, acknowledged=True)

    def replace_one(
        self,
        filter: Mapping[str, Any],
        replacement: Document,
        upsert: bool = False,
        **_kwargs: Any,
    ) -> UpdateResult:
        """Replace the first matching document, or insert it if `upsert` and none matches."""
        with _pymongo_errors():
            result = self._monty_for_write.replace_one(dict(filter), replacement, upsert=upsert)
        return UpdateResult(result.raw_result, acknowledged=True)

    def delete_one(self, filter: Mapping[str, Any], **_kwargs: Any) -> DeleteResult:
        """Delete the first matching document."""
        with _pymongo_errors():
            result = self._monty_for_write.delete_one(dict(filter))
        return DeleteResult(result.raw_result, acknowledged=True)

    def delete_many(self, filter: Mapping[str, Any], **_kwargs: Any) -> DeleteResult:
        """Delete every matching document."""
        with _pymongo_errors():
            result = self._monty_for_write.delete_many(dict(filter))
        return DeleteResult(result.raw_result, acknowledged=True)

    def bulk_write(
        self, requests: Sequence[Any], ordered: bool = True, **_kwargs: Any
    ) -> BulkWriteResult:
        """Apply pymongo write models (`InsertOne`, `UpdateOne`, ...) one at a time.

        Not atomic, like MongoDB's own bulk writes. Ordered: stop at the first error;
        unordered: apply all that can be. Errors come back as pymongo's `BulkWriteError`,
        with the same `details` shape as MongoDB's.
        """
        summary: dict[str, Any] = {
            "writeErrors": [],
            "writeConcernErrors": [],
            "nInserted": 0,
            "nUpserted": 0,
            "nMatched": 0,
            "nModified": 0,
            "nRemoved": 0,
            "upserted": [],
        }
        for index, request in enumerate(requests):
            try:
                self._apply(index, request, summary)
            except (WriteError, OperationFailure) as exc:
                summary["writeErrors"].append(
                    {
                        "index": index,
                        "code": exc.code,
                        "errmsg": str(exc),
                        "op": _operation_document(request),
                    }
                )
                if ordered:
                    break
        if summary["writeErrors"]:
            raise BulkWriteError(summary)
        return BulkWriteResult(summary, acknowledged=True)

    def _apply(self, index: int, request: Any, summary: dict[str, Any]) -> None:
        # pymongo's write models keep their arguments in these private attributes; pymongo
        # itself reads them the same way when it builds the wire command.
        if isinstance(request, InsertOne):
            self.insert_one(request._doc)
            summary["nInserted"] += 1
            return
        if isinstance(request, DeleteOne | DeleteMany):
            delete = self.delete_one if isinstance(request, DeleteOne) else self.delete_many
            summary["nRemoved"] += delete(request._filter).deleted_count
            return
        if isinstance(request, ReplaceOne):
            result = self.replace_one(
                request._filter, dict(request._doc), upsert=bool(request._upsert)
            )
        elif isinstance(request, UpdateOne | UpdateMany):
            update = self.update_one if isinstance(request, UpdateOne) else self.update_many
            result = update(
                request._filter,
                request._doc,
                upsert=bool(request._upsert),
                array_filters=request._array_filters,
            )
        else:
            msg = f"the embedded store cannot bulk-write {type(request).__name__}"
            raise TypeError(msg)
        if result.upserted_id is not None:
            summary["nUpserted"] += 1
            summary["upserted"].append({"index": index, "_id": result.upserted_id})
        else:
            summary["nMatched"] += result.matched_count
            summary["nModified"] += result.modified_count


def _operation_document(request: Any) -> Document:
    """Describe the failed operation like the `op` of a MongoDB write error."""
    if isinstance(request, InsertOne):
        return dict(request._doc)
    if isinstance(request, UpdateOne | UpdateMany | ReplaceOne):
        return {
            "q": request._filter,
            "u": request._doc,
            "multi": isinstance(request, UpdateMany),
            "upsert": bool(request._upsert),
        }
    if isinstance(request, DeleteOne | DeleteMany):
        return {"q": request._filter, "limit": 1 if isinstance(request, DeleteOne) else 0}
    return {}


def _update_spec(update: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> Any:
    # An aggregation pipeline (a list) goes through as is: montydb rejects it with a clear
    # message, which beats silently treating it as a document.
    return dict(update) if isinstance(update, Mapping) else list(update)
