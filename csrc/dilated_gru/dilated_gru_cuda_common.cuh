// What the two CUDA kernel families of the dilated GRU stack share: the launch
// parameters, bf16/fp32 storage access and the wavefront schedule.
//   dilated_gru_cuda.cu          one thread per (layer, unit) (any size)
//   dilated_gru_cuda_grouped.cu  a group of lanes per (layer, unit), weights and
//                                states in shared memory (when they fit)
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "dilated_gru/dilated_gru.h"
#include "dilated_gru/dilated_gru_cell.h"

// A kernel's dynamic shared memory. S2V_CUDA_EMULATION is defined when
// tests/cuda_emulation compiles these kernels as plain C++ (one std::thread per
// CUDA thread, std::barrier for __syncthreads, emulated warp shuffles), where
// the block's shared memory is a buffer of the emulator; the host-side launch
// code is left out of such builds.
#ifdef S2V_CUDA_EMULATION
#define S2V_DYNAMIC_SMEM(name) float* name = s2v_emulated_shared_memory()
#else
#define S2V_DYNAMIC_SMEM(name) extern __shared__ float name[]
#endif

namespace s2v {
namespace dgru {

struct Params {
  int64_t T, D;
  int L;
  bool feedback, has_state, whh_smem;
  int64_t span[kMaxLayers];
  int64_t seg[kMaxLayers];
  int64_t R;
  const float* gi0;
  const float* u0;
  const float* w_ih;  // forward: [L, D, 3D] transposed; backward: [L, 3D, D]
  const float* w_hh;
  const float* b_ih;
  const float* b_hh;
  void* hist;
  void* y;
  // backward
  const float* gi;
  const float* gh;
  const float* u;
  const float* histf;
  const float* dy;
  float* dhist;
  float* dgi;
  float* dgh;
  float* du0;
  int64_t B;
};

template <typename S> struct Io;
template <> struct Io<float> {
  static __device__ __forceinline__ float load(const float* p) { return *p; }
  static __device__ __forceinline__ float round(float v) { return v; }
  static __device__ __forceinline__ void store(float* p, float v) { *p = v; }
};
template <> struct Io<__nv_bfloat16> {
  static __device__ __forceinline__ float load(const __nv_bfloat16* p) {
    return __bfloat162float(*p);
  }
  static __device__ __forceinline__ float round(float v) {
    return __bfloat162float(__float2bfloat16_rn(v));
  }
  static __device__ __forceinline__ void store(__nv_bfloat16* p, float v) {
    *p = __float2bfloat16_rn(v);
  }
};

__device__ __forceinline__ int64_t step_of(const Params& p, int64_t s, int l, bool reverse) {
  return schedule_step(p.feedback, p.T, p.L, s, l, reverse);
}
__host__ __device__ __forceinline__ int64_t super_steps(int64_t T, int L, bool feedback) {
  return schedule_steps(feedback, T, L);
}

inline Params make_params(const Dims& d) {
  Params p{};
  p.B = d.B;
  p.T = d.T;
  p.D = d.D;
  p.L = d.L;
  p.feedback = d.feedback;
  p.has_state = d.has_state;
  for (int l = 0; l < d.L; ++l) {
    p.span[l] = span(d, l);
    p.seg[l] = seg_offset(d, l);
  }
  p.R = hist_rows(d);
  return p;
}

// The backward's vectors in shared memory, the same in both kernel families (in
// floats): dubuf [2][L+1][D] | dres [L][D] | gbuf [L][6D] | carry [D]; the
// grouped kernels put their rings and weights after them.
struct BackwardVectors {
  float* dubuf;  // gradients reaching u^l, double-buffered by super-step parity
  float* dres;   // gradients reaching u^l through the residual
  float* gbuf;   // per layer: the dgi rows, then the dgh rows, of the current step
  float* carry;  // the feedback's gradient onto u^0_{t+1}
};
__host__ __device__ inline int64_t backward_vector_floats(int64_t L, int64_t D) {
  return 2 * (L + 1) * D + L * D + L * 6 * D + D;
}
__device__ __forceinline__ BackwardVectors backward_vectors(float* smem, int64_t L, int64_t D) {
  BackwardVectors v;
  v.dubuf = smem;
  v.dres = v.dubuf + 2 * (L + 1) * D;
  v.gbuf = v.dres + L * D;
  v.carry = v.gbuf + L * 6 * D;
  return v;
}

// Phase A of the backward for unit j of layer l at step t, the same in both
// kernel families (they differ in where they keep the gradients of the states).
// dh_acc: the gradient gathered so far on h^l_t; gin_buf / carry: the
// gradients arriving at u^{l+1}_t from layer l + 1, and (last layer, feedback)
// from u^0_{t+1}. Writes the gate gradients to dgi, dgh and gf ([6D]: the dgi
// rows, then the dgh rows, of this layer); the caller routes the results.
struct UnitGrad {
  float dh_prev;  // onto h^l_{t - span}
  float dres;     // onto u^l_t through the residual
};
__device__ __forceinline__ UnitGrad unit_backward(const Params& p, int64_t b, int l, int64_t j,
                                                  int64_t t, float dh_acc,
                                                  const float* gin_buf, const float* carry,
                                                  float* gf) {
  const int64_t D = p.D, D3 = 3 * D, T = p.T, B = p.B;
  const int L = p.L;
  const float* H = p.histf + b * p.R * D;
  const int64_t gidx = ((l * B + b) * T + t) * D3;
  const float* gil = p.gi + gidx;
  const float* ghl = p.gh + gidx;
  float gn = (l == L - 1) ? p.dy[(b * T + t) * D + j] : gin_buf[(l + 1) * D + j];
  if (l == L - 1 && p.feedback) gn += carry[j];
  const float hc = H[(p.seg[l] + p.span[l] + t) * D + j];
  const float ul = p.u[((l * B + b) * T + t) * D + j];
  const float dr = L > 1 ? residual_backward(hc, ul, gn) : 0.0f;
  const float dh = dh_acc + (L > 1 ? dr : gn);
  const float hp = H[(p.seg[l] + t) * D + j];
  const Gates<float> gt =
      cell_gates(gil[j], gil[D + j], gil[2 * D + j], ghl[j], ghl[D + j], ghl[2 * D + j]);
  const CellGrad<float> c = cell_backward(gt, hp, dh);
  float* dgil = p.dgi + gidx;
  float* dghl = p.dgh + gidx;
  dgil[j] = gf[j] = c.dgi_r;
  dgil[D + j] = gf[D + j] = c.dgi_z;
  dgil[2 * D + j] = gf[2 * D + j] = c.dgi_n;
  dghl[j] = gf[D3 + j] = c.dgi_r;
  dghl[D + j] = gf[D3 + D + j] = c.dgi_z;
  dghl[2 * D + j] = gf[D3 + 2 * D + j] = c.dgh_n;
  return {c.dh_prev, dr};
}

#ifndef S2V_CUDA_EMULATION
// Launches of the grouped kernels (dilated_gru_cuda_grouped.cu). Return 0 or a
// cudaError_t value; *launched is false (and nothing ran) when the problem does
// not fit the grouped kernels (L * D > 1024, or the recurrent states do not fit
// in shared memory): the caller then runs the per-unit kernels.
int forward_cuda_grouped(const Dims& d, Storage storage, Params p, cudaStream_t stream,
                         bool* launched);
int backward_cuda_grouped(const Dims& d, Params p, cudaStream_t stream, bool* launched);
#endif

}  // namespace dgru
}  // namespace s2v
