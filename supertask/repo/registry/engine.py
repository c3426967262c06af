"""Database engines for the registry: SQLite (embedded default) and PostgreSQL.

SQLite is opened in WAL mode (readers do not block the writer) with a long busy timeout,
and write transactions start with ``BEGIN IMMEDIATE``: a deferred transaction that
reads first and writes later can fail with "database is locked" without waiting when
another process holds the write lock, which is how concurrent jobs lose registrations.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy import event

SQLITE_BUSY_TIMEOUT_S = 120.0


class ReadOnlyRegistryError(RuntimeError):
    """A read-only registry cannot be opened as asked (the message says why and what to do)."""


def make_engine(url: str, read_only: bool | None = False) -> sa.Engine:
    """Create an engine for a registry URL.

    Parameters
    ----------
    url : `str`
        ``sqlite:///path`` or ``postgresql+psycopg://user:pw@host:port/db`` (a schema
        can be selected with ``?options=-csearch_path%3Dname``).
    read_only : `bool` or `None`
        Open an SQLite file read-only: `True` always, `None` when this process may not
        write the file or its directory (a shared release area), `False` never. Ignored
        for PostgreSQL, whose permissions are the server's business.

    Raises
    ------
    ValueError
        If the URL names a database backend other than SQLite or PostgreSQL.
    ReadOnlyRegistryError
        If a read-only SQLite file cannot be read consistently (see `sqlite_read_only_url`).
    """
    parsed = sa.make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        path = parsed.database
        on_disk = path not in (None, "", ":memory:") and not parsed.query.get("uri")
        if path and on_disk and (read_only or (read_only is None and not _writable(path))):
            parsed = sa.make_url(sqlite_read_only_url(path))
        engine = sa.create_engine(
            parsed,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
            poolclass=sa.pool.NullPool if parsed.database in (None, "", ":memory:") else None,
        )
        _configure_sqlite(engine)
        return engine
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return sa.create_engine(parsed, pool_pre_ping=True, pool_size=2, max_overflow=2)
    raise ValueError(
        f"unsupported registry database {url!r}: use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
    )


def sqlite_read_only_url(path: str) -> str:
    """The SQLAlchemy URL that opens the SQLite file ``path`` read-only.

    ``mode=ro`` forbids writes. A registry is in WAL mode, and a WAL reader needs the
    ``-shm`` index file: SQLite creates it when the directory is writable and uses an
    existing one read-only otherwise. In a directory nobody may write (a release area),
    with no ``-shm`` file, the database is opened ``immutable=1`` as well: SQLite then
    takes no locks and needs no index, which is exact because no writer can be active
    there. A non-empty ``-wal`` log without its ``-shm`` holds writes that only a writer
    can fold in, so that case is refused rather than read without them.

    Raises
    ------
    ReadOnlyRegistryError
        For a ``-wal`` log without ``-shm`` in a read-only directory.
    """
    absolute = os.path.abspath(path)
    directory = os.path.dirname(absolute) or "."
    wal, shm = absolute + "-wal", absolute + "-shm"
    params = "mode=ro"
    if not os.access(directory, os.W_OK) and not os.path.exists(shm):
        if os.path.exists(wal) and os.path.getsize(wal) > 0:
            raise ReadOnlyRegistryError(
                f"registry {absolute} is read-only and has unfinished writes in {wal} (no -shm file): "
                "open it once with write access (any query does) to fold them in, then retry"
            )
        params += "&immutable=1"
    return f"sqlite:///file:{quote(absolute)}?{params}&uri=true"


def is_read_only(engine: sa.Engine) -> bool:
    """True for an SQLite engine opened read-only (by `make_engine`)."""
    return engine.dialect.name == "sqlite" and engine.url.query.get("mode") == "ro"


def _writable(path: str) -> bool:
    """Whether this process may write the SQLite file ``path`` and create files next to it."""
    absolute = os.path.abspath(path)
    directory = os.path.dirname(absolute) or "."
    if not os.path.exists(absolute):
        return os.access(directory, os.W_OK)
    return os.access(absolute, os.W_OK) and os.access(directory, os.W_OK)


def _configure_sqlite(engine: sa.Engine) -> None:
    read_only = is_read_only(engine)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:  # pragma: no cover - exercised via engine use
        # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's implicit BEGIN is deferred).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        if read_only:  # the journal mode is the file's, and a reader may not change it
            cur.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            cur.execute("PRAGMA cache_size=-65536")
            cur.close()
            return
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cur.execute("PRAGMA synchronous=NORMAL")
        # 64 MiB page cache: index inserts of 10^6 datasets stay in memory instead of thrashing 2 MiB
        cur.execute("PRAGMA cache_size=-65536")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        if conn.get_execution_options().get("sqlite_write", False):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


def is_sqlite(engine: sa.Engine) -> bool:
    """True for the embedded backend."""
    return engine.dialect.name == "sqlite"
