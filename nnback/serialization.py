"""Saving and loading models: one ``.npz`` file holding the arrays and a JSON header.

The header carries a format version, the architecture, loss, optimizer (with its
iteration count), metric, dtype, seed, the state of the model's random generator, and a
SHA-256 checksum over every array's name, dtype, shape and bytes. Loading checks all of it
and raises :class:`~nnback.errors.ModelFileError` with the reason, never a half-built model.

Saving is atomic: the file is written next to its destination under a temporary name,
flushed to disk, then renamed over the destination, so an interrupted save leaves the old
file as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from typing import TYPE_CHECKING, Any

import numpy

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


def save_model(model: Sequential, path: str | os.PathLike[str]) -> None:
    """Write ``model`` to ``path`` (conventionally ``*.npz``), replacing it atomically."""
    if not model.built:
        model.build()
    path = os.fspath(path)
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
    directory = os.path.dirname(os.path.abspath(path))
    descriptor, temporary = tempfile.mkstemp(prefix=".nnback-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            numpy.savez(handle, **{_HEADER: encoded}, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        # Whatever happened (full disk, Ctrl-C), the destination was not touched.
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _read(path: str) -> tuple[dict[str, Any], dict[str, numpy.ndarray]]:
    try:
        with numpy.load(path, allow_pickle=False) as archive:
            if _HEADER not in archive.files:
                raise ModelFileError(f"{path}: not an nnback model file (no nnback header)")
            header = json.loads(archive[_HEADER].tobytes().decode("utf-8"))
            arrays = {name: archive[name] for name in archive.files if name != _HEADER}
    except ModelFileError:
        raise
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise ModelFileError(
            f"{path}: cannot be read as an nnback model file (truncated or not a model "
            f"file?): {exc}"
        ) from None
    return header, arrays


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
