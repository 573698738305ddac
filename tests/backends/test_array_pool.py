"""The numba backend's recycled output arrays (nnback.backends.array_pool).

An array is handed out again only when nothing but the pool holds it: a reference, a view
or an exported buffer keeps it from being reused, and outside ``scope()`` nothing is pooled.
"""

from __future__ import annotations

import numpy
import pytest

from nnback.backends import array_pool

BIG = (array_pool.MIN_BYTES // 4,)  # float32 values at the pooling threshold


def test_reused_only_when_nothing_holds_it() -> None:
    with array_pool.scope():
        a = array_pool.empty(BIG, numpy.float32)
        address = a.ctypes.data
        b = array_pool.empty(BIG, numpy.float32)
        assert b.ctypes.data != address  # a is still held
        view = a[10:]
        del a
        c = array_pool.empty(BIG, numpy.float32)
        assert c.ctypes.data != address  # a view holds its base
        del view
        memory = memoryview(b)
        del b, c
        d = array_pool.empty(BIG, numpy.float32)
        assert d.ctypes.data == address  # idle again: recycled
        e = array_pool.empty(BIG, numpy.float32)
        assert e.ctypes.data != memory.obj.ctypes.data  # an exported buffer holds b
        assert array_pool.empty(BIG, numpy.float64).dtype == numpy.float64  # keyed by dtype
        assert array_pool.empty((7, 3), numpy.float32).shape == (7, 3)  # small: plain numpy
    assert array_pool.pooled_bytes() == 0  # the scope let go of them


def test_nothing_pooled_outside_a_scope() -> None:
    a = array_pool.empty(BIG, numpy.float32)
    address = a.ctypes.data
    del a
    assert array_pool.pooled_bytes() == 0
    b = array_pool.empty(BIG, numpy.float32)
    assert b.flags.c_contiguous and b.shape == BIG
    del b
    assert address is not None


def test_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(array_pool, "MAX_BYTES", 3 * array_pool.MIN_BYTES)
    with array_pool.scope():
        held = [array_pool.empty(BIG, numpy.float32) for _ in range(5)]
        assert array_pool.pooled_bytes() <= 3 * array_pool.MIN_BYTES
        del held
        again = [array_pool.empty(BIG, numpy.float32) for _ in range(2)]  # idle ones evicted
        assert len({a.ctypes.data for a in again}) == 2
        assert array_pool.pooled_bytes() <= 3 * array_pool.MIN_BYTES


def test_training_with_recycled_outputs_matches_plain_arrays(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("numba", reason="the numba backend needs numba")
    import nnback as nb

    def trained() -> list[numpy.ndarray]:
        model = nb.Sequential(
            [
                nb.Reshape((1, 12, 12)),
                nb.Conv2D(1, 4, 3),
                nb.ReLU(),
                nb.MaxPool2D(2),
                nb.Conv2D(4, 8, 3, padding="same"),
                nb.ReLU(),
                nb.MaxPool2D(2),
                nb.Flatten(),
                nb.Dense(32, 3),
                nb.Softmax(),
            ],
            loss=nb.CategoricalCrossentropy(),
            optimizer=nb.Adam(1e-2),
            seed=0,
            backend="numba",
        )
        rng = numpy.random.default_rng(0)
        X, y = rng.random((96, 144)), rng.integers(0, 3, 96)

        class Pooled(nb.callbacks.Callback):
            def on_batch_end(self, batch: int, logs: dict | None = None) -> None:
                seen.append(array_pool.pooled_bytes())

        model.fit(X, y, epochs=2, batch_size=32, verbose=0, callbacks=[Pooled()])
        return model.get_weights()

    seen: list[int] = []

    monkeypatch.setattr(array_pool, "MIN_BYTES", 1)  # every output recycled
    recycled = trained()
    assert min(seen) > 0  # the steps ran with pooled outputs
    seen.clear()
    monkeypatch.setattr(array_pool, "MIN_BYTES", 1 << 62)  # none
    plain = trained()
    assert max(seen) == 0
    for a, b in zip(recycled, plain, strict=True):
        numpy.testing.assert_array_equal(a, b)
