"""Process-level set-up for the Numba kernels: threading policy, compile notice, and facts.

Everything here runs when :mod:`nnback.kernels.cpu` is first imported, which is before any
kernel runs and therefore before Numba could start its thread pool.

Threading
---------
None of nnback's kernels use ``parallel=True``. Measured on the 2-core target machine
(AMD EPYC, OpenBLAS with 2 pthreads), an element-wise kernel over a 784 x 256 float32
parameter (Adam) took 130 us serially; run with ``prange`` it took 80 us on its own with
the default OpenMP spin-waiting, but 8.7 ms per step once interleaved with a 128 x 784 x 256
GEMM (Numba's OpenMP workers spinning on the cores BLAS needs), and with passive waiting it
cost 40 us *more* per step than the serial kernel because each wake-up of a sleeping
thread costs more than the work it takes over. So the work is split between BLAS (which
owns the threads, for the GEMMs) and serial, vectorized kernels; Numba's thread pool is
never started by nnback.

Kernel threads: batch chunks handed out to whichever thread is free
--------------------------------------------------------------------
Inside ``fit``, ``evaluate`` and ``predict`` of a model with convolution or pooling layers
(the backend's ``compute_scope``), BLAS is held to one thread and nnback's own threads share
the work: ``NNBACK_KERNEL_THREADS``
of them (default: the usable cores, at most 8), the calling thread and long-lived helper
daemon threads. A convolution or pooling op cuts its batch into chunks (a few samples
whose im2col columns fit the L2 cache) and :func:`run_chunks` hands the chunks out one at
a time to whichever thread asks next, each running the chunk's whole pipeline (im2col,
its single-threaded GEMM, epilogue, col2im) on workspaces of its own. A large dense GEMM
is cut by rows; a dense layer's dW and dX GEMMs run at once; optimizer steps in ranges.

Why not BLAS's threads plus serial kernels (the default until the CNN work): measured on
the 2-core machine, OpenBLAS's worker spins (yielding) for a long while after each
2-thread GEMM, so a helper thread running kernels between GEMMs got about half a core,
and the kernels between the GEMMs (half the CPU time of a CNN step at batch 128) left the
second core idle otherwise. With everything on nnback's threads the CNN's step at batch
128 went from 37 to 22 ms, and ``nnback bench``'s CNN epoch from 0.75x / 0.97x PyTorch
CPU (batch 32 / 128) to 1.38x / 1.41x.

Why chunks handed out rather than halves: the second core of the (virtual) machine
sometimes runs at half speed for a while (another tenant on the host); with fixed halves
the op then waits for the slow half, with chunks the fast thread takes more of them.
The cut depends only on the batch and the op's work, never on the thread count, and
each chunk writes only what it owns (its samples' outputs, its own partial dw/db, added
in chunk order after), so a conv or pooling op gives the same bits on 1 thread or 8.
A split costs a thread wake-up (about 30 us median here), so small work is not split
(``SPLIT_MIN_WORK``). Nothing spins while a helper waits (a blocked queue read).

A user's own ``parallel=True`` Numba code may still start the pool in this process, next
to BLAS. For that case we choose, only where the user has not:

* ``OMP_WAIT_POLICY=passive``: idle OpenMP workers sleep instead of spinning, which is what
  removed the collapse measured above (8.7 ms per step instead of 0.66 ms). GNU libgomp
  reads the variable once, when it is loaded, which for Numba is when the thread pool
  starts, so it is set at import here, through os.environ (which also calls putenv).
* the threading layer priority ``omp, tbb, workqueue``: a parallel kernel over 200k
  float32 values, run after each GEMM, took 30 us with OpenMP (passive) against 90 us with
  the workqueue layer, and unlike the workqueue, OpenMP is safe to call from several
  Python threads. (GNU OpenMP is not fork-safe: a child process forked after the pool
  started cannot use parallel Numba code. nnback itself never starts the pool.)

The wait policy is process-wide: an OpenMP runtime loaded *later* in the same process
reads it too. Measured here, PyTorch imported after the numba backend loaded ran a tiny
training step 3x slower (2.4 ms instead of 0.7-1.0 ms) and a batch-128 MLP step 1.6x slower
than in a process without the variable. Import such libraries first, or set
``OMP_WAIT_POLICY`` yourself (a value set by the user is never changed).
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import numba

__all__ = [
    "JIT_OPTIONS",
    "OMP_WAIT_POLICY_DEFAULT",
    "THREADING_LAYER_PRIORITY",
    "blas_facts",
    "configure_threading",
    "install_compile_notice",
    "kernel",
    "reduction_kernel",
    "batch_chunks",
    "blas_is_single_threaded",
    "blas_single_threaded",
    "kernel_threads",
    "parallel_enabled",
    "run_chunks",
    "threading_facts",
]

F = TypeVar("F", bound=Callable[..., Any])

# Every kernel: no fastmath (IEEE arithmetic, as NumPy); error_model="numpy" (a division by
# zero gives inf/nan instead of raising, which is also what lets LLVM vectorize a loop that
# divides); nogil (the GIL is released, as NumPy does in its own loops).
JIT_OPTIONS: dict[str, Any] = {"nogil": True, "error_model": "numpy"}

OMP_WAIT_POLICY_DEFAULT = "passive"
THREADING_LAYER_PRIORITY = ("omp", "tbb", "workqueue")

# What configure_threading() found and did, for threading_facts().
_set_by_nnback: dict[str, bool] = {"OMP_WAIT_POLICY": False, "threading layer": False}

# The package whose dispatchers the compile notice watches.
_KERNEL_PACKAGE = __name__.rsplit(".", 1)[0]

_notice_lock = threading.Lock()
_notice_printed = False
_listener_installed = False


def kernel(fn: F) -> F:
    """``numba.njit(cache=True, **JIT_OPTIONS)``, or uncached where Numba cannot cache.

    Numba refuses ``cache=True`` at decoration time when it finds no writable cache
    directory (a read-only installation and no usable home directory). The backend then
    still loads, compiling in every process, and says once how to fix it.
    """
    try:
        return numba.njit(cache=True, **JIT_OPTIONS)(fn)
    except RuntimeError as exc:  # "cannot cache function ...: no locator available"
        if "cannot cache" not in str(exc):
            raise
        _warn_uncached(str(exc))
        return numba.njit(**JIT_OPTIONS)(fn)


def reduction_kernel(fn: F) -> F:
    """:func:`kernel` with ``fastmath={"reassoc"}``, for a plain sum or dot product only.

    Reassociation is the one fast-math freedom taken: it lets LLVM split a sum into vector
    lanes (partial sums added at the end, as BLAS does), which it may not do under IEEE
    order; nothing else (no contraction, no assumptions about NaN, inf or signed zeros).
    Used where the reference's order is a GEMM's anyway (a weight gradient).
    """
    options = {**JIT_OPTIONS, "fastmath": {"reassoc"}}
    try:
        return numba.njit(cache=True, **options)(fn)
    except RuntimeError as exc:
        if "cannot cache" not in str(exc):
            raise
        _warn_uncached(str(exc))
        return numba.njit(**options)(fn)


_uncached_warned = False


def _warn_uncached(reason: str) -> None:
    global _uncached_warned
    if not _uncached_warned:
        _uncached_warned = True
        warnings.warn(
            f"nnback: the numba backend's kernels cannot be cached on disk ({reason}), so "
            "every process compiles them again; set NUMBA_CACHE_DIR to a writable directory",
            RuntimeWarning,
            stacklevel=3,
        )


# Work (roughly: values read and written, or multiply-adds) below which a batch is not
# split: handing chunks to the helper threads costs a wake-up, tens of microseconds.
SPLIT_MIN_WORK = 1 << 16
# A batch cut in several chunks is cut in a multiple of this many (sizes differing by at
# most one sample): the cut may not depend on the thread count, but 2 or 4 threads then
# get equal shares.
CHUNK_MULTIPLE = 4
# Threads used when NNBACK_KERNEL_THREADS is not set: the usable cores, at most this many.
MAX_DEFAULT_THREADS = 8


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _kernel_threads() -> int:
    """Threads the batch-parallel kernels use: NNBACK_KERNEL_THREADS, else the usable
    cores shared among the MPI ranks on this machine (at most MAX_DEFAULT_THREADS); 1
    means everything runs on the calling thread."""
    value = os.environ.get("NNBACK_KERNEL_THREADS", "").strip()
    if value:
        try:
            return max(1, min(int(value), 64))
        except ValueError:
            warnings.warn(
                f"nnback: NNBACK_KERNEL_THREADS={value!r} is not a whole number; using 1 "
                "(set it to the number of threads, e.g. 2)",
                RuntimeWarning,
                stacklevel=2,
            )
            return 1
    return max(1, min(_usable_cores() // _local_ranks(), MAX_DEFAULT_THREADS))


def _local_ranks() -> int:
    """MPI processes launched on this machine (mpiexec tells each its count): they share
    the cores, so each takes its share of kernel threads."""
    for name in ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE"):
        try:
            value = int(os.environ.get(name, "").split("(")[0])
        except ValueError:
            continue
        if value > 0:
            return value
    return 1


class _Job:
    """One run_chunks call: chunks handed out in order, to whichever thread asks next."""

    def __init__(self, run: Callable[[int], Any], count: int, helpers: int) -> None:
        self.run = run
        self.count = count
        self.next = 0
        self.lock = threading.Lock()
        self.done = threading.Semaphore(0)
        self.helpers = helpers
        self.errors: list[tuple[int, BaseException]] = []

    def work(self) -> None:
        while True:
            with self.lock:
                index = self.next
                if index >= self.count or self.errors:
                    return
                self.next = index + 1
            try:
                self.run(index)
            except BaseException as exc:  # noqa: BLE001 - re-raised by the caller
                with self.lock:
                    self.errors.append((index, exc))


class _Pool:
    """Long-lived daemon helper threads that take chunks of a job beside the caller."""

    def __init__(self, helpers: int) -> None:
        self.queues: list[queue.SimpleQueue[_Job | None]] = []
        for k in range(helpers):
            jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
            thread = threading.Thread(
                target=self._loop, args=(jobs,), name=f"nnback-kernels-{k + 1}", daemon=True
            )
            thread.start()
            self.queues.append(jobs)

    @staticmethod
    def _loop(jobs: queue.SimpleQueue[_Job | None]) -> None:
        while True:
            job = jobs.get()
            if job is None:  # a wake-up call (prewake): wait for the job itself, awake
                continue
            try:
                job.work()
            finally:
                job.done.release()


_pool: _Pool | None = None
_pool_lock = threading.Lock()
_threads = _kernel_threads()
# Held while a thread runs run_chunks: a kernel that itself calls run_chunks from inside a
# chunk (or from a second user thread meanwhile) runs its chunks serially instead.
_pool_busy = threading.Lock()


def _reset_after_fork() -> None:
    """A forked child has no helper threads: make new ones when first needed."""
    global _pool, _pool_lock, _pool_busy
    _pool = None
    _pool_lock = threading.Lock()
    _pool_busy = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def prewake() -> None:
    """Wake the helper threads now for a :func:`run_chunks` call coming shortly: an op calls
    this first thing, so that its checks and allocations overlap the helpers' wake-up
    (measured: they took their first chunk 40-100 us after run_chunks began, of ops
    lasting 0.1-3 ms at batch 32)."""
    pool = _pool
    if pool is not None and _threads > 1 and not _pool_busy.locked():
        for jobs in pool.queues:
            if jobs.empty():
                jobs.put(None)


def kernel_threads() -> int:
    """How many threads the batch-parallel kernels use (1: all on the calling thread)."""
    return _threads


def run_chunks(run: Callable[[int], Any], count: int) -> None:
    """``run(k)`` for every ``k`` in ``range(count)``, on the calling thread and the helper
    threads at once, each taking the next chunk when it is free (a core slowed by another
    process takes fewer chunks). ``run`` must release the GIL for most of its time
    (nnback's kernels and numpy's GEMMs do) and write only what chunk ``k`` owns, so the
    result cannot depend on which thread ran which chunk. The first error (lowest chunk)
    is raised once every thread has stopped taking chunks.
    """
    if count < 2 or _threads < 2 or not _pool_busy.acquire(blocking=False):
        for k in range(count):
            run(k)
        return
    try:
        global _pool
        if _pool is None:
            with _pool_lock:
                if _pool is None:
                    _pool = _Pool(_threads - 1)
        helpers = min(len(_pool.queues), count - 1)
        job = _Job(run, count, helpers)
        for jobs in _pool.queues[:helpers]:
            jobs.put(job)
        try:
            job.work()
        finally:
            for _ in range(helpers):
                job.done.acquire()
    finally:
        _pool_busy.release()
    if job.errors:
        raise min(job.errors, key=lambda item: item[0])[1]


def batch_chunks(n: int, work_per_sample: int, chunk_work: int) -> list[range]:
    """``range(n)`` cut into chunks of at most about ``chunk_work`` work each.

    The cut depends only on ``n`` and the work, never on the thread count, so a kernel
    that sums per chunk and then adds the chunks in order gives the same bits on 1 thread
    and on 8. Small batches (under SPLIT_MIN_WORK) are one chunk.
    """
    total = n * max(work_per_sample, 1)
    if n < 2 or total < SPLIT_MIN_WORK:
        return [range(n)]
    per_chunk = max(1, min(n, chunk_work // max(work_per_sample, 1)))
    chunks = -(-n // per_chunk)
    if chunks > 1:
        # A multiple of CHUNK_MULTIPLE chunks, so that 2 or 4 threads finish together.
        chunks = min(n, -(-chunks // CHUNK_MULTIPLE) * CHUNK_MULTIPLE)
    return [range(k * n // chunks, (k + 1) * n // chunks) for k in range(chunks)]


def parallel_enabled() -> bool:
    """Whether run_chunks uses helper threads (more than one kernel thread)."""
    return _threads > 1


# The BLAS thread count is lowered to 1 while nnback's own threads run the GEMMs chunk by
# chunk (blas_single_threaded); a depth count restores it when the last such block ends.
_blas_lock = threading.Lock()
_blas_state: dict[str, Any] = {"libs": None, "depth": 0, "saved": []}


def _blas_controllers() -> list[Any]:
    """threadpoolctl's controllers of the BLAS libraries loaded when first asked (numpy's,
    and for example SciPy's own OpenBLAS once scipy or scikit-learn is imported); empty
    without threadpoolctl."""
    libs = _blas_state["libs"]
    if libs is None:
        libs = []
        try:
            import threadpoolctl

            libs = [
                c
                for c in threadpoolctl.ThreadpoolController().lib_controllers
                if c.user_api == "blas"
            ]
        except Exception:  # noqa: BLE001 - no control: GEMMs keep BLAS's own threads
            libs = []
        _blas_state["libs"] = libs
    return libs


def blas_is_single_threaded() -> bool:
    """Whether a :func:`blas_single_threaded` block is in force (nnback's threads split
    the GEMMs then)."""
    return _blas_state["depth"] > 0


@contextlib.contextmanager
def blas_single_threaded() -> Any:
    """Run the block with the BLAS on one thread; yields whether that could be done.

    For work split over :func:`run_chunks`, one GEMM per chunk on each thread. Measured on
    the 2-core machine: OpenBLAS's 2-thread GEMM splits its work statically and, once
    done, its worker spins (yielding) for a long while before it sleeps, so a helper
    thread of ours that runs meanwhile gets about half a core; with the other core busy
    with another process, a conv weight-gradient GEMM took 30-340 ms instead of 2-4 ms.
    Single-threaded GEMMs on nnback's threads never wait for each other. The setting is
    process-wide, for every BLAS library loaded (a numpy GEMM on another thread meanwhile
    runs single-threaded), and restored by the last block that leaves; without
    threadpoolctl, or with one kernel thread, nothing changes (yields False).
    """
    libs = _blas_controllers() if _threads > 1 else []
    if not libs:
        yield False
        return
    with _blas_lock:
        if _blas_state["depth"] == 0:
            _blas_state["saved"] = [lib.get_num_threads() for lib in libs]
            for lib in libs:
                lib.set_num_threads(1)
        _blas_state["depth"] += 1
    try:
        yield True
    finally:
        with _blas_lock:
            _blas_state["depth"] -= 1
            if _blas_state["depth"] == 0:
                for lib, saved in zip(libs, _blas_state["saved"], strict=True):
                    lib.set_num_threads(saved)


def configure_threading() -> None:
    """Set the OpenMP wait policy and Numba's threading layer unless the user chose them.

    Idempotent. It cannot change anything once Numba's thread pool has started (for
    example when the user ran ``parallel=True`` code before importing the numba backend);
    :func:`threading_facts` then reports what is actually in force.
    """
    if "OMP_WAIT_POLICY" not in os.environ:
        # os.environ also calls putenv, so the C runtime of a library loaded later sees it.
        os.environ["OMP_WAIT_POLICY"] = OMP_WAIT_POLICY_DEFAULT
        _set_by_nnback["OMP_WAIT_POLICY"] = True
    user_choice = any(
        os.environ.get(name, "").strip()
        for name in ("NUMBA_THREADING_LAYER", "NUMBA_THREADING_LAYER_PRIORITY")
    )
    if not user_choice and str(numba.config.THREADING_LAYER).lower() == "default":
        numba.config.THREADING_LAYER_PRIORITY = list(THREADING_LAYER_PRIORITY)
        _set_by_nnback["threading layer"] = True


def _pool_started() -> bool:
    """Whether Numba's thread pool has started (asking for the layer does not start it)."""
    try:
        numba.threading_layer()
    except ValueError:
        return False
    return True


def threading_facts() -> dict[str, str]:
    """Numba's version, threading layer, thread count and the OpenMP wait policy.

    Never starts the thread pool: ``numba.get_num_threads()`` would, so the configured
    ``NUMBA_NUM_THREADS`` is reported instead until something else has started it.
    """
    origin = "order set by nnback" if _set_by_nnback["threading layer"] else "chosen by the user"
    if _pool_started():
        layer = f"{numba.threading_layer()} (thread pool started; {origin})"
        threads = f"{numba.get_num_threads()} of NUMBA_NUM_THREADS={numba.config.NUMBA_NUM_THREADS}"
    else:
        chosen = str(numba.config.THREADING_LAYER)
        if chosen == "default":
            chosen = "first available of " + ", ".join(numba.config.THREADING_LAYER_PRIORITY)
        layer = f"{chosen} ({origin}; not started: nnback never starts it)"
        threads = f"NUMBA_NUM_THREADS={numba.config.NUMBA_NUM_THREADS}"
    policy = os.environ.get("OMP_WAIT_POLICY", "")
    who = "set by nnback" if _set_by_nnback["OMP_WAIT_POLICY"] else "set by the user"
    chosen = os.environ.get("NNBACK_KERNEL_THREADS", "").strip()
    origin = f"NNBACK_KERNEL_THREADS={chosen}" if chosen else "the usable cores"
    if _threads > 1:
        control = "BLAS held to 1 thread in fit/evaluate/predict of conv models"
        if not _blas_controllers():
            control = "BLAS keeps its threads: install threadpoolctl to split GEMM work too"
        kernel_threads = f"{_threads} ({origin}; {control})"
    else:
        kernel_threads = f"1 ({origin}; every kernel on the calling thread)"
    return {
        "numba": numba.__version__,
        "numba threading layer": layer,
        "numba threads": threads,
        "nnback kernel threads": kernel_threads,
        "OMP_WAIT_POLICY": f"{policy} ({who})",
    }


def blas_facts() -> dict[str, str]:
    """The BLAS library numpy uses and its thread count, as well as can be told.

    threadpoolctl (installed with scikit-learn) reads both from the loaded library; without
    it, numpy's build configuration names the library and the usual environment variables
    hint at the thread count.
    """
    try:
        import threadpoolctl
    except ImportError:
        threadpoolctl = None
    if threadpoolctl is not None:
        rows = [row for row in threadpoolctl.threadpool_info() if row.get("user_api") == "blas"]
        if rows:
            return {
                "blas": "; ".join(
                    f"{row.get('internal_api')} {row.get('version')} "
                    f"({row.get('threading_layer', '?')} threading), "
                    f"{row.get('num_threads')} threads"
                    for row in rows
                )
            }
    return {"blas": _blas_from_numpy_config()}


def _blas_from_numpy_config() -> str:
    """Best effort without threadpoolctl: numpy's build record plus thread variables."""
    import numpy

    name = "unknown"
    try:
        config: Any = numpy.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        name = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # noqa: BLE001 - older numpy has no mode="dicts"; the name stays unknown
        pass
    variables = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")
    threads = next((f"{v}={os.environ[v]}" for v in variables if v in os.environ), None)
    threads = threads or f"default (up to {os.cpu_count()} threads)"
    return f"{name}, {threads} (install threadpoolctl for the exact count)"


def _on_compile_start() -> None:
    """Print, once per process, that kernels are being compiled (a cold on-disk cache)."""
    global _notice_printed
    with _notice_lock:
        if _notice_printed:
            return
        _notice_printed = True
    print(
        "nnback: compiling the numba backend's kernels (first run, or after an upgrade: "
        "a few seconds); they are cached on disk for later runs",
        file=sys.stderr,
        flush=True,
    )


def install_compile_notice() -> None:
    """Announce on stderr the first compilation of one of our kernels in this process.

    Numba fires its ``numba:compile`` event only when a signature is neither already loaded
    nor found in the on-disk cache, so a warm cache costs nothing here and prints nothing:
    no file system checks, and the notice appears exactly when the wait begins.
    """
    global _listener_installed
    if _listener_installed:
        return
    _listener_installed = True
    from numba.core import event

    class _Listener(event.Listener):
        def on_start(self, ev: Any) -> None:
            dispatcher = (ev.data or {}).get("dispatcher")
            module = getattr(getattr(dispatcher, "py_func", None), "__module__", "") or ""
            if not _notice_printed and module.startswith(_KERNEL_PACKAGE + "."):
                _on_compile_start()

        def on_end(self, ev: Any) -> None:
            pass

    event.register("numba:compile", _Listener())
