// CUDA kernels of the fused dilated residual GRU stack (API, layouts and
// buffer lifetimes: dilated_gru.h; per-unit arithmetic: dilated_gru_cell.h,
// shared with the CPU scan). Only CUDA's own headers: the torch side lives in
// dilated_gru_torch.cpp.
//
// One block per batch element runs the whole stack over all T steps in one
// launch. Without feedback the layers form a wavefront: in super-step s,
// layer l works on step s - l, so the block meets T + L - 1 pairs of barriers
// instead of T * L. Each thread owns (layer, unit) pairs; the layers hand u to
// each other through shared memory (double-buffered by super-step parity), and
// the transposed recurrent weights W_hh^T of every layer live in shared memory
// for the whole sequence when they fit (L * 3D * D floats; 157 KB at D = 66,
// L = 3), else they are read through the read-only cache.
// With feedback, layer 0 at t needs layer L-1 at t-1, so the super-steps are
// the (t, l) pairs in order.
//
// Backward: one launch walks the same schedule in reverse from the saved
// hidden states, with the gate pre-activations recomputed by the caller as
// GEMMs; phase A forms every unit's gate gradients, phase B the transposed
// products W^T dg that need all of them. Weight gradients are GEMMs again
// (caller).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>

#include "dilated_gru/dilated_gru.h"
#include "dilated_gru/dilated_gru_cell.h"
#include "dilated_gru/dilated_gru_cuda_common.cuh"

namespace s2v {
namespace dgru {
namespace {

// Shared memory of the forward, in floats:
//   ubuf [2][L+1][D] | hvec [L][D] | yprev [D] | whh_t [L][D][3D] (when it fits)
template <typename S>
__global__ void forward_kernel(Params p) {
  S2V_DYNAMIC_SMEM(smem);
  const int64_t D = p.D, D3 = 3 * D, T = p.T;
  const int L = p.L;
  const int64_t b = blockIdx.x;
  float* ubuf = smem;
  float* hvec = ubuf + 2 * (L + 1) * D;
  float* yprev = hvec + L * D;
  float* whh_s = yprev + D;
  S* H = static_cast<S*>(p.hist) + b * p.R * D;
  S* Y = static_cast<S*>(p.y) + b * T * D;
  const int64_t items = L * D;

  if (p.whh_smem) {
    for (int64_t i = threadIdx.x; i < L * D * D3; i += blockDim.x) whh_s[i] = __ldg(p.w_hh + i);
  }
  const float* whh = p.whh_smem ? whh_s : p.w_hh;
  __syncthreads();

  const int64_t steps = super_steps(T, L, p.feedback);
  for (int64_t s = 0; s < steps; ++s) {
    float* uin_buf = ubuf + ((s - 1) & 1) * (L + 1) * D;
    float* uout_buf = ubuf + (s & 1) * (L + 1) * D;
    // Stage the full vectors this super-step reads: h_prev of every active
    // layer, and layer 0's input (plus y_{t-1} with feedback).
    for (int64_t i = threadIdx.x; i < items; i += blockDim.x) {
      const int l = static_cast<int>(i / D);
      const int64_t k = i - l * D;
      const int64_t t = step_of(p, s, l, false);
      if (t < 0) continue;
      hvec[i] = Io<S>::load(H + (p.seg[l] + t) * D + k);
      if (l == 0) {
        float prev = 0.0f;
        if (p.feedback) {
          if (t > 0) prev = Io<S>::load(Y + (t - 1) * D + k);
          else if (p.has_state) prev = Io<S>::load(H + p.seg[L - 1] * D + k);
          yprev[k] = prev;
        }
        uin_buf[k] = p.u0[(b * T + t) * D + k] + prev;
      }
    }
    __syncthreads();
    for (int64_t i = threadIdx.x; i < items; i += blockDim.x) {
      const int l = static_cast<int>(i / D);
      const int64_t j = i - l * D;
      const int64_t t = step_of(p, s, l, false);
      if (t < 0) continue;
      float ir, iz, in_;
      const float* wi = p.w_ih + l * D * D3 + j;
      if (l == 0) {
        const float* g = p.gi0 + (b * T + t) * D3;
        ir = g[j];
        iz = g[D + j];
        in_ = g[2 * D + j];
        if (p.feedback) {
          for (int64_t k = 0; k < D; ++k) {
            const float v = yprev[k];
            ir += __ldg(wi + k * D3) * v;
            iz += __ldg(wi + k * D3 + D) * v;
            in_ += __ldg(wi + k * D3 + 2 * D) * v;
          }
        }
      } else {
        const float* bi = p.b_ih + l * D3;
        ir = __ldg(bi + j);
        iz = __ldg(bi + D + j);
        in_ = __ldg(bi + 2 * D + j);
        const float* uv = uin_buf + l * D;
        for (int64_t k = 0; k < D; ++k) {
          const float v = uv[k];
          ir += __ldg(wi + k * D3) * v;
          iz += __ldg(wi + k * D3 + D) * v;
          in_ += __ldg(wi + k * D3 + 2 * D) * v;
        }
      }
      const float* bh = p.b_hh + l * D3;
      float hr = __ldg(bh + j), hz = __ldg(bh + D + j), hn = __ldg(bh + 2 * D + j);
      const float* wh = whh + l * D * D3 + j;
      const float* hv = hvec + l * D;
      for (int64_t k = 0; k < D; ++k) {
        const float v = hv[k];
        hr += wh[k * D3] * v;
        hz += wh[k * D3 + D] * v;
        hn += wh[k * D3 + 2 * D] * v;
      }
      const Gates<float> g = cell_gates(ir, iz, in_, hr, hz, hn);
      // Continue from the stored (rounded) value: the backward recomputes from it.
      const float h = Io<S>::round(cell_update(g, hv[j]));
      Io<S>::store(H + (p.seg[l] + p.span[l] + t) * D + j, h);
      if (L == 1) {
        Io<S>::store(Y + t * D + j, h);
      } else {
        const float un = residual(h, uin_buf[l * D + j]);
        if (l == L - 1) Io<S>::store(Y + t * D + j, un);
        else uout_buf[(l + 1) * D + j] = un;
      }
    }
    __syncthreads();
  }
}

// Shared memory of the backward: its vectors (backward_vectors) only.
__global__ void backward_kernel(Params p) {
  S2V_DYNAMIC_SMEM(smem);
  const int64_t D = p.D, D3 = 3 * D, T = p.T;
  const int L = p.L;
  const int64_t b = blockIdx.x;
  const BackwardVectors v = backward_vectors(smem, L, D);
  float* dubuf = v.dubuf;
  float* dres = v.dres;
  float* gbuf = v.gbuf;
  float* carry = v.carry;
  float* dH = p.dhist + b * p.R * D;
  const int64_t items = L * D;
  for (int64_t k = threadIdx.x; k < D; k += blockDim.x) carry[k] = 0.0f;
  __syncthreads();

  const int64_t steps = super_steps(T, L, p.feedback);
  for (int64_t q = 0; q < steps; ++q) {
    const float* gin_buf = dubuf + ((q - 1) & 1) * (L + 1) * D;
    float* gout_buf = dubuf + (q & 1) * (L + 1) * D;
    // Phase A: every active (layer, unit)'s gate gradients.
    for (int64_t i = threadIdx.x; i < items; i += blockDim.x) {
      const int l = static_cast<int>(i / D);
      const int64_t j = i - l * D;
      const int64_t t = step_of(p, q, l, true);
      if (t < 0) continue;
      const UnitGrad ug = unit_backward(p, b, l, j, t, dH[(p.seg[l] + p.span[l] + t) * D + j],
                                        gin_buf, carry, gbuf + l * 6 * D);
      dH[(p.seg[l] + t) * D + j] += ug.dh_prev;
      dres[l * D + j] = ug.dres;
    }
    __syncthreads();
    // Phase B: W^T dg for every active (layer, unit); thread k reads column k
    // of W [3D, D], so a warp's loads are contiguous.
    for (int64_t i = threadIdx.x; i < items; i += blockDim.x) {
      const int l = static_cast<int>(i / D);
      const int64_t k = i - l * D;
      const int64_t t = step_of(p, q, l, true);
      if (t < 0) continue;
      const float* gf = gbuf + l * 6 * D;
      const float* wh = p.w_hh + l * D3 * D + k;
      const float* wi = p.w_ih + l * D3 * D + k;
      float ah = 0.0f, au = dres[l * D + k];
      for (int64_t j = 0; j < D3; ++j) {
        ah += __ldg(wh + j * D) * gf[D3 + j];
        au += __ldg(wi + j * D) * gf[j];
      }
      dH[(p.seg[l] + t) * D + k] += ah;
      if (l == 0) {
        p.du0[(b * T + t) * D + k] = au;
        if (p.feedback) {
          if (t > 0) carry[k] = au;
          else if (p.has_state) dH[p.seg[L - 1] * D + k] += au;
        }
      } else {
        gout_buf[l * D + k] = au;
      }
    }
    __syncthreads();
  }
}

#ifndef S2V_CUDA_EMULATION
// The grouped kernels (dilated_gru_cuda_grouped.cu) where the problem fits them,
// else these per-unit kernels; S2V_DGRU_CUDA_KERNEL=per_unit forces the per-unit
// ones (comparison, fallback). The grouped ones are the default since they ran
// on an H100: 1.38 vs 2.28 ms forward, 3.69 vs 5.66 ms forward + backward at
// D 66, L 3, T 256, B 1 (profiling/results). s2v.ops validates the value.
bool want_grouped() {
  const char* v = std::getenv("S2V_DGRU_CUDA_KERNEL");
  return v == nullptr || std::strcmp(v, "per_unit") != 0;
}
#endif

int block_threads(const Dims& d) {
  int64_t n = ((d.L * d.D + 31) / 32) * 32;
  return static_cast<int>(n < 32 ? 32 : (n > 1024 ? 1024 : n));
}

}  // namespace

#ifndef S2V_CUDA_EMULATION
int forward_cuda(const Dims& d, Storage storage, const float* gi0, const float* u0,
                 const float* w_ih_t, const float* w_hh_t, const float* b_ih, const float* b_hh,
                 void* hist, void* y, void* stream) {
  Params p = make_params(d);
  p.gi0 = gi0;
  p.u0 = u0;
  p.w_ih = w_ih_t;
  p.w_hh = w_hh_t;
  p.b_ih = b_ih;
  p.b_hh = b_hh;
  p.hist = hist;
  p.y = y;
  if (want_grouped()) {
    bool launched = false;
    const int rc = forward_cuda_grouped(d, storage, p, static_cast<cudaStream_t>(stream),
                                        &launched);
    if (rc != 0 || launched) return rc;
  }
  int device = 0, optin = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) return static_cast<int>(err);
  err = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  if (err != cudaSuccess) return static_cast<int>(err);
  const size_t base = sizeof(float) * (2 * (d.L + 1) * d.D + d.L * d.D + d.D);
  const size_t weights = sizeof(float) * d.L * d.D * 3 * d.D;
  p.whh_smem = base + weights <= static_cast<size_t>(optin);
  const size_t bytes = base + (p.whh_smem ? weights : 0);
  if (bytes > static_cast<size_t>(optin)) return static_cast<int>(cudaErrorInvalidConfiguration);
  auto kernel = storage == Storage::kBFloat16 ? forward_kernel<__nv_bfloat16>
                                              : forward_kernel<float>;
  err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(bytes));
  if (err != cudaSuccess) return static_cast<int>(err);
  kernel<<<static_cast<unsigned>(d.B), block_threads(d), bytes,
           static_cast<cudaStream_t>(stream)>>>(p);
  return static_cast<int>(cudaGetLastError());
}

int backward_cuda(const Dims& d, const float* gi, const float* gh, const float* u,
                  const float* hist, const float* w_ih, const float* w_hh, const float* dy,
                  float* dhist, float* dgi, float* dgh, float* du0, void* stream) {
  Params p = make_params(d);
  p.gi = gi;
  p.gh = gh;
  p.u = u;
  p.histf = hist;
  p.w_ih = w_ih;
  p.w_hh = w_hh;
  p.dy = dy;
  p.dhist = dhist;
  p.dgi = dgi;
  p.dgh = dgh;
  p.du0 = du0;
  if (want_grouped()) {
    bool launched = false;
    const int rc = backward_cuda_grouped(d, p, static_cast<cudaStream_t>(stream), &launched);
    if (rc != 0 || launched) return rc;
  }
  const size_t bytes = sizeof(float) * backward_vector_floats(d.L, d.D);
  cudaError_t err = cudaFuncSetAttribute(backward_kernel,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(bytes));
  if (err != cudaSuccess) return static_cast<int>(err);
  backward_kernel<<<static_cast<unsigned>(d.B), block_threads(d), bytes,
                    static_cast<cudaStream_t>(stream)>>>(p);
  return static_cast<int>(cudaGetLastError());
}

const char* cuda_error_string(int code) {
  return cudaGetErrorString(static_cast<cudaError_t>(code));
}
#endif  // S2V_CUDA_EMULATION

}  // namespace dgru
}  // namespace s2v
