"""One test per row of the bad-input table in docs/reliability.md.

The rows are the cases of ``reliability_cases.CASES``, ``reliability_cases_cli.CLI_CASES``
and ``reliability_untrusted_cases.UNTRUSTED_CASES``; each test runs its case, checks the
outcome and the message fragments, and checks the docs' row with the same id (outcome and
message excerpt) against what actually happened, so the table cannot drift from the code.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
from reliability_cases import CASES as API_CASES
from reliability_cases import Case
from reliability_cases_cli import CLI_CASES
from reliability_untrusted_cases import UNTRUSTED_CASES

import nnback as nb
from nnback.datasets import DownloadError

DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
_ROW = re.compile(
    r"^\| `(?P<id>[a-z0-9-]+)` \| (?P<input>.+?) \| (?P<outcome>.+?) \| (?P<msg>.*) \|$"
)


def _doc_rows() -> dict[str, dict[str, str]]:
    """``id -> {input, outcome, msg}`` for every row of the docs' tables that has an id."""
    rows: dict[str, dict[str, str]] = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        match = _ROW.match(line.strip())
        if match:
            assert match["id"] not in rows, f"docs/reliability.md repeats the row {match['id']}"
            rows[match["id"]] = {k: match[k].strip() for k in ("input", "outcome", "msg")}
    return rows


DOC_ROWS = _doc_rows()
# The bad inputs of the API, then those of the command line and the first hour.
CASES: list[Case] = [*API_CASES, *CLI_CASES]


def _run(case: Case, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Run the case; return the message of its error, else of its warning, else ''."""
    message = ""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if case.error is None:
            case.call(monkeypatch, tmp_path)
        else:
            with pytest.raises(case.error) as raised:
                case.call(monkeypatch, tmp_path)
            message = str(raised.value)
            # A DownloadError lists one line per mirror tried, by design.
            if not isinstance(raised.value, DownloadError):
                assert "\n" not in message, f"{case.id}: the error is not one line: {message!r}"
            if issubclass(case.error, ValueError | RuntimeError):
                assert isinstance(raised.value, nb.NNBackError | IDXError), case.id
    if case.warning is not None:
        mine = [w for w in caught if issubclass(w.category, case.warning)]
        assert mine, f"{case.id}: expected a {case.warning.__name__}, got {caught}"
        message = str(mine[0].message)
    return message


from nnback.datasets.idx import IDXFormatError as IDXError  # noqa: E402

ALL_CASES = CASES + UNTRUSTED_CASES


@pytest.mark.parametrize("case", ALL_CASES, ids=[case.id for case in ALL_CASES])
def test_row(case: Case, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    message = _run(case, monkeypatch, tmp_path)
    missing = [fragment for fragment in case.fragments if fragment not in message]
    assert not missing, f"{case.id}: message {message!r} lacks {missing}"

    row = DOC_ROWS.get(case.id)
    assert row is not None, f"docs/reliability.md has no row `{case.id}`"
    assert row["outcome"].replace("`", "") == case.outcome, case.id
    excerpt = row["msg"].strip("`")
    if case.error is not None or case.warning is not None:
        # The excerpt's pieces (split at "…") appear in the message, in order.
        position = 0
        for piece in (p for p in excerpt.split("…") if p):
            found = message.find(piece, position)
            assert found >= 0, f"{case.id}: docs excerpt {piece!r} is not in {message!r}"
            position = found + len(piece)


def test_every_doc_row_is_a_case() -> None:
    ids = [case.id for case in ALL_CASES]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    assert set(DOC_ROWS) == set(ids), (
        f"rows only in the docs: {sorted(set(DOC_ROWS) - set(ids))}; "
        f"cases only in the tests: {sorted(set(ids) - set(DOC_ROWS))}"
    )
