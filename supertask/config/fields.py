"""Scalar, list and dict fields of a `Config`.

A field is a descriptor declared on a `Config` subclass, as users of pex_config write
them: ``threshold = Field(dtype=float, default=5.0, doc="...")``. Values are checked on
assignment by the rules of `.validation` (small and ours, messages included: every
batch job rebuilds its configs, so validation is on the job's start-up path).

Assignments from Python are checked in *strict* mode (``"5"`` is not a float, ``1``
is not a bool) because silent coercion hides mistakes in override files. Strings from
the command line go through `FieldBase.assignString`, which parses them as YAML and
then validates in *lax* mode (``"1e-3"`` is a float there).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

from .errors import FieldValidationError
from .validation import Invalid, make_bounds, validate_dict, validate_list, validate_scalar

if TYPE_CHECKING:
    from .config import Config

__all__ = ["FieldBase", "Field", "ListField", "DictField", "ConfigDict"]

_SCALAR_TYPES = (bool, int, float, str)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", repr(tp))


class FieldBase:
    """The descriptor protocol shared by every field kind.

    Parameters
    ----------
    doc : `str`
        What the field means; required, because ``pipeline show`` and the docs print it.
    default : optional
        The default value (validated when a config is first created).
    optional : `bool`
        Whether ``None`` is an acceptable value. A non-optional field whose value is
        ``None`` fails `Config.validate`, which every task runs when it is constructed.
    """

    name: str = "<unnamed>"

    def __init__(self, doc: str, default: Any = None, optional: bool = False):
        if not isinstance(doc, str) or not doc.strip():
            raise TypeError(
                "every config field needs a non-empty doc string: Field(..., doc='what it means')"
            )
        self.doc = doc
        self.default = default
        self.optional = optional

    # -- descriptor protocol --------------------------------------------------------
    def __set_name__(self, owner: type, name: str) -> None:
        if name.startswith("_"):
            raise TypeError(f"config field names must not start with '_': {owner.__name__}.{name}")
        self.name = name

    def __get__(self, instance: Config | None, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return instance._values[self.name]

    def __set__(self, instance: Config, value: Any) -> None:
        instance._setField(self, value)

    # -- hooks used by Config ---------------------------------------------------------
    def makeDefault(self, config: Config) -> Any:
        """Return the value a new config starts with (validated)."""
        if self.default is None:
            return None
        return self.assign(config, self.default)

    def assign(self, config: Config, value: Any) -> Any:
        """Validate ``value`` for this field of ``config`` and return what to store."""
        if value is None:
            if self.optional:
                return None
            raise FieldValidationError(
                f"{config._describeField(self.name)} is required and cannot be None "
                f"(expected {self.typeName()})"
            )
        return self._convert(config, value, strict=True)

    def assignString(self, config: Config, text: str) -> Any:
        """Validate a command-line string: parsed as YAML, then validated leniently."""
        import yaml

        if text.strip() in ("None", "null", "~") and self.optional:
            return None
        try:
            parsed = yaml.safe_load(text)
        except yaml.YAMLError:
            parsed = text
        return self._convert(config, parsed, strict=False)

    def toSaved(self, value: Any) -> Any:
        """The plain (YAML/JSON) form of a value."""
        return value

    def loadSaved(self, config: Config, data: Any) -> Any:
        """Inverse of `toSaved`."""
        return self.assign(config, data)

    def copyValue(self, config: Config, value: Any) -> Any:
        """A copy of ``value`` owned by ``config`` (values are immutable by default)."""
        return value

    def freezeValue(self, value: Any) -> None:
        """Make a value read-only (nested configs); scalars are immutable already."""

    def checkComplete(self, config: Config, value: Any) -> None:
        """Raise if the value is not acceptable for running (e.g. a required field is None)."""
        if value is None and not self.optional:
            raise FieldValidationError(
                f"{config._describeField(self.name)} has no value and is not optional: set it in an "
                f"override (expected {self.typeName()})"
            )

    def typeName(self) -> str:
        """A short human description of the accepted values."""
        raise NotImplementedError

    def _convert(self, config: Config, value: Any, strict: bool) -> Any:
        raise NotImplementedError


class _ValidatedMixin:
    """Validates with the rules of `.validation`; a broken rule becomes a `FieldValidationError`."""

    def _checkValue(self, value: Any, strict: bool) -> Any:
        """Validate ``value``; raises `.validation.Invalid`."""
        raise NotImplementedError

    def _validate(self, config: Config, value: Any, strict: bool) -> Any:
        try:
            return self._checkValue(value, strict)
        except Invalid as err:
            self._fail(config, value, err.loc, err.msg)

    def _fail(self, config: Config, value: Any, loc: tuple[Any, ...], msg: str) -> NoReturn:
        where = "".join(f"[{part!r}]" for part in loc)
        raise FieldValidationError(
            f"{config._describeField(self.name)}: value {value!r} ({type(value).__name__}) is not a "  # type: ignore[attr-defined]
            f"valid {self.typeName()}{' at ' + where if where else ''}: {msg}"  # type: ignore[attr-defined]
        ) from None


class Field(_ValidatedMixin, FieldBase):
    """A scalar field: `bool`, `int`, `float` or `str`.

    Parameters
    ----------
    dtype : `type`
        One of `bool`, `int`, `float`, `str`.
    doc : `str`
        What the field means.
    default : optional
        Default value.
    optional : `bool`, optional
        Whether ``None`` is allowed.
    allowed : `dict` or sequence, optional
        The only acceptable values; a dict maps each value to its meaning (shown in
        errors, as in pex_config's ChoiceField).
    min, max : number, optional
        Inclusive bounds (exclusive with ``inclusiveMin=False`` / ``inclusiveMax=False``).
    """

    def __init__(
        self,
        dtype: type,
        doc: str,
        default: Any = None,
        optional: bool = False,
        allowed: Mapping[Any, str] | list | tuple | None = None,
        min: float | None = None,
        max: float | None = None,
        inclusiveMin: bool = True,
        inclusiveMax: bool = True,
    ):
        if dtype not in _SCALAR_TYPES:
            raise TypeError(
                f"Field dtype must be one of bool, int, float, str, not {dtype!r}; "
                "use ListField, DictField or ConfigField for structured values"
            )
        if (min is not None or max is not None) and dtype not in (int, float):
            raise TypeError(f"min/max only apply to int and float fields, not {dtype.__name__}")
        super().__init__(doc, default, optional)
        self.dtype = dtype
        self.allowed = (
            dict(allowed)
            if isinstance(allowed, Mapping)
            else ({value: "" for value in allowed} if allowed is not None else None)
        )
        self.min, self.max = min, max
        self.inclusiveMin, self.inclusiveMax = inclusiveMin, inclusiveMax
        self._bounds = make_bounds(dtype, min, max, inclusiveMin, inclusiveMax)

    def _checkValue(self, value: Any, strict: bool) -> Any:
        return validate_scalar(self.dtype, value, strict, self._bounds)

    def assignString(self, config: Config, text: str) -> Any:
        if self.dtype is str:
            return self._convert(config, text, strict=True)
        return super().assignString(config, text)

    def _convert(self, config: Config, value: Any, strict: bool) -> Any:
        result = self._validate(config, value, strict)
        if self.dtype is float and math.isnan(result):
            raise FieldValidationError(f"{config._describeField(self.name)}: NaN is not an acceptable value")
        if self.allowed is not None and result not in self.allowed:
            choices = ", ".join(f"{v!r}" + (f" ({d})" if d else "") for v, d in self.allowed.items())
            raise FieldValidationError(
                f"{config._describeField(self.name)}: value {value!r} is not allowed; choose one of {choices}"
            )
        return result

    def typeName(self) -> str:
        name = self.dtype.__name__
        if self.min is not None or self.max is not None:
            lo = "(" if not self.inclusiveMin else "["
            hi = ")" if not self.inclusiveMax else "]"
            name += f" in {lo}{'-inf' if self.min is None else self.min}, {'inf' if self.max is None else self.max}{hi}"
        if self.allowed is not None:
            name += f" in {sorted(self.allowed, key=repr)}"
        return name + (" or None" if self.optional else "")


class ListField(_ValidatedMixin, FieldBase):
    """A list of scalars, stored as a `tuple` so that it cannot change without validation.

    Parameters
    ----------
    dtype : `type`
        Item type (`bool`, `int`, `float`, `str`).
    doc : `str`
        What the field means.
    default : sequence, optional
        Default items.
    optional : `bool`, optional
        Whether ``None`` is allowed.
    minLength, maxLength : `int`, optional
        Bounds on the number of items.
    itemMin, itemMax : number, optional
        Inclusive bounds on each item.

    Notes
    -----
    Values are tuples: write ``config.radii = [1, 2, 3]`` (or ``config.radii += (4,)``)
    rather than ``config.radii.append(4)``, so every change passes validation and a
    frozen config cannot be changed through a list it handed out.
    """

    def __init__(
        self,
        dtype: type,
        doc: str,
        default: Any = None,
        optional: bool = False,
        minLength: int | None = None,
        maxLength: int | None = None,
        itemMin: float | None = None,
        itemMax: float | None = None,
    ):
        if dtype not in _SCALAR_TYPES:
            raise TypeError(f"ListField dtype must be one of bool, int, float, str, not {dtype!r}")
        super().__init__(doc, default, optional)
        self.dtype = dtype
        self.minLength, self.maxLength = minLength, maxLength
        self.itemMin, self.itemMax = itemMin, itemMax
        if (itemMin is not None or itemMax is not None) and dtype not in (int, float):
            raise TypeError(f"itemMin/itemMax only apply to lists of int or float, not {dtype.__name__}")
        self._itemBounds = make_bounds(dtype, itemMin, itemMax, True, True)

    def _checkValue(self, value: Any, strict: bool) -> Any:
        return validate_list(self.dtype, value, strict, self._itemBounds, self.minLength, self.maxLength)

    def _convert(self, config: Config, value: Any, strict: bool) -> Any:
        if isinstance(value, str) or not isinstance(value, list | tuple):
            self._fail(config, value, (), "give a list")
        return tuple(self._validate(config, list(value), strict))

    def toSaved(self, value: Any) -> Any:
        return None if value is None else list(value)

    def typeName(self) -> str:
        return f"list of {self.dtype.__name__}" + (" or None" if self.optional else "")


class ConfigDict(Mapping):
    """A read-only mapping: the value of a `DictField`.

    Read-only for the same reason `ListField` values are tuples: every change must go
    through assignment, where it is validated and refused once the config is frozen.
    """

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[Any, Any]):
        self._data = dict(data)

    def __getitem__(self, key: Any) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return repr(self._data)

    def __reduce__(self):
        return (ConfigDict, (self._data,))


class DictField(_ValidatedMixin, FieldBase):
    """A mapping from scalar keys to scalar values.

    Parameters
    ----------
    keytype, itemtype : `type`
        Key and value types (`bool`, `int`, `float`, `str`).
    doc : `str`
        What the field means.
    default : mapping, optional
        Default content.
    optional : `bool`, optional
        Whether ``None`` is allowed.
    """

    def __init__(self, keytype: type, itemtype: type, doc: str, default: Any = None, optional: bool = False):
        for what, tp in (("keytype", keytype), ("itemtype", itemtype)):
            if tp not in _SCALAR_TYPES:
                raise TypeError(f"DictField {what} must be one of bool, int, float, str, not {tp!r}")
        super().__init__(doc, default, optional)
        self.keytype, self.itemtype = keytype, itemtype

    def _checkValue(self, value: Any, strict: bool) -> Any:
        return validate_dict(self.keytype, self.itemtype, value, strict)

    def _convert(self, config: Config, value: Any, strict: bool) -> Any:
        if not isinstance(value, Mapping):
            self._fail(config, value, (), "give a mapping")
        return ConfigDict(self._validate(config, dict(value), strict))

    def toSaved(self, value: Any) -> Any:
        return None if value is None else dict(value)

    def typeName(self) -> str:
        return f"dict of {self.keytype.__name__} -> {self.itemtype.__name__}" + (
            " or None" if self.optional else ""
        )
