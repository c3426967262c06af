"""Config overrides from Python files, YAML files and ``label:field.sub=value`` strings.

Each entry point wraps failures in `ConfigOverrideError` naming where the override
came from (file and line, or the string), because an operator running a pipeline
did not write the task and needs to know which of their inputs to fix.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .config import Config
from .errors import ConfigOverrideError, FieldValidationError, FrozenConfigError

__all__ = [
    "apply_python_file",
    "apply_yaml_file",
    "apply_yaml_text",
    "apply_string",
    "apply_file",
    "parse_label_override",
]


def apply_python_file(config: Config, path: str | Path) -> None:
    """Execute a Python override file with ``config`` bound to the config.

    Parameters
    ----------
    config : `Config`
        The config to modify.
    path : `str` or `~pathlib.Path`
        The file, e.g. containing ``config.threshold = 5.0``.

    Raises
    ------
    ConfigOverrideError
        Naming the file and line of the failing statement, and the original error.
    """
    path = Path(path)
    try:
        source = path.read_text()
    except OSError as err:
        raise ConfigOverrideError(f"cannot read config override file {path}: {err.strerror}") from None
    filename = str(path)
    try:
        code = compile(source, filename, "exec")
    except SyntaxError as err:
        raise ConfigOverrideError(f"{filename}, line {err.lineno}: syntax error: {err.msg}") from None
    namespace: dict[str, Any] = {"config": config, "__file__": filename, "__name__": "__config_override__"}
    try:
        exec(code, namespace)
    except Exception as err:
        lines = [
            frame.lineno for frame in traceback.extract_tb(err.__traceback__) if frame.filename == filename
        ]
        where = f", line {lines[-1]}" if lines else ""
        raise ConfigOverrideError(f"{filename}{where}: {type(err).__name__}: {err}") from err


def apply_yaml_text(config: Config, text: str, *, source: str = "<string>") -> None:
    """Apply a YAML mapping of (nested or dotted) field paths to values."""
    import yaml

    from ..yaml_errors import yaml_error_parts

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        where, problem = yaml_error_parts(err)
        raise ConfigOverrideError(f"{source}{where}: malformed YAML: {problem}") from None
    if data is None:
        return
    if not isinstance(data, Mapping):
        raise ConfigOverrideError(
            f"{source}: a YAML config override must be a mapping of field names to values, "
            f"not a {type(data).__name__}"
        )
    try:
        config.update(data)
    except FieldValidationError as err:
        raise ConfigOverrideError(f"{source}: {err}") from err


def apply_yaml_file(config: Config, path: str | Path) -> None:
    """Apply a YAML override file (see `apply_yaml_text`)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigOverrideError(f"cannot read config override file {path}: {err.strerror}") from None
    apply_yaml_text(config, text, source=str(path))


def apply_file(config: Config, path: str | Path) -> None:
    """Apply a ``.py`` or ``.yaml``/``.yml`` override file, chosen by extension."""
    suffix = Path(path).suffix.lower()
    if suffix == ".py":
        apply_python_file(config, path)
    elif suffix in (".yaml", ".yml"):
        apply_yaml_file(config, path)
    else:
        raise ConfigOverrideError(
            f"config override file {path} must end in .py (Python assignments) or .yaml/.yml (a mapping)"
        )


def apply_string(config: Config, assignment: str) -> None:
    """Apply ``"field.sub=value"``; the value is coerced to the field's type.

    Raises
    ------
    ConfigOverrideError
        If the string has no ``=`` or the value does not fit; names the string.
    """
    path, sep, text = assignment.partition("=")
    path = path.strip()
    if not sep or not path:
        raise ConfigOverrideError(f"config override {assignment!r} must look like field.subfield=value")
    try:
        config._setFromString(path, text.strip())
    except FrozenConfigError:
        raise
    except FieldValidationError as err:
        raise ConfigOverrideError(f"config override {assignment!r}: {err}") from err


def parse_label_override(text: str) -> tuple[str, str]:
    """Split ``"label:field.sub=value"`` into ``("label", "field.sub=value")``.

    Raises
    ------
    ConfigOverrideError
        If there is no ``label:`` prefix before the ``=``.
    """
    head, sep, _ = text.partition("=")
    label, colon, field_path = head.partition(":")
    if not sep or not colon or not label.strip() or not field_path.strip():
        raise ConfigOverrideError(
            f"config override {text!r} must look like label:field.subfield=value (e.g. isr:threshold=4.5)"
        )
    return label.strip(), text[len(head) - len(field_path) :].strip()
