"""Task configuration: typed, validated fields; overrides; freezing; saved form and digest.

Importing this package does not import pydantic (that happens on the first
validation) nor anything heavy: batch jobs import it on every start.
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
