"""The rows of the "Untrusted files and downloads" table of docs/reliability.md: files
and mirrors that lie (issue 12). Run by ``test_error_table.py`` like the other cases.

The inconsistent model files keep a valid checksum (it is recomputed after the edit, as
anyone can): the checks that catch them are consistency checks, not the checksum.
"""

from __future__ import annotations

import io
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy
import pytest
from reliability_cases import Case
from reliability_helpers import blobs, mlp
from untrusted_files import bzip2_bomb, gzip_bomb, members_of, npy_prefix, rewrite_model, write_zip

import nnback as nb
from nnback.datasets import download
from nnback.datasets.idx import IDXFormatError, decode_idx


def _trained(tmp: Path) -> Path:
    """A (4, 8, 3) Adam model after one epoch (so it has optimizer slots), saved."""
    X, y = blobs(n=12, features=4)
    model = mlp(features=4)
    model.fit(X, y, epochs=1, batch_size=4, verbose=0)
    model.save(tmp / "m.npz")
    return tmp / "m.npz"


def _trained_cnn(tmp: Path) -> Path:
    """Reshape((1, 4, 4)) Conv2D(1, 2, 3) ReLU Flatten Dense(8, 3) Softmax, Adam, saved."""
    model = nb.Sequential(
        [nb.Reshape((1, 4, 4)), nb.Conv2D(1, 2, 3), nb.ReLU(), nb.Flatten(), nb.Dense(8, 3),
         nb.Softmax()],
        loss="categorical_crossentropy",
        optimizer="adam",
        seed=0,
    )  # fmt: skip
    rng = numpy.random.default_rng(0)
    model.fit(rng.random((12, 16)), numpy.arange(12) % 3, epochs=1, batch_size=4, verbose=0)
    model.save(tmp / "cnn.npz")
    return tmp / "cnn.npz"


def _edited_cnn(change: Any) -> Any:
    def call(mp: pytest.MonkeyPatch, tmp: Path) -> None:
        nb.load_model(rewrite_model(_trained_cnn(tmp), tmp / "edited.npz", change))

    return call


def _conv_config(key: str, value: Any) -> Any:
    return lambda header, arrays: header["config"]["layers"][1].__setitem__(key, value)


def _edited(change: Any) -> Any:
    def call(mp: pytest.MonkeyPatch, tmp: Path) -> None:
        nb.load_model(rewrite_model(_trained(tmp), tmp / "edited.npz", change))

    return call


def _set(key: str, value: Any) -> Any:
    return lambda header, arrays: arrays.__setitem__(key, value)


def _with_member(member_of: Any) -> Any:
    def call(mp: pytest.MonkeyPatch, tmp: Path) -> None:
        path = _trained(tmp)
        nb.load_model(write_zip(tmp / "bomb.npz", [*members_of(path), member_of()]))

    return call


def _in_thread(call: Any, *args: Any) -> None:
    """Run ``call``; a call still blocked after 10 s is a TimeoutError, not a hang."""
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            call(*args)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():
        raise TimeoutError(f"{call.__name__} blocked for 10 s")
    if outcome:
        raise outcome[0]


def _fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "pipe.npz")
    return tmp / "pipe.npz"


def _save_symlink(mp: pytest.MonkeyPatch, tmp: Path) -> None:
    target = _trained(tmp)
    (tmp / "latest.npz").symlink_to(target)
    mlp(features=4, seed=5).save(tmp / "latest.npz")
    assert (tmp / "latest.npz").is_symlink()
    numpy.testing.assert_array_equal(
        nb.load_model(target).get_weights()[0], mlp(features=4, seed=5).build().get_weights()[0]
    )


class _Endless(io.RawIOBase):
    """A response that sends zeros (64 MiB at most, so that a test cannot fill a disk),
    optionally one byte every ``delay`` seconds."""

    def __init__(self, delay: float = 0.0, total: int = 64 << 20) -> None:
        self.delay, self.left = delay, total

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.delay:
            time.sleep(self.delay)
        n = min(len(buffer), self.left, 1 if self.delay else len(buffer))
        buffer[:n] = bytes(n)
        self.left -= n
        return n


def _download(response: Any, shape: tuple[int, ...], **kwargs: Any) -> Any:
    def call(mp: pytest.MonkeyPatch, tmp: Path) -> None:
        spec = download.FileSpec(name="x.gz", shape=shape)
        download.download_files([spec], ["m/"], tmp / "d", fetch=lambda url: response(), **kwargs)

    return call


def _https_first(mp: pytest.MonkeyPatch, tmp: Path) -> None:
    asked: list[str] = []

    def fetch(url: str) -> Any:
        asked.append(url)
        raise OSError("offline")

    spec = download.FileSpec(name="x.gz", shape=(1,))
    with pytest.raises(download.DownloadError):
        download.download_files([spec], ["http://a/", "https://b/"], tmp, fetch=fetch)
    assert asked == ["https://b/x.gz", "http://a/x.gz"], asked


def _case(id_: str, call: Any, error: Any, *fragments: str) -> Case:
    return Case(id_, call, error, fragments)


_W = "layer0/weights"
M = nb.ModelFileError
_IDX10 = b"\x00\x00\x08\x01" + (10).to_bytes(4, "big")
_IDX_1000 = b"\x00\x00\x08\x03" + b"".join(n.to_bytes(4, "big") for n in (1000, 28, 28))
UNTRUSTED_CASES: list[Case] = [
    _case(
        "load-extra-member",
        _with_member(lambda: bzip2_bomb("junk.npy", npy_prefix((16 << 20,), "u1"), 16)),
        M,
        "junk.npy",
        "bzip2",
    ),
    _case(
        "load-special-file",
        lambda mp, tmp: _in_thread(nb.load_model, _fifo(tmp)),
        M,
        "FIFO",
        "not a regular file",
    ),
    _case(
        "save-special-file",
        lambda mp, tmp: mlp().save(_fifo(tmp)),
        nb.InputError,
        "FIFO",
        "not a regular file",
    ),
    _case("save-symlink", _save_symlink, None),
    _case(
        "load-overflow",
        _edited(_set(_W, numpy.full((4, 8), 1e300))),
        M,
        "layer0/weights",
        "1e+300",
        "float32",
    ),
    _case(
        "load-unknown-metric",
        _edited(lambda h, a: h["config"].__setitem__("metric", {"class": "F1Score"})),
        M,
        "unknown metric 'F1Score'",
    ),
    _case(
        "load-slot-broadcast",
        _edited(_set(_W + "/m", numpy.zeros(1, "float32"))),
        M,
        "layer0/weights/m",
        "(1,)",
        "(4, 8)",
    ),
    _case(
        "load-slot-too-big",
        _edited(_set(_W + "/v", numpy.zeros((400, 8), "float32"))),
        M,
        "layer0/weights/v",
        "(400, 8)",
    ),
    _case(
        "load-rng-overflow",
        _edited(lambda h, a: h["rng_state"]["state"].__setitem__("state", 2**200)),
        M,
        "rng_state",
        "out of range",
    ),
    _case(
        "load-iterations-huge",
        _edited(lambda h, a: h["config"]["optimizer"].__setitem__("iterations", 10**400)),
        M,
        "iterations",
        "401-digit",
    ),
    _case(
        "load-conv-channels",
        _edited_cnn(_conv_config("in_channels", 2)),
        M,
        "the header does not describe a valid model: layer 1: Conv2D(2, 2, 3) expects images "
        "of shape (2, h, w), got samples of shape (1, 4, 4)",
    ),
    _case(
        "load-conv-kernel",
        _edited_cnn(_conv_config("kernel_size", [3, 0])),
        M,
        "the header does not describe a valid model (InputError: Conv2D(kernel_size): "
        "expected a positive integer, got 0",
    ),
    _case(
        "load-conv-weights",
        _edited_cnn(_set("layer1/weights", numpy.zeros((2, 1, 3, 2), "float32"))),
        M,
        "'layer1/weights' (stored shape (2, 1, 3, 2), the declared model needs (2, 1, 3, 3))",
    ),
    _case("load-string-weights", _edited(_set(_W, numpy.full((4, 8), "0.5"))), M, "<U3"),
    _case("load-bytes-weights", _edited(_set(_W, numpy.zeros((4, 8), "V4"))), M, "|V4"),
    _case(
        "load-version-negative",
        _edited(lambda h, a: h.__setitem__("version", -7)),
        M,
        "version -7",
        "not valid",
    ),
    _case(
        "load-version-bool",
        _edited(lambda h, a: h.__setitem__("version", True)),
        M,
        "version True",
        "not valid",
    ),
    _case(
        "idx-too-many-dims",
        lambda mp, tmp: decode_idx(bytes([0, 0, 8, 65]) + bytes([0, 0, 0, 1]) * 65, "d.idx"),
        IDXFormatError,
        "65 dimensions",
    ),
    _case(
        "idx-gzip-bomb",
        lambda mp, tmp: decode_idx(gzip_bomb(_IDX10, 64), "b.gz"),
        IDXFormatError,
        "(10,)",
        "more bytes follow",
    ),
    _case(
        "download-endless",
        _download(_Endless, (10,)),
        download.DownloadError,
        "sent more than",
    ),
    _case(
        "download-trickle",
        _download(lambda: _Endless(delay=0.05, total=60), (10,), deadline_s=0.5),
        download.DownloadError,
        "took more than 0.5 s",
    ),
    _case(
        "download-gzip-bomb",
        _download(lambda: io.BytesIO(gzip_bomb(_IDX_1000, 64)), (1000, 28, 28)),
        download.DownloadError,
        "(1000, 28, 28)",
        "more bytes follow",
    ),
    _case("download-https-first", _https_first, None),
]
