"""The :class:`Sequential` model: a stack of layers with a loss, an optimizer and a metric.

The model fuses what the backend can do in one call: a Dense layer followed by an
activation becomes one ``dense_forward`` / ``dense_backward``; a Softmax output followed by
categorical cross-entropy becomes the stable ``softmax_crossentropy`` on the logits.
Data move to the backend once per :meth:`fit` call; minibatches are taken there.
"""

from __future__ import annotations

import os
from typing import Any

import numpy

from . import training
from .activations import Activation, Softmax
from .backends import Backend, get_backend
from .callbacks import Callback, History
from .conv_layers import Conv2D, MaxPool2D
from .distributed import group_of as distributed_group
from .errors import InputError
from .layer_base import Layer
from .layers import Dense, Dropout, layer_from_config
from .losses import CategoricalCrossentropy, Loss, get_loss
from .metrics import Metric, get_metric
from .optimizers import Optimizer, get_optimizer
from .parameter_pack import ParameterPack
from .validation import check_features, check_positive_int, check_X

__all__ = ["Sequential"]

Array = Any
_DTYPES = ("float32", "float64")


class Sequential:
    """A feed-forward network.

    Parameters
    ----------
    layers : list of Layer, optional
        The layers in order; more can be added with :meth:`add`.
    loss : Loss or str, optional
        e.g. ``CategoricalCrossentropy()`` or ``"mse"``. Needed to train and evaluate.
    optimizer : Optimizer or str, optional
        e.g. ``Adam(learning_rate=1e-3)``; ``"adam"`` for the defaults.
    metric : Metric or str, optional
        ``"auto"`` picks accuracy for classification losses and the textbook regression
        accuracy for MSE/MAE.
    seed : int, optional
        Seeds one ``numpy.random.Generator`` for the initial weights, shuffling and dropout
        masks, so the same seed gives the same model and run on every backend.
    dtype : {"float32", "float64"}
    backend : str or Backend, optional
        Fixed at build time; by default the backend selected when the model is built.
    """

    def __init__(
        self,
        layers: list[Layer] | None = None,
        *,
        loss: Loss | str | None = None,
        optimizer: Optimizer | str | None = None,
        metric: Metric | str | None = "auto",
        seed: int | None = None,
        dtype: str = "float32",
        backend: str | Backend | None = None,
    ) -> None:
        if str(numpy.dtype(dtype)) not in _DTYPES:
            raise InputError(f"dtype: expected 'float32' or 'float64', got {dtype!r}")
        if backend is not None:
            get_backend(backend)  # an unknown or unavailable name fails now, not at build
        self.layers: list[Layer] = []
        for layer in layers or []:
            self.add(layer)
        self.loss = get_loss(loss) if loss is not None else None
        self.optimizer = get_optimizer(optimizer) if optimizer is not None else None
        self._metric_spec = metric
        self.metric = get_metric(metric, self.loss)
        self.seed = seed
        self.dtype = numpy.dtype(dtype)
        self._backend_choice = backend
        self._backend: Backend | None = None
        self.rng = numpy.random.default_rng(seed)
        self.stop_training = False
        self.history: History | None = None

    # ------------------------------------------------------------------------------------
    # Construction
    # ------------------------------------------------------------------------------------
    def add(self, layer: Layer) -> Sequential:
        """Append a layer (returns the model, so calls can be chained)."""
        if not isinstance(layer, Layer):
            raise InputError(f"Sequential.add: expected a Layer, got {type(layer).__name__}")
        self.layers.append(layer)
        self._backend = None  # the plan and the parameters must be made again
        return self

    def compile(
        self,
        loss: Loss | str | None = None,
        optimizer: Optimizer | str | None = None,
        metric: Metric | str | None = None,
    ) -> Sequential:
        """Set the loss, optimizer and metric (any left as None is kept)."""
        if loss is not None:
            self.loss = get_loss(loss)
            self.metric = get_metric(self._metric_spec, self.loss)
        if optimizer is not None:
            self.optimizer = get_optimizer(optimizer)
        if metric is not None:
            self._metric_spec = metric
            self.metric = get_metric(metric, self.loss)
        if self.built:
            self._plan()  # the loss decides whether softmax and cross-entropy fuse
        return self

    @property
    def backend(self) -> Backend:
        """The backend the model's arrays live on (chosen when the model is built)."""
        if self._backend is not None:
            return self._backend
        return get_backend(self._backend_choice)

    @property
    def built(self) -> bool:
        return self._backend is not None

    @property
    def input_layer(self) -> Layer:
        """The first layer that fixes the number of features per sample (a Dense or a
        Reshape); the layers before it (activations, dropout) take any shape."""
        for layer in self.layers:
            if layer.input_size() is not None:
                return layer
        raise InputError("the model has no Dense layer; add one before training")

    @property
    def n_features(self) -> int:
        """Features per sample of the model's data: rows (n, n_features)."""
        return self.input_layer.input_size()  # type: ignore[return-value]

    def output_shapes(self) -> list[tuple[int, ...]]:
        """The shape of one sample after each layer (batch axis left out), checking that
        every layer can take what the one before gives; an InputError names the layer."""
        shape: tuple[int, ...] = (self.n_features,)
        shapes = []
        producer = "first"
        for index, layer in enumerate(self.layers):
            try:
                new = layer.output_shape(shape)
            except InputError as exc:
                if isinstance(layer, Dense) and len(shape) == 1:
                    raise InputError(
                        f"layer {index} ({layer!r}) expects {layer.n_inputs} inputs but the "
                        f"previous {producer} layer gives {shape[0]}; make them equal"
                    ) from None
                raise InputError(f"layer {index}: {exc}") from None
            if not isinstance(layer, Activation | Dropout):
                producer = type(layer).__name__
            shapes.append(tuple(new))
            shape = tuple(new)
        return shapes

    def build(self, backend: str | Backend | None = None) -> Sequential:
        """Allocate every layer's parameters on the backend from the model's generator."""
        if not self.layers:
            raise InputError("the model has no layers; add some with model.add(...)")
        chosen = get_backend(backend if backend is not None else self._backend_choice)
        self.rng = numpy.random.default_rng(self.seed)
        self.output_shapes()  # every layer takes what the one before gives
        for layer in self.layers:
            layer.build(chosen, self.dtype, self.rng)
        self._backend = chosen
        self._plan()
        self._pack_parameters()
        self.__dict__.pop("_step_plans", None)  # made for the old parameters
        self.__dict__.pop("_fit_targets", None)
        return self

    def _pack_parameters(self) -> None:
        """Lay the parameters out in flat buffers, for one-call optimizer steps."""
        pack = ParameterPack.pack(self.trainable_layers)
        for layer in self.trainable_layers:
            layer.parameter_pack = pack

    def _plan(self) -> None:
        """Decide which layers run as separate steps and which are fused into the Dense or
        Conv2D layer before them."""
        layers = self.layers
        last = layers[-1]
        self.fused_softmax_loss = isinstance(last, Softmax) and isinstance(
            self.loss, CategoricalCrossentropy
        )
        body = layers[:-1] if self.fused_softmax_loss else layers
        self.steps: list[Layer] = []
        for index, layer in enumerate(body):
            if hasattr(layer, "fusable_activations"):
                layer.fused_activation, layer.fused_alpha = "linear", 0.01
            if isinstance(layer, Activation) and self.steps and index > 0:
                before = body[index - 1]
                fusable = getattr(before, "fusable_activations", ())
                if layer.kind in fusable and before.fused_activation == "linear":
                    before.fused_activation, before.fused_alpha = layer.kind, layer.alpha
                    continue
            self.steps.append(layer)
        self.trainable_layers = [layer for layer in layers if layer.trainable]

    @property
    def output_activation(self) -> str | None:
        for layer in reversed(self.layers):
            if isinstance(layer, Activation):
                return layer.kind
            if layer.trainable or layer.input_size() is not None:
                return "linear"
        return None

    @property
    def n_outputs(self) -> int:
        shape = self.output_shapes()[-1]
        if len(shape) != 1:
            raise InputError(
                f"the model's outputs are samples of shape {shape}, not rows; end it with "
                "Flatten() and a Dense layer"
            )
        return shape[0]

    def inference_batch(self, largest: int = 8192) -> int:
        """The default batch of ``predict`` and ``evaluate``: ``largest`` rows, fewer for a
        model with convolutions, whose im2col matrices take ``c_in * kh * kw * oh * ow``
        numbers per sample; those are kept to about 2**24 numbers (64 MB in float32)."""
        per_sample, shape = 0, (self.n_features,)
        for layer in self.layers:
            out = layer.output_shape(shape)
            if hasattr(layer, "kernel_size"):
                kh, kw = layer.kernel_size
                per_sample = max(per_sample, shape[0] * kh * kw * out[1] * out[2])
            shape = out
        if per_sample == 0:
            return largest
        return max(1, min(largest, (1 << 24) // per_sample))

    def _require(self, what: str) -> None:
        if self.loss is None:
            raise InputError(f"{what}: the model has no loss; pass loss=... or call compile()")
        if what == "fit" and self.optimizer is None:
            raise InputError("fit: the model has no optimizer; pass optimizer=... or compile()")
        self.loss.check_output(self.n_outputs, self.output_activation)

    # ------------------------------------------------------------------------------------
    # Forward and backward
    # ------------------------------------------------------------------------------------
    def forward(self, x: Array, training: bool = False) -> Array:
        """Run the layers on a backend batch (n, n_features); logits if the loss is fused."""
        for layer in self.steps:
            x = layer.forward(x, training=training)
        return x

    def backward(self, grad: Array) -> None:
        """Back-propagate ``grad`` (the loss gradient of the forward output) to every layer
        with parameters.

        The input gradient (``dinputs``) of the first layer with parameters and of the
        shape-only layers before it (``Reshape``) is not computed: nothing trains from it,
        and for a first ``Conv2D`` it would be a col2im pass as costly as its weight
        gradient. A ``Conv2D`` followed by ``MaxPool2D`` runs its backward pass with the
        pooling's in one backend call (``conv2d_maxpool_backward``; the same gradients),
        leaving the pooling's ``dinputs`` None."""
        steps = self.steps
        first = next((k for k, layer in enumerate(steps) if layer.trainable), len(steps))
        index = len(steps) - 1
        while index >= 0:
            layer = steps[index]
            below = steps[index - 1] if index > 0 else None
            if isinstance(layer, MaxPool2D) and isinstance(below, Conv2D) and index > first:
                # One backend call for both (conv2d_maxpool_backward), which need not form
                # the pooling's input gradient: the pooling's dinputs stays None.
                index -= 1
                need = index > first
                grad = below.backward_through_pool(layer, grad, need_dinputs=need)
            else:
                need = index > first
                grad = layer.backward(grad, need_dinputs=need, overwrite=True)
            if not need:
                break
            index -= 1

    def loss_and_gradient(
        self, output: Array, y: Array, with_grad: bool = True
    ) -> tuple[Array, Array | None]:
        """Data loss (0-d) and its gradient for a forward output and backend targets."""
        if self.fused_softmax_loss:
            return self.backend.softmax_crossentropy(output, y, with_grad=with_grad)
        return self.loss.compute(self.backend, output, y, with_grad=with_grad)  # type: ignore[union-attr]

    def regularization_loss(self) -> float:
        """The L1/L2 penalty of every layer, as a float."""
        total = Loss.regularization_loss(self.layers)
        return total if type(total) is float else self.backend.to_float(total)

    # ------------------------------------------------------------------------------------
    # Training, evaluation, prediction (the loops themselves live in nnback.training)
    # ------------------------------------------------------------------------------------
    def fit(
        self,
        X: Any,
        y: Any,
        epochs: int = 1,
        batch_size: int = 32,
        shuffle: bool = True,
        validation_data: tuple[Any, Any] | None = None,
        validation_split: float = 0.0,
        callbacks: list[Callback] | None = None,
        verbose: int | str = "auto",
        clip_norm: float | None = None,
        capture: bool | None = None,
        distributed: Any = False,
    ) -> History:
        """Train for ``epochs`` passes over ``X`` (n, n_features) and targets ``y``.

        ``y`` is (n,) class indices or (n, k) one-hot rows for categorical cross-entropy,
        and (n,) or (n, k) values for the other losses. ``validation_split`` holds out the
        last fraction of the samples (before shuffling). ``verbose``: 0 silent, 1 progress
        bar and a line per epoch, 2 a line per epoch, ``"auto"`` 1 on a terminal, else 0.
        ``clip_norm`` rescales the whole gradient when its L2 norm exceeds it.
        ``capture``: on the cupy backend each full-size step is replayed from a captured
        CUDA graph (the same kernels, bit for bit, with the host reading back every 64
        steps); ``False`` runs eager steps, ``None`` follows ``NNBACK_CAPTURE`` (default
        on). ``history.step_mode`` says which ran, and why eager steps ran.
        ``distributed``: ``True`` (MPI's COMM_WORLD) or a :class:`~nnback.Distributed`
        trains data-parallel over MPI ranks, ``batch_size`` being the global batch; then
        ``evaluate``, ``predict`` and ``save`` of the model are collective
        (``docs/distributed.md``).
        Returns the :class:`~nnback.callbacks.History` (also kept as ``model.history``).
        """
        return training.fit(
            self,
            X,
            y,
            epochs=epochs,
            batch_size=batch_size,
            shuffle=shuffle,
            validation_data=validation_data,
            validation_split=validation_split,
            callbacks=callbacks,
            verbose=verbose,
            clip_norm=clip_norm,
            capture=capture,
            distributed=distributed,
        )

    def evaluate(
        self, X: Any, y: Any, batch_size: int | None = None, distributed: Any = None
    ) -> dict[str, float]:
        """``{"loss", "data_loss", "regularization_loss", "accuracy"}`` on ``X``, ``y``.

        ``distributed``: None follows the last ``fit`` (collective over its MPI ranks, each
        scoring a share, when it was distributed); False scores on this process alone.
        """
        return training.evaluate(self, X, y, batch_size=batch_size, distributed=distributed)

    def predict(
        self,
        X: Any,
        batch_size: int | None = None,
        to_numpy: bool = True,
        distributed: Any = None,
    ) -> Any:
        """The output layer's values for ``X`` (n, n_features), e.g. class probabilities.

        Returns a NumPy array, or a backend array with ``to_numpy=False``. ``distributed``
        as in :meth:`evaluate` (each rank runs a share; every rank gets all the rows).
        """
        if not self.built:
            self.build()
        X = check_X("X", X, self.dtype, self.backend)
        check_features("X", X.shape[1], self.n_features, self.input_layer)
        n = X.shape[0]
        size = (
            check_positive_int("batch_size", batch_size)
            if batch_size is not None
            else self.inference_batch()
        )
        backend = self.backend
        group = distributed_group(self, distributed)
        if group is not None:
            return group.predict(self, X, size, to_numpy)
        result = None
        with backend.compute_scope(self.layers):
            for start in range(0, n, size):
                out = self.forward(backend.asarray(X[start : start + size]), training=False)
                if self.fused_softmax_loss:
                    out = backend.softmax(out)
                if result is None:
                    result = backend.empty((n, out.shape[1]), self.dtype)
                result[start : start + out.shape[0]] = out
        return backend.to_numpy(result) if to_numpy else result

    def predict_classes(self, X: Any, batch_size: int | None = None) -> numpy.ndarray:
        """Predicted class indices (argmax, or ``> 0.5`` for one sigmoid output), on the host."""
        probabilities = self.predict(X, batch_size=batch_size)
        if probabilities.shape[1] == 1:
            return (probabilities[:, 0] > 0.5).astype(numpy.int64)
        return numpy.argmax(probabilities, axis=1)

    # ------------------------------------------------------------------------------------
    # Weights, backends, files
    # ------------------------------------------------------------------------------------
    def get_weights(self) -> list[numpy.ndarray]:
        """Host copies of every parameter, layer by layer (weights, then biases)."""
        backend = self.backend
        return [
            numpy.array(backend.to_numpy(value), copy=True)
            for layer in self.layers
            for _, value, _, _, _ in layer.parameters()
        ]

    def set_weights(self, weights: list[Any]) -> None:
        """Copy values (host or backend arrays, in :meth:`get_weights` order) into the model."""
        params = [value for layer in self.layers for _, value, _, _, _ in layer.parameters()]
        if len(weights) != len(params):
            raise InputError(f"set_weights: expected {len(params)} arrays, got {len(weights)}")
        backend = self.backend
        for index, (target, source) in enumerate(zip(params, weights, strict=True)):
            if tuple(source.shape) != tuple(target.shape):
                raise InputError(
                    f"set_weights: array {index} has shape {tuple(source.shape)}, "
                    f"expected {tuple(target.shape)}"
                )
            backend.copy_into_inplace(target, backend.asarray(source, dtype=target.dtype))

    def to_backend(self, backend: str | Backend) -> Sequential:
        """Move parameters and optimizer state to another backend (in place; returns self)."""
        new = get_backend(backend)
        if not self.built:
            self._backend_choice = new
            return self
        old = self.backend
        for layer in self.layers:
            if layer.trainable:
                for name, value, _, _, _ in layer.parameters():
                    setattr(layer, name, new.asarray(old.to_numpy(value)))
                    setattr(layer, "d" + name, None)
                if hasattr(layer, "_workspaces"):
                    layer._workspaces = {}
                layer.optimizer_state = {
                    name: {slot: new.asarray(old.to_numpy(a)) for slot, a in slots.items()}
                    for name, slots in layer.optimizer_state.items()
                }
            layer.backend = new
        self._backend = new
        self._backend_choice = new
        self._pack_parameters()
        return self

    def __getstate__(self) -> dict[str, Any]:
        # Captured steps (CUDA graphs over device buffers) and the data they were made for
        # belong to this object on this device: a copy or a pickle makes its own.
        state = dict(self.__dict__)
        state.pop("_step_plans", None)
        state.pop("_fit_targets", None)
        return state

    def save(self, path: str | os.PathLike[str]) -> None:
        """Save architecture, weights, optimizer state, dtype and seed in one file, atomically."""
        from .serialization import save_model

        save_model(self, path)

    def get_config(self) -> dict[str, Any]:
        return {
            "layers": [layer.get_config() for layer in self.layers],
            "loss": self.loss.get_config() if self.loss else None,
            "optimizer": self.optimizer.get_config() if self.optimizer else None,
            "metric": self.metric.get_config(),
            "seed": self.seed,
            "dtype": str(self.dtype),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Sequential:
        return cls(
            [layer_from_config(c) for c in config["layers"]],
            loss=config["loss"] and get_loss(config["loss"]),
            optimizer=config["optimizer"] and get_optimizer(config["optimizer"]),
            metric=get_metric(config["metric"]),
            seed=config["seed"],
            dtype=config["dtype"],
        )

    def summary(self) -> str:
        """A table of the layers, the shape of one output sample and the parameter counts.

        A layer that cannot take what the one before gives raises the InputError that
        ``build`` would.
        """
        shapes = self.output_shapes()
        width = max(28, *(len(repr(layer)) + 2 for layer in self.layers))
        lines = [f"{'layer':<{width}}{'output shape':>16}{'parameters':>14}"]
        total = 0
        for layer, shape in zip(self.layers, shapes, strict=True):
            count = layer.parameter_count()
            total += count
            shown = str(shape[0]) if len(shape) == 1 else str(shape)
            lines.append(f"{layer!r:<{width}}{shown:>16}{count:>14,}")
        lines.append(f"{'total':<{width}}{'':>16}{total:>14,}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        inner = ", ".join(repr(layer) for layer in self.layers)
        return f"Sequential([{inner}], loss={self.loss!r}, optimizer={self.optimizer!r})"
