"""A training step planned once, over fixed buffers, and replayed as a CUDA graph.

On a GPU the host is the bottleneck: each CuPy call costs 20-80 us of host time while the
GPU's work for a whole step of a small MLP is under 90 us. :class:`StepPlan` therefore lays
out one full-size training step of a model as a fixed sequence of the CuPy backend's own
launches (cuBLAS GEMMs through :class:`~nnback.backends.cublas.CublasGemm` and the fused
kernels of ``kernels/cuda``) over buffers allocated once, captures it as a CUDA graph and
replays it once per minibatch.

Nothing in the graph depends on a value the host passes per step. The device keeps the
books (``kernels/cuda/step.cu``): the step cursor, the loss sum, the correct-prediction
count and a "non-finite loss" flag that makes the optimizer kernels skip, so a bad step
never reaches the weights. Per epoch the host uploads what it drew or computed exactly as
the eager loop would: the permutation, the dropout masks of every step (drawn in the eager
loop's order from the model's generator) and a table of each step's learning-rate-dependent
scalars (:meth:`~nnback.optimizers.Optimizer.schedule`). The kernels are the eager step's
kernels and the GEMMs its GEMMs, with the same arguments, so a replayed step equals an eager
step bit for bit; the tests check that on the fake device.

The plan covers what the kernels cover: Dense layers (with their fused activation),
Dropout, activation layers (element-wise ones on images too), the image layers of
:mod:`nnback.conv_layers` (Reshape, Conv2D with its fused activation, MaxPool2D, AvgPool2D,
Flatten; laid out by :mod:`nnback.step_plan_conv`), softmax + cross-entropy (class indices
or one-hot) and the binary cross-entropy, squared and absolute error losses, the accuracy
metrics, and the four optimizers over the model's flat parameter buffer, in float32 and
float64. Anything else (``clip_norm``, a custom layer or optimizer, an op the kernels do
not take) makes :class:`PlanUnsupported` say why, and ``fit`` runs eager steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy

from .activations import Activation
from .backends.base import EPSILON_CLIP
from .backends.cupy_backend import as_rows
from .layers import Dense, Dropout
from .metrics import Accuracy, BinaryAccuracy, RegressionAccuracy
from .optimizers import SGD, AdaGrad, Adam, Optimizer, RMSprop
from .step_mode import CAPTURE_ENV, capture_requested, describe_step_mode
from .step_plan_conv import (
    IMAGE_LAYERS,
    eval_workspace,
    image_settings,
    plan_backward,
    plan_forward,
)

if TYPE_CHECKING:
    from .model import Sequential

__all__ = ["CAPTURE_ENV", "PlanUnsupported", "StepPlan", "capture_requested", "describe_step_mode"]

_KERNEL_ACTIVATIONS = ("linear", "relu", "leaky_relu", "sigmoid", "tanh", "softmax")
_LOSS_KERNELS = {
    "binary_crossentropy": "bce_loss_grad",
    "mean_squared_error": "mse_loss_grad",
    "mean_absolute_error": "mae_loss_grad",
}


class PlanUnsupported(Exception):
    """The model or the call cannot run as a planned step; the message says why."""


def _optimizer_op(optimizer: Optimizer) -> tuple[str, tuple[str, ...], tuple[float, ...]]:
    """``(kernel, state slots, constants)`` of the planned update, as the backend's eager
    update passes them (CupyBackend.*_update_inplace), less the per-step scalars."""
    kind = type(optimizer)
    if kind is Adam:
        b1, b2 = optimizer.beta_1, optimizer.beta_2
        return "adam_step", ("m", "v"), (b1, 1 - b1, b2, 1 - b2, optimizer.epsilon)
    if kind is RMSprop:
        rho = optimizer.rho
        return "rmsprop_step", ("cache",), (rho, 1 - rho, optimizer.epsilon)
    if kind is AdaGrad:
        return "adagrad_step", ("cache",), (optimizer.epsilon,)
    if kind is SGD:
        if optimizer.momentum:
            return "sgd_momentum_step", ("velocity",), (optimizer.momentum,)
        return "sgd_step", (), ()
    raise PlanUnsupported(f"optimizer {kind.__name__} has no planned kernel")


def _baked(model: Sequential) -> tuple[Any, ...]:
    """What a plan fixes at capture time besides arrays: the loss, metric and optimizer
    objects and settings, and each layer's kind, activation, rate and image geometry."""
    optimizer = model.optimizer
    config = {k: v for k, v in optimizer.get_config().items() if k != "iterations"}
    layers = tuple(
        (
            id(layer),
            getattr(layer, "fused_activation", None),
            getattr(layer, "fused_alpha", None),
            getattr(layer, "kind", None),
            getattr(layer, "alpha", None),
            getattr(layer, "rate", None),
            image_settings(layer),
        )
        for layer in model.steps
    )
    metric = (id(model.metric), getattr(model.metric, "precision", None))
    return (id(model.loss), model.fused_softmax_loss, metric, id(optimizer), repr(config), layers)


def _python_floats(*values: Any) -> None:
    # The kernels round Python floats to the array's dtype, as NumPy does; a NumPy float64
    # would promote float32 and the eager backend would fall back to the reference.
    for value in values:
        if type(value) is not float:
            raise PlanUnsupported(f"hyper-parameter {value!r} is not a Python float")


class StepPlan:
    """One full-size training step of ``model`` at ``batch_size``, ready to capture.

    Parameters
    ----------
    model : Sequential
        Built, on a backend whose ``capture_unavailable()`` is None.
    X, y : backend arrays
        The training data (all of it, on the device) and prepared targets.
    batch_size : int
    steps : int
        Full-size steps per epoch (``len(X) // batch_size``).
    main : StepPlan, optional
        Given, this plan is the epoch's shorter last batch (``len(X) - steps * batch_size``
        rows), step ``steps`` of the epoch: it shares the main plan's books, permutation and
        table of scalars, and is captured as a graph of its own.
    training : bool
        False plans the evaluation loop's batch instead (``training._score``): forward,
        loss without gradient, the running total in the loss's dtype, the metric count.
    """

    def __init__(
        self,
        model: Sequential,
        X: Any,
        y: Any,
        batch_size: int,
        steps: int,
        main: StepPlan | None = None,
        training: bool = True,
    ) -> None:
        backend = model.backend
        reason = backend.capture_unavailable()
        if reason is not None:
            raise PlanUnsupported(reason)
        if steps < 1:
            raise PlanUnsupported("no full-size batch in an epoch")
        self.model, self.backend, self.X, self.y = model, backend, X, y
        self.baked = _baked(model)
        self.batch_size, self.steps = batch_size, steps
        self.kernels = backend._kernels
        self.gemm_engine = backend._capture_gemm()
        self.dtype = model.dtype
        layers = model.trainable_layers
        pack = layers[0].parameter_pack if layers else None
        if pack is None or not pack.attach_gradients(layers):
            raise PlanUnsupported("the parameters are not in the model's flat buffer")
        self._dry = False
        self.graph: Any = None
        self.ops: list[Callable[[], None]] = []
        n = X.shape[0]
        self.main = main
        self.first = 0 if main is None else steps  # the epoch's step of this plan's first
        B = batch_size if main is None else n - steps * batch_size
        self.rows = B
        self.mask_steps = steps if main is None else 1
        if main is None:
            self.state = backend.zeros((4,), numpy.int64)
            self.sums = backend.zeros((3,), numpy.float64)
            self.order = backend.empty((n,), numpy.int64)
        else:
            self.state, self.sums, self.order = main.state, main.sums, main.order
        self.dropouts: list[tuple[Dropout, Any]] = []
        # Image layers' buffers by step: im2col patches, max-pooling argmax; (layer,
        # attribute, buffer) that captured.py points the layers at, as eager steps leave them.
        self.conv_cols: dict[int, Any] = {}
        self.pool_argmax: dict[int, Any] = {}
        self.extras: list[tuple[Any, str, Any]] = []
        self.workspace = None if training else eval_workspace(self, X.shape[1:])
        self.xb = backend.empty((B, *X.shape[1:]), self.dtype)
        self.yb = backend.empty((B, *y.shape[1:]), y.dtype)
        self._gather(X, self.xb)
        self._gather(y, self.yb)
        self.outputs: dict[int, tuple[Any, Any]] = {}  # layer index -> (inputs, output)
        out = self._forward(self.xb, training)
        self.loss = backend.empty((), self.dtype)
        grad = self._loss(out, training)
        if training:
            self.ops.append(lambda: self.kernels.step_books(self.loss, B, self.state, self.sums))
        else:
            self.total = backend.zeros((), self.dtype) if main is None else main.total
            self.ops.append(lambda: self.kernels.score_books(self.loss, B, self.total))
        self.correct_per_step = self._metric(out)
        self.training = training
        self.pack, self.runs, self.flat_state = pack, pack.runs(layers), None
        if training:
            self._backward(grad)
            self.table = self._optimizer()
        self.ops.append(lambda: self.kernels.step_advance(self.state))

    # ---- building the sequence -------------------------------------------------------------
    def _gather(self, source: Any, out: Any) -> None:
        if source.dtype not in (numpy.float32, numpy.float64, numpy.int64):
            raise PlanUnsupported(f"targets of dtype {source.dtype} cannot be gathered")
        if not source.flags.c_contiguous:  # the kernel reads rows by their row-major offset
            raise PlanUnsupported("the training data are not C-contiguous on the device")
        flat = source if source.ndim > 1 else source.reshape(source.shape[0], 1)
        target = out if out.ndim > 1 else out.reshape(out.shape[0], 1)
        stride = self.batch_size
        self.ops.append(
            lambda: self.kernels.gather_rows(flat, self.order, self.state, target, stride)
        )

    def _gemm(self, a: Any, b: Any, out: Any) -> Callable[[], None]:
        if not self.gemm_engine.supports(a, b, out):
            raise PlanUnsupported(f"a GEMM of shapes {a.shape} @ {b.shape} has no cuBLAS path")

        def run() -> None:
            if not self._dry:
                self.gemm_engine.gemm(a, b, out)

        return run

    def _activation(self, kind: str, alpha: Any, x: Any = None) -> float:
        if kind not in _KERNEL_ACTIVATIONS:
            raise PlanUnsupported(f"activation {kind!r} has no kernel")
        if x is not None and (x.ndim != 2 if kind == "softmax" else x.ndim < 1):
            raise PlanUnsupported(f"activation {kind!r} of an array of shape {x.shape}")
        if kind == "leaky_relu":
            _python_floats(alpha)
            return float(alpha)
        return 0.0

    def _forward(self, x: Any, training: bool) -> Any:
        backend, B, k = self.backend, self.rows, self.kernels
        for index, layer in enumerate(self.model.steps):
            if isinstance(layer, Dense):
                out = backend.empty((B, layer.n_neurons), self.dtype)
                act = layer.fused_activation
                alpha = self._activation(act, layer.fused_alpha)
                b = layer.biases
                if not (backend._fits(b) and b.shape in ((layer.n_neurons,), (1, layer.n_neurons))):
                    raise PlanUnsupported("a bias the kernels cannot read")
                self.ops.append(self._gemm(x, layer.weights, out))
                self.ops.append(
                    lambda z=out, b=b, a=act, al=alpha: k.bias_activation(z, b, z, a, al)
                )
            elif isinstance(layer, Dropout):
                if layer.rate == 0 or not training:
                    self.outputs[index] = (x, x)
                    continue
                out = backend.empty(x.shape, self.dtype)
                masks = backend.empty((self.mask_steps, *x.shape), numpy.bool_)
                scale = 1.0 / (1.0 - layer.rate)
                self.dropouts.append((layer, masks))
                self.ops.append(
                    lambda x=x, m=masks, o=out, s=scale: k.planned_dropout(
                        x, m, o, s, self.state, self.first
                    )
                )
            elif isinstance(layer, Activation):
                out = backend.empty(x.shape, self.dtype)
                alpha = self._activation(layer.kind, layer.alpha, x)
                kind = layer.kind
                rows = (as_rows(x), as_rows(out))  # images too (element-wise, as eager)
                self.ops.append(
                    lambda r=rows, a=kind, al=alpha: k.bias_activation(r[0], None, r[1], a, al)
                )
            elif isinstance(layer, IMAGE_LAYERS):
                out = plan_forward(self, index, layer, x, training)
            else:
                raise PlanUnsupported(f"layer {type(layer).__name__} has no planned step")
            self.outputs[index] = (x, out)
            x = out
        return x

    def _loss(self, out: Any, with_grad: bool) -> Any:
        model, k, backend = self.model, self.kernels, self.backend
        if out.ndim != 2:
            raise PlanUnsupported(f"the model's outputs are of shape {out.shape}, not rows")
        grad = backend.empty(out.shape, self.dtype) if with_grad else None
        if model.fused_softmax_loss:
            yb = self.yb
            if yb.ndim == 2 and yb.dtype != self.dtype:
                raise PlanUnsupported("one-hot targets not of the model's dtype")
            rows = backend.empty((self.rows,), self.dtype)
            self.ops.append(lambda: k.softmax_crossentropy(out, yb, grad, rows, self.loss))
            return grad
        op = getattr(model.loss, "op", None)
        if op not in _LOSS_KERNELS or self.yb.shape != out.shape:
            raise PlanUnsupported(f"loss {type(model.loss).__name__} has no planned kernel")
        size = out.size
        constants = {
            "binary_crossentropy": (EPSILON_CLIP, 1 - EPSILON_CLIP, size),
            "mean_squared_error": (2 / size,),
            "mean_absolute_error": (size,),
        }[op]
        partial = backend.empty((k.loss_chunks(size),), self.dtype)
        negate = op == "binary_crossentropy"
        kernel = _LOSS_KERNELS[op]
        self.ops.append(
            lambda: k.elementwise_loss(
                kernel,
                out,
                self.yb,
                grad,
                *constants,
                negate=negate,
                partial=partial,
                loss=self.loss,
            )
        )
        return grad

    def _metric(self, out: Any) -> int:
        """Add the metric's count to the sequence; return how many predictions a step counts."""
        metric, k, yb = self.model.metric, self.kernels, self.yb
        n, width = out.shape
        if type(metric) is RegressionAccuracy:
            if metric.precision is None:
                raise PlanUnsupported("RegressionAccuracy without a precision")
            tol = float(metric.precision)
            self.ops.append(lambda: k.count("within", out, yb, self.state, tol))
            return out.size
        if type(metric) not in (Accuracy, BinaryAccuracy):
            raise PlanUnsupported(f"metric {type(metric).__name__} has no planned kernel")
        if metric.binary and width > 1 and yb.shape == out.shape:
            self.ops.append(lambda: k.count("within", out, yb, self.state, 0.5))
            return out.size
        if width == 1:
            truth = yb.reshape(n, 1) if yb.ndim == 1 else yb
            if truth.dtype != self.dtype:
                raise PlanUnsupported("0/1 targets not of the model's dtype")
            self.ops.append(lambda: k.count("threshold", out, truth, self.state))
        elif yb.ndim == 1:
            self.ops.append(lambda: k.count("labels", out, yb, self.state))
        else:
            self.ops.append(lambda: k.count("onehot", out, yb, self.state))
        return n

    def _backward(self, grad: Any) -> None:
        backend, k, B = self.backend, self.kernels, self.rows
        steps = self.model.steps
        # Nothing before the first layer with parameters needs a gradient (a CNN's Reshape).
        first = next(i for i, layer in enumerate(steps) if layer.trainable)
        for index in range(len(steps) - 1, first - 1, -1):
            layer, need_dx = steps[index], index > first
            x, out = self.outputs[index]
            if isinstance(layer, Dense):
                act = layer.fused_activation
                alpha = self._activation(act, layer.fused_alpha)
                db, dw = layer.dbiases, layer.dweights
                chunks = k.bias_grad_chunks(B)
                partial = (
                    backend.empty((chunks, layer.n_neurons), self.dtype) if chunks > 1 else None
                )
                if act == "linear":
                    self.ops.append(
                        lambda g=grad, db=db, p=partial: k.bias_grad(
                            g, None, None, db, "linear", 0.0, p
                        )
                    )
                elif act == "softmax":
                    self.ops.append(
                        lambda g=grad, y=out: k.activation_grad(g, y, g, "softmax", 0.0)
                    )
                    self.ops.append(
                        lambda g=grad, db=db, p=partial: k.bias_grad(
                            g, None, None, db, "linear", 0.0, p
                        )
                    )
                else:
                    self.ops.append(
                        lambda g=grad, y=out, db=db, a=act, al=alpha, p=partial: k.bias_grad(
                            g, y, g, db, a, al, p
                        )
                    )
                self.ops.append(self._gemm(x.T, grad, dw))
                if need_dx:
                    dx = backend.empty((B, layer.n_inputs), self.dtype)
                    self.ops.append(self._gemm(grad, layer.weights.T, dx))
                    grad = dx
            elif isinstance(layer, Dropout):
                if layer.rate == 0:
                    continue
                masks = next(m for d, m in self.dropouts if d is layer)
                dx = backend.empty(grad.shape, self.dtype)
                scale = 1.0 / (1.0 - layer.rate)
                self.ops.append(
                    lambda g=grad, m=masks, o=dx, s=scale: k.planned_dropout(
                        g, m, o, s, self.state, self.first
                    )
                )
                grad = dx
            elif isinstance(layer, IMAGE_LAYERS):
                grad = plan_backward(self, index, layer, grad, need_dx)
            else:  # an activation layer
                dx = backend.empty(grad.shape, self.dtype)
                alpha = self._activation(layer.kind, layer.alpha, grad)
                rows = (as_rows(grad), as_rows(out), as_rows(dx))
                self.ops.append(lambda r=rows, a=layer.kind, al=alpha: k.activation_grad(*r, a, al))
                grad = dx

    def _optimizer(self) -> Any:
        model = self.model
        optimizer = model.optimizer
        kernel, slots, constants = _optimizer_op(optimizer)
        _python_floats(*constants)
        pack, runs = self.pack, self.runs
        if runs is None:
            raise PlanUnsupported("the parameters are not in the model's flat buffer")
        state = optimizer.flat_state(pack)
        width = len(optimizer.schedule(1)[0][0])
        if self.main is not None:
            table = self.main.table
        else:
            tail = 1 if self.X.shape[0] > self.steps * self.batch_size else 0
            table = self.backend.zeros((self.steps + tail, width), numpy.float64)
        for run in runs:
            _python_floats(run.l1, run.l2)
            param, grad = pack.param[run.start : run.stop], pack.grad[run.start : run.stop]
            views = state.slices(run)
            arrays = (param, grad, *(views[s] for s in slots))
            values = (*constants, run.l1, 2 * run.l2)
            self.ops.append(
                lambda a=arrays, v=values: self.kernels.planned_step(
                    kernel, a, table, self.state, *v
                )
            )
        self.flat_state = state
        return table

    # ---- running it --------------------------------------------------------------------------
    def run_ops(self) -> None:
        """Issue the step's launches on the current stream (capture records them)."""
        for op in self.ops:
            op()

    def capture(self) -> None:
        """Load every kernel, then capture the step once as a CUDA graph."""
        self.kernels.dry_run = self._dry = True
        try:
            self.run_ops()  # resolves (compiles, loads) each kernel; launches nothing
        finally:
            self.kernels.dry_run = self._dry = False
        xp = self.backend.xp
        stream = xp.cuda.Stream(non_blocking=True)
        with stream:
            self.gemm_engine.prepare()  # the handle's stream: set before the capture begins
            stream.begin_capture()
            try:
                self.run_ops()
            finally:
                graph = stream.end_capture()
        self.graph = graph

    def start_epoch(
        self, order: numpy.ndarray, masks: list[numpy.ndarray], table: list[Any]
    ) -> None:
        """Upload an epoch's permutation, dropout masks and per-step scalars; zero the books.

        A shorter last batch's plan (``main`` given) uploads only its masks: the rest is
        the main plan's.
        """
        backend = self.backend
        for (_, device), host in zip(self.dropouts, masks, strict=True):
            backend.copy_into_inplace(device, backend.asarray(host))
        if self.main is None:
            backend.copy_into_inplace(self.order, backend.asarray(order.astype(numpy.int64)))
            if hasattr(self, "table"):
                table = numpy.asarray(table, numpy.float64)
                backend.copy_into_inplace(self.table, backend.asarray(table))
            else:
                backend.copy_into_inplace(self.total, backend.zeros((), self.dtype))
            backend.copy_into_inplace(self.state, backend.zeros((4,), numpy.int64))
            backend.copy_into_inplace(self.sums, backend.zeros((3,), numpy.float64))
        if self.graph is None:
            self.capture()

    def launch(self) -> None:
        """One training step: a replay of the captured graph."""
        self.graph.launch()

    def read(self) -> tuple[numpy.ndarray, numpy.ndarray]:
        """The books on the host (one synchronising copy each): ``state`` and ``sums``."""
        return self.backend.to_numpy(self.state), self.backend.to_numpy(self.sums)

    def still_valid(self, model: Sequential, X: Any, y: Any, batch_size: int) -> bool:
        """Whether the plan still points at the model's arrays (a load, ``to_backend`` or a
        replaced optimizer makes a new plan)."""
        layers = model.trainable_layers
        return (
            model is self.model
            and self.baked == _baked(model)
            and X is self.X
            and y is self.y
            and batch_size == self.batch_size
            and model.backend is self.backend
            and (not self.training or model.optimizer.flat_state(self.pack) is self.flat_state)
            and bool(layers)
            and layers[0].parameter_pack is self.pack
            and self.pack.runs(layers) == self.runs
        )
