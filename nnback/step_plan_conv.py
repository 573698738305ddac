"""The image layers of a planned step (:mod:`nnback.step_plan`): Reshape, Flatten, Conv2D,
MaxPool2D and AvgPool2D.

Each layer is laid out as the launches its eager step makes on the CuPy backend
(``CupyBackend.im2col``, ``conv_bias_activation``, ``conv_activation_bias_backward``,
``col2im``, the pooling ops and the base class's ``conv2d_forward``/``conv2d_backward``
around them), with the same arrays' shapes, so a replay computes the same bits:

- ``Reshape`` and ``Flatten`` are views of the buffer before them, and reshapes of the
  gradient after them;
- ``Conv2D`` forward: ``im2col(x) -> cols``, the GEMM ``W2 @ cols -> z`` through the plan's
  cuBLAS, and the epilogue ``conv_bias_activation(z) -> y`` (bias, fused activation, NCHW);
- ``Conv2D`` backward: ``conv_bias_grad(dy, y) -> dz, db`` (partial sums per chunk then a
  column sum when there are several chunks), ``dz @ cols.T -> dW``, written straight into
  the flat gradient buffer as the eager backward does, and when the input gradient is
  needed ``W2.T @ dz -> dcols`` (into ``cols``, which the dW GEMM has read by then) and
  ``col2im(dcols) -> dx``;
- ``MaxPool2D`` keeps its argmax (int32) for the backward pass; ``AvgPool2D`` needs none.

A plan for evaluation (forward only) shares one im2col workspace between its convolutions.
Whatever the eager backend would send to the reference (a geometry conv.cu cannot index, a
softmax fused into a convolution) makes :class:`~nnback.step_plan.PlanUnsupported` say why.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy

from .backends.conv_ops import CONV_ACTIVATIONS
from .conv_layers import AvgPool2D, Conv2D, Flatten, MaxPool2D, Reshape
from .errors import InputError

if TYPE_CHECKING:
    from .step_plan import StepPlan

__all__ = ["IMAGE_LAYERS", "eval_workspace", "image_settings", "plan_backward", "plan_forward"]

IMAGE_LAYERS = (Conv2D, MaxPool2D, AvgPool2D, Flatten, Reshape)


def _unsupported(message: str) -> Exception:
    from .step_plan import PlanUnsupported

    return PlanUnsupported(message)


def image_settings(layer: Any) -> tuple[Any, ...]:
    """What a plan bakes into its launches from an image layer's settings (checked by
    ``StepPlan.still_valid``): window, stride, padding and the reshaped sample shape."""
    if not isinstance(layer, IMAGE_LAYERS):
        return ()
    names = ("kernel_size", "stride", "padding", "pool_size", "shape")
    return tuple(getattr(layer, name, None) for name in names)


def eval_workspace(plan: StepPlan, sample_shape: tuple[int, ...]) -> Any:
    """One im2col workspace, large enough for every convolution of an evaluation plan of
    ``plan.rows`` samples (None without convolutions)."""
    if not any(isinstance(layer, Conv2D) for layer in plan.model.steps):
        return None
    largest, shape = 0, tuple(sample_shape)
    try:
        for layer in plan.model.steps:
            out = tuple(layer.output_shape(shape))
            if isinstance(layer, Conv2D):
                kh, kw = layer.kernel_size
                largest = max(largest, shape[0] * kh * kw * plan.rows * out[1] * out[2])
            shape = out
    except (InputError, IndexError) as exc:
        raise _unsupported(f"the layers' shapes do not follow: {exc}") from None
    return plan.backend.empty((largest,), plan.dtype) if largest else None


def _geometry(plan: StepPlan, layer: Any, x: Any, window: Any, padding: Any) -> Any:
    backend = plan.backend
    if x.ndim != 4 or not backend._fits(x):
        raise _unsupported(f"{layer!r} gets a batch of shape {tuple(x.shape)}, not images")
    geometry = backend._conv_geometry(x.shape, window, layer.stride, padding)
    if geometry is None:
        raise _unsupported(f"{layer!r} on images {tuple(x.shape)}: no kernel takes them")
    return geometry


def plan_forward(plan: StepPlan, index: int, layer: Any, x: Any, training: bool) -> Any:
    """Append the forward launches of image layer ``layer`` (step ``index``) on ``x``;
    return its output buffer."""
    backend, k, B, dtype = plan.backend, plan.kernels, plan.rows, plan.dtype
    if isinstance(layer, Reshape):
        if math.prod(x.shape[1:]) != layer.size or not x.flags.c_contiguous:
            raise _unsupported(f"{layer!r} gets a batch of shape {tuple(x.shape)}")
        return x.reshape(B, *layer.shape)
    if isinstance(layer, Flatten):
        if not x.flags.c_contiguous:
            raise _unsupported(f"{layer!r} gets an array that is not C-contiguous")
        return x.reshape(B, -1)
    if isinstance(layer, Conv2D):
        (_, c, _, _), (window, stride, padding), (oh, ow) = _geometry(
            plan, layer, x, layer.kernel_size, layer.padding
        )
        act = layer.fused_activation
        if act not in CONV_ACTIVATIONS:
            raise _unsupported(f"{layer!r} cannot fuse activation {act!r}")
        alpha = plan._activation(act, layer.fused_alpha)
        w, b, c_out = layer.weights, layer.biases, layer.out_channels
        if (
            c != layer.in_channels
            or tuple(w.shape) != layer.weight_shape
            or not backend._fits(w, b, x)
            or b.shape not in ((c_out,), (1, c_out))
        ):
            raise _unsupported(f"{layer!r}: parameters or inputs the kernels cannot read")
        rows, columns = c * window[0] * window[1], B * oh * ow
        if training:
            cols = backend.empty((rows, columns), dtype)
            plan.extras.append((layer, "_cols", cols))
        else:
            cols = plan.workspace[: rows * columns].reshape(rows, columns)
        plan.conv_cols[index] = cols
        z = backend.empty((c_out, columns), dtype)
        y = backend.empty((B, c_out, oh, ow), dtype)
        plan.ops.append(lambda: k.im2col(x, cols, window, stride, padding))
        plan.ops.append(plan._gemm(w.reshape(c_out, rows), cols, z))
        z4 = z.reshape(c_out, B, oh, ow)
        plan.ops.append(lambda: k.conv_bias_activation(z4, b, y, act, alpha))
        return y
    # Pooling: no padding; the window is the pool.
    (n, c, _, _), (pool, stride, _), (oh, ow) = _geometry(plan, layer, x, layer.pool_size, (0, 0))
    y = backend.empty((n, c, oh, ow), dtype)
    if isinstance(layer, MaxPool2D):
        argmax = backend.empty((n, c, oh, ow), numpy.int32)
        plan.pool_argmax[index] = argmax
        if training:
            plan.extras.append((layer, "argmax", argmax))
        plan.ops.append(lambda: k.maxpool_forward(x, y, argmax, pool, stride))
    else:
        plan.ops.append(lambda: k.avgpool_forward(x, y, pool, stride))
    return y


def plan_backward(plan: StepPlan, index: int, layer: Any, grad: Any, need_dx: bool) -> Any:
    """Append the backward launches of image layer ``layer`` (step ``index``) for the
    gradient ``grad`` of its output; return the gradient of its input (None if not needed)."""
    backend, k, B, dtype = plan.backend, plan.kernels, plan.rows, plan.dtype
    x, y = plan.outputs[index]
    if isinstance(layer, Reshape | Flatten):
        return grad.reshape(x.shape)
    if not (grad.flags.c_contiguous and tuple(grad.shape) == tuple(y.shape)):
        raise _unsupported(f"{layer!r}: a gradient the kernels cannot read")
    if isinstance(layer, Conv2D):
        c_out, (_, _, oh, ow) = layer.out_channels, y.shape
        window, stride, padding = layer.kernel_size, layer.stride, layer.padding
        act = layer.fused_activation
        alpha = plan._activation(act, layer.fused_alpha)
        cols, w = plan.conv_cols[index], layer.weights
        dw, db = layer.dweights, layer.dbiases
        if not (
            backend._fits(dw, db, grad) and tuple(dw.shape) == tuple(w.shape) and db.size == c_out
        ):
            raise _unsupported(f"{layer!r}: gradients outside the flat buffer")
        dz = backend.empty((c_out, B, oh, ow), dtype)
        chunks = k.conv_bias_grad_chunks(B * oh * ow)
        partial = backend.empty((chunks, c_out), dtype) if chunks > 1 else None
        plan.ops.append(lambda: k.conv_bias_grad(grad, y, dz, db, act, alpha, partial))
        dz2 = dz.reshape(c_out, -1)
        plan.ops.append(plan._gemm(dz2, cols.T, dw.reshape(c_out, -1)))
        if not need_dx:
            return None
        # dcols into cols: the dW GEMM before it was the last to read the patches.
        plan.ops.append(plan._gemm(w.reshape(c_out, -1).T, dz2, cols))
        dx = backend.empty(x.shape, dtype)
        plan.ops.append(lambda: k.col2im(cols, dx, window, stride, padding))
        return dx
    if not need_dx:
        return None
    dx = backend.empty(x.shape, dtype)
    pool, stride = layer.pool_size, layer.stride
    if isinstance(layer, MaxPool2D):
        argmax = plan.pool_argmax[index]
        plan.ops.append(lambda: k.maxpool_backward(grad, argmax, dx, pool, stride))
    else:
        plan.ops.append(lambda: k.avgpool_backward(grad, dx, pool, stride))
    return dx
