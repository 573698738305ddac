"""Adapters that give the classic "from scratch" texts' APIs on top of nnback.

Each module is a thin layer over nnback's own layers, optimizers and backend ops, so a
program written for one of the texts runs with only its imports changed, and then runs on
any backend (``NNBACK_BACKEND=numba python program.py``):

- :mod:`nnback.compat.nnfs`: the *Neural Networks from Scratch* book's classes
  (``Layer_Dense``, ``Activation_ReLU``, ``Optimizer_Adam``, ...), in its stateful
  ``.output`` / ``.dinputs`` style.
- :mod:`nnback.compat.scratch`: the "scratch deep neural network classifier" exercise
  (``FC``, ``XavierInitializer``, ``AdaGrad``, ``ScratchDeepNeuralNetworkClassifier``).
- :mod:`nnback.compat.minimal`: the minimal ``Network`` / ``FCLayer`` / ``ActivationLayer``
  API, with batched training that matches the per-sample original.

Values the adapters hand back (``.output``, ``.dinputs``, weights) are arrays of the
selected backend: NumPy arrays on the ``numpy`` and ``numba`` backends, CuPy arrays on a
GPU, where code that mixes them with host arrays must move them first.
"""

from __future__ import annotations

from typing import Any

from ..backends import Backend

__all__: list[str] = []


def softmax_crossentropy_gradient(
    backend: Backend,
    logits: Any,
    probabilities: Any,
    dvalues: Any,
    y_true: Any,
) -> Any:
    """Gradient of the mean cross-entropy with respect to the logits of a softmax.

    When ``dvalues`` is the softmax output of the last forward pass (``probabilities``),
    the fused, numerically exact ``softmax_crossentropy`` op runs on the saved ``logits``.
    Otherwise (arbitrary probabilities handed in by the user) the gradient is the chain
    of the cross-entropy gradient and the softmax Jacobian, the textbooks' own derivation,
    which equals ``(dvalues - one_hot(y_true)) / n`` for rows that sum to one.

    Parameters
    ----------
    backend : Backend
        The backend the arrays live on.
    logits : array (n, k) or None
        The softmax input saved by the forward pass.
    probabilities : array (n, k) or None
        The softmax output saved by the forward pass.
    dvalues : array (n, k)
        The probabilities the caller passes to ``backward``.
    y_true : array (n,) of class indices or (n, k) of one-hot rows
        Targets, already on the backend.

    Returns
    -------
    array (n, k)
    """
    if logits is not None and dvalues is probabilities:
        _, grad = backend.softmax_crossentropy(logits, y_true, with_grad=True)
        return grad
    _, dprob = backend.categorical_crossentropy(dvalues, y_true, with_grad=True)
    return backend.activation_backward(dprob, dvalues, "softmax")


def as_targets(backend: Backend, y: Any, like: Any, categorical: bool) -> Any:
    """Targets on the backend: int64 class indices, or values in the dtype of ``like``.

    Parameters
    ----------
    backend : Backend
    y : array-like
        Host or backend targets.
    like : array
        The predictions the targets are compared with (gives the dtype).
    categorical : bool
        Whether 1-D targets are class indices (kept as integers).
    """
    if categorical and getattr(y, "ndim", 2) == 1:
        return backend.asarray(y, dtype="int64")
    return backend.asarray(y, dtype=like.dtype)
