"""Database engines for the registry: SQLite (embedded default) and PostgreSQL.

SQLite is opened in WAL mode (readers do not block the writer) with a long busy timeout,
and write transactions start with ``BEGIN IMMEDIATE``: a deferred transaction that
reads first and writes later can fail with "database is locked" without waiting when
another process holds the write lock, which is how concurrent jobs lose registrations.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import event

SQLITE_BUSY_TIMEOUT_S = 120.0


def make_engine(url: str) -> sa.Engine:
    """Create an engine for a registry URL.

    Parameters
    ----------
    url : `str`
        ``sqlite:///path`` or ``postgresql+psycopg://user:pw@host:port/db`` (a schema
        can be selected with ``?options=-csearch_path%3Dname``).

    Raises
    ------
    ValueError
        If the URL names a database backend other than SQLite or PostgreSQL.
    """
    parsed = sa.make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
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


def _configure_sqlite(engine: sa.Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # pragma: no cover - exercised via engine use
        # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's implicit BEGIN is deferred).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
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
