"""Run by the tests under ``mpiexec -n N python mpi_worker.py SCENARIO OUT_DIR``.

Each rank writes what it saw to ``OUT_DIR/rank{r}.pkl``; the tests compare the ranks with
each other and with the same programs run in one process (:func:`train_cases`). Several
checks share one launch, since starting MPI ranks costs about a second.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
from typing import Any

import numpy

import nnback as nb
from nnback import layers as nl

# (name, dtype, dropout, l1/l2, optimizer, n samples, global batch): sizes that do not divide
# by 2 or 3 ranks, with a last batch of 1 row (an empty share on every rank but one).
CASES = [
    ("f64-adam-dropout-l1l2", "float64", 0.25, 1e-3, "adam", 97, 16),
    ("f32-adam-dropout-l1l2", "float32", 0.25, 1e-3, "adam", 97, 16),
    ("f64-sgd-momentum", "float64", 0.0, 0.0, "sgd", 64, 10),
    ("f32-rmsprop-batch-under-ranks", "float32", 0.1, 1e-4, "rmsprop", 25, 2),
]
EPOCHS = 3


def data(n: int) -> tuple[numpy.ndarray, numpy.ndarray]:
    rng = numpy.random.default_rng(42)
    X = rng.standard_normal((n, 6))
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(numpy.int64) + (X[:, 3] > 1)
    return X, y


def make_model(dtype: str, dropout: float, reg: float, optimizer: str, backend: Any = None):
    opt = {
        "adam": nb.Adam(learning_rate=0.01),
        "sgd": nb.SGD(learning_rate=0.1, momentum=0.9),
        "rmsprop": nb.RMSprop(learning_rate=0.005),
    }[optimizer]
    model = nb.Sequential(
        loss="categorical_crossentropy", optimizer=opt, seed=7, dtype=dtype, backend=backend
    )
    model.add(nl.Dense(6, 12, weight_regularizer_l1=reg, weight_regularizer_l2=reg))
    model.add(nb.ReLU())
    if dropout:
        model.add(nl.Dropout(dropout))
    model.add(nl.Dense(12, 8, bias_regularizer_l2=reg))
    model.add(nb.Tanh())
    model.add(nl.Dense(8, 3))
    model.add(nb.Softmax())
    return model


def flat(model: Any) -> numpy.ndarray:
    return numpy.concatenate([w.ravel().astype(numpy.float64) for w in model.get_weights()])


def train_cases(distributed: Any, backend: Any = None, cases: list | None = None) -> dict:
    """Each case trained, with what the tests compare (the same in one process or N)."""
    results = {}
    for name, dtype, dropout, reg, optimizer, n, batch in cases or CASES:
        X, y = data(n)
        model = make_model(dtype, dropout, reg, optimizer, backend)
        history = model.fit(
            X,
            y,
            epochs=EPOCHS,
            batch_size=batch,
            validation_data=data(31),
            verbose=0,
            distributed=distributed,
        )
        results[name] = {
            "weights": flat(model),
            "loss": history["loss"],
            "accuracy": history["accuracy"],
            "val_loss": history["val_loss"],
            "val_accuracy": history["val_accuracy"],
            "evaluate": model.evaluate(*data(23)),
            "predict": model.predict(data(23)[0]),
            "step_mode": history.step_mode,
        }
    return results


def scenario_parity(group: nb.Distributed, out: dict) -> None:
    out["cases"] = train_cases(group)
    if group.size == 2:
        from nnback.testing.fake_cupy import make_fake_cupy_backend

        fake = train_cases(group, make_fake_cupy_backend(), CASES[:1])
        out["fake_cupy"] = fake
        out["transport"] = group.transport


# Small, so that the fake device (CUDA kernels run on the CPU) stays quick: 2 epochs of 4
# steps of global batch 8 (a last batch of 5 rows, uneven over 2 and 3 ranks).
NCCL_CASES = [
    ("f64-adam-dropout-l1l2", "float64", 0.25, 1e-3, "adam", 29, 8),
    ("f32-adam-dropout-l1l2", "float32", 0.25, 1e-3, "adam", 29, 8),
]


def _fake_backend(group: nb.Distributed, **options: Any) -> Any:
    from nnback import distributed_transport
    from nnback.testing.fake_cupy import make_fake_cupy_backend

    backend = make_fake_cupy_backend(**options)
    distributed_transport.use_local_device(group, backend.xp)
    return backend


def _trained(group: nb.Distributed, backend: Any) -> dict:
    result = train_cases(group, backend, NCCL_CASES)
    result["transport"] = group.transport
    result["nccl_launches"] = backend.xp.kernels_launched().count("ncclAllReduce")
    return result


def _failure(work: Any) -> str | None:
    try:
        work()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def scenario_nccl(group: nb.Distributed, out: dict) -> None:
    """The cupy backend's transports on fake devices: NCCL, host staging forced by the
    argument and by the environment, the fallbacks and the fake NCCL's refusals."""
    from nnback import distributed_transport

    size = group.size
    out["nccl"] = _trained(group, _fake_backend(group, device_count=size, nccl=True))
    forced = nb.Distributed(transport="host")
    out["host"] = _trained(forced, _fake_backend(forced, device_count=size, nccl=True))
    os.environ[distributed_transport.ENVIRONMENT] = "host"
    by_environment = nb.Distributed()
    backend = _fake_backend(by_environment, device_count=size, nccl=True)
    out["environment"] = _trained(by_environment, backend)
    del os.environ[distributed_transport.ENVIRONMENT]
    # No NCCL in this CuPy build (the import fails), or two ranks on one GPU: host staging.
    short = NCCL_CASES[:1]
    missing = ImportError("libnccl.so.2: cannot open shared object file")
    backend = _fake_backend(group, device_count=size, nccl=missing)
    out["no_nccl"] = (train_cases(group, backend, short), group.transport)
    backend = _fake_backend(group, device_count=1, nccl=True)
    out["one_gpu"] = (train_cases(group, backend, short), group.transport)
    required = nb.Distributed(transport="nccl")
    backend = _fake_backend(required, device_count=size, nccl=missing)
    out["required"] = _failure(lambda: train_cases(required, backend, short))

    # The fake NCCL refuses misuse as NCCL would.
    backend = _fake_backend(group, device_count=size, nccl=True)
    xp = backend.xp
    nccl = xp.cuda.nccl
    uid = group.comm.bcast(nccl.get_unique_id() if group.rank == 0 else None)
    comm = nccl.NcclCommunicator(size, uid, group.rank)
    grad = xp.asarray(numpy.arange(6.0) * (group.rank + 1))
    ptr, stream = grad.data.ptr, xp.cuda.get_current_stream().ptr
    f64, f32, add = nccl.NCCL_FLOAT64, nccl.NCCL_FLOAT32, nccl.NCCL_SUM
    refusals = {
        "dtype": _failure(lambda: comm.allReduce(ptr, ptr, 6, f32, add, stream)),
        "overrun": _failure(lambda: comm.allReduce(ptr, ptr, 7, f64, add, stream)),
        "pointer": _failure(lambda: comm.allReduce(ptr + 2**40, ptr, 6, f64, add, stream)),
        "stream": _failure(lambda: comm.allReduce(ptr, ptr, 6, f64, add, 12345)),
        "counts": _failure(lambda: comm.allReduce(ptr, ptr, 6 - group.rank % 2, f64, add, stream)),
        "ranks": _failure(lambda: nccl.NcclCommunicator(size, uid, 0)),
    }
    shared = _fake_backend(group, device_count=1, nccl=True).xp.cuda.nccl
    refusals["duplicate"] = _failure(lambda: shared.NcclCommunicator(size, uid, group.rank))
    comm.allReduce(ptr, ptr, 6, f64, add, stream)
    out["sum"] = backend.to_numpy(grad)
    # Captured: recorded on the capturing stream, run at each replay; refused on another.
    capturing = xp.cuda.Stream(non_blocking=True)
    with capturing:
        capturing.begin_capture()
        refusals["other_stream"] = _failure(lambda: comm.allReduce(ptr, ptr, 6, f64, add, stream))
        comm.allReduce(ptr, ptr, 6, f64, add, capturing.ptr)
        graph = capturing.end_capture()
    out["before_replay"] = backend.to_numpy(grad)
    graph.launch()
    out["after_replay"] = backend.to_numpy(grad)
    out["graph_nodes"] = graph.node_names()
    out["refusals"] = refusals
    comm.destroy()
    refusals["destroyed"] = _failure(lambda: comm.allReduce(ptr, ptr, 6, f64, add, stream))


def scenario_control(group: nb.Distributed, out: dict) -> None:
    """The NaN guard, Ctrl-C on one rank, a failing callback on one rank, saving."""
    X, y = data(64)
    # A non-finite loss on the last rank only (a weight made NaN there after step 4):
    # every rank must stop at step 5.
    model = make_model("float64", 0.0, 0.0, "sgd")

    def poison(step: int, logs: Any) -> None:
        if group.rank == group.size - 1 and model.optimizer.iterations == 4:
            model.layers[0].weights[0, 0] = numpy.nan

    try:
        model.fit(
            X,
            y,
            epochs=2,
            batch_size=8,
            verbose=0,
            distributed=group,
            callbacks=[nb.LambdaCallback(on_batch_end=poison)],
        )
        out["nan"] = None
    except nb.TrainingError as exc:
        out["nan"] = (type(exc).__name__, exc.epoch, exc.step, str(exc), flat(model))

    # Ctrl-C on the last rank only, during step 3 of epoch 2.
    def interrupt(step: int, logs: Any) -> None:
        if group.rank == group.size - 1 and model.optimizer.iterations == 10:
            os.kill(os.getpid(), signal.SIGINT)

    model = make_model("float64", 0.0, 0.0, "adam")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = model.fit(
            X,
            y,
            epochs=4,
            batch_size=8,
            verbose=0,
            distributed=group,
            callbacks=[nb.LambdaCallback(on_batch_end=interrupt)],
        )
    out["interrupt"] = (history.interrupted, history.interrupted_at, len(history.epoch))

    # A callback that raises on rank 1 only, at step 2 of epoch 1.
    def fail(step: int, logs: Any) -> None:
        if group.rank == 1 and step == 1:
            raise ValueError("disk full on rank 1")

    model = make_model("float64", 0.0, 0.0, "adam")
    try:
        model.fit(
            X,
            y,
            epochs=2,
            batch_size=8,
            verbose=0,
            distributed=group,
            callbacks=[nb.LambdaCallback(on_batch_end=fail)],
        )
        out["failure"] = None
    except Exception as exc:
        out["failure"] = (type(exc).__name__, str(exc), model.optimizer.iterations)

    # Saving: rank 0 alone writes; every rank loads the file afterwards.
    from nnback import serialization

    written = []
    original = serialization._save_here

    def spy(model: Any, path: Any) -> None:
        written.append(os.fspath(path))
        original(model, path)

    serialization._save_here = spy
    model = make_model("float32", 0.0, 0.0, "adam")
    path = os.path.join(sys.argv[2], "model.npz")
    checkpoint = os.path.join(sys.argv[2], "ckpt-{epoch}.npz")
    model.fit(
        X,
        y,
        epochs=2,
        batch_size=8,
        verbose=0,
        distributed=group,
        callbacks=[nb.ModelCheckpoint(checkpoint)],
    )
    model.save(path)
    serialization._save_here = original
    loaded = nb.load_model(path)
    out["save"] = {
        "written": written,
        "same": all(
            numpy.array_equal(a, b)
            for a, b in zip(loaded.get_weights(), model.get_weights(), strict=True)
        ),
        "weights": flat(model),
    }


def scenario_uncaught(group: nb.Distributed, out: dict) -> None:
    """Rank 1 fails outside fit while rank 0 waits in a collective evaluate: the job must
    end (abort), not hang."""
    X, y = data(32)
    model = make_model("float64", 0.0, 0.0, "adam")
    model.fit(X, y, epochs=1, batch_size=8, verbose=0, distributed=group)
    if group.rank == 1:
        raise RuntimeError("rank 1 fails between fit and evaluate")
    model.evaluate(X, y)


def main() -> None:
    scenario, folder = sys.argv[1], sys.argv[2]
    group = nb.Distributed()
    out: dict = {"rank": group.rank, "size": group.size}
    scenarios = {
        "parity": scenario_parity,
        "control": scenario_control,
        "uncaught": scenario_uncaught,
        "nccl": scenario_nccl,
    }
    scenarios[scenario](group, out)
    with open(os.path.join(folder, f"rank{group.rank}.pkl"), "wb") as handle:
        pickle.dump(out, handle)


if __name__ == "__main__":
    main()
