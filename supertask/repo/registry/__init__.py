"""The SQL registry: schema generated from the unit universe, SQLite and PostgreSQL backends."""

from .bulk import data_id_key
from .registry import (
    ConflictingDatasetError,
    IncompatibleSchemaError,
    MissingCollectionError,
    OutputExistsError,
    ReadOnlyError,
    Registry,
    RegistryError,
    RowLimitError,
    RunConflictError,
)
from .schema import SCHEMA_VERSION

__all__ = [
    "SCHEMA_VERSION",
    "ConflictingDatasetError",
    "IncompatibleSchemaError",
    "MissingCollectionError",
    "ReadOnlyError",
    "OutputExistsError",
    "Registry",
    "RegistryError",
    "RowLimitError",
    "RunConflictError",
    "data_id_key",
]
