// dropout.cu: inverted dropout with a host-drawn keep mask.
//
// Reference ops (nnback/backends/base.py): Backend.dropout_forward(x, keep_mask, scale) and
// Backend.dropout_backward(dy, keep_mask, scale), both x * keep_mask.astype(x.dtype) * scale,
// evaluated left to right: (x * mask) * scale, with the Python scale rounded to T. The mask
// is drawn on the host (numpy.random.Generator) and copied to the device, so every backend
// drops the same units; this kernel only applies it. Masks of x's dtype and bool masks
// (stored as one byte, 0 or 1) are read directly; the launcher casts any other mask first.
// dropout_apply_planned_*_b8 is the same for a captured training step: the masks of every
// step of the epoch are drawn up front (in the eager loop's order) and uploaded as one bool
// array, and step state[0] (step.cu) reads the `size` bytes at state[0] * size.
#include "common.cuh"

template <typename T, typename M>
__device__ void dropout_apply(const T* x, const M* keep_mask, T* out, long long size,
                              double scale_d) {
    const T scale = (T)scale_d;
    for (long long i = nnb_first_index(); i < size; i += nnb_grid_stride()) {
        out[i] = x[i] * (T)keep_mask[i] * scale;
    }
}

// ---- extern "C" entry points: <dtype of x> and, for a bool mask, _b8 ---------------------
extern "C" __global__ void dropout_apply_f32(const float* x, const float* keep_mask, float* out,
                                             long long size, double scale) {
    dropout_apply<float, float>(x, keep_mask, out, size, scale);
}
extern "C" __global__ void dropout_apply_f64(const double* x, const double* keep_mask,
                                             double* out, long long size, double scale) {
    dropout_apply<double, double>(x, keep_mask, out, size, scale);
}
extern "C" __global__ void dropout_apply_f32_b8(const float* x, const bool* keep_mask, float* out,
                                                long long size, double scale) {
    dropout_apply<float, bool>(x, keep_mask, out, size, scale);
}
extern "C" __global__ void dropout_apply_f64_b8(const double* x, const bool* keep_mask,
                                                double* out, long long size, double scale) {
    dropout_apply<double, bool>(x, keep_mask, out, size, scale);
}
extern "C" __global__ void dropout_apply_planned_f32_b8(const float* x, const bool* masks,
                                                        float* out, long long size, double scale,
                                                        const long long* state, long long first) {
    dropout_apply<float, bool>(x, masks + (state[0] - first) * size, out, size, scale);
}
extern "C" __global__ void dropout_apply_planned_f64_b8(const double* x, const bool* masks,
                                                        double* out, long long size, double scale,
                                                        const long long* state, long long first) {
    dropout_apply<double, bool>(x, masks + (state[0] - first) * size, out, size, scale);
}
