"""Real-GPU checks: run where CuPy loads, skipped with the reason everywhere else.

The parity of every op on the CuPy backend needs no test of its own here: ``cupy`` joins the
``backend`` fixture of every parity test as soon as it loads. These check the device setup
that parity alone would not explain.
"""

from __future__ import annotations

import numpy
import pytest

import nnback
from nnback.testing import assert_close, make_input, random_array

pytestmark = pytest.mark.gpu


def test_cupy_backend_loads() -> None:
    assert "cupy" in nnback.available_backends()
    assert nnback.backend_status()["cupy"] is None


def test_float32_matmul_is_not_tf32(reference: nnback.Backend) -> None:
    # TF32 rounds GEMM inputs to 10 mantissa bits (errors ~5e-4): far outside the table.
    backend = nnback.get_backend("cupy")
    rng = numpy.random.default_rng(0)
    a, a64 = make_input(backend, random_array(rng, (256, 64)), numpy.float32)
    b, b64 = make_input(backend, random_array(rng, (64, 128), -0.2, 0.2), numpy.float32)
    got = backend.matmul(a, b)
    backend.synchronize()
    assert_close("matmul", backend, got, reference.matmul(a64, b64), dtype=numpy.float32)
