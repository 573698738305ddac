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
from numpy.lib import format as npy_format

from .backends import Backend, get_backend
from .errors import ModelFileError

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
    """Fail before any work when ``path`` cannot be written; return its directory."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise IsADirectoryError(
            errno.EISDIR,
            f"cannot save the model to {path}: it is a directory; pass a file path such as "
            f"{os.path.join(path, 'model.npz')}",
            path,
        )
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            errno.ENOENT,
            f"cannot save the model to {path}: the directory {directory} does not exist; "
            "create it first (os.makedirs(directory, exist_ok=True))",
            path,
        )
    return directory


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
    """
    if not model.built:
        model.build()
    path = os.fspath(path)
    directory = _check_destination(path)
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
    mode = _file_mode(path)
    descriptor, temporary = tempfile.mkstemp(prefix=".nnback-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            numpy.savez(handle, **{_HEADER: encoded}, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        # Whatever happened (full disk, Ctrl-C), the destination was not touched. (A process
        # killed outright leaves its .nnback-*.tmp file behind, never a half-written model.)
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    _fsync_directory(directory)


def _read_member(archive: zipfile.ZipFile, name: str, path: str) -> numpy.ndarray:
    """One ``.npy`` member, its declared size checked against the file before allocating.

    ``numpy.load`` allocates whatever a (possibly corrupted) header declares; here a header
    that does not match the bytes stored is a corrupted file, found without the allocation.
    Reading the member to its end makes ``zipfile`` verify its CRC-32.
    """
    info = archive.getinfo(name + ".npy")
    with archive.open(info) as handle:
        version = npy_format.read_magic(handle)
        if version == (1, 0):
            shape, fortran_order, dtype = npy_format.read_array_header_1_0(handle)
        else:
            shape, fortran_order, dtype = npy_format.read_array_header_2_0(handle)
        if dtype.hasobject:
            raise ModelFileError(f"{path}: array {name!r} holds Python objects; not a model file")
        expected = math.prod(shape) * dtype.itemsize
        stored = info.file_size - handle.tell()
        if expected != stored:
            raise ModelFileError(
                f"{path}: array {name!r} declares shape {shape} of {dtype} ({expected} bytes) "
                f"but {stored} bytes are stored; the file is corrupted"
            )
        data = handle.read(expected)
        if len(data) != expected or handle.read(1):
            raise ModelFileError(f"{path}: array {name!r} is truncated; the file is corrupted")
    order = "F" if fortran_order else "C"
    return numpy.frombuffer(data, dtype=dtype).reshape(shape, order=order).copy()


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


def _read(path: str) -> tuple[dict[str, Any], dict[str, numpy.ndarray]]:
    if os.path.isdir(path):
        raise IsADirectoryError(
            errno.EISDIR, f"{path} is a directory; pass the path of a saved model file", path
        )
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, f"no model file at {path}; check the path", path)
    try:
        with zipfile.ZipFile(path) as archive:
            members = [n[: -len(".npy")] for n in archive.namelist() if n.endswith(".npy")]
            if _HEADER not in members:
                raise ModelFileError(f"{path}: not an nnback model file (no nnback header)")
            raw = _read_member(archive, _HEADER, path)
            header = json.loads(raw.tobytes().decode("utf-8"))
            arrays = {n: _read_member(archive, n, path) for n in members if n != _HEADER}
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
    return header, arrays


def _check_sizes(path: str, config: Any, arrays: dict[str, numpy.ndarray]) -> None:
    """Refuse Dense layers declared larger than their stored arrays, before building.

    Building allocates whatever the header declares (an edited header can declare
    anything), while the arrays, covered by the checksum, are what the file really holds.
    Smaller or inconsistent sizes are left to the build and the copy, which name them.
    """
    layers = config.get("layers") if isinstance(config, dict) else None
    if not isinstance(layers, list):
        raise ModelFileError(f"{path}: the header does not describe a valid model (no config)")
    for index, layer in enumerate(layers):
        if not isinstance(layer, dict) or layer.get("class") != "Dense":
            continue
        n_in, n_out = layer.get("n_inputs"), layer.get("n_neurons")
        if not (isinstance(n_in, int) and isinstance(n_out, int)):
            continue  # Dense() itself says what is wrong with them
        key = f"layer{index}/weights"
        stored = arrays.get(key)
        if stored is None or n_in * n_out > stored.size:
            raise ModelFileError(f"{path}: missing or misshapen array {key!r}")


def load_model(path: str | os.PathLike[str], backend: str | Backend | None = None) -> Sequential:
    """Load a model saved by :meth:`Sequential.save` onto ``backend`` (default: the current).

    Raises
    ------
    ModelFileError
        The file is truncated, corrupted, not an nnback model, or of a newer format.
    """
    from .model import Sequential

    path = os.fspath(path)
    header, arrays = _read(path)
    if not isinstance(header, dict):
        raise ModelFileError(f"{path}: malformed nnback header (expected a JSON object)")
    if header.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not an nnback model file (format {header.get('format')!r})")
    version = header.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: format version {version!r} is newer than this nnback reads "
            f"({FORMAT_VERSION}); upgrade nnback"
        )
    if _checksum(arrays) != header.get("checksum"):
        raise ModelFileError(f"{path}: checksum mismatch, the file is corrupted")
    _check_sizes(path, header.get("config"), arrays)
    chosen = get_backend(backend)  # an unknown backend keeps its own error type
    try:
        model = Sequential.from_config(header["config"])
        model.build(chosen)
        model.rng.bit_generator.state = header["rng_state"]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFileError(
            f"{path}: the header does not describe a valid model ({type(exc).__name__}: {exc})"
        ) from None
    target = model.backend
    for index, layer in enumerate(model.layers):
        for name, value, _, _, _ in layer.parameters():
            key = f"layer{index}/{name}"
            if key not in arrays or arrays[key].shape != tuple(value.shape):
                raise ModelFileError(f"{path}: missing or misshapen array {key!r}")
            target.copy_into_inplace(value, target.asarray(arrays[key], dtype=value.dtype))
            prefix = key + "/"
            slots = {k[len(prefix) :]: a for k, a in arrays.items() if k.startswith(prefix)}
            if slots:
                layer.optimizer_state[name] = {
                    slot: target.asarray(array, dtype=value.dtype) for slot, array in slots.items()
                }
    return model
