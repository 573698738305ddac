"""Reports how many cases the fuzz tests of this folder tried (the issue asks for it)."""

from __future__ import annotations

import pytest
from reliability_helpers import FUZZ_COUNTS, FUZZ_SCALE


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FUZZ_COUNTS:
        return
    total = sum(FUZZ_COUNTS.values())
    terminalreporter.section("nnback fuzzing")
    terminalreporter.write_line(
        f"{total} cases in all (NNBACK_FUZZ_SCALE={FUZZ_SCALE:g}), summed over backends:"
    )
    for name, count in sorted(FUZZ_COUNTS.items()):
        terminalreporter.write_line(f"  {name}: {count}")
