"""Task configuration: typed, validated fields; overrides; freezing; saved form and digest.

Importing this package, building configs of plain values and loading them from their
saved form import nothing heavy (validation is the small `.validation`, no
validation library): batch jobs do all of it on every start.
"""

from .compound import ConfigField, ConfigurableField, ConfigurableValue, DatasetConfig, DatasetField
from .config import Config, class_path, import_class
from .errors import ConfigOverrideError, FieldValidationError, FrozenConfigError, UnknownFieldError
from .fields import DictField, Field, ListField

__all__ = [
    "Config",
    "ConfigDict",
    "ConfigField",
    "ConfigOverrideError",
    "ConfigurableField",
    "ConfigurableValue",
    "DatasetConfig",
    "DatasetField",
    "DictField",
    "Field",
    "FieldValidationError",
    "FrozenConfigError",
    "ListField",
    "UnknownFieldError",
    "class_path",
    "import_class",
]

from .fields import ConfigDict  # noqa: E402
