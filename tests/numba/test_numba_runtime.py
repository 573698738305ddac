"""Process-level behaviour of the numba backend, each checked in a fresh interpreter.

* ``OMP_WAIT_POLICY`` becomes ``passive`` when the numba backend loads, unless the user set
  it; the C environment sees it too (libgomp reads it with getenv when it loads).
* nnback's kernels never start Numba's thread pool, and ``info()`` does not either.
* A cold on-disk cache prints one notice while compiling; a warm one prints nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("numba", reason="the numba backend needs numba: pip install 'nnback[numba]'")

# A small training step through the backend: dense forward and backward, loss, Adam.
STEP = """
import numpy
b = get_backend("numba")
x = numpy.ones((4, 3), "f4"); w = numpy.full((3, 2), 0.1, "f4"); bias = numpy.zeros((1, 2), "f4")
y = b.dense_forward(x, w, bias, "relu")
loss, g = b.softmax_crossentropy(y, numpy.array([0, 1, 1, 0]))
dx, dw, db = b.dense_backward(g, x, w, y, "relu")
m, v = numpy.zeros_like(w), numpy.zeros_like(w)
b.adam_update_inplace(w, dw, m, v, 1e-3, 1)
"""


def _python(code: str, env_changes: dict[str, str | None]) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    for key, value in env_changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_importing_nnback_alone_changes_nothing() -> None:
    out = _ok(
        _python(
            "import os, sys, nnback\n"
            "print('OMP_WAIT_POLICY' in os.environ, 'numba' in sys.modules)",
            {"OMP_WAIT_POLICY": None},
        )
    )
    assert out.split() == ["False", "False"]


def test_wait_policy_defaults_to_passive_and_the_pool_stays_idle() -> None:
    code = (
        "import ctypes, os, numba\nfrom nnback import get_backend\n"
        + STEP
        + """
libc = ctypes.CDLL(None)
libc.getenv.restype = ctypes.c_char_p
facts = b.info()
try:
    numba.threading_layer()
    started = True
except ValueError:
    started = False
print(os.environ["OMP_WAIT_POLICY"], libc.getenv(b"OMP_WAIT_POLICY").decode(), started)
print(facts["OMP_WAIT_POLICY"])
print(sorted(facts))
"""
    )
    lines = _ok(_python(code, {"OMP_WAIT_POLICY": None})).splitlines()
    assert lines[0].split() == ["passive", "passive", "False"]
    assert lines[1] == "passive (set by nnback)"
    for key in ("numba", "numba threading layer", "numba threads", "blas", "array module"):
        assert f"'{key}'" in lines[2]


def test_wait_policy_set_by_the_user_is_kept() -> None:
    code = (
        "import os\nfrom nnback import get_backend\n"
        + STEP
        + """
print(os.environ["OMP_WAIT_POLICY"]); print(b.info()["OMP_WAIT_POLICY"])
"""
    )
    lines = _ok(_python(code, {"OMP_WAIT_POLICY": "ACTIVE"})).splitlines()
    assert lines == ["ACTIVE", "ACTIVE (set by the user)"]


def test_threading_layer_priority_unless_the_user_chose_a_layer() -> None:
    code = """
import numba
import nnback.backends.numba_backend
print(numba.config.THREADING_LAYER, ",".join(numba.config.THREADING_LAYER_PRIORITY))
"""
    ours = _ok(_python(code, {"NUMBA_THREADING_LAYER": None})).split()
    assert ours == ["default", "omp,tbb,workqueue"]
    theirs = _ok(_python(code, {"NUMBA_THREADING_LAYER": "workqueue"})).split()
    assert theirs == ["workqueue", "tbb,omp,workqueue"]


@pytest.mark.slow
def test_compile_notice_only_when_the_cache_is_cold(tmp_path: Path) -> None:
    code = "from nnback import get_backend\n" + STEP
    env = {"NUMBA_CACHE_DIR": str(tmp_path)}
    cold = _python(code, env)
    assert cold.returncode == 0, cold.stderr
    notices = [line for line in cold.stderr.splitlines() if "compiling" in line]
    assert len(notices) == 1, cold.stderr
    assert any(tmp_path.rglob("*.nbi")), "nothing was cached"
    warm = _python(code, env)
    assert warm.returncode == 0, warm.stderr
    assert "compiling" not in warm.stderr


def test_blas_facts_without_threadpoolctl(monkeypatch: pytest.MonkeyPatch) -> None:
    from nnback.kernels.cpu import runtime

    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # import now raises ImportError
    facts = runtime.blas_facts()
    assert "threadpoolctl" in facts["blas"], facts
    assert "thread" in facts["blas"]


def test_info_reports_threads_and_blas() -> None:
    pytest.importorskip(
        "threadpoolctl", reason="threadpoolctl is not installed: pip install -e '.[dev]'"
    )
    from nnback.backends.numba_backend import NumbaBackend

    facts = NumbaBackend().info()
    assert facts["numba"] and "NUMBA_NUM_THREADS=" in facts["numba threads"]
    assert "threads" in facts["blas"] and "unknown" not in facts["blas"]
    assert all(isinstance(v, str) for v in facts.values())


def test_backend_loads_and_warns_where_numba_cannot_cache() -> None:
    # No cache locator at all, as on a read-only installation without a usable home
    # directory: Numba refuses cache=True when the kernels are decorated.
    code = (
        "import numba.core.caching as caching\n"
        "caching.CacheImpl._locator_classes = []\n"
        "from nnback import get_backend\n" + STEP + "print(float(loss))\n"
    )
    result = _python(code, {})
    assert float(_ok(result)) > 0
    assert result.stderr.count("cannot be cached on disk") == 1, result.stderr
    assert "NUMBA_CACHE_DIR" in result.stderr
