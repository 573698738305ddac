"""The generated documentation pages match the code they are generated from."""

from __future__ import annotations

from pathlib import Path

from nnback.tolerances import tolerance_page_markdown

ROOT = Path(__file__).resolve().parent.parent


def test_tolerance_page_is_current() -> None:
    page = (ROOT / "docs" / "tolerances.md").read_text()
    assert page == tolerance_page_markdown(), (
        "docs/tolerances.md is stale: python -m nnback.tolerances > docs/tolerances.md"
    )
