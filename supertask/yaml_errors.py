"""Where a YAML file is malformed, said the same way by every parser of our files.

Pipeline files, config overrides and unit-record files each refuse malformed YAML with
their own error class and message; the line and the parser's problem come from here.
"""

from __future__ import annotations


def yaml_error_parts(err: Exception) -> tuple[str, str]:
    """``(", line N", problem)`` of a YAML parse error (``""`` when it has no position).

    ``err`` is a ``yaml.YAMLError``; its ``problem_mark`` counts lines from 0, and an
    error without a ``problem`` is described by its own text.
    """
    mark = getattr(err, "problem_mark", None)
    line = f", line {mark.line + 1}" if mark is not None else ""
    return line, str(getattr(err, "problem", None) or err)
