"""Consistency checks of a model file's header and arrays, done before a model is built.

The SHA-256 in the header is a checksum, not a signature: anyone can edit a file and
recompute it. So a file whose checksum matches is still checked for being a model this
nnback can run: a known format version, a known metric, an optimizer iteration count and
a random-generator state in range, and arrays of floating-point numbers whose shapes are
exactly those of the declared layers (optimizer slots included; a Conv2D's weights are
(c_out, c_in, kh, kw)) and whose values fit the model's dtype. The declared layers must fit
together: each takes the per-sample shape the one before it gives. Each problem is a
:class:`~nnback.errors.ModelFileError` naming it.
"""

from __future__ import annotations

import re
from typing import Any

import numpy

from .conv_layers import Conv2D, Reshape
from .errors import InputError, ModelFileError
from .layers import Dense

__all__ = ["MAX_HEADER_BYTES", "MAX_ITERATIONS", "check_header", "convert_array", "expected_arrays"]

#: The largest JSON header accepted (a 1,000-layer model needs about 300 KB).
MAX_HEADER_BYTES = 4 << 20
#: Iteration counts above this cannot come from training (and overflow the step sizes).
MAX_ITERATIONS = 2**53
_METRICS = ("Accuracy", "BinaryAccuracy", "RegressionAccuracy")
_CHECKSUM = re.compile(r"^[0-9a-f]{64}$")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_or_none(value: Any) -> bool:
    if value is None:
        return True
    real = isinstance(value, int | float) and not isinstance(value, bool)
    return real and 0 < value < float("inf")


def check_header(path: str, header: Any, format_name: str, format_version: int) -> None:
    """Check the header's own fields and the parts of the config no constructor checks."""
    if not isinstance(header, dict):
        raise ModelFileError(f"{path}: malformed nnback header (expected a JSON object)")
    if header.get("format") != format_name:
        raise ModelFileError(f"{path}: not an nnback model file (format {header.get('format')!r})")
    version = header.get("version")
    if _is_int(version) and version > format_version:
        raise ModelFileError(
            f"{path}: format version {version!r} is newer than this nnback reads "
            f"({format_version}); upgrade nnback"
        )
    if not _is_int(version) or version < 1:
        raise ModelFileError(
            f"{path}: format version {version!r} is not valid (expected a whole number from 1 "
            f"to {format_version}); the file is corrupted"
        )
    checksum = header.get("checksum")
    if not isinstance(checksum, str) or not _CHECKSUM.match(checksum):
        raise ModelFileError(f"{path}: the header's checksum is missing or malformed")
    config = header.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise ModelFileError(f"{path}: the header does not describe a valid model (no config)")
    _check_metric(path, config.get("metric"))
    _check_optimizer(path, config.get("optimizer"))


def _check_metric(path: str, metric: Any) -> None:
    name = metric.get("class") if isinstance(metric, dict) else metric
    if name not in _METRICS:
        raise ModelFileError(
            f"{path}: unknown metric {name!r} in the header (known: {', '.join(_METRICS)}); "
            "the file was edited or written by another program"
        )
    if name == "RegressionAccuracy":
        for key in ("precision", "divisor"):
            if not _positive_or_none(metric.get(key)) or (key == "divisor" and key not in metric):
                raise ModelFileError(
                    f"{path}: metric RegressionAccuracy has {key}={metric.get(key)!r}; "
                    "expected a finite number > 0"
                )


def _check_optimizer(path: str, optimizer: Any) -> None:
    if optimizer is None:
        return
    if not isinstance(optimizer, dict):
        raise ModelFileError(f"{path}: the header's optimizer is not a JSON object")
    iterations = optimizer.get("iterations", 0)
    if not _is_int(iterations) or not 0 <= iterations <= MAX_ITERATIONS:
        shown = repr(iterations)
        if _is_int(iterations) and abs(iterations) >= 10**20:
            shown = f"a {len(str(abs(iterations)))}-digit number"
        raise ModelFileError(
            f"{path}: optimizer iterations = {shown}; expected a whole number from 0 to "
            "2**53 (the number of steps trained)"
        )


def _short(value: Any) -> str:
    text = repr(sorted(value) if isinstance(value, dict) else value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_rng_state(path: str, state: Any, rng: numpy.random.Generator) -> None:
    """Set ``state`` on ``rng`` if it has the shape and ranges of its bit generator's state."""
    template = rng.bit_generator.state

    def same_shape(got: Any, want: Any, where: str) -> None:
        if isinstance(want, dict):
            if not isinstance(got, dict) or set(got) != set(want):
                raise ModelFileError(
                    f"{path}: rng_state{where} is {_short(got)}, expected an object with "
                    f"keys {sorted(want)}"
                )
            for key in want:
                same_shape(got[key], want[key], f"{where}[{key!r}]")
        elif _is_int(want):
            bits = 1 if where.endswith("['has_uint32']") else 128
            bits = 32 if where.endswith("['uinteger']") else bits
            if not _is_int(got) or not 0 <= got < 2**bits:
                raise ModelFileError(
                    f"{path}: rng_state{where} is out of range: expected a whole number in "
                    f"[0, 2**{bits})"
                )
        elif got != want:
            raise ModelFileError(f"{path}: rng_state{where} is {_short(got)}, expected {want!r}")

    same_shape(state, template, "")
    try:
        rng.bit_generator.state = state
    except (ValueError, TypeError, OverflowError, KeyError) as exc:
        raise ModelFileError(f"{path}: invalid rng_state ({type(exc).__name__}: {exc})") from None


def expected_arrays(
    path: str, model: Any
) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[str, ...]]]:
    """The arrays an unbuilt model needs, ``name -> shape``, and the optimizer slots each
    parameter may carry (all of them or none), ``name -> slot names``."""
    optimizer = getattr(model, "optimizer", None)
    slots = tuple(getattr(optimizer, "slots", ())) if optimizer is not None else ()
    shapes: dict[str, tuple[int, ...]] = {}
    parameter_slots: dict[str, tuple[str, ...]] = {}
    layers = list(model.layers)
    if any(layer.trainable or isinstance(layer, Reshape) for layer in layers):
        try:
            model.output_shapes()  # each layer takes what the one before it gives
        except InputError as exc:
            raise ModelFileError(
                f"{path}: the header does not describe a valid model: {exc}"
            ) from None
    for index, layer in enumerate(layers):
        if isinstance(layer, Dense):
            params = {
                "weights": (layer.n_inputs, layer.n_neurons),
                "biases": (1, layer.n_neurons),
            }
        elif isinstance(layer, Conv2D):
            params = {"weights": layer.weight_shape, "biases": (1, layer.out_channels)}
        elif getattr(layer, "trainable", False):
            raise ModelFileError(f"{path}: layer {index} ({type(layer).__name__}) cannot be loaded")
        else:
            continue
        for name, shape in params.items():
            key = f"layer{index}/{name}"
            shapes[key] = shape
            parameter_slots[key] = slots
            for slot in slots:
                shapes[f"{key}/{slot}"] = shape
    return shapes, parameter_slots


def check_dtype(path: str, name: str, dtype: numpy.dtype) -> None:
    """Parameters and optimizer slots are floating-point numbers of at most 8 bytes."""
    if dtype.kind != "f" or dtype.itemsize > 8 or dtype.hasobject:
        raise ModelFileError(
            f"{path}: array {name!r} holds {dtype} ({dtype.kind!r} kind); expected "
            "floating-point numbers (float16, float32 or float64)"
        )


def convert_array(path: str, name: str, array: numpy.ndarray, dtype: numpy.dtype) -> numpy.ndarray:
    """``array`` in the model's dtype; refuse finite values that overflow it."""
    with numpy.errstate(over="ignore"):
        converted = array.astype(dtype, copy=False)
    if converted is array:
        return array
    was = numpy.count_nonzero(~numpy.isfinite(array))
    now = numpy.count_nonzero(~numpy.isfinite(converted))
    if now != was:
        largest = float(numpy.max(numpy.abs(array[numpy.isfinite(array)])))
        raise ModelFileError(
            f"{path}: array {name!r} holds values up to {largest:.3g}, which overflow the "
            f"model's {dtype} (largest {numpy.finfo(dtype).max:.3g}); the file is inconsistent"
        )
    return converted


def check_members(
    path: str,
    present: dict[str, Any],
    shapes: dict[str, tuple[int, ...]],
    parameter_slots: dict[str, tuple[str, ...]],
) -> None:
    """Every member is one the declared model needs; parameters all present; slots all
    present or all absent for each parameter."""
    unknown = sorted(set(present) - set(shapes))
    if unknown:
        raise ModelFileError(
            f"{path}: unexpected array {unknown[0]!r} (not part of the declared model"
            f"{'; and ' + str(len(unknown) - 1) + ' more' if len(unknown) > 1 else ''})"
        )
    for key, slots in parameter_slots.items():
        if key not in present:
            raise ModelFileError(f"{path}: missing or misshapen array {key!r}")
        have = [slot for slot in slots if f"{key}/{slot}" in present]
        if have and len(have) != len(slots):
            missing = [slot for slot in slots if slot not in have]
            raise ModelFileError(
                f"{path}: optimizer state of {key!r} lacks slot(s) {missing}; the file is "
                "inconsistent"
            )
