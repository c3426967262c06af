"""The `Config` base class: a typed, validated, freezable set of field values.

A `Config` subclass declares fields as class attributes; an instance holds one value
per field. The design follows the seed (DMTN-055 section 2): overrides are plain
assignments, nested configs and retargetable subtask configs compose, and a config is
frozen once its task is constructed, so a task cannot change behaviour after planning.

The saved form (`Config.toDict`, `Config.saveToString`) is a plain nested mapping of
YAML-safe values in declaration order. It is what travels to batch jobs (inside the
pipeline YAML stored in a graph file) and what `Config.digest` hashes for provenance.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

from .errors import FieldValidationError, FrozenConfigError, UnknownFieldError, suggest
from .fields import FieldBase

__all__ = ["MOVED_MODULES", "Config", "class_path", "import_class"]

#: Modules that left this package: old dotted prefix -> (new prefix, why). A path under an
#: old prefix (a pipeline file or a graph written before the move) is refused with the new
#: name rather than guessed: the configs and digests stored with it name the old classes.
MOVED_MODULES: dict[str, tuple[str, str]] = {
    "supertask.demo.": ("demo_drp.", "the demo is the separate demo_drp package now"),
}


def class_path(cls: type) -> str:
    """The importable dotted path of a class, e.g. ``"demo_drp.tasks.IsrTask"``."""
    return f"{cls.__module__}.{cls.__qualname__}"


def import_class(path: str, *, what: str = "class") -> type:
    """Import a class from a dotted path (``"pkg.module.Class"`` or ``"pkg.module:Class"``).

    Raises
    ------
    ImportError
        Naming the path and what part could not be found.
    """
    import importlib

    for old, (new, why) in MOVED_MODULES.items():
        if path.startswith(old):
            raise ImportError(
                f"cannot import {what} {path!r}: it is {new + path[len(old) :]!r} since {why}; "
                "name that in the pipeline file and plan the graph again"
            )
    if ":" in path:
        module_name, _, attr_path = path.partition(":")
        candidates = [(module_name, attr_path)]
    else:
        parts = path.split(".")
        candidates = [(".".join(parts[:i]), ".".join(parts[i:])) for i in range(len(parts) - 1, 0, -1)]
    last_error: Exception | None = None
    for module_name, attr_path in candidates:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name and not module_name.startswith(err.name) and err.name != module_name:
                # the module exists but one of its own imports is missing: say so, not "no such module"
                raise ImportError(
                    f"cannot import {what} {path!r}: module {module_name!r} needs {err.name!r}, which is not "
                    "installed or not on PYTHONPATH"
                ) from err
            last_error = err
            continue
        obj: Any = module
        try:
            for attr in attr_path.split("."):
                obj = getattr(obj, attr)
        except AttributeError:
            names = [n for n in dir(module) if not n.startswith("_")]
            raise ImportError(
                f"cannot import {what} {path!r}: module {module_name!r} has no {attr_path!r}."
                f"{suggest(attr_path, names)}"
            ) from None
        if not isinstance(obj, type):
            raise ImportError(f"{what} {path!r} is a {type(obj).__name__}, not a class")
        return obj
    raise ImportError(
        f"cannot import {what} {path!r}: no such module ({last_error}); check the spelling and that the "
        "package is installed or on PYTHONPATH"
    )


class Config:
    """Base class of task configurations.

    Subclasses declare fields::

        class IsrConfig(Config):
            threshold = Field(dtype=float, default=5.0, doc="Detection threshold (sigma).")

    Instances start from the defaults; ``Config(threshold=4.0)`` applies overrides.
    Assigning an undeclared name raises `UnknownFieldError` with a suggestion, a
    bad value raises `FieldValidationError`, and assigning after `freeze` raises
    `FrozenConfigError`.
    """

    _fields: ClassVar[dict[str, FieldBase]] = {}
    __slots__ = ("_values", "_frozen", "_path", "__weakref__")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fields: dict[str, FieldBase] = {}
        for base in reversed(cls.__mro__[1:]):
            fields.update(getattr(base, "_fields", {}))
        for name, value in list(vars(cls).items()):
            if isinstance(value, FieldBase):
                fields[name] = value
        cls._fields = fields

    def __init__(self, **overrides: Any):
        object.__setattr__(self, "_frozen", False)
        object.__setattr__(self, "_path", "")
        object.__setattr__(self, "_values", {})
        for name, field in self._fields.items():
            self._values[name] = field.makeDefault(self)
        self.setDefaults()
        if overrides:
            self.update(overrides)

    def setDefaults(self) -> None:
        """Hook for subclasses: adjust defaults of nested configs (runs in ``__init__``)."""

    # -- attribute access ---------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        field = self._fields.get(name)
        if field is None:
            if name.startswith("_"):
                object.__setattr__(self, name, value)
                return
            raise self._unknown(name)
        self._setField(field, value)

    def __getattr__(self, name: str) -> Any:
        # only called when normal lookup failed; private names (e.g. before __init__ ran) are plain misses
        if name.startswith("_"):
            raise AttributeError(name)
        raise self._unknown(name)

    def __delattr__(self, name: str) -> None:
        raise TypeError(f"config fields cannot be deleted; set {self._fieldPath(name)} to a value instead")

    def _setField(self, field: FieldBase, value: Any) -> None:
        if self._frozen:
            raise FrozenConfigError(
                f"cannot set {self._fieldPath(field.name)} = {value!r}: the config of "
                f"{type(self).__name__} is frozen because its task has been constructed. Apply overrides "
                "before constructing the task (in the pipeline file, a config file or --config)."
            )
        self._values[field.name] = field.assign(self, value)

    def _unknown(self, name: str) -> UnknownFieldError:
        names = list(self._fields)
        return UnknownFieldError(
            f"{type(self).__name__} has no field {self._fieldPath(name)!r}.{suggest(name, names)} "
            f"Fields are: {', '.join(names) or '(none)'}."
        )

    def _fieldPath(self, name: str) -> str:
        return f"{self._path}.{name}" if self._path else name

    def _setPath(self, path: str) -> None:
        """Record where this config sits under its parents (recursively), for error messages."""
        object.__setattr__(self, "_path", path)
        for name in self._fields:
            child = self._values.get(name)
            child = getattr(child, "value", child) if not isinstance(child, Config) else child
            if isinstance(child, Config):
                child._setPath(self._fieldPath(name))

    def _describeField(self, name: str) -> str:
        return f"field {self._fieldPath(name)!r} of {type(self).__name__}"

    # -- mapping-like helpers -------------------------------------------------------------
    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def items(self) -> Iterator[tuple[str, Any]]:
        """``(field name, value)`` pairs in declaration order."""
        for name in self._fields:
            yield name, self._values[name]

    @classmethod
    def fields(cls) -> Mapping[str, FieldBase]:
        """The declared fields, by name, in declaration order."""
        return dict(cls._fields)

    # -- updates ----------------------------------------------------------------------------
    def update(self, overrides: Mapping[str, Any]) -> None:
        """Apply nested or dotted overrides: ``{"sub": {"x": 1}}`` or ``{"sub.x": 1}``.

        Nested config values (`ConfigField`, `ConfigurableField`, `DatasetField`) given
        as mappings update the nested config in place instead of replacing it.
        """
        for key, value in overrides.items():
            if not isinstance(key, str):
                raise FieldValidationError(f"override keys must be field names (strings), not {key!r}")
            head, _, rest = key.partition(".")
            if rest:
                self._child(head).update({rest: value})
                continue
            field = self._fields.get(head)
            if field is None:
                raise self._unknown(head)
            # nested fields treat a mapping as "update these sub-fields" (on a copy: all or nothing)
            self._setField(field, value)

    def _child(self, name: str) -> Any:
        """The nested config stored under ``name`` (for dotted paths)."""
        field = self._fields.get(name)
        if field is None:
            raise self._unknown(name)
        child = self._values[name]
        if not hasattr(child, "_setFromString"):
            raise FieldValidationError(
                f"{self._describeField(name)} is a {field.typeName()}, not a nested config; "
                f"remove the part after {self._fieldPath(name)!r}"
            )
        return child

    def _setFromString(self, path: str, text: str) -> None:
        """Set the field at dotted ``path`` from a command-line string (with type coercion)."""
        head, _, rest = path.partition(".")
        if rest:
            self._child(head)._setFromString(rest, text)
            return
        field = self._fields.get(head)
        if field is None:
            raise self._unknown(head)
        if self._frozen:
            self._setField(field, text)  # raises FrozenConfigError
        self._values[head] = field.assignString(self, text)

    # -- freezing and validation --------------------------------------------------------
    def freeze(self) -> None:
        """Refuse any later assignment, here and in nested configs."""
        object.__setattr__(self, "_frozen", True)
        for name, field in self._fields.items():
            field.freezeValue(self._values[name])

    @property
    def frozen(self) -> bool:
        """Whether `freeze` has been called."""
        return bool(self._frozen)

    def validate(self) -> None:
        """Check that the whole config is usable (required values present, nested configs valid).

        Subclasses may extend it with cross-field checks; call ``super().validate()``.
        """
        for name, field in self._fields.items():
            field.checkComplete(self, self._values[name])

    # -- saved form, equality, digest -------------------------------------------------------------
    def toDict(self) -> dict[str, Any]:
        """The saved form: a plain nested dict in declaration order (YAML/JSON-safe)."""
        return {name: field.toSaved(self._values[name]) for name, field in self._fields.items()}

    @classmethod
    def fromDict(cls, data: Mapping[str, Any]) -> Self:
        """Build a config from `toDict` output (or any nested override mapping)."""
        config = cls()
        config.update(data)
        return config

    def saveToString(self) -> str:
        """The saved form as YAML text; ``loadFromString(saveToString(c)) == c``."""
        import yaml

        header = f"# {class_path(type(self))}\n"
        return header + yaml.safe_dump(self.toDict(), sort_keys=False, default_flow_style=False)

    @classmethod
    def loadFromString(cls, text: str) -> Config:
        """Inverse of `saveToString`."""
        import yaml

        data = yaml.safe_load(text) or {}
        if not isinstance(data, Mapping):
            raise FieldValidationError(
                f"a saved {cls.__name__} must be a YAML mapping, got {type(data).__name__}"
            )
        return cls.fromDict(data)

    def save(self, path: str | Path) -> None:
        """Write the saved form to ``path`` (atomically: a temporary file then a rename)."""
        from ..atomic_write import atomic_write_text

        atomic_write_text(path, self.saveToString())

    @classmethod
    def load(cls, path: str | Path) -> Config:
        """Read a config written by `save`."""
        return cls.loadFromString(Path(path).read_text())

    def digest(self) -> str:
        """A SHA-256 of the class path and saved form; equal in every process and Python run."""
        import hashlib  # imported here: batch jobs build configs but rarely digest them
        import json

        payload = json.dumps(
            {"class": class_path(type(self)), "values": self.toDict()}, sort_keys=True, separators=(",", ":")
        )
        return hashlib.sha256(payload.encode()).hexdigest()

    def copy(self) -> Self:
        """An unfrozen deep copy."""
        new = type(self).__new__(type(self))
        object.__setattr__(new, "_frozen", False)
        object.__setattr__(new, "_path", self._path)
        object.__setattr__(new, "_values", {})
        for name, field in self._fields.items():
            new._values[name] = field.copyValue(new, self._values[name])
        return new

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Config):
            return NotImplemented
        return type(self) is type(other) and self.toDict() == other.toDict()

    __hash__ = None  # type: ignore[assignment]  # mutable until frozen

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.items())
        return f"{type(self).__name__}({inner})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore_config, (type(self), self.toDict(), self._frozen))


def _restore_config(cls: type[Config], data: dict[str, Any], frozen: bool) -> Config:
    config = cls.fromDict(data)
    if frozen:
        config.freeze()
    return config
