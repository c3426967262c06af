"""Collections: RUNs (which hold datasets and their provenance) and CHAINED collections.

A chain searches its children in order; `CollectionManager.resolve` flattens any mix of
runs and chains into the ordered, de-duplicated runs to search. A RUN records how it was
made (`run_provenance`), and a later execution with another pipeline or config is refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from .database import RegistryDatabase
from .errors import MissingCollectionError, RegistryError, RunConflictError
from .run_provenance import mismatch_message

__all__ = ["CollectionManager", "check_collection_name"]


class CollectionManager:
    """Registers runs and chains, records run provenance, resolves search paths.

    Parameters
    ----------
    db : `RegistryDatabase`
        The opened registry database.
    """

    def __init__(self, db: RegistryDatabase):
        self._db = db

    def registerRun(self, name: str, provenance: Mapping[str, Any] | None = None) -> None:
        """Register a RUN collection and record its provenance; see `Registry.registerRun`."""
        check_collection_name(name)
        c = self._db.schema.collection
        with self._db.transaction() as conn:
            conn.execute(
                self._db.insert(c)
                .on_conflict_do_nothing(index_elements=["name"])
                .values(name=name, type="RUN", provenance=json.dumps(provenance) if provenance else None)
            )
            row = conn.execute(sa.select(c).where(c.c.name == name).with_for_update()).mappings().one()
            if row["type"] != "RUN":
                raise RegistryError(f"collection {name!r} exists as a {row['type']} collection, not a RUN")
            if provenance:
                stored = json.loads(row["provenance"]) if row["provenance"] else None
                new = json.loads(json.dumps(provenance))
                refusal = mismatch_message(name, stored, new)
                if refusal:
                    raise RunConflictError(refusal)
                if stored is None:
                    stored = new
                elif stored != new and new not in stored.get("later_executions", []):
                    stored.setdefault("later_executions", []).append(new)
                conn.execute(sa.update(c).where(c.c.id == row["id"]).values(provenance=json.dumps(stored)))

    def runProvenance(self, name: str) -> dict[str, Any] | None:
        """The provenance recorded with a RUN (``None`` if none was given).

        Raises
        ------
        KeyError
            If there is no RUN of this name.
        """
        c = self._db.schema.collection
        with self._db.connect() as conn:
            row = conn.execute(sa.select(c.c.provenance, c.c.type).where(c.c.name == name)).first()
        if row is None or row.type != "RUN":
            raise KeyError(f"no RUN collection named {name!r}")
        provenance: dict[str, Any] | None = json.loads(row.provenance) if row.provenance else None
        return provenance

    def setChain(self, name: str, children: Sequence[str]) -> None:
        """Define (or redefine) a CHAINED collection; see `Registry.setChain`."""
        check_collection_name(name)
        c, ch = self._db.schema.collection, self._db.schema.collection_chain
        with self._db.transaction() as conn:
            conn.execute(
                self._db.insert(c)
                .on_conflict_do_nothing(index_elements=["name"])
                .values(name=name, type="CHAINED")
            )
            row = conn.execute(sa.select(c.c.id, c.c.type).where(c.c.name == name)).one()
            if row.type != "CHAINED":
                raise RegistryError(
                    f"collection {name!r} is a {row.type}; only CHAINED collections have children"
                )
            childIds = []
            for child in children:
                childRow = conn.execute(sa.select(c.c.id).where(c.c.name == child)).first()
                if childRow is None:
                    raise KeyError(
                        f"chain {name!r}: child collection {child!r} does not exist; register it first"
                    )
                childIds.append(childRow.id)
            conn.execute(sa.delete(ch).where(ch.c.parent_id == row.id))
            if childIds:
                conn.execute(
                    sa.insert(ch),
                    [{"parent_id": row.id, "position": i, "child_id": cid} for i, cid in enumerate(childIds)],
                )
            self._flatten(conn, [name], set())

    def chain(self, name: str) -> list[str]:
        """The children of a CHAINED collection, in search order."""
        c, ch = self._db.schema.collection, self._db.schema.collection_chain
        child = c.alias("child")
        with self._db.connect() as conn:
            stmt = (
                sa.select(child.c.name)
                .select_from(ch.join(c, c.c.id == ch.c.parent_id).join(child, child.c.id == ch.c.child_id))
                .where(c.c.name == name)
                .order_by(ch.c.position)
            )
            return list(conn.execute(stmt).scalars())

    def _flatten(
        self,
        conn: sa.Connection,
        names: Sequence[str],
        stack: set[str],
        known: Mapping[str, tuple[int, str]] | None = None,
    ) -> list[tuple[int, str]]:
        """The RUNs of ``names`` in search order; ``known`` holds rows already read with a chain's children.

        A chain's children come with their ids and types in the query that lists them, so
        resolving a chain of N runs takes two queries, not N + 2 (each a round trip to a
        PostgreSQL server; preflight resolves its input collections several times).
        """
        c, ch = self._db.schema.collection, self._db.schema.collection_chain
        out: list[tuple[int, str]] = []
        for name in names:
            if name in stack:
                raise RegistryError(f"collection chain cycle through {name!r}; a chain cannot contain itself")
            row: Any = (known or {}).get(name)
            if row is None:
                row = conn.execute(sa.select(c.c.id, c.c.type).where(c.c.name == name)).first()
            if row is None:
                existing = list(conn.execute(sa.select(c.c.name).order_by(c.c.name)).scalars())
                raise MissingCollectionError(missing_collection_message(name, existing))
            rowId, rowType = row
            if rowType == "RUN":
                out.append((rowId, name))
            else:
                children = conn.execute(
                    sa.select(c.c.name, c.c.id, c.c.type)
                    .select_from(ch.join(c, c.c.id == ch.c.child_id))
                    .where(ch.c.parent_id == rowId)
                    .order_by(ch.c.position)
                ).all()
                rows = {child: (childId, childType) for child, childId, childType in children}
                out.extend(self._flatten(conn, [child for child, _, _ in children], stack | {name}, rows))
        return out

    def resolve(self, collections: Sequence[str] | str) -> list[tuple[int, str]]:
        """Flatten collections (chains expanded) into the ordered, de-duplicated ``(id, name)`` of RUNs."""
        if isinstance(collections, str):
            collections = [collections]
        if not collections:
            raise ValueError("no collections to search; pass collections=[...] (RUN or CHAINED names)")
        with self._db.connect() as conn:
            flat = self._flatten(conn, list(collections), set())
        seen: set[int] = set()
        out: list[tuple[int, str]] = []
        for runId, name in flat:
            if runId not in seen:
                seen.add(runId)
                out.append((runId, name))
        return out

    def runId(self, conn: sa.Connection, run: str) -> int:
        """The table id of a RUN, read on ``conn`` (inside the caller's transaction).

        Raises
        ------
        RegistryError
            If ``run`` is not a registered RUN collection.
        """
        c = self._db.schema.collection
        row = conn.execute(sa.select(c.c.id, c.c.type).where(c.c.name == run)).first()
        if row is None or row.type != "RUN":
            raise RegistryError(
                f"{run!r} is not a registered RUN collection; call registry.registerRun({run!r})"
            )
        runId: int = row.id
        return runId


def missing_collection_message(name: str, known: Sequence[str]) -> str:
    """ "collection X does not exist", with the closest names (or some of the existing ones)."""
    import difflib  # only for this message

    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    if close:
        hint = f"did you mean {' or '.join(repr(c) for c in close)}?"
    elif known:
        more = f" (and {len(known) - 10} more)" if len(known) > 10 else ""
        hint = f"existing collections: {', '.join(known[:10])}{more}"
    else:
        hint = "the repository has no collections yet"
    return f"collection {name!r} does not exist; {hint}"


def check_collection_name(name: str) -> None:
    """Refuse a collection name that cannot be a directory of the datastore.

    Raises
    ------
    ValueError
        For an empty name, surrounding spaces, a leading ``/`` or a ``..`` part.
    """
    if not name or name.strip() != name or ".." in name.split("/") or name.startswith("/"):
        raise ValueError(
            f"invalid collection name {name!r}: use a non-empty name without surrounding spaces, "
            "leading '/' or '..' parts (it becomes a directory in the datastore)"
        )
