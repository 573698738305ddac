// conv.cu: im2col/col2im, the convolution's epilogues and pooling, around the cuBLAS GEMMs.
//
// Reference ops (nnback/backends/conv_ops.py, mixed into nnback.backends.base.Backend):
//   im2col                       Backend.im2col(x, kernel, stride, padding): the patches of an
//                                NCHW batch as the columns of cols (c*kh*kw, n*oh*ow). Copies
//                                only: equal bit for bit.
//   col2im                       Backend.col2im(cols, x_shape, kernel, stride, padding): every
//                                input pixel gathers its contributions in the reference's
//                                (i, j) order from +0, so equal bit for bit, and no atomics.
//   conv_bias_act_forward        Backend.conv_bias_activation(z, b, act, alpha): y (n, c, oh,
//                                ow) = activation(z (c, n, oh, ow) + b), transposing in the
//                                same pass.
//   conv_act_backward_bias_grad  Backend.conv_activation_bias_backward(dy, y, act, alpha):
//                                dz (c, n, oh, ow) = activation_backward(dy, y) transposed, and
//                                per (chunk, channel) partial sums of dz; the second stage of
//                                db is dense.cu's column_sum (fixed order: deterministic).
//   maxpool_forward              Backend.maxpool2d_forward(x, pool, stride): the maximum and
//                                its int32 row-major position in the window, the first on
//                                ties, a NaN counting as the maximum (numpy.argmax).
//   maxpool_backward             Backend.maxpool2d_backward(dy, argmax, x_shape, pool, stride):
//                                each pixel gathers dy of the windows whose maximum it is, in
//                                the reference's (i, j) order (dy * 0 from the others, as the
//                                reference's dy * hit), so overlapping windows need no atomics.
//   avgpool_forward              Backend.avgpool2d_forward(x, pool, stride): numpy.mean over
//                                the window, i.e. a sequential sum in (i, j) order / (ph * pw).
//   avgpool_backward             Backend.avgpool2d_backward(dy, x_shape, pool, stride): each
//                                pixel gathers dy / (ph * pw) of its windows in (i, j) order.
//
// Layout: NCHW, C-contiguous. Pooling has no padding and drops partial windows. Sizes inside
// one image or one column of cols (h, w, oh, ow, kernel, stride, padding, c * kh * kw and
// n * oh * ow) are int: the launcher falls back to the reference beyond 2**31 - 1. Flat
// indices over whole arrays are long long.
#include "common.cuh"

// Backend.activation_forward / activation_backward for one element (same code as dense.cu;
// kept here because every module is compiled on its own).
template <typename T> __device__ __forceinline__ T nnb_conv_activate(T z, int act, T alpha) {
    if (act == NNB_ACT_RELU) return z < T(0) ? T(0) : z;  // numpy.maximum(z, 0) keeps NaN
    if (act == NNB_ACT_LEAKY_RELU) return z > T(0) ? z : z * alpha;
    if (act == NNB_ACT_SIGMOID) {
        const T e = nnb_exp(-nnb_abs(z));
        return z >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
    }
    if (act == NNB_ACT_TANH) return nnb_tanh(z);
    return z;  // linear
}

template <typename T>
__device__ __forceinline__ T nnb_conv_activation_grad(T dy, T y, int act, T alpha) {
    if (act == NNB_ACT_RELU) return y > T(0) ? dy : T(0) * dy;  // 0 * dy keeps NaN/inf -> NaN
    if (act == NNB_ACT_LEAKY_RELU) return y > T(0) ? dy : dy * alpha;
    if (act == NNB_ACT_SIGMOID) return dy * y * (T(1) - y);
    if (act == NNB_ACT_TANH) return dy * (T(1) - y * y);
    return dy;  // linear
}

// The first window position (along one axis) whose window of `kernel` starting at
// position * stride - pad covers `pos`, and the number of windows that do; used by the
// gathers to skip the window offsets i that cannot contribute (the order stays i ascending).
// pos counts from the padded origin.
__device__ __forceinline__ bool nnb_window_of(int pos, int i, int stride, int out, int* p) {
    const int t = pos - i;
    if (t < 0 || t % stride != 0) return false;
    *p = t / stride;
    return *p < out;
}

// cols[((ci * kh + i) * kw + j) * L + (s * oh + p) * ow + q] = x[s, ci, p*sh + i - ph,
// q*sw + j - pw] (0 in the padding), L = n * oh * ow. One thread per (ci, s, p, q) writes the
// kh * kw entries of its column, so consecutive threads write consecutive addresses.
template <typename T>
__device__ void im2col(const T* x, T* cols, int n, int c, int h, int w, int kh, int kw, int sh,
                       int sw, int ph, int pw, int oh, int ow) {
    const long long cols_n = (long long)n * oh * ow;  // L
    const long long size = (long long)c * cols_n;
    for (long long idx = nnb_first_index(); idx < size; idx += nnb_grid_stride()) {
        const long long ci = idx / cols_n;
        const int col = (int)(idx - ci * cols_n);  // (s * oh + p) * ow + q
        const int q = col % ow;
        const int sp = col / ow;
        const int p = sp % oh;
        const int s = sp / oh;
        const T* image = x + ((long long)s * c + ci) * h * w;
        T* out = cols + ci * kh * kw * cols_n + col;
        const int y0 = p * sh - ph, x0 = q * sw - pw;
        for (int i = 0; i < kh; ++i) {
            const int yy = y0 + i;
            const bool row_in = yy >= 0 && yy < h;
            for (int j = 0; j < kw; ++j) {
                const int xx = x0 + j;
                *out = (row_in && xx >= 0 && xx < w) ? image[(long long)yy * w + xx] : T(0);
                out += cols_n;
            }
        }
    }
}

// dx[s, ci, y, x] = the sum of the cols entries im2col took from that pixel, added in the
// reference's order (i ascending, then j) to +0. One thread per pixel: no atomics.
template <typename T>
__device__ void col2im(const T* cols, T* dx, int n, int c, int h, int w, int kh, int kw, int sh,
                       int sw, int ph, int pw, int oh, int ow) {
    const long long cols_n = (long long)n * oh * ow;
    const long long size = (long long)n * c * h * w;
    const long long hw = (long long)h * w;
    for (long long idx = nnb_first_index(); idx < size; idx += nnb_grid_stride()) {
        const long long plane = idx / hw;  // s * c + ci
        const int pix = (int)(idx - plane * hw);
        const int xx = pix % w + pw, yy = pix / w + ph;  // in padded coordinates
        const int ci = (int)(plane % c), s = (int)(plane / c);
        const T* base = cols + (long long)ci * kh * kw * cols_n + (long long)s * oh * ow;
        T acc = T(0);
        for (int i = 0; i < kh; ++i) {
            int p;
            if (!nnb_window_of(yy, i, sh, oh, &p)) continue;
            for (int j = 0; j < kw; ++j) {
                int q;
                if (!nnb_window_of(xx, j, sw, ow, &q)) continue;
                acc += base[(long long)(i * kw + j) * cols_n + p * ow + q];
            }
        }
        dx[idx] = acc;
    }
}

// y[s, ch, k] = activation(z[ch, s, k] + b[ch]) for z (c, n, hw) channel-major; y is NCHW.
template <typename T>
__device__ void conv_bias_act_forward(const T* z, const T* b, T* y, long long n, int c, int hw,
                                      int act, double alpha_d) {
    const T alpha = (T)alpha_d;
    const long long size = n * c * hw;
    for (long long idx = nnb_first_index(); idx < size; idx += nnb_grid_stride()) {
        const long long plane = idx / hw;  // s * c + ch
        const int k = (int)(idx - plane * hw);
        const int ch = (int)(plane % c);
        const long long s = plane / c;
        const T v = z[((long long)ch * n + s) * hw + k] + b[ch];
        y[idx] = nnb_conv_activate(v, act, alpha);
    }
}

// dz[ch, s, k] = activation_backward(dy[s, ch, k], y[s, ch, k]) (dz channel-major) and
// partial[chunk, ch] = the sum of dz[ch, e] over the elements e = s * hw + k of chunk
// [chunk * chunk_size, (chunk + 1) * chunk_size) of the channel's n * hw.
//
// Block (bx, 1): each (chunk, channel) is summed by one block, thread t adding elements
// start + t, start + t + bx, ... in order, then nnb_block_sum's fixed tree. Chunks are
// grid-strided over blockIdx.x and channels over blockIdx.y, so the result depends on
// (bx, chunk_size) only, never on the grid. With one chunk, partial is db itself.
template <typename T>
__device__ void conv_act_backward_bias_grad(const T* dy, const T* y, T* dz, T* partial,
                                            long long n, int c, int hw, long long chunk_size,
                                            int act, double alpha_d) {
    __shared__ T shared[NNB_MAX_BLOCK];
    const T alpha = (T)alpha_d;
    const long long m = n * hw;  // elements per channel
    const long long chunks = (m + chunk_size - 1) / chunk_size;
    const unsigned t = threadIdx.x, bx = blockDim.x;
    // Stepping e by bx moves (s, k) by (ds, dk): no division inside the loop.
    const long long ds = bx / hw;
    const int dk = (int)(bx % hw);
    for (int ch = blockIdx.y; ch < c; ch += gridDim.y) {
        for (long long chunk = blockIdx.x; chunk < chunks; chunk += gridDim.x) {
            long long end = (chunk + 1) * chunk_size;
            if (end > m) end = m;
            long long e = chunk * chunk_size + t;
            long long s = e / hw;
            int k = (int)(e - s * hw);
            T acc = T(0);
            for (; e < end; e += bx) {
                const long long in = (s * c + ch) * hw + k;
                const T d = nnb_conv_activation_grad(dy[in], y[in], act, alpha);
                dz[(long long)ch * m + e] = d;
                acc += d;
                s += ds;
                k += dk;
                if (k >= hw) {
                    k -= hw;
                    ++s;
                }
            }
            const T total = nnb_block_sum(acc, shared);
            if (t == 0) partial[chunk * c + ch] = total;
        }
    }
}

// y = the first maximum of each window (a NaN is the maximum, the first NaN wins, as
// numpy.argmax), argmax its row-major position i * pw + j in the window.
template <typename T>
__device__ void maxpool_forward(const T* x, T* y, int* argmax, long long planes, int h, int w,
                                int ph, int pw, int sh, int sw, int oh, int ow) {
    const long long ohw = (long long)oh * ow;
    const long long size = planes * ohw;
    for (long long idx = nnb_first_index(); idx < size; idx += nnb_grid_stride()) {
        const long long plane = idx / ohw;
        const int o = (int)(idx - plane * ohw);
        const int p = o / ow, q = o % ow;
        const T* window = x + plane * h * w + (long long)(p * sh) * w + q * sw;
        T best = window[0];
        int where = 0;
        for (int i = 0; i < ph; ++i) {
            for (int j = 0; j < pw; ++j) {
                const T v = window[(long long)i * w + j];
                // Strictly greater keeps the first of equal values; once best is NaN it stays.
                if (best == best && (v > best || v != v)) {
                    best = v;
                    where = i * pw + j;
                }
            }
        }
        y[idx] = best;
        argmax[idx] = where;
    }
}

// dx[plane, y, x] = sum over the windows (p, q) covering the pixel, in the reference's order
// (offset (i, j) = (y - p*sh, x - q*sw) ascending), of dy[p, q] if the window's argmax is
// (i, j), else dy[p, q] * 0 (as the reference's dy * hit: a NaN or inf in dy spreads over
// its window there too).
template <typename T>
__device__ void maxpool_backward(const T* dy, const int* argmax, T* dx, long long planes, int h,
                                 int w, int ph, int pw, int sh, int sw, int oh, int ow) {
    const long long hw = (long long)h * w;
    const long long size = planes * hw;
    for (long long idx = nnb_first_index(); idx < size; idx += nnb_grid_stride()) {
        const long long plane = idx / hw;
        const int pix = (int)(idx - plane * hw);
        const int xx = pix % w, yy = pix / w;
        const long long base = plane * oh * ow;
        T acc = T(0);
        for (int i = 0; i < ph; ++i) {
            int p;
            if (!nnb_window_of(yy, i, sh, oh, &p)) continue;
            for (int j = 0; j < pw; ++j) {
                int q;
                if (!nnb_window_of(xx, j, sw, ow, &q)) continue;
                const long long o = base + p * ow + q;
                const T d = dy[o];
                acc += argmax[o] == i * pw + j ? d : d * T(0);
            }
        }
        dx[idx] = acc;
    }
}

// y = (x[w0] + x[w1] + ... in (i, j) order) / (ph * pw): numpy.mean over the stacked windows
// (a reduction over an outer axis adds the slices one after another), then the division.
template <typename T>
__device__ void avgpool_forward(const T* x, T* y, long long planes, int h, int w, int ph, int pw,
                                int sh, int sw, int oh, int ow) {
    const long long ohw = (long long)oh * ow;
    const long long size = planes * ohw;
    const T count = T(ph * pw);
    for (long long idx = nnb_first_index(); idx < size; idx += nnb_grid_stride()) {
        const long long plane = idx / ohw;
        const int o = (int)(idx - plane * ohw);
        const int p = o / ow, q = o % ow;
        const T* window = x + plane * h * w + (long long)(p * sh) * w + q * sw;
        T acc = window[0];
        for (int i = 0; i < ph; ++i) {
            for (int j = (i == 0 ? 1 : 0); j < pw; ++j) acc += window[(long long)i * w + j];
        }
        y[idx] = acc / count;
    }
}

// dx[plane, y, x] = sum over the windows covering the pixel, in (i, j) order, of
// dy[p, q] / (ph * pw) (the reference divides first, then adds the shares).
template <typename T>
__device__ void avgpool_backward(const T* dy, T* dx, long long planes, int h, int w, int ph,
                                 int pw, int sh, int sw, int oh, int ow) {
    const long long hw = (long long)h * w;
    const long long size = planes * hw;
    const T count = T(ph * pw);
    for (long long idx = nnb_first_index(); idx < size; idx += nnb_grid_stride()) {
        const long long plane = idx / hw;
        const int pix = (int)(idx - plane * hw);
        const int xx = pix % w, yy = pix / w;
        const long long base = plane * oh * ow;
        T acc = T(0);
        for (int i = 0; i < ph; ++i) {
            int p;
            if (!nnb_window_of(yy, i, sh, oh, &p)) continue;
            for (int j = 0; j < pw; ++j) {
                int q;
                if (!nnb_window_of(xx, j, sw, ow, &q)) continue;
                acc += dy[base + p * ow + q] / count;
            }
        }
        dx[idx] = acc;
    }
}

// ---- extern "C" entry points, one per dtype ------------------------------------------------
#define NNB_CONV_GEOMETRY_ARGS n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow
#define NNB_POOL_GEOMETRY_ARGS planes, h, w, ph, pw, sh, sw, oh, ow

extern "C" __global__ void im2col_f32(const float* x, float* cols, int n, int c, int h, int w,
                                      int kh, int kw, int sh, int sw, int ph, int pw, int oh,
                                      int ow) {
    im2col<float>(x, cols, NNB_CONV_GEOMETRY_ARGS);
}
extern "C" __global__ void im2col_f64(const double* x, double* cols, int n, int c, int h, int w,
                                      int kh, int kw, int sh, int sw, int ph, int pw, int oh,
                                      int ow) {
    im2col<double>(x, cols, NNB_CONV_GEOMETRY_ARGS);
}
extern "C" __global__ void col2im_f32(const float* cols, float* dx, int n, int c, int h, int w,
                                      int kh, int kw, int sh, int sw, int ph, int pw, int oh,
                                      int ow) {
    col2im<float>(cols, dx, NNB_CONV_GEOMETRY_ARGS);
}
extern "C" __global__ void col2im_f64(const double* cols, double* dx, int n, int c, int h, int w,
                                      int kh, int kw, int sh, int sw, int ph, int pw, int oh,
                                      int ow) {
    col2im<double>(cols, dx, NNB_CONV_GEOMETRY_ARGS);
}
extern "C" __global__ void conv_bias_act_forward_f32(const float* z, const float* b, float* y,
                                                     long long n, int c, int hw, int act,
                                                     double alpha) {
    conv_bias_act_forward<float>(z, b, y, n, c, hw, act, alpha);
}
extern "C" __global__ void conv_bias_act_forward_f64(const double* z, const double* b, double* y,
                                                     long long n, int c, int hw, int act,
                                                     double alpha) {
    conv_bias_act_forward<double>(z, b, y, n, c, hw, act, alpha);
}
extern "C" __global__ void conv_act_backward_bias_grad_f32(const float* dy, const float* y,
                                                           float* dz, float* partial,
                                                           long long n, int c, int hw,
                                                           long long chunk_size, int act,
                                                           double alpha) {
    conv_act_backward_bias_grad<float>(dy, y, dz, partial, n, c, hw, chunk_size, act, alpha);
}
extern "C" __global__ void conv_act_backward_bias_grad_f64(const double* dy, const double* y,
                                                           double* dz, double* partial,
                                                           long long n, int c, int hw,
                                                           long long chunk_size, int act,
                                                           double alpha) {
    conv_act_backward_bias_grad<double>(dy, y, dz, partial, n, c, hw, chunk_size, act, alpha);
}
extern "C" __global__ void maxpool_forward_f32(const float* x, float* y, int* argmax,
                                               long long planes, int h, int w, int ph, int pw,
                                               int sh, int sw, int oh, int ow) {
    maxpool_forward<float>(x, y, argmax, NNB_POOL_GEOMETRY_ARGS);
}
extern "C" __global__ void maxpool_forward_f64(const double* x, double* y, int* argmax,
                                               long long planes, int h, int w, int ph, int pw,
                                               int sh, int sw, int oh, int ow) {
    maxpool_forward<double>(x, y, argmax, NNB_POOL_GEOMETRY_ARGS);
}
extern "C" __global__ void maxpool_backward_f32(const float* dy, const int* argmax, float* dx,
                                                long long planes, int h, int w, int ph, int pw,
                                                int sh, int sw, int oh, int ow) {
    maxpool_backward<float>(dy, argmax, dx, NNB_POOL_GEOMETRY_ARGS);
}
extern "C" __global__ void maxpool_backward_f64(const double* dy, const int* argmax, double* dx,
                                                long long planes, int h, int w, int ph, int pw,
                                                int sh, int sw, int oh, int ow) {
    maxpool_backward<double>(dy, argmax, dx, NNB_POOL_GEOMETRY_ARGS);
}
extern "C" __global__ void avgpool_forward_f32(const float* x, float* y, long long planes, int h,
                                               int w, int ph, int pw, int sh, int sw, int oh,
                                               int ow) {
    avgpool_forward<float>(x, y, NNB_POOL_GEOMETRY_ARGS);
}
extern "C" __global__ void avgpool_forward_f64(const double* x, double* y, long long planes,
                                               int h, int w, int ph, int pw, int sh, int sw,
                                               int oh, int ow) {
    avgpool_forward<double>(x, y, NNB_POOL_GEOMETRY_ARGS);
}
extern "C" __global__ void avgpool_backward_f32(const float* dy, float* dx, long long planes,
                                                int h, int w, int ph, int pw, int sh, int sw,
                                                int oh, int ow) {
    avgpool_backward<float>(dy, dx, NNB_POOL_GEOMETRY_ARGS);
}
extern "C" __global__ void avgpool_backward_f64(const double* dy, double* dx, long long planes,
                                                int h, int w, int ph, int pw, int sh, int sw,
                                                int oh, int ow) {
    avgpool_backward<double>(dy, dx, NNB_POOL_GEOMETRY_ARGS);
}
