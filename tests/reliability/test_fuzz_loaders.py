"""Fuzzing the loaders: IDX files and model files built from random or mutated bytes.

``read_idx`` either parses (an array with the shape and dtype its header declares, filled
from its payload) or raises :class:`IDXFormatError`. ``load_model`` either loads a model
identical to the one saved, or raises :class:`ModelFileError`: a damaged file is never
read as a different model, and never fails with another exception.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy
import pytest
from reliability_helpers import FUZZ_COUNTS, blobs, fuzz_settings, mlp, run_counted

import nnback as nb
from nnback.datasets.idx import IDX_DTYPES, IDXFormatError, read_idx, write_idx

# hypothesis is a dev dependency: without it these tests skip instead of failing.
hypothesis = pytest.importorskip(
    "hypothesis", reason="hypothesis is not installed: pip install -e '.[dev]'"
)
given = hypothesis.given
st = pytest.importorskip(
    "hypothesis.strategies", reason="hypothesis is not installed: pip install -e '.[dev]'"
)


@st.composite
def idx_files(draw: Any) -> tuple[bytes, numpy.ndarray]:
    """A valid IDX file (gzipped or not) of random type and shape, and its array."""
    code = draw(st.sampled_from(sorted(IDX_DTYPES)))
    shape = tuple(draw(st.lists(st.integers(0, 5), min_size=1, max_size=3)))
    dtype = IDX_DTYPES[code]
    size = dtype.itemsize * int(numpy.prod(shape))
    payload = draw(st.binary(min_size=size, max_size=size))
    array = numpy.frombuffer(payload, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
    blob = bytes([0, 0, code, len(shape)]) + numpy.asarray(shape, dtype=">u4").tobytes() + payload
    return (gzip.compress(blob, mtime=0) if draw(st.booleans()) else blob), array


@st.composite
def mutations(draw: Any, data: bytes) -> bytes:
    """``data`` with a few bits flipped, bytes overwritten, a cut or bytes appended."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "byte", "cut", "append"]))
        if kind in ("flip", "byte") and out:
            at = draw(st.integers(0, len(out) - 1))
            if kind == "flip":
                out[at] ^= 1 << draw(st.integers(0, 7))
            else:
                out[at] = draw(st.integers(0, 255))
        elif kind == "cut":
            out = out[: draw(st.integers(0, len(out)))]
        else:
            out += draw(st.binary(min_size=1, max_size=16))
    return bytes(out)


def test_fuzz_read_idx(tmp_path: Path) -> None:
    path = tmp_path / "fuzz.idx"

    @fuzz_settings(500)
    @given(st.data(), st.sampled_from(["random", "valid", "mutated"]))
    def prop(data: Any, source: str) -> None:
        FUZZ_COUNTS["read_idx"] += 1
        if source == "random":
            blob, expected = data.draw(st.binary(max_size=64)), None
        else:
            blob, expected = data.draw(idx_files())
            if source == "mutated":
                mutated = data.draw(mutations(blob))
                expected = None if mutated != blob else expected
                blob = mutated
        path.write_bytes(blob)
        try:
            array = read_idx(path)
        except IDXFormatError as exc:
            assert str(path) in str(exc)  # the message names the file
            assert expected is None, f"a valid file was refused: {exc}"
            return
        assert isinstance(array, numpy.ndarray) and array.flags.writeable
        assert array.dtype.isnative and array.dtype.kind in "uif"
        if expected is not None:
            numpy.testing.assert_array_equal(array, expected)
            assert array.dtype == expected.dtype

    run_counted("read_idx", prop)


def test_write_idx_round_trips_what_the_fuzzer_builds(tmp_path: Path) -> None:
    """The hand-built files above are what write_idx writes (so 'valid' really is valid)."""
    array = numpy.arange(24, dtype=numpy.int16).reshape(2, 3, 4)
    write_idx(tmp_path / "a.idx", array, compress=False)
    header = bytes([0, 0, 0x0B, 3]) + numpy.asarray(array.shape, dtype=">u4").tobytes()
    assert (tmp_path / "a.idx").read_bytes() == header + array.astype(">i2").tobytes()


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, nb.Sequential]:
    X, y = blobs(n=16)
    model = mlp(dropout=0.1)
    model.fit(X, y, epochs=1, batch_size=8, verbose=0)
    path = tmp_path_factory.mktemp("model") / "m.npz"
    model.save(path)
    return path.read_bytes(), model


def test_fuzz_load_model(saved_model: tuple[bytes, nb.Sequential], tmp_path: Path) -> None:
    original, model = saved_model
    want = model.get_weights()
    path = tmp_path / "fuzz.npz"

    @fuzz_settings(500)
    @given(st.data())
    def prop(data: Any) -> None:
        FUZZ_COUNTS["load_model"] += 1
        path.write_bytes(data.draw(mutations(original)))
        try:
            loaded = nb.load_model(path)
        except nb.ModelFileError as exc:
            assert str(path) in str(exc) and "\n" not in str(exc)
            return
        # Loaded: then it is the model that was saved, not a silently different one.
        assert repr(loaded) == repr(model)
        got = loaded.get_weights()
        assert all(numpy.array_equal(a, b) for a, b in zip(got, want, strict=True))
        assert loaded.optimizer.get_config() == model.optimizer.get_config()

    run_counted("load_model", prop)
