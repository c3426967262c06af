"""The registry's exceptions: each message says what is wrong and what to do."""

from __future__ import annotations

__all__ = [
    "ConflictingDatasetError",
    "IncompatibleSchemaError",
    "MissingCollectionError",
    "OutputExistsError",
    "ReadOnlyError",
    "RegistryError",
    "RowLimitError",
    "RunConflictError",
]


class RegistryError(RuntimeError):
    """A registry operation cannot be done; the message says why and what to do."""


class IncompatibleSchemaError(RegistryError):
    """The repository was written by a registry with another major schema version."""


class ConflictingDatasetError(RegistryError):
    """A dataset is already registered in the run with different content."""


class ReadOnlyError(RegistryError):
    """A write was attempted on a registry opened read-only (or that the database refused as read-only)."""


class MissingCollectionError(RegistryError, KeyError):
    """A collection named by the caller does not exist (also a `KeyError`, as it always was)."""

    def __str__(self) -> str:  # a KeyError would quote its message
        return str(self.args[0]) if self.args else ""


class RunConflictError(RegistryError):
    """A RUN is being written with another pipeline or config than it was made with."""


class OutputExistsError(RegistryError):
    """Outputs a plan would write are registered already, and no option says what to do."""


class RowLimitError(RegistryError):
    """A query returned more rows than the caller's ``max_rows``; fetching stopped there."""

    def __init__(self, limit: int):
        super().__init__(f"the query returns more than {limit} rows")
        self.limit = limit
