"""Data-parallel training over MPI: N ranks with a global batch B end where one process ends.

``fit(..., distributed=True)`` (or ``distributed=Distributed(comm)``) runs the same program
on every rank of an MPI job (``mpiexec -n 4 python my_script.py``):

* At the start of ``fit`` rank 0's parameters, optimizer state and random generator are
  broadcast, so every rank starts from the same model even without a seed.
* Every rank draws the same epoch permutation from that generator. Each global minibatch of
  ``m <= batch_size`` rows is cut into contiguous shares, ``[m*r//N, m*(r+1)//N)`` for rank
  ``r``: shares differ by at most one row, and a rank may get none (a last batch of fewer
  rows than ranks); it then contributes a zero gradient.
* Each rank's loss gradient is the mean over its own rows, so its flat gradient buffer
  (:mod:`nnback.parameter_pack`) is scaled by ``rows / m`` and the ranks' buffers are summed
  with one ``Allreduce(MPI.IN_PLACE, grad)`` per step. Every rank then takes the same
  optimizer step on the same sum, so the parameters stay bit-identical; a CRC-32 of the
  flat parameter buffer is compared across ranks at each epoch's end. L1/L2 penalties are
  folded in by the optimizer after the sum, so they count once, not N times.
* Dropout masks: each rank draws the rows of the *global* batch's mask that belong to its
  rows, from the shared generator (jumping over the others' draws with PCG64's
  ``advance``), so the masks are those the single process draws.
* Before the gradient sum, each step gathers a small status from every rank: its loss sum,
  a non-finite-loss flag, a pending Ctrl-C and a failure flag. So the NaN guard and Ctrl-C
  stop every rank at the same step, and an exception on one rank (in a step, a callback or
  the epoch's end) makes every other rank raise :class:`~nnback.errors.DistributedError`
  naming the rank and the error, instead of waiting for it forever.
* Losses and metric counts are gathered and summed in rank order, so every rank reports
  the same global figures, bit for bit (EarlyStopping decides alike everywhere).
* Validation, :meth:`~nnback.model.Sequential.evaluate` and ``predict`` of a model trained
  this way shard the samples across ranks and gather the results (they are collective:
  call them on every rank, or pass ``distributed=False`` for a local call).
* ``save`` of such a model is collective too: rank 0 alone writes the file (atomically),
  then every rank returns or raises the same error. :func:`~nnback.load_model` works on
  every rank.

Failure policy: failures inside ``fit`` are agreed collectively, as above. What no
collective check can see (an exception outside ``fit`` while the other ranks wait in one,
a rank killed) would leave the others waiting forever, so creating a :class:`Distributed`
installs a ``sys.excepthook`` that prints the traceback and calls ``MPI_Abort`` on an
uncaught exception, as ``python -m mpi4py`` does (``abort_on_uncaught=False`` to opt out).
``mpiexec`` ends the whole job when a rank is killed.

Backends (:mod:`nnback.distributed_transport`): numpy and numba arrays are host buffers,
reduced in place by MPI. CuPy arrays are summed by NCCL between GPUs where it is available
and initializes on every rank (one GPU per rank), else through host staging (device to
host, ``Allreduce``, host to device); ``NNBACK_DISTRIBUTED_TRANSPORT=host`` forces staging.
:attr:`Distributed.transport` says which is in force and why, and ``history.step_mode``
says it too: distributed steps run eagerly (the captured CUDA-graph step does not take the
allreduce).
"""

from __future__ import annotations

import math
import sys
import time
import traceback
import weakref
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy

from . import distributed_transport as _transport
from .errors import BackendUnavailableError, DistributedError, InputError, TrainingError

if TYPE_CHECKING:
    from .model import Sequential
    from .training import _InterruptGuard, _Snapshot, _Trainer

__all__ = ["INSTALL_HINT", "Distributed", "DistributedError", "resolve"]

INSTALL_HINT = "pip install 'nnback[mpi]'"

# Models trained data-parallel, and the group they belong to (their evaluate, predict and
# save are collective over it). Weak: the registry never keeps a model alive.
_GROUPS: weakref.WeakKeyDictionary[Any, Distributed] = weakref.WeakKeyDictionary()
_DEFAULT: Distributed | None = None


def _import_mpi() -> Any:
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise BackendUnavailableError(
            f"distributed training needs mpi4py and an MPI library ({exc}); {INSTALL_HINT}"
        ) from None
    return MPI


def _collective(exc: BaseException) -> BaseException:
    """Mark an exception that every rank raises at the same point (no abort needed)."""
    exc._nnback_collective = True  # type: ignore[attr-defined]
    return exc


def is_collective(exc: BaseException) -> bool:
    return bool(getattr(exc, "_nnback_collective", False))


class Distributed:
    """A group of MPI ranks that train one model data-parallel.

    Parameters
    ----------
    comm : mpi4py communicator, optional
        ``MPI.COMM_WORLD`` by default. nnback works on a duplicate of it, so its messages
        never meet the caller's.
    abort_on_uncaught : bool
        Install a ``sys.excepthook`` that calls ``MPI_Abort`` after printing an uncaught
        exception, so one failing rank ends the job instead of leaving the others waiting.
    transport : {"auto", "host", "nccl"}, optional
        How device (CuPy) gradients are summed: NCCL where it works, else host staging
        (``auto``); always host staging (``host``); NCCL or an error (``nccl``). By default
        the ``NNBACK_DISTRIBUTED_TRANSPORT`` environment variable, else ``auto``.

    Creating one is collective: every rank of ``comm`` must do it.
    """

    def __init__(
        self, comm: Any = None, *, abort_on_uncaught: bool = True, transport: str | None = None
    ) -> None:
        _transport.mode_of(transport)  # a bad value fails here, on every rank
        MPI = _import_mpi()
        self.MPI = MPI
        base = MPI.COMM_WORLD if comm is None else comm
        self.comm = base.Dup()
        self.rank: int = self.comm.Get_rank()
        self.size: int = self.comm.Get_size()
        self.requested_transport = transport
        self.transport = _transport.HOST
        self._transport: _transport.Transport | None = None
        self.nccl_transport: _transport.NcclTransport | None = None  # kept between fits
        self.error: BaseException | None = None
        if abort_on_uncaught:
            _install_abort_hook(MPI)

    def __repr__(self) -> str:
        return f"Distributed(rank {self.rank} of {self.size}, {self.transport})"

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def share(self, rows: int) -> tuple[int, int]:
        """This rank's contiguous share ``[lo, hi)`` of ``rows`` rows."""
        return rows * self.rank // self.size, rows * (self.rank + 1) // self.size

    # ---- collectives -------------------------------------------------------------------------
    def barrier(self) -> None:
        self.comm.Barrier()

    def gather_sum(self, values: list[float]) -> numpy.ndarray:
        """Every rank's ``values`` summed in rank order: the same bits on every rank."""
        local = numpy.asarray(values, numpy.float64)
        every = numpy.empty((self.size, local.size), numpy.float64)
        self.comm.Allgather(local, every)
        total = numpy.zeros(local.size, numpy.float64)
        for row in every:
            total += row
        return total

    def connect(self, backend: Any, flat: Any) -> _transport.Transport:
        """Collective: choose how ``flat`` gradient buffers are summed (NCCL, host staging,
        host buffers); :attr:`transport` then says which, and why."""
        self._transport = _transport.choose(self, backend, flat)
        self.transport = self._transport.description
        return self._transport

    def allreduce_gradient(self, backend: Any, flat: Any) -> None:
        """Sum ``flat`` (the flat gradient buffer) over the ranks, in place."""
        if self.size == 1:
            return
        transport = self._transport
        if transport is None or (transport.kind == "nccl" and transport.backend is not backend):
            transport = _transport.Transport(self, backend, self.transport)
        transport.allreduce(flat)

    def broadcast_buffer(self, backend: Any, flat: Any) -> None:
        """Copy rank 0's ``flat`` into every rank's."""
        if self.size == 1:
            return
        if isinstance(flat, numpy.ndarray):
            self.comm.Bcast(flat, root=0)
            return
        host = numpy.ascontiguousarray(backend.to_numpy(flat))
        self.comm.Bcast(host, root=0)
        backend.copy_into_inplace(flat, backend.asarray(host))

    def check_identical(self, backend: Any, flat: Any, what: str) -> None:
        """Raise DistributedError (on every rank) unless ``flat`` is the same on every rank."""
        if self.size == 1:
            return
        host = numpy.ascontiguousarray(backend.to_numpy(flat))
        checksums = self.comm.allgather(zlib.crc32(host.view(numpy.uint8)))
        if len(set(checksums)) > 1:
            raise _collective(
                DistributedError(
                    f"{what}: the ranks' parameters are no longer bit-identical (CRC-32 per "
                    f"rank: {', '.join(f'{c:08x}' for c in checksums)}). The ranks took "
                    "different steps: the data, model or settings differ between ranks, or "
                    "the MPI library's Allreduce does not give every rank the same bits"
                )
            )

    # ---- agreeing on failures ------------------------------------------------------------------
    def hold(self, exc: BaseException) -> None:
        """Keep a local exception until the next collective check reports it."""
        if self.error is None:
            self.error = exc

    def raise_failures(self, where: str) -> None:
        """Collective: every rank learns which ranks failed and why; the failing ranks raise
        their own exception, the others DistributedError naming them. Call it only when a
        status exchange said some rank failed."""
        mine = None
        if self.error is not None:
            mine = f"{type(self.error).__name__}: {self.error}"
        reports = self.comm.allgather(mine)
        error, self.error = self.error, None
        failed = [(rank, text) for rank, text in enumerate(reports) if text is not None]
        if error is not None:
            raise _collective(error)
        listed = "; ".join(f"rank {rank}: {text}" for rank, text in failed)
        raise _collective(DistributedError(f"{where}: another rank failed ({listed})"))

    def agree(self, where: str, work: Callable[..., Any], *args: Any) -> Any:
        """Run ``work(*args)`` on every rank, then check collectively that it succeeded
        everywhere (else every rank raises)."""
        result = None
        if self.error is None:
            try:
                result = work(*args)
            except Exception as exc:
                self.hold(exc)
        self.check(where)
        return result

    def check(self, where: str) -> None:
        """Collective: raise (on every rank) if any rank holds a failure."""
        if self.gather_sum([self.error is not None])[0]:
            self.raise_failures(where)

    # ---- evaluation and prediction -------------------------------------------------------------
    def score(self, model: Sequential, X: Any, y: Any, size: int) -> dict[str, float]:
        """``training._score`` over the ranks: each scores its share, the sums are gathered."""
        from .training import _scores

        backend = model.backend
        n = X.shape[0]
        lo, hi = self.share(n)
        metric = model.metric
        metric.reset()
        total: Any = 0.0
        correct: Any = 0.0
        counted = 0

        def local() -> None:
            nonlocal total, correct, counted
            for start in range(lo, hi, size):
                xb = backend.asarray(X[start : min(start + size, hi)])
                yb = backend.asarray(y[start : min(start + size, hi)])
                output = model.forward(xb, training=False)
                loss, _ = model.loss_and_gradient(output, yb, with_grad=False)
                total = total + loss * xb.shape[0]
                metric.update(backend, output, yb)
            if metric._total:
                correct = backend.to_float(metric._correct)
                counted = metric._total
            total = total if type(total) is float else backend.to_float(total)

        self.agree("evaluation", local)
        loss_sum, correct_sum, counted_sum = self.gather_sum([total, correct, counted])
        metric.reset()
        metric._backend = backend
        metric._correct = backend.asarray(numpy.float64(correct_sum))
        metric._total = int(counted_sum)
        return _scores(model, float(loss_sum) / n)

    def predict(self, model: Sequential, X: Any, size: int, to_numpy: bool) -> Any:
        """``predict`` over the ranks: each runs its share, every rank gets all the rows."""
        backend = model.backend
        n = X.shape[0]
        lo, hi = self.share(n)
        width = model.n_outputs
        part = numpy.empty((hi - lo, width), model.dtype)

        def local() -> None:
            for start in range(lo, hi, size):
                stop = min(start + size, hi)
                out = model.forward(backend.asarray(X[start:stop]), training=False)
                if model.fused_softmax_loss:
                    out = backend.softmax(out)
                part[start - lo : stop - lo] = backend.to_numpy(out)

        self.agree("predict", local)
        counts = [(n * (r + 1) // self.size - n * r // self.size) * width for r in range(self.size)]
        offsets = [n * r // self.size * width for r in range(self.size)]
        result = numpy.empty((n, width), model.dtype)
        self.comm.Allgatherv(part, [result, (counts, offsets)])
        return result if to_numpy else backend.asarray(result)

    def save_on_root(self, write: Callable[[], None], what: str) -> None:
        """Rank 0 runs ``write``; every rank then returns, or raises the same error."""
        error = None
        if self.is_root:
            try:
                write()
            except Exception as exc:
                error = exc
        text = self.comm.bcast(None if error is None else f"{type(error).__name__}: {error}")
        if error is not None:
            raise error
        if text is not None:
            raise DistributedError(f"{what}: rank 0 could not write the file ({text})")


def _install_abort_hook(MPI: Any) -> None:
    previous = sys.excepthook
    if getattr(previous, "_nnback_abort", False):
        return

    def hook(kind: Any, value: Any, tb: Any) -> None:
        previous(kind, value, tb)
        world = MPI.COMM_WORLD
        if world.Get_size() > 1 and not issubclass(kind, SystemExit):
            rank = world.Get_rank()
            print(
                f"nnback: rank {rank} of {world.Get_size()} ended with an uncaught "
                f"{kind.__name__}; aborting the MPI job so that no other rank waits for it",
                file=sys.stderr,
                flush=True,
            )
            _let_mpiexec_forward_output()
            world.Abort(1)

    hook._nnback_abort = True  # type: ignore[attr-defined]
    sys.excepthook = hook


def resolve(distributed: Any) -> Distributed | None:
    """``fit``'s ``distributed`` argument as a group, or None for one process."""
    global _DEFAULT
    if distributed is None or distributed is False:
        return None
    if isinstance(distributed, Distributed):
        return distributed
    if distributed is True:
        if _DEFAULT is None:
            _DEFAULT = Distributed()
        return _DEFAULT
    raise InputError(
        f"distributed: expected True, False or a Distributed(comm), got {distributed!r}"
    )


def group_of(model: Any, distributed: Any = None) -> Distributed | None:
    """The group of a collective ``evaluate``/``predict``/``save``: ``distributed`` when
    given (False: local), else the group the model was last trained with."""
    if distributed is None:
        try:
            return _GROUPS.get(model)
        except TypeError:
            return None
    return resolve(distributed)


def register(model: Any, group: Distributed | None) -> None:
    if group is None:
        _GROUPS.pop(model, None)
    else:
        _GROUPS[model] = group


# ---- the training loop's part ------------------------------------------------------------------
class _RowDraws:
    """Stands in for a Dropout layer's generator during a distributed step: a draw of the
    rank's rows ``(hi - lo, ...)`` is the slice ``[lo:hi]`` of the global batch's draw of
    ``(m, ...)``, and the generator moves past all ``m`` rows, as in the single process."""

    def __init__(self, rng: numpy.random.Generator) -> None:
        self.rng = rng
        self.rows = (0, 0, 0)
        # PCG64 (numpy's default) makes one 64-bit draw per double and can jump ahead.
        self.jumps = type(rng.bit_generator) in (numpy.random.PCG64, numpy.random.PCG64DXSM)

    def random(self, shape: tuple[int, ...]) -> numpy.ndarray:
        m, lo, hi = self.rows
        per_row = int(numpy.prod(shape[1:], dtype=numpy.int64))
        if not self.jumps:
            return self.rng.random((m, *shape[1:]))[lo:hi]
        bits = self.rng.bit_generator
        # advance() drops the half of a 64-bit draw that a 32-bit draw (the permutation's
        # bounded integers) keeps for the next one: put it back, as if nothing jumped.
        cached = bits.state
        if lo:
            bits.advance(lo * per_row)
        part = self.rng.random((hi - lo, *shape[1:]))
        if m - hi:
            bits.advance((m - hi) * per_row)
        state = bits.state
        state["has_uint32"], state["uinteger"] = cached["has_uint32"], cached["uinteger"]
        bits.state = state
        return part

    def __getattr__(self, name: str) -> Any:
        return getattr(self.rng, name)


class DataParallel:
    """One ``fit`` call's distributed state: the group, the pack, the dropout draws."""

    def __init__(self, group: Distributed, model: Sequential) -> None:
        from .layers import Dropout

        self.group = group
        self.model = model
        backend = model.backend
        layers = model.trainable_layers
        pack = layers[0].parameter_pack if layers else None
        if pack is None or not pack.attach_gradients(layers) or pack.runs(layers) is None:
            raise InputError(
                "distributed training needs the model's parameters in its flat buffer; "
                "a parameter array was replaced: call model.build() (or set_weights) instead"
            )
        self.pack = pack
        self.backend = backend
        # Dropout layers draw from model.rng; each gets a stand-in while fit runs.
        shapes = model.output_shapes()
        self.dropouts: list[tuple[Any, tuple[int, ...]]] = []
        for index, layer in enumerate(model.layers):
            if isinstance(layer, Dropout) and layer.rate > 0:
                shape = shapes[index - 1] if index else (model.n_features,)
                self.dropouts.append((layer, shape))
        self.draws = _RowDraws(model.rng)

    def step_mode(self) -> str:
        g = self.group
        return (
            f"eager (data-parallel over {g.size} MPI rank{'s' if g.size > 1 else ''}, "
            f"gradients through {g.transport}; the captured step does not take the allreduce)"
        )

    @contextmanager
    def installed(self) -> Iterator[None]:
        saved = [(layer, layer.rng) for layer, _ in self.dropouts]
        for layer, _ in self.dropouts:
            layer.rng = self.draws
        try:
            yield
        finally:
            for layer, rng in saved:
                layer.rng = rng

    def synchronize_start(self) -> None:
        """Rank 0's parameters, optimizer state and generator, on every rank."""
        group, model, backend = self.group, self.model, self.backend
        if group.size == 1:
            return
        group.broadcast_buffer(backend, self.pack.param)
        optimizer = model.optimizer
        state = optimizer.flat_state(self.pack)
        for slot in sorted(state.flat):
            group.broadcast_buffer(backend, state.flat[slot])
        settings = group.comm.bcast(
            (model.rng.bit_generator.state, optimizer.iterations, optimizer.current_learning_rate)
        )
        model.rng.bit_generator.state = settings[0]
        optimizer.iterations, optimizer.current_learning_rate = settings[1], settings[2]

    def _skip_draws(self, m: int) -> None:
        """A rank with no rows still moves the generator past the batch's dropout masks."""
        for _, shape in self.dropouts:
            self.draws.rows = (m, 0, 0)
            self.draws.random((m, *shape))

    def epoch(
        self,
        trainer: _Trainer,
        epoch: int,
        order: Any,
        snapshot: _Snapshot,
        guard: _InterruptGuard,
    ) -> float:
        """Every step of an epoch; returns the global ``sum(loss * rows)``."""
        with self.installed():
            loss_sum = self._steps(trainer, epoch, order, snapshot, guard)
        self._global_metric()
        self.group.check_identical(self.backend, self.pack.param, f"after epoch {epoch + 1}")
        return loss_sum

    def _steps(
        self,
        trainer: _Trainer,
        epoch: int,
        order: Any,
        snapshot: _Snapshot,
        guard: _InterruptGuard,
    ) -> float:
        model, backend, group = self.model, self.backend, self.group
        optimizer, pack, layers = model.optimizer, self.pack, model.trainable_layers
        settings = trainer.settings
        batch_size, clip_norm = settings["batch_size"], settings["clip_norm"]
        X, y = trainer.X, trainer.y
        n = X.shape[0]
        steps = -(-n // batch_size)
        loss_sum = 0.0
        for step in range(steps):
            start = step * batch_size
            m = min(batch_size, n - start)
            lo, hi = group.share(m)
            rows = hi - lo
            local_loss, bad = 0.0, 0.0
            if group.error is None:
                try:
                    self.draws.rows = (m, lo, hi)
                    if rows:
                        if order is None:
                            xb, yb = X[start + lo : start + hi], y[start + lo : start + hi]
                        else:
                            index = order[start + lo : start + hi]
                            xb, yb = X[index], y[index]
                        output = model.forward(xb, training=True)
                        loss, grad = model.loss_and_gradient(output, yb)
                        value = backend.to_float(loss)
                        local_loss = value * rows
                        if math.isfinite(value):
                            model.metric.update(backend, output, yb)
                            model.backward(grad)
                            pack.runs(layers)  # a gradient returned as a new array goes in
                            if rows != m:
                                backend.scale_inplace(pack.grad, rows / m)
                        else:
                            bad = 1.0
                    else:
                        self._skip_draws(m)
                        backend.copy_into_inplace(pack.grad, backend.zeros_like(pack.grad))
                except Exception as exc:
                    group.hold(exc)
            total, bad_ranks, interrupted, failed = group.gather_sum(
                [local_loss, bad, float(guard.pending), float(group.error is not None)]
            )
            where = f"epoch {epoch + 1}, step {step + 1}"
            if failed:
                group.raise_failures(where)
            if interrupted:
                raise _collective(KeyboardInterrupt())
            if bad_ranks:
                try:
                    trainer.fail(
                        snapshot,
                        f"the loss became {total / m} (non-finite on {int(bad_ranks)} of "
                        f"{group.size} ranks)",
                        epoch,
                        step,
                    )
                except TrainingError as exc:
                    raise _collective(exc) from None
            self.transport.allreduce(pack.grad)
            if clip_norm is not None:
                from .training import _gradient_norm

                norm = _gradient_norm(model)  # of the summed gradient: the same everywhere
                if not math.isfinite(norm):
                    try:
                        trainer.fail(snapshot, f"the gradient norm became {norm}", epoch, step)
                    except TrainingError as exc:
                        raise _collective(exc) from None
                if norm > clip_norm:
                    backend.scale_inplace(pack.grad, clip_norm / norm)
            optimizer.step(layers)
            trainer.last_step = (epoch + 1, step + 1)
            loss_sum += total
            loss_value = total / m
            try:
                if trainer.bar is not None:
                    trainer.bar.update(1)
                    if step % 20 == 0:
                        trainer.bar.set_postfix(loss=f"{loss_value:.4f}", refresh=False)
                for callback in settings["callbacks"]:
                    callback.on_batch_end(step, {"loss": loss_value})
            except Exception as exc:
                group.hold(exc)  # reported by the next step's status, or the epoch's end
        return loss_sum

    def _global_metric(self) -> None:
        metric, backend, group = self.model.metric, self.backend, self.group
        correct = backend.to_float(metric._correct) if metric._total else 0.0
        total_correct, total = group.gather_sum([correct, metric._total])
        metric._backend = backend
        metric._correct = backend.asarray(numpy.float64(total_correct))
        metric._total = int(total)


def start(group: Distributed, model: Sequential, X: Any, y: Any) -> DataParallel:
    """Collective set-up of a distributed ``fit``: the same data and the same starting model
    (rank 0's) on every rank."""
    parallel = group.agree("setting up distributed training", lambda: DataParallel(group, model))
    parallel.transport = group.agree(
        "choosing the transport", group.connect, model.backend, parallel.pack.grad
    )
    check_same_data(group, X, y, model.backend)
    parallel.synchronize_start()
    return parallel


def _host(backend: Any, x: Any) -> numpy.ndarray:
    return numpy.ascontiguousarray(backend.to_numpy(x) if backend.is_array(x) else x)


def check_same_data(group: Distributed, X: Any, y: Any, backend: Any) -> None:
    """Collective: the ranks were given the same training data (shape, dtype and a CRC-32
    of the targets and of up to 1024 evenly spread rows)."""
    if group.size == 1:
        return
    step = max(1, X.shape[0] // 1024)
    rows, targets = _host(backend, X[::step]), _host(backend, y)
    mine = (
        tuple(X.shape),
        str(X.dtype),
        zlib.crc32(rows.view(numpy.uint8)),
        zlib.crc32(targets.view(numpy.uint8)),
    )
    every = group.comm.allgather(mine)
    if any(item != every[0] for item in every):
        differ = [rank for rank, item in enumerate(every) if item != every[0]]
        raise _collective(
            DistributedError(
                f"the ranks were given different training data (ranks {differ} differ from "
                "rank 0); give every rank the same X and y: each takes its own share of "
                "every batch"
            )
        )


def abort_unless_collective(group: Distributed, exc: BaseException) -> None:
    """An exception that left ``fit`` on this rank alone: the others would wait for it in
    their next collective call forever, so the job is aborted (after the traceback)."""
    if group.size == 1 or is_collective(exc):
        return
    traceback.print_exception(type(exc), exc, exc.__traceback__)
    print(
        f"nnback: rank {group.rank} of {group.size} failed outside a collective check; "
        "aborting the MPI job so that no other rank waits for it",
        file=sys.stderr,
        flush=True,
    )
    _let_mpiexec_forward_output()
    group.comm.Abort(1)


def _let_mpiexec_forward_output() -> None:
    """Wait a moment before ``MPI_Abort``: mpiexec relays each rank's stderr through a
    pipe, and the abort kills the ranks before it has read the last lines (the message
    saying why the job ended was seen lost under load)."""
    sys.stderr.flush()
    time.sleep(0.25)
