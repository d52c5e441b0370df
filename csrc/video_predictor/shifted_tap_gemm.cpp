// Register-blocked shifted-tap products; contract in shifted_tap_gemm.h.
//
// Micro-tile: kRows output rows × up to 64 columns (4 zmm each) in 24
// accumulators, 4 weight vectors and one broadcast: 29 of the 32 zmm
// registers. Per input channel k: 4 weight loads, 6 broadcasts from the
// operand, 24 FMAs, so the loop is FMA-bound while the weights come from L1
// or L2. The extension is built for baseline x86-64; this file's hot code is
// compiled for AVX-512F through function attributes and chosen at run time.
#include "video_predictor/shifted_tap_gemm.h"

#include <ATen/Parallel.h>

#include <algorithm>

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
constexpr int64_t kBlock = 48;  // rows per parallel work item (8 micro-tiles)
// Pixels per chunk of the weight gradient: a chunk of g (≤ 64 columns) and of
// the operand stays in L2 while every work item of a thread reads it.
constexpr int64_t kWgradChunk = 256;

#define S2V_AVX512 __attribute__((target("avx512f")))

template <int R, int NV>
S2V_AVX512 void micro_tile(const float* a, int64_t rs, int64_t ks, const int64_t* off, int ntaps,
                           int64_t kc, const float* w, int64_t ldw, const float* bias,
                           float* out, int64_t ldo, bool accumulate, __mmask16 tail) {
  __m512 acc[R][NV];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const __mmask16 m = v == NV - 1 ? tail : __mmask16(0xFFFF);
      acc[r][v] = accumulate ? _mm512_maskz_loadu_ps(m, out + r * ldo + 16 * v)
                  : bias     ? _mm512_maskz_loadu_ps(m, bias + 16 * v)
                             : _mm512_setzero_ps();
    }
  for (int i = 0; i < ntaps; ++i) {
    const float* ai = a + off[i] * rs;
    const float* wi = w + i * kc * ldw;
    for (int64_t k = 0; k < kc; ++k) {
      __m512 wv[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        const __mmask16 m = v == NV - 1 ? tail : __mmask16(0xFFFF);
        wv[v] = _mm512_maskz_loadu_ps(m, wi + k * ldw + 16 * v);
      }
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const __m512 b = _mm512_set1_ps(ai[r * rs + k * ks]);
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(b, wv[v], acc[r][v]);
      }
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const __mmask16 m = v == NV - 1 ? tail : __mmask16(0xFFFF);
      _mm512_mask_storeu_ps(out + r * ldo + 16 * v, m, acc[r][v]);
    }
}

using TileFn = void (*)(const float*, int64_t, int64_t, const int64_t*, int, int64_t, const float*,
                        int64_t, const float*, float*, int64_t, bool, __mmask16);

template <int R>
constexpr TileFn tile_for(int nv) {
  return nv == 1 ? micro_tile<R, 1> : nv == 2 ? micro_tile<R, 2>
       : nv == 3 ? micro_tile<R, 3> : micro_tile<R, 4>;
}

TileFn pick_tile(int rows, int nv) {
  switch (rows) {
    case 1: return tile_for<1>(nv);
    case 2: return tile_for<2>(nv);
    case 3: return tile_for<3>(nv);
    case 4: return tile_for<4>(nv);
    case 5: return tile_for<5>(nv);
    default: return tile_for<6>(nv);
  }
}

// Rows [r0, r1), all column panels. Panels outermost: a panel's weights
// (ntaps·kc rows of 64 floats) are reused by every micro-tile of the block.
void row_block(int64_t r0, int64_t r1, int64_t kc, int64_t O, const int64_t* off, int ntaps,
               const float* a, int64_t lda, const float* w, int64_t ldw, const float* bias,
               float* out, int64_t ldo, bool accumulate) {
  for (int64_t c0 = 0; c0 < O; c0 += 16 * kVecs) {
    const int64_t cols = std::min<int64_t>(16 * kVecs, O - c0);
    const int nv = static_cast<int>((cols + 15) / 16);
    const int rem = static_cast<int>(cols - 16 * (nv - 1));
    const __mmask16 tail = static_cast<__mmask16>((1u << rem) - 1u);
    for (int64_t r = r0; r < r1; r += kRows) {
      const int rows = static_cast<int>(std::min<int64_t>(kRows, r1 - r));
      pick_tile(rows, nv)(a + r * lda, lda, 1, off, ntaps, kc, w + c0, ldw,
                          bias ? bias + c0 : nullptr, out + r * ldo + c0, ldo, accumulate,
                          tail);
    }
  }
}

}  // namespace

bool shifted_tap_gemm_available() {
  static const bool ok = __builtin_cpu_supports("avx512f");
  return ok;
}

bool shifted_tap_gemm(int64_t n, int64_t kc, int64_t O, const int64_t* off, int ntaps,
                      const float* a, int64_t lda, const float* w, int64_t ldw,
                      const float* bias, float* out, int64_t ldo, bool accumulate) {
  if (!shifted_tap_gemm_available()) return false;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    row_block(b0 * kBlock, std::min(n, b1 * kBlock), kc, O, off, ntaps, a, lda, w, ldw, bias,
              out, ldo, accumulate);
  });
  return true;
}

bool shifted_tap_wgrad(int64_t n, int64_t kc, int64_t O, const int64_t* off, int ntaps,
                       const float* a, int64_t lda, const float* g, int64_t ldg, float* dw,
                       int64_t ldw) {
  if (!shifted_tap_gemm_available()) return false;
  // Work item: (tap, kRows input channels, one panel of 64 columns), each
  // owning its rows of dw, so the threads need no reduction. Pixels are
  // walked in chunks outermost: a chunk of g and of the operand is reused by
  // every item of the thread while it sits in L2 (item-outer order streamed
  // all of g from L3 once per item).
  const int64_t ktiles = (kc + kRows - 1) / kRows;
  const int64_t panels = (O + 16 * kVecs - 1) / (16 * kVecs);
  const int64_t items = ntaps * ktiles * panels;
  const int64_t zero = 0;
  at::parallel_for(0, items, 1, [&](int64_t i0, int64_t i1) {
    for (int64_t n0 = 0; n0 < n; n0 += kWgradChunk) {
      const int64_t len = std::min(kWgradChunk, n - n0);
      for (int64_t it = i0; it < i1; ++it) {
        const int64_t c0 = (it % panels) * 16 * kVecs;
        const int64_t kt = (it / panels) % ktiles, tap = it / (panels * ktiles);
        const int64_t k0 = kt * kRows;
        const int rows = static_cast<int>(std::min<int64_t>(kRows, kc - k0));
        const int64_t cols = std::min<int64_t>(16 * kVecs, O - c0);
        const int nv = static_cast<int>((cols + 15) / 16);
        const int rem = static_cast<int>(cols - 16 * (nv - 1));
        const __mmask16 tail = static_cast<__mmask16>((1u << rem) - 1u);
        pick_tile(rows, nv)(a + (n0 + off[tap]) * lda + k0, 1, lda, &zero, 1, len,
                            g + n0 * ldg + c0, ldg, nullptr, dw + (tap * kc + k0) * ldw + c0,
                            ldw, true, tail);
      }
    }
  });
  return true;
}

#else

bool shifted_tap_gemm_available() { return false; }

bool shifted_tap_wgrad(int64_t, int64_t, int64_t, const int64_t*, int, const float*, int64_t,
                       const float*, int64_t, float*, int64_t) {
  return false;
}

bool shifted_tap_gemm(int64_t, int64_t, int64_t, const int64_t*, int, const float*, int64_t,
                      const float*, int64_t, const float*, float*, int64_t, bool) {
  return false;
}

#endif

}  // namespace video_predictor
}  // namespace s2v
