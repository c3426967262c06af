"""Dataset types: name, units and storage class, registered once and immutable.

Types are cached by name once read (a registered type never changes), so resolving a
type name to its table id costs a query only the first time in a process.
"""

from __future__ import annotations

import sqlalchemy as sa

from ..dataset import DatasetType
from .database import RegistryDatabase

__all__ = ["DatasetTypeManager"]


class DatasetTypeManager:
    """Registers, reads and resolves dataset types.

    Parameters
    ----------
    db : `RegistryDatabase`
        The opened registry database.
    """

    def __init__(self, db: RegistryDatabase):
        self._db = db
        self._cache: dict[str, tuple[int, DatasetType]] = {}

    def register(self, datasetType: DatasetType) -> bool:
        """Register a dataset type; see `Registry.registerDatasetType`."""
        universe = self._db.universe
        for unit in datasetType.units:
            if unit not in universe.units:
                raise ValueError(
                    f"dataset type {datasetType.name!r} has unknown unit {unit!r}; known: {sorted(universe.units)}"
                )
        t = self._db.schema.dataset_type
        with self._db.transaction() as conn:
            result = conn.execute(
                self._db.insert(t)
                .on_conflict_do_nothing(index_elements=["name"])
                .values(
                    name=datasetType.name,
                    units=",".join(datasetType.units),
                    storage_class=datasetType.storageClass,
                )
                .returning(t.c.id)
            )
            inserted = result.first() is not None
        existing = self.get(datasetType.name)
        if existing != datasetType:
            raise ValueError(
                f"dataset type {datasetType.name!r} is registered as {existing}, not {datasetType}; "
                "use another name or make the definitions agree"
            )
        return inserted

    def get(self, name: str) -> DatasetType:
        """The registered dataset type of this name; see `Registry.getDatasetType`."""
        return self.entry(name)[1]

    def entry(self, name: str) -> tuple[int, DatasetType]:
        """``(table id, type)`` of a registered type.

        Raises
        ------
        KeyError
            If no such type is registered (the message lists the registered names).
        """
        entry = self._cache.get(name)
        if entry is None:
            t = self._db.schema.dataset_type
            with self._db.connect() as conn:
                row = conn.execute(sa.select(t).where(t.c.name == name)).mappings().first()
                if row is None:
                    names = conn.execute(sa.select(t.c.name).order_by(t.c.name)).scalars().all()
                    raise KeyError(
                        f"dataset type {name!r} is not registered; registered: {names or 'none'}. "
                        "Register it with registry.registerDatasetType (butler.put does it for you)."
                    )
            units = tuple(row["units"].split(",")) if row["units"] else ()
            entry = (row["id"], DatasetType(row["name"], units, row["storage_class"]))
            self._cache[name] = entry
        return entry

    def resolve(self, typeOrName: DatasetType | str) -> tuple[int, DatasetType]:
        """`entry` of a type given by name or as a `DatasetType` (the registered one is returned)."""
        name = typeOrName if isinstance(typeOrName, str) else typeOrName.name
        return self.entry(name)

    def all(self) -> list[DatasetType]:
        """All registered dataset types, by name."""
        t = self._db.schema.dataset_type
        with self._db.connect() as conn:
            names = conn.execute(sa.select(t.c.name).order_by(t.c.name)).scalars().all()
        return [self.get(n) for n in names]
