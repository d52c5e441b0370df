// Grouped CUDA kernels of the fused dilated residual GRU stack: the same
// schedule and arithmetic as the per-unit kernels (dilated_gru_cuda.cu; API,
// layouts and lifetimes: dilated_gru.h), laid out for a shorter step.
//
// Why: on an H100 the per-unit kernels took ~9 us per super-step forward and
// ~40 us backward (D = 66, L = 3, T = 256: 2.3 ms and ~10.7 ms), where the
// arithmetic of a step is ~80 kFLOP. One thread per (layer, unit) runs a
// dependent chain of D (forward) or 3D (backward) multiply-adds whose weights
// come from L2 on every step, with 7 warps to hide the latency, and the
// forward meets two barriers per super-step around global-memory staging.
//
// What changes (one block per batch element, wavefront over the layers, as
// before):
// - G lanes of one warp share a (layer, unit): each sums every G-th term of
//   the dot products, then the lanes add up with shuffles. The chain is D / G
//   (3D / G) long and L * D * G threads (up to 1024) keep the SM busy.
//   G = the largest power of two <= 32 with L * D * G <= 1024.
// - The weights live in shared memory for the whole sequence, as many
//   matrices as fit (227 KB on sm_90): the recurrent W_hh of every layer
//   first, then W_ih; the others are read through the read-only cache. Rows
//   are padded to a stride S = 32 / G (mod 32), so that the G lanes of the
//   32 / G units of a warp hit 32 different banks.
// - The recurrent states h^l_{t - span} (forward) and their gradients
//   (backward) live in shared rings of span + 1 rows per layer instead of
//   global memory; the forward needs one barrier per super-step.
// Results equal the per-unit kernels' up to the order of the additions in the
// dot products (float32 accumulation either way).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "dilated_gru/dilated_gru.h"
#include "dilated_gru/dilated_gru_cell.h"
#include "dilated_gru/dilated_gru_cuda_common.cuh"

namespace s2v {
namespace dgru {
namespace {

constexpr int kMaxThreads = 1024;

// Where each layer's matrices are: shared memory (offset in floats, >= 0) or
// global memory (-1), and their row strides.
struct Placement {
  int64_t wi_off[kMaxLayers], wh_off[kMaxLayers];  // -1: global
  int64_t wi_stride[kMaxLayers], wh_stride[kMaxLayers];
  int64_t ring_off[kMaxLayers];  // first float of layer l's ring
  int64_t smem_floats;           // total
  int G;                         // lanes per (layer, unit)
  int threads;
};

// Lanes per (layer, unit): the largest power of two <= 32 with L * D * G <= 1024.
inline int group_lanes(const Dims& d) {
  int G = 32;
  while (G > 1 && static_cast<int64_t>(d.L) * d.D * G > kMaxThreads) G /= 2;
  return static_cast<int64_t>(d.L) * d.D * G <= kMaxThreads ? G : 0;
}

// Smallest stride >= n that is 32 / G modulo 32 (conflict-free, see the top).
inline int64_t padded_stride(int64_t n, int G) {
  const int64_t want = 32 / G;
  int64_t s = n;
  while (s % 32 != want % 32) ++s;
  return s;
}

// Plans shared memory: `fixed` floats of vectors first, then the rings, then
// the weight matrices in priority order (rows x cols each, cols padded) while
// they fit in `budget` bytes. Returns false when the rings do not fit.
bool plan(const Dims& d, int64_t fixed, int64_t rows, int64_t cols, bool need_wi0,
          int64_t budget, Placement* pl) {
  pl->G = group_lanes(d);
  if (pl->G == 0) return false;
  const int64_t threads = static_cast<int64_t>(d.L) * d.D * pl->G;
  pl->threads = static_cast<int>((threads + 31) / 32 * 32);
  int64_t used = fixed;
  for (int l = 0; l < d.L; ++l) {
    pl->ring_off[l] = used;
    used += (span(d, l) + 1) * d.D;
  }
  if (used * static_cast<int64_t>(sizeof(float)) > budget) return false;
  const int64_t padded = padded_stride(cols, pl->G);
  auto place = [&](int64_t* off, int64_t* stride) {
    if ((used + rows * padded) * static_cast<int64_t>(sizeof(float)) <= budget) {
      *off = used;
      *stride = padded;
      used += rows * padded;
    } else {
      *off = -1;
      *stride = cols;
    }
  };
  for (int l = 0; l < d.L; ++l) place(&pl->wh_off[l], &pl->wh_stride[l]);
  for (int l = d.L - 1; l >= 0; --l) {
    if (l == 0 && !need_wi0) {
      pl->wi_off[0] = -1;
      pl->wi_stride[0] = cols;
      continue;
    }
    place(&pl->wi_off[l], &pl->wi_stride[l]);
  }
  pl->smem_floats = used;
  return true;
}

// Copies the matrices placed in shared memory (rows x cols each in global
// memory, dense) into their padded rows.
__device__ void load_weights(float* smem, const float* w_ih, const float* w_hh, int L,
                             int64_t rows, int64_t cols, const Placement& pl) {
  for (int l = 0; l < L; ++l) {
    for (int which = 0; which < 2; ++which) {
      const int64_t off = which ? pl.wh_off[l] : pl.wi_off[l];
      if (off < 0) continue;
      const int64_t stride = which ? pl.wh_stride[l] : pl.wi_stride[l];
      const float* src = (which ? w_hh : w_ih) + l * rows * cols;
      for (int64_t i = threadIdx.x; i < rows * cols; i += blockDim.x) {
        const int64_t r = i / cols, c = i - r * cols;
        smem[off + r * stride + c] = __ldg(src + i);
      }
    }
  }
}

template <int G>
__device__ __forceinline__ float group_sum(float v) {
#pragma unroll
  for (int o = G / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o, G);
  return v;
}

// Adds this lane's share (k = g, g + G, ... < n) of three dot products: row k
// of w (stride apart) at offsets 0, o, 2o times v[k]. `global`: w is in global
// memory, read through the read-only cache.
template <int G>
__device__ __forceinline__ void dot3(const float* w, int stride, int o, const float* v, int n,
                                     int g, bool global, float& a0, float& a1, float& a2) {
  if (global) {
    for (int k = g; k < n; k += G) {
      const float x = v[k];
      const float* wk = w + k * stride;
      a0 += __ldg(wk) * x;
      a1 += __ldg(wk + o) * x;
      a2 += __ldg(wk + 2 * o) * x;
    }
  } else {
    for (int k = g; k < n; k += G) {
      const float x = v[k];
      const float* wk = w + k * stride;
      a0 += wk[0] * x;
      a1 += wk[o] * x;
      a2 += wk[2 * o] * x;
    }
  }
}

// This lane's share (r = g, g + G, ... < n) of one dot product, as dot3.
template <int G>
__device__ __forceinline__ float dot1(const float* w, int stride, const float* v, int n, int g,
                                      bool global) {
  float a = 0.0f;
  if (global) {
    for (int r = g; r < n; r += G) a += __ldg(w + r * stride) * v[r];
  } else {
    for (int r = g; r < n; r += G) a += w[r * stride] * v[r];
  }
  return a;
}

__device__ __forceinline__ int64_t dring_slot(int64_t tau, int64_t m) {
  return ((tau % m) + m) % m;
}

// Forward. Shared memory (floats): ubuf [2][L+1][D] | rings | weights.
// ubuf[parity][l] holds u^l for the layer that reads it in the next
// super-step; ubuf[parity][L] holds y (rounded as stored) for the feedback.
template <typename S, int G>
__global__ void __launch_bounds__(kMaxThreads)
    forward_grouped_kernel(Params p, Placement pl) {
  S2V_DYNAMIC_SMEM(smem);
  const int64_t D = p.D, D3 = 3 * D, T = p.T;
  const int L = p.L;
  const int64_t b = blockIdx.x;
  float* ubuf = smem;
  S* H = static_cast<S*>(p.hist) + b * p.R * D;
  S* Y = static_cast<S*>(p.y) + b * T * D;

  load_weights(smem, p.w_ih, p.w_hh, L, D, D3, pl);
  // The incoming states into the rings. The step loop keeps h^l_tau in slot
  // (tau + span) mod (span + 1) (it reads h_{t - span} from slot t mod (span + 1)
  // and writes h_t to slot (t + span) mod (span + 1)); for tau in [-span, 0)
  // that is slot tau + span, the state's row.
  for (int l = 0; l < L; ++l) {
    for (int64_t i = threadIdx.x; i < p.span[l] * D; i += blockDim.x) {
      const int64_t row = i / D, k = i - row * D;  // row = tau + span < span + 1
      smem[pl.ring_off[l] + row * D + k] = Io<S>::load(H + (p.seg[l] + row) * D + k);
    }
  }
  // y_{-1} for the feedback: the oldest stored h of the last layer, or 0.
  for (int64_t k = threadIdx.x; k < D; k += blockDim.x)
    ubuf[(L + 1) * D + L * D + k] =
        (p.feedback && p.has_state) ? Io<S>::load(H + p.seg[L - 1] * D + k) : 0.0f;
  __syncthreads();

  // 32-bit indices in the loop (L * D <= 1024, strides < 2^12): fewer registers
  // under the 64 a 1024-thread block allows.
  const int Di = static_cast<int>(D);
  const int tid = threadIdx.x;
  const bool real = tid < L * Di * G;
  const int l = real ? tid / (Di * G) : 0;
  const int j = real ? (tid / G) % Di : 0;
  const int g = tid % G;
  const int span_l = static_cast<int>(p.span[l]), m = span_l + 1;
  float* ring = smem + pl.ring_off[l];
  const float* Wh = (pl.wh_off[l] >= 0 ? smem + pl.wh_off[l] : p.w_hh + l * D * D3) + j;
  const float* Wi = (pl.wi_off[l] >= 0 ? smem + pl.wi_off[l] : p.w_ih + l * D * D3) + j;
  const int sh = static_cast<int>(pl.wh_stride[l]), si = static_cast<int>(pl.wi_stride[l]);
  const bool wh_shared = pl.wh_off[l] >= 0, wi_shared = pl.wi_off[l] >= 0;
  // Biases: read by lane 0 where used (L1 hits after the first step; registers
  // for them would spill).
  const float* bh = p.b_hh + l * D3 + j;
  const float* bi = p.b_ih + l * D3 + j;

  const int64_t steps = super_steps(T, L, p.feedback);
  for (int64_t s = 0; s < steps; ++s) {
    const float* uin_buf = ubuf + ((s - 1) & 1) * (L + 1) * D;
    float* uout_buf = ubuf + (s & 1) * (L + 1) * D;
    const int64_t t = real ? step_of(p, s, l, false) : -1;
    const bool active = t >= 0;
    float ar = 0.0f, az = 0.0f, an = 0.0f, hr = 0.0f, hz = 0.0f, hn = 0.0f;
    float gi_r = 0.0f, gi_z = 0.0f, gi_n = 0.0f, u0j = 0.0f;
    if (active) {
      if (l == 0 && g == 0) {  // issued early: consumed after the dot products
        const float* gp = p.gi0 + (b * T + t) * D3;
        gi_r = gp[j];
        gi_z = gp[D + j];
        gi_n = gp[2 * D + j];
        u0j = p.u0[(b * T + t) * D + j];
      }
      dot3<G>(Wh, sh, Di, ring + static_cast<int>(t % m) * Di, Di, g, !wh_shared, hr, hz, hn);
      // Input part: u^l (l > 0) or y_{t-1} (layer 0 with feedback).
      const bool input_dot = l > 0 || (p.feedback && (t > 0 || p.has_state));
      if (input_dot) {
        dot3<G>(Wi, si, Di, uin_buf + (l > 0 ? l : L) * Di, Di, g, !wi_shared, ar, az, an);
      }
    }
    // Every lane of the warp takes part in the shuffles (inactive ones add 0).
    hr = group_sum<G>(hr);
    hz = group_sum<G>(hz);
    hn = group_sum<G>(hn);
    ar = group_sum<G>(ar);
    az = group_sum<G>(az);
    an = group_sum<G>(an);
    if (active && g == 0) {
      float ir, iz, in_, uin_j;
      if (l == 0) {
        ir = gi_r + ar;
        iz = gi_z + az;
        in_ = gi_n + an;
        // y_{t-1}; ubuf starts with y_{-1} (0 without a state).
        uin_j = u0j + (p.feedback ? uin_buf[L * D + j] : 0.0f);
      } else {
        ir = __ldg(bi) + ar;
        iz = __ldg(bi + Di) + az;
        in_ = __ldg(bi + 2 * Di) + an;
        uin_j = uin_buf[l * Di + j];
      }
      const Gates<float> gt = cell_gates(ir, iz, in_, __ldg(bh) + hr, __ldg(bh + Di) + hz,
                                         __ldg(bh + 2 * Di) + hn);
      const float hprev = ring[static_cast<int>(t % m) * Di + j];
      // Continue from the stored (rounded) value: the backward recomputes from it.
      const float h = Io<S>::round(cell_update(gt, hprev));
      ring[static_cast<int>((t + span_l) % m) * Di + j] = h;
      Io<S>::store(H + (p.seg[l] + span_l + t) * D + j, h);
      if (L == 1) {
        Io<S>::store(Y + t * D + j, h);
        uout_buf[L * D + j] = h;
      } else {
        const float un = residual(h, uin_j);
        if (l == L - 1) {
          Io<S>::store(Y + t * D + j, un);
          uout_buf[L * D + j] = Io<S>::round(un);
        } else {
          uout_buf[(l + 1) * D + j] = un;
        }
      }
    }
    __syncthreads();
  }
}

// Backward. Shared memory (floats):
//   dubuf [2][L+1][D] | dres [L][D] | gbuf [L][6D] | carry [D] | rings | weights
// Layer l's ring holds the gradients of h^l_tau, tau in (t - span - 1, t],
// slot tau mod (span + 1); a slot is zeroed once read, for the tau it serves
// next. Of dhist only the incoming state's rows are written (at the end): the
// caller reads nothing else.
template <int G>
__global__ void __launch_bounds__(kMaxThreads) backward_grouped_kernel(Params p, Placement pl) {
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

  load_weights(smem, p.w_ih, p.w_hh, L, D3, D, pl);
  for (int64_t k = threadIdx.x; k < D; k += blockDim.x) carry[k] = 0.0f;
  for (int l = 0; l < L; ++l) {
    const int64_t span_l = p.span[l], m = span_l + 1;
    // tau in [T - span - 1, T): the new state's gradient, and one zero slot.
    for (int64_t i = threadIdx.x; i < m * D; i += blockDim.x) {
      const int64_t r = i / D, k = i - r * D;
      const int64_t tau = T - m + r;
      smem[pl.ring_off[l] + dring_slot(tau, m) * D + k] =
          tau >= T - span_l ? dH[(p.seg[l] + span_l + tau) * D + k] : 0.0f;
    }
  }
  __syncthreads();

  const int Di = static_cast<int>(D), D3i = 3 * Di;
  const int tid = threadIdx.x;
  const bool real = tid < L * Di * G;
  const int l = real ? tid / (Di * G) : 0;
  const int k = real ? (tid / G) % Di : 0;  // phase A: unit j = k; phase B: entry k
  const int g = tid % G;
  const int64_t span_l = p.span[l], m = span_l + 1;
  float* ring = smem + pl.ring_off[l];
  const float* Wh = (pl.wh_off[l] >= 0 ? smem + pl.wh_off[l] : p.w_hh + l * D3 * D) + k;
  const float* Wi = (pl.wi_off[l] >= 0 ? smem + pl.wi_off[l] : p.w_ih + l * D3 * D) + k;
  const int sh = static_cast<int>(pl.wh_stride[l]), si = static_cast<int>(pl.wi_stride[l]);
  const bool wh_shared = pl.wh_off[l] >= 0, wi_shared = pl.wi_off[l] >= 0;

  const int64_t steps = super_steps(T, L, p.feedback);
  for (int64_t q = 0; q < steps; ++q) {
    const float* gin_buf = dubuf + ((q - 1) & 1) * (L + 1) * D;
    float* gout_buf = dubuf + (q & 1) * (L + 1) * D;
    const int64_t t = real ? step_of(p, q, l, true) : -1;
    // Phase A: the gate gradients of unit j = k of layer l (lane 0).
    if (t >= 0 && g == 0) {
      float* slot_t = ring + (t % m) * D;
      const float dh_acc = slot_t[k];
      slot_t[k] = 0.0f;  // the slot serves tau = t - span - 1 next
      const UnitGrad ug =
          unit_backward(p, b, l, k, t, dh_acc, gin_buf, carry, gbuf + l * 6 * D);
      ring[dring_slot(t - span_l, m) * D + k] += ug.dh_prev;
      dres[l * D + k] = ug.dres;
    }
    __syncthreads();
    // Phase B: W^T dg into entry k of layer l, rows j = g, g + G, ...
    float ah = 0.0f, au = 0.0f;
    if (t >= 0) {
      const float* gf = gbuf + l * 6 * D;
      ah = dot1<G>(Wh, sh, gf + D3i, D3i, g, !wh_shared);
      au = dot1<G>(Wi, si, gf, D3i, g, !wi_shared);
    }
    ah = group_sum<G>(ah);
    au = group_sum<G>(au);
    if (t >= 0 && g == 0) {
      au += dres[l * D + k];
      ring[dring_slot(t - span_l, m) * D + k] += ah;
      if (l == 0) {
        p.du0[(b * T + t) * D + k] = au;
        if (p.feedback) {
          if (t > 0) {
            carry[k] = au;
          } else if (p.has_state) {
            // Layer L-1's oldest state row, tau = -span_{L-1}.
            const int64_t mL = p.span[L - 1] + 1;
            smem[pl.ring_off[L - 1] + dring_slot(-p.span[L - 1], mL) * D + k] += au;
          }
        }
      } else {
        gout_buf[l * D + k] = au;
      }
    }
    __syncthreads();
  }
  // The incoming state's gradient: tau in [-span, 0) of every layer.
  for (int l2 = 0; l2 < L; ++l2) {
    const int64_t s2 = p.span[l2], m2 = s2 + 1;
    for (int64_t i = threadIdx.x; i < s2 * D; i += blockDim.x) {
      const int64_t row = i / D, kk = i - row * D;  // row = tau + span
      dH[(p.seg[l2] + row) * D + kk] = smem[pl.ring_off[l2] + dring_slot(row - s2, m2) * D + kk];
    }
  }
}

#ifndef S2V_CUDA_EMULATION
int smem_budget(size_t* optin) {
  int device = 0, value = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) return static_cast<int>(err);
  err = cudaDeviceGetAttribute(&value, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  if (err != cudaSuccess) return static_cast<int>(err);
  *optin = static_cast<size_t>(value);
  return 0;
}

template <typename Kernel>
int launch(Kernel kernel, const Dims& d, const Params& p, const Placement& pl,
           cudaStream_t stream) {
  const size_t bytes = sizeof(float) * static_cast<size_t>(pl.smem_floats);
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(bytes));
  if (err != cudaSuccess) return static_cast<int>(err);
  kernel<<<static_cast<unsigned>(d.B), pl.threads, bytes, stream>>>(p, pl);
  return static_cast<int>(cudaGetLastError());
}

template <typename S>
int launch_forward(const Dims& d, const Params& p, const Placement& pl, cudaStream_t stream) {
  switch (pl.G) {
    case 32: return launch(forward_grouped_kernel<S, 32>, d, p, pl, stream);
    case 16: return launch(forward_grouped_kernel<S, 16>, d, p, pl, stream);
    case 8: return launch(forward_grouped_kernel<S, 8>, d, p, pl, stream);
    case 4: return launch(forward_grouped_kernel<S, 4>, d, p, pl, stream);
    case 2: return launch(forward_grouped_kernel<S, 2>, d, p, pl, stream);
    default: return launch(forward_grouped_kernel<S, 1>, d, p, pl, stream);
  }
}

int launch_backward(const Dims& d, const Params& p, const Placement& pl, cudaStream_t stream) {
  switch (pl.G) {
    case 32: return launch(backward_grouped_kernel<32>, d, p, pl, stream);
    case 16: return launch(backward_grouped_kernel<16>, d, p, pl, stream);
    case 8: return launch(backward_grouped_kernel<8>, d, p, pl, stream);
    case 4: return launch(backward_grouped_kernel<4>, d, p, pl, stream);
    case 2: return launch(backward_grouped_kernel<2>, d, p, pl, stream);
    default: return launch(backward_grouped_kernel<1>, d, p, pl, stream);
  }
}

#endif  // S2V_CUDA_EMULATION
}  // namespace

#ifndef S2V_CUDA_EMULATION
int forward_cuda_grouped(const Dims& d, Storage storage, Params p, cudaStream_t stream,
                         bool* launched) {
  *launched = false;
  size_t optin = 0;
  if (const int rc = smem_budget(&optin)) return rc;
  Placement pl{};
  const int64_t vectors = 2 * (d.L + 1) * d.D;
  if (!plan(d, vectors, d.D, 3 * d.D, d.feedback, static_cast<int64_t>(optin), &pl)) return 0;
  *launched = true;
  return storage == Storage::kBFloat16 ? launch_forward<__nv_bfloat16>(d, p, pl, stream)
                                       : launch_forward<float>(d, p, pl, stream);
}

int backward_cuda_grouped(const Dims& d, Params p, cudaStream_t stream, bool* launched) {
  *launched = false;
  size_t optin = 0;
  if (const int rc = smem_budget(&optin)) return rc;
  Placement pl{};
  if (!plan(d, backward_vector_floats(d.L, d.D), 3 * d.D, d.D, true, static_cast<int64_t>(optin), &pl)) return 0;
  *launched = true;
  return launch_backward(d, p, pl, stream);
}

#endif  // S2V_CUDA_EMULATION

}  // namespace dgru
}  // namespace s2v
