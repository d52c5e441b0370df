// CPU scan of the fused dilated residual GRU stack (API and layouts:
// dilated_gru.h; per-unit arithmetic: dilated_gru_cell.h, shared with CUDA).
//
// Parallelism: over batch elements when there are at least as many as
// threads; otherwise (B = 1 is the streaming case) one OpenMP team per batch
// element splits the hidden units, each thread owning rows j, D+j, 2D+j of its
// units, with one barrier per super-step (two in backward, whose transposed
// products need every unit's gate gradients) -- only when every thread gets
// at least kMinUnitsPerThread units (see run_parallel).
//
// Schedule: without feedback the layers run as a wavefront (layer l on step
// t - l in "super-step" t), so the team meets T + L - 1 barriers instead of
// T * L. Feedback makes layer 0 at t depend on layer L-1 at t-1, so it runs
// step by step, layer by layer.
#include "dilated_gru/dilated_gru.h"
#include "dilated_gru/dilated_gru_cell.h"

#include <string.h>

#include <algorithm>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace s2v {
namespace dgru {
namespace {

// Hot loops are compiled for AVX-512, AVX2+FMA and baseline x86-64 and picked
// at load time: the extension is built without -march (it must run on any
// x86-64), and the matrix-vector products are most of the scan's time.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define S2V_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define S2V_CLONES
#endif

// bfloat16 <-> float, bit-compatible with at::BFloat16 (round to nearest even,
// NaN kept quiet), so that this file needs no torch header.
inline float bf16_to_float(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}
inline uint16_t float_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

template <typename S> struct Io;
template <> struct Io<float> {
  static float load(float v) { return v; }
  static float store(float v) { return v; }
};
template <> struct Io<double> {
  static double load(double v) { return v; }
  static double store(double v) { return v; }
};
template <> struct Io<uint16_t> {
  static float load(uint16_t v) { return bf16_to_float(v); }
  static uint16_t store(float v) { return float_to_bf16(v); }
};

// The products work on padded copies of the weights: every gate's block of
// rows is padded from D to Dp (a multiple of kPad) with zeros, so that all
// loops run over whole vectors (a scalar tail of 2 units per gate cost as much
// as the vector body at D = 66). Accumulators of kBlk outputs live in local
// arrays that the compiler keeps in vector registers across the k loop.
constexpr int64_t kPad = 32;
inline int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

template <int64_t kBlk, typename F>
__attribute__((always_inline)) inline void mv_t_block(F* __restrict__ acc,
                                                      const F* __restrict__ wt,
                                                      const F* __restrict__ v, int64_t D,
                                                      int64_t Dp, int64_t np) {
  F ar[kBlk], az[kBlk], an[kBlk];
  for (int64_t i = 0; i < kBlk; ++i) {
    ar[i] = acc[i];
    az[i] = acc[np + i];
    an[i] = acc[2 * np + i];
  }
  for (int64_t k = 0; k < D; ++k) {
    const F vk = v[k];
    const F* w = wt + k * 3 * Dp;
    for (int64_t i = 0; i < kBlk; ++i) {
      ar[i] += w[i] * vk;
      az[i] += w[Dp + i] * vk;
      an[i] += w[2 * Dp + i] * vk;
    }
  }
  for (int64_t i = 0; i < kBlk; ++i) {
    acc[i] = ar[i];
    acc[np + i] = az[i];
    acc[2 * np + i] = an[i];
  }
}

template <int64_t kBlk, typename F>
__attribute__((always_inline)) inline void mv_rows_block(F* __restrict__ acc,
                                                         const F* __restrict__ w,
                                                         const F* __restrict__ g, int64_t rows,
                                                         int64_t Dp) {
  // Two accumulator sets (even and odd rows): one set is a chain of dependent
  // FMAs whose latency, not throughput, bounds the loop.
  F a[kBlk], b[kBlk];
  for (int64_t i = 0; i < kBlk; ++i) {
    a[i] = acc[i];
    b[i] = F(0);
  }
  int64_t j = 0;
  for (; j + 1 < rows; j += 2) {
    const F g0 = g[j], g1 = g[j + 1];
    const F* r0 = w + j * Dp;
    const F* r1 = r0 + Dp;
    for (int64_t i = 0; i < kBlk; ++i) {
      a[i] += r0[i] * g0;
      b[i] += r1[i] * g1;
    }
  }
  if (j < rows) {
    const F g0 = g[j];
    const F* r0 = w + j * Dp;
    for (int64_t i = 0; i < kBlk; ++i) a[i] += r0[i] * g0;
  }
  for (int64_t i = 0; i < kBlk; ++i) acc[i] = a[i] + b[i];
}

// matvec_t_slice: acc [3][np] += rows [j0, j0 + np) of each gate of W v, with
//   wt the padded transposed weights [D][3][Dp]; j0, np multiples of kPad.
// matvec_rows_slice: acc [np] += entries [k0, k0 + np) of W^T g, with w the
//   padded weights [rows][Dp].
// (Macro-generated per type: GCC's target_clones does not apply to templates.)
#define S2V_DGRU_MATVECS(F)                                                                  \
  S2V_CLONES void matvec_t_slice(F* acc, const F* wt, const F* v, int64_t D, int64_t Dp,    \
                                 int64_t j0, int64_t np) {                                   \
    int64_t c = 0;                                                                           \
    for (; c + 2 * kPad <= np; c += 2 * kPad)                                                \
      mv_t_block<2 * kPad>(acc + c, wt + j0 + c, v, D, Dp, np);                              \
    if (c < np) mv_t_block<kPad>(acc + c, wt + j0 + c, v, D, Dp, np);                        \
  }                                                                                          \
  S2V_CLONES void matvec_rows_slice(F* acc, const F* w, const F* g, int64_t rows,           \
                                    int64_t Dp, int64_t k0, int64_t np) {                    \
    int64_t c = 0;                                                                           \
    for (; c + 2 * kPad <= np; c += 2 * kPad)                                                \
      mv_rows_block<2 * kPad>(acc + c, w + k0 + c, g, rows, Dp);                             \
    for (; c < np; c += kPad) mv_rows_block<kPad>(acc + c, w + k0 + c, g, rows, Dp);         \
  }
S2V_DGRU_MATVECS(float)
S2V_DGRU_MATVECS(double)
#undef S2V_DGRU_MATVECS

// Zero-padded copies. pad_gates: [n][3][D] -> [n][3][Dp] (transposed weights,
// n = L * D, and biases, n = L). pad_cols: [rows][D] -> [rows][Dp].
template <typename F>
std::vector<F> pad_gates(const F* w, int64_t n, int64_t D, int64_t Dp) {
  std::vector<F> out(n * 3 * Dp, F(0));
  for (int64_t r = 0; r < n * 3; ++r)
    for (int64_t j = 0; j < D; ++j) out[r * Dp + j] = w[r * D + j];
  return out;
}
template <typename F>
std::vector<F> pad_cols(const F* w, int64_t rows, int64_t D, int64_t Dp) {
  std::vector<F> out(rows * Dp, F(0));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < D; ++k) out[r * Dp + k] = w[r * D + k];
  return out;
}

// The per-unit loops of the cell, here (not in the templated scans) so that
// they get the same per-ISA clones as the products.
#define S2V_DGRU_CELLS(F)                                                                    \
  S2V_CLONES void gates_forward(const F* __restrict__ ai, const F* __restrict__ ah,         \
                                const F* __restrict__ hp, F* __restrict__ hn, int64_t n) {  \
    _Pragma("omp simd") for (int64_t j = 0; j < n; ++j) {                                                        \
      const Gates<F> g = cell_gates(ai[j], ai[n + j], ai[2 * n + j], ah[j], ah[n + j],       \
                                    ah[2 * n + j]);                                          \
      hn[j] = cell_update(g, hp[j]);                                                         \
    }                                                                                        \
  }                                                                                          \
  /* One restrict pointer per gate row: with base + D offsets the compiler */         \
  /* cannot prove the 14 output streams apart and gives up vectorising. */               \
  S2V_CLONES void cells_backward_rows(                                                       \
      const F* __restrict__ gi_r, const F* __restrict__ gi_z, const F* __restrict__ gi_n,    \
      const F* __restrict__ gh_r, const F* __restrict__ gh_z, const F* __restrict__ gh_n,    \
      const F* __restrict__ hp, const F* __restrict__ hc, const F* __restrict__ ul,          \
      const F* __restrict__ gnext, const F* __restrict__ carry, const F* __restrict__ dhc,   \
      F* __restrict__ dhp, F* __restrict__ dgi_r, F* __restrict__ dgi_z,                     \
      F* __restrict__ dgi_n, F* __restrict__ dgh_r, F* __restrict__ dgh_z,                   \
      F* __restrict__ dgh_n, F* __restrict__ gf_r, F* __restrict__ gf_z,                     \
      F* __restrict__ gf_n, F* __restrict__ gf_hr, F* __restrict__ gf_hz,                    \
      F* __restrict__ gf_hn, F* __restrict__ dres, int64_t n, bool residual_layer) {         \
    /* Multiplying by 0 or 1 instead of selecting keeps the loop branch free. */            \
    const F res = residual_layer ? F(1) : F(0);                                              \
    for (int64_t j = 0; j < n; ++j) {                                                        \
      const F g = gnext[j] + carry[j];                                                       \
      const F dr = res * residual_backward(hc[j], ul[j], g);                                 \
      const F dh = dhc[j] + dr + (F(1) - res) * g;                                           \
      const Gates<F> gt = cell_gates(gi_r[j], gi_z[j], gi_n[j], gh_r[j], gh_z[j], gh_n[j]);  \
      const CellGrad<F> c = cell_backward(gt, hp[j], dh);                                    \
      dgi_r[j] = c.dgi_r;                                                                    \
      dgi_z[j] = c.dgi_z;                                                                    \
      dgi_n[j] = c.dgi_n;                                                                    \
      dgh_r[j] = c.dgi_r;                                                                    \
      dgh_z[j] = c.dgi_z;                                                                    \
      dgh_n[j] = c.dgh_n;                                                                    \
      gf_r[j] = c.dgi_r;                                                                     \
      gf_z[j] = c.dgi_z;                                                                     \
      gf_n[j] = c.dgi_n;                                                                     \
      gf_hr[j] = c.dgi_r;                                                                    \
      gf_hz[j] = c.dgi_z;                                                                    \
      gf_hn[j] = c.dgh_n;                                                                    \
      dhp[j] += c.dh_prev;                                                                   \
      dres[j] = dr;                                                                          \
    }                                                                                        \
  }                                                                                          \
  inline void cells_backward(const F* gil, const F* ghl, const F* hp, const F* hc,          \
                             const F* ul, const F* gnext, const F* carry, const F* dhc,     \
                             F* dhp, F* dgil, F* dghl, F* gfull, F* dres, int64_t D,        \
                             int64_t j0, int64_t j1, bool residual_layer) {                  \
    const int64_t D3 = 3 * D;                                                                \
    cells_backward_rows(gil + j0, gil + D + j0, gil + 2 * D + j0, ghl + j0, ghl + D + j0,    \
                        ghl + 2 * D + j0, hp + j0, hc + j0, ul + j0, gnext + j0,            \
                        carry + j0, dhc + j0, dhp + j0, dgil + j0, dgil + D + j0,           \
                        dgil + 2 * D + j0, dghl + j0, dghl + D + j0, dghl + 2 * D + j0,     \
                        gfull + j0, gfull + D + j0, gfull + 2 * D + j0, gfull + D3 + j0,    \
                        gfull + D3 + D + j0, gfull + D3 + 2 * D + j0, dres + j0, j1 - j0,   \
                        residual_layer);                                                     \
  }
S2V_DGRU_CELLS(float)
S2V_DGRU_CELLS(double)
#undef S2V_DGRU_CELLS

struct NoBarrier {
  void operator()() const {}
};
struct OmpBarrier {
  void operator()() const {
#ifdef _OPENMP
#pragma omp barrier
#endif
  }
};

// Which (layer, step) a layer works on in super-step s, or -1.
inline int64_t step_of(const Dims& d, int64_t s, int l, bool reverse) {
  if (d.feedback) {
    const int64_t t = s / d.L;
    if (s % d.L != (reverse ? d.L - 1 - l : l)) return -1;
    return reverse ? d.T - 1 - t : t;
  }
  const int64_t t = reverse ? d.T - 1 - s + (d.L - 1 - l) : s - l;
  return (t >= 0 && t < d.T) ? t : -1;
}
inline int64_t super_steps(const Dims& d) { return d.feedback ? d.T * d.L : d.T + d.L - 1; }

// Buffers one batch element's team shares.
template <typename F>
struct Shared {
  std::vector<F> ubuf;   // [2][L + 1][D]: u (forward) / du (backward) between layers, by parity
  std::vector<F> vec;    // [L][D]: residual gradient (backward)
  std::vector<F> gbuf;   // [L][6D]: full gate-gradient vectors (backward)
  std::vector<F> carry;  // [D]: feedback gradient into y_{t-1} (backward)
  std::vector<F> zeros;  // [D]
  int64_t L, D;
  explicit Shared(const Dims& d)
      : ubuf(2 * (d.L + 1) * d.D), vec(d.L * d.D), gbuf(d.L * 6 * d.D), carry(d.D), zeros(d.D), L(d.L),
        D(d.D) {}
  F* u(int64_t parity, int l) { return ubuf.data() + ((parity & 1) * (L + 1) + l) * D; }
};

// Padded weights the scans read (built once per call, shared by all threads).
template <typename F>
struct Padded {
  int64_t Dp;
  std::vector<F> w_ih, w_hh;  // forward: [L][D][3][Dp] (transposed); backward: [L][3D][Dp]
  std::vector<F> b_ih, b_hh;  // forward: [L][3][Dp]
};

// Forward of batch element b over units [j0, j1) (j0 a multiple of kPad).
template <typename S, typename F, typename Barrier>
void forward_one(const Dims& d, int64_t b, int64_t j0, int64_t j1, Shared<F>& sh,
                 const Padded<F>& pw, const F* gi0, const F* u0, S* hist, S* y,
                 Barrier barrier) {
  const int64_t D = d.D, T = d.T, L = d.L, n = j1 - j0, D3 = 3 * D, Dp = pw.Dp;
  const int64_t np = round_up(n, kPad);
  const int64_t R = hist_rows(d);
  S* H = hist + b * R * D;
  S* Y = y + b * T * D;
  std::vector<F> acc_i(3 * std::max<int64_t>(np, 1)), acc_h(3 * std::max<int64_t>(np, 1));
  std::vector<F> vin(D), vy(D), vh(Dp, F(0));
  int64_t seg[kMaxLayers + 1], sp[kMaxLayers];
  for (int l = 0; l < L; ++l) {
    seg[l] = seg_offset(d, l);
    sp[l] = span(d, l);
  }
  const int64_t steps = super_steps(d);
  for (int64_t s = 0; s < steps; ++s) {
    for (int l = 0; l < L; ++l) {
      const int64_t t = step_of(d, s, l, false);
      if (t < 0 || n == 0) continue;
      const F* uin;  // u^l_t, full vector
      const F* bi = pw.b_ih.data() + l * 3 * Dp;
      for (int64_t g = 0; g < 3; ++g)
        for (int64_t j = 0; j < np; ++j) acc_i[g * np + j] = bi[g * Dp + j0 + j];
      if (l == 0) {
        // Layer 0's input projection came from one GEMM over all steps (biases
        // included); feedback adds the recurrent part W_ih y_{t-1}.
        const F* g = gi0 + (b * T + t) * D3;
        for (int64_t gg = 0; gg < 3; ++gg)
          for (int64_t j = 0; j < n; ++j) acc_i[gg * np + j] = g[gg * D + j0 + j];
        const F* x = u0 + (b * T + t) * D;
        if (d.feedback) {
          const S* prev = nullptr;
          if (t > 0) prev = Y + (t - 1) * D;
          else if (d.has_state) prev = H + seg[L - 1] * D;
          for (int64_t k = 0; k < D; ++k) vy[k] = prev ? Io<S>::load(prev[k]) : F(0);
          for (int64_t k = 0; k < D; ++k) vin[k] = x[k] + vy[k];
          if (prev) matvec_t_slice(acc_i.data(), pw.w_ih.data(), vy.data(), D, Dp, j0, np);
          uin = vin.data();
        } else {
          uin = x;
        }
      } else {
        uin = sh.u((s - 1) & 1, l);
        matvec_t_slice(acc_i.data(), pw.w_ih.data() + l * D * 3 * Dp, uin, D, Dp, j0, np);
      }
      const S* hp = H + (seg[l] + t) * D;
      for (int64_t k = 0; k < D; ++k) vh[k] = Io<S>::load(hp[k]);
      const F* bh = pw.b_hh.data() + l * 3 * Dp;
      for (int64_t g = 0; g < 3; ++g)
        for (int64_t j = 0; j < np; ++j) acc_h[g * np + j] = bh[g * Dp + j0 + j];
      matvec_t_slice(acc_h.data(), pw.w_hh.data() + l * D * 3 * Dp, vh.data(), D, Dp, j0, np);
      S* hout = H + (seg[l] + sp[l] + t) * D;
      F* unext = sh.u(s & 1, l + 1);
      F* hn = acc_i.data();  // the input projection is consumed by then
      gates_forward(acc_i.data(), acc_h.data(), vh.data() + j0, hn, np);
      for (int64_t j = 0; j < n; ++j) {
        const S hs = Io<S>::store(hn[j]);
        hout[j0 + j] = hs;
        // Continue from the stored (rounded) value: the backward recomputes from it.
        const F h = Io<S>::load(hs);
        if (L == 1) {
          Y[t * D + j0 + j] = hs;
        } else {
          const F un = residual(h, uin[j0 + j]);
          if (l == L - 1) Y[t * D + j0 + j] = Io<S>::store(un);
          else unext[j0 + j] = un;
        }
      }
    }
    barrier();
  }
}

template <typename F, typename Barrier>
void backward_one(const Dims& d, int64_t b, int64_t k0, int64_t k1, Shared<F>& sh,
                  const Padded<F>& pw, const F* gi, const F* gh, const F* u, const F* hist,
                  const F* dy, F* dhist, F* dgi, F* dgh, F* du0, Barrier barrier) {
  const int64_t D = d.D, T = d.T, L = d.L, B = d.B, n = k1 - k0, D3 = 3 * D;
  const int64_t R = hist_rows(d);
  const F* H = hist + b * R * D;
  F* dH = dhist + b * R * D;
  const int64_t Dp = pw.Dp, np = round_up(n, kPad);
  std::vector<F> acc(std::max<int64_t>(np, 1));
  int64_t seg[kMaxLayers + 1], sp[kMaxLayers];
  for (int l = 0; l < L; ++l) {
    seg[l] = seg_offset(d, l);
    sp[l] = span(d, l);
  }
  // Feedback: gradient reaching y_{t-1} through u^0_t (written by layer 0 at t,
  // read by layer L-1 at t-1 in the next super-step).
  F* carry = sh.carry.data();
  if (d.feedback)
    for (int64_t k = k0; k < k1; ++k) carry[k] = F(0);
  barrier();
  const int64_t steps = super_steps(d);
  for (int64_t q = 0; q < steps; ++q) {
    // Phase A: elementwise gradients of every active (layer, unit).
    for (int l = 0; l < L; ++l) {
      const int64_t t = step_of(d, q, l, true);
      if (t < 0 || n == 0) continue;
      const int64_t gidx = ((l * B + b) * T + t) * D3;
      const F* gil = gi + gidx;
      const F* ghl = gh + gidx;
      F* dgil = dgi + gidx;
      F* dghl = dgh + gidx;
      const F* ul = u + ((l * B + b) * T + t) * D;
      const F* hp = H + (seg[l] + t) * D;
      const F* hc = H + (seg[l] + sp[l] + t) * D;
      F* dhp = dH + (seg[l] + t) * D;
      const F* dhc = dH + (seg[l] + sp[l] + t) * D;
      const F* gnext = (l == L - 1) ? dy + (b * T + t) * D : sh.u((q - 1) & 1, l + 1);
      F* dres = sh.vec.data() + l * D;
      F* gfull = sh.gbuf.data() + l * 6 * D;
      // Never null: a conditional load would keep the loop from vectorising.
      const F* carry_in = (l == L - 1 && d.feedback) ? sh.carry.data() : sh.zeros.data();
      cells_backward(gil, ghl, hp, hc, ul, gnext, carry_in, dhc, dhp, dgil, dghl, gfull, dres, D,
                     k0, k1, L > 1);
    }
    barrier();
    // Phase B: transposed products W^T dg, which need every unit's dg.
    for (int l = 0; l < L; ++l) {
      const int64_t t = step_of(d, q, l, true);
      if (t < 0 || n == 0) continue;
      const F* gfull = sh.gbuf.data() + l * 6 * D;
      F* dhp = dH + (seg[l] + t) * D;
      std::fill(acc.begin(), acc.end(), F(0));
      matvec_rows_slice(acc.data(), pw.w_hh.data() + l * D3 * Dp, gfull + D3, D3, Dp, k0, np);
      for (int64_t k = 0; k < n; ++k) dhp[k0 + k] += acc[k];
      const F* dres = sh.vec.data() + l * D;
      for (int64_t k = 0; k < n; ++k) acc[k] = dres[k0 + k];
      matvec_rows_slice(acc.data(), pw.w_ih.data() + l * D3 * Dp, gfull, D3, Dp, k0, np);
      if (l == 0) {
        F* out = du0 + (b * T + t) * D;
        for (int64_t k = 0; k < n; ++k) out[k0 + k] = acc[k];
        if (d.feedback) {
          if (t > 0) {
            for (int64_t k = 0; k < n; ++k) carry[k0 + k] = acc[k];
          } else if (d.has_state) {
            F* first = dH + seg[L - 1] * D;
            for (int64_t k = 0; k < n; ++k) first[k0 + k] += acc[k];
          }
        }
      } else {
        F* out = sh.u(q & 1, l);
        for (int64_t k = 0; k < n; ++k) out[k0 + k] = acc[k];
      }
    }
    barrier();
  }
}

int max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

constexpr int64_t kMinUnitsPerThread = 64;

// Runs body(b, j0, j1, shared, barrier) for every batch element: one thread per
// element when there are enough elements, else a team splitting the units,
// sharing one Shared made before the team starts.
template <typename F, typename Body>
void run_parallel(const Dims& d, Body body) {
  const int nt = max_threads();
  // A team only pays when each thread owns enough units: at D = 66 one thread
  // runs a super-step in ~2 us, about what an OpenMP barrier costs on a busy
  // 2-core machine (measured: the team was 1.1x faster when the machine was
  // idle and 20x slower while other processes competed for the cores).
  const int64_t team_max = std::max<int64_t>(1, d.D / kMinUnitsPerThread);
  if (d.B >= nt || nt == 1 || team_max == 1) {
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(static_cast<int>(std::min<int64_t>(nt, d.B)))
#endif
    for (int64_t b = 0; b < d.B; ++b) {
      Shared<F> sh(d);
      body(b, int64_t{0}, d.D, sh, NoBarrier{});
    }
    return;
  }
  const int team = static_cast<int>(std::min<int64_t>(nt, team_max));
  for (int64_t b = 0; b < d.B; ++b) {
    Shared<F> sh(d);
#ifdef _OPENMP
#pragma omp parallel num_threads(team)
#endif
    {
#ifdef _OPENMP
      const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
#else
      const int tid = 0, nth = 1;
#endif
      // Slices start at multiples of kPad so that the padded products line up.
      const int64_t per = round_up((d.D + nth - 1) / nth, kPad);
      const int64_t j0 = std::min<int64_t>(d.D, tid * per);
      const int64_t j1 = std::min<int64_t>(d.D, j0 + per);
      body(b, j0, j1, sh, OmpBarrier{});
    }
  }
}

template <typename S, typename F>
void forward_impl(const Dims& d, const F* gi0, const F* u0, const F* w_ih_t, const F* w_hh_t,
                  const F* b_ih, const F* b_hh, S* hist, S* y) {
  Padded<F> pw;
  pw.Dp = round_up(d.D, kPad);
  pw.w_ih = pad_gates(w_ih_t, d.L * d.D, d.D, pw.Dp);
  pw.w_hh = pad_gates(w_hh_t, d.L * d.D, d.D, pw.Dp);
  pw.b_ih = pad_gates(b_ih, d.L, d.D, pw.Dp);
  pw.b_hh = pad_gates(b_hh, d.L, d.D, pw.Dp);
  run_parallel<F>(d, [&](int64_t b, int64_t j0, int64_t j1, Shared<F>& sh, auto barrier) {
    forward_one<S, F>(d, b, j0, j1, sh, pw, gi0, u0, hist, y, barrier);
  });
}

template <typename F>
void backward_impl(const Dims& d, const F* gi, const F* gh, const F* u, const F* hist,
                   const F* w_ih, const F* w_hh, const F* dy, F* dhist, F* dgi, F* dgh, F* du0) {
  Padded<F> pw;
  pw.Dp = round_up(d.D, kPad);
  pw.w_ih = pad_cols(w_ih, d.L * 3 * d.D, d.D, pw.Dp);
  pw.w_hh = pad_cols(w_hh, d.L * 3 * d.D, d.D, pw.Dp);
  run_parallel<F>(d, [&](int64_t b, int64_t k0, int64_t k1, Shared<F>& sh, auto barrier) {
    backward_one<F>(d, b, k0, k1, sh, pw, gi, gh, u, hist, dy, dhist, dgi, dgh, du0, barrier);
  });
}

}  // namespace

void forward_cpu(const Dims& d, Storage storage, const float* gi0, const float* u0,
                 const float* w_ih_t, const float* w_hh_t, const float* b_ih, const float* b_hh,
                 void* hist, void* y) {
  if (storage == Storage::kFloat32)
    forward_impl(d, gi0, u0, w_ih_t, w_hh_t, b_ih, b_hh, static_cast<float*>(hist),
                 static_cast<float*>(y));
  else
    forward_impl(d, gi0, u0, w_ih_t, w_hh_t, b_ih, b_hh, static_cast<uint16_t*>(hist),
                 static_cast<uint16_t*>(y));
}

void forward_cpu(const Dims& d, const double* gi0, const double* u0, const double* w_ih_t,
                 const double* w_hh_t, const double* b_ih, const double* b_hh, double* hist,
                 double* y) {
  forward_impl(d, gi0, u0, w_ih_t, w_hh_t, b_ih, b_hh, hist, y);
}

void backward_cpu(const Dims& d, const float* gi, const float* gh, const float* u,
                  const float* hist, const float* w_ih, const float* w_hh, const float* dy,
                  float* dhist, float* dgi, float* dgh, float* du0) {
  backward_impl(d, gi, gh, u, hist, w_ih, w_hh, dy, dhist, dgi, dgh, du0);
}

void backward_cpu(const Dims& d, const double* gi, const double* gh, const double* u,
                  const double* hist, const double* w_ih, const double* w_hh, const double* dy,
                  double* dhist, double* dgi, double* dgh, double* du0) {
  backward_impl(d, gi, gh, u, hist, w_ih, w_hh, dy, dhist, dgi, dgh, du0);
}

}  // namespace dgru
}  // namespace s2v
