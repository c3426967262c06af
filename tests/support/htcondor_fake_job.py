#!/usr/bin/env python3
"""A stand-in for ``run_quantum`` in HTCondor tests: reads inputs, writes outputs, can fail.

``--in LFN=PATH`` / ``--out LFN=PATH`` name datasets (PATH relative to the datastore).
With ``--repo`` (shared filesystem) it reads and writes datastore paths; with
``--inputs-dir`` / ``--outputs-dir`` (file transfer) it uses logical file names there.
Each output holds a digest of the quantum and its inputs, so both staging modes must
produce identical files. ``--exit CODE`` fails; ``--fail-until-attempt N --marker F``
fails the first N-1 attempts; ``--memory MB`` claims a peak memory (see dagman_runner).
``--no-work`` behaves like ``run_quantum`` for a quantum with no work: a tombstone
(`bps.staging.write_tombstone`) where each output would go, and exit 0. With
``--allow-missing`` (a gathering task) tombstoned inputs are dropped, as ``run_quantum``
drops them; ``--expect-no-work`` fails unless one arrived.
"""

import argparse
import hashlib
import os
import sys
from pathlib import Path

from bps.staging import is_tombstone, write_tombstone

p = argparse.ArgumentParser()
p.add_argument("--graph", required=True)
p.add_argument("--quantum", action="append", default=[])
p.add_argument("--in", dest="inputs", action="append", default=[])
p.add_argument("--out", dest="outputs", action="append", default=[])
p.add_argument("--exit", type=int, default=0)
p.add_argument("--fail-until-attempt", type=int, default=0)
p.add_argument("--marker")
p.add_argument("--memory", type=int)
p.add_argument("--allow-missing", action="store_true", help="skip absent inputs (a gathering task)")
p.add_argument("--no-work", action="store_true", help="leave tombstones for the outputs and exit 0")
p.add_argument("--expect-no-work", action="store_true", help="fail unless a tombstoned input arrived")
p.add_argument("--repo")
p.add_argument("--inputs-dir")
p.add_argument("--outputs-dir")
a = p.parse_args()

if not Path(a.graph).is_file():
    sys.exit(f"graph file {a.graph} not found")
print(f"quanta {a.quantum}; PATH={os.environ.get('PATH')}; HOME={os.environ.get('HOME')}")
if a.memory is not None:
    Path(os.environ["_CONDOR_SCRATCH_DIR"], ".bps_test_memory_mb").write_text(str(a.memory))
if a.fail_until_attempt:
    marker = Path(a.marker)
    attempt = int(marker.read_text()) + 1 if marker.exists() else 1
    marker.write_text(str(attempt))
    if attempt < a.fail_until_attempt:
        print(f"attempt {attempt}: failing on purpose", file=sys.stderr)
        sys.exit(75)
if a.exit:
    print(f"failing with exit code {a.exit} on purpose", file=sys.stderr)
    sys.exit(a.exit)


def where(spec: str, staged_dir: str | None) -> Path:
    lfn, _, path = spec.partition("=")
    return Path(staged_dir, lfn) if staged_dir else Path(a.repo, path)


if a.no_work:
    for spec in a.outputs:
        write_tombstone(where(spec, a.outputs_dir), spec.partition("=")[0], {}, "no work (test)")
    sys.exit(0)

digest = hashlib.sha256(",".join(a.quantum).encode())
tombstoned = 0
for spec in a.inputs:
    source = where(spec, a.inputs_dir)
    if a.allow_missing and is_tombstone(source):
        tombstoned += 1
        continue
    if a.allow_missing and not source.exists():
        continue
    digest.update(source.read_bytes())
if a.expect_no_work and not tombstoned:
    sys.exit("expected a tombstoned input (its producer found no work); none arrived")
for spec in a.outputs:
    target = where(spec, a.outputs_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(f"{spec.partition('=')[0]} {digest.hexdigest()}\n")
    tmp.replace(target)
