"""The registry's managers, one per concern, made together over one database.

Each manager owns the tables and SQL of its concern and reaches another concern only
through that concern's manager: datasets resolve types and collections through theirs,
data-ID queries resolve dataset constraints the same way. `Registry` is a thin facade
over the instances made here.
"""

from __future__ import annotations

from dataclasses import dataclass

from .collection_manager import CollectionManager
from .data_id_query_manager import DataIdQueryManager
from .database import RegistryDatabase
from .dataset_manager import DatasetManager
from .dataset_type_manager import DatasetTypeManager
from .sky_boxes import SkyBoxManager
from .unit_manager import UnitManager

__all__ = ["RegistryManagers"]


@dataclass(frozen=True)
class RegistryManagers:
    """The managers of one opened registry."""

    skyBoxes: SkyBoxManager
    units: UnitManager
    datasetTypes: DatasetTypeManager
    collections: CollectionManager
    queries: DataIdQueryManager
    datasets: DatasetManager

    @classmethod
    def make(cls, db: RegistryDatabase) -> RegistryManagers:
        """Make every manager over ``db``, each given the managers it depends on."""
        skyBoxes = SkyBoxManager(db)
        datasetTypes = DatasetTypeManager(db)
        collections = CollectionManager(db)
        queries = DataIdQueryManager(db, datasetTypes, collections)
        return cls(
            skyBoxes=skyBoxes,
            units=UnitManager(db, skyBoxes),
            datasetTypes=datasetTypes,
            collections=collections,
            queries=queries,
            datasets=DatasetManager(db, datasetTypes, collections, queries),
        )
