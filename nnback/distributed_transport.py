"""How the ranks' flat gradient buffers are summed: the transports of :mod:`nnback.distributed`.

:func:`choose` picks one per ``fit``, collectively (every rank takes the same one):

* **Host buffers** (numpy, numba): ``Allreduce(MPI.IN_PLACE, grad)``.
* **NCCL** (cupy, when ``cupy.cuda.nccl`` imports, is available and initializes on every
  rank): rank 0 makes ``nccl.get_unique_id()``, MPI broadcasts it, every rank builds
  ``nccl.NcclCommunicator(size, uid, rank)`` on its current device, and the gradient sum is
  one ``allReduce`` in place on the flat device buffer, on the backend's current stream
  (asynchronous: the optimizer kernels after it are queued on the same stream). The small
  per-step status exchange stays on MPI (host). The communicator is kept for the next
  ``fit`` on the same device.
* **Host staging** (cupy otherwise): device -> host copy, MPI ``Allreduce``, host ->
  device copy. :attr:`Transport.description` says why NCCL is not in force.

CUDA-aware MPI on device buffers is not built: mpi4py cannot tell reliably whether the MPI
library accepts device pointers (a wrong guess crashes), and it cannot be tested here.

**One GPU per rank.** NCCL refuses two ranks on one GPU. nnback does not move a model
between devices: put each rank's model on its own GPU before building it, with
:func:`use_local_device` (the rule: the rank's index among the ranks on its host, from an
MPI shared-memory ``Split_type``, modulo the number of visible GPUs), or with
``CUDA_VISIBLE_DEVICES`` per rank. When two ranks of a host are on one device anyway, NCCL is
not tried and the gradients go through host staging, which says so.

**Choosing by hand.** ``NNBACK_DISTRIBUTED_TRANSPORT`` (or ``Distributed(transport=...)``,
which wins): ``auto`` (the default: NCCL where it works, else host staging), ``host``
(always host staging) or ``nccl`` (NCCL or an error on every rank, never a fallback).
"""

from __future__ import annotations

import os
import socket
import types
from typing import TYPE_CHECKING, Any

import numpy

from .errors import DistributedError, InputError

if TYPE_CHECKING:
    from .distributed import Distributed

__all__ = ["ENVIRONMENT", "MODES", "Transport", "choose", "import_nccl", "use_local_device"]

ENVIRONMENT = "NNBACK_DISTRIBUTED_TRANSPORT"
MODES = ("auto", "host", "nccl")
HOST = "host buffers (MPI Allreduce in place)"
STAGING = "host staging (device -> host, MPI Allreduce, host -> device)"


def mode_of(requested: str | None) -> str:
    """The transport asked for: ``requested``, else the environment, else ``auto``."""
    value = requested if requested is not None else os.environ.get(ENVIRONMENT) or "auto"
    value = value.strip().lower()
    if value not in MODES:
        source = "Distributed(transport=...)" if requested is not None else ENVIRONMENT
        raise InputError(f"{source}={value!r}: expected one of {', '.join(MODES)}")
    return value


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


def import_nccl(xp: Any) -> Any:
    """``cupy.cuda.nccl`` of the array module ``xp`` (the fake device carries its own).

    Raises ImportError, saying why, when CuPy has no usable NCCL.
    """
    if isinstance(xp, types.ModuleType):  # the real CuPy
        from importlib import import_module

        module = import_module(f"{xp.__name__}.cuda.nccl")
    else:
        module = xp.cuda.nccl
    if not getattr(module, "available", True):
        raise ImportError(f"{xp.__name__} was built without NCCL (cupy.cuda.nccl.available)")
    return module


def local_rank(group: Distributed) -> tuple[int, int]:
    """This rank's index among the group's ranks on its host, and how many those are."""
    node = group.comm.Split_type(group.MPI.COMM_TYPE_SHARED, key=group.rank)
    try:
        return node.Get_rank(), node.Get_size()
    finally:
        node.Free()


def use_local_device(group: Distributed, xp: Any = None) -> int:
    """Collective: make GPU ``local rank % device count`` current on this rank; return it.

    Call it before building the model (its arrays are allocated on the current device).
    ``xp`` is the array module (CuPy by default; a test passes the fake device's).
    """
    if xp is None:
        import cupy as xp
    index, _ = local_rank(group)
    device = index % xp.cuda.runtime.getDeviceCount()
    xp.cuda.Device(device).use()
    return device


class Transport:
    """Sums a flat gradient buffer over the ranks; ``description`` says how."""

    kind = "host"

    def __init__(self, group: Distributed, backend: Any, description: str) -> None:
        self.group = group
        self.backend = backend
        self.description = description

    def allreduce(self, flat: Any) -> None:
        group = self.group
        if group.size == 1:
            return
        MPI = group.MPI
        if isinstance(flat, numpy.ndarray):
            group.comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)
            return
        backend = self.backend
        host = numpy.ascontiguousarray(backend.to_numpy(flat))
        group.comm.Allreduce(MPI.IN_PLACE, host, op=MPI.SUM)
        backend.copy_into_inplace(flat, backend.asarray(host))

    def close(self) -> None:
        pass


class NcclTransport(Transport):
    """``allReduce`` in place on the device buffer, on the backend's current stream."""

    kind = "nccl"

    def __init__(self, group: Distributed, backend: Any, nccl: Any, comm: Any, device: int):
        version = _version(nccl)
        super().__init__(
            group,
            backend,
            f"NCCL (cupy.cuda.nccl, NCCL {version}, GPU {device} on rank {group.rank}: "
            "allReduce in place on the device buffer, on the current stream)",
        )
        self.nccl = nccl
        self.comm = comm
        self.device = device
        self.xp = backend.xp
        self.types = {
            numpy.dtype(numpy.float32): nccl.NCCL_FLOAT32,
            numpy.dtype(numpy.float64): nccl.NCCL_FLOAT64,
        }

    def arguments(self, flat: Any) -> tuple[int, int, int, int, int, int]:
        """``allReduce``'s arguments for ``flat`` in place on the current stream."""
        if not flat.flags.c_contiguous:
            raise DistributedError("NCCL allReduce needs a contiguous gradient buffer")
        ptr = int(flat.data.ptr)
        stream = int(self.xp.cuda.get_current_stream().ptr)
        return ptr, ptr, int(flat.size), self.types[flat.dtype], self.nccl.NCCL_SUM, stream

    def allreduce(self, flat: Any) -> None:
        if self.group.size == 1:
            return
        self.comm.allReduce(*self.arguments(flat))

    def close(self) -> None:
        comm, self.comm = self.comm, None
        if comm is not None:
            comm.destroy()


def _version(nccl: Any) -> str:
    try:
        code = int(nccl.get_version())
    except Exception:
        return "of unknown version"
    return f"{code // 10000}.{code // 100 % 100}.{code % 100}"


def choose(group: Distributed, backend: Any, flat: Any) -> Transport:
    """Collective: the transport every rank uses for ``flat`` in this ``fit``."""
    mode = mode_of(group.requested_transport)
    on_host = isinstance(flat, numpy.ndarray)
    if group.size == 1:
        return Transport(group, backend, HOST if on_host else STAGING)
    # Propose NCCL locally for a device buffer, then agree (every rank takes part).
    cached = group.nccl_transport
    nccl = device = None
    reason = None
    if on_host:
        reason = f"rank {group.rank} has host buffers"
    elif mode == "host":
        reason = f"{ENVIRONMENT}=host" if group.requested_transport is None else "transport='host'"
    else:
        try:
            nccl = import_nccl(backend.xp)
            device = int(backend.xp.cuda.Device().id)
            owner = getattr(getattr(flat, "device", None), "id", device)
            if owner != device:
                raise DistributedError(
                    f"the model is on GPU {owner}, but GPU {device} is current; use one GPU"
                )
            if flat.dtype not in (numpy.dtype(numpy.float32), numpy.dtype(numpy.float64)):
                raise DistributedError(f"no NCCL data type for {flat.dtype}")
        except Exception as exc:
            reason = f"cupy.cuda.nccl unavailable on rank {group.rank} ({_one_line(exc)})"
    reuse = (
        cached is not None
        and cached.xp is backend.xp
        and cached.device == device
        and cached.comm is not None
    )
    where = (socket.gethostname(), device)
    every = group.comm.allgather((reason, where, reuse))
    reasons = [r for r, _, _ in every if r is not None]
    if not reasons:
        places = [w for _, w, _ in every]
        shared = [(r, w) for r, w in enumerate(places) if places.count(w) > 1]
        if shared:
            listed = ", ".join(f"rank {r}: GPU {w[1]} on {w[0]}" for r, w in shared)
            reasons.append(
                f"two ranks share one GPU ({listed}), which NCCL refuses; put each rank on "
                "its own GPU (nnback.distributed_transport.use_local_device) before building "
                "the model"
            )
    if not reasons and all(r for _, _, r in every):
        assert cached is not None
        cached.backend = backend
        return cached
    if cached is not None:
        group.nccl_transport = None
        cached.close()
    if not reasons:
        transport, reason = _connect(group, backend, nccl, device)
        if transport is not None:
            group.nccl_transport = transport
            return transport
        reasons.append(reason)
    if on_host:
        return Transport(group, backend, HOST)
    text = f"{STAGING}; NCCL not used: {reasons[0]}"
    if mode == "nccl":
        raise DistributedError(f"{ENVIRONMENT}=nccl, but {text.split('; ', 1)[1]}")
    return Transport(group, backend, text)


def _connect(group: Distributed, backend: Any, nccl: Any, device: int) -> tuple[Any, str]:
    """Collective: a communicator on every rank, or (None, why not) on every rank."""
    uid = failure = None
    if group.is_root:
        try:
            uid = nccl.get_unique_id()
        except Exception as exc:
            failure = f"nccl.get_unique_id() failed on rank 0 ({_one_line(exc)})"
    uid, failure = group.comm.bcast((uid, failure))
    if failure is not None:
        return None, failure
    comm = None
    try:
        comm = nccl.NcclCommunicator(group.size, uid, group.rank)
    except Exception as exc:
        failure = f"NcclCommunicator failed on rank {group.rank} ({_one_line(exc)})"
    failures = [f for f in group.comm.allgather(failure) if f is not None]
    if failures:
        if comm is not None:
            comm.destroy()
        return None, failures[0]
    return NcclTransport(group, backend, nccl, comm, device), ""
