"""Cost of building task configs and loading them from their saved form.

Every batch job rebuilds its tasks' configs from the pipeline stored in the graph file,
so both the per-config cost and the one-off cost in a fresh process (imports, building
validators) are on the job start-up path. Validation is `supertask.config.validation`
(no validation library is imported: the fresh process reports whether pydantic was).

Usage: ``.venv/bin/python benchmarks/bench_config.py [REPEATS]``
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
import timeit

CONFIGS = """
from supertask.config import Config, ConfigField, DatasetField, DictField, Field, ListField

class BackgroundConfig(Config):
    binSize = Field(dtype=int, default=128, doc="Bin size.", min=1)
    statistic = Field(dtype=str, default="median", doc="Statistic.", allowed=["mean", "median"])

class DetectConfig(Config):
    threshold = Field(dtype=float, default=5.0, doc="Threshold.", min=0.0)
    enabled = Field(dtype=bool, default=True, doc="Enabled.")
    maxSources = Field(dtype=int, default=None, optional=True, doc="Cap.")
    radii = ListField(dtype=float, default=[1.0, 2.0, 4.0], doc="Radii.", itemMin=0.0)
    gains = DictField(keytype=str, itemtype=float, default={"a": 1.0, "b": 1.1}, doc="Gains.")
    background = ConfigField(dtype=BackgroundConfig, doc="Background.")
    calexp = DatasetField(doc="in", units=("instrument", "visit", "detector"), storageClass="Exposure",
                          name="calexp")
    catalog = DatasetField(doc="out", units=("instrument", "visit", "detector"), storageClass="Catalog",
                           name="src", role="output")
"""

FRESH_JOB = """
import sys
config = DetectConfig()
config.threshold = 4.0
loaded = DetectConfig.loadFromString(config.saveToString())
assert loaded == config
"""


def in_process(number: int) -> dict[str, float]:
    """Microseconds per construction and per load from the saved form."""
    namespace: dict[str, object] = {}
    exec(CONFIGS, namespace)
    config_class = namespace["DetectConfig"]
    saved = config_class().toDict()  # type: ignore[operator]
    config_class.fromDict(saved)  # type: ignore[attr-defined]  # warm caches
    build = min(timeit.repeat(config_class, number=number, repeat=5)) / number * 1e6  # type: ignore[arg-type]
    load = (
        min(timeit.repeat(lambda: config_class.fromDict(saved), number=number, repeat=5)) / number * 1e6  # type: ignore[attr-defined]
    )
    return {"construct": build, "load": load}


def fresh_process(repeats: int) -> tuple[float, bool]:
    """Median wall time of a fresh interpreter that imports, defines, builds and loads a config."""
    code = CONFIGS + FRESH_JOB + "print('pydantic' in sys.modules)"
    times, imported = [], False
    for _ in range(repeats):
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
        times.append(time.perf_counter() - start)
        imported = out.strip() == "True"
    return statistics.median(times), imported


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 9
    baseline = statistics.median(
        [
            timeit.timeit(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), number=1)
            for _ in range(repeats)
        ]
    )
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"python -c pass: median {baseline * 1000:.1f} ms")
    print("fresh process (import + define + construct + save + load one config with 2 nested):")
    seconds, imported = fresh_process(repeats)
    print(f"  median {seconds * 1000:7.1f} ms  (pydantic imported: {imported})")
    warm = in_process(200)
    print("in process, warm (per config of 8 fields + 3 nested configs):")
    for what in ("construct", "load"):
        print(f"  {what:9s} {warm[what]:7.1f} us")


if __name__ == "__main__":
    main()
