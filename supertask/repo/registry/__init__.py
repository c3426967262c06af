"""The SQL registry: schema generated from the unit universe, SQLite and PostgreSQL backends."""

from .bulk import data_id_key
from .registry import (
    ConflictingDatasetError,
    IncompatibleSchemaError,
    MissingCollectionError,
    ReadOnlyError,
    Registry,
    RegistryError,
    RowLimitError,
)
from .schema import SCHEMA_VERSION

__all__ = [
    "SCHEMA_VERSION",
    "ConflictingDatasetError",
    "IncompatibleSchemaError",
    "MissingCollectionError",
    "ReadOnlyError",
    "Registry",
    "RegistryError",
    "RowLimitError",
    "data_id_key",
]
