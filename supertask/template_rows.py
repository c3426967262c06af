"""Rows of data-ID values formatted many at a time through one ``str.format`` template.

A million file names or datastore paths cost a Python call each when formatted one by
one; ``itertools.starmap(template.format, rows)`` formats them in C. That is only right
when each value's text is what the one-by-one rule would write, which `plain_rows`
checks for a whole batch at once; the callers (`supertask.repo.datastore` for paths,
`bps.names` for logical file names) say which strings their rule keeps as they are.

Standard library only: `bps` imports this at prepare time, a batch job never.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["escape_literal", "plain_rows"]

_PLAIN_TYPES = frozenset((int, str))


def escape_literal(text: str) -> str:
    """``text`` as literal text of a `str.format` template."""
    return text.replace("{", "{{").replace("}", "}}")


def plain_rows(rows: Sequence[tuple[Any, ...]], width: int, kept: Callable[[str], bool]) -> bool:
    """Whether every row has ``width`` values, each an int or a str for which ``kept`` is true
    (a string the caller's rule writes as it stands): rows a template formats as the rule
    would. Two passes in C over the values, and ``kept`` once per distinct string."""
    if not rows:
        return True
    if set(map(len, rows)) != {width}:
        return False
    types = set(map(type, itertools.chain.from_iterable(rows)))
    if not types <= _PLAIN_TYPES:
        return False
    if str not in types:
        return True
    # ints and strs only: the set holds each distinct value once
    distinct = set(itertools.chain.from_iterable(rows))
    return all(kept(v) for v in distinct if type(v) is str)
