"""The CuPy backend on a real NVIDIA GPU (marked ``gpu``; skipped, with the reason, without one).

Run on a machine with a GPU and CuPy::

    pip install -e '.[gpu,dev]'          # or '.[gpu-cuda13,dev]' for CUDA 13
    python -m pytest -m gpu tests/cuda -rs

The fake-device tests of ``test_cuda_backend_fake.py`` are collected again here with their
``fake`` fixture replaced by the real backend, so the same parity checks run on the GPU;
the tests below add what only a GPU can show (TF32 really off, the kernels' exact
arithmetic on the device, device-side errors) and print training-step timings to set next
to the estimate in docs/gpu.md.
"""

from __future__ import annotations

import time

import numpy
import pytest
from cuda_helpers import DTYPES, REFERENCE, assert_bitwise
from test_cuda_backend_fake import (  # noqa: F401 (collected again, on the GPU)
    test_activations,
    test_dense_forward_and_backward,
    test_dense_workspaces_and_overwrite,
    test_dropout,
    test_elementwise_losses,
    test_optimizer_steps,
    test_softmax_crossentropy,
)
from test_cuda_capture import (  # noqa: F401 (collected again, on the GPU)
    test_a_non_finite_loss_stops_before_its_update,
    test_captured_epochs_equal_eager_epochs_bit_for_bit,
    test_elementwise_losses_and_their_metrics,
    test_one_hot_targets_no_shuffle_activation_layers_and_batches_over_256,
    test_per_batch_callbacks_get_every_step_loss,
)
from test_cuda_capture_conv import (  # noqa: F401 (collected again, on the GPU)
    test_a_dense_layer_before_the_images_gets_its_gradient_through_them,
    test_captured_cnn_epochs_equal_eager_epochs_bit_for_bit,
    test_changed_geometry_after_capture_makes_a_new_plan,
    test_cnn_layer_variants_equal_eager_bit_for_bit,
)
from test_cuda_conv_backend_fake import (  # noqa: F401 (collected again, on the GPU)
    test_conv2d_forward_and_backward,
    test_conv_bias_gradient_over_several_chunks,
    test_conv_epilogues,
    test_im2col_and_col2im,
    test_pooling,
)

from nnback import get_backend
from nnback.backends.base import Backend
from nnback.testing import gpu_unavailable_reason

pytestmark = pytest.mark.gpu


@pytest.fixture
def fake() -> Backend:
    """The real CuPy backend, under the name the shared fake-device tests use."""
    reason = gpu_unavailable_reason()
    if reason is not None:
        pytest.skip(f"gpu test: {reason}")
    return get_backend("cupy")


@pytest.fixture
def gpu(fake: Backend) -> Backend:
    """The real CuPy backend (the same as ``fake`` here)."""
    return fake


@pytest.mark.parametrize("dtype", DTYPES)
def test_optimizer_steps_are_exact_on_the_gpu(gpu: Backend, dtype: str) -> None:
    # --fmad=false and IEEE division and square root make the device repeat NumPy's
    # roundings: Adam on the GPU equals Adam in NumPy in the same dtype, bit for bit.
    rng = numpy.random.default_rng(40)
    host = [rng.uniform(-1, 1, (257, 129)).astype(dtype) for _ in range(2)]
    p, g = (gpu.asarray(a) for a in host)
    m, v = gpu.zeros(p.shape, dtype), gpu.zeros(p.shape, dtype)
    hm, hv = numpy.zeros_like(host[0]), numpy.zeros_like(host[0])
    for step in range(1, 4):
        gpu.adam_update_inplace(p, g, m, v, 0.01, step, l1=1e-4, l2=1e-4)
        REFERENCE.adam_update_inplace(host[0], host[1], hm, hv, 0.01, step, l1=1e-4, l2=1e-4)
    assert_bitwise(gpu.to_numpy(p), host[0], "adam on the GPU")


def test_tf32_is_off_by_default(gpu: Backend) -> None:
    # TF32 keeps 10 mantissa bits: a 512-term float32 product would err by ~1e-3 relative.
    rng = numpy.random.default_rng(41)
    a, b = rng.standard_normal((512, 512)), rng.standard_normal((512, 512))
    got = gpu.to_numpy(gpu.matmul(gpu.asarray(a, "float32"), gpu.asarray(b, "float32")))
    exact = a.astype("float32").astype(float) @ b.astype("float32").astype(float)
    assert numpy.max(numpy.abs(got - exact)) / numpy.max(numpy.abs(exact)) < 1e-5


def test_info_and_transfers(gpu: Backend) -> None:
    info = gpu.info()
    assert "compute capability" in info["device"]
    x = gpu.asarray(numpy.arange(6.0).reshape(2, 3))
    assert isinstance(gpu.to_numpy(x), numpy.ndarray)
    assert gpu.to_float(gpu.sum(x)) == 15.0
    gpu.synchronize()


@pytest.mark.parametrize("batch", [128, 1024, 8192])
def test_training_step_timing(gpu: Backend, batch: int) -> None:
    # One step of the 784-256-128-10 MLP (forward, softmax + cross-entropy, backward, Adam)
    # in float32, timed with the device synchronised; printed for docs/gpu.md.
    rng = numpy.random.default_rng(42)
    sizes = (784, 256, 128, 10)
    params = []
    for k_in, k_out in zip(sizes[:-1], sizes[1:], strict=True):
        w = gpu.asarray(rng.standard_normal((k_in, k_out)) / numpy.sqrt(k_in), "float32")
        b = gpu.zeros((1, k_out), "float32")
        params += [[p, gpu.zeros_like(p), gpu.zeros_like(p)] for p in (w, b)]
    x = gpu.asarray(rng.random((batch, 784)), "float32")
    labels = gpu.asarray(rng.integers(0, 10, batch))

    def step(t: int) -> None:
        inputs, outputs = [x], []
        for i in range(3):
            act = "relu" if i < 2 else "linear"
            outputs.append(
                gpu.dense_forward(inputs[-1], params[2 * i][0], params[2 * i + 1][0], act)
            )
            inputs.append(outputs[-1])
        _, grad = gpu.softmax_crossentropy(outputs[-1], labels)
        for i in reversed(range(3)):
            act = "relu" if i < 2 else "linear"
            grad, dw, db = gpu.dense_backward(
                grad, inputs[i], params[2 * i][0], outputs[i], act, need_dx=i > 0, overwrite_dy=True
            )
            for (p, m, v), g in ((params[2 * i], dw), (params[2 * i + 1], db)):
                gpu.adam_update_inplace(p, g, m, v, 1e-3, t)

    step(1)
    gpu.synchronize()
    repeats = 50
    start = time.perf_counter()
    for t in range(2, repeats + 2):
        step(t)
    gpu.synchronize()
    seconds = (time.perf_counter() - start) / repeats
    print(f"\nbatch {batch}: {seconds * 1e6:.0f} us per step, {batch / seconds:,.0f} samples/s")
