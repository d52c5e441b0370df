// CPU scan of the fused dilated residual GRU stack (API and layouts:
// dilated_gru.h; per-unit arithmetic: dilated_gru_cell.h, shared with CUDA).
//
// Parallelism: over batch elements when there are at least as many as
// threads (each thread one element, all units); otherwise (B = 1 is the
// streaming case) a team per batch element splits the hidden units, each
// thread owning rows j, D+j, 2D+j of its units, with ONE spin barrier per
// super-step in the forward and in the backward.
//
// Schedule: without feedback the layers run as a wavefront (layer l on step
// t - l in "super-step" t), so the team meets T + L - 1 barriers instead of
// T * L. Feedback makes layer 0 at t depend on layer L-1 at t-1, so it runs
// step by step, layer by layer.
//
// Design notes (issue 7; D = 66, L = 3, dilation 2, T = 256, fp32, 2 threads
// on a 2-core Zen 4 VM; kernel times from a standalone driver that
// interleaves the previous and the new kernel in one process):
// - The scan is bound by reading the recurrent/input weights from L2 at every
//   step (6 matrices of 66 x 198 floats = 314 KB do not fit the 32 KB L1;
//   ~38 B/cycle L2 -> L1 measured), not by arithmetic: the binary already had
//   AVX-512/AVX2 target_clones. So (1) the weights are packed per thread with
//   the three gates of its units side by side and padded once (198 -> 208
//   outputs, instead of 3 x 96 = 288 per-gate padding before): 0.97 -> 0.52
//   us per product; (2) the team now splits even small D (>= 16 units per
//   thread, previously 64, so D = 66 ran on one core), halving each core's
//   weight bytes per step, any split point (no kPad-aligned slices, which
//   gave 64 + 2 units at D = 66).
// - Backward: each thread forms W^T dg over its OWN gate rows into all D
//   entries (partial sums, double-buffered by parity); the owners of the
//   entries add the partials at the start of the next super-step. One
//   barrier per super-step instead of two, and the backward reads the same
//   packed rows (bytes) as the forward.
// - Barrier: a spin barrier (0.04-0.3 us depending on where the hypervisor
//   puts the two vCPUs; the OpenMP barrier was 0.25-0.46 us), with a fallback
//   to one thread when a wait shows the partner lost its core (SpinBarrier).
// - Weight packing was 13 % of a call when done element by element; it is
//   now row copies.
// Measured (kernel only, B = 1): forward 1.7-1.9 -> 0.61 ms, backward
// 1.8-1.9 -> 0.90 ms when the two vCPUs share a cache; when the hypervisor
// places them far apart (cross-core round trip ~0.3 us) 1.08 and 1.7 ms
// (one thread with the new packing: 1.15-1.27 and 1.4-1.5 ms). B = 16
// (batch-parallel, unchanged scheme): forward 14.8 -> 9.4-9.7 ms, backward
// 17.7 -> 12.9 ms. End to end (module, B = 1): fwd 1.66 -> 0.79 ms, fwd+bwd
// 5.2 -> 2.9 ms.
#include "dilated_gru/dilated_gru.h"
#include "dilated_gru/dilated_gru_cell.h"
// The matrix-vector products and cell loops are most of the scan's time.
#include "cpu_clones.h"

#include <string.h>

#include <stdint.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace s2v {
namespace dgru {
namespace {

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

// Matrix-vector products: acc[P] += sum_k W[k][:] v[k] for k < K, with W packed
// in column blocks of kCol (the last block narrower, a multiple of kVec): block
// c (starting at column c) is a dense K x width array at w + c * K. A block's
// accumulators live in local arrays that the compiler keeps in vector
// registers across the k loop (8 zmm at kCol), and each block streams its
// weights contiguously. The weights (6 matrices of 66 x 198 floats at D = 66,
// L = 3) do not fit in L1, so the scan is bound by the L2 -> L1 bandwidth
// (measured ~38 B/cycle on the Zen 4 it was tuned on): what matters is how
// many bytes each step reads, hence packing the three gates' rows of a
// thread's units next to each other, padded once (3D = 198 -> 208 outputs)
// instead of per gate (3 x 96 = 288 before: 28 % less traffic, 0.97 -> 0.52
// us per product in a standalone test).
template <typename F>
constexpr int64_t kVec = 64 / sizeof(F);  // one 512-bit vector
template <typename F>
constexpr int64_t kCol = 8 * kVec<F>;
inline int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

template <int64_t C, typename F>
__attribute__((always_inline)) inline void mv_block(F* __restrict__ acc, const F* __restrict__ w,
                                                    const F* __restrict__ v, int64_t K) {
  F a[C];
  for (int64_t i = 0; i < C; ++i) a[i] = acc[i];
  for (int64_t k = 0; k < K; ++k) {
    const F vk = v[k];
    const F* wk = w + k * C;
    for (int64_t i = 0; i < C; ++i) a[i] += wk[i] * vk;
  }
  for (int64_t i = 0; i < C; ++i) acc[i] = a[i];
}

// (Macro-generated per type: GCC's target_clones does not apply to templates.)
#define S2V_DGRU_MATVEC(F)                                                                   \
  S2V_CLONES void matvec(F* acc, const F* w, const F* v, int64_t K, int64_t P) {            \
    constexpr int64_t V = kVec<F>;                                                           \
    int64_t c = 0;                                                                           \
    for (; c + 8 * V <= P; c += 8 * V) mv_block<8 * V>(acc + c, w + c * K, v, K);            \
    switch ((P - c) / V) {                                                                   \
      case 1: mv_block<1 * V>(acc + c, w + c * K, v, K); break;                              \
      case 2: mv_block<2 * V>(acc + c, w + c * K, v, K); break;                              \
      case 3: mv_block<3 * V>(acc + c, w + c * K, v, K); break;                              \
      case 4: mv_block<4 * V>(acc + c, w + c * K, v, K); break;                              \
      case 5: mv_block<5 * V>(acc + c, w + c * K, v, K); break;                              \
      case 6: mv_block<6 * V>(acc + c, w + c * K, v, K); break;                              \
      case 7: mv_block<7 * V>(acc + c, w + c * K, v, K); break;                              \
      default: break;                                                                        \
    }                                                                                        \
  }
S2V_DGRU_MATVEC(float)
S2V_DGRU_MATVEC(double)
#undef S2V_DGRU_MATVEC

// Writes row k (P entries) of a K x P matrix into matvec's column blocks.
template <typename F>
void pack_row(F* out, int64_t K, int64_t P, int64_t k, const F* row) {
  for (int64_t c = 0; c < P; c += kCol<F>) {
    const int64_t width = std::min<int64_t>(kCol<F>, P - c);
    std::copy_n(row + c, width, out + c * K + k * width);
  }
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
  }
S2V_DGRU_CELLS(float)
S2V_DGRU_CELLS(double)
#undef S2V_DGRU_CELLS

// ---- Synchronisation of a team (B = 1 on 2 threads: one barrier per super-step).
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Spin barrier (a generation counter). An OpenMP barrier costs about as much
// as a super-step's work at D = 66 (measured 0.36-0.46 us per barrier on the
// 2-core test machine, 0.27-0.31 us for this one; a super-step is ~2.5 us).
// A wait longer than kSpins pauses (~50 us; a normal wait is a few us) means
// the partner thread lost its core (another process competes for it): the
// waiter then yields on every round and records the barrier's epoch in
// `slow`, and the scans drop to one thread two super-steps later (see
// solo_from), instead of losing a scheduler quantum at every super-step
// (measured: 38 ms instead of 1.1 ms for a B = 1 forward while another
// process kept one of the two cores busy).
struct SpinBarrier {
  static constexpr int kSpins = 2000;
  static constexpr int64_t kNever = INT64_MAX;
  alignas(64) std::atomic<int> arrived{0};
  alignas(64) std::atomic<unsigned> generation{0};
  alignas(64) std::atomic<int64_t> slow{kNever};  // first epoch with a long wait
  int n = 1;
  void wait(int64_t epoch) {
    const unsigned gen = generation.load(std::memory_order_acquire);
    if (arrived.fetch_add(1, std::memory_order_acq_rel) == n - 1) {
      arrived.store(0, std::memory_order_relaxed);
      generation.store(gen + 1, std::memory_order_release);
      return;
    }
    int spins = 0;
    while (generation.load(std::memory_order_acquire) == gen) {
      if (spins < kSpins) {
        ++spins;
        cpu_relax();
      } else {
        if (spins++ == kSpins) {
          int64_t never = kNever;
          slow.compare_exchange_strong(never, epoch, std::memory_order_relaxed);
        }
        std::this_thread::yield();
      }
    }
  }
};

struct NoBarrier {
  void operator()(int64_t) const {}
  // Whether the team goes on with one thread from super-step s on.
  bool solo_from(int64_t) const { return false; }
};
struct TeamBarrier {
  SpinBarrier* bar;
  void operator()(int64_t epoch) const { bar->wait(epoch); }
  // Every thread asks at the start of super-step s, after barrier s - 1: a
  // long wait recorded at a barrier e <= s - 2 was stored before its thread
  // reached barrier s - 1, so all threads see it and agree; the first epoch
  // recorded never changes afterwards.
  bool solo_from(int64_t s) const {
    return s >= 2 && bar->slow.load(std::memory_order_relaxed) <= s - 2;
  }
};

// Thread 0 alone from the first super-step on (the probe found the team slow).
struct SoloBarrier {
  void operator()(int64_t) const {}
  bool solo_from(int64_t) const { return true; }
};

// The shared schedule (dilated_gru_cell.h) on this file's Dims.
inline int64_t step_of(const Dims& d, int64_t s, int l, bool reverse) {
  return schedule_step(d.feedback, d.T, d.L, s, l, reverse);
}
inline int64_t super_steps(const Dims& d) { return schedule_steps(d.feedback, d.T, d.L); }

// Buffers one batch element's team shares.
template <typename F>
struct Shared {
  std::vector<F> ubuf;   // [2][L + 1][D]: u (forward) / du (backward) between layers, by parity
  std::vector<F> vec;    // [L][D]: residual gradient (backward)
  std::vector<F> carry;  // [D]: feedback gradient into y_{t-1} (backward)
  std::vector<F> zeros;  // [D]
  std::vector<F> part;   // [2][team][L][2][Kp]: per-thread partial W^T dg (backward), by parity
  int64_t L, D, team, Kp;
  SpinBarrier bar;
  bool team_too_slow = false;  // set by thread 0: this call runs on one thread
  Shared(const Dims& d, int team_, int64_t Kp_)
      : ubuf(2 * (d.L + 1) * d.D), vec(d.L * d.D), carry(d.D), zeros(d.D),
        part(2 * team_ * d.L * 2 * Kp_), L(d.L), D(d.D), team(team_), Kp(Kp_) {}
  Shared(const Shared&) = delete;
  F* u(int64_t parity, int l) { return ubuf.data() + ((parity & 1) * (L + 1) + l) * D; }
  // Partial products of thread `tid` for layer l: [0, Kp) W_ih^T dgi, [Kp, 2Kp) W_hh^T dgh.
  F* partial(int64_t parity, int tid, int l) {
    return part.data() + (((parity & 1) * team + tid) * L + l) * 2 * Kp;
  }
};

// One thread's packed weights, for its units [j0, j0 + n) (all rows r, z, n of
// those units). Forward: outputs are the thread's 3n gate rows (r block, z
// block, n block, then zero padding to P), inputs the D entries of u or h.
// Backward: W^T dg over the thread's 3n rows into all D entries (padded to Kp),
// a partial sum that the owners of the entries reduce.
template <typename F>
struct Packed {
  int64_t j0 = 0, n = 0, P = 0, Kp = 0;
  std::vector<F> wi, wh;  // forward: [L][D x P]; backward: [L][3n x Kp] (matvec blocks)
  std::vector<F> bi, bh;  // forward: [L][P]
};

// Row of the full [3D] gate vector that packed row p < 3n stands for.
inline int64_t gate_row(int64_t p, int64_t n, int64_t j0, int64_t D) {
  return (p / n) * D + j0 + p % n;
}

template <typename F>
void pack_forward(Packed<F>& pk, const Dims& d, int64_t j0, int64_t j1, const F* w_ih_t,
                  const F* w_hh_t, const F* b_ih, const F* b_hh) {
  const int64_t D = d.D, L = d.L, n = j1 - j0, D3 = 3 * D;
  pk.j0 = j0;
  pk.n = n;
  pk.P = round_up(3 * n, kVec<F>);
  const int64_t P = pk.P;
  pk.wi.assign(L * D * P, F(0));
  pk.wh.assign(L * D * P, F(0));
  pk.bi.assign(L * P, F(0));
  pk.bh.assign(L * P, F(0));
  if (n == 0) return;
  // Packed row k of layer l: the r, z, n entries of the own units, then zeros.
  std::vector<F> row(P, F(0));
  auto gather = [&](const F* src) {
    for (int64_t g = 0; g < 3; ++g) std::copy_n(src + g * D + j0, n, row.data() + g * n);
  };
  for (int64_t l = 0; l < L; ++l) {
    for (int64_t k = 0; k < D; ++k) {
      gather(w_ih_t + (l * D + k) * D3);
      pack_row(pk.wi.data() + l * D * P, D, P, k, row.data());
      gather(w_hh_t + (l * D + k) * D3);
      pack_row(pk.wh.data() + l * D * P, D, P, k, row.data());
    }
    gather(b_ih + l * D3);
    std::copy_n(row.data(), P, pk.bi.data() + l * P);
    gather(b_hh + l * D3);
    std::copy_n(row.data(), P, pk.bh.data() + l * P);
  }
}

template <typename F>
void pack_backward(Packed<F>& pk, const Dims& d, int64_t j0, int64_t j1, const F* w_ih,
                   const F* w_hh) {
  const int64_t D = d.D, L = d.L, n = j1 - j0, D3 = 3 * D;
  pk.j0 = j0;
  pk.n = n;
  pk.Kp = round_up(D, kVec<F>);
  const int64_t Kp = pk.Kp;
  pk.wi.assign(L * 3 * n * Kp, F(0));
  pk.wh.assign(L * 3 * n * Kp, F(0));
  if (n == 0) return;
  // Packed row r of layer l: weight row gate_row(r) (D entries), then zeros.
  std::vector<F> row(Kp, F(0));
  for (int64_t l = 0; l < L; ++l) {
    for (int64_t r = 0; r < 3 * n; ++r) {
      const int64_t src = (l * D3 + gate_row(r, n, j0, D)) * D;
      std::copy_n(w_ih + src, D, row.data());
      pack_row(pk.wi.data() + l * 3 * n * Kp, 3 * n, Kp, r, row.data());
      std::copy_n(w_hh + src, D, row.data());
      pack_row(pk.wh.data() + l * 3 * n * Kp, 3 * n, Kp, r, row.data());
    }
  }
}

// Forward of batch element b over the units of pk. Every super-step reads
// whole vectors (u^l from the previous super-step, h^l_{t-span} from the
// history) that other threads wrote before the last barrier, and writes only
// its own units.
// Returns whether the team dropped to one thread (solo_from): thread 0 then
// finished the element alone, working through the team's nth partitions
// (`parts`, packed by pack_parts as their owners pack them: the same products
// and the same vector/remainder split of the elementwise loops, so the result
// is bit-identical to the team's), and the other threads returned early.
template <typename S, typename F, typename Barrier, typename PackParts>
bool forward_one(const Dims& d, int64_t b, int tid, int nth, const Packed<F>& pk,
                 std::vector<Packed<F>>& parts, PackParts pack_parts, Shared<F>& sh,
                 const F* gi0, const F* u0, S* hist, S* y, Barrier barrier) {
  const int64_t D = d.D, T = d.T, L = d.L, D3 = 3 * D;
  std::vector<const Packed<F>*> own{&pk};
  bool solo = false;
  const int64_t R = hist_rows(d);
  S* H = hist + b * R * D;
  S* Y = y + b * T * D;
  const int64_t P_max = round_up(3 * D, kVec<F>);
  std::vector<F> acc_i(std::max<int64_t>(P_max, 1)), acc_h(std::max<int64_t>(P_max, 1));
  std::vector<F> vin(D), vy(D), vh(D);
  int64_t seg[kMaxLayers + 1], sp[kMaxLayers];
  for (int l = 0; l < L; ++l) {
    seg[l] = seg_offset(d, l);
    sp[l] = span(d, l);
  }
  const int64_t steps = super_steps(d);
  for (int64_t s = 0; s < steps; ++s) {
    if (!solo && barrier.solo_from(s)) {
      solo = true;
      if (tid != 0) return true;
      if (parts.empty()) pack_parts(parts, nth);
      own.clear();
      for (const Packed<F>& p : parts) own.push_back(&p);
    }
    for (const Packed<F>* op : own) {
      const Packed<F>& pc = *op;
      const int64_t j0 = pc.j0, n = pc.n, P = pc.P;
      for (int l = 0; l < L; ++l) {
        const int64_t t = step_of(d, s, l, false);
        if (t < 0 || n == 0) continue;
        const F* uin;  // u^l_t, full vector
        const F* wil = pc.wi.data() + l * D * P;
        std::copy_n(pc.bi.data() + l * P, P, acc_i.data());
        if (l == 0) {
          // Layer 0's input projection came from one GEMM over all steps (biases
          // included); feedback adds the recurrent part W_ih y_{t-1}.
          const F* g = gi0 + (b * T + t) * D3;
          for (int64_t gg = 0; gg < 3; ++gg)
            for (int64_t j = 0; j < n; ++j) acc_i[gg * n + j] = g[gg * D + j0 + j];
          const F* x = u0 + (b * T + t) * D;
          if (d.feedback) {
            const S* prev = nullptr;
            if (t > 0) prev = Y + (t - 1) * D;
            else if (d.has_state) prev = H + seg[L - 1] * D;
            for (int64_t k = 0; k < D; ++k) vy[k] = prev ? Io<S>::load(prev[k]) : F(0);
            for (int64_t k = 0; k < D; ++k) vin[k] = x[k] + vy[k];
            if (prev) matvec(acc_i.data(), wil, vy.data(), D, P);
            uin = vin.data();
          } else {
            uin = x;
          }
        } else {
          uin = sh.u((s - 1) & 1, l);
          matvec(acc_i.data(), wil, uin, D, P);
        }
        const S* hp = H + (seg[l] + t) * D;
        for (int64_t k = 0; k < D; ++k) vh[k] = Io<S>::load(hp[k]);
        std::copy_n(pc.bh.data() + l * P, P, acc_h.data());
        matvec(acc_h.data(), pc.wh.data() + l * D * P, vh.data(), D, P);
        S* hout = H + (seg[l] + sp[l] + t) * D;
        F* unext = sh.u(s & 1, l + 1);
        F* hn = acc_i.data();  // the input projection is consumed by then
        gates_forward(acc_i.data(), acc_h.data(), vh.data() + j0, hn, n);
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
    }
    if (!solo) barrier(s);
  }
  return solo;
}

// Backward of batch element b. Super-step q: (A) each thread the elementwise
// gradients of its units (gate gradients of its 3n rows); (B) its partial
// products W^T dg over those rows into all D entries; barrier; then (at the
// start of q + 1) each thread sums the partials of its own units: one barrier
// per super-step, and the transposed products read the same rows (and bytes)
// as the forward's.
// Returns whether the team dropped to one thread, as forward_one.
//
// Determinism: a thread's partial products depend on which rows it owns, so a
// team of nth threads sums W^T dg in nth groups. When thread 0 finishes alone
// (the probe found the barrier slow, or a partner lost its core mid-call) it
// keeps the team's nth partitions, each packed as its owner packs it
// (`parts`), and forms the same nth partial sums in the same order: the result
// is bit-identical whichever way the call ran (training resumes exactly, and
// two runs on one machine agree).
template <typename F, typename Barrier, typename PackParts>
bool backward_one(const Dims& d, int64_t b, int tid, int nth, const Packed<F>& pk,
                  std::vector<Packed<F>>& parts, PackParts pack_parts, Shared<F>& sh,
                  const F* gi, const F* gh, const F* u, const F* hist, const F* dy, F* dhist,
                  F* dgi, F* dgh, F* du0, Barrier barrier) {
  const int64_t D = d.D, T = d.T, L = d.L, B = d.B, D3 = 3 * D;
  // The partitions this thread works on, with their index among the team's.
  struct Owned {
    const Packed<F>* pk;
    int index;
    std::vector<F> gown;  // [L][dgi rows, dgh rows] of the partition's units
  };
  std::vector<Owned> own;
  own.push_back({&pk, tid, std::vector<F>(std::max<int64_t>(L * 6 * pk.n, 1))});
  bool solo = false;
  const int64_t R = hist_rows(d);
  const F* H = hist + b * R * D;
  F* dH = dhist + b * R * D;
  std::vector<F> acc(std::max<int64_t>(D, 1));
  int64_t seg[kMaxLayers + 1], sp[kMaxLayers];
  for (int l = 0; l < L; ++l) {
    seg[l] = seg_offset(d, l);
    sp[l] = span(d, l);
  }
  // Feedback: gradient reaching y_{t-1} through u^0_t (written by layer 0 at t,
  // read by layer L-1 at t-1 in the next super-step; own units only).
  F* carry = sh.carry.data();
  if (d.feedback)
    for (int64_t k = pk.j0; k < pk.j0 + pk.n; ++k) carry[k] = F(0);
  // Sums the partial products of super-step q for the units [j0, j0 + n) and
  // routes them.
  auto reduce_units = [&](int64_t q, int64_t j0, int64_t n) {
    const int64_t j1 = j0 + n;
    for (int l = 0; l < L; ++l) {
      const int64_t t = step_of(d, q, l, true);
      if (t < 0 || n == 0) continue;
      F* dhp = dH + (seg[l] + t) * D;
      const F* dres = sh.vec.data() + l * D;
      for (int64_t k = j0; k < j1; ++k) {
        F si = dres[k], sh_ = F(0);
        for (int th = 0; th < nth; ++th) {
          const F* p = sh.partial(q, th, l);
          si += p[k];
          sh_ += p[sh.Kp + k];
        }
        dhp[k] += sh_;
        acc[k - j0] = si;
      }
      if (l == 0) {
        F* out = du0 + (b * T + t) * D;
        for (int64_t k = 0; k < n; ++k) out[j0 + k] = acc[k];
        if (d.feedback) {
          if (t > 0) {
            for (int64_t k = 0; k < n; ++k) carry[j0 + k] = acc[k];
          } else if (d.has_state) {
            F* first = dH + seg[L - 1] * D;
            for (int64_t k = 0; k < n; ++k) first[j0 + k] += acc[k];
          }
        }
      } else {
        F* out = sh.u(q & 1, l);
        for (int64_t k = 0; k < n; ++k) out[j0 + k] = acc[k];
      }
    }
  };
  auto reduce = [&](int64_t q) {
    for (const Owned& o : own) reduce_units(q, o.pk->j0, o.pk->n);
  };
  const int64_t steps = super_steps(d);
  for (int64_t q = 0; q < steps; ++q) {
    if (!solo && barrier.solo_from(q)) {
      solo = true;
      if (tid != 0) return true;
      if (parts.empty()) pack_parts(parts, nth);
      own.clear();
      for (int th = 0; th < nth; ++th)
        own.push_back({&parts[th], th,
                       std::vector<F>(std::max<int64_t>(L * 6 * parts[th].n, 1))});
      // reduce(q - 1) below sums the partials of all nth partitions, as before.
    }
    if (q > 0) reduce(q - 1);
    // Phase A: elementwise gradients of every active (layer, own unit).
    for (Owned& o : own) {
      const int64_t j0 = o.pk->j0, n = o.pk->n;
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
        F* go = o.gown.data() + l * 6 * n;
        // Never null: a conditional load would keep the loop from vectorising.
        const F* carry_in = (l == L - 1 && d.feedback) ? sh.carry.data() : sh.zeros.data();
        cells_backward_rows(gil + j0, gil + D + j0, gil + 2 * D + j0, ghl + j0, ghl + D + j0,
                            ghl + 2 * D + j0, hp + j0, hc + j0, ul + j0, gnext + j0,
                            carry_in + j0, dhc + j0, dhp + j0, dgil + j0, dgil + D + j0,
                            dgil + 2 * D + j0, dghl + j0, dghl + D + j0, dghl + 2 * D + j0, go,
                            go + n, go + 2 * n, go + 3 * n, go + 4 * n, go + 5 * n, dres + j0,
                            n, L > 1);
      }
    }
    // Phase B: partial transposed products over the own rows.
    for (const Owned& o : own) {
      const int64_t n = o.pk->n, Kp = o.pk->Kp;
      for (int l = 0; l < L; ++l) {
        const int64_t t = step_of(d, q, l, true);
        if (t < 0) continue;
        F* p = sh.partial(q, o.index, l);
        std::fill(p, p + 2 * Kp, F(0));
        if (n == 0) continue;
        const F* go = o.gown.data() + l * 6 * n;
        matvec(p, o.pk->wi.data() + l * 3 * n * Kp, go, 3 * n, Kp);
        matvec(p + Kp, o.pk->wh.data() + l * 3 * n * Kp, go + 3 * n, 3 * n, Kp);
      }
    }
    if (!solo) barrier(q);
  }
  reduce(steps - 1);
  return solo;
}

int max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// A team splits the units of one batch element when there are fewer batch
// elements than threads and each thread gets at least this many units.
// Chosen, not tuned: measured only at D = 66 (33 units per thread, see the top
// of the file); below ~16 units a super-step is too short to pay for a barrier.
constexpr int64_t kMinUnitsPerThread = 16;
// Team or one thread: both give the same bits, so the choice is only about
// speed, and the right one depends on where the hypervisor puts the two vCPUs,
// which changes over minutes. A fixed threshold on the barrier's round trip
// (60 ns, from measurements on 2026-11-25) went stale: on 2026-11-26 the probe
// read 70-90 ns, so most calls ran on one thread (fwd+bwd 4.0 ms at D 66, L 3,
// T 256, B 1) while a forced team took 2.9-3.2 ms. So each call shape now times
// both ways and keeps the faster (TeamChooser); the probe only catches a partner
// that is not running at all (a round trip above kLostPartnerNs).
constexpr double kLostPartnerNs = 2000.0;
constexpr int kProbeBarriers = 16;

// Per call shape (forward or backward, B, T, D, L, feedback, element size): the
// wall times of the last kRing calls run each way, and their minimum as the
// estimate (interference only ever adds time). The first call of a shape warms
// up (allocations, packing) and is not recorded; the next calls alternate
// team and one thread until each has kTries samples; afterwards the faster way
// runs, and every kExploreEvery-th call runs the other one, so that a change
// of placement shows within a few hundred calls.
class TeamChooser {
 public:
  static constexpr int kTries = 3;
  static constexpr int kRing = 8;
  static constexpr int64_t kExploreEvery = 16;
  using Key = std::tuple<int, int64_t, int64_t, int64_t, int, bool, int>;

  // Whether this call should run on one thread, and whether to record its time.
  std::pair<bool, bool> solo(const Key& key) {
    std::lock_guard<std::mutex> lock(mu_);
    Stats& st = stats_[key];
    const int64_t call = st.calls++;
    if (call == 0) return {false, false};
    if (st.n[0] < kTries || st.n[1] < kTries) return {call % 2 == 0, true};
    const bool solo_faster = estimate(st, 0) < estimate(st, 1);
    return {(call % kExploreEvery == 0) ? !solo_faster : solo_faster, true};
  }
  void record(const Key& key, bool solo, double ns) {
    std::lock_guard<std::mutex> lock(mu_);
    Stats& st = stats_[key];
    const int m = solo ? 0 : 1;
    st.ring[m][st.n[m] % kRing] = ns;
    ++st.n[m];
  }

 private:
  struct Stats {
    double ring[2][kRing] = {};  // [one thread, team]
    int64_t n[2] = {0, 0};
    int64_t calls = 0;
  };
  static double estimate(const Stats& st, int m) {
    double best = st.ring[m][0];
    for (int i = 1; i < std::min<int64_t>(st.n[m], kRing); ++i) best = std::min(best, st.ring[m][i]);
    return best;
  }
  std::mutex mu_;
  std::map<Key, Stats> stats_;
};

inline TeamChooser& team_chooser() {
  static TeamChooser chooser;
  return chooser;
}

// S2V_DGRU_TEAM=1: always a team where the split applies (no probe); 0: the
// team's work on one thread (as when the chooser prefers it); 2: a
// team that drops to one thread at super-step 2 (as when a partner loses its
// core; for the tests); unset or anything else: whichever has been faster for
// this call shape (TeamChooser). Results are bit-identical either
// way (see backward_one). For the tests (both paths run whatever the
// machine's placement) and for users who know their machine.
inline int team_override() {
  const char* v = std::getenv("S2V_DGRU_TEAM");
  if (v == nullptr || v[0] < '0' || v[0] > '2' || v[1] != '\0') return -1;
  return v[0] - '0';
}

// Unit range of thread tid of a team of nth: the split every path agrees on.
inline int64_t part_begin(int64_t D, int tid, int nth) { return D * tid / nth; }

// Runs body(b, tid, nth, packed, parts, shared, barrier) for every batch
// element: one thread per element (all units, one packing shared by all
// threads) when there are enough elements, else a team splitting the units,
// each thread packing the weights of its own units once for all elements.
// `parts` is where thread 0 packs the team's partitions when it finishes
// alone: from the first super-step when TeamChooser prefers one thread or the
// probe finds the partner not running (SoloBarrier), or from a later one when a
// partner loses its core (TeamBarrier::solo_from).
// What thread 0 calls when it goes on alone: packs the team's n_parts
// partitions, each as its owner packs it.
template <typename Pack>
auto pack_parts(int64_t D, Pack pack) {
  return [D, pack](auto& parts, int n_parts) {
    parts.resize(n_parts);
    for (int th = 0; th < n_parts; ++th)
      pack(parts[th], part_begin(D, th, n_parts), part_begin(D, th + 1, n_parts));
  };
}

template <typename F, typename Pack, typename Body>
void run_parallel(const Dims& d, int kind, Pack pack, Body body) {
  const int nt = max_threads();
  const int override_team = team_override();
  const int64_t team_max = std::max<int64_t>(1, d.D / kMinUnitsPerThread);
  const int64_t Kp = round_up(d.D, kVec<F>);
  if (d.B >= nt || nt == 1 || team_max == 1) {
    Packed<F> pk;
    pack(pk, int64_t{0}, d.D);
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(static_cast<int>(std::min<int64_t>(nt, d.B)))
#endif
    for (int64_t b = 0; b < d.B; ++b) {
      Shared<F> sh(d, 1, Kp);
      std::vector<Packed<F>> unused;
      body(b, 0, 1, pk, unused, sh, NoBarrier{});
    }
    return;
  }
  const int team = static_cast<int>(std::min<int64_t>(nt, team_max));
  const bool choose = override_team == -1;
  const TeamChooser::Key key{kind, d.B, d.T, d.D, d.L, d.feedback, static_cast<int>(sizeof(F))};
  const auto [prefer_solo, timed] = choose ? team_chooser().solo(key)
                                           : std::pair<bool, bool>{false, false};
  const auto call_start = std::chrono::steady_clock::now();
  Shared<F> sh(d, team, Kp);
#ifdef _OPENMP
#pragma omp parallel num_threads(team)
#endif
  {
#ifdef _OPENMP
    const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
#else
    const int tid = 0, nth = 1;
#endif
    if (tid == 0) {
      sh.bar.n = nth;
      if (override_team == 2) sh.bar.slow.store(0, std::memory_order_relaxed);
    }
#ifdef _OPENMP
#pragma omp barrier
#endif
    // Probe the barrier first (35-50 ns per round trip when the hypervisor puts
    // the vCPUs on cores that share a cache, 70-100 and 250-350 ns in other
    // placements): a partner that is not running at all shows as microseconds,
    // and the call then runs on thread 0 whatever TeamChooser prefers.
    const bool probe = choose && !prefer_solo;
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; probe && i < kProbeBarriers; ++i) sh.bar.wait(-2);
    if (tid == 0) {
      const double ns = std::chrono::duration<double, std::nano>(
                            std::chrono::steady_clock::now() - start).count() / kProbeBarriers;
      sh.team_too_slow =
          nth > 1 && (override_team == 0 || prefer_solo || (probe && ns > kLostPartnerNs));
    }
#ifdef _OPENMP
#pragma omp barrier
#endif
    std::vector<Packed<F>> solo_state;
    if (sh.team_too_slow) {
      if (tid == 0) {
        const Packed<F> none;
        for (int64_t b = 0; b < d.B; ++b) body(b, 0, nth, none, solo_state, sh, SoloBarrier{});
      }
    } else {
      Packed<F> pk;
      pack(pk, part_begin(d.D, tid, nth), part_begin(d.D, tid + 1, nth));
      bool solo = false;
      for (int64_t b = 0; b < d.B; ++b) {
        if (!solo) {
          solo = body(b, tid, nth, pk, solo_state, sh, TeamBarrier{&sh.bar});
          if (!solo) sh.bar.wait(-1);  // the next element reuses the shared buffers
        } else if (tid == 0) {
          body(b, 0, nth, pk, solo_state, sh, SoloBarrier{});
        }
      }
    }
  }
  if (timed) {
    const double ns = std::chrono::duration<double, std::nano>(
                          std::chrono::steady_clock::now() - call_start).count();
    team_chooser().record(key, sh.team_too_slow, ns);
  }
}

template <typename S, typename F>
void forward_impl(const Dims& d, const F* gi0, const F* u0, const F* w_ih_t, const F* w_hh_t,
                  const F* b_ih, const F* b_hh, S* hist, S* y) {
  auto pack = [&](Packed<F>& pk, int64_t j0, int64_t j1) {
    pack_forward(pk, d, j0, j1, w_ih_t, w_hh_t, b_ih, b_hh);
  };
  run_parallel<F>(d, /*kind=*/0, pack,
                  [&](int64_t b, int tid, int nth, const Packed<F>& pk,
                      std::vector<Packed<F>>& parts, Shared<F>& sh, auto barrier) {
                    return forward_one<S, F>(d, b, tid, nth, pk, parts,
                                             pack_parts(d.D, pack), sh, gi0, u0, hist, y,
                                             barrier);
                  });
}

template <typename F>
void backward_impl(const Dims& d, const F* gi, const F* gh, const F* u, const F* hist,
                   const F* w_ih, const F* w_hh, const F* dy, F* dhist, F* dgi, F* dgh, F* du0) {
  auto pack = [&](Packed<F>& pk, int64_t j0, int64_t j1) {
    pack_backward(pk, d, j0, j1, w_ih, w_hh);
  };
  run_parallel<F>(d, /*kind=*/1, pack,
                  [&](int64_t b, int tid, int nth, const Packed<F>& pk,
                      std::vector<Packed<F>>& parts, Shared<F>& sh, auto barrier) {
                    return backward_one<F>(d, b, tid, nth, pk, parts, pack_parts(d.D, pack), sh,
                                           gi, gh, u, hist, dy, dhist, dgi, dgh, du0,
                                           barrier);
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
