"""Tests of the Fashion-MNIST sample shipped in the package, and of its build script."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nnback.datasets import CLASS_NAMES, load_sample, make_sample
from nnback.datasets.catalog import FILE_STEMS

SAMPLE = Path(make_sample.__file__).parent / "data" / "fashion_mnist_sample.npz"


def test_shapes_dtypes_and_range() -> None:
    (X_train, y_train), (X_test, y_test) = load_sample()
    assert X_train.shape == (5000, 784) and X_test.shape == (1000, 784)
    assert X_train.dtype == X_test.dtype == np.float32
    assert y_train.shape == (5000,) and y_test.shape == (1000,)
    assert y_train.dtype == y_test.dtype == np.int64
    assert X_train.min() == 0.0 and X_train.max() == 1.0


def test_classes_are_balanced_and_interleaved() -> None:
    (_, y_train), (_, y_test) = load_sample()
    assert np.array_equal(np.bincount(y_train, minlength=10), [500] * 10)
    assert np.array_equal(np.bincount(y_test, minlength=10), [100] * 10)
    # Not sorted by class: any prefix (a first minibatch) sees several classes.
    assert len(np.unique(y_train[:50])) >= 5
    assert len(CLASS_NAMES) == 10 and CLASS_NAMES[0] == "T-shirt/top"
    assert CLASS_NAMES[9] == "Ankle boot"


def test_raw_images_option() -> None:
    (X_train, _), (X_test, _) = load_sample(normalize=False, flatten=False)
    assert X_train.shape == (5000, 28, 28) and X_train.dtype == np.uint8
    assert X_test.shape == (1000, 28, 28)
    (X_float, _), _ = load_sample()
    np.testing.assert_array_equal(X_float, X_train.reshape(5000, -1) / np.float32(255))


def test_shipped_file_is_small_and_licensed() -> None:
    assert SAMPLE.stat().st_size < 2_800_000
    license_text = (SAMPLE.parent / "FASHION_MNIST_LICENSE.txt").read_text()
    assert "Zalando" in license_text and "MIT License" in license_text
    assert "Han Xiao, Kashif Rasul and Roland Vollgraf" in license_text


def test_sample_matches_the_full_data_set(debian_fashion) -> None:
    with np.load(SAMPLE) as archive:
        parts = {key: archive[key] for key in archive.files}
    images = dict(zip(("x_train", "y_train", "x_test", "y_test"), FILE_STEMS, strict=True))
    for key, index in (("train", "train_index"), ("test", "test_index")):
        source_x = debian_fashion[images[f"x_{key}"]]
        source_y = debian_fashion[images[f"y_{key}"]]
        assert np.array_equal(parts[f"x_{key}"], source_x[parts[index]])
        assert np.array_equal(parts[f"y_{key}"], source_y[parts[index]])


def test_make_sample_is_stratified_and_reproducible(tmp_path: Path, fake_dataset) -> None:
    fake_dataset(tmp_path / "src", n_train=60, n_test=30)  # labels cycle through 0..9
    args = ["--source", str(tmp_path / "src"), "--train-per-class", "3", "--test-per-class", "2"]
    assert make_sample.main([*args, "--output", str(tmp_path / "a.npz")]) == 0
    assert make_sample.main([*args, "--output", str(tmp_path / "b.npz")]) == 0
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    with np.load(tmp_path / "a.npz") as archive:
        assert archive["x_train"].shape == (30, 28, 28) and archive["x_train"].dtype == np.uint8
        assert np.array_equal(np.bincount(archive["y_train"]), [3] * 10)
        assert np.array_equal(np.bincount(archive["y_test"]), [2] * 10)
        assert np.all(np.diff(archive["train_index"].astype(int)) > 0)
    other_seed = tmp_path / "c.npz"
    make_sample.main([*args, "--output", str(other_seed), "--seed", "1"])
    assert other_seed.read_bytes() != (tmp_path / "a.npz").read_bytes()


def test_make_sample_without_source_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="download=False"):
        make_sample.main(["--source", str(tmp_path / "none"), "--output", str(tmp_path / "x")])
