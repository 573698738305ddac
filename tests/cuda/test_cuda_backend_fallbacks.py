"""Every fallback branch of CupyBackend runs, launches no kernel and matches the reference;
and the backend says in one line why it cannot load.

A fallback is taken when a kernel's assumptions do not hold (layout, dtype mix, a NumPy
scalar that would promote the dtype, an unsupported shape): the op then is the base class's
reference code on the device arrays, so it must give the reference's result, dtype and
errors exactly as the strict base backend does.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy
import pytest

import nnback
from nnback.backends.cupy_backend import CupyBackend
from nnback.errors import BackendUnavailableError, InputError
from nnback.testing.fake_cupy import FakeCupy, make_fake_cupy_backend
from nnback.testing.parity import assert_close, on_backend

RNG = numpy.random.default_rng(30)


def _a(shape: tuple[int, ...], dtype: str = "float32", low: float = -1.0) -> numpy.ndarray:
    return RNG.uniform(low, 1.0, shape).astype(dtype)


X, W, B, DY = _a((12, 6)), _a((6, 4)), _a((1, 4)), _a((12, 4))
P, T = _a((12, 4), low=0.05), (RNG.random((12, 4)) < 0.5).astype("float32")
LABELS = RNG.integers(0, 4, 12)

# name -> (op, tolerance op, host arguments, layouts per argument); "strided" arrays are
# non-contiguous views, which the kernels do not take.
CASES: dict[str, tuple[str, str, tuple[Any, ...], tuple[str, ...]]] = {
    # (dense_forward's reference code calls self.activation_forward, itself fused: linear
    # layers keep these cases free of any kernel.)
    "dense_forward strided bias": (
        "dense_forward",
        "dense_forward",
        (X, W, B, "linear"),
        ("contiguous", "contiguous", "strided"),
    ),
    "dense_forward float64 weights": (
        "dense_forward",
        "dense_forward",
        (X, W.astype("float64"), B, "linear"),
        (),
    ),
    "dense_forward strong alpha": (
        "dense_forward",
        "dense_forward",
        (X, W, B, "leaky_relu", numpy.float64(0.1)),
        (),
    ),
    "dense_forward empty batch": ("dense_forward", "dense_forward", (X[:0], W, B), ()),
    "dense_backward strided dy": (
        "dense_backward",
        "dense_backward",
        (DY, X, W, _a((12, 4)), "sigmoid"),
        ("strided",),
    ),
    "activation_forward strided": (
        "activation_forward",
        "activation_forward",
        (X, "tanh"),
        ("strided",),
    ),
    "softmax transposed": ("softmax", "softmax", (X,), ("transposed",)),
    "labels int16": (
        "softmax_crossentropy",
        "softmax_crossentropy",
        (DY, LABELS.astype("int16")),
        (),
    ),
    "one-hot strided": (
        "softmax_crossentropy",
        "softmax_crossentropy",
        (DY, numpy.eye(4, dtype="float32")[LABELS]),
        ("contiguous", "strided"),
    ),
    "mse transposed float64 targets": (
        "mean_squared_error",
        "mean_squared_error",
        (P, T.astype("float64")),
        ("contiguous", "transposed"),
    ),
    "bce strided": ("binary_crossentropy", "binary_crossentropy", (P, T), ("strided",)),
    "mae transposed": (
        "mean_absolute_error",
        "mean_absolute_error",
        (P, T),
        ("transposed", "transposed"),
    ),
    "dropout strided mask": (
        "dropout_forward",
        "dropout_forward",
        (X, X > 0, 2.0),
        ("contiguous", "strided"),
    ),
    "dropout strong scale": (
        "dropout_backward",
        "dropout_backward",
        (X, (X > 0).astype("float32"), numpy.float64(2.0)),
        (),
    ),
}


def _run(backend: Any, op: str, args: tuple[Any, ...], layouts: tuple[str, ...]) -> Any:
    moved = []
    for i, arg in enumerate(args):
        if isinstance(arg, numpy.ndarray):
            layout = layouts[i] if i < len(layouts) else "contiguous"
            moved.append(on_backend(backend, arg, layout))
        else:
            moved.append(arg)
    return getattr(backend, op)(*moved)


def _compare(tol_op: str, fake: CupyBackend, got: Any, want: Any) -> None:
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    for g, w in zip(got, want, strict=True):
        assert (g is None) == (w is None)
        if w is not None:
            w = nnback.testing.strict_to_numpy(w)
            assert_close(tol_op, fake, g, w, dtype=w.dtype)


@pytest.mark.parametrize("case", list(CASES))
def test_fallback_matches_reference_and_launches_nothing(cpu: dict, case: str) -> None:
    op, tol_op, args, layouts = CASES[case]
    fake = make_fake_cupy_backend()
    got = _run(fake, op, args, layouts)
    assert fake.xp.kernels_launched() == [], f"{case}: a kernel ran"
    want = _run(nnback.testing.StrictBackend(), op, args, layouts)
    _compare(tol_op, fake, got, want)


def _optimizer_fallbacks() -> list[tuple[str, Callable[[Any, Any, Any], None]]]:
    return [
        (
            "strong learning rate",
            lambda b, p, g: b.sgd_update_inplace(p, g, None, numpy.float64(0.1)),
        ),
        (
            "strided state",
            lambda b, p, g: b.adagrad_update_inplace(
                p, g, on_backend(b, numpy.zeros((12, 6), "float32"), "strided"), 0.1
            ),
        ),
        (
            "strong rho",
            lambda b, p, g: b.rmsprop_update_inplace(
                p, g, b.zeros((12, 6), "float32"), 0.1, rho=numpy.float64(0.9)
            ),
        ),
        (
            "mismatched state shape",
            lambda b, p, g: b.sgd_update_inplace(
                p, g, b.zeros((12, 6), "float64"), 0.1, momentum=0.9
            ),
        ),
    ]


@pytest.mark.parametrize(
    "case, step", _optimizer_fallbacks(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_optimizer_fallbacks(cpu: dict, case: str, step: Callable[[Any, Any, Any], None]) -> None:
    fake, strict = make_fake_cupy_backend(), nnback.testing.StrictBackend()
    params = []
    for backend in (fake, strict):
        param, grad = backend.asarray(X), backend.asarray(X[::-1].copy())
        step(backend, param, grad)
        params.append(param)
    assert fake.xp.kernels_launched() == [], case
    assert_close("sgd_update_inplace", fake, params[0], strict.to_numpy(params[1]))


def test_reference_errors_are_kept(cpu: dict) -> None:
    fake = make_fake_cupy_backend()
    x, w, b = fake.asarray(X), fake.asarray(W), fake.asarray(B)
    with pytest.raises(InputError, match="unknown activation"):
        fake.dense_forward(x, w, b, "swish")
    with pytest.raises(InputError, match="needs a velocity"):
        fake.sgd_update_inplace(w, w, None, 0.1, momentum=0.9)
    with pytest.raises(InputError, match="counts from 1"):
        fake.adam_update_inplace(w, w, fake.zeros_like(w), fake.zeros_like(w), 0.1, 0)
    with pytest.raises(ValueError):
        fake.mean_squared_error(fake.asarray(X.ravel()), fake.asarray(X.ravel()))
    assert fake.xp.kernels_launched() == []


class _NoGpu(FakeCupy):
    """A cupy whose runtime fails as it does on a machine without a driver."""

    def __init__(self, error: Exception | None) -> None:
        super().__init__()
        self._error = error
        runtime = self.cuda.runtime
        runtime.getDeviceCount = self._count  # type: ignore[method-assign]

    def _count(self) -> int:
        if self._error is not None:
            raise self._error
        return 0


@pytest.mark.parametrize(
    "module, message",
    [
        (None, "cupy is not installed: pip install 'nnback[gpu]'"),
        (
            _NoGpu(
                RuntimeError(
                    "cudaErrorInsufficientDriver: CUDA driver version is\n"
                    "insufficient for CUDA runtime version"
                )
            ),
            "no NVIDIA GPU/driver found: RuntimeError: cudaErrorInsufficientDriver",
        ),
        (_NoGpu(None), "no NVIDIA GPU/driver found: CUDA reports 0 devices"),
    ],
)
def test_unavailable_in_one_line(
    monkeypatch: pytest.MonkeyPatch, module: Any, message: str
) -> None:
    monkeypatch.setitem(sys.modules, "cupy", module)
    with pytest.raises(BackendUnavailableError) as info:
        CupyBackend()
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("allow, expected", [("1", "on"), ("", "off")])
def test_tf32_is_opt_in(
    cpu: dict, monkeypatch: pytest.MonkeyPatch, allow: str, expected: str
) -> None:
    monkeypatch.setitem(sys.modules, "cupy", FakeCupy())  # the import path of CupyBackend()
    monkeypatch.setenv("CUPY_TF32", "0")
    monkeypatch.setenv("NNBACK_ALLOW_TF32", allow)
    backend = CupyBackend()
    assert backend.info()["tf32"].startswith(expected)


def test_registry_reports_why_cupy_is_missing() -> None:
    reason = nnback.backend_status()["cupy"]
    if reason is None:
        pytest.skip("cupy loads here: a GPU is present")
    assert "\n" not in reason
    assert reason.startswith(
        ("cupy is not installed", "no NVIDIA GPU/driver found", "cupy cannot be imported")
    )
