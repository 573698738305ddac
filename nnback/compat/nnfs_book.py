"""The book's arithmetic for :mod:`nnback.compat.nnfs` in book mode on the numpy backend.

Each function computes what the *Neural Networks from Scratch* book's class of the same
role computes, as it computes it under the ``nnfs`` package's ``init()``: the same NumPy
expressions in the same order, so every intermediate has the book's dtype and rounding.
Results are therefore equal bit for bit to the book's own code run with NumPy on the same
machine. Points where that arithmetic is easy to get wrong:

* Every matrix product is the ``nnfs`` package's workaround: both operands converted to
  float64, ``numpy.dot``, the result rounded to the layer dtype (float32). Done here
  explicitly, so NumPy's own ``dot`` is not replaced (see :mod:`nnback.compat.nnfs_data`).
* dtypes follow NumPy's promotion as the book's lines meet them: the float64 targets of
  ``sine_data`` make the regression's loss gradient float64, so the last layer's bias
  gradient (a sum of that gradient) and its optimizer state are float64 too, while every
  product stays float32; the uint8 labels of ``spiral_data`` keep the binary
  cross-entropy in float32.
* The mean absolute error's gradient is ``sign(prediction - target)``: the book's listing
  has the sign reversed, and none of its printed results use that loss.
* The L1 penalty's gradient is +1 at exactly 0 (the book's ``ones_like`` with -1 where
  the value is negative), not ``sign``.
* Optimizer state lives on the layer (``weight_momentums``, ``weight_cache``,
  ``bias_momentums``, ``bias_cache``) and is created at the first update, like the book's.
"""

from __future__ import annotations

from typing import Any

import numpy

CLIP = 1e-7


def dot(a: numpy.ndarray, b: numpy.ndarray, dtype: Any) -> numpy.ndarray:
    """The ``nnfs`` package's ``np.dot``: float64 operands, result rounded to ``dtype``."""
    return numpy.dot(numpy.asarray(a).astype(numpy.float64), b.astype(numpy.float64)).astype(dtype)


# --------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------
def dense_forward(layer: Any, inputs: Any) -> numpy.ndarray:
    layer.inputs = inputs
    layer.output = dot(inputs, layer.weights, layer.dtype) + layer.biases
    return layer.output


def _penalty_gradient(value: numpy.ndarray, l1: float, l2: float, grad: Any) -> Any:
    if l1 > 0:
        sign = numpy.ones_like(value)
        sign[value < 0] = -1
        grad += l1 * sign
    if l2 > 0:
        grad += 2 * l2 * value
    return grad


def dense_backward(layer: Any, dvalues: Any) -> numpy.ndarray:
    layer.dweights = dot(numpy.asarray(layer.inputs).T, dvalues, layer.dtype)
    layer.dbiases = numpy.sum(dvalues, axis=0, keepdims=True)
    _penalty_gradient(
        layer.weights, layer.weight_regularizer_l1, layer.weight_regularizer_l2, layer.dweights
    )
    _penalty_gradient(
        layer.biases, layer.bias_regularizer_l1, layer.bias_regularizer_l2, layer.dbiases
    )
    layer.dinputs = dot(dvalues, layer.weights.T, layer.dtype)
    return layer.dinputs


def regularization_loss(layers: list[Any]) -> Any:
    """The layers' L1/L2 penalties, summed in the book's order (0 when there are none)."""
    total: Any = 0
    for layer in layers:
        for value, l1, l2 in (
            (layer.weights, layer.weight_regularizer_l1, layer.weight_regularizer_l2),
            (layer.biases, layer.bias_regularizer_l1, layer.bias_regularizer_l2),
        ):
            if l1 > 0:
                total += l1 * numpy.sum(numpy.abs(value))
            if l2 > 0:
                total += l2 * numpy.sum(value * value)
    return total


# --------------------------------------------------------------------------------------
# Activations: (forward, backward) pairs; forward sets ``inputs`` and ``output``
# --------------------------------------------------------------------------------------
def relu_forward(act: Any, inputs: Any) -> numpy.ndarray:
    return numpy.maximum(0, inputs)


def relu_backward(act: Any, dvalues: Any) -> numpy.ndarray:
    dinputs = dvalues.copy()
    dinputs[act.inputs <= 0] = 0
    return dinputs


def linear_forward(act: Any, inputs: Any) -> numpy.ndarray:
    return inputs


def linear_backward(act: Any, dvalues: Any) -> numpy.ndarray:
    return dvalues.copy()


def sigmoid_forward(act: Any, inputs: Any) -> numpy.ndarray:
    return 1 / (1 + numpy.exp(-inputs))


def sigmoid_backward(act: Any, dvalues: Any) -> numpy.ndarray:
    return dvalues * (1 - act.output) * act.output


def softmax_forward(act: Any, inputs: Any) -> numpy.ndarray:
    shifted = numpy.exp(inputs - numpy.max(inputs, axis=1, keepdims=True))
    return shifted / numpy.sum(shifted, axis=1, keepdims=True)


def softmax_backward(act: Any, dvalues: Any) -> numpy.ndarray:
    """The book's per-sample Jacobian product (slow; the fused softmax + loss is not)."""
    dtype = numpy.result_type(act.output.dtype, numpy.float32)
    dinputs = numpy.empty_like(dvalues)
    for row, (probabilities, grad) in enumerate(zip(act.output, dvalues, strict=True)):
        column = probabilities.reshape(-1, 1)
        jacobian = numpy.diagflat(column) - dot(column, column.T, dtype)
        dinputs[row] = dot(jacobian, grad, dtype)
    return dinputs


# --------------------------------------------------------------------------------------
# Losses: (sample losses, gradient) pairs
# --------------------------------------------------------------------------------------
def categorical_losses(y_pred: Any, y_true: Any) -> numpy.ndarray:
    clipped = numpy.clip(y_pred, CLIP, 1 - CLIP)
    if y_true.ndim == 1:
        correct = clipped[range(len(y_pred)), y_true]
    else:
        correct = numpy.sum(clipped * y_true, axis=1)
    return -numpy.log(correct)


def categorical_gradient(dvalues: Any, y_true: Any, dtype: Any) -> numpy.ndarray:
    if y_true.ndim == 1:
        y_true = numpy.eye(len(dvalues[0]), dtype=dtype)[y_true]
    return -y_true / dvalues / len(dvalues)


def binary_losses(y_pred: Any, y_true: Any) -> numpy.ndarray:
    clipped = numpy.clip(y_pred, CLIP, 1 - CLIP)
    losses = -(y_true * numpy.log(clipped) + (1 - y_true) * numpy.log(1 - clipped))
    return numpy.mean(losses, axis=-1)


def binary_gradient(dvalues: Any, y_true: Any, dtype: Any) -> numpy.ndarray:
    clipped = numpy.clip(dvalues, CLIP, 1 - CLIP)
    grad = -(y_true / clipped - (1 - y_true) / (1 - clipped)) / len(dvalues[0])
    return grad / len(dvalues)


def squared_losses(y_pred: Any, y_true: Any) -> numpy.ndarray:
    return numpy.mean((y_true - y_pred) ** 2, axis=-1)


def squared_gradient(dvalues: Any, y_true: Any, dtype: Any) -> numpy.ndarray:
    return -2 * (y_true - dvalues) / len(dvalues[0]) / len(dvalues)


def absolute_losses(y_pred: Any, y_true: Any) -> numpy.ndarray:
    return numpy.mean(numpy.abs(y_true - y_pred), axis=-1)


def absolute_gradient(dvalues: Any, y_true: Any, dtype: Any) -> numpy.ndarray:
    # The chapter 17 listing has the sign reversed (a step up the loss); no printed
    # result uses it, so book mode keeps the correct sign here.
    return numpy.sign(dvalues - y_true) / len(dvalues[0]) / len(dvalues)


def softmax_crossentropy_gradient(dvalues: Any, y_true: Any) -> numpy.ndarray:
    if y_true.ndim == 2:
        y_true = numpy.argmax(y_true, axis=1)
    grad = dvalues.copy()
    grad[range(len(dvalues)), y_true] -= 1
    return grad / len(dvalues)


# --------------------------------------------------------------------------------------
# Optimizers: one layer's update, the book's formulas in the book's order
# --------------------------------------------------------------------------------------
def decayed_rate(opt: Any) -> float:
    """The book's decay, ``lr * (1 / (1 + decay * iterations))`` (a Python float)."""
    return opt.learning_rate * (1.0 / (1.0 + opt.decay * opt.iterations))


def _zeros(layer: Any, *names: str) -> None:
    for name in names:
        source = layer.weights if name.startswith("weight") else layer.biases
        setattr(layer, name, numpy.zeros_like(source))


def sgd_update(opt: Any, layer: Any) -> None:
    rate = opt.current_learning_rate
    if opt.momentum:
        if not hasattr(layer, "weight_momentums"):
            _zeros(layer, "weight_momentums", "bias_momentums")
        weight_step = opt.momentum * layer.weight_momentums - rate * layer.dweights
        layer.weight_momentums = weight_step
        bias_step = opt.momentum * layer.bias_momentums - rate * layer.dbiases
        layer.bias_momentums = bias_step
    else:
        weight_step = -rate * layer.dweights
        bias_step = -rate * layer.dbiases
    layer.weights += weight_step
    layer.biases += bias_step


def adagrad_update(opt: Any, layer: Any) -> None:
    if not hasattr(layer, "weight_cache"):
        _zeros(layer, "weight_cache", "bias_cache")
    layer.weight_cache += layer.dweights**2
    layer.bias_cache += layer.dbiases**2
    rate = opt.current_learning_rate
    layer.weights += -rate * layer.dweights / (numpy.sqrt(layer.weight_cache) + opt.epsilon)
    layer.biases += -rate * layer.dbiases / (numpy.sqrt(layer.bias_cache) + opt.epsilon)


def rmsprop_update(opt: Any, layer: Any) -> None:
    if not hasattr(layer, "weight_cache"):
        _zeros(layer, "weight_cache", "bias_cache")
    rho = opt.rho
    layer.weight_cache = rho * layer.weight_cache + (1 - rho) * layer.dweights**2
    layer.bias_cache = rho * layer.bias_cache + (1 - rho) * layer.dbiases**2
    rate = opt.current_learning_rate
    layer.weights += -rate * layer.dweights / (numpy.sqrt(layer.weight_cache) + opt.epsilon)
    layer.biases += -rate * layer.dbiases / (numpy.sqrt(layer.bias_cache) + opt.epsilon)


def adam_update(opt: Any, layer: Any) -> None:
    if not hasattr(layer, "weight_cache"):
        _zeros(layer, "weight_momentums", "weight_cache", "bias_momentums", "bias_cache")
    beta_1, beta_2, step = opt.beta_1, opt.beta_2, opt.iterations + 1
    layer.weight_momentums = beta_1 * layer.weight_momentums + (1 - beta_1) * layer.dweights
    layer.bias_momentums = beta_1 * layer.bias_momentums + (1 - beta_1) * layer.dbiases
    weight_mean = layer.weight_momentums / (1 - beta_1**step)
    bias_mean = layer.bias_momentums / (1 - beta_1**step)
    layer.weight_cache = beta_2 * layer.weight_cache + (1 - beta_2) * layer.dweights**2
    layer.bias_cache = beta_2 * layer.bias_cache + (1 - beta_2) * layer.dbiases**2
    weight_var = layer.weight_cache / (1 - beta_2**step)
    bias_var = layer.bias_cache / (1 - beta_2**step)
    rate = opt.current_learning_rate
    layer.weights += -rate * weight_mean / (numpy.sqrt(weight_var) + opt.epsilon)
    layer.biases += -rate * bias_mean / (numpy.sqrt(bias_var) + opt.epsilon)
