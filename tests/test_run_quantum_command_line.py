"""``run_quantum``'s command line: the lines workflows write are read without argparse, to the same result.

Every batch job parses its command line; `bps.run_quantum._parse_plain` reads the plain
form (options in full, each value in the next argument) and leaves every other line to
argparse, so that results, ``--help`` and error messages stay argparse's.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from bps import exit_codes
from bps.run_quantum import _parse_plain, _parser, main

#: lines as prepare writes them (`bps.workflow_builder`, `bps.workflow_stream`), and their variations
PLAIN = [
    ["--graph", "g.qgraph", "--quantum", "7"],
    ["--graph", "g.qgraph", "--quantum", "7", "--job", "j7", "--manifest-dir", "manifests", "--repo", "/r"],
    ["--graph", "g", "--quantum", "0,1", "--quantum", "2", "--repo", "r", "--job", "j", "--scratch", "s"],
    ["--quantum", "3", "--graph", "a", "--graph", "b"],  # the last value of a repeated option wins
    ["--graph", "g", "--quantum", "1", "--inputs-dir", "in", "--outputs-dir", "out", "--keep-scratch"],
    ["-v", "--graph", "g", "--quantum", "1", "--input-locations", "loc.json", "--input-checks", "c.json"],
    ["--graph", "g", "--quantum", "1", "--verbose", "--job", ""],  # an empty value is a value
    ["--graph", "with space", "--quantum", "1", "--job", "a=b"],
]

#: lines left to argparse: its rules decide what they mean, or which error they are
NOT_PLAIN = [
    ["--help"],
    ["-h"],
    ["--graph=g", "--quantum", "1"],
    ["--gra", "g", "--quantum", "1"],  # an abbreviation
    ["--graph", "g", "--quantum", "-1"],  # a value starting with "-"
    ["--graph", "g", "--quantum", "1", "--job", "--repo"],
    ["--graph", "g", "--quantum"],  # a value missing
    ["--graph", "g"],  # --quantum is required
    ["--quantum", "1"],  # --graph is required
    ["--graph", "g", "--quantum", "1", "extra"],
    ["--graph", "g", "--quantum", "1", "--"],
    ["--graph", "g", "--quantum", "1", "-vv"],
]


@pytest.mark.parametrize("argv", PLAIN)
def test_a_plain_line_reads_as_argparse_reads_it(argv):
    plain = _parse_plain(argv)
    assert plain is not None
    assert vars(plain) == vars(_parser().parse_args(argv))


@pytest.mark.parametrize("argv", NOT_PLAIN)
def test_any_other_line_is_left_to_argparse(argv):
    assert _parse_plain(argv) is None


def test_help_still_lists_the_exit_codes():
    done = subprocess.run(
        [sys.executable, "-m", "bps.run_quantum", "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0
    assert "exit codes:" in done.stdout and exit_codes.describe(exit_codes.USAGE) in done.stdout


def test_a_line_argparse_refuses_still_exits_with_the_usage_code(capsys):
    with pytest.raises(SystemExit) as err:
        main(["--graph", "g", "--quantum", "1", "--no-such-option", "x"])
    assert err.value.code == exit_codes.USAGE
    assert "unrecognized arguments: --no-such-option" in capsys.readouterr().err
