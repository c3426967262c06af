"""Exit codes and signal deaths are described by what they mean."""

from __future__ import annotations

import pytest

from bps import exit_codes
from supertask.signal_names import describe_signal, signal_of_exit_code


@pytest.mark.parametrize("code", [-11, 139])
def test_a_segfault_is_named_as_one_not_as_out_of_memory(code):
    text = exit_codes.describe(code)
    assert "SIGSEGV" in text and "segmentation fault" in text
    assert "memory" not in text


@pytest.mark.parametrize("code", [-9, 137])
def test_sigkill_is_named_with_its_usual_cause(code):
    text = exit_codes.describe(code)
    assert "SIGKILL" in text and "out-of-memory" in text


def test_exit_codes_that_are_not_signals_are_described_as_before():
    assert exit_codes.describe(exit_codes.DATA_ERROR).startswith("corrupt")
    assert exit_codes.describe(2) == "exit code 2"
    assert signal_of_exit_code(2) is None and signal_of_exit_code(128) is None


def test_an_unknown_signal_number_is_still_reported():
    assert describe_signal(200) == "signal 200"
    assert describe_signal(6).startswith("signal 6 (SIGABRT, ")
