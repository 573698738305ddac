"""Checks ``nnback train`` makes on its options before it loads data or trains.

A mistake in an option must cost the user one line and no waiting: every check here runs
before the dataset is loaded, and raises :class:`~nnback.errors.NNBackError` with the
flag, what was expected, what was given and what to do, which the command line prints as
``nnback: error: ...`` with exit status 2.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile

import numpy

from .errors import NNBackError

# Input features and classes of each dataset ``nnback train`` offers, known before loading.
DATASET_SHAPES = {"sample": (784, 10), "mnist": (784, 10), "fashion-mnist": (784, 10)}
DATASET_SHAPES["spiral"] = (2, 3)

# Copies of the parameters training holds at once: the weights, their gradients, Adam's two
# moment slots and the start-of-epoch copy fit keeps to undo an epoch that overflows.
_PARAMETER_COPIES = 5


def hidden_sizes(text: str) -> list[int]:
    """``"256,128"`` -> ``[256, 128]``, or raise naming ``--hidden``."""
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise NNBackError(f"--hidden: expected comma-separated layer sizes, got {text!r}") from None
    if any(size < 1 for size in sizes):
        raise NNBackError(f"--hidden: layer sizes must be positive, got {text!r}")
    return sizes


def _gigabytes(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:,.1f} GB" if n_bytes < 1e12 else f"{n_bytes / 1e12:,.1f} TB"


def physical_memory() -> int | None:
    """The machine's memory in bytes, or None where the system does not say."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def check_network_size(
    n_features: int, hidden: list[int], n_classes: int, batch_size: int, dtype: str
) -> None:
    """Raise when the network could not be trained in this machine's memory at all."""
    widths = [n_features, *hidden, n_classes]
    parameters = sum((a + 1) * b for a, b in zip(widths, widths[1:], strict=False))
    itemsize = numpy.dtype(dtype).itemsize
    # Parameters and their training state, plus the activations and gradients of a batch.
    needed = itemsize * (_PARAMETER_COPIES * parameters + 4 * batch_size * sum(widths))
    memory = physical_memory()
    if memory is not None and needed > memory:
        shape = "-".join(str(width) for width in widths)
        raise NNBackError(
            f"--hidden: a {shape} network needs about {_gigabytes(needed)} of memory to "
            f"train, more than this machine's {_gigabytes(memory)}; use smaller layers"
        )


def check_seed(seed: int) -> None:
    if seed < 0:
        raise NNBackError(f"--seed: expected a whole number >= 0, got {seed}")


def check_rate(flag: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise NNBackError(f"{flag}: expected a number in [0.0, 1.0), got {value}")


def check_learning_rate(value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise NNBackError(f"--lr: expected a finite number > 0, got {value}")


def _probe_writable(flag: str, directory: str) -> None:
    """Create and remove a file in ``directory``: the only sure test (root ignores modes)."""
    try:
        with tempfile.TemporaryFile(dir=directory, prefix=".nnback-probe-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise NNBackError(
            f"{flag}: cannot write in {directory} ({reason}); choose a directory you can write to"
        ) from None


def check_save_destination(path: str) -> None:
    """Fail before training when ``--save PATH`` could not be written after it."""
    if os.path.isdir(path):
        raise NNBackError(
            f"--save: {path} is a directory; pass a file path such as "
            f"{os.path.join(path, 'model.npz')}"
        )
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.exists(directory):
        raise NNBackError(
            f"--save: the directory {directory} does not exist; create it first "
            f"(mkdir -p {directory})"
        )
    if not os.path.isdir(directory):
        raise NNBackError(f"--save: {directory} is a file, not a directory; fix the path")
    _probe_writable("--save", directory)


def check_plot_destination(directory: str) -> None:
    """Fail before training when ``--plot DIR`` could not be written: no matplotlib, or a
    directory that cannot be made or written."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
    except ImportError as exc:
        raise NNBackError(
            f"--plot: the plots need matplotlib, which cannot be imported here ({exc}); "
            "pip install 'nnback[plot]', or leave out --plot"
        ) from None
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise NNBackError(f"--plot: {directory} is a file; pass a directory for the PNG files")
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise NNBackError(
            f"--plot: cannot create the directory {directory} ({exc.strerror})"
        ) from None
    _probe_writable("--plot", directory)


def partial_name(path: str) -> str:
    """Where an interrupted run keeps its model: ``m.npz`` -> ``m.partial.npz``."""
    stem, extension = os.path.splitext(path)
    return f"{stem}.partial{extension or '.npz'}"


#: ``nnback train`` options that shape an MLP, with their defaults: ``--model cnn`` refuses
#: them when given (its architecture is fixed, :func:`nnback.zoo.build_cnn`).
MLP_ONLY_DEFAULTS = {"hidden": "256,128", "activation": "relu"}
#: The CNN's options and defaults (refused with ``--model mlp``).
CNN_ONLY_DEFAULTS = {"dropout": 0.0}
#: Datasets of 28 x 28 images, the only ones the CNN takes.
IMAGE_DATASETS = ("sample", "mnist", "fashion-mnist")


def check_model_options(args: argparse.Namespace) -> None:
    """Refuse the options that do not apply to ``--model`` (given explicitly), then fill in
    the defaults of those that do. One line each, before anything is loaded."""
    model = getattr(args, "model", "mlp")
    refused, kept = (
        (MLP_ONLY_DEFAULTS, CNN_ONLY_DEFAULTS)
        if model == "cnn"
        else (CNN_ONLY_DEFAULTS, MLP_ONLY_DEFAULTS)
    )
    for option in refused:
        if getattr(args, option, None) is not None:
            flag = "--" + option.replace("_", "-")
            what = (
                "the CNN's layers are fixed (nnback.zoo.build_cnn)"
                if model == "cnn"
                else "it is an option of --model cnn"
            )
            raise NNBackError(f"{flag} does not apply to --model {model}: {what}; leave it out")
    for option, default in kept.items():
        if getattr(args, option, None) is None:
            setattr(args, option, default)
    if model == "cnn" and args.dataset not in IMAGE_DATASETS:
        raise NNBackError(
            f"--dataset {args.dataset}: --model cnn takes 28x28 images; use one of "
            f"{', '.join(IMAGE_DATASETS)}"
        )
    if model == "cnn":
        check_rate("--dropout", args.dropout)


def check_train_options(args: argparse.Namespace) -> list[int]:
    """Every check ``nnback train`` can make before loading data; returns the hidden sizes
    (empty for ``--model cnn``)."""
    check_model_options(args)
    hidden = hidden_sizes(args.hidden) if args.model == "mlp" else []
    for option in ("epochs", "batch_size"):
        value = getattr(args, option)
        if value < 1:
            flag = "--" + option.replace("_", "-")
            raise NNBackError(f"{flag}: expected a positive integer, got {value}")
    check_seed(args.seed)
    check_learning_rate(args.lr)
    check_rate("--validation-split", args.validation_split)
    if args.model == "mlp":
        n_features, n_classes = DATASET_SHAPES[args.dataset]
        check_network_size(n_features, hidden, n_classes, args.batch_size, args.dtype)
    if args.save:
        check_save_destination(args.save)
    if args.plot:
        check_plot_destination(args.plot)
    return hidden
