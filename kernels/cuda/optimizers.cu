// optimizers.cu: one-pass, in-place optimizer steps with L1/L2 folded into the gradient.
//
// Reference ops (nnback/backends/base.py), each element read once and written once:
//   sgd_step           Backend.sgd_update_inplace without momentum: p -= lr * g
//   sgd_momentum_step  Backend.sgd_update_inplace with momentum:
//                      v = momentum * v - lr * g; flush(v); p += v
//   adagrad_step       Backend.adagrad_update_inplace: c += g * g; flush(c);
//                      p -= lr * g / (sqrt(c) + eps)
//   rmsprop_step       Backend.rmsprop_update_inplace: c = rho * c + (1 - rho) * g * g; flush(c);
//                      p -= lr * g / (sqrt(c) + eps)
//   adam_step          Backend.adam_update_inplace: m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g g;
//                      flush(m), flush(v); p -= (m / (sqrt(v) * root + eps)) * step_size
// where g = grad + l1 * sign(p) [if l1 > 0] + (2 * l2) * p [if l2 > 0] (Backend._regularized,
// with l2x2 = 2 * l2 computed in Python) and flush is Backend._flush_subnormal_inplace.
// The constants 1 - rho, 1 - b1, 1 - b2, step_size = lr / (1 - b1**step) and
// root = 1 / sqrt(1 - b2**step) are computed in Python by the launcher, exactly as the
// reference computes them (Backend.adam_update_inplace, adam_scalars), then rounded
// to T like every Python scalar meeting a T array. Each step is element-wise, so the kernels
// work the same on one parameter or on a flat buffer holding every parameter of a model.
//
// The *_planned entry points are the same steps for a captured training step (step.cu has
// the books they read): the scalars that change from step to step (the decayed learning
// rate; Adam's step size and root correction) are read from row state[0] of a per-epoch
// table of doubles, which the host fills with exactly the Python floats the eager step
// would pass, and the update is skipped while the non-finite flag state[1] is set.
#include "common.cuh"

// Backend._regularized for one element.
template <typename T> __device__ __forceinline__ T nnb_regularized(T p, T grad, T l1, T l2x2) {
    T g = grad;
    if (l1 > T(0)) g = g + l1 * nnb_sign(p);
    if (l2x2 > T(0)) g = g + l2x2 * p;
    return g;
}

template <typename T>
__device__ void sgd_step(T* param, const T* grad, long long size, double lr_d, double l1_d,
                         double l2x2_d) {
    const T lr = (T)lr_d, l1 = (T)l1_d, l2x2 = (T)l2x2_d;
    for (long long i = nnb_first_index(); i < size; i += nnb_grid_stride()) {
        const T p = param[i];
        param[i] = p - lr * nnb_regularized(p, grad[i], l1, l2x2);
    }
}

template <typename T>
__device__ void sgd_momentum_step(T* param, const T* grad, T* velocity, long long size,
                                  double lr_d, double momentum_d, double l1_d, double l2x2_d) {
    const T lr = (T)lr_d, momentum = (T)momentum_d, l1 = (T)l1_d, l2x2 = (T)l2x2_d;
    for (long long i = nnb_first_index(); i < size; i += nnb_grid_stride()) {
        const T p = param[i];
        const T g = nnb_regularized(p, grad[i], l1, l2x2);
        T v = velocity[i] * momentum;
        v = nnb_flush(v - lr * g);
        velocity[i] = v;
        param[i] = p + v;
    }
}

template <typename T>
__device__ void adagrad_step(T* param, const T* grad, T* cache, long long size, double lr_d,
                             double eps_d, double l1_d, double l2x2_d) {
    const T lr = (T)lr_d, eps = (T)eps_d, l1 = (T)l1_d, l2x2 = (T)l2x2_d;
    for (long long i = nnb_first_index(); i < size; i += nnb_grid_stride()) {
        const T p = param[i];
        const T g = nnb_regularized(p, grad[i], l1, l2x2);
        const T c = nnb_flush(cache[i] + g * g);
        cache[i] = c;
        param[i] = p - lr * g / (nnb_sqrt(c) + eps);
    }
}

template <typename T>
__device__ void rmsprop_step(T* param, const T* grad, T* cache, long long size, double lr_d,
                             double rho_d, double one_minus_rho_d, double eps_d, double l1_d,
                             double l2x2_d) {
    const T lr = (T)lr_d, rho = (T)rho_d, one_minus_rho = (T)one_minus_rho_d, eps = (T)eps_d;
    const T l1 = (T)l1_d, l2x2 = (T)l2x2_d;
    for (long long i = nnb_first_index(); i < size; i += nnb_grid_stride()) {
        const T p = param[i];
        const T g = nnb_regularized(p, grad[i], l1, l2x2);
        T c = cache[i] * rho;
        c = nnb_flush(c + one_minus_rho * (g * g));
        cache[i] = c;
        param[i] = p - lr * g / (nnb_sqrt(c) + eps);
    }
}

template <typename T>
__device__ void adam_step(T* param, const T* grad, T* m, T* v, long long size,
                          double step_size_d, double beta_1_d, double one_minus_beta_1_d,
                          double beta_2_d, double one_minus_beta_2_d, double root_d,
                          double eps_d, double l1_d, double l2x2_d) {
    const T step_size = (T)step_size_d, beta_1 = (T)beta_1_d;
    const T one_minus_beta_1 = (T)one_minus_beta_1_d;
    const T beta_2 = (T)beta_2_d, one_minus_beta_2 = (T)one_minus_beta_2_d;
    const T root = (T)root_d, eps = (T)eps_d, l1 = (T)l1_d, l2x2 = (T)l2x2_d;
    for (long long i = nnb_first_index(); i < size; i += nnb_grid_stride()) {
        const T p = param[i];
        const T g = nnb_regularized(p, grad[i], l1, l2x2);
        T mi = m[i] * beta_1;
        mi = nnb_flush(mi + one_minus_beta_1 * g);
        T vi = v[i] * beta_2;
        vi = nnb_flush(vi + one_minus_beta_2 * (g * g));
        m[i] = mi;
        v[i] = vi;
        T denominator = nnb_sqrt(vi) * root;
        denominator = denominator + eps;
        const T ratio = mi / denominator;
        param[i] = p - ratio * step_size;
    }
}

// ---- extern "C" entry points, one per dtype ------------------------------------------------
extern "C" __global__ void sgd_step_f32(float* param, const float* grad, long long size,
                                        double lr, double l1, double l2x2) {
    sgd_step<float>(param, grad, size, lr, l1, l2x2);
}
extern "C" __global__ void sgd_step_f64(double* param, const double* grad, long long size,
                                        double lr, double l1, double l2x2) {
    sgd_step<double>(param, grad, size, lr, l1, l2x2);
}
extern "C" __global__ void sgd_momentum_step_f32(float* param, const float* grad, float* velocity,
                                                 long long size, double lr, double momentum,
                                                 double l1, double l2x2) {
    sgd_momentum_step<float>(param, grad, velocity, size, lr, momentum, l1, l2x2);
}
extern "C" __global__ void sgd_momentum_step_f64(double* param, const double* grad,
                                                 double* velocity, long long size, double lr,
                                                 double momentum, double l1, double l2x2) {
    sgd_momentum_step<double>(param, grad, velocity, size, lr, momentum, l1, l2x2);
}
extern "C" __global__ void adagrad_step_f32(float* param, const float* grad, float* cache,
                                            long long size, double lr, double eps, double l1,
                                            double l2x2) {
    adagrad_step<float>(param, grad, cache, size, lr, eps, l1, l2x2);
}
extern "C" __global__ void adagrad_step_f64(double* param, const double* grad, double* cache,
                                            long long size, double lr, double eps, double l1,
                                            double l2x2) {
    adagrad_step<double>(param, grad, cache, size, lr, eps, l1, l2x2);
}
extern "C" __global__ void rmsprop_step_f32(float* param, const float* grad, float* cache,
                                            long long size, double lr, double rho,
                                            double one_minus_rho, double eps, double l1,
                                            double l2x2) {
    rmsprop_step<float>(param, grad, cache, size, lr, rho, one_minus_rho, eps, l1, l2x2);
}
extern "C" __global__ void rmsprop_step_f64(double* param, const double* grad, double* cache,
                                            long long size, double lr, double rho,
                                            double one_minus_rho, double eps, double l1,
                                            double l2x2) {
    rmsprop_step<double>(param, grad, cache, size, lr, rho, one_minus_rho, eps, l1, l2x2);
}
extern "C" __global__ void adam_step_f32(float* param, const float* grad, float* m, float* v,
                                         long long size, double step_size, double beta_1,
                                         double one_minus_beta_1, double beta_2,
                                         double one_minus_beta_2, double root, double eps,
                                         double l1, double l2x2) {
    adam_step<float>(param, grad, m, v, size, step_size, beta_1, one_minus_beta_1, beta_2,
                     one_minus_beta_2, root, eps, l1, l2x2);
}
extern "C" __global__ void adam_step_f64(double* param, const double* grad, double* m, double* v,
                                         long long size, double step_size, double beta_1,
                                         double one_minus_beta_1, double beta_2,
                                         double one_minus_beta_2, double root, double eps,
                                         double l1, double l2x2) {
    adam_step<double>(param, grad, m, v, size, step_size, beta_1, one_minus_beta_1, beta_2,
                      one_minus_beta_2, root, eps, l1, l2x2);
}

// ---- planned entry points: per-step scalars from table row state[0], skipped while flagged --
#define NNB_PLANNED_ROW(width)          \
    if (state[1] != 0) return;          \
    const double* row = table + state[0] * (width);

extern "C" __global__ void sgd_step_planned_f32(float* param, const float* grad, long long size,
                                                const double* table, const long long* state,
                                                double l1, double l2x2) {
    NNB_PLANNED_ROW(1)
    sgd_step<float>(param, grad, size, row[0], l1, l2x2);
}
extern "C" __global__ void sgd_step_planned_f64(double* param, const double* grad, long long size,
                                                const double* table, const long long* state,
                                                double l1, double l2x2) {
    NNB_PLANNED_ROW(1)
    sgd_step<double>(param, grad, size, row[0], l1, l2x2);
}
extern "C" __global__ void sgd_momentum_step_planned_f32(float* param, const float* grad,
                                                         float* velocity, long long size,
                                                         const double* table,
                                                         const long long* state, double momentum,
                                                         double l1, double l2x2) {
    NNB_PLANNED_ROW(1)
    sgd_momentum_step<float>(param, grad, velocity, size, row[0], momentum, l1, l2x2);
}
extern "C" __global__ void sgd_momentum_step_planned_f64(double* param, const double* grad,
                                                         double* velocity, long long size,
                                                         const double* table,
                                                         const long long* state, double momentum,
                                                         double l1, double l2x2) {
    NNB_PLANNED_ROW(1)
    sgd_momentum_step<double>(param, grad, velocity, size, row[0], momentum, l1, l2x2);
}
extern "C" __global__ void adagrad_step_planned_f32(float* param, const float* grad, float* cache,
                                                    long long size, const double* table,
                                                    const long long* state, double eps, double l1,
                                                    double l2x2) {
    NNB_PLANNED_ROW(1)
    adagrad_step<float>(param, grad, cache, size, row[0], eps, l1, l2x2);
}
extern "C" __global__ void adagrad_step_planned_f64(double* param, const double* grad,
                                                    double* cache, long long size,
                                                    const double* table, const long long* state,
                                                    double eps, double l1, double l2x2) {
    NNB_PLANNED_ROW(1)
    adagrad_step<double>(param, grad, cache, size, row[0], eps, l1, l2x2);
}
extern "C" __global__ void rmsprop_step_planned_f32(float* param, const float* grad, float* cache,
                                                    long long size, const double* table,
                                                    const long long* state, double rho,
                                                    double one_minus_rho, double eps, double l1,
                                                    double l2x2) {
    NNB_PLANNED_ROW(1)
    rmsprop_step<float>(param, grad, cache, size, row[0], rho, one_minus_rho, eps, l1, l2x2);
}
extern "C" __global__ void rmsprop_step_planned_f64(double* param, const double* grad,
                                                    double* cache, long long size,
                                                    const double* table, const long long* state,
                                                    double rho, double one_minus_rho, double eps,
                                                    double l1, double l2x2) {
    NNB_PLANNED_ROW(1)
    rmsprop_step<double>(param, grad, cache, size, row[0], rho, one_minus_rho, eps, l1, l2x2);
}
extern "C" __global__ void adam_step_planned_f32(float* param, const float* grad, float* m,
                                                 float* v, long long size, const double* table,
                                                 const long long* state, double beta_1,
                                                 double one_minus_beta_1, double beta_2,
                                                 double one_minus_beta_2, double eps, double l1,
                                                 double l2x2) {
    NNB_PLANNED_ROW(2)
    adam_step<float>(param, grad, m, v, size, row[0], beta_1, one_minus_beta_1, beta_2,
                     one_minus_beta_2, row[1], eps, l1, l2x2);
}
extern "C" __global__ void adam_step_planned_f64(double* param, const double* grad, double* m,
                                                 double* v, long long size, const double* table,
                                                 const long long* state, double beta_1,
                                                 double one_minus_beta_1, double beta_2,
                                                 double one_minus_beta_2, double eps, double l1,
                                                 double l2x2) {
    NNB_PLANNED_ROW(2)
    adam_step<double>(param, grad, m, v, size, row[0], beta_1, one_minus_beta_1, beta_2,
                      one_minus_beta_2, row[1], eps, l1, l2x2);
}
