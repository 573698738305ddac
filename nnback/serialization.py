"""Saving and loading models: one ``.npz`` file holding the arrays and a JSON header.

The header carries a format version, the architecture, loss, optimizer (with its
iteration count), metric, dtype, seed, the state of the model's random generator, and a
SHA-256 checksum over every array's name, dtype, shape and bytes. Loading checks all of it
and raises :class:`~nnback.errors.ModelFileError` with the reason, never a half-built model.

Saving is atomic: the file is written next to its destination under a temporary name,
flushed to disk, then renamed over the destination, so an interrupted save (an exception,
Ctrl-C, or the process killed) leaves the old file as it was.

Corruption is caught in two layers: every zip member carries a CRC-32 that ``zipfile``
checks as the member is read (random damage anywhere, header included), and the SHA-256
over the arrays catches arrays changed consistently with their CRC.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import stat
import struct
import tempfile
import zipfile
import zlib
from typing import TYPE_CHECKING, Any

import numpy

from .backends import Backend, get_backend
from .errors import InputError, ModelFileError
from .model_file_checks import (
    MAX_HEADER_BYTES,
    check_dtype,
    check_header,
    check_members,
    check_rng_state,
    convert_array,
    expected_arrays,
)
from .model_file_reader import (
    BoundedFile,
    check_member_info,
    file_kind,
    open_regular_file,
    read_member,
    read_npy_header,
)

if TYPE_CHECKING:
    from .model import Sequential

__all__ = ["FORMAT", "FORMAT_VERSION", "load_model", "save_model"]

FORMAT = "nnback-model"
FORMAT_VERSION = 1
_HEADER = "__nnback_header__"


def _checksum(arrays: dict[str, numpy.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = numpy.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _collect_arrays(model: Sequential) -> dict[str, numpy.ndarray]:
    backend = model.backend
    arrays: dict[str, numpy.ndarray] = {}
    for index, layer in enumerate(model.layers):
        for name, value, _, _, _ in layer.parameters():
            arrays[f"layer{index}/{name}"] = backend.to_numpy(value)
        for name, slots in getattr(layer, "optimizer_state", {}).items():
            for slot, value in slots.items():
                arrays[f"layer{index}/{name}/{slot}"] = backend.to_numpy(value)
    return arrays


def _check_destination(path: str) -> str:
    """Fail before any work when ``path`` cannot be written; return the file to replace.

    Only a regular file, or a name not yet taken, may be replaced: a device, FIFO or socket
    never is (renaming over ``/dev/null`` as root would destroy it). A symbolic link is
    followed, like ``open()`` and ``numpy.save`` follow it: the file it points to is
    replaced atomically and the link keeps pointing to it. A link to nothing is refused
    rather than followed, so a planted dangling link cannot make a save create a file
    elsewhere.
    """
    target = path
    if os.path.islink(path):
        target = os.path.realpath(path)
        if not os.path.exists(target):
            raise FileNotFoundError(
                errno.ENOENT,
                f"cannot save the model to {path}: it is a symbolic link to {target}, which "
                "does not exist; remove the link or save to another path",
                path,
            )
    if os.path.isdir(target):
        raise IsADirectoryError(
            errno.EISDIR,
            f"cannot save the model to {path}: it is a directory; pass a file path such as "
            f"{os.path.join(path, 'model.npz')}",
            path,
        )
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        raise InputError(
            f"cannot save the model to {path}: it is {file_kind(mode)}, not a regular file; "
            "only a regular file (or a new name) is replaced, so pass a file path such as "
            "model.npz"
        )
    directory = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            errno.ENOENT,
            f"cannot save the model to {path}: the directory {directory} does not exist; "
            "create it first (os.makedirs(directory, exist_ok=True))",
            path,
        )
    return target


def _file_mode(path: str) -> int:
    """The permissions the saved file gets: those of the file it replaces, else the usual
    ``0o666`` less the umask (``mkstemp`` would leave ``0o600``, unlike ``numpy.save``)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        umask = os.umask(0)  # the only way to read it; set back at once
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_directory(directory: str) -> None:
    """Make the rename durable too (POSIX); skipped where a directory cannot be opened."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def save_model(model: Sequential, path: str | os.PathLike[str]) -> None:
    """Write ``model`` to ``path`` (conventionally ``*.npz``), replacing it atomically.

    Raises
    ------
    IsADirectoryError, FileNotFoundError
        ``path`` is a directory, or its directory does not exist (checked before writing).
    InputError
        ``path`` is a device, FIFO or socket: only a regular file is ever replaced.
    """
    from .distributed import group_of

    group = group_of(model)
    if group is not None and group.size > 1:
        # Trained data-parallel: every rank calls save, rank 0 alone writes the file.
        group.save_on_root(lambda: _save_here(model, path), f"save({os.fspath(path)!r})")
        return
    _save_here(model, path)


def _save_here(model: Sequential, path: str | os.PathLike[str]) -> None:
    if not model.built:
        model.build()
    path = os.fspath(path)
    target = _check_destination(path)
    directory = os.path.dirname(os.path.abspath(target))
    arrays = _collect_arrays(model)
    header = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "config": model.get_config(),
        "rng_state": model.rng.bit_generator.state,
        "saved_from_backend": model.backend.name,
        "checksum": _checksum(arrays),
    }
    encoded = numpy.frombuffer(json.dumps(header).encode("utf-8"), dtype=numpy.uint8)
    mode = _file_mode(target)
    descriptor, temporary = tempfile.mkstemp(prefix=".nnback-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            numpy.savez(handle, **{_HEADER: encoded}, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        # Whatever happened (full disk, Ctrl-C), the destination was not touched. (A process
        # killed outright leaves its .nnback-*.tmp file behind, never a half-written model.)
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    _fsync_directory(directory)


def _read_array(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, shape: tuple[int, ...], path: str
) -> numpy.ndarray:
    """One ``.npy`` member of the expected ``shape``, checked before anything is allocated.

    ``numpy.load`` allocates whatever a (possibly edited) header declares. Here the shape
    must be the one the declared model needs and the dtype a float of at most 8 bytes, so
    at most 8 bytes per parameter are ever read, whatever the zip or .npy headers say.
    """
    with archive.open(info) as handle:
        stored_shape, fortran_order, dtype, header_len = read_npy_header(handle, name, path)
        if name == _HEADER:
            if len(stored_shape) != 1 or dtype != numpy.uint8 or stored_shape[0] > MAX_HEADER_BYTES:
                raise ModelFileError(
                    f"{path}: the nnback header is not a byte string of at most "
                    f"{MAX_HEADER_BYTES} bytes (got {dtype} of shape {stored_shape})"
                )
        else:
            check_dtype(path, name, dtype)
            if stored_shape != shape:
                raise ModelFileError(
                    f"{path}: missing or misshapen array {name!r} (stored shape {stored_shape}, "
                    f"the declared model needs {shape})"
                )
        expected = math.prod(stored_shape) * dtype.itemsize
        if info.file_size != header_len + expected:
            raise ModelFileError(
                f"{path}: array {name!r} declares shape {stored_shape} of {dtype} ({expected} "
                f"bytes) but {info.file_size - header_len} bytes are stored; the file is corrupted"
            )
        buffer = numpy.empty(expected, dtype=numpy.uint8)
        read_member(handle, memoryview(buffer), f"array {name!r}", path)
    order = "F" if fortran_order else "C"
    return buffer.view(dtype).reshape(stored_shape, order=order)


# What reading a damaged zip or .npy member can raise (a bad CRC is a BadZipFile; an
# unsupported compression method a NotImplementedError; "encrypted" a RuntimeError).
_READ_ERRORS = (
    zipfile.BadZipFile,
    ValueError,
    OSError,
    EOFError,
    KeyError,
    NotImplementedError,
    RuntimeError,
    zlib.error,
    struct.error,
    OverflowError,
)
# What building a model from an edited config can raise.
_CONFIG_ERRORS = (KeyError, TypeError, ValueError, AttributeError, OverflowError, RecursionError)


def _model_from_config(path: str, config: Any) -> Sequential:
    from .model import Sequential

    try:
        return Sequential.from_config(config)
    except _CONFIG_ERRORS as exc:
        raise ModelFileError(
            f"{path}: the header does not describe a valid model ({type(exc).__name__}: {exc})"
        ) from None


def _read_archive(
    archive: zipfile.ZipFile, path: str, size: int
) -> tuple[dict[str, Any], Sequential, dict[str, numpy.ndarray]]:
    """The header, the model it declares (unbuilt) and the arrays, in that order, each
    member checked against what the header declares before it is read."""
    infos = archive.infolist()
    names = [info.filename for info in infos]
    if len(set(names)) != len(names):
        raise ModelFileError(f"{path}: the zip file holds two members of the same name")
    for info in infos:
        check_member_info(info, size, path)
    members = {info.filename[: -len(".npy")]: info for info in infos}
    if _HEADER not in members:
        raise ModelFileError(f"{path}: not an nnback model file (no nnback header)")
    raw = _read_array(archive, members.pop(_HEADER), _HEADER, (), path)
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise ModelFileError(f"{path}: malformed nnback header ({type(exc).__name__})") from None
    check_header(path, header, FORMAT, FORMAT_VERSION)
    model = _model_from_config(path, header["config"])
    shapes, _ = expected_arrays(path, model)
    for info in members.values():
        if not info.filename.endswith(".npy") or info.filename[: -len(".npy")] not in shapes:
            raise ModelFileError(
                f"{path}: unexpected member {info.filename!r} (not an array of the declared "
                "model); the file was edited or written by another program"
            )
    arrays = {
        name: _read_array(archive, info, name, shapes[name], path) for name, info in members.items()
    }
    return header, model, arrays


def _read(path: str) -> tuple[dict[str, Any], Sequential, dict[str, numpy.ndarray]]:
    raw, size = open_regular_file(path)
    with raw:
        try:
            with zipfile.ZipFile(BoundedFile(raw, size, path)) as archive:
                return _read_archive(archive, path, size)
        except ModelFileError:
            raise
        except _READ_ERRORS as exc:
            if "CRC" in str(exc):
                raise ModelFileError(
                    f"{path}: checksum mismatch (zip CRC-32), the file is corrupted: {exc}"
                ) from None
            raise ModelFileError(
                f"{path}: cannot be read as an nnback model file (truncated, corrupted or not "
                f"a model file): {type(exc).__name__}: {exc}"
            ) from None


def load_model(path: str | os.PathLike[str], backend: str | Backend | None = None) -> Sequential:
    """Load a model saved by :meth:`Sequential.save` onto ``backend`` (default: the current).

    The file is untrusted input: only a regular file is opened, every member is checked
    against the model the header declares before it is read, and the header and arrays
    are checked for consistency (see :mod:`nnback.model_file_checks`), so memory use is
    bounded by the size of the declared model and a bad file gives a ModelFileError.

    Raises
    ------
    ModelFileError
        The file is not a regular file, or is truncated, corrupted, inconsistent, not an
        nnback model, or of a newer format.
    """
    path = os.fspath(path)
    header, model, arrays = _read(path)
    if _checksum(arrays) != header["checksum"]:
        raise ModelFileError(f"{path}: checksum mismatch, the file is corrupted")
    shapes, parameter_slots = expected_arrays(path, model)
    check_members(path, arrays, shapes, parameter_slots)
    arrays = {name: convert_array(path, name, a, model.dtype) for name, a in arrays.items()}
    rng_state = header.get("rng_state")
    check_rng_state(path, rng_state, numpy.random.default_rng(0))
    chosen = get_backend(backend)  # an unknown backend keeps its own error type
    try:
        model.build(chosen)
    except _CONFIG_ERRORS as exc:
        raise ModelFileError(
            f"{path}: the header does not describe a valid model ({type(exc).__name__}: {exc})"
        ) from None
    model.rng.bit_generator.state = rng_state
    target = model.backend
    for index, layer in enumerate(model.layers):
        for name, value, _, _, _ in layer.parameters():
            key = f"layer{index}/{name}"
            target.copy_into_inplace(value, target.asarray(arrays[key], dtype=value.dtype))
            slots = {
                s: arrays[f"{key}/{s}"] for s in parameter_slots[key] if f"{key}/{s}" in arrays
            }
            if slots:
                layer.optimizer_state[name] = {
                    slot: target.asarray(array, dtype=value.dtype) for slot, array in slots.items()
                }
    return model
