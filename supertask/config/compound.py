"""Fields whose value is itself a config: nested, subtask (retargetable) and dataset fields."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from .config import Config, class_path, import_class
from .errors import FieldValidationError, FrozenConfigError
from .fields import Field, FieldBase

if TYPE_CHECKING:
    import inspect

    from ..repo.dataset import DatasetType
    from ..task import Task

__all__ = ["ConfigField", "ConfigurableField", "ConfigurableValue", "DatasetField", "DatasetConfig"]

_C = TypeVar("_C", bound=Config)

TARGET_KEY = "_target"
"""Key of the saved form / override mappings that retargets a `ConfigurableField`."""


def _adopt(parent: Config, name: str, child: _C) -> _C:
    """Give a nested config its dotted path, so its errors name the full field path."""
    child._setPath(parent._fieldPath(name))
    return child


class ConfigField(FieldBase):
    """A nested config of a fixed class.

    Parameters
    ----------
    dtype : `type` [`Config`]
        The nested config class.
    doc : `str`
        What the nested config controls.
    default : `Config`, optional
        A starting value (copied); defaults to ``dtype()``.
    """

    def __init__(self, dtype: type[Config], doc: str, default: Config | None = None):
        if not (isinstance(dtype, type) and issubclass(dtype, Config)):
            raise TypeError(f"ConfigField dtype must be a Config subclass, not {dtype!r}")
        super().__init__(doc, default, optional=False)
        self.dtype = dtype

    def makeDefault(self, config: Config) -> Config:
        value = self.default.copy() if self.default is not None else self.dtype()
        return _adopt(config, self.name, value)

    def assign(self, config: Config, value: Any) -> Config:
        if isinstance(value, Mapping):
            new: Config = config._values[self.name].copy()
            new.update(value)
            return _adopt(config, self.name, new)
        if type(value) is not self.dtype:
            raise FieldValidationError(
                f"{config._describeField(self.name)}: value {value!r} is not a {self.typeName()}; assign "
                f"a {self.dtype.__name__} instance or a mapping of its fields"
            )
        return _adopt(config, self.name, value.copy())

    def assignString(self, config: Config, text: str) -> Any:
        raise FieldValidationError(
            f"{config._describeField(self.name)} is a nested config; set one of its fields instead, "
            f"e.g. {config._fieldPath(self.name)}.{next(iter(self.dtype._fields), 'field')}=value"
        )

    def toSaved(self, value: Config) -> Any:
        return value.toDict()

    def copyValue(self, config: Config, value: Config) -> Config:
        return _adopt(config, self.name, value.copy())

    def freezeValue(self, value: Config) -> None:
        value.freeze()

    def checkComplete(self, config: Config, value: Config) -> None:
        value.validate()

    def typeName(self) -> str:
        return self.dtype.__name__


def _run_signature(target: type) -> inspect.Signature:
    import inspect  # only retargeting needs it; batch jobs do not pay for the import

    run = getattr(target, "run", None)
    if run is None:
        raise TypeError(f"{class_path(target)} has no run method; a subtask target must be a Task")
    return inspect.signature(run)


def _same_call_shape(a: inspect.Signature, b: inspect.Signature) -> bool:
    """Same parameter names, kinds and defaulted-ness (annotations are not compared)."""

    import inspect

    def shape(sig: inspect.Signature) -> list[tuple[str, Any, bool]]:
        return [(p.name, p.kind, p.default is inspect.Parameter.empty) for p in sig.parameters.values()]

    return shape(a) == shape(b)


class ConfigurableValue:
    """The value of a `ConfigurableField`: a target task class and its config.

    Attribute reads and writes other than ``target``, ``ConfigClass``, ``value``,
    `retarget` and `apply` go to the subtask's config, so overrides read
    ``config.detection.threshold = 4`` as they do in pex_config.
    """

    _own = ("_field", "_owner", "target", "ConfigClass", "value")

    def __init__(self, field: ConfigurableField, owner: Config, target: type, value: Config):
        object.__setattr__(self, "_field", field)
        object.__setattr__(self, "_owner", owner)
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "ConfigClass", type(value))
        object.__setattr__(self, "value", _adopt(owner, field.name, value))

    def retarget(self, target: type[Task], ConfigClass: type[Config] | None = None) -> None:
        """Replace the subtask by ``target``, which must have the same ``run`` signature.

        The config is reset to ``ConfigClass()`` (default ``target.ConfigClass``).

        Raises
        ------
        FieldValidationError
            If the run signatures differ or the config is frozen.
        """
        field = self._field
        where = self._owner._fieldPath(field.name)
        if self._owner.frozen:
            raise FrozenConfigError(
                f"cannot retarget {where}: the config is frozen because its task was constructed"
            )
        if not isinstance(target, type):
            raise FieldValidationError(f"cannot retarget {where} to {target!r}: give a Task class")
        expected, got = _run_signature(field.target), _run_signature(target)
        if not _same_call_shape(expected, got):
            raise FieldValidationError(
                f"cannot retarget {where} from {class_path(field.target)} to {class_path(target)}: run "
                f"signatures differ: {field.target.__name__}.run{expected} vs {target.__name__}.run{got}. "
                "A replacement subtask must accept the same arguments as the task it replaces."
            )
        config_class = ConfigClass or target.ConfigClass
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "ConfigClass", config_class)
        object.__setattr__(self, "value", _adopt(self._owner, field.name, config_class()))

    def apply(self, *args: Any, **kwargs: Any) -> Any:
        """Construct the target task with this config (what `Task.makeSubtask` calls)."""
        return self.target(*args, config=self.value, **kwargs)

    def update(self, overrides: Mapping[str, Any]) -> None:
        """Apply overrides; a ``_target`` key (a class path) retargets first."""
        overrides = dict(overrides)
        target = overrides.pop(TARGET_KEY, None)
        if target is not None:
            cls = import_class(target, what="subtask") if isinstance(target, str) else target
            if cls is not self.target:
                self.retarget(cls)
        self.value.update(overrides)

    def _setFromString(self, path: str, text: str) -> None:
        if path == TARGET_KEY:
            self.retarget(import_class(text, what="subtask"))
        else:
            self.value._setFromString(path, text)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.value, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._own:
            raise AttributeError(
                f"use retarget() to change the subtask of {self._owner._fieldPath(self._field.name)}"
            )
        setattr(self.value, name, value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ConfigurableValue):
            return NotImplemented
        return self.target is other.target and self.value == other.value

    __hash__ = None  # type: ignore[assignment]  # unhashable: == compares the mutable value

    def __repr__(self) -> str:
        return f"<{self.target.__name__}: {self.value!r}>"


class ConfigurableField(FieldBase):
    """A subtask's config, retargetable to another Task with the same ``run`` signature.

    Parameters
    ----------
    doc : `str`
        What the subtask does for its parent.
    target : `type`
        The default subtask class (a `~supertask.task.Task`).
    ConfigClass : `type` [`Config`], optional
        Its config class; defaults to ``target.ConfigClass``.

    Notes
    -----
    The saved form is the subtask config's saved form, plus ``_target: <class path>``
    when the field has been retargeted away from its default.
    """

    def __init__(self, doc: str, target: type, ConfigClass: type[Config] | None = None):
        if not isinstance(target, type) or not hasattr(target, "run"):
            raise TypeError(f"ConfigurableField target must be a Task class, not {target!r}")
        config_class = ConfigClass or getattr(target, "ConfigClass", None)
        if config_class is None or not issubclass(config_class, Config):
            raise TypeError(f"ConfigurableField target {target!r} has no ConfigClass; pass ConfigClass=")
        super().__init__(doc, None, optional=False)
        self.target, self.ConfigClass = target, config_class

    def makeDefault(self, config: Config) -> ConfigurableValue:
        return ConfigurableValue(self, config, self.target, self.ConfigClass())

    def assign(self, config: Config, value: Any) -> ConfigurableValue:
        current: ConfigurableValue = config._values[self.name]
        if isinstance(value, Mapping):
            new = self.copyValue(config, current)
            new.update(value)
            return new
        if isinstance(value, ConfigurableValue):
            return ConfigurableValue(self, config, value.target, value.value.copy())
        if isinstance(value, Config) and type(value) is current.ConfigClass:
            return ConfigurableValue(self, config, current.target, value.copy())
        raise FieldValidationError(
            f"{config._describeField(self.name)}: cannot assign {value!r}; assign a "
            f"{current.ConfigClass.__name__}, a mapping of its fields, or use "
            f"{config._fieldPath(self.name)}.retarget(OtherTask)"
        )

    def assignString(self, config: Config, text: str) -> Any:
        raise FieldValidationError(
            f"{config._describeField(self.name)} is a subtask config; set one of its fields "
            f"({config._fieldPath(self.name)}.<field>=value) or retarget it ({config._fieldPath(self.name)}."
            f"{TARGET_KEY}=package.module.Task)"
        )

    def toSaved(self, value: ConfigurableValue) -> Any:
        saved = value.value.toDict()
        if value.target is not self.target:
            return {TARGET_KEY: class_path(value.target), **saved}
        return saved

    def copyValue(self, config: Config, value: ConfigurableValue) -> ConfigurableValue:
        return ConfigurableValue(self, config, value.target, value.value.copy())

    def freezeValue(self, value: ConfigurableValue) -> None:
        value.value.freeze()

    def checkComplete(self, config: Config, value: ConfigurableValue) -> None:
        value.value.validate()

    def typeName(self) -> str:
        return f"config of subtask {self.target.__name__}"


class DatasetConfig(Config):
    """The configurable part of a dataset declaration: its type name and storage class."""

    name = Field(dtype=str, doc="Dataset type name.")
    storageClass = Field(dtype=str, doc="Storage class: how the object is written and read.")

    # set per instance by DatasetField (not configurable: fixed by the task class)
    _units: tuple[str, ...] = ()
    _role: str = "input"

    @property
    def units(self) -> tuple[str, ...]:
        """The units that identify one dataset (fixed by the task class)."""
        return self._units

    @property
    def role(self) -> str:
        """``"input"`` or ``"output"``."""
        return self._role

    @property
    def datasetType(self) -> DatasetType:
        """The `~supertask.repo.dataset.DatasetType` this declaration describes."""
        from ..repo.dataset import DatasetType

        return DatasetType(self.name, self._units, self.storageClass)

    def copy(self) -> DatasetConfig:
        new = super().copy()
        object.__setattr__(new, "_units", self._units)
        object.__setattr__(new, "_role", self._role)
        return new

    def _setField(self, field: FieldBase, value: Any) -> None:
        if field.name == "name" and not self._frozen:
            self._checkName(field.assign(self, value))
        super()._setField(field, value)

    def _checkName(self, name: str | None) -> None:
        """Refuse names the registry could not use, at assignment rather than at planning."""
        from ..repo.dataset import DatasetType

        if name is None:
            return
        try:
            DatasetType(name, (), "check")
        except ValueError as err:
            raise FieldValidationError(f"field {self._fieldPath('name')!r}: {err}") from None

    def validate(self) -> None:
        super().validate()
        self._checkName(self.name)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore_dataset_config, (self.toDict(), self._units, self._role, self._frozen))


def _restore_dataset_config(
    data: dict[str, Any], units: tuple[str, ...], role: str, frozen: bool
) -> DatasetConfig:
    value = DatasetConfig.fromDict(data)
    object.__setattr__(value, "_units", units)
    object.__setattr__(value, "_role", role)
    if frozen:
        value.freeze()
    return value


class DatasetField(FieldBase):
    """A dataset a SuperTask reads or writes (DMTN-055 section 4.1).

    Parameters
    ----------
    doc : `str`
        What the dataset is to this task.
    units : `tuple` [`str`]
        Unit names identifying one dataset (e.g. ``("instrument", "visit", "detector")``);
        fixed by the task class, because the task's code depends on them.
    storageClass : `str`
        Default storage class.
    name : `str`
        Default dataset type name.
    role : `str`
        ``"input"`` or ``"output"``.
    """

    def __init__(self, doc: str, units: tuple[str, ...], storageClass: str, name: str, role: str = "input"):
        if role not in ("input", "output"):
            raise TypeError(f"DatasetField role must be 'input' or 'output', not {role!r}")
        if isinstance(units, str):
            raise TypeError(f"DatasetField units must be a tuple of unit names, not the string {units!r}")
        super().__init__(doc, None, optional=False)
        self.units = tuple(sorted(set(units)))
        self.storageClass, self.datasetName, self.role = storageClass, name, role

    def makeDefault(self, config: Config) -> DatasetConfig:
        value = DatasetConfig(name=self.datasetName, storageClass=self.storageClass)
        object.__setattr__(value, "_units", self.units)
        object.__setattr__(value, "_role", self.role)
        return _adopt(config, self.name, value)

    def assign(self, config: Config, value: Any) -> DatasetConfig:
        current: DatasetConfig = config._values[self.name]
        new = current.copy()
        if isinstance(value, str):
            new.name = value
        elif isinstance(value, Mapping):
            if "units" in value and tuple(sorted(value["units"])) != self.units:
                raise FieldValidationError(
                    f"{config._describeField(self.name)}: units are fixed by the task class "
                    f"({', '.join(self.units)}); only 'name' and 'storageClass' can be configured"
                )
            new.update({k: v for k, v in value.items() if k != "units"})
        elif isinstance(value, DatasetConfig):
            new.update({"name": value.name, "storageClass": value.storageClass})
        else:
            raise FieldValidationError(
                f"{config._describeField(self.name)}: cannot assign {value!r}; set "
                f"{config._fieldPath(self.name)}.name or .storageClass"
            )
        return _adopt(config, self.name, new)

    def assignString(self, config: Config, text: str) -> DatasetConfig:
        return self.assign(config, text)

    def toSaved(self, value: DatasetConfig) -> Any:
        return value.toDict()

    def copyValue(self, config: Config, value: DatasetConfig) -> DatasetConfig:
        return _adopt(config, self.name, value.copy())

    def freezeValue(self, value: DatasetConfig) -> None:
        value.freeze()

    def checkComplete(self, config: Config, value: DatasetConfig) -> None:
        value.validate()

    def typeName(self) -> str:
        return f"{self.role} dataset ({', '.join(self.units)})"
