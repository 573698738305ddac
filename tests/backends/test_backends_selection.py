"""Which backends the tests run on (NNBACK_TEST_BACKENDS), and the tolerance table itself."""

from __future__ import annotations

import inspect

import numpy
import pytest

import nnback.testing.backends as selection
from nnback import tolerances
from nnback.backends.base import Backend
from nnback.errors import UnknownBackendError
from nnback.testing import StrictBackend, backend_params, selected_backends
from nnback.tolerances import (
    NOT_NUMERIC,
    Tolerance,
    get_tolerance,
    get_trajectory_tolerance,
    tolerance_table_markdown,
)

STATUS = {"numpy": None, "numba": None, "cupy": "no GPU here"}


@pytest.fixture
def fake_status(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(selection, "backend_status", lambda: dict(STATUS))


@pytest.mark.usefixtures("fake_status")
def test_default_selection_is_every_available_backend_plus_strict() -> None:
    names = [c.name for c in selected_backends(environ={})]
    assert names == ["numpy", "numba", "strict"]
    assert [c.name for c in selected_backends(include_strict=False, environ={})][-1] == "numba"
    assert selection.unselected_backends(environ={}) == {"cupy": "no GPU here"}


@pytest.mark.usefixtures("fake_status")
def test_environment_narrows_in_the_given_order() -> None:
    environ = {selection.TEST_BACKENDS_ENV_VAR: " strict, NUMPY,numpy ,"}
    assert [c.name for c in selected_backends(environ=environ)] == ["strict", "numpy"]
    assert selection.unselected_backends(environ=environ) == {}


@pytest.mark.usefixtures("fake_status")
def test_unavailable_names_skip_with_the_reason() -> None:
    environ = {selection.TEST_BACKENDS_ENV_VAR: "numpy,cupy"}
    numpy_candidate, cupy_candidate = selected_backends(environ=environ)
    assert numpy_candidate.available and not cupy_candidate.available
    assert cupy_candidate.reason == "no GPU here"
    with pytest.raises(RuntimeError, match="no GPU here"):
        cupy_candidate.load()
    params = backend_params(environ=environ)
    assert [p.id for p in params] == ["numpy", "cupy"]
    assert not params[0].marks
    assert params[1].marks[0].name == "skip"
    assert params[1].marks[0].kwargs["reason"] == "no GPU here"


@pytest.mark.usefixtures("fake_status")
def test_unknown_names_are_an_error() -> None:
    with pytest.raises(UnknownBackendError, match="numpyy"):
        selected_backends(environ={selection.TEST_BACKENDS_ENV_VAR: "numpyy"})


def test_candidates_load() -> None:
    strict = selection.BackendCandidate("strict")
    first, second = strict.load(), strict.load()
    assert isinstance(first, StrictBackend) and first is not second  # fresh counters
    assert selection.BackendCandidate("numpy").load().name == "numpy"


def test_gpu_reason_is_none_exactly_when_cupy_loads() -> None:
    reason = selection.gpu_unavailable_reason()
    assert (reason is None) == ("cupy" in __import__("nnback").available_backends())
    assert reason is None or reason


# The tolerance table.


def _numeric_ops() -> set[str]:
    public = {
        name
        for name, member in inspect.getmembers(Backend)
        if not name.startswith("_") and callable(member)
    }
    return public - NOT_NUMERIC


def test_every_op_has_a_tolerance() -> None:
    missing = _numeric_ops() - set(tolerances.tolerance_ops())
    assert not missing, f"ops without a parity tolerance in nnback/tolerances.py: {missing}"
    stale = set(tolerances.tolerance_ops()) - _numeric_ops()
    assert not stale, f"tolerances for ops Backend does not have: {stale}"


@pytest.mark.parametrize("op", tolerances.tolerance_ops())
def test_tolerances_scale_with_eps(op: str) -> None:
    t32, t64 = get_tolerance(op, numpy.float32), get_tolerance(op, "float64")
    assert isinstance(t32, Tolerance) and t32.rtol >= 0 and t32.atol >= 0
    ratio = numpy.finfo(numpy.float32).eps / numpy.finfo(numpy.float64).eps
    assert t32.rtol == pytest.approx(t64.rtol * ratio) and t32.atol == pytest.approx(
        t64.atol * ratio
    )
    # Far tighter than a lower-precision mode: TF32 errs by ~5e-4, half precision by ~1e-3
    # (relative to the result's scale: whole-array sums are ~30, so their atol is too).
    assert t32.rtol <= 1e-5 and t32.atol <= (2e-5 * 30 if op == "sum" else 2e-5)
    assert get_tolerance(op, "float32", "numpy") == t32


def test_tolerance_lookup_errors() -> None:
    with pytest.raises(KeyError, match="nnback/tolerances.py"):
        get_tolerance("no_such_op", "float32")
    with pytest.raises(ValueError, match="float16"):
        get_tolerance("matmul", numpy.float16)
    with pytest.raises(TypeError):
        get_tolerance("matmul", "not a dtype")


def test_backend_override_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    special = Tolerance(1e-4, 1e-5)
    monkeypatch.setitem(tolerances._BACKEND_OVERRIDES, ("numba", "matmul", "float32"), special)
    assert get_tolerance("matmul", "float32", "numba") == special
    assert get_tolerance("matmul", "float32", "numpy") != special
    assert get_tolerance("matmul", "float64", "numba") != special
    assert "| numba | `matmul` | float32 |" in tolerance_table_markdown()


def test_markdown_table_lists_every_op() -> None:
    table = tolerance_table_markdown()
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert len(rows) == len(tolerances.tolerance_ops())
    assert all(row.count("|") == 7 for row in rows)
    assert "| `matmul` | 1.9e-06 | 7.6e-06 | 3.6e-15 | 1.4e-14 | 16, 64 |" in table
    assert "| `copy` | 0 | 0 | 0 | 0 | exact |" in table


def test_trajectory_rule_is_wider_only_for_cupy_float64() -> None:
    default = get_trajectory_tolerance("float64")
    assert default == Tolerance(rtol=1e-9, atol=1e-12)
    for name in ("numpy", "numba", "base"):
        assert get_trajectory_tolerance("float64", name) == default
    cupy = get_trajectory_tolerance(numpy.float64, "cupy")
    assert cupy.rtol == default.rtol and default.atol < cupy.atol <= 1e-10
    with pytest.raises(ValueError, match="print"):
        get_trajectory_tolerance("float32", "cupy")
    assert "| cupy | float64 | 1.0e-09 | 1.0e-10 |" in tolerance_table_markdown()
