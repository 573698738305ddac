"""Fuzzing the ops: random shapes, dtypes, layouts, values and hyperparameters.

Every backend of the fixture (the NumPy reference itself in float32/float64 included) is
compared with the reference computed in float64 on the same rounded values. Values come
from unit scale, the whole float range (extremes near overflow), the subnormal range and
zeros, mixed within an array or not.

The check is the parity table's tolerance with its absolute part measured in units of
the op's natural magnitude ``scale`` instead of 1: ``|got - want| <= atol * scale +
rtol * |want| + floor``. Rounding-error bounds are proportional to that magnitude (for a
product, ``|A| @ |B|``: the bound ``gamma_K * (|A| @ |B|)`` holds for any summation order,
BLAS blocking and FMA included), so the table's unit-scale factors carry over to any scale;
``floor`` covers underflow (and the optimizers' documented flush of subnormal state). It is
asserted wherever the dtype can hold the op's intermediates (``scale`` and the result below
max / 8); beyond that the dtype overflows by definition and nothing is claimed. Where the
table says a backend flushes subnormals (``flush_to_zero_below``: CuPy's kernels, float32,
compiled with ``-ftz=true``), a 0 for a reference value below that magnitude passes too.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy
import pytest
from reliability_helpers import FUZZ_COUNTS, fuzz_settings, run_counted

from nnback import get_backend
from nnback.testing import LAYOUTS, on_backend, to_host
from nnback.tolerances import flush_to_zero_below, get_tolerance

# hypothesis is a dev dependency: without it these tests skip instead of failing.
hypothesis = pytest.importorskip(
    "hypothesis", reason="hypothesis is not installed: pip install -e '.[dev]'"
)
assume = hypothesis.assume
given = hypothesis.given
st = pytest.importorskip(
    "hypothesis.strategies", reason="hypothesis is not installed: pip install -e '.[dev]'"
)
hnp = pytest.importorskip(
    "hypothesis.extra.numpy", reason="hypothesis is not installed: pip install -e '.[dev]'"
)

REFERENCE = get_backend("numpy")
ACTIVATIONS = ("linear", "relu", "leaky_relu", "sigmoid", "tanh")


def _elements(dtype: str, kind: str) -> st.SearchStrategy[float]:
    info = numpy.finfo(dtype)
    width = 32 if dtype == "float32" else 64
    tiny = float(info.tiny)
    kinds = {
        "unit": st.floats(-2.0, 2.0, width=width),
        "wide": st.floats(-float(info.max), float(info.max), width=width),
        "tiny": st.floats(-1e3 * tiny, 1e3 * tiny, width=width),
        "zeros": st.sampled_from([0.0, -0.0]),
    }
    if kind == "mixed":
        return st.one_of(*kinds.values())
    return kinds[kind]


@st.composite
def arrays(draw: Any, dtype: str, shape: tuple[int, ...], nonnegative: bool = False) -> Any:
    """Float64 values exactly representable in ``dtype``, of one magnitude class or mixed."""
    kind = draw(st.sampled_from(["unit", "unit", "wide", "tiny", "zeros", "mixed", "mixed"]))
    values = draw(hnp.arrays(numpy.float64, shape, elements=_elements(dtype, kind)))
    return numpy.abs(values) if nonnegative else values


def _put(backend: Any, values: numpy.ndarray, dtype: str, layout: str) -> Any:
    # A single element has no strided or transposed view: it is contiguous whatever is asked.
    return on_backend(backend, values.astype(dtype), layout if values.size > 1 else "contiguous")


def check(
    op: str,
    backend: Any,
    got: Any,
    want: Any,
    dtype: str,
    *,
    scale: Any = 1.0,
    also: Any = 0.0,
    floor: Any = 0.0,
    label: str = "",
) -> None:
    """Assert ``got`` (a backend result) matches the float64 ``want`` (see the module doc).

    ``also`` is the magnitude of any other intermediate that must fit in the dtype for the
    claim to hold (the sum behind a mean, the square of a gradient).
    """
    host = to_host(backend, got)
    want = numpy.asarray(want, dtype=numpy.float64)
    assert host.shape == want.shape, f"{op} {label}: shape {host.shape} != {want.shape}"
    assert host.dtype == numpy.dtype(dtype), f"{op} {label}: dtype {host.dtype} != {dtype}"
    info = numpy.finfo(dtype)
    tol = get_tolerance(op, dtype, backend.name)
    scale = numpy.broadcast_to(numpy.asarray(scale, dtype=numpy.float64), want.shape)
    limit_of_range = info.max / 8
    fits = (scale < limit_of_range) & (numpy.abs(want) < limit_of_range)
    fits &= numpy.asarray(also, dtype=numpy.float64) < limit_of_range
    floor = numpy.asarray(floor, dtype=numpy.float64) + 64 * float(info.smallest_subnormal)
    limit = tol.atol * scale + tol.rtol * numpy.abs(want) + floor
    with numpy.errstate(invalid="ignore", over="ignore"):
        error = numpy.abs(host.astype(numpy.float64) - want)
    within = error <= limit
    flushed_below = flush_to_zero_below(dtype, backend.name)
    if flushed_below:
        within |= (numpy.abs(want) < flushed_below) & (host == 0)
    bad = fits & ~within
    if bad.any():
        at = tuple(int(i) for i in numpy.argwhere(bad)[0])
        raise AssertionError(
            f"{op}[{backend.name}] {label} {dtype}: {int(bad.sum())} of {bad.size} values "
            f"outside the tolerance; at {at}: got {host[at]!r}, want {want[at]!r}, "
            f"allowed {limit[at]:.3g} (scale {scale[at]:.3g})"
        )


class _NamedHost:
    """A stand-in backend for testing ``check`` itself: a name, and host arrays."""

    def __init__(self, name: str) -> None:
        self.name = name

    def to_numpy(self, x: Any) -> numpy.ndarray:
        return numpy.asarray(x)


def test_check_lets_the_gpu_flush_float32_subnormals_only() -> None:
    # The first H200 run: an MSE gradient of 5.2e-41 (float32 subnormal) came back as 0,
    # flushed by -ftz=true. The fake device keeps subnormals, so the rule is tested here,
    # with the scale the fuzz gives an element-wise op: the magnitude of its inputs.
    def compare(name: str, got: Any, value: float, dtype: str = "float32") -> None:
        check("mean_squared_error", _NamedHost(name), got, [value], dtype, scale=abs(value))

    subnormal = numpy.float32(5.2e-41)
    zero = numpy.zeros(1, dtype=numpy.float32)
    compare("cupy", zero, float(subnormal))
    compare("cupy", -zero, float(subnormal))
    compare("cupy", zero, -float(subnormal))
    for name in ("numpy", "numba", "base"):
        with pytest.raises(AssertionError, match="outside the tolerance"):
            compare(name, zero, float(subnormal))
    # Only a reference below float32's smallest normal may come back as 0, and only as 0 ...
    for value in (float(numpy.finfo(numpy.float32).tiny), 1e-30, 1.0):
        with pytest.raises(AssertionError, match="outside the tolerance"):
            compare("cupy", zero, value)
    with pytest.raises(AssertionError, match="outside the tolerance"):
        compare("cupy", numpy.array([subnormal * 4]), float(subnormal))
    # ... and only in float32: CuPy's -ftz does not touch float64.
    with pytest.raises(AssertionError, match="outside the tolerance"):
        compare("cupy", numpy.zeros(1), 1e-310, "float64")


DTYPE = st.sampled_from(["float32", "float64"])
LAYOUT = st.sampled_from(LAYOUTS)
SIZE = st.integers(1, 9)


def test_fuzz_dense_forward(backend: Any) -> None:
    @fuzz_settings(100)
    @given(st.data(), DTYPE, SIZE, st.integers(1, 64), SIZE, st.sampled_from(ACTIVATIONS))
    def prop(data: Any, dtype: str, n: int, k_in: int, k_out: int, activation: str) -> None:
        FUZZ_COUNTS["dense_forward"] += 1
        x = data.draw(arrays(dtype, (n, k_in)))
        w = data.draw(arrays(dtype, (k_in, k_out)))
        b = data.draw(arrays(dtype, (1, k_out)))
        alpha = data.draw(st.floats(0.0, 0.99)) if activation == "leaky_relu" else 0.01
        layouts = data.draw(st.tuples(LAYOUT, LAYOUT))
        want = REFERENCE.dense_forward(x, w, b, activation, alpha)
        got = backend.dense_forward(
            _put(backend, x, dtype, layouts[0]),
            _put(backend, w, dtype, layouts[1]),
            _put(backend, b, dtype, "contiguous"),
            activation,
            alpha,
        )
        # Every activation here has slope <= 1: the error of z passes through unamplified.
        scale = numpy.abs(x) @ numpy.abs(w) + numpy.abs(b)
        check("dense_forward", backend, got, want, dtype, scale=scale, label=activation)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # overflow in the dtype's own range
        run_counted("dense_forward", prop)


def test_fuzz_dense_backward(backend: Any) -> None:
    @fuzz_settings(100)
    @given(st.data(), DTYPE, SIZE, st.integers(1, 32), SIZE, st.sampled_from(ACTIVATIONS))
    def prop(data: Any, dtype: str, n: int, k_in: int, k_out: int, activation: str) -> None:
        FUZZ_COUNTS["dense_backward"] += 1
        x = data.draw(arrays(dtype, (n, k_in)))
        w = data.draw(arrays(dtype, (k_in, k_out)))
        dy = data.draw(arrays(dtype, (n, k_out)))
        alpha = data.draw(st.floats(0.0, 0.99)) if activation == "leaky_relu" else 0.01
        # The output the forward pass gave, in the dtype: the op's input, as in training.
        b = numpy.zeros((1, k_out))
        y = REFERENCE.dense_forward(x, w, b, activation, alpha).astype(dtype)
        y64 = y.astype(numpy.float64)
        assume(numpy.isfinite(y).all())
        layout = data.draw(LAYOUT)
        want = REFERENCE.dense_backward(dy, x, w, y64, activation, alpha)
        got = backend.dense_backward(
            _put(backend, dy, dtype, layout),
            _put(backend, x, dtype, layout),
            _put(backend, w, dtype, "contiguous"),
            on_backend(backend, y, "contiguous"),
            activation,
            alpha,
        )
        # |dz| <= |dy| for these activations, and dz is within a few roundings of it; a dz
        # that underflows loses up to one subnormal step, which the products then scale.
        ones, tiny = numpy.ones_like(dy), float(numpy.finfo(dtype).smallest_subnormal)
        scales = (
            numpy.abs(dy) @ numpy.abs(w).T,
            numpy.abs(x).T @ numpy.abs(dy),
            numpy.abs(dy).sum(axis=0, keepdims=True),
        )
        floors = (ones @ numpy.abs(w).T, numpy.abs(x).T @ ones, ones.sum(axis=0, keepdims=True))
        parts = zip(("dX", "dW", "db"), got, want, scales, floors, strict=True)
        for name, got_part, want_part, scale, floor in parts:
            check(
                "dense_backward",
                backend,
                got_part,
                want_part,
                dtype,
                scale=scale,
                floor=tiny * floor,
                label=name,
            )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        run_counted("dense_backward", prop)


def test_fuzz_activations_and_softmax_crossentropy(backend: Any) -> None:
    @fuzz_settings(100)
    @given(st.data(), DTYPE, SIZE, st.integers(2, 8), st.booleans())
    def prop(data: Any, dtype: str, n: int, k: int, one_hot: bool) -> None:
        FUZZ_COUNTS["activations+softmax_crossentropy"] += 1
        z = data.draw(arrays(dtype, (n, k)))
        layout = data.draw(LAYOUT)
        for activation in (*ACTIVATIONS, "softmax"):
            got = backend.activation_forward(_put(backend, z, dtype, layout), activation, 0.1)
            want = REFERENCE.activation_forward(z, activation, 0.1)
            check("activation_forward", backend, got, want, dtype, label=activation)
        labels = numpy.asarray(data.draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
        targets = numpy.eye(k)[labels] if one_hot else labels
        want_loss, want_grad = REFERENCE.softmax_crossentropy(z, targets)
        loss, grad = backend.softmax_crossentropy(
            _put(backend, z, dtype, layout),
            backend.asarray(targets.astype(dtype) if one_hot else targets),
        )
        # Each sample's loss is at most its logits' spread (+ log k): their sum must fit.
        spread = (z.max(axis=1) - z.min(axis=1)).sum()
        check("softmax_crossentropy", backend, loss, want_loss, dtype, also=spread, label="loss")
        check("softmax_crossentropy", backend, grad, want_grad, dtype, label="grad")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        run_counted("activations+softmax_crossentropy", prop)


def test_fuzz_elementwise_losses(backend: Any) -> None:
    @fuzz_settings(80)
    @given(st.data(), DTYPE, SIZE, st.integers(1, 6))
    def prop(data: Any, dtype: str, n: int, k: int) -> None:
        FUZZ_COUNTS["elementwise losses"] += 1
        pred = data.draw(arrays(dtype, (n, k)))
        target = data.draw(arrays(dtype, (n, k)))
        for op in ("mean_squared_error", "mean_absolute_error"):
            want_loss, want_grad = getattr(REFERENCE, op)(pred, target)
            loss, grad = getattr(backend, op)(
                _put(backend, pred, dtype, "contiguous"), _put(backend, target, dtype, "strided")
            )
            # The squares of a sum can overflow where the inputs do not.
            magnitude = (numpy.abs(pred) + numpy.abs(target)) ** (2 if "squared" in op else 1)
            total = magnitude.sum()  # the sum behind the mean must fit too
            check(
                op,
                backend,
                loss,
                want_loss,
                dtype,
                scale=magnitude.mean(),
                also=total,
                label="loss",
            )
            check(op, backend, grad, want_grad, dtype, scale=magnitude, label="grad")
        probabilities = numpy.clip(numpy.abs(pred), 0.0, 1.0).astype(dtype).astype(numpy.float64)
        labels = (numpy.abs(target) > 1).astype(numpy.float64)
        want_loss, want_grad = REFERENCE.binary_crossentropy(probabilities, labels)
        loss, grad = backend.binary_crossentropy(
            _put(backend, probabilities, dtype, "contiguous"), backend.asarray(labels.astype(dtype))
        )
        check("binary_crossentropy", backend, loss, want_loss, dtype, label="bce loss")
        check("binary_crossentropy", backend, grad, want_grad, dtype, label="bce grad")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        run_counted("elementwise losses", prop)


def _regularized(param: Any, grad: Any, l1: float, l2: float) -> Any:
    """The magnitude of the regularized gradient, term by term (no cancellation)."""
    return numpy.abs(grad) + l1 * (param != 0) + 2 * l2 * numpy.abs(param)


RATE = st.floats(1e-6, 10.0)
# Hyperparameters are rounded to the arrays' dtype (as NumPy rounds a Python float next to
# a float32 array); below float32's normal range that rounding is no longer relative, so
# factors are 0 or drawn from where it is.
FACTOR = st.one_of(st.just(0.0), st.floats(1e-30, 1.0))


def test_fuzz_optimizer_steps(backend: Any) -> None:
    @fuzz_settings(100)
    @given(st.data(), DTYPE, SIZE, SIZE, RATE, FACTOR, FACTOR, st.booleans())
    def prop(
        data: Any, dtype: str, n: int, k: int, lr: float, l1: float, l2: float, adam: bool
    ) -> None:
        FUZZ_COUNTS["optimizer steps"] += 1
        info = numpy.finfo(dtype)
        param = data.draw(arrays(dtype, (n, k)))
        grad = data.draw(arrays(dtype, (n, k)))
        first = data.draw(arrays(dtype, (n, k)))
        second = data.draw(arrays(dtype, (n, k), nonnegative=True))
        g = _regularized(param, grad, l1, l2)
        tiny = float(info.tiny)  # state below the smallest normal is flushed to 0
        arrays_on = [_put(backend, a, dtype, "contiguous") for a in (param, grad, first, second)]
        want = [param.copy(), grad, first.copy(), second.copy()]
        if adam:
            b1 = data.draw(FACTOR.filter(lambda b: b < 0.999))
            b2 = data.draw(FACTOR.filter(lambda b: b < 0.9999))
            eps, step = data.draw(st.floats(1e-10, 1.0)), data.draw(st.integers(1, 1000))
            settings = dict(beta_1=b1, beta_2=b2, epsilon=eps, l1=l1, l2=l2)
            REFERENCE.adam_update_inplace(want[0], grad, want[2], want[3], lr, step, **settings)
            backend.adam_update_inplace(*arrays_on, lr, step, **settings)
            m_scale = b1 * numpy.abs(first) + (1 - b1) * g
            v_scale = b2 * second + (1 - b2) * g * g
            corrected = 1 - b1**step
            ratio = m_scale / (numpy.sqrt(want[3] / (1 - b2**step)) + eps)
            step_scale = lr / corrected * ratio
            param_floor = 2 * lr * tiny / corrected / eps
            states = ((2, "m", m_scale), (3, "v", v_scale))
            # g * g overflowing makes v infinite and the step 0; m / (sqrt(v) r + eps) is
            # formed before the step size scales it.
            also = numpy.maximum(v_scale, ratio)
        else:
            momentum = data.draw(FACTOR.filter(lambda m: m < 1))
            velocity = arrays_on[2] if momentum else None
            REFERENCE.sgd_update_inplace(
                want[0], grad, want[2] if momentum else None, lr, momentum=momentum, l1=l1, l2=l2
            )
            backend.sgd_update_inplace(
                arrays_on[0], arrays_on[1], velocity, lr, momentum=momentum, l1=l1, l2=l2
            )
            step_scale = momentum * numpy.abs(first) * bool(momentum) + lr * g
            param_floor = 2 * tiny
            states = ((2, "velocity", step_scale),) if momentum else ()
            # The regularized gradient is an intermediate in the dtype too: 2 * l2 * p of a
            # parameter near the float32 maximum is infinite there (hypothesis found one).
            also = numpy.abs(g)
        op = "adam_update_inplace" if adam else "sgd_update_inplace"
        for index, name, scale in states:
            check(
                op,
                backend,
                arrays_on[index],
                want[index],
                dtype,
                scale=scale,
                also=also,
                floor=2 * tiny,
                label=name,
            )
        scale = numpy.abs(param) + step_scale
        check(
            op,
            backend,
            arrays_on[0],
            want[0],
            dtype,
            scale=scale,
            also=also,
            floor=param_floor,
            label="param",
        )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        run_counted("optimizer steps", prop)
