"""Exceptions raised by the config system.

All of them derive from `FieldValidationError` (a `ValueError`) so that callers that
only want to report "the configuration is wrong" can catch one class, while the
subclasses let tests and tools tell the cases apart.
"""

from __future__ import annotations

from collections.abc import Iterable


class FieldValidationError(ValueError):
    """A value does not fit its field (wrong type, out of range, not an allowed choice, missing)."""


class UnknownFieldError(FieldValidationError, AttributeError):
    """A field name that the config class does not declare (usually a typo).

    Also an `AttributeError` so that ``getattr(config, name, default)`` and ``hasattr``
    keep working.
    """


class FrozenConfigError(FieldValidationError):
    """An assignment to a config after its task was constructed."""


class ConfigOverrideError(FieldValidationError):
    """An override (Python file, YAML file or ``field=value`` string) failed; names where."""


def suggest(name: str, choices: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest of ``choices``, or ``""``.

    Parameters
    ----------
    name : `str`
        The misspelled name.
    choices : iterable of `str`
        The valid names.
    """
    import difflib  # only error paths need it

    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""
