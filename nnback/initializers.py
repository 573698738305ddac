"""Weight and bias initializers, drawn on the host from a seeded ``numpy.random.Generator``.

Drawing on the host (then moving to the backend) is what makes the same seed give the same
model on every backend: the numbers never depend on a device's random number generator.
"""

from __future__ import annotations

import math
from typing import Any

import numpy

from .errors import InputError

__all__ = [
    "Constant",
    "Gaussian",
    "GlorotUniform",
    "He",
    "Initializer",
    "Xavier",
    "Zeros",
    "fans",
    "get_initializer",
]


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a parameter of this shape.

    * 2-D ``(n_inputs, n_outputs)``: a Dense layer's weights (or a (1, n) bias);
    * 4-D ``(c_out, c_in, kh, kw)``: a Conv2D layer's weights, each output seeing
      ``c_in * kh * kw`` inputs and each input reaching ``c_out * kh * kw`` outputs;
    * 1-D ``(n,)``: ``(n, n)``.
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) == 2:
        return shape[0], shape[1]
    if len(shape) == 4:
        window = shape[2] * shape[3]
        return shape[1] * window, shape[0] * window
    if len(shape) == 1:
        return shape[0], shape[0]
    raise InputError(
        f"initializers take 1-D, 2-D (n_inputs, n_outputs) or 4-D (c_out, c_in, kh, kw) "
        f"shapes, got {shape}"
    )


class Initializer:
    """Base class: ``init(shape, rng, dtype)`` returns a host array of that shape.

    Shapes are 2-D ``(n_inputs, n_outputs)`` for Dense layers and 4-D
    ``(c_out, c_in, kh, kw)`` for Conv2D layers; the scaled initializers read their fan-in
    and fan-out from :func:`fans`.
    """

    def __call__(
        self, shape: tuple[int, ...], rng: numpy.random.Generator, dtype: Any = numpy.float32
    ) -> numpy.ndarray:
        return self.sample(shape, rng).astype(dtype, copy=False)

    def sample(self, shape: tuple[int, ...], rng: numpy.random.Generator) -> numpy.ndarray:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {"name": type(self).__name__, **vars(self)}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Zeros(Initializer):
    """All zeros (the textbooks' bias initializer)."""

    def sample(self, shape: tuple[int, ...], rng: numpy.random.Generator) -> numpy.ndarray:
        return numpy.zeros(shape)


class Constant(Initializer):
    """Every value equal to ``value``."""

    def __init__(self, value: float = 0.0) -> None:
        self.value = float(value)

    def sample(self, shape: tuple[int, ...], rng: numpy.random.Generator) -> numpy.ndarray:
        return numpy.full(shape, self.value)


class Gaussian(Initializer):
    """Normal with mean 0 and standard deviation ``sigma`` (the textbooks' "simple" one).

    The NNFS book uses ``0.01 * randn``, i.e. ``Gaussian(0.01)``, the default.
    """

    def __init__(self, sigma: float = 0.01) -> None:
        if not sigma > 0:
            raise InputError(f"Gaussian(sigma): expected sigma > 0, got {sigma!r}")
        self.sigma = float(sigma)

    def sample(self, shape: tuple[int, ...], rng: numpy.random.Generator) -> numpy.ndarray:
        return rng.standard_normal(shape) * self.sigma


class Xavier(Initializer):
    """Normal with standard deviation ``1 / sqrt(fan_in)`` (suits sigmoid and tanh)."""

    def sample(self, shape: tuple[int, ...], rng: numpy.random.Generator) -> numpy.ndarray:
        return rng.standard_normal(shape) / math.sqrt(fans(shape)[0])


class He(Initializer):
    """Normal with standard deviation ``sqrt(2 / fan_in)`` (suits ReLU)."""

    def sample(self, shape: tuple[int, ...], rng: numpy.random.Generator) -> numpy.ndarray:
        return rng.standard_normal(shape) * math.sqrt(2.0 / fans(shape)[0])


class GlorotUniform(Initializer):
    """Uniform on ``[-limit, limit]`` with ``limit = sqrt(6 / (fan_in + fan_out))``."""

    def sample(self, shape: tuple[int, ...], rng: numpy.random.Generator) -> numpy.ndarray:
        fan_in, fan_out = fans(shape)
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, shape)


_BY_NAME: dict[str, type[Initializer]] = {
    "zeros": Zeros,
    "constant": Constant,
    "gaussian": Gaussian,
    "simple": Gaussian,
    "xavier": Xavier,
    "he": He,
    "glorot_uniform": GlorotUniform,
}


def get_initializer(spec: str | Initializer | dict[str, Any]) -> Initializer:
    """Return an initializer from an instance, a name (``"he"``) or a saved config dict."""
    if isinstance(spec, Initializer):
        return spec
    if isinstance(spec, dict):
        config = dict(spec)
        cls_name = config.pop("name")
        classes = {cls.__name__: cls for cls in _BY_NAME.values()}
        if cls_name not in classes:
            raise InputError(f"unknown initializer {cls_name!r}")
        return classes[cls_name](**config)
    if isinstance(spec, str) and spec.lower() in _BY_NAME:
        return _BY_NAME[spec.lower()]()
    raise InputError(
        f"unknown initializer {spec!r}; expected an Initializer or one of {sorted(_BY_NAME)}"
    )
