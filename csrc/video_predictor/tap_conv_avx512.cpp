// Register-blocked tap convolutions; contract in tap_conv_avx512.h.
//
// Micro-tile: kRows output rows × up to 64 columns (4 zmm each) in 24
// accumulators, 4 weight vectors and one broadcast: 29 of the 32 zmm
// registers. Per input channel k: 4 weight loads, 6 broadcasts from the
// operand, 24 FMAs, so the loop is FMA-bound while the weights come from L1
// or L2 (211-221 GFLOP/s on a 2-core AMD EPYC, against 167-194 for the per-tap
// MKL GEMMs it replaces; profiling/results/NOTES.md). The extension is built
// for baseline x86-64; the hot code here is compiled for AVX-512F through
// function attributes and chosen at run time.
#include "video_predictor/tap_conv_avx512.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdlib>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define S2V_HAVE_AVX512_PATH 1
#include <immintrin.h>
#endif

namespace s2v {
namespace video_predictor {

#if S2V_HAVE_AVX512_PATH
namespace {

constexpr int kRows = 6;        // output rows per micro-tile
constexpr int kVecs = 4;        // 16-float vectors per micro-tile row (64 columns)
constexpr int kMaxTaps = 64;
constexpr int64_t kBlock = 48;  // rows per parallel work item (8 micro-tiles)
// Pixels per chunk of the weight gradient: a chunk of g (≤ 64 columns) and of
// the operand stays in L2 while every work item of a thread reads it.
constexpr int64_t kWgradChunk = 256;

#define S2V_AVX512 __attribute__((target("avx512f")))

#define S2V_AVX512_INLINE __attribute__((target("avx512f"), always_inline)) inline

// One row of a column panel: NV vectors at p, the last one masked by tail.
template <int NV>
S2V_AVX512_INLINE void load_row(__m512 (&x)[NV], const float* p, __mmask16 tail) {
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v)
    x[v] = _mm512_maskz_loadu_ps(v == NV - 1 ? tail : __mmask16(0xFFFF), p + 16 * v);
}

template <int R, int NV>
S2V_AVX512_INLINE void load_rows(__m512 (&acc)[R][NV], const float* p, int64_t ld,
                                 __mmask16 tail) {
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) load_row<NV>(acc[r], p + r * ld, tail);
}

template <int R, int NV>
S2V_AVX512_INLINE void store_rows(float* p, int64_t ld, const __m512 (&acc)[R][NV],
                                  __mmask16 tail) {
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)
      _mm512_mask_storeu_ps(p + r * ld + 16 * v, v == NV - 1 ? tail : __mmask16(0xFFFF),
                            acc[r][v]);
}

// acc[r] += scalar(r) · x for every row r: the tile's FMA block.
template <int R, int NV, class Scalar>
S2V_AVX512_INLINE void fma_rows(__m512 (&acc)[R][NV], const __m512 (&x)[NV], Scalar scalar) {
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    const __m512 b = _mm512_set1_ps(scalar(r));
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(b, x[v], acc[r][v]);
  }
}

// out rows r < R, columns of one panel: Σ_i Σ_{k0 ≤ k < k0 + nk} src[i·kRows + r][k] ·
// w[(i·kc + k)·ldw].
template <int R, int NV>
S2V_AVX512 void conv_tile(const float* const* src, int ntaps, int64_t kc, int64_t k0,
                          int64_t nk, const float* w, int64_t ldw, const float* bias, float* out,
                          int64_t ldo, bool accumulate, __mmask16 tail) {
  __m512 acc[R][NV];
  if (accumulate) {
    load_rows<R, NV>(acc, out, ldo, tail);
  } else if (bias) {
    load_rows<R, NV>(acc, bias, 0, tail);
  } else {
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
  }
  for (int i = 0; i < ntaps; ++i) {
    const float* s[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) s[r] = src[i * kRows + r] + k0;
    const float* wi = w + (i * kc + k0) * ldw;
    for (int64_t k = 0; k < nk; ++k) {
      __m512 wv[NV];
      load_row<NV>(wv, wi + k * ldw, tail);
      fma_rows<R, NV>(acc, wv, [&](int r) { return s[r][k]; });
    }
  }
  store_rows<R, NV>(out, ldo, acc, tail);
}

// dw rows k0 + r (r < R), columns of one panel: += Σ_n src[n][k0 + r] · g[n].
template <int R, int NV>
S2V_AVX512 void wgrad_tile(const float* const* src, int64_t k0, int64_t len, const float* g,
                           int64_t ldg, float* dw, int64_t ldw, __mmask16 tail) {
  __m512 acc[R][NV];
  load_rows<R, NV>(acc, dw, ldw, tail);
  for (int64_t n = 0; n < len; ++n) {
    __m512 gv[NV];
    load_row<NV>(gv, g + n * ldg, tail);
    const float* s = src[n] + k0;
    fma_rows<R, NV>(acc, gv, [&](int r) { return s[r]; });
  }
  store_rows<R, NV>(dw, ldw, acc, tail);
}

using ConvFn = void (*)(const float* const*, int, int64_t, int64_t, int64_t, const float*,
                        int64_t, const float*, float*, int64_t, bool, __mmask16);
using WgradFn = void (*)(const float* const*, int64_t, int64_t, const float*, int64_t, float*,
                         int64_t, __mmask16);

template <template <int, int> class Pick, int R>
constexpr auto by_vecs(int nv) {
  return nv == 1 ? Pick<R, 1>::fn : nv == 2 ? Pick<R, 2>::fn
       : nv == 3 ? Pick<R, 3>::fn : Pick<R, 4>::fn;
}

template <template <int, int> class Pick>
auto by_rows_vecs(int rows, int nv) {
  switch (rows) {
    case 1: return by_vecs<Pick, 1>(nv);
    case 2: return by_vecs<Pick, 2>(nv);
    case 3: return by_vecs<Pick, 3>(nv);
    case 4: return by_vecs<Pick, 4>(nv);
    case 5: return by_vecs<Pick, 5>(nv);
    default: return by_vecs<Pick, 6>(nv);
  }
}

template <int R, int NV>
struct PickConv {
  static constexpr ConvFn fn = conv_tile<R, NV>;
};
template <int R, int NV>
struct PickWgrad {
  static constexpr WgradFn fn = wgrad_tile<R, NV>;
};

// A column panel: up to 64 columns from c0, the last vector masked.
struct Panel {
  int64_t c0;
  int nv;
  __mmask16 tail;
};

Panel panel_at(int64_t c0, int64_t O) {
  const int64_t cols = std::min<int64_t>(16 * kVecs, O - c0);
  const int nv = static_cast<int>((cols + 15) / 16);
  const int rem = static_cast<int>(cols - 16 * (nv - 1));
  return {c0, nv, static_cast<__mmask16>((1u << rem) - 1u)};
}

// Source rows of every tap for consecutive output pixels n, n + 1, ...
// (TapFrame's rules), walking (b, y, x) instead of dividing per pixel. Pixels
// whose taps all stay inside the frame (and every pixel of a plain-shift
// frame) take the row shifts precomputed in `shift`; only the others pay the
// per-tap clamping (the general form alone was 2 % of the forward).
class SourceRows {
 public:
  SourceRows(const TapFrame& f, const int* dy, const int* dx, int ntaps, const float* a,
             int64_t lda, const float* zeros)
      : f_(f), dy_(dy), dx_(dx), ntaps_(ntaps), a_(a), lda_(lda), zeros_(zeros) {
    for (int i = 0; i < ntaps; ++i) {
      shift_[i] = (dy[i] * f.W + dx[i]) * lda;
      reach_y_ = std::max<int64_t>(reach_y_, std::abs(dy[i]));
      reach_x_ = std::max<int64_t>(reach_x_, std::abs(dx[i]));
    }
  }

  void seek(int64_t n) {
    n_ = n;
    const int64_t HW = f_.H * f_.W;
    b_ = n / HW;
    const int64_t rem = n - b_ * HW;
    y_ = rem / f_.W;
    x_ = rem - y_ * f_.W;
  }

  // src[i · stride] = row(i) for every tap i (one inside test for all taps).
  void rows(const float** src, int64_t stride) const {
    if (inside()) {
      const float* p = a_ + n_ * lda_;
      for (int i = 0; i < ntaps_; ++i) src[i * stride] = p + shift_[i];
    } else {
      for (int i = 0; i < ntaps_; ++i) src[i * stride] = clamped_row(i);
    }
  }

  const float* row(int i) const {
    return inside() ? a_ + n_ * lda_ + shift_[i] : clamped_row(i);
  }

  void next() {
    ++n_;
    if (++x_ == f_.W) {
      x_ = 0;
      if (++y_ == f_.H) y_ = 0, ++b_;
    }
  }

 private:
  // A plain-shift frame, or a pixel whose taps all stay inside the frame.
  bool inside() const {
    return !f_.exact || (y_ >= reach_y_ && y_ < f_.H - reach_y_ && x_ >= reach_x_ &&
                         x_ < f_.W - reach_x_);
  }

  // Tap i's source row by an exact frame's edge rules.
  const float* clamped_row(int i) const {
    int64_t sy = y_ + dy_[i], sx = x_ + dx_[i];
    if (sy < 0 || sy >= f_.H) {
      if (!f_.clamp_rows) return zeros_;
      sy = sy < 0 ? 0 : f_.H - 1;
    }
    if (sx < 0 || sx >= f_.W) {
      if (!f_.clamp_cols) return zeros_;
      sx = sx < 0 ? 0 : f_.W - 1;
    }
    return a_ + ((b_ * f_.H + sy) * f_.W + sx) * lda_;
  }

  const TapFrame& f_;
  const int* dy_;
  const int* dx_;
  int ntaps_;
  const float* a_;
  int64_t lda_;
  const float* zeros_;
  int64_t shift_[kMaxTaps];
  int64_t reach_y_ = 0, reach_x_ = 0;
  int64_t n_ = 0, b_ = 0, y_ = 0, x_ = 0;
};

}  // namespace

bool tap_conv_avx512_available() {
  static const bool ok = __builtin_cpu_supports("avx512f");
  return ok;
}

bool tap_conv_f32(int64_t N, int64_t kc, int64_t O, const TapFrame& f, const int* dy,
                  const int* dx, int ntaps, const float* a, int64_t lda, const float* w,
                  int64_t ldw, const float* bias, float* out, int64_t ldo, bool accumulate) {
  if (!tap_conv_avx512_available() || ntaps > kMaxTaps || ntaps < 1) return false;
  const std::vector<float> zeros(kc, 0.0f);
  const int64_t blocks = (N + kBlock - 1) / kBlock;
  // Input channels per pass: one pass's weights of one column panel (ntaps ·
  // nk rows of 64 floats) stay within ~256 KB of L2 while the block's 8
  // micro-tiles read them (at C 128 all of a panel's weights are 2.4 MB).
  const int64_t nk_max = std::max<int64_t>(16, (int64_t(1) << 18) / (ntaps * 64 * 4));
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    SourceRows rows(f, dy, dx, ntaps, a, lda, zeros.data());
    // Source rows of the block's micro-tiles: [tile][tap][row].
    std::vector<const float*> src(kBlock * ntaps);
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t n_begin = blk * kBlock, n_end = std::min(N, n_begin + kBlock);
      rows.seek(n_begin);
      for (int64_t n = n_begin; n < n_end; ++n, rows.next()) {
        const int64_t t = (n - n_begin) / kRows, r = (n - n_begin) % kRows;
        rows.rows(src.data() + t * ntaps * kRows + r, kRows);
      }
      for (int64_t c0 = 0; c0 < O; c0 += 16 * kVecs) {
        const Panel p = panel_at(c0, O);
        for (int64_t k0 = 0; k0 < kc; k0 += nk_max) {
          const int64_t nk = std::min(nk_max, kc - k0);
          // Later passes add to what the first one wrote.
          const bool acc = accumulate || k0 > 0;
          const float* b = bias && k0 == 0 ? bias + c0 : nullptr;
          for (int64_t n = n_begin; n < n_end; n += kRows) {
            const int R = static_cast<int>(std::min<int64_t>(kRows, n_end - n));
            const int64_t t = (n - n_begin) / kRows;
            by_rows_vecs<PickConv>(R, p.nv)(src.data() + t * ntaps * kRows, ntaps, kc, k0, nk,
                                            w + c0, ldw, b, out + n * ldo + c0, ldo, acc,
                                            p.tail);
          }
        }
      }
    }
  });
  return true;
}

bool tap_conv_wgrad_f32(int64_t N, int64_t kc, int64_t O, const TapFrame& f, const int* dy,
                        const int* dx, int ntaps, const float* a, int64_t lda, const float* g,
                        int64_t ldg, float* dw, int64_t ldw) {
  if (!tap_conv_avx512_available() || ntaps > kMaxTaps || ntaps < 1) return false;
  const std::vector<float> zeros(kc, 0.0f);
  // Work item: (tap, kRows input channels, one column panel), tap-major, each
  // owning its rows of dw, so the threads need no reduction and each sum runs
  // in pixel order. Pixels are walked in chunks outermost: a chunk of g and of
  // the operand is reused by every item of the thread while it sits in L2
  // (item-outer order streamed all of g from L3 once per item).
  const int64_t ktiles = (kc + kRows - 1) / kRows;
  const int64_t panels = (O + 16 * kVecs - 1) / (16 * kVecs);
  const int64_t items = ntaps * ktiles * panels;
  at::parallel_for(0, items, 1, [&](int64_t i0, int64_t i1) {
    SourceRows rows(f, dy, dx, ntaps, a, lda, zeros.data());
    std::vector<const float*> src(kWgradChunk);
    for (int64_t n0 = 0; n0 < N; n0 += kWgradChunk) {
      const int64_t len = std::min(kWgradChunk, N - n0);
      int64_t have_tap = -1;
      for (int64_t it = i0; it < i1; ++it) {
        const int64_t tap = it / (panels * ktiles), kt = (it / panels) % ktiles;
        if (tap != have_tap) {
          rows.seek(n0);
          for (int64_t n = 0; n < len; ++n, rows.next())
            src[n] = rows.row(static_cast<int>(tap));
          have_tap = tap;
        }
        const int64_t k0 = kt * kRows;
        const int R = static_cast<int>(std::min<int64_t>(kRows, kc - k0));
        const Panel p = panel_at((it % panels) * 16 * kVecs, O);
        by_rows_vecs<PickWgrad>(R, p.nv)(src.data(), k0, len, g + n0 * ldg + p.c0, ldg,
                                         dw + (tap * kc + k0) * ldw + p.c0, ldw, p.tail);
      }
    }
  });
  return true;
}

#else

bool tap_conv_avx512_available() { return false; }

bool tap_conv_f32(int64_t, int64_t, int64_t, const TapFrame&, const int*, const int*, int,
                  const float*, int64_t, const float*, int64_t, const float*, float*, int64_t,
                  bool) {
  return false;
}

bool tap_conv_wgrad_f32(int64_t, int64_t, int64_t, const TapFrame&, const int*, const int*, int,
                        const float*, int64_t, const float*, int64_t, float*, int64_t) {
  return false;
}

#endif

}  // namespace video_predictor
}  // namespace s2v
