"""The CNN of issue 14 in the benchmarks: its FLOPs, its catalog entries, tiny real runs.

Nothing here is timed against a threshold: the workloads run once on tiny sizes, so the
plumbing (models, peers, ceilings, the JSON) is checked in CI in a few seconds.
"""

from __future__ import annotations

import json

import pytest

from nnback.bench import Settings, TimingOptions, all_workloads, measure, results_json
from nnback.bench.catalog import quick_workloads, select
from nnback.bench.ceiling import ceiling_workload
from nnback.bench.conv import (
    CNN_NETWORK,
    CNN_OP_FAMILIES,
    CNN_SAMPLES,
    cnn_ceiling,
    cnn_epoch_flops,
    cnn_gemm_shapes,
    conv_op_workload,
)
from nnback.bench.endtoend import train_epoch_workload
from nnback.bench.report import entries_from
from nnback.zoo import build_cnn, cnn_layers, training_flops

ONCE = TimingOptions(max_time=0.0, min_rounds=1, round_time=0.0, long_rounds=1, settle=0.0)
NUMPY_ONLY = (("numpy", None),)


def test_the_cnn_flops_come_from_its_layer_shapes() -> None:
    # conv1 26x26 pixels x 9 x 32 (forward + dW: the first layer needs no dX), conv2
    # 11x11 x 288 x 64, dense 1600x128 and 128x10 (forward, dW and dX each).
    conv1 = 2 * 26 * 26 * 9 * 32
    conv2 = 2 * 11 * 11 * 288 * 64
    dense = 2 * 1600 * 128 + 2 * 128 * 10
    assert training_flops(cnn_layers(), (784,), 1) == 2 * conv1 + 3 * (conv2 + dense)
    assert 15e6 < training_flops(cnn_layers(), (784,), 1) < 16e6  # the "~16 MFLOP"
    assert training_flops(cnn_layers(), (784,), 1, training=False) == conv1 + conv2 + dense
    assert cnn_epoch_flops(100, 32) == 100 * training_flops(cnn_layers(), (784,), 1)
    assert cnn_gemm_shapes(2) == [
        (2 * 676, 9, 32),
        (2 * 121, 288, 64),
        (2, 1600, 128),
        (2, 128, 10),
    ]
    # Dropout does not change the GEMMs.
    assert training_flops(cnn_layers(dropout=0.5), (784,), 3) == 3 * training_flops(
        cnn_layers(), (784,), 1
    )


def test_the_catalog_has_the_cnn_end_to_end_per_op_and_its_ceiling() -> None:
    settings = Settings(samples=100_000, real_epochs=1, backends=NUMPY_ONLY, peers=True)
    works = all_workloads(settings)
    cnn = [w for w in works if w.family == "train_epoch" and w.case == CNN_NETWORK]
    assert {(w.runner, w.batch) for w in cnn} == {
        (runner, batch) for runner in ("numpy", "torch", "torch-tuned") for batch in (32, 128)
    }
    assert {w.dtype for w in cnn} == {"float32"} and {w.amount for w in cnn} == {CNN_SAMPLES}
    provided = {w.provides.key for w in works if w.provides is not None}
    assert {w.ceiling.key for w in cnn} <= provided
    assert "cpu gemm cnn-step float32 b128 cnn" in provided
    ops = {(w.family, w.case, w.runner) for w in works if w.family in CNN_OP_FAMILIES}
    assert ("conv2d_backward", "conv1", "numpy") in ops and ("im2col", "conv2", "numpy") in ops
    assert ("maxpool2d_forward", "pool2", "torch") in ops
    assert ("col2im", "conv2", "torch") not in ops  # no PyTorch counterpart is timed


def test_the_quick_subset_compares_the_cnn_with_pytorch_at_batch_32_and_128() -> None:
    works = quick_workloads(Settings(samples=1000, backends=NUMPY_ONLY, peers=True))
    chosen = select(works, "train_epoch cnn")
    assert {(w.runner, w.batch) for w in chosen} == {
        (runner, batch) for runner in ("numpy", "torch") for batch in (32, 128)
    }
    assert {w.family for w in works} >= set(CNN_OP_FAMILIES)


def test_cnn_workloads_run_on_tiny_sizes() -> None:
    works = [
        train_epoch_workload("numpy", "float32", 16, CNN_NETWORK, 32, None),
        ceiling_workload(cnn_ceiling("numpy", "float32", 4)),
        conv_op_workload("numpy", "float64", 4, "conv2d_forward", "conv2", None),
        conv_op_workload("numpy", "float64", 4, "conv2d_backward", "conv2", None),
        conv_op_workload("numpy", "float32", 4, "conv2d_backward", "conv1", None),
        conv_op_workload("numpy", "float32", 4, "maxpool2d_forward", "pool1", None),
        conv_op_workload("numpy", "float32", 4, "maxpool2d_backward", "pool2", None),
        conv_op_workload("numpy", "float32", 4, "im2col", "conv1", None),
        conv_op_workload("numpy", "float32", 4, "col2im", "conv2", None),
    ]
    results = [measure(work, ONCE) for work in works]
    assert [r.error for r in results] == [None] * len(works)
    document = json.loads(json.dumps(results_json(results, {"node": "x"}, {})))
    epoch = document["benchmarks"][0]
    assert epoch["extra_info"]["ceiling"] == "cpu gemm cnn-step float32 b16 cnn"
    assert epoch["extra_info"]["flops"] == cnn_epoch_flops(32, 16)
    assert len(entries_from(document)) == len(works)


def test_the_pytorch_cnn_is_the_same_network_and_its_peers_run() -> None:
    torch = pytest.importorskip(
        "torch", reason="PyTorch is not installed: pip install torch (the CPU build is enough)"
    )
    from nnback.bench.peers_torch import _cnn, torch_peer

    model = _cnn(torch, "float32", False)[0]
    ours = sum(layer.parameter_count() for layer in build_cnn().layers)
    assert sum(p.numel() for p in model.parameters()) == ours
    base = train_epoch_workload("numpy", "float32", 16, CNN_NETWORK, 32, None)
    peers = [torch_peer(base, "torch", 32)]
    for family in CNN_OP_FAMILIES[:4]:
        layer = "pool1" if family.startswith("maxpool") else "conv2"
        peers.append(
            torch_peer(conv_op_workload("numpy", "float32", 32, family, layer, None), "torch")
        )
    for work in peers:
        assert work is not None
        result = measure(work, ONCE)
        assert result.error is None, (work.name, result.error)


def test_the_pytorch_peer_trains_the_epoch_its_nnback_twin_trains() -> None:
    pytest.importorskip(
        "torch", reason="PyTorch is not installed: pip install torch (the CPU build is enough)"
    )
    # The suite's sample count exceeds the CNN's epoch cap: the peer must still train the
    # capped epoch, or its samples/s is read against the wrong amount of work.
    settings = Settings(samples=CNN_SAMPLES + 904, backends=NUMPY_ONLY, peers=True)
    (peer,) = [
        w
        for w in all_workloads(settings)
        if w.family == "train_epoch"
        and w.case == CNN_NETWORK
        and w.runner == "torch"
        and w.batch == 128
    ]
    assert peer.amount == CNN_SAMPLES
    result = measure(peer, ONCE)
    assert result.error is None, result.error
    assert result.extra["epoch_samples"] == CNN_SAMPLES
