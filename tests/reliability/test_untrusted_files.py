"""Model and IDX files as untrusted input: bombs under a memory cap, special files,
inconsistent files with a valid checksum (issue 12, defects 1 and 3-6).

The bombs run in a child process whose address space is capped (RLIMIT_AS) at what it
uses after importing nnback plus 192 MiB, and each bomb unpacks to 256 or 512 MiB: a
reader that unpacks before checking hits the cap (a bare MemoryError), a bounded one
answers with its own error.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import numpy
import pytest
from reliability_helpers import blobs, mlp
from untrusted_files import (
    bzip2_bomb,
    deflate_bomb,
    gzip_bomb,
    members_of,
    npy_prefix,
    write_zip,
)

import nnback as nb
from nnback.datasets.idx import IDXFormatError, read_idx

_CHILD = textwrap.dedent(
    """
    import json, resource, sys
    import nnback as nb
    from nnback.datasets import download
    from nnback.datasets.idx import read_idx

    pages = int(open("/proc/self/statm").read().split()[0])
    cap = pages * resource.getpagesize() + 192 * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    results = {}
    for case, path in json.loads(sys.argv[1]).items():
        try:
            if case.startswith("idx"):
                read_idx(path)
            elif case.startswith("verify"):
                spec = download.FileSpec(name="x.gz", shape=(10,))
                problem = download.verify_file(path, spec)
                raise ValueError(problem) if problem else SystemError("accepted")
            else:
                nb.load_model(path)
            results[case] = "loaded"
        except BaseException as exc:
            results[case] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(results))
    """
)

needs_rlimit = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc: Linux"
)


@pytest.fixture(scope="module")
def bomb_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Build every bomb, run them all in one capped child, return ``case -> outcome``."""
    tmp = tmp_path_factory.mktemp("bombs")
    model_file = tmp / "m.npz"
    mlp().save(model_file)
    good = members_of(model_file)
    weights = next(m for m in good if m.name == "layer0/weights.npy")
    big = npy_prefix((512 << 20,), "uint8")
    files = {
        # One extra deflate member of 512 MiB of zeros (the 1 GiB, halved).
        "model-extra-deflate-member": [*good, deflate_bomb("junk.npy", big, 512)],
        # The weights replaced by 512 MiB of zeros, all sizes declared honestly.
        "model-deflated-weights-bomb": [
            *(m for m in good if m is not weights),
            deflate_bomb(weights.name, npy_prefix((128 << 20,), "float32"), 512),
        ],
        # The zip headers lie: they declare the small size, the stream holds 512 MiB.
        "model-lying-sizes": [
            *(m for m in good if m is not weights),
            _lying(deflate_bomb(weights.name, weights.stored[:128], 512), weights.size),
        ],
        # A bzip2 member of 256 MiB (a few hundred bytes on disk).
        "model-bzip2-member": [*good, bzip2_bomb("junk.npy", npy_prefix((256 << 20,), "u1"), 256)],
    }
    paths = {case: str(write_zip(tmp / f"{case}.npz", ms)) for case, ms in files.items()}
    # A gzipped IDX file whose header declares 10 items, unpacking to 512 MiB.
    idx = gzip_bomb(b"\x00\x00\x08\x01" + (10).to_bytes(4, "big"), 512)
    for case in ("idx-gzip-bomb", "verify-gzip-bomb"):
        (tmp / case).write_bytes(idx)
        paths[case] = str(tmp / case)
    paths["model-dev-zero"] = "/dev/zero"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(paths)],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _lying(member: Any, declared: int) -> Any:
    member.size = declared
    return member


BOMBS = {
    "model-extra-deflate-member": "ModelFileError: .*unexpected member 'junk.npy'",
    "model-deflated-weights-bomb": "ModelFileError: .*misshapen array 'layer0/weights'",
    "model-lying-sizes": "ModelFileError: .*(holds more than|CRC)",
    "model-bzip2-member": "ModelFileError: .*compressed with bzip2",
    "model-dev-zero": "ModelFileError: /dev/zero is a character device, not a regular file",
    "idx-gzip-bomb": "IDXFormatError: .*declares shape \\(10,\\).*more bytes follow",
    "verify-gzip-bomb": "ValueError: .*bytes, more than a file of shape \\(10,\\) can hold",
}


@needs_rlimit
@pytest.mark.parametrize("case", sorted(BOMBS))
def test_a_bomb_is_refused_within_a_memory_cap(bomb_results: dict[str, str], case: str) -> None:
    import re

    outcome = bomb_results[case]
    assert re.match(BOMBS[case], outcome), f"{case}: {outcome}"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs (POSIX)")
def test_loading_a_fifo_fails_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "model.npz"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []
    worker = threading.Thread(target=lambda: _catch(outcome, nb.load_model, fifo), daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():  # unblock the old code's open() so the thread can end
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("load_model blocked on a FIFO")
    assert isinstance(outcome[0], nb.ModelFileError), outcome
    assert "a FIFO (named pipe), not a regular file" in str(outcome[0])


def _catch(into: list[BaseException], call: Any, *args: Any) -> None:
    try:
        call(*args)
    except BaseException as exc:  # noqa: BLE001 - the test inspects it
        into.append(exc)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs (POSIX)")
def test_save_never_replaces_a_special_file(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(nb.InputError, match="is a FIFO .named pipe., not a regular file"):
        mlp().save(fifo)
    assert fifo.is_fifo()
    # A Unix socket file stands for the devices: saving onto /dev/null itself would, on a
    # regression run as root, destroy the test machine's /dev/null.
    if hasattr(socket, "AF_UNIX"):
        with socket.socket(socket.AF_UNIX) as listener:
            listener.bind(str(tmp_path / "sock"))
            with pytest.raises(nb.InputError, match="it is a socket, not a regular file"):
                mlp().save(tmp_path / "sock")
        assert (tmp_path / "sock").is_socket()
        (tmp_path / "sock").unlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]  # no temporary left


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
def test_save_follows_a_symlink_to_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "runs").mkdir()
    target = tmp_path / "runs" / "best.npz"
    mlp().save(target)
    link = tmp_path / "best.npz"
    link.symlink_to(target)
    X, y = blobs(n=12)
    trained = mlp()
    trained.fit(X, y, epochs=1, verbose=0)
    trained.save(link)
    assert link.is_symlink() and link.resolve() == target.resolve()  # the link is kept
    for got, want in zip(nb.load_model(target).get_weights(), trained.get_weights(), strict=True):
        numpy.testing.assert_array_equal(got, want)
    dangling = tmp_path / "dangling.npz"
    dangling.symlink_to(tmp_path / "nowhere.npz")
    with pytest.raises(FileNotFoundError, match="symbolic link to .*nowhere.npz, which does not"):
        trained.save(dangling)
    assert not (tmp_path / "nowhere.npz").exists()


def test_idx_with_too_many_dimensions(tmp_path: Path) -> None:
    path = tmp_path / "deep.idx"
    path.write_bytes(bytes([0, 0, 0x08, 65]) + (1).to_bytes(4, "big") * 65 + b"\0")
    with pytest.raises(IDXFormatError, match="declares 65 dimensions; NumPy arrays have at most"):
        read_idx(path)
