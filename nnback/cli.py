"""The ``nnback`` command line: ``nnback info`` and ``nnback train``.

Errors a user can fix (an unknown backend, a missing dataset, a bad option) are printed as
one line, ``nnback: error: ...``, with exit status 2.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy

from . import __version__
from .cli_checks import check_train_options, partial_name
from .errors import NNBackError

THREAD_VARIABLES = (
    "NNBACK_BACKEND",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "NUMBA_THREADING_LAYER",
    "OMP_WAIT_POLICY",
)

# Extra subcommands other modules add: name -> (add_arguments, run). Kept as a registry so
# the benchmark command can live in its own module.
EXTRA_COMMANDS: dict[str, tuple[str, Callable[[Any], None], Callable[[Any], int]]] = {}


def _blas_info() -> list[str]:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return ["threadpoolctl not installed (pip install threadpoolctl for BLAS details)"]
    lines = []
    for pool in threadpool_info():
        lines.append(
            f"{pool.get('internal_api')} {pool.get('version')}: "
            f"{pool.get('num_threads')} threads ({pool.get('user_api')}, "
            f"{os.path.basename(str(pool.get('filepath')))})"
        )
    return lines or ["no thread pools found"]


def command_info(args: argparse.Namespace) -> int:
    from .backends import backend_status, get_backend
    from .step_plan import describe_step_mode

    print(f"nnback {__version__}")
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
    print(f"numpy {numpy.__version__}")
    print("backends:")
    for name, reason in backend_status().items():
        if reason is None:
            print(f"  {name}: available")
            backend = get_backend(name)
            for key, value in backend.info().items():
                print(f"      {key}: {value}")
            print(f"      training steps: {describe_step_mode(backend)}")
        else:
            print(f"  {name}: unavailable: {reason}")
    print("threads and BLAS:")
    for line in _blas_info():
        print(f"  {line}")
    for variable in THREAD_VARIABLES:
        print(f"  {variable}={os.environ.get(variable, '(unset)')}")
    return 0


def _load_dataset(name: str, data_dir: str | None, seed: int) -> tuple[Any, Any, Any, Any, str]:
    from . import datasets

    if name == "sample":
        (X, y), (X_test, y_test) = datasets.load_sample()
        return X, y, X_test, y_test, "classification"
    if name in ("mnist", "fashion-mnist"):
        loader = datasets.load_mnist if name == "mnist" else datasets.load_fashion_mnist
        (X, y), (X_test, y_test) = loader(data_dir)
        return X, y, X_test, y_test, "classification"
    X, y = datasets.spiral_data(1000, 3, seed=seed)
    X_test, y_test = datasets.spiral_data(300, 3, seed=seed + 1)
    return X, y, X_test, y_test, "classification"


def build_classifier(
    n_features: int,
    n_classes: int,
    hidden: list[int],
    activation: str,
    optimizer: str,
    learning_rate: float,
    seed: int,
    dtype: str = "float32",
    backend: Any = None,
) -> Any:
    """An MLP classifier as the command line builds it (He or Xavier initialization)."""
    from . import layers as nl
    from .losses import CategoricalCrossentropy
    from .model import Sequential
    from .optimizers import get_optimizer

    init = "he" if activation in ("relu", "leaky_relu") else "xavier"
    model = Sequential(
        loss=CategoricalCrossentropy(),
        optimizer=get_optimizer(optimizer, learning_rate=learning_rate),
        seed=seed,
        dtype=dtype,
        backend=backend,
    )
    width = n_features
    for size in hidden:
        model.add(nl.Dense(width, size, weight_initializer=init))
        model.add(nl.get_activation(activation))
        width = size
    model.add(nl.Dense(width, n_classes, weight_initializer="xavier"))
    model.add(nl.Softmax())
    return model


def command_train(args: argparse.Namespace) -> int:
    from .backends import get_backend

    backend = get_backend(args.backend)
    hidden = check_train_options(args)  # every option, before any data is loaded
    group = None
    if getattr(args, "distributed", False):
        from .distributed import Distributed

        group = Distributed()  # without mpi4py: one line saying what to install
        if backend.name == "cupy":  # one GPU per rank (NCCL needs it), before the model
            from .distributed_transport import use_local_device

            use_local_device(group, backend.xp)
    # Under mpiexec every rank runs this command; only rank 0 prints.
    say = print if group is None or group.is_root else _silent
    X, y, X_test, y_test, _ = _load_dataset(args.dataset, args.data_dir, args.seed)
    n_classes = int(max(y.max(), y_test.max())) + 1
    if args.model == "cnn":
        from .zoo import build_cnn

        model = build_cnn(
            args.optimizer,
            args.lr,
            args.seed,
            args.dtype,
            backend,
            n_classes=n_classes,
            dropout=args.dropout,
        )
        what = f"the CNN (dropout {args.dropout})"
    else:
        model = build_classifier(
            X.shape[1],
            n_classes,
            hidden,
            args.activation,
            args.optimizer,
            args.lr,
            args.seed,
            args.dtype,
            backend,
        )
        what = "an MLP " + "-".join(str(width) for width in [X.shape[1], *hidden, n_classes])
    ranks = "" if group is None else f", data-parallel over {group.size} MPI ranks"
    say(
        f"training {args.dataset}: {X.shape[0]} samples, {X.shape[1]} features, "
        f"{n_classes} classes on the {backend.name} backend ({args.dtype}); model: {what}"
        f"{ranks}",
        file=sys.stderr,
    )
    verbose = 0 if args.quiet else (1 if sys.stderr.isatty() else 2)
    started = time.perf_counter()
    with warnings.catch_warnings():
        # fit warns when Ctrl-C stops it; the command says so itself, in one line.
        warnings.filterwarnings("ignore", message="training interrupted", category=UserWarning)
        history = model.fit(
            X,
            y,
            epochs=args.epochs,
            batch_size=args.batch_size,
            validation_split=args.validation_split,
            verbose=verbose,
            distributed=group if group is not None else False,
        )
    if history.interrupted:
        return _stop_interrupted(args, model, history, say)
    seconds = time.perf_counter() - started
    scores = model.evaluate(X_test, y_test)
    throughput = numpy.median(history["samples_per_second"])
    say(
        f"test accuracy {scores['accuracy']:.4f}, test loss {scores['loss']:.4f}; "
        f"{len(history.epoch)} epochs in {seconds:.1f} s "
        f"(median {throughput:,.0f} training samples/s)"
    )
    if args.save:
        model.save(args.save)  # distributed: rank 0 writes, every rank learns the outcome
        args.kept = [args.save]
        say(f"saved the model to {args.save}")
    if args.plot and group is not None:
        if not group.is_root:
            return 0
        from .distributed import register

        register(model, None)  # rank 0 plots alone: its predictions are local
    if args.plot:
        from . import plot
        from .datasets import CLASS_NAMES

        names = {"sample": CLASS_NAMES, "fashion-mnist": CLASS_NAMES}.get(args.dataset)
        if args.dataset == "mnist":
            names = tuple(f"digit {digit}" for digit in range(10))
        written = plot.write_training_plots(
            model, history, X_test, y_test, args.plot, class_names=names
        )
        for path in written:
            print(f"wrote {path}")
    return 0


def _silent(*args: Any, **kwargs: Any) -> None:
    """``print`` on the ranks other than 0."""


def _stop_interrupted(
    args: argparse.Namespace, model: Any, history: Any, say: Callable[..., None] = print
) -> int:
    """Ctrl-C stopped training: keep the model only under a name that says it is partial,
    say on stderr what was kept, and exit 130 so that ``nnback train && deploy`` stops."""
    epoch, step = history.interrupted_at or (0, 0)
    finished = f"{len(history.epoch)} of {args.epochs} epochs finished"
    where = f"interrupted at epoch {epoch}, step {step} ({finished})"
    if args.save:
        partial = partial_name(args.save)
        model.save(partial)
        args.kept = [partial]
        kept = f"kept the partial model in {partial}; {args.save} was not written"
    else:
        kept = "nothing was saved"
    say(f"nnback: {where}: {kept}", file=sys.stderr)
    return 130


class ShowDefaults(argparse.HelpFormatter):
    """Help that ends each option with its default, where it has one worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if default is None or default is False or default == argparse.SUPPRESS:
            return text
        if "default:" in text:
            return text
        return f"{text} (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnback", description="From-scratch neural networks on NumPy, Numba and CuPy."
    )
    parser.add_argument("--version", action="version", version=f"nnback {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    info = commands.add_parser("info", help="version, backends, BLAS and thread settings")
    info.set_defaults(run=command_info)

    train = commands.add_parser(
        "train",
        help="train an MLP or a CNN classifier and report test accuracy",
        description="Train an MLP (or, with --model cnn, a small convolutional network), "
        "then report its test accuracy and speed.",
        formatter_class=ShowDefaults,
    )
    add = train.add_argument
    add(
        "--backend",
        default=None,
        help="numpy, numba, cupy or auto (default: $NNBACK_BACKEND, else numpy)",
    )
    add(
        "--dataset",
        default="sample",
        choices=["sample", "mnist", "fashion-mnist", "spiral"],
        help="'sample': 5,000 Fashion-MNIST images shipped with nnback",
    )
    add(
        "--data-dir",
        default=None,
        help="directory with the IDX files (default: $NNBACK_DATA, the cache, /usr/share/datasets)",
    )
    add("--epochs", type=int, default=10, help="passes over the training set")
    add("--batch-size", type=int, default=64, help="samples per optimizer step")
    add(
        "--model",
        default="mlp",
        choices=["mlp", "cnn"],
        help="'cnn': Conv(32, 3x3) ReLU MaxPool(2), Conv(64, 3x3) ReLU MaxPool(2), "
        "Dense(128) ReLU, Dense(classes), the network of examples/fashion_mnist_cnn.py "
        "(28x28 image datasets only)",
    )
    add(
        "--hidden",
        default=None,
        help="hidden layer sizes, comma-separated; --model mlp only (default: 256,128)",
    )
    add(
        "--activation",
        default=None,
        choices=["relu", "leaky_relu", "tanh", "sigmoid"],
        help="activation of the hidden layers; --model mlp only (default: relu)",
    )
    add(
        "--dropout",
        type=float,
        default=None,
        help="dropout rate before each Dense layer; --model cnn only (default: 0, none)",
    )
    add(
        "--optimizer",
        default="adam",
        choices=["sgd", "adagrad", "rmsprop", "adam"],
        help="optimizer",
    )
    add("--lr", type=float, default=1e-3, help="learning rate")
    add(
        "--seed",
        type=int,
        default=0,
        help="seed (a whole number >= 0) for the weights and shuffling",
    )
    add("--dtype", default="float32", choices=["float32", "float64"], help="float type")
    add(
        "--validation-split",
        type=float,
        default=0.1,
        help="fraction of the training set held out for validation",
    )
    add(
        "--save",
        default=None,
        help="save the trained model to this file (checked before "
        "training; after Ctrl-C only NAME.partial.npz is written)",
    )
    add("--plot", default=None, help="write training plots (PNG) to this folder")
    add("--quiet", action="store_true", help="no progress or per-epoch lines")
    add(
        "--distributed",
        action="store_true",
        help="train data-parallel over the MPI ranks of `mpiexec -n N nnback train "
        "--distributed` (--batch-size is the global batch; needs pip install 'nnback[mpi]')",
    )
    train.set_defaults(run=command_train)

    for name, (help_text, add_arguments, run) in EXTRA_COMMANDS.items():
        sub = commands.add_parser(name, help=help_text)
        add_arguments(sub)
        sub.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    _register_extra_commands()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except NNBackError as exc:
        print(f"nnback: error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        # Missing datasets raise a FileNotFoundError subclass whose message says what to do.
        print(f"nnback: error: {exc}", file=sys.stderr)
        return 2
    except MemoryError as exc:
        print(
            f"nnback: error: out of memory ({exc}); use smaller --hidden or --batch-size",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        kept = getattr(args, "kept", [])
        what = f"kept {', '.join(kept)}" if kept else "nothing was saved"
        print(f"nnback: interrupted: {what}", file=sys.stderr)
        return 130


def _register_extra_commands() -> None:
    """Import the modules that add subcommands (each is optional)."""
    import importlib
    import importlib.util

    for module in ("nnback.bench_cli",):
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)


if __name__ == "__main__":
    sys.exit(main())
