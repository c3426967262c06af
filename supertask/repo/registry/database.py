"""What every registry manager shares: the engine, the universe, the tables, write transactions.

A `RegistryDatabase` is opened once per `Registry` and handed to each manager, so the
managers never open engines or read ``registry_meta`` themselves, and a write
transaction means the same thing everywhere (``BEGIN IMMEDIATE`` on SQLite, refused
with `ReadOnlyError` on a read-only registry).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import sqlalchemy as sa
import yaml
from sqlalchemy.dialects import postgresql, sqlite

from ..units import Universe
from .engine import ReadOnlyRegistryError, is_read_only, is_sqlite, make_engine
from .errors import IncompatibleSchemaError, ReadOnlyError, RegistryError
from .schema import SCHEMA_VERSION, RegistrySchema

__all__ = ["RegistryDatabase", "safe_url", "write_transaction"]


class RegistryDatabase:
    """An opened registry database: engine, stored universe, generated tables.

    Parameters
    ----------
    url : `str`
        SQLAlchemy database URL.
    readOnly : `bool` or `None`
        As for `make_engine`.
    engine : `sqlalchemy.Engine`, optional
        An engine already made for ``url`` (by `create`).

    Raises
    ------
    RegistryError
        If the database holds no registry, or cannot be opened as asked.
    IncompatibleSchemaError
        If its schema version's major number differs from this software's.
    """

    def __init__(self, url: str, *, readOnly: bool | None = None, engine: sa.Engine | None = None):
        self.url = url
        try:
            self.engine = engine or make_engine(url, readOnly)
        except ReadOnlyRegistryError as err:
            raise RegistryError(str(err)) from None
        meta = self._readMeta()
        version = meta.get("schema_version", "?")
        if version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
            raise IncompatibleSchemaError(
                f"registry at {safe_url(url)} has schema version {version}; this software reads "
                f"{SCHEMA_VERSION.split('.')[0]}.x. Use a supertask release matching the repository, "
                "or create a new repository and re-ingest/transfer its datasets."
            )
        self.universe = Universe(yaml.safe_load(meta["universe"]))
        self.schema = RegistrySchema(self.universe)
        self.isSqlite = is_sqlite(self.engine)

    @staticmethod
    def create(url: str, universe: Universe) -> sa.Engine:
        """Create the tables of a new registry at ``url``; return the engine (open it with it).

        Raises
        ------
        RegistryError
            If the database already holds a registry.
        """
        engine = make_engine(url)
        schema = RegistrySchema(universe)
        if sa.inspect(engine).has_table("registry_meta"):
            raise RegistryError(
                f"{safe_url(url)} already holds a registry; open it instead, or use another database/schema"
            )
        text = yaml.safe_dump(universe.toData(), sort_keys=False)
        with write_transaction(engine) as conn:
            schema.metadata.create_all(conn)
            conn.execute(
                sa.insert(schema.meta),
                [
                    {"key": "schema_version", "value": SCHEMA_VERSION},
                    {"key": "universe_version", "value": str(universe.version)},
                    {"key": "universe", "value": text},
                ],
            )
        return engine

    def _readMeta(self) -> dict[str, str]:
        table = sa.table("registry_meta", sa.column("key"), sa.column("value"))
        try:
            if not sa.inspect(self.engine).has_table("registry_meta"):
                raise RegistryError(
                    f"{safe_url(self.url)} holds no supertask registry (no registry_meta table); "
                    "create one with `supertask repo create`"
                )
            with self.engine.connect() as conn:
                return {str(k): str(v) for k, v in conn.execute(sa.select(table.c.key, table.c.value))}
        except sa.exc.OperationalError as err:
            raise RegistryError(f"cannot open registry at {safe_url(self.url)}: {err.orig}") from None

    @contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite: waits for, never fails on, the lock)."""
        with write_transaction(self.engine) as conn:
            yield conn

    def connect(self) -> sa.Connection:
        """A connection for reading (use it as a context manager)."""
        return self.engine.connect()

    @contextmanager
    def connectForScan(self) -> Iterator[sa.Connection]:
        """`connect` for statements that read much of a table: on SQLite its page cache is emptied after.

        A registry connection's page cache grows to 64 MiB (for inserts) and stays
        with the connection in the pool; after preflight's look-ups, which read whole
        indexes once, it held 20-60 MB that nothing read again while the graph was
        built (``PRAGMA shrink_memory`` returns it; later statements read the pages
        from the operating system's file cache).
        """
        with self.engine.connect() as conn:
            yield conn
            if conn.dialect.name == "sqlite" and not conn.invalidated:  # (not after an error)
                conn.exec_driver_sql("PRAGMA shrink_memory")

    def insert(self, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
        """The dialect's INSERT of ``table``, which has ``on_conflict_do_nothing``."""
        if self.engine.dialect.name == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    def analyze(self, tables: Sequence[str]) -> None:
        """Refresh PostgreSQL's statistics of ``tables`` (outside any transaction)."""
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for name in tables:
                conn.exec_driver_sql(f'ANALYZE "{name}"')


@contextmanager
def write_transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A write transaction on ``engine``; `ReadOnlyError` if the registry is or turns out read-only."""
    if is_read_only(engine):
        raise ReadOnlyError(
            _read_only_message(
                engine, "opened read-only: the caller only reads, or this user may not write it"
            )
        )
    try:
        with engine.connect().execution_options(sqlite_write=True) as conn:
            with conn.begin():
                yield conn
    except sa.exc.OperationalError as err:
        if "readonly" in str(err.orig).replace("-", "").replace(" ", ""):
            raise ReadOnlyError(
                _read_only_message(engine, f"the database refused the write ({err.orig})")
            ) from None
        raise


def _read_only_message(engine: sa.Engine, why: str) -> str:
    database = engine.url.database or ""
    where = database.removeprefix("file:") if engine.dialect.name == "sqlite" else safe_url(str(engine.url))
    return (
        f"repository registry {where} is read-only ({why}): it can be queried but not written. "
        "Write to a repository you own (or ask its owner to), or copy the repository first"
    )


def safe_url(url: str) -> str:
    """``url`` with its password hidden (for messages)."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only for messages
        return "<registry url>"
