// Per-unit arithmetic of one dilated residual GRU cell, shared verbatim by the
// C++ CPU scan (dilated_gru_cpu.cpp) and the CUDA kernel (dilated_gru_cuda.cu),
// so that the CPU tests exercise the arithmetic the GPU runs. Only scheduling
// (which thread owns which unit, synchronisation, memory placement) differs
// between the two.
//
// Everything here works on one hidden unit j of one layer at one step, in the
// compute type F: float (float32 and bf16 storage; bf16 is converted by the
// callers) or double (float64, for gradcheck-grade checks on the CPU).
// Gate order everywhere: r, z, n (PyTorch's GRUCell), so the pre-activations
// of unit j sit at rows j, D + j, 2D + j of the [3D] gate vectors.
//
//   gi = W_ih u + b_ih          (input projection, [3D])
//   gh = W_hh h_prev + b_hh     (hidden projection, [3D]; gh_n includes b_hn)
//   r = sigmoid(gi_r + gh_r), z = sigmoid(gi_z + gh_z)
//   n = tanh(gi_n + r * gh_n)
//   h = (h_prev - n) * z + n    (== (1 - z) n + z h_prev, evaluated like ATen's
//                                gru_cell so that bf16 does not cancel h - n)
//   residual (L > 1): u_next = lrelu((h + u) / sqrt(2), 0.2)
//   feedback encoder: s = lrelu(W_fb x + b_fb, 0.2)
#pragma once

#if defined(__CUDACC__)
#define S2V_HD __host__ __device__ __forceinline__
#else
#define S2V_HD inline
#endif

#include <math.h>
#include <stdint.h>

namespace s2v {
namespace dgru {

constexpr double kLreluSlope = 0.2;
constexpr double kInvSqrt2 = 0.70710678118654752440;

#if defined(__CUDA_ARCH__)
S2V_HD float exp_(float x) { return expf(x); }
#else
// Branch-free expf (Cody-Waite reduction, degree-6 polynomial; relative error
// below 2e-7 on the clamped range) so that the CPU's per-unit gate loops
// vectorise: glibc's scalar expf/tanhf were a third of the CPU scan's time.
inline float exp_(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  // Round to nearest by adding and subtracting 1.5 * 2^23 (|x log2 e| < 2^7), a
  // form that vectorises under strict IEEE semantics where floorf does not.
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const float scale = __builtin_bit_cast(float, (static_cast<int32_t>(n) + 127) << 23);
  return p * scale;
}
#endif
S2V_HD double exp_(double x) { return exp(x); }
// tanh through exp: 1 - 2 / (e^{2x} + 1) is exact at both saturations; near 0
// its absolute error is that of exp_ (~1e-7), far below the 1e-4 tolerance.
S2V_HD float tanh_(float x) { return 1.0f - 2.0f / (exp_(2.0f * x) + 1.0f); }
S2V_HD double tanh_(double x) { return tanh(x); }

template <typename F>
S2V_HD F sigmoid_(F x) { return F(1) / (F(1) + exp_(-x)); }

template <typename F>
S2V_HD F lrelu(F x) {
  const F neg = F(kLreluSlope) * x;  // both sides computed: a select vectorises
  return x > F(0) ? x : neg;
}

// lrelu is sign preserving, so its derivative can be read from its output as
// well as from its input; callers use whichever they have.
template <typename F>
S2V_HD F lrelu_grad(F pre_or_post) { return pre_or_post > F(0) ? F(1) : F(kLreluSlope); }

// Gate values of one unit, kept so that forward and backward share them.
template <typename F>
struct Gates {
  F r, z, n, ghn;
};

template <typename F>
S2V_HD Gates<F> cell_gates(F gi_r, F gi_z, F gi_n, F gh_r, F gh_z, F gh_n) {
  Gates<F> g;
  g.r = sigmoid_(gi_r + gh_r);
  g.z = sigmoid_(gi_z + gh_z);
  g.ghn = gh_n;
  g.n = tanh_(gi_n + g.r * gh_n);
  return g;
}

template <typename F>
S2V_HD F cell_update(const Gates<F>& g, F h_prev) { return (h_prev - g.n) * g.z + g.n; }

// u^{l+1} from this layer's new hidden h and its input u (only when L > 1).
template <typename F>
S2V_HD F residual(F h, F u) { return lrelu((h + u) * F(kInvSqrt2)); }

// Gradients of one unit's cell step.
//   dh     gradient reaching h (from the next layer / output, later steps, new state)
//   in:    gate values g, h_prev
//   out:   dgi_{r,z,n} (= gradient of gi, hence of b_ih and the input GEMM),
//          dgh_n (dgh_r == dgi_r and dgh_z == dgi_z: gi and gh enter r, z as a sum),
//          dh_prev (the z * dh path; W_hh^T dgh is added by the caller)
template <typename F>
struct CellGrad {
  F dgi_r, dgi_z, dgi_n;
  F dgh_n;
  F dh_prev;
};

template <typename F>
S2V_HD CellGrad<F> cell_backward(const Gates<F>& g, F h_prev, F dh) {
  CellGrad<F> c;
  const F dn = dh * (F(1) - g.z);
  const F dz = dh * (h_prev - g.n);
  const F dn_pre = dn * (F(1) - g.n * g.n);
  const F dr = dn_pre * g.ghn;
  c.dgi_r = dr * g.r * (F(1) - g.r);
  c.dgi_z = dz * g.z * (F(1) - g.z);
  c.dgi_n = dn_pre;
  c.dgh_n = dn_pre * g.r;
  c.dh_prev = dh * g.z;
  return c;
}

// Backward of the residual: given the gradient g_next reaching u^{l+1} and the
// forward values h, u, the gradient each of h and u receives (they are equal).
template <typename F>
S2V_HD F residual_backward(F h, F u, F g_next) {
  return g_next * lrelu_grad(h + u) * F(kInvSqrt2);
}

// ---- Schedule, shared by the CPU scan and the CUDA kernels (not arithmetic,
// but it must agree between them just as exactly). Without feedback the layers
// run as a wavefront: in super-step s layer l works on step s - l (reverse:
// the same walk from the end). With feedback layer 0 at t needs layer L-1 at
// t - 1, so the super-steps are the (t, l) pairs in order.
// Which step layer l works on in super-step s, or -1.
S2V_HD int64_t schedule_step(bool feedback, int64_t T, int L, int64_t s, int l, bool reverse) {
  if (feedback) {
    const int64_t t = s / L;
    if (s % L != (reverse ? L - 1 - l : l)) return -1;
    return reverse ? T - 1 - t : t;
  }
  const int64_t t = reverse ? T - 1 - s + (L - 1 - l) : s - l;
  return (t >= 0 && t < T) ? t : -1;
}
S2V_HD int64_t schedule_steps(bool feedback, int64_t T, int L) {
  return feedback ? T * L : T + L - 1;
}

}  // namespace dgru
}  // namespace s2v
