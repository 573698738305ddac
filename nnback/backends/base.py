"""The backend base class: every array operation nnback needs, written once against ``self.xp``.

Instantiated with ``xp = numpy`` this class *is* the NumPy reference backend, the living
definition of every op. Accelerated backends subclass it and override only the ops they
fuse; an override checks what its kernel supports (dtype, layout, shape) and otherwise
falls back with ``return super().op(...)``.

Only operations that NumPy and CuPy both provide are used here, so the same code runs on
either array module (and on the strict stand-in namespace used by the tests).

Conventions
-----------
* ``n`` is the number of samples (rows), ``k`` the number of features or outputs.
* Losses return the mean over samples of the per-sample loss (itself the mean over outputs
  for the element-wise losses), as a 0-d backend array: reading it as a Python float is an
  explicit host synchronisation left to the caller.
* Gradients of a loss are with respect to the mean loss, i.e. already divided by ``n``.
* Methods whose name ends in ``_inplace`` modify their first arguments and return ``None``.
* Activations are named by string: ``"linear"``, ``"relu"``, ``"leaky_relu"``,
  ``"sigmoid"``, ``"tanh"`` and ``"softmax"``. Their backward passes are written in terms of
  the activation's *output*, so the pre-activation never has to be kept.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import Any

import numpy

from ..errors import InputError
from .conv_ops import ConvOps

Array = Any  # an array of this backend's array module

ACTIVATIONS = ("linear", "relu", "leaky_relu", "sigmoid", "tanh", "softmax")

# Probabilities are clipped to [EPSILON_CLIP, 1 - EPSILON_CLIP] before a log, as in the
# textbooks, so that a confident wrong prediction gives a large finite loss, not infinity.
EPSILON_CLIP = 1e-7


def adam_scalars(
    learning_rate: float, step: int, beta_1: float, beta_2: float
) -> tuple[float, float]:
    """Adam's step size and bias correction of the root, as Python floats, for every backend.

    Returns ``(learning_rate / (1 - beta_1**step), 1 / sqrt(1 - beta_2**step))``. Both
    ``1 - beta**step`` are positive for ``0 <= beta < 1`` and ``step >= 1``.
    """
    if step < 1:
        raise InputError(f"adam step counts from 1, got {step}")
    return learning_rate / (1 - beta_1**step), 1 / math.sqrt(1 - beta_2**step)


def _check_activation(activation: str) -> None:
    if activation not in ACTIVATIONS:
        raise InputError(
            f"unknown activation {activation!r}; expected one of {', '.join(ACTIVATIONS)}"
        )


class Backend(ConvOps):
    """Reference implementation of every op, against the array module ``self.xp``.

    Parameters
    ----------
    xp : module, optional
        The array module (``numpy`` or ``cupy`` or a compatible namespace). Defaults to the
        class attribute ``xp``.
    """

    name = "base"
    xp: Any = numpy

    def __init__(self, xp: Any = None) -> None:
        if xp is not None:
            self.xp = xp

    def __repr__(self) -> str:
        return f"<nnback backend {self.name!r}>"

    # ------------------------------------------------------------------------------------
    # Primitives: transfers and allocation
    # ------------------------------------------------------------------------------------
    def asarray(self, x: Any, dtype: Any = None) -> Array:
        """Return ``x`` as an array of this backend (copying to the device if needed)."""
        return self.xp.asarray(x, dtype=dtype)

    def to_numpy(self, x: Array) -> numpy.ndarray:
        """Return a host ``numpy.ndarray`` with the values of the backend array ``x``."""
        return numpy.asarray(x)

    def to_float(self, x: Array) -> float:
        """Return the value of a 0-d (or size-1) backend array as a Python float."""
        return float(self.to_numpy(x).reshape(()))

    def is_array(self, x: Any) -> bool:
        """Whether ``x`` is an array of this backend's array module."""
        return isinstance(x, self.xp.ndarray)

    def empty(self, shape: tuple[int, ...], dtype: Any) -> Array:
        return self.xp.empty(shape, dtype=dtype)

    def zeros(self, shape: tuple[int, ...], dtype: Any) -> Array:
        return self.xp.zeros(shape, dtype=dtype)

    def zeros_like(self, x: Array) -> Array:
        return self.xp.zeros_like(x)

    def copy(self, x: Array) -> Array:
        return self.xp.array(x, copy=True)

    def copy_into_inplace(self, dst: Array, src: Array) -> None:
        """Copy the values of ``src`` into the existing array ``dst`` (same shape)."""
        dst[...] = src

    def info(self) -> dict[str, str]:
        """Facts about this backend for ``nnback info`` (array module, threads, device)."""
        module = self.xp
        return {"array module": f"{module.__name__} {getattr(module, '__version__', '')}".strip()}

    def synchronize(self) -> None:
        """Wait until all queued work is finished (a no-op on the host)."""

    def compute_scope(self, layers: Sequence[Any] = ()) -> contextlib.AbstractContextManager[Any]:
        """A context in which ``fit``, ``evaluate`` and ``predict`` run the steps of a model
        made of ``layers``: a backend that splits its ops over threads of its own sets the
        thread policy for the whole loop here (see the numba backend); nothing by default."""
        return contextlib.nullcontext()

    def capture_unavailable(self) -> str | None:
        """None when ``fit`` can replay its training steps as CUDA graphs on this backend,
        else why not (:mod:`nnback.step_plan`)."""
        return f"the {self.name} backend runs each step eagerly; CUDA graphs need cupy"

    # ------------------------------------------------------------------------------------
    # Primitives: maths
    # ------------------------------------------------------------------------------------
    def matmul(self, a: Array, b: Array, out: Array | None = None) -> Array:
        """Matrix product ``a @ b``, written into ``out`` when given."""
        if out is None:
            return self.xp.matmul(a, b)
        return self.xp.matmul(a, b, out=out)

    def sum(self, x: Array, axis: int | None = None, keepdims: bool = False) -> Array:
        return self.xp.sum(x, axis=axis, keepdims=keepdims)

    def mean(self, x: Array, axis: int | None = None, keepdims: bool = False) -> Array:
        return self.xp.mean(x, axis=axis, keepdims=keepdims)

    def argmax(self, x: Array, axis: int = -1) -> Array:
        return self.xp.argmax(x, axis=axis)

    def all_finite(self, x: Array) -> bool:
        """Whether every value of ``x`` is finite (a host synchronisation)."""
        return bool(self.xp.all(self.xp.isfinite(x)))

    def squared_norm(self, x: Array) -> Array:
        """Sum of squares of ``x`` as a 0-d array."""
        return self.xp.sum(x * x)

    def scale_inplace(self, x: Array, factor: Any) -> None:
        """Multiply ``x`` by ``factor`` (a scalar or 0-d array) in place."""
        x *= factor

    # ------------------------------------------------------------------------------------
    # Activations: forward from the pre-activation, backward from the output
    # ------------------------------------------------------------------------------------
    def activation_forward(self, z: Array, activation: str, alpha: float = 0.01) -> Array:
        """Apply an activation to ``z`` (n, k) and return a new array (n, k).

        ``alpha`` is the negative slope of ``"leaky_relu"`` and is ignored otherwise.
        """
        _check_activation(activation)
        xp = self.xp
        if activation == "linear":
            return self.copy(z)
        if activation == "relu":
            return xp.maximum(z, 0)
        if activation == "leaky_relu":
            return xp.where(z > 0, z, z * alpha)
        if activation == "sigmoid":
            # exp of a non-positive number never overflows; pick the stable branch per sign.
            e = xp.exp(-xp.abs(z))
            return xp.where(z >= 0, 1 / (1 + e), e / (1 + e))
        if activation == "tanh":
            return xp.tanh(z)
        return self.softmax(z)

    def activation_backward(
        self, dy: Array, y: Array, activation: str, alpha: float = 0.01
    ) -> Array:
        """Gradient with respect to the pre-activation, given the output ``y`` (n, k).

        Parameters
        ----------
        dy : array (n, k)
            Gradient of the loss with respect to the activation's output.
        y : array (n, k)
            The activation's output from the forward pass.
        """
        _check_activation(activation)
        xp = self.xp
        if activation == "linear":
            return self.copy(dy)
        if activation == "relu":
            # y > 0 exactly where z > 0, so the output is enough.
            return xp.where(y > 0, dy, 0 * dy)
        if activation == "leaky_relu":
            return xp.where(y > 0, dy, dy * alpha)
        if activation == "sigmoid":
            return dy * y * (1 - y)
        if activation == "tanh":
            return dy * (1 - y * y)
        # softmax: the Jacobian-vector product y * (dy - sum(dy * y)) row by row.
        return y * (dy - xp.sum(dy * y, axis=1, keepdims=True))

    def softmax(self, z: Array) -> Array:
        """Row-wise softmax of ``z`` (n, k), stable for large logits."""
        xp = self.xp
        e = xp.exp(z - xp.max(z, axis=1, keepdims=True))
        return e / xp.sum(e, axis=1, keepdims=True)

    # ------------------------------------------------------------------------------------
    # Dense layer, fused with its activation
    # ------------------------------------------------------------------------------------
    def dense_forward(
        self,
        x: Array,
        w: Array,
        b: Array,
        activation: str = "linear",
        alpha: float = 0.01,
        out: Array | None = None,
    ) -> Array:
        """``activation(x @ w + b)``.

        Parameters
        ----------
        x : array (n, k_in)
        w : array (k_in, k_out)
        b : array (1, k_out)
        activation : str
        alpha : float
            Negative slope for ``"leaky_relu"``.
        out : array (n, k_out), optional
            Workspace to write the result into (its values are overwritten).

        Returns
        -------
        y : array (n, k_out)
        """
        z = self.matmul(x, w, out=out)
        self.bias_activation_inplace(z, b, activation, alpha)
        return z

    def bias_activation_inplace(
        self, z: Array, b: Array, activation: str = "linear", alpha: float = 0.01
    ) -> None:
        """The dense layer's forward epilogue, in place: ``z = activation(z + b)``.

        Parameters
        ----------
        z : array (n, k)
            The GEMM's output ``x @ w``; overwritten with the layer's output.
        b : array (1, k)
            The bias (any shape that broadcasts against ``z``).
        activation : str
        alpha : float
            Negative slope for ``"leaky_relu"``.
        """
        _check_activation(activation)
        z += b
        if activation != "linear":
            z[...] = self.activation_forward(z, activation, alpha)

    def activation_bias_backward(
        self,
        dy: Array,
        y: Array,
        activation: str = "linear",
        alpha: float = 0.01,
        overwrite_dy: bool = False,
        out_db: Array | None = None,
    ) -> tuple[Array, Array]:
        """The dense layer's backward epilogue: the pre-activation and bias gradients.

        Parameters
        ----------
        dy : array (n, k)
            Gradient of the loss with respect to the layer's output ``y``.
        y : array (n, k)
            The layer's output from the forward pass.
        overwrite_dy : bool
            The caller no longer needs ``dy``: a backend may write ``dz`` over it.
        out_db : array (1, k), optional
            Workspace for ``db``.

        Returns
        -------
        dz : array (n, k)
            ``activation_backward(dy, y)``. It may be ``dy`` itself when ``overwrite_dy``
            is true, or when the activation is linear (``dy`` is then not modified).
        db : array (1, k)
            The column sums of ``dz``.
        """
        dz = self.activation_backward(dy, y, activation, alpha)
        db = self.xp.sum(dz, axis=0, keepdims=True)
        if out_db is not None:
            out_db[...] = db
            db = out_db
        return dz, db

    def dense_backward(
        self,
        dy: Array,
        x: Array,
        w: Array,
        y: Array,
        activation: str = "linear",
        alpha: float = 0.01,
        need_dx: bool = True,
        overwrite_dy: bool = False,
        out: tuple[Array | None, Array | None, Array | None] | None = None,
    ) -> tuple[Array | None, Array, Array]:
        """Backward pass of ``y = activation(x @ w + b)``.

        Parameters
        ----------
        dy : array (n, k_out)
            Gradient of the loss with respect to ``y``. Not modified.
        x : array (n, k_in)
            The layer's input from the forward pass.
        w : array (k_in, k_out)
        y : array (n, k_out)
            The layer's output from the forward pass.
        need_dx : bool
            ``False`` skips the input gradient (the first layer does not need it).
        overwrite_dy : bool
            The caller no longer needs ``dy``, so a backend may reuse its memory.
        out : tuple (dx, dw, db) of arrays or None, optional
            Workspaces of the result shapes to write into (any entry may be None).

        Returns
        -------
        dx : array (n, k_in) or None
        dw : array (k_in, k_out)
        db : array (1, k_out)
        """
        out_dx, out_dw, out_db = out if out is not None else (None, None, None)
        dz, db = self.activation_bias_backward(dy, y, activation, alpha, overwrite_dy, out_db)
        dw = self.matmul(x.T, dz, out=out_dw)
        dx = self.matmul(dz, w.T, out=out_dx) if need_dx else None
        return dx, dw, db

    # ------------------------------------------------------------------------------------
    # Losses: each returns (mean loss as a 0-d array, gradient or None)
    # ------------------------------------------------------------------------------------
    def softmax_crossentropy(
        self, logits: Array, y_true: Array, with_grad: bool = True
    ) -> tuple[Array, Array | None]:
        """Softmax followed by categorical cross-entropy, fused and numerically stable.

        Parameters
        ----------
        logits : array (n, k)
            Pre-softmax scores.
        y_true : array (n,) of integer class indices, or array (n, k) of one-hot rows.

        Returns
        -------
        loss : 0-d array
            Mean over samples of ``-log softmax(logits)[true class]``.
        dlogits : array (n, k) or None
            ``(softmax(logits) - one_hot(y_true)) / n``.
        """
        xp = self.xp
        n = logits.shape[0]
        shifted = logits - xp.max(logits, axis=1, keepdims=True)
        e = xp.exp(shifted)
        total = xp.sum(e, axis=1, keepdims=True)
        log_total = xp.log(total)
        if y_true.ndim == 1:
            picked = xp.take_along_axis(shifted, y_true.reshape(n, 1), axis=1)
            loss = xp.sum(log_total - picked) / n
        else:
            y_true = self._as_dtype(y_true, logits.dtype)
            loss = -xp.sum(y_true * (shifted - log_total)) / n
        if not with_grad:
            return loss, None
        grad = e / total
        if y_true.ndim == 1:
            rows = xp.arange(n)
            grad[rows, y_true] -= 1
        else:
            grad -= y_true
        grad /= n
        return loss, grad

    def categorical_crossentropy(
        self, y_pred: Array, y_true: Array, with_grad: bool = True
    ) -> tuple[Array, Array | None]:
        """Categorical cross-entropy of probabilities ``y_pred`` (n, k), clipped before the log.

        ``y_true`` is (n,) integer class indices or (n, k) one-hot rows. The gradient is
        ``-y_true / clip(y_pred) / n`` (zero where ``y_true`` is zero).
        """
        xp = self.xp
        n = y_pred.shape[0]
        clipped = xp.clip(y_pred, EPSILON_CLIP, 1 - EPSILON_CLIP)
        if y_true.ndim == 1:
            picked = xp.take_along_axis(clipped, y_true.reshape(n, 1), axis=1)
            loss = -xp.sum(xp.log(picked)) / n
        else:
            y_true = self._as_dtype(y_true, y_pred.dtype)
            loss = -xp.sum(y_true * xp.log(clipped)) / n
        if not with_grad:
            return loss, None
        if y_true.ndim == 1:
            grad = xp.zeros_like(y_pred)
            rows = xp.arange(n)
            grad[rows, y_true] = -1 / (picked.reshape(n) * n)
        else:
            grad = -y_true / clipped / n
        return loss, grad

    def binary_crossentropy(
        self, y_pred: Array, y_true: Array, with_grad: bool = True
    ) -> tuple[Array, Array | None]:
        """Binary cross-entropy of probabilities ``y_pred`` (n, k) against 0/1 targets (n, k).

        The loss is averaged over the ``k`` outputs, then over samples; probabilities are
        clipped to ``[1e-7, 1 - 1e-7]`` for both the loss and its gradient.
        """
        xp = self.xp
        n, k = y_pred.shape
        y_true = self._as_dtype(y_true, y_pred.dtype)
        p = xp.clip(y_pred, EPSILON_CLIP, 1 - EPSILON_CLIP)
        # Clip the complement too, rather than use 1 - p: in float32 the bound 1 - 1e-7
        # rounds to 1 - 2**-23, while 1 - y_pred is exact for y_pred >= 1/2.
        q = xp.clip(1 - y_pred, EPSILON_CLIP, 1 - EPSILON_CLIP)
        loss = -xp.sum(y_true * xp.log(p) + (1 - y_true) * xp.log(q)) / (n * k)
        if not with_grad:
            return loss, None
        grad = -(y_true / p - (1 - y_true) / q) / (n * k)
        return loss, grad

    def mean_squared_error(
        self, y_pred: Array, y_true: Array, with_grad: bool = True
    ) -> tuple[Array, Array | None]:
        """Mean squared error over outputs, then samples, for ``y_pred`` and ``y_true`` (n, k)."""
        n, k = y_pred.shape
        diff = y_pred - self._as_dtype(y_true, y_pred.dtype)
        loss = self.xp.sum(diff * diff) / (n * k)
        if not with_grad:
            return loss, None
        return loss, diff * (2 / (n * k))

    def mean_absolute_error(
        self, y_pred: Array, y_true: Array, with_grad: bool = True
    ) -> tuple[Array, Array | None]:
        """Mean absolute error over outputs, then samples, for ``y_pred`` and ``y_true`` (n, k).

        The gradient at ``y_pred == y_true`` is taken as 0 (the sign function's value).
        """
        xp = self.xp
        n, k = y_pred.shape
        diff = y_pred - self._as_dtype(y_true, y_pred.dtype)
        loss = xp.sum(xp.abs(diff)) / (n * k)
        if not with_grad:
            return loss, None
        return loss, xp.sign(diff) / (n * k)

    def regularization_loss(self, param: Array, l1: float, l2: float) -> Array:
        """``l1 * sum(|param|) + l2 * sum(param**2)`` as a 0-d array."""
        xp = self.xp
        loss = xp.zeros((), dtype=param.dtype)
        if l1 > 0:
            loss = loss + l1 * xp.sum(xp.abs(param))
        if l2 > 0:
            loss = loss + l2 * xp.sum(param * param)
        return loss

    # ------------------------------------------------------------------------------------
    # Metrics
    # ------------------------------------------------------------------------------------
    def count_correct(self, y_pred: Array, y_true: Array) -> Array:
        """Number of correct predictions as a 0-d integer array.

        With one output column, ``y_pred`` holds probabilities thresholded at 0.5 and is
        compared with 0/1 targets. With several columns, the argmax of each row is compared
        with integer labels (n,) or with the argmax of one-hot targets (n, k). (Independent
        multi-label outputs are counted with :meth:`count_within` and a tolerance of 0.5.)
        """
        xp = self.xp
        if y_pred.shape[1] == 1:
            return xp.sum((y_pred > 0.5) == (y_true.reshape(y_pred.shape) > 0.5))
        predicted = xp.argmax(y_pred, axis=1)
        labels = y_true if y_true.ndim == 1 else xp.argmax(y_true, axis=1)
        return xp.sum(predicted == labels)

    def count_within(self, y_pred: Array, y_true: Array, tolerance: float) -> Array:
        """Number of elements with ``|y_pred - y_true| < tolerance`` (0-d integer array)."""
        return self.xp.sum(self.xp.abs(y_pred - y_true.reshape(y_pred.shape)) < tolerance)

    # ------------------------------------------------------------------------------------
    # Dropout (the keep mask is drawn on the host, so every backend drops the same units)
    # ------------------------------------------------------------------------------------
    def dropout_forward(self, x: Array, keep_mask: Array, scale: float) -> Array:
        """Inverted dropout: ``x * keep_mask * scale`` with ``scale = 1 / (1 - rate)``.

        ``keep_mask`` (n, k) is boolean (or 0/1) and ``x`` is (n, k).
        """
        return x * self._as_dtype(keep_mask, x.dtype) * scale

    def dropout_backward(self, dy: Array, keep_mask: Array, scale: float) -> Array:
        """Gradient of :meth:`dropout_forward`: ``dy * keep_mask * scale``."""
        return dy * self._as_dtype(keep_mask, dy.dtype) * scale

    # ------------------------------------------------------------------------------------
    # Optimizer steps, in place, with L1/L2 regularization folded into the gradient
    # ------------------------------------------------------------------------------------
    @staticmethod
    def _as_dtype(x: Array, dtype: Any) -> Array:
        """``x`` in ``dtype`` (no copy when it already is): targets and masks may be int or
        bool, and must not promote a float32 computation to float64."""
        return x if x.dtype == dtype else x.astype(dtype)

    def regularization_gradient(self, param: Array, grad: Array, l1: float, l2: float) -> Array:
        """``grad + l1 * sign(param) + 2 * l2 * param`` (a new array only when needed)."""
        if l1 > 0:
            grad = grad + l1 * self.xp.sign(param)
        if l2 > 0:
            grad = grad + (2 * l2) * param
        return grad

    def _flush_subnormal_inplace(self, state: Array) -> None:
        """Set optimizer-state values smaller than the dtype's smallest normal to zero.

        Moment estimates of parameters whose gradient stays zero decay geometrically and
        reach subnormal values after some hundreds of steps; arithmetic on subnormals is
        many times slower on CPUs. Flushing them changes each value by less than the
        smallest normal number, and every backend does it identically, so parity holds.
        """
        tiny = float(numpy.finfo(numpy.dtype(str(state.dtype))).tiny)
        state[...] = self.xp.where(self.xp.abs(state) < tiny, 0, state)

    def sgd_update_inplace(
        self,
        param: Array,
        grad: Array,
        velocity: Array | None,
        learning_rate: float,
        momentum: float = 0.0,
        l1: float = 0.0,
        l2: float = 0.0,
    ) -> None:
        """Stochastic gradient descent, optionally with momentum (``velocity`` then required).

        ``velocity = momentum * velocity - learning_rate * g``; ``param += velocity``;
        without momentum ``param -= learning_rate * g``; ``g`` is the regularized gradient.
        """
        if momentum != 0 and velocity is None:
            raise InputError("sgd_update_inplace: momentum > 0 needs a velocity array")
        g = self.regularization_gradient(param, grad, l1, l2)
        if momentum == 0:
            param -= learning_rate * g
            return
        velocity *= momentum
        velocity -= learning_rate * g
        self._flush_subnormal_inplace(velocity)
        param += velocity

    def adagrad_update_inplace(
        self,
        param: Array,
        grad: Array,
        cache: Array,
        learning_rate: float,
        epsilon: float = 1e-7,
        l1: float = 0.0,
        l2: float = 0.0,
    ) -> None:
        """AdaGrad: ``cache += g**2``; ``param -= learning_rate * g / (sqrt(cache) + epsilon)``."""
        g = self.regularization_gradient(param, grad, l1, l2)
        cache += g * g
        self._flush_subnormal_inplace(cache)
        param -= learning_rate * g / (self.xp.sqrt(cache) + epsilon)

    def rmsprop_update_inplace(
        self,
        param: Array,
        grad: Array,
        cache: Array,
        learning_rate: float,
        rho: float = 0.9,
        epsilon: float = 1e-7,
        l1: float = 0.0,
        l2: float = 0.0,
    ) -> None:
        """RMSprop: ``cache = rho * cache + (1 - rho) * g**2``, then an AdaGrad-style step."""
        g = self.regularization_gradient(param, grad, l1, l2)
        cache *= rho
        cache += (1 - rho) * (g * g)
        self._flush_subnormal_inplace(cache)
        param -= learning_rate * g / (self.xp.sqrt(cache) + epsilon)

    def adam_update_inplace(
        self,
        param: Array,
        grad: Array,
        m: Array,
        v: Array,
        learning_rate: float,
        step: int,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        l1: float = 0.0,
        l2: float = 0.0,
    ) -> None:
        """Adam with bias correction; ``step`` counts from 1.

        ``m = b1 m + (1 - b1) g``; ``v = b2 v + (1 - b2) g**2``;
        ``param -= lr * (m / (1 - b1**step)) / (sqrt(v / (1 - b2**step)) + epsilon)``,
        computed as ``param -= (m / (sqrt(v) * r + epsilon)) * s`` with the two bias
        corrections folded into Python scalars, ``s = lr / (1 - b1**step)`` and
        ``r = 1 / sqrt(1 - b2**step)`` (:func:`adam_scalars`): one division per element
        instead of three (the division, not memory, bounds the fused kernels), and the
        ratio ``m / denominator`` is formed before the step size scales it, so a large
        learning rate cannot overflow an intermediate that the step itself would not.
        """
        step_size, root_correction = adam_scalars(learning_rate, step, beta_1, beta_2)
        g = self.regularization_gradient(param, grad, l1, l2)
        m *= beta_1
        m += (1 - beta_1) * g
        v *= beta_2
        v += (1 - beta_2) * (g * g)
        self._flush_subnormal_inplace(m)
        self._flush_subnormal_inplace(v)
        denominator = self.xp.sqrt(v)
        denominator *= root_correction
        denominator += epsilon
        ratio = m / denominator
        ratio *= step_size
        param -= ratio
