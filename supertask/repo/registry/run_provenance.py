"""Digests of what a RUN collection was made with: the pipeline and every task's config.

A RUN holds the outputs of one pipeline with one configuration. Writing more into it
(a resume, ``--extend-run``) is only safe with the same pipeline and configs: otherwise
the run would mix datasets made by different code or settings under one name, and a
rerun could replace registered files with different bytes. The registry compares these
digests when a run is registered again (`Registry.registerRun`), and planning compares
them before any work is done (`check_run_digests`), so a mismatch is refused early with
a message naming the way out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["DIGEST_KEYS", "mismatch_message", "run_digests"]

#: the provenance keys whose digests must agree between executions into one RUN
DIGEST_KEYS = ("pipeline", "configs")


def _digest(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def run_digests(provenance: Mapping[str, Any] | None) -> dict[str, str]:
    """``{"pipeline": hex, "configs": hex}`` for the keys ``provenance`` has (others are left out)."""
    if not provenance:
        return {}
    return {key: _digest(provenance[key]) for key in DIGEST_KEYS if provenance.get(key) is not None}


def mismatch_message(run: str, stored: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> str:
    """The refusal for writing into ``run`` with another pipeline or config ('' when they agree).

    Only keys recorded on both sides are compared: a run registered without provenance
    (e.g. by ``Butler(run=...)``) accepts any pipeline.
    """
    old, now = run_digests(stored), run_digests(new)
    differ = [k for k in DIGEST_KEYS if k in old and k in now and old[k] != now[k]]
    if not differ:
        return ""
    what = " and ".join("pipeline" if k == "pipeline" else "task configs" for k in differ)
    detail = ", ".join(f"{k} {old[k][:12]} != {now[k][:12]}" for k in differ)
    return (
        f"RUN {run!r} was made with a different {what} ({detail}); its outputs cannot be extended, "
        "skipped (--extend-run, --skip-existing, --skip-existing-in) or replaced (--clobber-outputs) "
        "by this one: write to a new RUN (-o NEW_RUN), or use the run's own pipeline and configs"
    )
