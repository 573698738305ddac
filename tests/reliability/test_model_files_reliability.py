"""Model files: a save killed half-way, files that moved between backends, permissions.

The bad-file cases with one clear error each (truncated, empty, bit flipped, foreign,
newer, a directory, a missing directory) are rows of the error table; the rest of the
format is tested in tests/model/test_model_save_load.py.
"""

from __future__ import annotations

import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy
import pytest
from reliability_helpers import blobs, mlp

import nnback as nb
from nnback.testing import backend_params
from nnback.testing.fake_cupy import fake_cupy_backend_param
from nnback.tolerances import get_tolerance

# The child saves one big model over and over, each version filled with its number, and
# says "begin k" / "end k" around each save. Big enough (~17 MB) that a save takes tens of
# milliseconds, so a kill at a random moment usually lands inside one.
_SAVER = textwrap.dedent(
    """
    import sys
    import numpy
    import nnback as nb

    path = sys.argv[1]
    model = nb.Sequential([nb.Dense(2048, 2048), nb.Dense(2048, 16)], seed=0).build()
    weights = model.get_weights()
    version = 0
    while True:
        version += 1
        model.set_weights([numpy.full_like(w, version) for w in weights])
        print("begin", version, flush=True)
        model.save(path)
        print("end", version, flush=True)
    """
)


def _kill_during_saves(path: Path, delay: float) -> tuple[list[str], int]:
    """Start the saver, let it save at least once, kill it ``delay`` s later; return its
    output lines and the number of the last version it finished."""
    child = subprocess.Popen(
        [sys.executable, "-c", _SAVER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "NNBACK_BACKEND": "numpy"},
    )
    assert child.stdout is not None
    lines: list[str] = []
    try:
        while not lines or lines[-1] != "end 1":  # the first file exists
            line = child.stdout.readline()
            assert line, "the saver died before its first save"
            lines.append(line.strip())
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        # Read the rest through the same buffered reader: readline() may already hold the
        # next lines ("begin 2" read along with "end 1"), which communicate() would skip,
        # since with a timeout it reads the raw pipe.
        out = child.stdout.read()
        child.wait(timeout=60)
    lines += out.splitlines()
    last_end = max(int(line.split()[1]) for line in lines if line.startswith("end"))
    return lines, last_end


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_killing_a_save_leaves_the_previous_file_loadable(tmp_path: Path) -> None:
    path = tmp_path / "model.npz"
    randomness = random.Random(7)
    mid_save = 0
    for attempt in range(12):
        lines, last_end = _kill_during_saves(path, randomness.uniform(0.0, 0.6))
        begun = [int(line.split()[1]) for line in lines if line.startswith("begin")]
        killed_inside = begun[-1] > last_end
        mid_save += killed_inside
        model = nb.load_model(path)  # never a half-written file
        values = {float(numpy.unique(w)[0]) for w in model.get_weights()}
        assert len(values) == 1, "a file mixing two versions"
        version = int(values.pop())
        # The file is the last finished version, or the one being written when killed
        # (its rename may have happened just before the kill).
        assert version in {last_end, begun[-1]}, (version, last_end, begun[-1])
        leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name != "model.npz")
        assert all(name.startswith(".nnback-") and name.endswith(".tmp") for name in leftovers)
        if mid_save >= 3 and attempt >= 4:
            break
    # The premise: several kills really landed inside a save.
    assert mid_save >= 3, f"only {mid_save} kills landed inside a save"
    print(f"{attempt + 1} kills, {mid_save} of them inside a save")


@pytest.mark.parametrize("target", [*backend_params(), fake_cupy_backend_param()])
def test_a_model_saved_on_one_backend_loads_on_every_other(
    backend: Any, target: Any, tmp_path: Path
) -> None:
    X, y = blobs(n=32)
    source = mlp(backend=backend, dropout=0.2)
    source.fit(X, y, epochs=2, batch_size=8, verbose=0)
    source.save(tmp_path / "m.npz")
    other = target.load()
    loaded = nb.load_model(tmp_path / "m.npz", backend=other)
    assert loaded.backend.name == other.name
    for got, want in zip(loaded.get_weights(), source.get_weights(), strict=True):
        numpy.testing.assert_array_equal(got, want)
    # Two dense layers, each within the table's float32 tolerance of either backend.
    loose = max(
        (get_tolerance("dense_forward", "float32", name) for name in (backend.name, other.name)),
        key=lambda t: t.rtol + t.atol,
    )
    numpy.testing.assert_allclose(
        loaded.predict(X), source.predict(X), rtol=2 * loose.rtol, atol=2 * loose.atol
    )
    # Training continues on the new backend from the saved optimizer state.
    assert loaded.optimizer.iterations == source.optimizer.iterations == 8
    loaded.fit(X, y, epochs=1, batch_size=8, verbose=0)
    assert loaded.optimizer.iterations == 12


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_saved_files_get_ordinary_permissions(tmp_path: Path) -> None:
    path = tmp_path / "m.npz"
    mlp().save(path)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0o600
    path.chmod(0o640)
    mlp().save(path)  # replacing a file keeps its permissions
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
