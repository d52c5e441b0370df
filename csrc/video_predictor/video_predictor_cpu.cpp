// CPU kernels of the video prediction layer; API and contract in video_predictor.h.
//
// Design (figures from profiling/bench_video_predictor.py and the issue 6 report):
// * Everything is pixel-major (channels-last, [pixels, channels]): MKL runs
//   [pixels, K] × [K, 32..96] products at 160-190 GFLOP/s on 2 cores where the
//   channel-major [96, K] × [K, pixels] form reaches ~110-140.
// * A gate convolution, square or directional, is a list of taps (dy, dx) with
//   zero or replicate boundaries; a directional conv is a k×k-footprint conv
//   with a sparse tap pattern whose boundary replicates rows (or columns). Each
//   tap is one GEMM of the operand shifted by dy·W + dx rows against that tap's
//   weight block, accumulated in place: no im2col copy (which cost as much as
//   the GEMM itself: a 9-tap im2col block is 9× the operand). On CPUs with
//   AVX-512 the taps of one convolution run as one register-blocked loop
//   instead (tap_conv_avx512.h: no per-tap operand packing, the output
//   written once, each pixel's edge handling in its source pointers, so no
//   ring below except for the backward's transposed replicate convolutions;
//   the forward+backward went from ~485 to ~405 ms at C 32, 64², T 16), and
//   so do the weight gradients. On the GEMM path, shifted rows are
//   wrong only within S = k/2 pixels of an image edge (the "ring": reads that
//   leave the image, wrap into the next row or batch, or must be clamped), so
//   the ring's rows are recomputed exactly from an im2col gather of those few
//   pixels, which also applies the replicate clamp.
// * Per step and flow the operand buffer holds (h, x, q) in adjacent columns,
//   so [h, x] (reset/update gates) and [x, r ⊙ h] (candidate) are each one
//   column range and the input half rides in the same GEMM (K = C + Ch per
//   tap). Measured against batching the input half over all T beforehand, the
//   larger K wins at these sizes; flows 1-2 and 3-4 still run separate GEMMs
//   (their taps differ in sign).
// * Transcendentals run through ATen's vectorised sigmoid_ (this file is
//   compiled without -mavx*); tanh(a) = 2σ(2a) - 1 with the factor 2 folded
//   into the candidate gate's weights, since ATen's tanh is ~6× slower here.
// * Backward: the forward saved h_t for every t (and, when they fit, the gates
//   r, u, r ⊙ h), so the gates of all steps are known without a sequence; the
//   reverse-time scan runs the two transposed gate convolutions per step
//   (gather form: the same shifted-tap GEMMs with the offsets negated, the ring
//   gathering every output pixel whose clamped read landed on it), each tap one
//   GEMM that yields the state's and the input's gradient together (x and h
//   columns of the weight side by side: wider products, 132-151 -> ~170
//   GFLOP/s, and no second pass over the gate gradients for dx). The weight
//   gradients are per-tap GEMMs over whole frames after the scan. Time is
//   processed in chunks, newest first, so scratch stays bounded.
#include "video_predictor/video_predictor.h"
#include "check.h"
// pooled_empty: large work buffers recycled across calls (no fresh pages per
// call: measured at 10-15 % of the forward); NaN-filled under S2V_POISON_EMPTY=1.
#include "buffer_pool.h"
#include "poison.h"
#include "cpu_clones.h"
#include "video_predictor/tap_conv_avx512.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace s2v {
namespace video_predictor {
namespace {

// The per-pixel loops of a step and of the reverse scan, on pixel rows
// [n0, n1), each channel row `ch` wide. Free functions with restrict pointers
// and per-ISA clones (cpu_clones.h): as lambdas inside the templated engine
// they compiled to scalar SSE2 code, and the scan's first loop alone was ~4 %
// of the forward+backward.
#define S2V_VP_POINTWISE(F)                                                                  \
  /* q = r ⊙ h_prev into the flow buffer's q columns (row stride ld) and q_out. */           \
  S2V_CLONES void reset_products(int64_t n0, int64_t n1, int64_t ch, int64_t ld,             \
                                 const F* __restrict__ ru, const F* __restrict__ hp,         \
                                 F* __restrict__ qbuf, F* __restrict__ q_out) {              \
    for (int64_t n = n0; n < n1; ++n) {                                                      \
      const F* __restrict__ r = ru + n * 2 * ch;                                             \
      const F* __restrict__ h = hp + n * ch;                                                 \
      F* __restrict__ qq = qbuf + n * ld;                                                    \
      _Pragma("omp simd") for (int64_t c = 0; c < ch; ++c) qq[c] = r[c] * h[c];              \
      if (q_out != nullptr) std::memcpy(q_out + n * ch, qq, ch * sizeof(F));                 \
    }                                                                                        \
  }                                                                                          \
  /* c = 2σ(2a) - 1 in place (cand holds σ(2a)); h_new = h + u (c - h) if h_new. */          \
  S2V_CLONES void candidate_update(int64_t n0, int64_t n1, int64_t ch,                       \
                                   const F* __restrict__ ru, const F* __restrict__ hp,       \
                                   F* __restrict__ cand, F* __restrict__ h_new) {            \
    for (int64_t n = n0; n < n1; ++n) {                                                      \
      const F* __restrict__ u = ru + n * 2 * ch + ch;                                        \
      const F* __restrict__ h = hp + n * ch;                                                 \
      F* __restrict__ cc = cand + n * ch;                                                    \
      _Pragma("omp simd") for (int64_t c = 0; c < ch; ++c) cc[c] = 2 * cc[c] - 1;            \
      if (h_new == nullptr) continue;                                                        \
      F* __restrict__ hn = h_new + n * ch;                                                   \
      _Pragma("omp simd") for (int64_t c = 0; c < ch; ++c) hn[c] = h[c] + u[c] * (cc[c] - h[c]); \
    }                                                                                        \
  }                                                                                          \
  /* Reverse scan, before the candidate's transposed conv: with gh = carry + dho the    */   \
  /* gradient reaching h_t, the candidate's and the update gate's pre-activation         */   \
  /* gradients (DA columns 2ch.., ch.., row stride 3ch), ac = gh (1 - u) and dq = 0      */   \
  /* (ac, dq: row stride lda; the candidate's conv accumulates into dq). The             */   \
  /* candidate comes from `cand`, or (cand null) is recovered from h_t = h + u (c - h),  */   \
  /* clamped to tanh's range; u (c - h) = h_t - h either way.                            */   \
  S2V_CLONES void scan_update_grads(int64_t n0, int64_t n1, int64_t ch,                      \
                                    const F* __restrict__ ru, const F* __restrict__ hp,      \
                                    const F* __restrict__ hnext, const F* __restrict__ cand, \
                                    const F* __restrict__ carry, const F* __restrict__ dho,  \
                                    F* __restrict__ DA, F* __restrict__ ac,                  \
                                    F* __restrict__ dq, int64_t lda) {                       \
    for (int64_t n = n0; n < n1; ++n) {                                                      \
      const F* __restrict__ u = ru + n * 2 * ch + ch;                                        \
      const F* __restrict__ h = hp + n * ch;                                                 \
      const F* __restrict__ cr = carry + n * ch;                                             \
      const F* __restrict__ dh = dho + n * ch;                                               \
      F* __restrict__ du = DA + n * 3 * ch + ch;                                             \
      F* __restrict__ dc = DA + n * 3 * ch + 2 * ch;                                         \
      F* __restrict__ a = ac + n * lda;                                                      \
      std::fill(dq + n * lda, dq + n * lda + ch, F(0));                                      \
      if (cand == nullptr) {                                                                 \
        const F* __restrict__ hn = hnext + n * ch;                                           \
        _Pragma("omp simd") for (int64_t c = 0; c < ch; ++c) {                               \
          const F gh = cr[c] + dh[c], uc = u[c], cmhu = hn[c] - h[c];                        \
          const F v = h[c] + cmhu / (uc > 0 ? uc : F(1));                                    \
          F cc = F(-1) < v ? v : F(-1);                                                      \
          cc = cc < F(1) ? cc : F(1);                                                        \
          cc = uc > 0 ? cc : F(0);                                                           \
          dc[c] = gh * uc * (1 - cc * cc);                                                   \
          du[c] = gh * cmhu * (1 - uc);                                                      \
          a[c] = gh * (1 - uc);                                                              \
        }                                                                                    \
      } else {                                                                               \
        const F* __restrict__ cd = cand + n * ch;                                            \
        _Pragma("omp simd") for (int64_t c = 0; c < ch; ++c) {                               \
          const F gh = cr[c] + dh[c], uc = u[c], cc = cd[c];                                 \
          dc[c] = gh * uc * (1 - cc * cc);                                                   \
          du[c] = gh * ((cc - h[c]) * uc) * (1 - uc);                                        \
          a[c] = gh * (1 - uc);                                                              \
        }                                                                                    \
      }                                                                                      \
    }                                                                                        \
  }                                                                                          \
  /* Reverse scan, after it: the reset gate's pre-activation gradient (DA columns 0..)  */   \
  /* from dq = d(r ⊙ h), and ac += dq ⊙ r (dq, ac: row stride lda). */                      \
  S2V_CLONES void scan_reset_grads(int64_t n0, int64_t n1, int64_t ch,                       \
                                   const F* __restrict__ ru, const F* __restrict__ hp,       \
                                   const F* __restrict__ dq, F* __restrict__ DA,             \
                                   F* __restrict__ ac, int64_t lda) {                        \
    for (int64_t n = n0; n < n1; ++n) {                                                      \
      const F* __restrict__ r = ru + n * 2 * ch;                                             \
      const F* __restrict__ h = hp + n * ch;                                                 \
      const F* __restrict__ d = dq + n * lda;                                                \
      F* __restrict__ dr = DA + n * 3 * ch;                                                  \
      F* __restrict__ a = ac + n * lda;                                                      \
      _Pragma("omp simd") for (int64_t c = 0; c < ch; ++c) {                                 \
        dr[c] = d[c] * h[c] * r[c] * (1 - r[c]);                                             \
        a[c] += d[c] * r[c];                                                                 \
      }                                                                                      \
    }                                                                                        \
  }                                                                                          \
  /* Blend backward, pixel rows [n0, n1) of agg [., C+1] (pre-activations: C values, */      \
  /* then the mask's), dy and xh [., C]: a = σ(mask), dxh = dy a overwrites xh, and      */   \
  /* dagg = (dy (1 - a), Σ_c dy (xh - agg) · a (1 - a)). One pass instead of ~8 ATen ops. */  \
  S2V_CLONES void blend_grads(int64_t n0, int64_t n1, int64_t C, const F* __restrict__ agg, \
                              const F* __restrict__ dy, F* __restrict__ xh_dxh,              \
                              F* __restrict__ dagg) {                                        \
    for (int64_t n = n0; n < n1; ++n) {                                                      \
      const F* __restrict__ g = agg + n * (C + 1);                                           \
      const F* __restrict__ d = dy + n * C;                                                  \
      F* __restrict__ x = xh_dxh + n * C;                                                    \
      F* __restrict__ o = dagg + n * (C + 1);                                                \
      const F a = F(1) / (F(1) + std::exp(-g[C]));                                           \
      F s = 0;                                                                               \
      _Pragma("omp simd reduction(+ : s)") for (int64_t c = 0; c < C; ++c)                   \
          s += d[c] * (x[c] - g[c]);                                                         \
      _Pragma("omp simd") for (int64_t c = 0; c < C; ++c) {                                  \
        x[c] = d[c] * a;                                                                     \
        o[c] = d[c] * (1 - a);                                                               \
      }                                                                                      \
      o[C] = s * a * (1 - a);                                                                \
    }                                                                                        \
  }                                                                                          \
  /* Blend forward on one frame: g holds C + 1 channel planes of HW pixels (the        */    \
  /* pre-activations, then the mask's); y = xh a + g (1 - a), a = σ(mask), into a. */        \
  S2V_CLONES void blend_output(int64_t HW, int64_t C, const F* __restrict__ g,               \
                               const F* __restrict__ xh, F* __restrict__ y,                  \
                               F* __restrict__ a) {                                          \
    for (int64_t q = 0; q < HW; ++q) a[q] = F(1) / (F(1) + std::exp(-g[C * HW + q]));        \
    for (int64_t c = 0; c < C; ++c) {                                                        \
      const F* __restrict__ gc = g + c * HW;                                                 \
      const F* __restrict__ xc = xh + c * HW;                                                \
      F* __restrict__ yc = y + c * HW;                                                       \
      _Pragma("omp simd") for (int64_t q = 0; q < HW; ++q)                                   \
          yc[q] = xc[q] * a[q] + gc[q] * (1 - a[q]);                                         \
    }                                                                                        \
  }                                                                                          \
  /* dst[c · dst_ld + r] = src[r · src_ld + c] for r < nr, c < nc, through 8 × 8     */      \
  /* register blocks: the compiler turns the fixed-size block into vector shuffles, */       \
  /* 1.4-1.6× the element-by-element loop on [4096, 32..64] planes.                */       \
  S2V_CLONES void transpose_band(const F* __restrict__ src, int64_t src_ld,                  \
                                 F* __restrict__ dst, int64_t dst_ld, int64_t nr,            \
                                 int64_t nc) {                                               \
    constexpr int64_t kB = 8;                                                                \
    int64_t r0 = 0;                                                                          \
    for (; r0 + kB <= nr; r0 += kB) {                                                        \
      int64_t c0 = 0;                                                                        \
      for (; c0 + kB <= nc; c0 += kB) {                                                      \
        F blk[kB][kB];                                                                       \
        for (int64_t r = 0; r < kB; ++r)                                                     \
          for (int64_t c = 0; c < kB; ++c) blk[c][r] = src[(r0 + r) * src_ld + c0 + c];      \
        for (int64_t c = 0; c < kB; ++c)                                                     \
          for (int64_t r = 0; r < kB; ++r) dst[(c0 + c) * dst_ld + r0 + r] = blk[c][r];      \
      }                                                                                      \
      for (; c0 < nc; ++c0)                                                                  \
        for (int64_t r = r0; r < r0 + kB; ++r) dst[c0 * dst_ld + r] = src[r * src_ld + c0];  \
    }                                                                                        \
    for (; r0 < nr; ++r0)                                                                    \
      for (int64_t c = 0; c < nc; ++c) dst[c * dst_ld + r0] = src[r0 * src_ld + c];          \
  }
S2V_VP_POINTWISE(float)
S2V_VP_POINTWISE(double)
#undef S2V_VP_POINTWISE

// Budget of one im2col block: small enough to stay in the last-level cache
// between the gather and the GEMM that reads it.
constexpr int64_t kColBytes = int64_t(12) << 20;
// Budget of the backward's per-chunk gate / gradient buffers.
constexpr int64_t kChunkBytes = int64_t(160) << 20;

struct Tap {
  int dy, dx;
};

struct FlowGeom {
  int cell;  // which weight (0 square, 1 'h', 2 'w'); for kSingleCell always 0
  bool rep_rows, rep_cols;
  std::vector<Tap> taps;  // in the weight's tap order
};

FlowGeom make_flow(int cell, int orient, int dir, int64_t k) {
  FlowGeom g;
  g.cell = cell;
  g.rep_rows = orient == kAlongWidth;
  g.rep_cols = orient == kAlongHeight;
  const int S = static_cast<int>(k / 2);
  if (orient == kSquare) {
    for (int ky = 0; ky < k; ++ky)
      for (int kx = 0; kx < k; ++kx) g.taps.push_back({ky - S, kx - S});
  } else {
    for (int s = 0; s <= S; ++s)
      for (int j = -s; j <= s; ++j) {
        if (orient == kAlongWidth)
          g.taps.push_back({-dir * s, j});
        else
          g.taps.push_back({j, -dir * s});
      }
  }
  return g;
}

std::vector<FlowGeom> make_flows(const Problem& p) {
  switch (p.layout) {
    case Layout::kDirectional:
      return {make_flow(0, kSquare, 1, p.k), make_flow(1, kAlongWidth, 1, p.k),
              make_flow(1, kAlongWidth, -1, p.k), make_flow(2, kAlongHeight, 1, p.k),
              make_flow(2, kAlongHeight, -1, p.k)};
    case Layout::kBasic:
      return {make_flow(0, kSquare, 1, p.k)};
    case Layout::kSingleCell:
      return {make_flow(0, p.orientation, p.direction, p.k)};
  }
  return {};
}

// Source indices [lo, hi] along one axis of length n that tap offset `off`
// connects to destination index m (lo > hi: none). Forward: the pixel the
// tap reads. Transposed: every output pixel whose read landed on m.
inline void axis_range(int64_t m, int off, int64_t n, bool replicate, bool transposed,
                       int64_t& lo, int64_t& hi) {
  if (!transposed) {
    int64_t s = m + off;
    if (replicate) {
      s = std::min<int64_t>(std::max<int64_t>(s, 0), n - 1);
    } else if (s < 0 || s >= n) {
      lo = 1, hi = 0;
      return;
    }
    lo = hi = s;
    return;
  }
  if (!replicate) {
    const int64_t s = m - off;
    if (s < 0 || s >= n) {
      lo = 1, hi = 0;
    } else {
      lo = hi = s;
    }
    return;
  }
  lo = std::max<int64_t>(m == 0 ? 0 : m - off, 0);
  hi = std::min<int64_t>(m == n - 1 ? n - 1 : m - off, n - 1);
}

// A channels-last operand of the gather: pixel r (r = (b·H + y)·W + x) holds
// `ch` values at p + r·stride. A null p leaves its columns of the block as
// they are (reused from the previous gather into the same block).
template <typename T>
struct Src {
  const T* p;
  int64_t ch;
  int64_t stride;
};

// col[r - r0, i·ctot + (source offset) + c] for pixels r in [r0, r1) and taps
// i; with `ones`, one more column of 1 (the bias row of the weight matrix, so
// the bias costs no separate pass and its gradient falls out of the dW GEMM).
template <typename T>
void im2col(T* col, int64_t r0, int64_t r1, const std::vector<Src<T>>& src, int64_t ctot,
            const FlowGeom& g, bool transposed, int64_t H, int64_t W, bool ones = false,
            const int64_t* pixels = nullptr) {
  const int64_t ntaps = static_cast<int64_t>(g.taps.size());
  const int64_t ldc = ntaps * ctot + (ones ? 1 : 0);
  const int64_t HW = H * W;
  at::parallel_for(r0, r1, 32, [&](int64_t a, int64_t b) {
    for (int64_t r = a; r < b; ++r) {
      const int64_t px = pixels ? pixels[r] : r;
      const int64_t plane = px / HW, rem = px - plane * HW, y = rem / W, x = rem - y * W;
      T* dst = col + (r - r0) * ldc;
      for (int64_t i = 0; i < ntaps; ++i) {
        int64_t ylo, yhi, xlo, xhi;
        axis_range(y, g.taps[i].dy, H, g.rep_rows, transposed, ylo, yhi);
        axis_range(x, g.taps[i].dx, W, g.rep_cols, transposed, xlo, xhi);
        const bool empty = ylo > yhi || xlo > xhi;
        for (const Src<T>& s : src) {
          if (s.p != nullptr) {
            if (empty) {
              std::fill(dst, dst + s.ch, T(0));
            } else {
              const T* base = s.p + plane * HW * s.stride;
              std::memcpy(dst, base + (ylo * W + xlo) * s.stride, s.ch * sizeof(T));
              for (int64_t yy = ylo; yy <= yhi; ++yy)
                for (int64_t xx = xlo; xx <= xhi; ++xx) {
                  if (yy == ylo && xx == xlo) continue;
                  const T* v = base + (yy * W + xx) * s.stride;
                  for (int64_t c = 0; c < s.ch; ++c) dst[c] += v[c];
                }
            }
          }
          dst += s.ch;
        }
      }
      if (ones) *dst = T(1);
    }
  });
}

// dst_plane(i)[c][r] = src_plane(i)[r][c] for planes i < n of [rows, cols]:
// the NCHW <-> channels-last conversions. Tiled, because ATen's permuted
// copy walks one side with a large stride and was 15 % of the forward.
template <typename T, typename SrcF, typename DstF>
void transpose_planes(int64_t n, int64_t rows, int64_t cols, SrcF src_plane, DstF dst_plane) {
  constexpr int64_t kTile = 32;
  const int64_t row_tiles = (rows + kTile - 1) / kTile;
  at::parallel_for(0, n * row_tiles, 1, [&](int64_t a, int64_t b) {
    for (int64_t job = a; job < b; ++job) {
      const int64_t i = job / row_tiles, r0 = (job % row_tiles) * kTile;
      const int64_t r1 = std::min(rows, r0 + kTile);
      transpose_band(src_plane(i) + r0 * cols, cols, dst_plane(i) + r0, rows, r1 - r0, cols);
    }
  });
}

template <typename T>
constexpr at::ScalarType scalar_type() {
  return std::is_same_v<T, double> ? at::kDouble : at::kFloat;
}

template <typename T>
at::Tensor wrap(const T* p, at::IntArrayRef sizes) {
  return at::from_blob(const_cast<T*>(p), sizes, at::TensorOptions().dtype(scalar_type<T>()));
}

// Weights of one cell rearranged for the pixel-major GEMMs.
struct CellMats {
  int64_t ntaps = 0;
  // [ntaps·Ctot + 1, 2Ch]: row (i, c), column (gate, o), gates r, u; last row the bias.
  // Within a tap the rows are ordered (h channels, x channels), the column
  // order of the flow buffer (see Engine::buf).
  at::Tensor fwd_ru;
  // [ntaps·Ctot + 1, Ch]: the same for the candidate gate, times 2, because
  // tanh(a) = 2σ(2a) - 1 and ATen's vectorised sigmoid is ~6× faster than its tanh.
  at::Tensor fwd_o;
  // The transposed convolutions of the backward scan, x and h parts together
  // (one GEMM per tap yields the input gradient's share and the state's):
  at::Tensor t_o;   // [ntaps·Ch, C + Ch]: candidate gate, columns (x, h)
  at::Tensor t_ru;  // [ntaps·2Ch, Ch + C]: reset+update gates, columns (h, x)
};

template <typename T>
struct Engine {
  const Problem& p;
  int F;
  int64_t N, C, Ch, Ctot;
  std::vector<FlowGeom> flows;
  CellMats cells[3];
  at::TensorOptions opt;
  at::Tensor col;  // im2col scratch, grown on demand
  // Margin rows before and after every pixel-major buffer that a tap GEMM
  // reads shifted: the largest |tap offset| in rows of the flattened image.
  int64_t M;
  // Pixels within S of an image edge: there a shifted read leaves the image or
  // wraps into the next row or batch, so the tap GEMMs' rows are recomputed
  // exactly by a gather (ring_all: every pixel is one; no shifted GEMMs).
  std::vector<int64_t> ring;
  bool ring_all;
  at::Tensor ring_rows;  // ring as an index tensor
  // The shifted GEMMs run on pixels [g0, g0 + gn) only: from the first pixel
  // outside the ring to the last. The rows before and after are all ring rows,
  // recomputed anyway (3 % of the rows at 64², B 1; 6 % at 32²).
  int64_t g0 = 0, gn = 0;
  // Per flow: [M + N + M, Ch + C + Ch] holding (h, x, q) of the current step,
  // so that [h, x] and [x, q] are each one column range, i.e. one GEMM operand.
  std::vector<at::Tensor> buf;

  Engine(const Problem& prob, const Weights<T>& w) : p(prob) {
    F = p.flows();
    N = p.B * p.H * p.W;
    C = p.C;
    Ch = p.Ch;
    Ctot = C + Ch;
    flows = make_flows(p);
    opt = at::TensorOptions().dtype(scalar_type<T>());
    const int64_t S = p.k / 2;
    M = S * p.W + S;
    for (int64_t b = 0; b < p.B; ++b)
      for (int64_t y = 0; y < p.H; ++y)
        for (int64_t x = 0; x < p.W; ++x)
          if (y < S || y >= p.H - S || x < S || x >= p.W - S)
            ring.push_back((b * p.H + y) * p.W + x);
    ring_all = static_cast<int64_t>(ring.size()) == N;
    if (!ring_all) {
      // ring is sorted: the first gap is the first interior pixel, and the
      // last interior pixel is the one before the ring's trailing run.
      int64_t lo = 0;
      while (lo < static_cast<int64_t>(ring.size()) && ring[lo] == lo) ++lo;
      int64_t hi = N, j = static_cast<int64_t>(ring.size()) - 1;
      while (j >= 0 && ring[j] == hi - 1) --hi, --j;
      g0 = lo;
      gn = hi - lo;
    }
    ring_rows = at::tensor(ring, at::kLong);
    for (int f = 0; f < F; ++f) buf.push_back(at::zeros({N + 2 * M, 2 * Ch + C}, opt));
    for (const FlowGeom& g : flows) {
      CellMats& m = cells[g.cell];
      if (m.ntaps) continue;
      m.ntaps = static_cast<int64_t>(g.taps.size());
      const at::Tensor wt = wrap(w.w[g.cell], {3, Ch, Ctot, m.ntaps});
      const at::Tensor fwd = wt.reshape({3 * Ch, Ctot, m.ntaps}).permute({2, 1, 0}).reshape(
          {m.ntaps * Ctot, 3 * Ch});
      const at::Tensor bias = wrap(w.b[g.cell], {1, 3 * Ch});
      const at::Tensor hx = fwd.view({m.ntaps, Ctot, 3 * Ch});
      const at::Tensor fwd_hx = at::cat({hx.narrow(1, C, Ch), hx.narrow(1, 0, C)}, 1).reshape(
          {m.ntaps * Ctot, 3 * Ch});
      m.fwd_ru = at::cat({fwd_hx.narrow(1, 0, 2 * Ch), bias.narrow(1, 0, 2 * Ch)}, 0);
      m.fwd_o = at::cat({fwd.narrow(1, 2 * Ch, Ch), bias.narrow(1, 2 * Ch, Ch)}, 0) * 2;
      const at::Tensor all_t = wt.reshape({3 * Ch, Ctot, m.ntaps}).permute({2, 0, 1}).contiguous();
      m.t_o = all_t.narrow(1, 2 * Ch, Ch).contiguous().view({m.ntaps * Ch, Ctot});
      const at::Tensor ru_t = all_t.narrow(1, 0, 2 * Ch);
      m.t_ru = at::cat({ru_t.narrow(2, C, Ch), ru_t.narrow(2, 0, C)}, 2).view(
          {m.ntaps * 2 * Ch, Ctot});
    }
  }

  at::Tensor col_block(int64_t rows, int64_t K) {
    if (!col.defined() || col.numel() < rows * K) col = s2v_empty({rows * K}, opt);
    return col.narrow(0, 0, rows * K).view({rows, K});
  }

  // out [N, O] (=, or += with accumulate) the convolution of flow g over the
  // pixel-major operand `base` (pixel n's kc channels at base + n·ld, with M
  // margin rows around) by wmat [ntaps·kc (+1 bias row), O], tap i's rows
  // i·kc .. (i+1)·kc. Transposed: the adjoint (gather form, offsets negated).
  // Runs as one fused pass where fused_mode allows (exact, or the interior span
  // plus the ring below); else each tap is one GEMM on the operand shifted by
  // the tap's offset (no im2col copy: at these sizes the copy cost as much as
  // the GEMM), and the ring pixels, where a shift is not the tap's read, are
  // then recomputed by a gather.
  void tap_conv(const FlowGeom& g, const T* base, int64_t ld, int64_t kc, bool transposed,
                const at::Tensor& wmat, bool bias, at::Tensor& out, bool accumulate) {
    const int64_t ntaps = static_cast<int64_t>(g.taps.size());
    const int64_t K = ntaps * kc + (bias ? 1 : 0);
    const int64_t R = static_cast<int64_t>(ring.size());
    at::Tensor prev;
    const Fused fused = fused_mode(g, transposed, out, wmat);
    if (fused == Fused::kExact) {
      run_fused(fused, g, base, ld, kc, transposed, wmat, bias, out, accumulate);
      return;
    }
    if (accumulate && R) prev = out.index_select(0, ring_rows);
    if (fused == Fused::kInterior) {
      run_fused(fused, g, base, ld, kc, transposed, wmat, bias, out, accumulate);
    } else if (!ring_all) {
      const int sign = transposed ? -1 : 1;
      for (int64_t i = 0; i < ntaps; ++i) {
        const int64_t off = sign * (g.taps[i].dy * p.W + g.taps[i].dx);
        const at::Tensor a =
            at::from_blob(const_cast<T*>(base + (g0 + off) * ld), {gn, kc}, {ld, 1}, opt);
        const at::Tensor wi = wmat.narrow(0, i * kc, kc);
        at::Tensor rows = out.narrow(0, g0, gn);
        if (i == 0 && !accumulate) {
          if (bias)
            at::addmm_out(rows, wmat[K - 1], a, wi);
          else
            at::mm_out(rows, a, wi);
        } else {
          rows.addmm_(a, wi);
        }
      }
    }
    if (!R) return;
    const int64_t rb = std::max<int64_t>(
        64, kColBytes / (K * static_cast<int64_t>(sizeof(T))));
    for (int64_t r0 = 0; r0 < R; r0 += rb) {
      const int64_t r1 = std::min(R, r0 + rb);
      at::Tensor blk = col_block(r1 - r0, K);
      im2col<T>(blk.data_ptr<T>(), 0, r1 - r0, {{base, kc, ld}}, kc, g, transposed, p.H, p.W,
                bias, ring.data() + r0);
      at::Tensor exact = at::mm(blk, wmat);
      const at::Tensor rows = ring_rows.narrow(0, r0, r1 - r0);
      if (accumulate) exact.add_(prev.narrow(0, r0, r1 - r0));
      out.index_copy_(0, rows, exact);
    }
  }

  // How tap_conv runs its taps: as one register-blocked pass
  // (tap_conv_avx512.h) where the CPU and element type allow, else one GEMM
  // per tap. The pass is exact (every pixel, edges included: no ring to
  // recompute) for a forward convolution and for a transposed one without
  // replicate padding (its adjoint is zero padding with the offsets negated);
  // a transposed replicate convolution sums several source pixels at the
  // edges, so there it covers the interior span and the ring gather fixes the rest.
  enum class Fused { kNone, kInterior, kExact };

  Fused fused_mode(const FlowGeom& g, bool transposed, const at::Tensor& out,
                   const at::Tensor& wmat) const {
    if (!std::is_same_v<T, float> || !fused_taps_allowed(g) || out.stride(1) != 1 ||
        !wmat.is_contiguous())
      return Fused::kNone;
    if (!transposed || (!g.rep_rows && !g.rep_cols)) return Fused::kExact;
    return ring_all ? Fused::kNone : Fused::kInterior;
  }

  void run_fused(Fused mode, const FlowGeom& g, const T* base, int64_t ld, int64_t kc,
                 bool transposed, const at::Tensor& wmat, bool bias, at::Tensor& out,
                 bool accumulate) {
    if constexpr (std::is_same_v<T, float>) {
      std::vector<int> dy, dx;
      tap_offsets(g, transposed, dy, dx);
      const bool exact = mode == Fused::kExact;
      const TapFrame frame{p.H, p.W, exact, g.rep_rows, g.rep_cols};
      const int64_t O = out.size(1), K = static_cast<int64_t>(dy.size()) * kc + (bias ? 1 : 0);
      const int64_t first = exact ? 0 : g0, rows = exact ? N : gn;
      const float* w = wmat.data_ptr<float>();
      const bool ran = tap_conv_f32(
          rows, kc, O, frame, dy.data(), dx.data(), static_cast<int>(dy.size()),
          base + first * ld, ld, w, O, bias ? w + (K - 1) * O : nullptr,
          out.data_ptr<float>() + first * out.stride(0), out.stride(0), accumulate);
      TORCH_CHECK(ran, "s2v internal error: the fused tap loop refused a call fused_mode allowed");
    }
  }

  // The backward's weight gradients of flow g over every pixel (edges exact),
  // register-blocked as in run_fused: dru += (taps of [h, x])ᵀ · DA's r, u
  // columns, dox += (taps of [x, q])ᵀ · DA's c columns.
  bool fused_wgrad(const FlowGeom& g, const T* bp, const at::Tensor& DA, at::Tensor& dru,
                   at::Tensor& dox) {
    if constexpr (!std::is_same_v<T, float>) {
      return false;
    } else {
      if (!fused_taps_allowed(g) || DA.stride(1) != 1 || !dru.is_contiguous() ||
          !dox.is_contiguous())
        return false;
      std::vector<int> dy, dx;
      tap_offsets(g, false, dy, dx);
      const TapFrame frame{p.H, p.W, true, g.rep_rows, g.rep_cols};
      const int64_t L = 2 * Ch + C, lg = DA.stride(0);
      const int nt = static_cast<int>(dy.size());
      const float* da = DA.data_ptr<float>();
      return tap_conv_wgrad_f32(N, Ctot, 2 * Ch, frame, dy.data(), dx.data(), nt, bp, L, da, lg,
                                dru.data_ptr<float>(), 2 * Ch) &&
             tap_conv_wgrad_f32(N, Ctot, Ch, frame, dy.data(), dx.data(), nt, bp + Ch, L,
                                da + 2 * Ch, lg, dox.data_ptr<float>(), Ch);
    }
  }

  // Whether the fused loops may run flow g: the CPU has them, they take its
  // tap count, and S2V_VP_CPU_TAPS does not ask for the GEMM path.
  static bool fused_taps_allowed(const FlowGeom& g) {
    return tap_conv_avx512_available() && g.taps.size() <= 64 && !off_by_env();
  }

  // The taps' offsets, negated for a transposed convolution.
  static void tap_offsets(const FlowGeom& g, bool transposed, std::vector<int>& dy,
                          std::vector<int>& dx) {
    const int sign = transposed ? -1 : 1;
    for (const Tap& t : g.taps) {
      dy.push_back(sign * t.dy);
      dx.push_back(sign * t.dx);
    }
  }

  // S2V_VP_CPU_TAPS=gemm: one library GEMM per tap, the path of CPUs without
  // AVX-512 (for the tests, which run both on any machine, and for A/B timing).
  // Read per call, like the dilated GRU's S2V_DGRU_TEAM.
  static bool off_by_env() {
    const char* v = std::getenv("S2V_VP_CPU_TAPS");
    return v != nullptr && std::strcmp(v, "gemm") == 0;
  }

  // One GRU step of flow f on x_t [N, C] and h_prev [N, Ch]: gates [N, 2Ch]
  // receives (r, u), cand [N, Ch] receives c, q [N, Ch] (if not null) r ⊙ h_prev
  // and h_new [N, Ch] (if not null) the new state.
  // With cand_p null only r, u and q are computed (the backward's recovery of c).
  void step(int f, const T* xt, const T* hp, T* gates, T* cand_p, T* q, T* h_new) {
    const FlowGeom& g = flows[f];
    const CellMats& m = cells[g.cell];
    const int64_t ch = Ch, c_in = C, ld = 2 * Ch + C;
    T* bp = buf[f].data_ptr<T>() + M * ld;  // pixel 0
    at::parallel_for(0, N, 256, [&](int64_t a, int64_t b) {
      for (int64_t n = a; n < b; ++n) {
        T* row = bp + n * ld;
        std::memcpy(row, hp + n * ch, ch * sizeof(T));
        std::memcpy(row + ch, xt + n * c_in, c_in * sizeof(T));
      }
    });
    at::Tensor ru = wrap(gates, {N, 2 * Ch});
    tap_conv(g, bp, ld, Ctot, false, m.fwd_ru, true, ru, false);
    ru.sigmoid_();
    at::parallel_for(0, N, 256, [&](int64_t a, int64_t b) {
      reset_products(a, b, ch, ld, gates, hp, bp + ch + c_in, q);
    });
    if (cand_p == nullptr) return;
    at::Tensor cand = wrap(cand_p, {N, Ch});
    tap_conv(g, bp + Ch, ld, Ctot, false, m.fwd_o, true, cand, false);
    cand.sigmoid_();
    at::parallel_for(0, N, 256, [&](int64_t a, int64_t b) {
      candidate_update(a, b, ch, gates, hp, cand_p, h_new);
    });
  }
};

// [B, T, C, HW] (frames t0 .. t0+nt) -> [nt, B·HW, C] (channels-last per frame).
template <typename T>
at::Tensor frames_to_cl(const T* v, int64_t B, int64_t T_, int64_t C, int64_t HW,
                        at::TensorOptions opt, int64_t t0 = 0, int64_t nt = -1) {
  if (nt < 0) nt = T_;
  at::Tensor out = pooled_empty({nt, B * HW, C}, opt);
  T* o = out.data_ptr<T>();
  transpose_planes<T>(
      nt * B, C, HW, [&](int64_t i) { return v + ((i % B) * T_ + t0 + i / B) * C * HW; },
      [&](int64_t i) { return o + i * HW * C; });
  return out;
}

// The inverse: cl [nt, B·HW, C] -> v [B, T, C, HW] frames t0 .. t0+nt.
template <typename T>
void frames_from_cl(const T* cl, T* v, int64_t B, int64_t T_, int64_t C, int64_t HW, int64_t t0,
                    int64_t nt) {
  transpose_planes<T>(
      nt * B, HW, C, [&](int64_t i) { return cl + i * HW * C; },
      [&](int64_t i) { return v + ((i % B) * T_ + t0 + i / B) * C * HW; });
}

}  // namespace

template <typename T>
void forward_cpu(const Problem& p, const T* x, const T* xh, const T* h0, const Weights<T>& w,
                 T* y, T* h_seq, T* saved) {
  Engine<T> e(p, w);
  const int F = e.F;
  const int64_t N = e.N, Ch = e.Ch, C = e.C, T_ = p.T;
  const int64_t B = p.B, HW = p.H * p.W;
  const at::Tensor x_cl = frames_to_cl(x, B, T_, C, HW, e.opt);
  // Hcl[f][t] is the state before frame t (t = 0: h0), channels-last.
  at::Tensor Hcl = pooled_empty({F, T_ + 1, N, Ch}, e.opt);
  T* Hp0 = Hcl.data_ptr<T>();
  transpose_planes<T>(
      F * B, Ch, HW, [&](int64_t i) { return h0 + i * Ch * HW; },
      [&](int64_t i) { return Hp0 + ((i / B) * (T_ + 1) * N + (i % B) * HW) * Ch; });
  at::Tensor gates = s2v_empty({N, 2 * Ch}, e.opt), cand = s2v_empty({N, Ch}, e.opt);
  const T* xp = x_cl.data_ptr<T>();
  T* Hp = Hcl.data_ptr<T>();
  for (int64_t t = 0; t < T_; ++t)
    for (int f = 0; f < F; ++f) {
      T* hprev = Hp + (f * (T_ + 1) + t) * N * Ch;
      T* keep = saved == nullptr ? nullptr : saved + (f * T_ + t) * N * 3 * Ch;
      e.step(f, xp + t * N * C, hprev, keep ? keep : gates.data_ptr<T>(), cand.data_ptr<T>(),
             keep ? keep + N * 2 * Ch : nullptr, hprev + N * Ch);
    }
  const at::Tensor states = Hcl.narrow(1, 1, T_);
  // plane i = (f, b, t) of h_seq [F, B, T, Ch, HW] <- Hcl[f][t + 1][b]
  transpose_planes<T>(
      F * B * T_, HW, Ch,
      [&](int64_t i) {
        const int64_t f = i / (B * T_), b = (i / T_) % B, t = i % T_;
        return Hp0 + ((f * (T_ + 1) + t + 1) * N + b * HW) * Ch;
      },
      [&](int64_t i) { return h_seq + i * Ch * HW; });
  if (p.layout == Layout::kSingleCell) return;
  at::Tensor agg;
  if (p.layout == Layout::kBasic) {
    agg = states.reshape({T_ * N, C + 1});
  } else {
    const at::Tensor bw = wrap(w.blend_w, {C + 1, 5 * Ch});
    // clone, not contiguous(): with one row the expanded bias is already contiguous
    // and addmm_ below would write into the caller's blend_bias.
    agg = wrap(w.blend_b, {C + 1}).expand({T_ * N, C + 1}).clone(at::MemoryFormat::Contiguous);
    for (int f = 0; f < F; ++f)
      agg.addmm_(states.select(0, f).reshape({T_ * N, Ch}), bw.narrow(1, f * Ch, Ch).t());
  }
  // agg's rows are (t, b, pixel): one tiled transpose to channel planes, then
  // y = xh a + agg (1 - a) in one pass (ATen on the permuted view took ~5
  // passes over strided memory).
  at::Tensor planes = pooled_empty({T_ * B, C + 1, HW}, e.opt);
  const T* ag = agg.data_ptr<T>();
  T* pl = planes.data_ptr<T>();
  transpose_planes<T>(
      T_ * B, HW, C + 1, [&](int64_t i) { return ag + i * HW * (C + 1); },
      [&](int64_t i) { return pl + i * (C + 1) * HW; });
  at::parallel_for(0, T_ * B, 1, [&](int64_t lo, int64_t hi) {
    std::vector<T> mask(HW);
    for (int64_t i = lo; i < hi; ++i) {
      const int64_t t = i / B, b = i % B, o = (b * T_ + t) * C * HW;
      blend_output(HW, C, pl + i * (C + 1) * HW, xh + o, y + o, mask.data());
    }
  });
}

template <typename T>
void backward_cpu(const Problem& p, const T* dy, const T* dh_seq, const T* dh_last, const T* x,
                  const T* xh, const T* h0, const T* h_seq, const Weights<T>& w, T* dx, T* dxh,
                  T* dh0, const WeightGrads<T>& g, const T* saved) {
  S2V_CHECK(saved == nullptr || !p.recompute_candidate,
              "video_predictor backward: saved gates cannot be combined with a recomputed "
              "candidate");
  Engine<T> e(p, w);
  const int F = e.F;
  const int64_t N = e.N, Ch = e.Ch, C = e.C, Ctot = e.Ctot, T_ = p.T, B = p.B, H = p.H, W = p.W;
  const bool blend = p.layout != Layout::kSingleCell;
  const int64_t HW = H * W;
  const at::Tensor x_cl = frames_to_cl(x, B, T_, C, HW, e.opt);
  const T* xp = x_cl.data_ptr<T>();
  at::Tensor Hcl = pooled_empty({F, T_ + 1, N, Ch}, e.opt);
  T* Hp = Hcl.data_ptr<T>();
  transpose_planes<T>(
      F * B, Ch, HW, [&](int64_t i) { return h0 + i * Ch * HW; },
      [&](int64_t i) { return Hp + ((i / B) * (T_ + 1) * N + (i % B) * HW) * Ch; });
  transpose_planes<T>(
      F * B * T_, Ch, HW, [&](int64_t i) { return h_seq + i * Ch * HW; },
      [&](int64_t i) {
        const int64_t f = i / (B * T_), b = (i / T_) % B, t = i % T_;
        return Hp + ((f * (T_ + 1) + t + 1) * N + b * HW) * Ch;
      });
  auto hstate = [&](int f, int64_t t) { return Hp + (f * (T_ + 1) + t) * N * Ch; };

  at::Tensor carry = pooled_empty({F, N, Ch}, e.opt).zero_();
  T* carry_p = carry.data_ptr<T>();
  if (dh_last != nullptr)
    transpose_planes<T>(
        F * B, Ch, HW, [&](int64_t i) { return dh_last + i * Ch * HW; },
        [&](int64_t i) { return carry_p + i * HW * Ch; });
  // The scan's outputs at one step, [N, Ch + C + Ch]: (dh_{t-1} of the current
  // flow, dx_t summed over the flows, dq of the current flow). The transposed
  // convs write (dx, dq) and (dh, dx) as one column range each, so each tap is
  // one GEMM for both the state's and the input's gradient.
  at::Tensor step_grads = s2v_empty({N, 2 * Ch + C}, e.opt);
  at::Tensor acc = step_grads.narrow(1, 0, Ch), dxq = step_grads.narrow(1, Ch, C + Ch),
             acc_dx = step_grads.narrow(1, 0, Ch + C), dx_step = step_grads.narrow(1, Ch, C);
  const int64_t lda = 2 * Ch + C;
  at::Tensor dx_cl = pooled_empty({T_, N, C}, e.opt);
  at::Tensor dW_ru[3], dW_o[3];
  for (const FlowGeom& fg : e.flows) {
    const int cl = fg.cell;
    if (dW_ru[cl].defined()) continue;
    // Rows (tap, channel); within a tap dW_ru's channels are ordered (h, x)
    // like the flow buffer's columns, dW_o's (x, q). The last row: the bias.
    dW_ru[cl] = at::zeros({e.cells[cl].ntaps * Ctot + 1, 2 * Ch}, e.opt);
    dW_o[cl] = at::zeros({e.cells[cl].ntaps * Ctot + 1, Ch}, e.opt);
  }
  at::Tensor dWb, dbb, bw;
  if (p.layout == Layout::kDirectional) {
    bw = wrap(w.blend_w, {C + 1, 5 * Ch});
    dWb = at::zeros({C + 1, 5 * Ch}, e.opt);
    dbb = at::zeros({C + 1}, e.opt);
  }

  const int64_t per_step = F * N * (8 * Ch) * static_cast<int64_t>(sizeof(T)) +
                           N * (4 * C + 2) * static_cast<int64_t>(sizeof(T));
  const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(T_, kChunkBytes / per_step));
  // r, u and q of the chunk's steps: the forward's (saved) or recomputed here.
  const int64_t gchunk = saved != nullptr ? 0 : chunk;
  at::Tensor Gbuf = pooled_empty({gchunk, F, N, 2 * Ch}, e.opt);  // r, u
  at::Tensor Cbuf = pooled_empty({p.recompute_candidate ? chunk : 0, F, N, Ch}, e.opt);  // c
  at::Tensor Qbuf = pooled_empty({gchunk, F, N, Ch}, e.opt);
  auto gates_of = [&](int64_t tl, int64_t t, int f) -> const T* {
    return saved != nullptr ? saved + (f * T_ + t) * N * 3 * Ch : Gbuf[tl][f].data_ptr<T>();
  };
  auto products_of = [&](int64_t tl, int64_t t, int f) -> const T* {
    return saved != nullptr ? saved + (f * T_ + t) * N * 3 * Ch + N * 2 * Ch
                            : Qbuf[tl][f].data_ptr<T>();
  };
  // Margin rows (zero) around each [N, 3Ch] block: the transposed tap GEMMs read it shifted.
  at::Tensor DAbuf = pooled_empty({chunk, F, N + 2 * e.M, 3 * Ch}, e.opt);
  DAbuf.narrow(2, 0, e.M).zero_();
  DAbuf.narrow(2, e.M + N, e.M).zero_();
  at::Tensor DHObuf = pooled_empty({chunk, F, N, Ch}, e.opt);

  for (int64_t t1 = T_; t1 > 0;) {
    const int64_t t0 = std::max<int64_t>(0, t1 - chunk), nt = t1 - t0;
    at::Tensor DHO = DHObuf.narrow(0, 0, nt);
    // Gradient reaching each state from the layer's outputs at these frames.
    if (blend) {
      const at::Tensor dy_cl = frames_to_cl(dy, B, T_, C, HW, e.opt, t0, nt).view({nt * N, C});
      const at::Tensor xh_cl = frames_to_cl(xh, B, T_, C, HW, e.opt, t0, nt).view({nt * N, C});
      const at::Tensor st = Hcl.narrow(1, t0 + 1, nt);  // [F, nt, N, Ch]
      at::Tensor agg;
      if (p.layout == Layout::kBasic) {
        agg = st.reshape({nt * N, C + 1});
      } else {
        agg = wrap(w.blend_b, {C + 1}).expand({nt * N, C + 1}).clone(  // as in the forward
            at::MemoryFormat::Contiguous);
        for (int f = 0; f < F; ++f)
          agg.addmm_(st.select(0, f).reshape({nt * N, Ch}), bw.narrow(1, f * Ch, Ch).t());
      }
      // dagg [nt·N, C+1]; xh_cl becomes dxh (channels-last) in place.
      const at::Tensor dagg = pooled_empty({nt * N, C + 1}, e.opt);
      {
        const T* ap = agg.data_ptr<T>();
        const T* dyp = dy_cl.data_ptr<T>();
        T* xhp = xh_cl.data_ptr<T>();
        T* dp = dagg.data_ptr<T>();
        at::parallel_for(0, nt * N, 256, [&](int64_t a, int64_t b) {
          blend_grads(a, b, C, ap, dyp, xhp, dp);
        });
      }
      frames_from_cl(xh_cl.data_ptr<T>(), dxh, B, T_, C, HW, t0, nt);
      if (p.layout == Layout::kBasic) {
        DHO.select(1, 0).copy_(dagg.view({nt, N, Ch}));
      } else {
        for (int f = 0; f < F; ++f) {
          DHO.select(1, f).copy_(at::mm(dagg, bw.narrow(1, f * Ch, Ch)).view({nt, N, Ch}));
          dWb.narrow(1, f * Ch, Ch).add_(at::mm(dagg.t(), st.select(0, f).reshape({nt * N, Ch})));
        }
        dbb.add_(dagg.sum(0));
      }
    } else {
      DHO.zero_();
    }
    if (dh_seq != nullptr)
      DHO.view({nt, F, B, H, W, Ch}).add_(
          wrap(dh_seq, {F, B, T_, Ch, H, W}).narrow(2, t0, nt).permute({2, 0, 1, 4, 5, 3}));

    // Recompute every gate of the chunk (no sequence: all h_{t-1} are saved).
    // The candidate c is recovered from h_t = h + u (c - h) unless the saved
    // states were rounded to 16 bits (p.recompute_candidate), which saves the
    // candidate GEMM (a third of the recomputation): the gradients only use
    // u·(1 - c²) and u·(c - h) = h_t - h, whose errors stay bounded where u is
    // small, and c is clamped to tanh's range.
    for (int64_t tl = 0; saved == nullptr && tl < nt; ++tl)
      for (int f = 0; f < F; ++f)
        e.step(f, xp + (t0 + tl) * N * C, hstate(f, t0 + tl), Gbuf[tl][f].data_ptr<T>(),
               p.recompute_candidate ? Cbuf[tl][f].data_ptr<T>() : nullptr,
               Qbuf[tl][f].data_ptr<T>(), nullptr);

    // Reverse-time scan: the two transposed gate convolutions of every step, each
    // tap one GEMM yielding the state's and the input's gradient together.
    for (int64_t tl = nt - 1; tl >= 0; --tl) {
      const int64_t t = t0 + tl;
      dx_step.zero_();
      for (int f = 0; f < F; ++f) {
        const FlowGeom& fg = e.flows[f];
        const CellMats& m = e.cells[fg.cell];
        const T* G = gates_of(tl, t, f);
        const T* Cc = p.recompute_candidate ? Cbuf[tl][f].data_ptr<T>() : nullptr;
        T* DA = DAbuf[tl][f].data_ptr<T>() + e.M * 3 * Ch;
        const T* hp = hstate(f, t);
        const T* hnext = hstate(f, t + 1);
        const T* dho = DHObuf[tl][f].data_ptr<T>();
        const T* cr = carry[f].data_ptr<T>();
        T* ac = step_grads.data_ptr<T>();
        T* dqp = ac + Ch + C;
        const int64_t ch = Ch;
        at::parallel_for(0, N, 256, [&](int64_t a, int64_t b) {
          scan_update_grads(a, b, ch, G, hp, hnext, Cc, cr, dho, DA, ac, dqp, lda);
        });
        e.tap_conv(fg, DA + 2 * Ch, 3 * Ch, Ch, true, m.t_o, false, dxq, true);
        at::parallel_for(0, N, 256, [&](int64_t a, int64_t b) {
          scan_reset_grads(a, b, ch, G, hp, dqp, DA, ac, lda);
        });
        e.tap_conv(fg, DA, 3 * Ch, 2 * Ch, true, m.t_ru, false, acc_dx, true);
        carry[f].copy_(acc);
      }
      dx_cl[t].copy_(dx_step);
    }

    // Weight gradients of the whole chunk: per tap, one GEMM over the interior
    // span of the shifted (h, x) / (x, q) operand against the gate gradients
    // with the ring pixels' rows zeroed; the ring's exact contribution is then
    // added from a gather, as in Engine::tap_conv.
    const int64_t R = static_cast<int64_t>(e.ring.size()), L = 2 * Ch + C;
    for (int64_t tl = 0; tl < nt; ++tl) {
      const int64_t t = t0 + tl;
      const T* xt = xp + t * N * C;
      for (int f = 0; f < F; ++f) {
        const FlowGeom& fg = e.flows[f];
        const CellMats& m = e.cells[fg.cell];
        at::Tensor DA = DAbuf[tl][f].narrow(0, e.M, N);
        T* bp = e.buf[f].template data_ptr<T>() + e.M * L;
        const T* hp = hstate(f, t);
        const T* qp = products_of(tl, t, f);
        const int64_t ch = Ch, c_in = C;
        at::parallel_for(0, N, 256, [&](int64_t a, int64_t b) {
          for (int64_t n = a; n < b; ++n) {
            T* row = bp + n * L;
            std::memcpy(row, hp + n * ch, ch * sizeof(T));
            std::memcpy(row + ch, xt + n * c_in, c_in * sizeof(T));
            std::memcpy(row + ch + c_in, qp + n * ch, ch * sizeof(T));
          }
        });
        const int64_t K = m.ntaps * Ctot;
        at::Tensor& dru = dW_ru[fg.cell];
        at::Tensor& dox = dW_o[fg.cell];
        dru[K].add_(DA.narrow(1, 0, 2 * Ch).sum(0));
        dox[K].add_(DA.narrow(1, 2 * Ch, Ch).sum(0));
        // The fused loops cover every pixel exactly; the GEMM path below runs
        // the interior span and adds the ring from a gather.
        if (e.fused_wgrad(fg, bp, DA, dru, dox)) continue;
        at::Tensor da_ring;
        if (R) {
          da_ring = DA.index_select(0, e.ring_rows);
          DA.index_fill_(0, e.ring_rows, 0);
        }
        if (!e.ring_all) {
          for (int64_t i = 0; i < m.ntaps; ++i) {
            const int64_t off = fg.taps[i].dy * W + fg.taps[i].dx;
            // Only the interior span: the ring rows of DA are zero here.
            const at::Tensor a = at::from_blob(bp + (e.g0 + off) * L, {e.gn, L}, {L, 1}, e.opt);
            const at::Tensor da = DA.narrow(0, e.g0, e.gn);
            dru.narrow(0, i * Ctot, Ctot).addmm_(a.narrow(1, 0, Ctot).t(), da.narrow(1, 0, 2 * Ch));
            dox.narrow(0, i * Ctot, Ctot).addmm_(a.narrow(1, Ch, Ctot).t(),
                                                  da.narrow(1, 2 * Ch, Ch));
          }
        }
        if (R) {
          at::Tensor blk = e.col_block(R, K);
          im2col<T>(blk.data_ptr<T>(), 0, R, {{bp, Ctot, L}}, Ctot, fg, false, H, W, false,
                    e.ring.data());
          dru.narrow(0, 0, K).addmm_(blk.t(), da_ring.narrow(1, 0, 2 * Ch));
          im2col<T>(blk.data_ptr<T>(), 0, R, {{bp + Ch, Ctot, L}}, Ctot, fg, false, H, W, false,
                    e.ring.data());
          dox.narrow(0, 0, K).addmm_(blk.t(), da_ring.narrow(1, 2 * Ch, Ch));
        }
      }
    }
    t1 = t0;
  }

  frames_from_cl(dx_cl.data_ptr<T>(), dx, B, T_, C, HW, 0, T_);
  transpose_planes<T>(
      F * B, HW, Ch, [&](int64_t i) { return carry_p + i * HW * Ch; },
      [&](int64_t i) { return dh0 + i * Ch * HW; });
  for (int cl = 0; cl < 3; ++cl) {
    if (!dW_ru[cl].defined() || g.w[cl] == nullptr) continue;
    const int64_t nt = e.cells[cl].ntaps, K = nt * Ctot;
    at::Tensor out = wrap(g.w[cl], {3, Ch, Ctot, nt});
    const at::Tensor hx = dW_ru[cl].narrow(0, 0, K).view({nt, Ctot, 2, Ch});
    out.narrow(0, 0, 2).copy_(
        at::cat({hx.narrow(1, Ch, C), hx.narrow(1, 0, Ch)}, 1).permute({2, 3, 1, 0}));
    out.select(0, 2).copy_(dW_o[cl].narrow(0, 0, K).view({nt, Ctot, Ch}).permute({2, 1, 0}));
    at::Tensor bias = wrap(g.b[cl], {3, Ch});
    bias.narrow(0, 0, 2).view({2 * Ch}).copy_(dW_ru[cl][K]);
    bias[2].copy_(dW_o[cl][K]);
  }
  if (dWb.defined()) {
    wrap(g.blend_w, {C + 1, 5 * Ch}).copy_(dWb);
    wrap(g.blend_b, {C + 1}).copy_(dbb);
  }
}

template void forward_cpu<float>(const Problem&, const float*, const float*, const float*,
                                 const Weights<float>&, float*, float*, float*);
template void forward_cpu<double>(const Problem&, const double*, const double*, const double*,
                                  const Weights<double>&, double*, double*, double*);
template void backward_cpu<float>(const Problem&, const float*, const float*, const float*,
                                  const float*, const float*, const float*, const float*,
                                  const Weights<float>&, float*, float*, float*,
                                  const WeightGrads<float>&, const float*);
template void backward_cpu<double>(const Problem&, const double*, const double*, const double*,
                                   const double*, const double*, const double*, const double*,
                                   const Weights<double>&, double*, double*, double*,
                                   const WeightGrads<double>&, const double*);

}  // namespace video_predictor
}  // namespace s2v
