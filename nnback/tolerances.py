"""The parity tolerances: how far a backend's result may be from the NumPy reference.

Every parity test compares a backend's result, computed on inputs of dtype ``D``, with the
NumPy reference backend run on the *same values* cast to float64. The difference is then
the rounding error of the backend's arithmetic in ``D`` (plus, for ``D = float64``, that of
the reference itself), never an error in the inputs. A result passes when, element-wise,

    |got - expected| <= atol + rtol * |expected|

(the rule of ``numpy.testing.assert_allclose``).

How the values were chosen
--------------------------
Each op has a *condition factor* ``(r, a)`` in units of the dtype's machine epsilon
(``eps = 2**-23 ~ 1.19e-7`` for float32, ``2**-52 ~ 2.2e-16`` for float64), so that
``rtol = r * eps`` and ``atol = a * eps``. Rounding-error analysis gives bounds proportional
to ``eps``, so one factor serves both dtypes: a float64 backend that sums in another order
than NumPy errs by the same number of *ulps* as a float32 one.

The factors assume the data the parity tests use, which is what a network sees:

* unit-scale data: entries of magnitude at most ~2, weights scaled by ``1/sqrt(fan_in)``
  (as Glorot/He initialisation does), so a dot product is itself of order one;
* reductions (matmul inner dimension, batch sums for ``dW``/``db``) of at most
  :data:`MAX_REDUCTION` terms and loss sums of at most :data:`MAX_LOSS_TERMS` terms;
* a spread of at most :data:`MAX_LOGIT_SPREAD` between the largest and smallest logit of
  a row.

A probabilistic bound (Higham and Mary, 2019) for a length-``K`` dot product of such data is
about ``sqrt(K) * u * sum(|a_i b_i|)`` with ``u = eps / 2``; with ``K = 64`` that is a few
ulps of the result, and measured errors of NumPy's BLAS and of a naive float32 loop both stay
below ``8 eps`` for the forward shapes and ``26 eps`` for ``dW = X.T @ dZ`` with 64 rows.
The factors below leave a margin of 2 to 4 over such estimates, and stay at least 50 times
tighter than what a lower-precision mode produces (TF32 matmul errs by ~6000 eps, a
half-precision accumulator or an approximate ``exp`` by far more), so a backend that
quietly lowers its precision fails.

The rule: a value is never loosened to make a test pass. A failure is a bug (in the
backend, in the reference, or in the test's data) until its cause is found; if the cause is
an honest difference in numerics that cannot be removed, the larger value goes into
``_BACKEND_OVERRIDES`` with that cause written next to it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy

__all__ = [
    "EXACT",
    "FINITE_DIFFERENCE_STEP",
    "GRADIENT_CHECK",
    "MAX_LOGIT_SPREAD",
    "MAX_LOSS_TERMS",
    "MAX_REDUCTION",
    "NOT_NUMERIC",
    "Tolerance",
    "flush_to_zero_below",
    "get_tolerance",
    "get_trajectory_tolerance",
    "tolerance_ops",
    "tolerance_table_markdown",
]

MAX_REDUCTION = 64
"""The longest matmul inner dimension or batch reduction the factors are derived for."""

MAX_LOSS_TERMS = 1024
"""The most terms a loss sum may have for the loss factors to hold."""

MAX_LOGIT_SPREAD = 8.0
"""The largest ``max(z) - min(z)`` of a row that the softmax factors are derived for."""


class Tolerance(NamedTuple):
    """A relative and an absolute tolerance, as ``numpy.testing.assert_allclose`` takes them."""

    rtol: float
    atol: float


EXACT = Tolerance(0.0, 0.0)
"""For ops that move, copy, compare or count: any difference at all is a bug."""

# Central finite differences in float64: truncation error ~ h**2 * |f'''| / 6 ~ 1e-10 and
# cancellation error ~ eps64 * |f| / h ~ 2e-11 for the unit-scale losses of the gradient
# checks, so the step 1e-5 balances the two and 1e-6 relative (1e-8 absolute) leaves a
# margin of about 100 while still catching a gradient that is off by a single term.
FINITE_DIFFERENCE_STEP = 1e-5
GRADIENT_CHECK = Tolerance(rtol=1e-6, atol=1e-8)

# Public methods of Backend that compute no values to compare: they are checked by type,
# shape or behaviour instead (``empty`` returns uninitialised memory on purpose).
NOT_NUMERIC = frozenset(
    {"capture_unavailable", "compute_scope", "empty", "info", "is_array", "synchronize"}
)

# op -> (rtol, atol) in units of the dtype's eps. Why each value, in ulps (u = eps / 2):
_FACTORS: dict[str, tuple[float, float]] = {
    # Transfers, copies and allocation move bits; argmax, counts and the finiteness test
    # compare values that reach the backend unchanged (test data keeps away from ties and
    # from the thresholds of count_correct/count_within).
    "asarray": (0, 0),
    "to_numpy": (0, 0),
    "to_float": (0, 0),
    "zeros": (0, 0),
    "zeros_like": (0, 0),
    "copy": (0, 0),
    "copy_into_inplace": (0, 0),
    "argmax": (0, 0),
    "all_finite": (0, 0),
    "count_correct": (0, 0),
    "count_within": (0, 0),
    # A product with a Python-float scale: the scale rounds to D once, the product once.
    "scale_inplace": (2, 0),
    # x * (mask * scale): the same two roundings.
    "dropout_forward": (2, 0),
    "dropout_backward": (2, 0),
    # Dot products of up to 64 unit-scale terms: measured <= 8 eps (BLAS and naive loops),
    # the probabilistic bound ~ sqrt(64) * u * 4 = 16 eps; atol 64 eps gives the margin,
    # rtol 16 eps covers the large entries (where the error is relative to |result|).
    "matmul": (16, 64),
    # Whole-array sums of up to 1024 terms uniform in [-1, 1] (sigma = 0.58): partial sums
    # grow like sqrt(i) * sigma, so a naive float32 loop errs by ~ u * sigma * N / sqrt(2)
    # = 210 eps (one standard deviation) for N = 1024, whatever the result; 4 sigma is
    # ~850 eps, hence atol 1024 eps (pairwise/tree sums, as NumPy's and CUDA's, err far
    # less). The mean divides that error by N >= 256 (whole array) or sums <= 64 terms per
    # row/column: atol 4 eps. rtol 16 eps for results far from 0. squared_norm sums
    # positive terms: relative error ~ u * sqrt(N / 3) = 9 eps for N = 1024, rtol 64 eps.
    "sum": (16, 1024),
    "mean": (16, 4),
    "squared_norm": (64, 0),
    # linear/relu/leaky_relu: 0 or 1 rounding; sigmoid: exp (<= 1 ulp) + add + divide
    # ~ 3 eps; tanh: libm/CUDA tanh <= 2 ulps; softmax dominates (see "softmax").
    # atol 1 eps only spares outputs that underflow towards 0 at unit scale.
    "activation_forward": (16, 1),
    # softmax: the shift z - max(z) rounds by u * spread (<= 4 eps for a spread of 8), which
    # exp turns into relative error, plus exp (1 ulp), a positive sum of k <= 16 terms
    # (k * u = 8 eps worst case) and a division: <= 14 eps relative.
    "softmax": (16, 1),
    # Backward from the output y: sigmoid dy*y*(1-y) has 1 - y exact (Sterbenz) for
    # y >= 1/2, ~2 eps relative; tanh dy*(1-y*y) cancels when |y| -> 1, absolute error
    # <= |dy| * u ~ 1 eps; softmax y*(dy - sum(dy*y)) cancels in the difference, absolute
    # error <= k * u * sum|dy*y| + u*|dy| ~ 16 eps worst case for |dy| <= 2, k <= 16.
    "activation_backward": (8, 16),
    # matmul error (<= 64 eps absolute) plus the bias add (1/2 ulp) goes through the
    # activation with slope <= 1, except softmax, which turns an absolute error d of its
    # input into a relative error up to 2d on its output: 2 * 16 + 16 ~ 48 eps, rtol 64 eps.
    "dense_forward": (64, 64),
    # The epilogue alone, on an exact input: the bias add (1/2 ulp) then the activation as
    # in activation_forward, with softmax's input error doubled: rtol 32 eps, atol 1 eps.
    "bias_activation_inplace": (32, 1),
    # dZ from activation_backward (8, 16 above); dW = X.T @ dZ and db = sum(dZ) reduce over
    # up to 64 rows of unit-scale dZ: measured <= 26 eps for 64 rows, <= 15 eps for 32;
    # dX = dZ @ W.T reduces over k_out. atol 64 eps, rtol 16 eps as for matmul.
    "dense_backward": (16, 64),
    # dz as activation_backward (8, 16); db sums up to 64 rows of it (<= 26 eps measured,
    # as dW above): rtol 16 eps, atol 32 eps.
    "activation_bias_backward": (16, 32),
    # Convolution and pooling (nnback/backends/conv_ops.py), for the same unit-scale data with
    # weights of variance 1/fan_in, reductions of at most MAX_REDUCTION terms (c_in * kh * kw
    # in the forward GEMM, n * oh * ow for dW and db, c_out times the windows overlapping a
    # pixel for dX) and windows of at most 3x3 in which at most 4 windows overlap a pixel.
    # Measured in float32 (NumPy, 30 draws of the parity shapes): conv2d_forward <= 3.4 eps,
    # dX <= 3.0, dW <= 5.5, db <= 10.2, col2im <= 4.5, the pools <= 1 eps.
    # im2col moves values (padding is an exact 0); max pooling selects them, and its argmax
    # is a position (the tests keep every window free of ties).
    "im2col": (0, 0),
    "maxpool2d_forward": (0, 0),
    # col2im adds the up to kh * kw <= 9 column entries that land on a pixel, in any order:
    # (K - 1) * u * sum|t| <= 36 eps worst case for |t| <= 1, sqrt(K) * u * sum|t| ~ 7 eps
    # likely; atol 32 eps, rtol 8 eps (a value far from 0 errs relative to itself).
    "col2im": (8, 32),
    # The epilogues of a convolution are those of a dense layer without softmax: the bias
    # add (1/2 ulp) then the activation as in activation_forward (<= 3 eps relative for
    # sigmoid, 2 ulps for tanh); backward as activation_bias_backward (db sums <= 64 terms).
    "conv_bias_activation": (16, 1),
    "conv_activation_bias_backward": (16, 32),
    # A GEMM as in matmul (16, 64) through the epilogue above: rtol 32, atol 64 eps.
    "conv2d_forward": (32, 64),
    # dW, db as dense_backward's (<= 64 terms); dX is a GEMM over c_out then col2im's sum
    # of <= kh * kw of those, together <= 64 products of unit-scale terms: (16, 64).
    "conv2d_backward": (16, 64),
    # maxpool2d_backward moves values; the rest is conv2d_backward's sums.
    "conv2d_maxpool_backward": (16, 64),
    # Overlapping windows add up to 4 contributions (dy, or dy / (ph * pw)) to a pixel: 3
    # roundings of sums <= 4 |dy| = 6 eps worst case; the average pools a window of <= 9
    # values (8 roundings of partial sums <= 9 * max|x|, divided by 9: <= 4 eps) and
    # rounds the quotient (1/2 ulp): atol 8 eps, rtol 4 eps for both directions.
    "maxpool2d_backward": (4, 8),
    "avgpool2d_forward": (4, 8),
    "avgpool2d_backward": (4, 8),
    # Loss value: a mean of up to 1024 positive terms (cross-entropies, squares, absolute
    # values); a naive float32 accumulation errs by ~ u * sqrt(N / 3) relative (9 eps for
    # N = 1024) with a 5-sigma tail near 45 eps; log/exp add ~1 ulp per term: rtol 64 eps.
    # Gradient: element-wise; softmax_crossentropy's (p - y) / n cancels when p -> 1, with
    # absolute error <= 16 eps (the softmax relative error times p <= 1) divided by n >= 1;
    # the others are 2 to 4 roundings of quotients (rtol covers them): atol 16 eps.
    "softmax_crossentropy": (64, 16),
    "categorical_crossentropy": (64, 16),
    "binary_crossentropy": (64, 16),
    "mean_squared_error": (64, 16),
    "mean_absolute_error": (64, 16),
    # l1 * sum|p| + l2 * sum(p*p): positive sums of <= 1024 terms, as the losses.
    "regularization_loss": (64, 1),
    # g + l1 * sign(w) + 2 * l2 * w: two roundings of terms of the size of the result.
    "regularization_gradient": (2, 2),
    # A few (<= 8) steps on parameters of magnitude <= 2; each step rounds the parameter
    # (1/2 ulp of 2 = 1 eps absolute), the state update (1 to 2 ulps: b * s + (1 - b) * g*g)
    # and the step, a quotient with a square root (~3 ulps of a step lr * O(1) << |param|).
    # Over 8 steps that is ~ 8 * (1/2 + 2) ulps = 10 eps relative for states and
    # parameters, and ~ 8 eps absolute for a parameter or momentum that has moved towards
    # 0 (where the rounding of its larger past values remains): rtol 16 eps, atol 16 eps.
    "sgd_update_inplace": (16, 16),
    "adagrad_update_inplace": (16, 16),
    "rmsprop_update_inplace": (16, 16),
    "adam_update_inplace": (16, 16),
}

# (backend name, op, dtype name) -> Tolerance, for a backend whose numerics differ for a
# cause that cannot be removed. Each entry must say that cause next to it. Empty: every
# backend meets the default table.
_BACKEND_OVERRIDES: dict[tuple[str, str, str], Tolerance] = {}

# Whole training runs: the same program (a book's, tens of full-batch steps with Adam),
# the same seed, on a backend and on the reference, compared at the end (weights, loss,
# outputs). Per-op errors do not simply add up there: Adam divides each gradient by the
# root of its running square (plus 1e-7), so a difference of a few ulps in a gradient that
# is near zero becomes a difference of up to lr * dg / 1e-7 in the weight, whatever the
# weight's size, and it is carried into every later step. Only float64 runs are compared
# this way (float32 runs of two correct backends drift apart by up to ~1e-3 through the
# same mechanism, so those are compared at the precision the programs print).
_TRAJECTORY_DEFAULT: dict[str, Tolerance] = {
    # Backends whose GEMMs are NumPy's own BLAS calls (numpy; numba, whose fused kernels
    # wrap numpy.matmul; the fake CuPy device, which runs its GEMMs with numpy.matmul):
    # only the element-wise epilogues and the reductions differ, by an ulp or two. Measured
    # on the chapter 17 program (60 steps): numba's weights differ by at most 2.6e-13, all
    # within 1e-12 absolute; rtol 1e-9 covers the large weights and the outputs.
    "float64": Tolerance(rtol=1e-9, atol=1e-12),
}
_TRAJECTORY_OVERRIDES: dict[tuple[str, str], Tolerance] = {
    # cuBLAS sums every GEMM (dW = X.T @ dZ reduces over the whole batch of 1000 rows in the
    # chapter 17 program) in another order than NumPy's BLAS, with FMA: each element differs
    # by a few ulps of sum(|terms|). Through Adam that gives weights that differ by an
    # absolute amount, not a relative one: on the first H200 run 1 weight of 4096 was off
    # by 5e-9 relative after 60 steps (a weight close to 0). The same program on the CPU
    # with every GEMM element moved at random by up to 1, 8 or 32 ulps of sum(|terms|)
    # (3 draws each) moves weights by at most 2.2e-11, and in 5 of the 9 draws one weight
    # fails 1e-12 + 1e-9 * |w| (needing up to rtol 7.8e-9), as on the GPU. atol 1e-10 gives
    # a margin of 4.5 over that. One step more still moves over 80% of the weights that
    # train (those of units ReLU has not kept dead) by over 100 times this allowance
    # (tests/compat checks it).
    ("cupy", "float64"): Tolerance(rtol=1e-9, atol=1e-10),
}

# Backend and dtype -> the magnitude below which a result may come out as exactly 0. CuPy
# compiles every kernel with -ftz=true (nnback.kernels.cuda.CUPY_ADDED_OPTIONS): float32
# arithmetic on the GPU flushes subnormal results to zero, where NumPy keeps them (the
# first H200 run: an MSE gradient of 5.2e-41 came back as 0). The fake CuPy device and the
# CPU execution of the kernels keep subnormals, so only the real GPU needs this.
_FLUSH_TO_ZERO: dict[tuple[str, str], float] = {
    ("cupy", "float32"): float(numpy.finfo(numpy.float32).tiny),
}

_DTYPES = ("float32", "float64")


def _dtype_name(dtype: Any) -> str:
    """Return ``"float32"`` or ``"float64"`` for anything ``numpy.dtype`` understands."""
    try:
        name = numpy.dtype(dtype).name
    except TypeError as exc:
        raise TypeError(f"not a dtype: {dtype!r}") from exc
    if name not in _DTYPES:
        raise ValueError(f"parity tolerances exist for {' and '.join(_DTYPES)}, not {name}")
    return name


def tolerance_ops() -> list[str]:
    """Names of every op the table covers, in table order."""
    return list(_FACTORS)


def get_tolerance(op: str, dtype: Any, backend_name: str | None = None) -> Tolerance:
    """Return the tolerance for comparing ``op`` on ``dtype`` inputs with the float64 reference.

    Parameters
    ----------
    op : str
        The name of a :class:`~nnback.backends.base.Backend` method, e.g. ``"dense_forward"``.
    dtype : dtype-like
        The dtype of the backend's inputs: float32 or float64.
    backend_name : str, optional
        The backend under test; a per-backend override wins over the default when present.

    Returns
    -------
    Tolerance
        ``(rtol, atol)`` for ``numpy.testing.assert_allclose``.

    Raises
    ------
    KeyError
        If the table has no entry for ``op`` (a new op needs its tolerance derived here).
    ValueError
        If ``dtype`` is not float32 or float64.
    """
    name = _dtype_name(dtype)
    if op not in _FACTORS:
        raise KeyError(
            f"no parity tolerance for op {op!r}; add it to nnback/tolerances.py "
            f"(known: {', '.join(_FACTORS)})"
        )
    if backend_name is not None:
        override = _BACKEND_OVERRIDES.get((backend_name, op, name))
        if override is not None:
            return override
    eps = float(numpy.finfo(name).eps)
    r, a = _FACTORS[op]
    return Tolerance(rtol=r * eps, atol=a * eps)


def get_trajectory_tolerance(dtype: Any, backend_name: str | None = None) -> Tolerance:
    """Return the tolerance for a whole float64 training run against the reference's.

    Parameters
    ----------
    dtype : dtype-like
        The dtype of the run; only float64 runs are compared this tightly.
    backend_name : str, optional
        The backend under test; a per-backend rule wins over the default when present.

    Raises
    ------
    ValueError
        If ``dtype`` has no trajectory rule (float32 runs are compared at the precision
        the programs print, not with this table).
    """
    name = _dtype_name(dtype)
    if name not in _TRAJECTORY_DEFAULT:
        raise ValueError(
            f"no trajectory tolerance for {name} runs; those are compared at the precision "
            "the program prints"
        )
    if backend_name is not None:
        override = _TRAJECTORY_OVERRIDES.get((backend_name, name))
        if override is not None:
            return override
    return _TRAJECTORY_DEFAULT[name]


def flush_to_zero_below(dtype: Any, backend_name: str | None = None) -> float:
    """The magnitude below which ``backend_name`` may return 0 for a nonzero reference value.

    0.0 where the backend keeps subnormals (every backend but the GPU's float32).
    """
    if backend_name is None:
        return 0.0
    return _FLUSH_TO_ZERO.get((backend_name, _dtype_name(dtype)), 0.0)


def tolerance_table_markdown() -> str:
    """Return the tolerance table as Markdown, for the documentation.

    One row per op with ``rtol``/``atol`` for float32 and float64 and the condition factors
    in units of eps, then one row per per-backend override (if any).
    """
    lines = [
        "| op | float32 rtol | float32 atol | float64 rtol | float64 atol | factors (eps) |",
        "|---|---|---|---|---|---|",
    ]
    for op, (r, a) in _FACTORS.items():
        t32 = get_tolerance(op, "float32")
        t64 = get_tolerance(op, "float64")
        cells = [f"{value:.1e}" if value else "0" for value in (*t32, *t64)]
        factors = "exact" if (r, a) == (0, 0) else f"{r:g}, {a:g}"
        lines.append(f"| `{op}` | {' | '.join(cells)} | {factors} |")
    if _BACKEND_OVERRIDES:
        lines += ["", "| backend | op | dtype | rtol | atol |", "|---|---|---|---|---|"]
        for (backend, op, dtype), tol in sorted(_BACKEND_OVERRIDES.items()):
            lines.append(f"| {backend} | `{op}` | {dtype} | {tol.rtol:.1e} | {tol.atol:.1e} |")
    lines += [
        "",
        "Whole float64 training runs against the reference's (weights, loss and outputs at "
        "the end):",
        "",
        "| backend | dtype | rtol | atol |",
        "|---|---|---|---|",
    ]
    for dtype, tol in _TRAJECTORY_DEFAULT.items():
        lines.append(f"| every other | {dtype} | {tol.rtol:.1e} | {tol.atol:.1e} |")
    for (backend, dtype), tol in sorted(_TRAJECTORY_OVERRIDES.items()):
        lines.append(f"| {backend} | {dtype} | {tol.rtol:.1e} | {tol.atol:.1e} |")
    if _FLUSH_TO_ZERO:
        lines += [
            "",
            "Flush to zero: a result whose reference magnitude is below this may be 0.",
            "",
            "| backend | dtype | below | why |",
            "|---|---|---|---|",
        ]
        for (backend, dtype), below in sorted(_FLUSH_TO_ZERO.items()):
            lines.append(
                f"| {backend} | {dtype} | {below:.3g} | kernels compiled with `-ftz=true` |"
            )
    lines += [
        "",
        f"Finite-difference gradient checks (float64, central, step "
        f"{FINITE_DIFFERENCE_STEP:g}): rtol {GRADIENT_CHECK.rtol:g}, "
        f"atol {GRADIENT_CHECK.atol:g}.",
    ]
    return "\n".join(lines)


_PAGE_HEAD = """# Parity tolerances

Every op of every backend is tested against the NumPy reference computed in float64, for
float32 and float64 inputs, contiguous and not. A result passes when
`|got - want| <= atol + rtol * |want|` with the values below, which are multiples
("factors") of the dtype's machine epsilon derived in `nnback/tolerances.py` from the
size of the reductions the tests use. They are the same for every backend, except where a
row below names a backend and `nnback/tolerances.py` writes down the cause (whole training
runs through cuBLAS; float32 subnormals flushed on the GPU), and are never loosened to
make a test pass. This page is generated from that table
(`python -m nnback.tolerances > docs/tolerances.md`) and a test checks it is current.
"""


def tolerance_page_markdown() -> str:
    """The whole ``docs/tolerances.md`` page: an explanation, then the table."""
    return _PAGE_HEAD + "\n" + tolerance_table_markdown() + "\n"


if __name__ == "__main__":
    print(tolerance_page_markdown(), end="")
