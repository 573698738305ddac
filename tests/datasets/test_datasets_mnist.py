"""Tests of the MNIST / Fashion-MNIST loaders: search order, errors and the download path.

No test touches the network: conftest.py blocks it, and the download tests pass a fake
fetch serving bytes from memory.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from nnback.datasets import (
    DatasetNotFoundError,
    IDXFormatError,
    cache_dir,
    download,
    load_fashion_mnist,
    load_mnist,
    search_dirs,
    write_idx,
)
from nnback.datasets.catalog import DATASETS, FILE_STEMS
from nnback.datasets.download import FileSpec
from nnback.errors import NNBackError

MIRRORS = ("https://mirror-a.invalid/mnist/", "https://mirror-b.invalid/mnist/")


def labels_marker(path: str | Path | None = None, **kwargs) -> int:
    """Load MNIST (uint8, to compare exactly) and return the marker its labels carry."""
    (_, y_train), (_, y_test) = load_mnist(path, download=False, **kwargs)
    assert len(set(y_train.tolist()) | set(y_test.tolist())) == 1
    return int(y_train[0])


def test_load_from_path_shapes_dtypes_and_values(tmp_path: Path, fake_dataset) -> None:
    arrays = fake_dataset(tmp_path / "d", n_train=20, n_test=10)
    (X_train, y_train), (X_test, y_test) = load_mnist(tmp_path / "d")
    assert X_train.shape == (20, 784) and X_test.shape == (10, 784)
    assert X_train.dtype == X_test.dtype == np.float32
    assert y_train.shape == (20,) and y_test.shape == (10,)
    assert y_train.dtype == y_test.dtype == np.int64
    assert 0.0 <= X_train.min() and X_train.max() <= 1.0
    expected = arrays["train-images-idx3-ubyte"].reshape(20, -1) / np.float32(255)
    np.testing.assert_array_equal(X_train, expected)
    np.testing.assert_array_equal(y_test, arrays["t10k-labels-idx1-ubyte"])


def test_normalize_and_flatten_options(tmp_path: Path, fake_dataset) -> None:
    arrays = fake_dataset(tmp_path, compress=False)  # raw files are found too
    (X, _), _ = load_mnist(tmp_path, normalize=False, flatten=False)
    assert X.shape == (20, 28, 28) and X.dtype == np.uint8
    np.testing.assert_array_equal(X, arrays["train-images-idx3-ubyte"])
    (X, _), _ = load_mnist(tmp_path, flatten=False)
    assert X.shape == (20, 28, 28) and X.dtype == np.float32
    (X, _), _ = load_mnist(tmp_path, normalize=False)
    assert X.shape == (20, 784) and X.dtype == np.uint8


def test_search_order(tmp_path: Path, fake_dataset, monkeypatch, isolated_env: Path) -> None:
    home_cache = isolated_env / ".cache" / "nnback" / "mnist"
    xdg = tmp_path / "xdg"
    data = tmp_path / "data"
    fake_dataset(home_cache, marker=1)
    assert labels_marker() == 1  # ~/.cache/nnback/mnist when XDG_CACHE_HOME is unset

    fake_dataset(xdg / "nnback" / "mnist", marker=2)
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    assert labels_marker() == 2
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")  # ignored, as XDG says
    assert labels_marker() == 1
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))

    fake_dataset(data / "mnist", marker=3)
    monkeypatch.setenv("NNBACK_DATA", str(data))
    assert labels_marker() == 3  # NNBACK_DATA comes before the cache

    fake_dataset(tmp_path / "mine", marker=4)
    assert labels_marker(tmp_path / "mine") == 4  # an explicit path comes first
    assert search_dirs("mnist") == [data / "mnist", xdg / "nnback" / "mnist"]
    assert search_dirs("mnist", tmp_path / "mine") == [tmp_path / "mine"]


def test_fashion_search_ends_with_debian_dir(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NNBACK_DATA", str(tmp_path))
    dirs = search_dirs("fashion-mnist")
    assert dirs[0] == tmp_path / "fashion-mnist"
    assert dirs[1] == cache_dir("fashion-mnist")
    assert dirs[-1] == Path("/usr/share/datasets/fashion-mnist")


def test_incomplete_directory_is_skipped(tmp_path: Path, fake_dataset, monkeypatch) -> None:
    monkeypatch.setenv("NNBACK_DATA", str(tmp_path / "data"))
    fake_dataset(tmp_path / "data" / "mnist", marker=5, files=FILE_STEMS[:3])
    fake_dataset(cache_dir("mnist"), marker=6)
    assert labels_marker() == 6


def test_given_path_is_the_only_place_searched(tmp_path: Path, fake_dataset) -> None:
    fake_dataset(cache_dir("mnist"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist(tmp_path / "empty", download=False)
    message = str(info.value)
    assert f"{tmp_path / 'empty'}  (none of the four files)" in message
    assert str(cache_dir("mnist")) not in message.split("To fix it")[0]


def test_offline_error_says_what_to_do(monkeypatch, tmp_path: Path, fake_dataset) -> None:
    calls: list[str] = []

    def offline(url: str):
        calls.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(download, "urlopen", offline)
    monkeypatch.setenv("NNBACK_DATA", str(tmp_path / "data"))
    fake_dataset(tmp_path / "data" / "fashion-mnist", files=FILE_STEMS[:2])
    debian = tmp_path / "no-debian"
    entry = dataclasses.replace(DATASETS["fashion-mnist"], system_dirs=(debian,))
    monkeypatch.setitem(DATASETS, "fashion-mnist", entry)

    with pytest.raises(DatasetNotFoundError) as info:
        load_fashion_mnist()
    error = info.value
    assert isinstance(error, FileNotFoundError) and isinstance(error, NNBackError)
    message = str(error)
    assert message.startswith("Fashion-MNIST not found. Searched, in order:")
    missing = "missing t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]"
    assert f"{tmp_path / 'data' / 'fashion-mnist'}  ({missing})" in message
    assert f"{cache_dir('fashion-mnist')}  (does not exist)" in message
    assert f"{debian}  (does not exist)" in message
    for stem in FILE_STEMS:
        assert f"  {stem}[.gz]" in message
    assert "Temporary failure in name resolution" in message
    assert 'pass path="/dir/with/the/files" to load_fashion_mnist()' in message
    assert "set NNBACK_DATA=" in message
    assert "apt-get install dataset-fashion-mnist" in message
    # Every mirror was tried for the first missing file, then the loader gave up.
    assert calls == [m + "train-images-idx3-ubyte.gz" for m in entry.mirrors]


def test_download_false_message(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist(download=False)
    message = str(info.value)
    assert "No download was tried (download=False)." in message
    assert "$NNBACK_DATA is not set" in message
    assert "apt-get" not in message  # no Debian package for MNIST


@pytest.fixture
def served(tmp_path: Path, fake_dataset, monkeypatch) -> dict[str, bytes]:
    """Make MNIST's catalog entry describe small synthetic files; return their bytes."""
    source = tmp_path / "source"
    arrays = fake_dataset(source, n_train=12, n_test=6)
    blobs = {stem: (source / f"{stem}.gz").read_bytes() for stem in FILE_STEMS}
    specs = tuple(
        FileSpec(
            name=f"{stem}.gz",
            shape=arrays[stem].shape,
            payload_sha256=hashlib.sha256(gzip.decompress(blobs[stem])).hexdigest(),
        )
        for stem in FILE_STEMS
    )
    entry = dataclasses.replace(DATASETS["mnist"], mirrors=MIRRORS, specs=specs)
    monkeypatch.setitem(DATASETS, "mnist", entry)
    return {f"{stem}.gz": blob for stem, blob in blobs.items()}


def fake_fetch(responses: dict[str, bytes], calls: list[str]):
    def fetch(url: str) -> io.BytesIO:
        calls.append(url)
        if url not in responses:
            raise urllib.error.HTTPError(url, 404, "Not Found", None, None)
        return io.BytesIO(responses[url])

    return fetch


def test_download_verifies_and_renames(monkeypatch, served: dict[str, bytes]) -> None:
    calls: list[str] = []
    responses = {MIRRORS[0] + name: blob for name, blob in served.items()}
    monkeypatch.setattr(download, "urlopen", fake_fetch(responses, calls))
    (X_train, _), (X_test, _) = load_mnist()
    assert X_train.shape == (12, 784) and X_test.shape == (6, 784)
    target = cache_dir("mnist")
    assert sorted(p.name for p in target.iterdir()) == sorted(served)  # no .part left
    assert all((target / name).read_bytes() == blob for name, blob in served.items())
    assert len(calls) == 4
    load_mnist()  # the second call finds the cache and fetches nothing
    assert len(calls) == 4


def test_download_falls_back_to_next_mirror(monkeypatch, served: dict[str, bytes]) -> None:
    calls: list[str] = []
    responses = {MIRRORS[1] + name: blob for name, blob in served.items()}
    # The first mirror answers with a corrupt copy of one file and 404 for the others.
    responses[MIRRORS[0] + "train-labels-idx1-ubyte.gz"] = b"\x1f\x8b garbage"
    monkeypatch.setattr(download, "urlopen", fake_fetch(responses, calls))
    load_mnist()
    assert len(calls) == 8 and all(m in "".join(calls) for m in MIRRORS)


def test_checksum_mismatch_leaves_no_file(monkeypatch, served: dict[str, bytes]) -> None:
    # Valid IDX files of the right shape, but not the data the checksum names.
    wrong = {}
    for stem, blob in ((n.removesuffix(".gz"), b) for n, b in served.items()):
        array = np.frombuffer(gzip.decompress(blob), np.uint8).copy()
        array[-1] ^= 1  # one bit differs
        wrong[stem] = array.tobytes()
    responses = {m + f"{stem}.gz": gzip.compress(b) for m in MIRRORS for stem, b in wrong.items()}
    monkeypatch.setattr(download, "urlopen", fake_fetch(responses, []))
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist()
    assert "SHA-256 checksum mismatch" in str(info.value)
    assert str(MIRRORS[1]) in str(info.value)
    target = cache_dir("mnist")
    assert not target.exists() or list(target.iterdir()) == []


def test_download_into_given_path(monkeypatch, tmp_path: Path, served) -> None:
    responses = {MIRRORS[0] + name: blob for name, blob in served.items()}
    monkeypatch.setattr(download, "urlopen", fake_fetch(responses, []))
    load_mnist(tmp_path / "here")
    assert sorted(p.name for p in (tmp_path / "here").iterdir()) == sorted(served)
    assert not cache_dir("mnist").exists()


def test_md5_and_structure_checks(tmp_path: Path) -> None:
    blob = write_idx(tmp_path / "a.gz", np.arange(6, dtype=np.uint8)).read_bytes()
    md5 = hashlib.md5(blob).hexdigest()
    fetch = fake_fetch({"m/a.gz": blob}, [])
    spec = FileSpec(name="a.gz", shape=(6,), archive_md5=md5)
    [path] = download.download_files([spec], ["m/"], tmp_path / "ok", fetch=fetch)
    assert path.read_bytes() == blob

    bad_md5 = dataclasses.replace(spec, archive_md5="0" * 32)
    with pytest.raises(download.DownloadError, match="MD5 checksum mismatch"):
        download.download_files([bad_md5], ["m/"], tmp_path / "bad", fetch=fetch)
    wrong_shape = FileSpec(name="a.gz", shape=(7,))
    with pytest.raises(download.DownloadError, match=r"shape \(6,\) of uint8, expected \(7,\)"):
        download.download_files([wrong_shape], ["m/"], tmp_path / "shape", fetch=fetch)
    cut = fake_fetch({"m/a.gz": blob[:-5]}, [])
    no_digest = FileSpec(name="a.gz", shape=(6,))
    with pytest.raises(download.DownloadError, match="unreadable.*truncated gzip"):
        download.download_files([no_digest], ["m/"], tmp_path / "cut", fetch=cut)
    for failed in ("bad", "shape", "cut"):
        assert list((tmp_path / failed).iterdir()) == []  # nothing left behind


def test_mismatched_label_count_is_reported(tmp_path: Path, fake_dataset) -> None:
    fake_dataset(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(19, np.uint8))
    with pytest.raises(IDXFormatError, match="holds 19 labels but .* holds 20 images"):
        load_mnist(tmp_path)


def test_real_fashion_mnist_from_debian(debian_fashion) -> None:
    # No path and no download: found by the search, in Debian's directory. Raw uint8 keeps
    # the test fast; the float conversion is covered on synthetic files above.
    (X_train, y_train), (X_test, y_test) = load_fashion_mnist(download=False, normalize=False)
    assert X_train.shape == (60000, 784) and X_test.shape == (10000, 784)
    assert y_train.dtype == y_test.dtype == np.int64
    assert np.array_equal(np.bincount(y_train), [6000] * 10)
    assert np.array_equal(np.bincount(y_test), [1000] * 10)
    assert np.array_equal(X_test.reshape(-1, 28, 28), debian_fashion["t10k-images-idx3-ubyte"])


def test_shipped_fashion_checksums_match_debian_files(debian_fashion) -> None:
    # Serve Debian's (re-compressed) files as if from a mirror: the payload digests in the
    # catalog must accept them, which proves the shipped digests and the hashing code.
    entry = DATASETS["fashion-mnist"]
    for spec in entry.specs:
        path = Path("/usr/share/datasets/fashion-mnist") / spec.name
        assert download.verify_file(path, spec) is None, spec.name
