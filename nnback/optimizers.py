"""Optimizers: SGD (with momentum), AdaGrad, RMSprop and Adam, each one in-place backend step
per parameter with the layer's L1/L2 penalty folded into the gradient.

The textbooks' protocol is kept: ``pre_update_params()`` sets ``current_learning_rate``
(``learning_rate / (1 + decay * iterations)``), ``update_params(layer)`` updates one layer,
``post_update_params()`` counts the iteration. :meth:`Optimizer.step` does all three.

The per-parameter state (momentums, caches) lives on the layer, in
``layer.optimizer_state[parameter_name]``, so it is saved and moved with the layer.
"""

from __future__ import annotations

from typing import Any

from .backends.base import adam_scalars
from .errors import InputError
from .parameter_pack import FlatState, ParameterPack
from .validation import check_nonnegative_float, check_positive_float, check_rate

__all__ = ["SGD", "AdaGrad", "Adam", "Optimizer", "RMSprop", "get_optimizer"]

Array = Any


class Optimizer:
    """Base class.

    Parameters
    ----------
    learning_rate : float
        Initial step size, > 0.
    decay : float
        Learning-rate decay: ``lr_t = learning_rate / (1 + decay * t)``.
    """

    #: Names of the state arrays this optimizer keeps per parameter.
    slots: tuple[str, ...] = ()

    def __init__(self, learning_rate: float, decay: float = 0.0) -> None:
        name = type(self).__name__
        self.learning_rate = check_positive_float(f"{name}(learning_rate)", learning_rate)
        self.decay = check_nonnegative_float(f"{name}(decay)", decay)
        self.current_learning_rate = self.learning_rate
        self.iterations = 0
        self._flat_state: FlatState | None = None

    def pre_update_params(self) -> None:
        """Set ``current_learning_rate`` for this iteration."""
        if self.decay:
            self.current_learning_rate = self.learning_rate / (1.0 + self.decay * self.iterations)

    def post_update_params(self) -> None:
        self.iterations += 1

    def update_params(self, layer: Any) -> None:
        """Update every trainable parameter of ``layer`` from its gradient."""
        backend = layer.backend
        for name, value, grad, l1, l2 in layer.parameters():
            if grad is None:
                raise InputError(
                    f"{type(layer).__name__}.{name} has no gradient; call backward() before "
                    "updating"
                )
            state = layer.optimizer_state.get(name)
            if state is None:
                state = {slot: backend.zeros_like(value) for slot in self.slots}
                layer.optimizer_state[name] = state
            self._apply(backend, value, grad, state, l1, l2)

    def _apply(
        self, backend: Any, param: Array, grad: Array, state: dict[str, Array], l1: float, l2: float
    ) -> None:
        raise NotImplementedError

    def step(self, layers: list[Any]) -> None:
        """One optimization step over every trainable layer.

        The parameters are packed into flat buffers on the first step
        (:class:`~nnback.parameter_pack.ParameterPack`), so each step is one fused call per
        regularization group instead of one per parameter; the result is the same, bit
        for bit, as :meth:`update_params` on each layer.
        """
        self.pre_update_params()
        # A subclass with its own update_params (per-layer rules) keeps the per-layer loop.
        flat = type(self).update_params is Optimizer.update_params
        pack = _pack_of(layers) if flat else None
        runs = pack.runs(layers) if pack is not None else None
        if runs is None:
            for layer in layers:
                if layer.trainable:
                    self.update_params(layer)
        else:
            state = self.flat_state(pack)
            backend = pack.layers[0].backend
            for run in runs:
                param, grad = pack.param[run.start : run.stop], pack.grad[run.start : run.stop]
                self._apply(backend, param, grad, state.slices(run), run.l1, run.l2)
        self.post_update_params()

    def flat_state(self, pack: ParameterPack) -> FlatState:
        """The optimizer's state in flat buffers laid out like ``pack``, in step with the
        layers' ``optimizer_state`` (a replaced slot is copied in)."""
        state = getattr(self, "_flat_state", None)
        if state is None or state.pack is not pack:
            state = self._flat_state = FlatState(pack, self.slots)
        state.sync()
        return state

    def _step_scalars(self, learning_rate: float, iteration: int) -> tuple[float, ...]:
        """What a step's update reads that changes from step to step: the learning rate."""
        return (learning_rate,)

    def schedule(self, steps: int) -> tuple[list[tuple[float, ...]], float]:
        """The per-step scalars of the next ``steps`` steps, computed exactly as
        :meth:`step` computes them, and the learning rate after them (for a planned step,
        which reads them from a table on the device; nothing here changes the optimizer)."""
        rows = []
        rate = self.current_learning_rate
        for iteration in range(self.iterations, self.iterations + steps):
            if self.decay:
                rate = self.learning_rate / (1.0 + self.decay * iteration)
            rows.append(self._step_scalars(rate, iteration))
        return rows, rate

    def __getstate__(self) -> dict[str, Any]:
        # A copy's layers hold copies of the state views, no longer tied to the buffers.
        state = dict(self.__dict__)
        state["_flat_state"] = None
        return state

    def get_config(self) -> dict[str, Any]:
        hidden = ("current_learning_rate", "slots", "_flat_state")
        config = {k: v for k, v in vars(self).items() if k not in hidden}
        return {"class": type(self).__name__, **config}

    def __repr__(self) -> str:
        args = ", ".join(
            f"{k}={v!r}" for k, v in self.get_config().items() if k not in ("class", "iterations")
        )
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum (the textbooks' default lr 1.0)."""

    def __init__(self, learning_rate: float = 1.0, decay: float = 0.0, momentum: float = 0.0):
        super().__init__(learning_rate, decay)
        self.momentum = check_rate("SGD(momentum)", momentum)
        self.slots = ("velocity",) if self.momentum else ()

    def _apply(self, backend, param, grad, state, l1, l2):  # noqa: D102
        backend.sgd_update_inplace(
            param,
            grad,
            state.get("velocity"),
            self.current_learning_rate,
            momentum=self.momentum,
            l1=l1,
            l2=l2,
        )


class AdaGrad(Optimizer):
    """AdaGrad: per-parameter steps scaled by the root of the summed squared gradients."""

    slots = ("cache",)

    def __init__(self, learning_rate: float = 1.0, decay: float = 0.0, epsilon: float = 1e-7):
        super().__init__(learning_rate, decay)
        self.epsilon = check_positive_float("AdaGrad(epsilon)", epsilon)

    def _apply(self, backend, param, grad, state, l1, l2):  # noqa: D102
        backend.adagrad_update_inplace(
            param, grad, state["cache"], self.current_learning_rate, self.epsilon, l1=l1, l2=l2
        )


class RMSprop(Optimizer):
    """RMSprop: AdaGrad with an exponential moving average (factor ``rho``) of squares."""

    slots = ("cache",)

    def __init__(
        self,
        learning_rate: float = 0.001,
        decay: float = 0.0,
        epsilon: float = 1e-7,
        rho: float = 0.9,
    ):
        super().__init__(learning_rate, decay)
        self.epsilon = check_positive_float("RMSprop(epsilon)", epsilon)
        self.rho = check_rate("RMSprop(rho)", rho)

    def _apply(self, backend, param, grad, state, l1, l2):  # noqa: D102
        backend.rmsprop_update_inplace(
            param,
            grad,
            state["cache"],
            self.current_learning_rate,
            rho=self.rho,
            epsilon=self.epsilon,
            l1=l1,
            l2=l2,
        )


class Adam(Optimizer):
    """Adam with bias-corrected first and second moments (the book's defaults)."""

    slots = ("m", "v")

    def __init__(
        self,
        learning_rate: float = 0.001,
        decay: float = 0.0,
        epsilon: float = 1e-7,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
    ):
        super().__init__(learning_rate, decay)
        self.epsilon = check_positive_float("Adam(epsilon)", epsilon)
        self.beta_1 = check_rate("Adam(beta_1)", beta_1)
        self.beta_2 = check_rate("Adam(beta_2)", beta_2)

    def _step_scalars(self, learning_rate: float, iteration: int) -> tuple[float, ...]:
        # The step size and root correction adam_update_inplace derives from (lr, step).
        return adam_scalars(learning_rate, iteration + 1, self.beta_1, self.beta_2)

    def _apply(self, backend, param, grad, state, l1, l2):  # noqa: D102
        backend.adam_update_inplace(
            param,
            grad,
            state["m"],
            state["v"],
            self.current_learning_rate,
            self.iterations + 1,
            beta_1=self.beta_1,
            beta_2=self.beta_2,
            epsilon=self.epsilon,
            l1=l1,
            l2=l2,
        )


def _pack_of(layers: list[Any]) -> ParameterPack | None:
    """The parameter pack the layers were built with (see :meth:`Sequential.build`)."""
    for layer in layers:
        if layer.trainable:
            return getattr(layer, "parameter_pack", None)
    return None


_BY_NAME: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "adagrad": AdaGrad,
    "rmsprop": RMSprop,
    "adam": Adam,
}


def get_optimizer(spec: str | Optimizer | dict[str, Any], **kwargs: Any) -> Optimizer:
    """An optimizer from an instance, a name (``"adam"``, with keyword arguments) or a config."""
    if isinstance(spec, Optimizer):
        return spec
    if isinstance(spec, dict):
        config = dict(spec)
        cls_name = config.pop("class")
        iterations = config.pop("iterations", 0)
        config.pop("slots", None)
        optimizer = get_optimizer(cls_name, **config)
        optimizer.iterations = iterations
        if iterations:
            # The rate of the last step taken, as the optimizer showed before it was saved.
            optimizer.iterations -= 1
            optimizer.pre_update_params()
            optimizer.iterations += 1
        return optimizer
    if isinstance(spec, str) and spec.lower() in _BY_NAME:
        return _BY_NAME[spec.lower()](**kwargs)
    raise InputError(
        f"unknown optimizer {spec!r}; expected an Optimizer or one of {sorted(_BY_NAME)}"
    )
