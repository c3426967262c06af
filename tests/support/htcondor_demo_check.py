"""Run the demo tile through the HTCondor translator and the DAGMan test runner; compare with `supertask run`.

Usage (after ``make demo``, which leaves the repository and the local run in DEMO_DIR)::

    python tests/support/htcondor_demo_check.py DEMO_DIR [shared|transfer ...]

For each staging mode: plans the demo tile again into its own output run, prepares it
with ``bps prepare`` (``wms: htcondor``, site ``htcondor_<mode>``), runs the emitted DAG
with `dagman_runner` (real ``run_quantum`` jobs, real ``bps finalize``) and compares the
checksum of every dataset file of the run with those of the ``supertask run`` output
(``demo/tile0``). Too slow for the test suite (one process per job, run one at a time):
this is the full-size proof, the suite runs the same path on a small pipeline
(``tests/test_htcondor_e2e.py``). Exit status 0 when every mode matches.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from demo_drp.main_job import INPUTS, LOCAL_RUN, PIPELINE, WHERE  # noqa: E402

from support.dagman_runner import run_dag  # noqa: E402


def checksums(repo: Path, run: str) -> dict[str, str]:
    root = repo / run
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "logs" not in p.relative_to(root).parts
    }


def check(demo_dir: Path, staging: str) -> bool:
    bindir = Path(sys.executable).parent
    repo = demo_dir / "repo"
    tag = f"condor-{staging}-{time.strftime('%Y%m%dT%H%M%S')}"  # a fresh run each time
    run = f"demo/tile0-{tag}"
    graph = demo_dir / f"tile0-{tag}.qgraph"
    subprocess.run(
        [
            str(bindir / "supertask"),
            "qgraph",
            str(repo),
            "-p",
            str(PIPELINE),
            "-i",
            INPUTS,
            "--where",
            WHERE,
            "-o",
            run,
            "--save",
            str(graph),
        ],
        check=True,
        capture_output=True,
    )
    submit_dir = demo_dir / "submit" / tag
    config = demo_dir / f"bps_{tag}.yaml"
    config.write_text(
        f"repo: {repo}\nqgraph: {graph}\noutput_run: {run}\nwms: htcondor\n"
        f"compute_site: htcondor_{staging}\nsubmit_dir: {submit_dir}\n"
    )
    subprocess.run([str(bindir / "bps"), "prepare", str(config)], check=True)
    (dag,) = submit_dir.glob("*.dag")
    start = time.perf_counter()
    result = run_dag(dag)
    elapsed = time.perf_counter() - start
    ours, reference = checksums(repo, run), checksums(repo, LOCAL_RUN)
    same = result.exit_code == 0 and bool(reference) and ours == reference
    print(
        f"{staging}: DAG exit {result.exit_code}, {len(result.order)} nodes in {elapsed:.0f} s; "
        f"{len(ours)} dataset files, {len(reference)} from supertask run: {'identical' if same else 'DIFFERENT'}"
    )
    if not same:
        differing = sorted(set(ours) ^ set(reference) | {k for k in ours if ours.get(k) != reference.get(k)})
        print("  differing:", differing[:10])
    return same


def main() -> int:
    demo_dir = Path(sys.argv[1]).resolve()
    modes = sys.argv[2:] or ["shared", "transfer"]
    return 0 if all([check(demo_dir, mode) for mode in modes]) else 1


if __name__ == "__main__":
    sys.exit(main())
