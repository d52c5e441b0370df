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
//   (3D / G) long and ~L * D * G threads (up to 1024) keep the SM busy.
//   G = the largest power of two <= 32 that fits 1024 threads.
// - The weights live in shared memory for the whole sequence, as many
//   matrices as fit (227 KB on sm_90): the recurrent W_hh of every layer
//   first, then W_ih; the others are read through the read-only cache. In
//   shared memory each dot product's weights are one row (the matrix
//   transposed), padded to G times an odd number of floats, so that the G
//   lanes of the 32 / G units of a warp hit 32 different banks.
// - The recurrent states h^l_{t - span} (forward) and their gradients
//   (backward) live in shared rings of span + 1 rows per layer instead of
//   global memory; the forward needs one barrier per super-step.
// - Each layer owns whole warps (its D * G lanes rounded up to a multiple of 32), so no
//   warp runs the code paths of two layers; the loop indexes shared memory
//   with 32-bit offsets through pointers the compiler sees as shared (loads
//   from a pointer that may be shared or global are generic loads with 64-bit
//   address arithmetic: ~5 instructions per multiply-add in the first
//   version's SASS), the biases sit in shared memory, and the ring slots are
//   32-bit counters.
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
  int wi_stride[kMaxLayers], wh_stride[kMaxLayers];
  int64_t ring_off[kMaxLayers];  // first float of layer l's ring
  int64_t smem_floats;           // total
  int G;                         // lanes per (layer, unit)
  int layer_threads;             // threads per layer: D * G rounded up to whole warps
  int threads;                   // L * layer_threads
};

inline int64_t round_up_warp(int64_t n) { return (n + 31) / 32 * 32; }

// Lanes per (layer, unit): the largest power of two G <= 32 with
// L * round_up_warp(D * G) <= 1024; 0 when not even G = 1 fits.
inline int group_lanes(const Dims& d) {
  for (int G = 32; G >= 1; G /= 2)
    if (d.L * round_up_warp(d.D * G) <= kMaxThreads) return G;
  return 0;
}

// Row stride of a weight matrix in shared memory, for rows of n floats: the
// smallest s >= n that is G times an odd number (any multiple of G for G = 32).
// A warp's lanes read w[j * s + g + i * G] for its 32 / G units j and lanes g;
// with s = G * odd those are 32 different banks.
inline int64_t padded_stride(int64_t n, int G) {
  int64_t s = (n + G - 1) / G * G;
  if (G < 32 && (s / G) % 2 == 0) s += G;
  return s;
}

// Floats of shared memory before the rings: the forward's ubuf [2][L+1][D] and
// biases [L][6D] (b_ih, b_hh); the backward's vectors (backward_vectors).
inline int64_t forward_fixed_floats(const Dims& d) { return 2 * (d.L + 1) * d.D + d.L * 6 * d.D; }
inline int64_t backward_fixed_floats(const Dims& d) { return backward_vector_floats(d.L, d.D); }

// Plans shared memory: `fixed` floats of vectors first, then the rings, then
// the weight matrices in priority order while they fit in `budget` bytes. A
// matrix is rows x cols in global memory (rows: the dot products' length) and
// transposed in shared memory: cols rows of padded_stride(rows) floats, so
// that a lane walks its dot product with a compile-time step. Returns false when the problem does not fit the
// grouped kernels (too many lanes, rings larger than the budget, or T beyond
// the 32-bit step counters).
bool plan(const Dims& d, int64_t fixed, int64_t rows, int64_t cols, bool need_wi0,
          int64_t budget, Placement* pl) {
  pl->G = group_lanes(d);
  if (pl->G == 0 || d.T >= (int64_t(1) << 30)) return false;
  pl->layer_threads = static_cast<int>(round_up_warp(d.D * pl->G));
  pl->threads = d.L * pl->layer_threads;
  int64_t used = fixed;
  for (int l = 0; l < d.L; ++l) {
    pl->ring_off[l] = used;
    used += (span(d, l) + 1) * d.D;
  }
  if (used * static_cast<int64_t>(sizeof(float)) > budget) return false;
  const int64_t padded = padded_stride(rows, pl->G);
  auto place = [&](int64_t* off, int* stride) {
    if ((used + cols * padded) * static_cast<int64_t>(sizeof(float)) <= budget) {
      *off = used;
      *stride = static_cast<int>(padded);
      used += cols * padded;
    } else {
      *off = -1;
      *stride = static_cast<int>(cols);
    }
  };
  for (int l = 0; l < d.L; ++l) place(&pl->wh_off[l], &pl->wh_stride[l]);
  for (int l = d.L - 1; l >= 0; --l) {
    if (l == 0 && !need_wi0) {
      pl->wi_off[0] = -1;
      pl->wi_stride[0] = static_cast<int>(cols);
      continue;
    }
    place(&pl->wi_off[l], &pl->wi_stride[l]);
  }
  pl->smem_floats = used;
  return true;
}

// The forward reads the transposed weights [L, D, 3D]; the backward [L, 3D, D].
bool plan_forward(const Dims& d, int64_t budget, Placement* pl) {
  return plan(d, forward_fixed_floats(d), d.D, 3 * d.D, d.feedback, budget, pl);
}
bool plan_backward(const Dims& d, int64_t budget, Placement* pl) {
  return plan(d, backward_fixed_floats(d), 3 * d.D, d.D, true, budget, pl);
}

// Copies the matrices placed in shared memory (rows x cols each in global
// memory, dense) transposed into their padded rows: shared row c holds column c.
// A warp per source row, coalesced reads, no divisions.
__device__ void load_weights(float* smem, const float* w_ih, const float* w_hh, int L,
                             int rows, int cols, const Placement& pl) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  for (int l = 0; l < L; ++l) {
    for (int which = 0; which < 2; ++which) {
      const int64_t off = which ? pl.wh_off[l] : pl.wi_off[l];
      if (off < 0) continue;
      const int stride = which ? pl.wh_stride[l] : pl.wi_stride[l];
      const float* src = (which ? w_hh : w_ih) + static_cast<int64_t>(l) * rows * cols;
      float* dst = smem + off;
      for (int r = warp; r < rows; r += warps) {
#pragma unroll 4
        for (int c = lane; c < cols; c += 32)
          dst[c * stride + r] = __ldg(src + static_cast<int64_t>(r) * cols + c);
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

// This lane's share (k = g, g + G, ... < n, `terms` of them; w and v already
// offset by g) of three dot products with v: shared-memory rows w, w + o and
// w + 2o. Callers pass pointers derived from the shared-memory base, so the
// loads are LDS with 32-bit addresses, and the step G is a compile-time offset.
template <int G>
__device__ __forceinline__ void dot3_shared(const float* w, int o, const float* v, int terms,
                                            float& a0, float& a1, float& a2) {
  const float* w1 = w + o;
  const float* w2 = w + 2 * o;
#pragma unroll 4
  for (int i = 0; i < terms; ++i) {
    const float x = v[i * G];
    a0 += w[i * G] * x;
    a1 += w1[i * G] * x;
    a2 += w2[i * G] * x;
  }
}

// The same over a matrix in global memory in its own layout (rows k `stride`
// apart, the three at column offsets 0, o, 2o), read through the read-only
// cache; unrolled deeper so that more of its L2 round trips overlap.
template <int G>
__device__ __forceinline__ void dot3_global(const float* __restrict__ w, int stride, int o,
                                            const float* v, int terms, float& a0, float& a1,
                                            float& a2) {
  const int64_t step = static_cast<int64_t>(G) * stride;
#pragma unroll 8
  for (int i = 0; i < terms; ++i) {
    const float x = v[i * G];
    const float* wk = w + i * step;
    a0 += __ldg(wk) * x;
    a1 += __ldg(wk + o) * x;
    a2 += __ldg(wk + 2 * o) * x;
  }
}

// This lane's share of one dot product with a shared-memory row, as dot3_shared.
template <int G>
__device__ __forceinline__ float dot1_shared(const float* w, const float* v, int terms) {
  float a = 0.0f;
#pragma unroll 4
  for (int i = 0; i < terms; ++i) a += w[i * G] * v[i * G];
  return a;
}

template <int G>
__device__ __forceinline__ float dot1_global(const float* __restrict__ w, int stride,
                                             const float* v, int terms) {
  float a = 0.0f;
  const int64_t step = static_cast<int64_t>(G) * stride;
#pragma unroll 8
  for (int i = 0; i < terms; ++i) a += __ldg(w + i * step) * v[i * G];
  return a;
}

// Terms k = g, g + G, ... < n of lane g.
template <int G>
__device__ __forceinline__ int lane_terms(int n, int g) {
  return g < n ? (n - g + G - 1) / G : 0;
}

__device__ __forceinline__ int64_t dring_slot(int64_t tau, int64_t m) {
  return ((tau % m) + m) % m;
}

// The lane's place: layer l, unit (forward) or entry (backward) j, lane g of
// its group; `real` false for the lanes that round a layer up to whole warps
// (they take part in shuffles and barriers only).
struct Lane {
  int l, j, g;
  bool real;
};
template <int G>
__device__ __forceinline__ Lane lane_of(int tid, int D, const Placement& pl) {
  Lane a;
  a.l = tid / pl.layer_threads;
  const int within = tid - a.l * pl.layer_threads;
  a.real = within < D * G;
  a.j = a.real ? within / G : 0;
  a.g = within % G;
  return a;
}

// Forward. Shared memory (floats): ubuf [2][L+1][D] | bias [L][6D] | rings |
// weights. ubuf[parity][l] holds u^l for the layer that reads it in the next
// super-step; ubuf[parity][L] holds y (rounded as stored) for the feedback.
template <typename S, int G>
__global__ void __launch_bounds__(kMaxThreads)
    forward_grouped_kernel(Params p, Placement pl) {
  S2V_DYNAMIC_SMEM(smem);
  const int64_t D = p.D, D3 = 3 * D, T = p.T;
  const int L = p.L;
  const int64_t b = blockIdx.x;
  float* ubuf = smem;
  float* bias = smem + 2 * (L + 1) * D;
  S* H = static_cast<S*>(p.hist) + b * p.R * D;
  S* Y = static_cast<S*>(p.y) + b * T * D;

  load_weights(smem, p.w_ih, p.w_hh, L, static_cast<int>(D), static_cast<int>(D3), pl);
  for (int64_t i = threadIdx.x; i < L * D3; i += blockDim.x) {
    const int64_t l = i / D3, c = i - l * D3;
    bias[l * 6 * D + c] = __ldg(p.b_ih + i);
    bias[l * 6 * D + D3 + c] = __ldg(p.b_hh + i);
  }
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

  // 32-bit indices in the loop (L * D <= 1024, strides < 2^12, T < 2^30):
  // fewer registers under the 64 a 1024-thread block allows.
  const int Di = static_cast<int>(D);
  const Lane ln = lane_of<G>(threadIdx.x, Di, pl);
  const int l = ln.l, j = ln.j, g = ln.g;
  const int span_l = static_cast<int>(p.span[l]), m = span_l + 1;
  float* ring = smem + pl.ring_off[l];
  const int terms = lane_terms<G>(Di, g);
  const bool wh_shared = pl.wh_off[l] >= 0, wi_shared = pl.wi_off[l] >= 0;
  const int sh = pl.wh_stride[l], si = pl.wi_stride[l];
  // Both variants of each pointer; only the placed one is read. The shared ones
  // are offsets from `smem`, so the compiler emits shared-memory loads.
  // Shared: row (gate, j) of the transposed matrix; global: [D, 3D] as given.
  const float* Wh_s = smem + (wh_shared ? pl.wh_off[l] : 0) + j * sh + g;
  const float* Wi_s = smem + (wi_shared ? pl.wi_off[l] : 0) + j * si + g;
  const float* Wh_g = p.w_hh + l * D * D3 + g * D3 + j;
  const float* Wi_g = p.w_ih + l * D * D3 + g * D3 + j;
  const float* bl = bias + l * 6 * Di + j;
  const bool input_layer_dot = l > 0;  // layer 0: only y_{t-1} with the feedback

  const int64_t steps = super_steps(T, L, p.feedback);
  for (int64_t s = 0; s < steps; ++s) {
    const float* uin_buf = ubuf + ((s - 1) & 1) * (L + 1) * D;
    float* uout_buf = ubuf + (s & 1) * (L + 1) * D;
    const int t = ln.real ? static_cast<int>(step_of(p, s, l, false)) : -1;
    const bool active = t >= 0;
    // Ring slots of h_{t - span} (read) and h_t (written).
    const int slot_r = active ? t % m : 0;
    const int slot_w = slot_r + span_l >= m ? slot_r + span_l - m : slot_r + span_l;
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
      const float* hv = ring + slot_r * Di + g;
      if (wh_shared)
        dot3_shared<G>(Wh_s, Di * sh, hv, terms, hr, hz, hn);
      else
        dot3_global<G>(Wh_g, sh, Di, hv, terms, hr, hz, hn);
      // Input part: u^l (l > 0) or y_{t-1} (layer 0 with feedback).
      if (input_layer_dot || (p.feedback && (t > 0 || p.has_state))) {
        const float* uv = uin_buf + (l > 0 ? l : L) * Di + g;
        if (wi_shared)
          dot3_shared<G>(Wi_s, Di * si, uv, terms, ar, az, an);
        else
          dot3_global<G>(Wi_g, si, Di, uv, terms, ar, az, an);
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
        uin_j = u0j + (p.feedback ? uin_buf[L * Di + j] : 0.0f);
      } else {
        ir = bl[0] + ar;
        iz = bl[Di] + az;
        in_ = bl[2 * Di] + an;
        uin_j = uin_buf[l * Di + j];
      }
      const Gates<float> gt =
          cell_gates(ir, iz, in_, bl[3 * Di] + hr, bl[4 * Di] + hz, bl[5 * Di] + hn);
      const float hprev = ring[slot_r * Di + j];
      // Continue from the stored (rounded) value: the backward recomputes from it.
      const float h = Io<S>::round(cell_update(gt, hprev));
      ring[slot_w * Di + j] = h;
      Io<S>::store(H + (p.seg[l] + span_l + t) * D + j, h);
      if (L == 1) {
        Io<S>::store(Y + t * D + j, h);
        uout_buf[L * Di + j] = h;
      } else {
        const float un = residual(h, uin_j);
        if (l == L - 1) {
          Io<S>::store(Y + t * D + j, un);
          uout_buf[L * Di + j] = Io<S>::round(un);
        } else {
          uout_buf[(l + 1) * Di + j] = un;
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

  load_weights(smem, p.w_ih, p.w_hh, L, static_cast<int>(D3), static_cast<int>(D), pl);
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
  const Lane ln = lane_of<G>(threadIdx.x, Di, pl);
  const int l = ln.l, k = ln.j, g = ln.g;  // phase A: unit j = k; phase B: entry k
  const int span_l = static_cast<int>(p.span[l]), m = span_l + 1;
  float* ring = smem + pl.ring_off[l];
  const int terms = lane_terms<G>(D3i, g);
  const bool wh_shared = pl.wh_off[l] >= 0, wi_shared = pl.wi_off[l] >= 0;
  const int sh = pl.wh_stride[l], si = pl.wi_stride[l];
  // Shared: row k of the transposed matrix; global: [3D, D] as given.
  const float* Wh_s = smem + (wh_shared ? pl.wh_off[l] : 0) + k * sh + g;
  const float* Wi_s = smem + (wi_shared ? pl.wi_off[l] : 0) + k * si + g;
  const float* Wh_g = p.w_hh + l * D3 * D + g * D + k;
  const float* Wi_g = p.w_ih + l * D3 * D + g * D + k;
  const float* gf = gbuf + l * 6 * Di;

  const int64_t steps = super_steps(T, L, p.feedback);
  for (int64_t q = 0; q < steps; ++q) {
    const float* gin_buf = dubuf + ((q - 1) & 1) * (L + 1) * D;
    float* gout_buf = dubuf + (q & 1) * (L + 1) * D;
    const int t = ln.real ? static_cast<int>(step_of(p, q, l, true)) : -1;
    // Ring slots of h_t's gradient (read, then zeroed) and of h_{t - span}'s.
    const int slot_t = t >= 0 ? t % m : 0;
    const int slot_p = slot_t + 1 == m ? 0 : slot_t + 1;  // (t - span) mod (span + 1)
    // Phase A: the gate gradients of unit j = k of layer l (lane 0).
    if (t >= 0 && g == 0) {
      const float dh_acc = ring[slot_t * Di + k];
      ring[slot_t * Di + k] = 0.0f;  // the slot serves tau = t - span - 1 next
      const UnitGrad ug =
          unit_backward(p, b, l, k, t, dh_acc, gin_buf, carry, gbuf + l * 6 * D);
      ring[slot_p * Di + k] += ug.dh_prev;
      dres[l * Di + k] = ug.dres;
    }
    __syncthreads();
    // Phase B: W^T dg into entry k of layer l, rows j = g, g + G, ...
    float ah = 0.0f, au = 0.0f;
    if (t >= 0) {
      ah = wh_shared ? dot1_shared<G>(Wh_s, gf + D3i + g, terms)
                     : dot1_global<G>(Wh_g, sh, gf + D3i + g, terms);
      au = wi_shared ? dot1_shared<G>(Wi_s, gf + g, terms)
                     : dot1_global<G>(Wi_g, si, gf + g, terms);
    }
    ah = group_sum<G>(ah);
    au = group_sum<G>(au);
    if (t >= 0 && g == 0) {
      au += dres[l * Di + k];
      ring[slot_p * Di + k] += ah;
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
        gout_buf[l * Di + k] = au;
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
  if (!plan_forward(d, static_cast<int64_t>(optin), &pl)) return 0;
  *launched = true;
  return storage == Storage::kBFloat16 ? launch_forward<__nv_bfloat16>(d, p, pl, stream)
                                       : launch_forward<float>(d, p, pl, stream);
}

int backward_cuda_grouped(const Dims& d, Params p, cudaStream_t stream, bool* launched) {
  *launched = false;
  size_t optin = 0;
  if (const int rc = smem_budget(&optin)) return rc;
  Placement pl{};
  if (!plan_backward(d, static_cast<int64_t>(optin), &pl)) return 0;
  *launched = true;
  return launch_backward(d, p, pl, stream);
}

#endif  // S2V_CUDA_EMULATION

}  // namespace dgru
}  // namespace s2v
