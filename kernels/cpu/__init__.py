"""Numba kernels of the ``numba`` backend, shipped as ``nnback.kernels.cpu``.

One module per topic: :mod:`.activations` (bias + activation forward, softmax),
:mod:`.dense` (activation backward fused with the bias gradient), :mod:`.losses`,
:mod:`.optimizers` and :mod:`.dropout`. Every kernel's docstring names the op of
:class:`nnback.backends.base.Backend` it must match; the backend checks dtypes, layouts and
shapes before calling one, so the kernels themselves assume valid input.

Conventions shared by the kernels:

* ``@kernel`` (:func:`.runtime.kernel`): ``njit(cache=True, nogil=True,
  error_model="numpy")``, compiled once and cached on disk next to the source file (or in
  Numba's user cache when that is read-only); no fastmath, so the arithmetic is IEEE like
  NumPy's; ``error_model="numpy"`` makes a division by zero give inf/nan as in NumPy
  instead of raising, which is also what lets LLVM vectorize loops that divide; the GIL is
  released as NumPy does in its own loops.
* Scalars arrive as Python floats (float64) and are rounded to the array dtype inside, the
  way NumPy treats a Python scalar next to a float32 array; keeping float64 constants out of
  float32 loops is also what lets them vectorize.
* An optional output argument given as ``None`` selects, at compile time, the in-place
  variant: one source, two specializations, and no runtime aliasing check that would send
  LLVM down its scalar loop when input and output are the same memory.
* Helpers a kernel calls live in the kernel's own module: Numba's cache is invalidated by a
  change to the kernel's source file only.

Importing this package configures threading (see :mod:`.runtime`) before any kernel can run.
"""

from __future__ import annotations

from . import runtime as _runtime

_runtime.configure_threading()
_runtime.install_compile_notice()
