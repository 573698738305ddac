"""A fake ``cupy.cuda.nccl`` for the fake CuPy device, run over the test job's MPI ranks.

It has the part of CuPy's NCCL binding that :mod:`nnback.distributed_transport` uses, with
the real names, signatures and constants: ``get_unique_id()``, ``get_version()``,
``NcclCommunicator(ndev, uid, rank)`` with ``allReduce(sendbuf, recvbuf, count, datatype,
op, stream)`` on raw device pointers, ``rank_id``, ``size``, ``device_id``, ``destroy``;
``NcclError``; ``NCCL_FLOAT32`` and the other data types; ``NCCL_SUM`` and the other ops.

Each rank of an ``mpiexec`` job holds its own :class:`~nnback.testing.fake_cupy.FakeCupy`
(one process, one fake GPU). The communicator moves the bytes with MPI over the job's
communicator: an ``allReduce`` copies the send buffer's fake device memory to the host,
gathers every rank's copy and sums them *in NCCL rank order*, so every rank gets the same
bits, as NCCL's ring gives them. It refuses misuse as NCCL would, or more strictly:

* ``NcclCommunicator``: a unique id that is not a 128-byte id, a rank outside
  ``[0, ndev)``, ranks that disagree on the id or the size, or two ranks on one GPU
  (host name and device index; NCCL: "Duplicate GPU detected", ``ncclInvalidUsage``) raise
  :class:`NcclError` on every rank. Creating one while a stream captures is refused.
  The fake needs every rank of its MPI communicator in the NCCL communicator.
* ``allReduce``: a pointer that is not inside a live array of this fake device (one whose
  ``.data.ptr`` was taken), a buffer of another dtype than ``datatype`` (stricter than NCCL,
  which cannot see dtypes), a range past the array's end, an unknown data type or op, an
  unknown stream, a destroyed communicator, or ranks that disagree on count, type or op
  (NCCL would hang or corrupt memory) raise :class:`NcclError`.
* Stream capture: while a stream captures, an ``allReduce`` *on that stream* is recorded
  into the graph (NCCL >= 2.9 allows it; an older ``version`` raises CaptureError) and runs
  when the graph is replayed; on another stream it is refused, as CUDA would invalidate
  the capture.

Every ``allReduce`` that ran is appended to the device's ``launches`` as
``"ncclAllReduce"``, so a test can tell which transport moved the gradients.
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, Any

import numpy

from .fake_capture import CaptureError

if TYPE_CHECKING:
    from .fake_cupy import FakeCupy

__all__ = ["FakeNccl", "FakeNcclCommunicator", "NcclError"]

# NCCL's enums (nccl.h), as cupy.cuda.nccl exports them.
NCCL_INT8, NCCL_UINT8, NCCL_INT32, NCCL_UINT32 = 0, 1, 2, 3
NCCL_INT64, NCCL_UINT64, NCCL_FLOAT16, NCCL_FLOAT32, NCCL_FLOAT64 = 4, 5, 6, 7, 8
NCCL_SUM, NCCL_PROD, NCCL_MAX, NCCL_MIN = 0, 1, 2, 3
_DTYPES = {
    NCCL_INT8: numpy.int8,
    NCCL_UINT8: numpy.uint8,
    NCCL_INT32: numpy.int32,
    NCCL_UINT32: numpy.uint32,
    NCCL_INT64: numpy.int64,
    NCCL_UINT64: numpy.uint64,
    NCCL_FLOAT16: numpy.float16,
    NCCL_FLOAT32: numpy.float32,
    NCCL_FLOAT64: numpy.float64,
}
_OPS = {NCCL_SUM: numpy.add, NCCL_PROD: numpy.multiply, NCCL_MAX: numpy.maximum}
_OPS[NCCL_MIN] = numpy.minimum
# ncclResult_t
_INVALID_ARGUMENT, _INVALID_USAGE = 4, 5
_UNIQUE_ID_BYTES = 128


class NcclError(RuntimeError):
    """``cupy.cuda.nccl.NcclError``: a failed NCCL call and its status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"NCCL error {status}: {message}")
        self.status = status


class FakeNccl:
    """The fake ``cupy.cuda.nccl`` module of one :class:`FakeCupy` device.

    Parameters
    ----------
    fake : FakeCupy
        The device whose memory and streams the communicators use.
    comm : mpi4py communicator, optional
        The MPI job the communicators run over; ``MPI.COMM_WORLD`` by default.
    version : int
        What ``get_version()`` reports (NCCL's ``major*10000 + minor*100 + patch``).
        Below 20900 an ``allReduce`` cannot be captured.
    """

    NcclError = NcclError
    available = True

    def __init__(self, fake: FakeCupy, comm: Any = None, version: int = 21805) -> None:
        self._fake = fake
        self._comm = comm
        self.version = version
        self.communicators: list[FakeNcclCommunicator] = []
        for name, value in globals().items():
            if name.startswith("NCCL_"):
                setattr(self, name, value)

    def get_version(self) -> int:
        return self.version

    def get_unique_id(self) -> tuple[int, ...]:
        self._fake.streams.refuse("nccl.get_unique_id()")
        return tuple(os.urandom(_UNIQUE_ID_BYTES))

    def NcclCommunicator(  # noqa: N802 (CuPy's name: a class there)
        self,
        ndev: int,
        commId: tuple[int, ...],
        rank: int,  # noqa: N803 (CuPy's names)
    ) -> FakeNcclCommunicator:
        if self._comm is None:
            from mpi4py import MPI

            self._comm = MPI.COMM_WORLD
        communicator = FakeNcclCommunicator(self, self._comm, ndev, commId, rank)
        self.communicators.append(communicator)
        return communicator


class FakeNcclCommunicator:
    """One rank's fake NCCL communicator (see the module docstring)."""

    def __init__(self, nccl: FakeNccl, comm: Any, ndev: int, uid: Any, rank: int) -> None:
        fake = nccl._fake
        fake.streams.refuse("ncclCommInitRank")
        self._nccl = nccl
        self._fake = fake
        problem = None
        if not (
            isinstance(uid, tuple)
            and len(uid) == _UNIQUE_ID_BYTES
            and all(isinstance(b, int) and 0 <= b < 256 for b in uid)
        ):
            problem = "the unique id is not a 128-byte ncclUniqueId from get_unique_id()"
        elif not (isinstance(ndev, int) and isinstance(rank, int) and 0 <= rank < ndev):
            problem = f"rank {rank!r} outside [0, {ndev!r})"
        self.device = fake.current_device
        where = (socket.gethostname(), self.device)
        every = comm.allgather((problem, bytes(uid) if problem is None else b"", ndev, rank, where))
        problems = [f"rank {r}: {p}" for r, (p, *_) in enumerate(every) if p is not None]
        if problems:
            raise NcclError(_INVALID_ARGUMENT, "; ".join(problems))
        if comm.Get_size() != ndev or sorted(e[3] for e in every) != list(range(ndev)):
            raise NcclError(
                _INVALID_USAGE,
                f"{comm.Get_size()} MPI ranks joined a communicator of {ndev} with NCCL ranks "
                f"{[e[3] for e in every]} (the fake needs every MPI rank, each NCCL rank once)",
            )
        if len({e[1] for e in every}) > 1 or len({e[2] for e in every}) > 1:
            raise NcclError(_INVALID_USAGE, "the ranks passed different unique ids or sizes")
        places = [e[4] for e in every]
        if len(set(places)) < len(places):
            raise NcclError(
                _INVALID_USAGE,
                "Duplicate GPU detected: two ranks on one device "
                f"({', '.join(f'rank {e[3]}: {e[4][0]} GPU {e[4][1]}' for e in every)})",
            )
        self._rank = rank
        self._size = ndev
        self._comm = comm.Split(0, rank)  # ordered by NCCL rank
        self.destroyed = False

    def rank_id(self) -> int:
        return self._rank

    def size(self) -> int:
        return self._size

    def device_id(self) -> int:
        return self.device

    def destroy(self) -> None:
        if not self.destroyed:
            self.destroyed = True
            self._comm.Free()

    def abort(self) -> None:
        self.destroy()

    def allReduce(  # noqa: N802 (CuPy's name)
        self, sendbuf: int, recvbuf: int, count: int, datatype: int, op: int, stream: int
    ) -> None:
        if self.destroyed:
            raise NcclError(_INVALID_ARGUMENT, "allReduce on a destroyed communicator")
        if datatype not in _DTYPES:
            raise NcclError(_INVALID_ARGUMENT, f"unknown NCCL data type {datatype!r}")
        if op not in _OPS:
            raise NcclError(_INVALID_ARGUMENT, f"unknown NCCL reduction op {op!r}")
        if not isinstance(count, int | numpy.integer) or count < 0:
            raise NcclError(_INVALID_ARGUMENT, f"count {count!r} is not a size")
        for name, value in (("sendbuf", sendbuf), ("recvbuf", recvbuf), ("stream", stream)):
            if not isinstance(value, int | numpy.integer):
                raise TypeError(f"allReduce: {name} must be an int (a raw pointer), got {value!r}")
        dtype = numpy.dtype(_DTYPES[datatype])
        streams = self._fake.streams
        if not streams.known(int(stream)):
            raise NcclError(_INVALID_ARGUMENT, f"stream {int(stream):#x} is not a stream here")
        send = self._fake.buffer_at(int(sendbuf), dtype, int(count), "allReduce sendbuf")
        recv = self._fake.buffer_at(int(recvbuf), dtype, int(count), "allReduce recvbuf")
        capturing = streams.capturing
        if capturing is not None:
            if capturing.ptr != int(stream):
                raise CaptureError(
                    f"ncclAllReduce on stream {int(stream):#x} while stream "
                    f"{capturing.ptr:#x} is capturing (the capture would be invalidated)"
                )
            if self._nccl.version < 20900:
                raise CaptureError(
                    f"NCCL {self._nccl.version} cannot be captured in a CUDA graph (2.9 can)"
                )
        reduce = _OPS[op]
        signature = (int(count), datatype, op)
        in_graph = capturing is not None

        def run() -> None:
            every = self._comm.allgather(signature)
            if any(s != signature for s in every):
                raise NcclError(
                    _INVALID_USAGE,
                    f"the ranks' allReduce calls differ (count, type, op per rank: {every})",
                )
            gathered = numpy.empty((self._size, int(count)), dtype)
            self._comm.Allgather(numpy.ascontiguousarray(send), gathered)
            total = gathered[0].copy()
            for row in gathered[1:]:
                reduce(total, row, out=total)
            recv[...] = total
            from .fake_cupy import Launch

            self._fake.launches.append(Launch("ncclAllReduce", (1,), (1,), graph=in_graph))

        if in_graph:
            streams.recorded.append(("ncclAllReduce", run))
        else:
            run()
