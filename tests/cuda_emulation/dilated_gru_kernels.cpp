// The dilated GRU's CUDA kernels (csrc/dilated_gru/*.cu, compiled as C++ under
// S2V_CUDA_EMULATION, see cuda_runtime.h here) on random inputs: the grouped
// kernels must give what the per-unit kernels give (those pass the golden files
// on an H100) for the forward outputs (hist, y) and every backward output the
// caller reads (the incoming state's dhist rows, dgi, dgh, du0).
//
//   dilated_gru_kernels [ci|full|small-smem]
// ci: a few cases of every kind; full: the grid of T, L, dilation, feedback and
// state; small-smem: shared-memory budgets that leave 0, 1 or L + 1 weight
// matrices in shared memory (the rest read from global memory).
// Shared memory starts as NaN, so a read of a location nothing wrote shows.
// Prints one line per failing case and "N / M failed" last; exit status 1 if any
// failed.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "dilated_gru/dilated_gru_cuda.cu"
#include "dilated_gru/dilated_gru_cuda_grouped.cu"

using namespace s2v::dgru;

namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();
const int64_t kH100SharedBytes = 232448;  // cudaDevAttrMaxSharedMemoryPerBlockOptin

// Runs `kernel` as a grid of B blocks of `threads` threads, one block at a time.
void run_grid(int threads, int64_t B, int64_t smem_floats, const std::function<void()>& kernel) {
  std::vector<float> smem(smem_floats + 1);
  for (int64_t b = 0; b < B; ++b) {
    std::fill(smem.begin(), smem.end(), kNaN);
    s2v_emulated_smem = smem.data();
    std::barrier<> block(threads);
    s2v_emulated_block_barrier = &block;
    std::vector<std::unique_ptr<std::barrier<>>> warps;
    for (int w = 0; w < threads / 32; ++w) {
      warps.emplace_back(new std::barrier<>(32));
      s2v_emulated_warp_barrier[w] = warps.back().get();
    }
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        threadIdx.x = t;
        blockIdx.x = static_cast<unsigned>(b);
        blockDim.x = threads;
        kernel();
      });
    for (auto& th : pool) th.join();
  }
}

template <typename S, int G>
void forward_g(const Params& p, const Placement& pl, int64_t B) {
  run_grid(pl.threads, B, pl.smem_floats, [&] { forward_grouped_kernel<S, G>(p, pl); });
}
template <typename S>
void forward_grouped(const Params& p, const Placement& pl, int64_t B) {
  switch (pl.G) {
    case 32: return forward_g<S, 32>(p, pl, B);
    case 16: return forward_g<S, 16>(p, pl, B);
    case 8: return forward_g<S, 8>(p, pl, B);
    case 4: return forward_g<S, 4>(p, pl, B);
    case 2: return forward_g<S, 2>(p, pl, B);
    default: return forward_g<S, 1>(p, pl, B);
  }
}
template <int G>
void backward_g(const Params& p, const Placement& pl, int64_t B) {
  run_grid(pl.threads, B, pl.smem_floats, [&] { backward_grouped_kernel<G>(p, pl); });
}
void backward_grouped(const Params& p, const Placement& pl, int64_t B) {
  switch (pl.G) {
    case 32: return backward_g<32>(p, pl, B);
    case 16: return backward_g<16>(p, pl, B);
    case 8: return backward_g<8>(p, pl, B);
    case 4: return backward_g<4>(p, pl, B);
    case 2: return backward_g<2>(p, pl, B);
    default: return backward_g<1>(p, pl, B);
  }
}

float to_float(float x) { return x; }
float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename S>
S from_float(float x);
template <>
float from_float<float>(float x) {
  return x;
}
template <>
__nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

struct Error {
  double worst = 0.0;
  bool nan = false;
  void add(float got, float want) {
    if (std::isnan(got) || std::isnan(want)) {
      nan = true;
      return;
    }
    const double e = std::fabs(got - want) / (1.0 + std::fabs(want));
    if (e > worst) worst = e;
  }
  bool bad(double tol) const { return nan || worst > tol; }
};

// fn(i) for the index i of every element of the state rows of hist / dhist
// ([B, R, D]): rows [offset, offset + span_l) of each layer's segment.
template <typename Fn>
void for_each_state_element(const Dims& d, int64_t offset, Fn fn) {
  const int64_t R = hist_rows(d);
  for (int64_t b = 0; b < d.B; ++b)
    for (int l = 0; l < d.L; ++l)
      for (int64_t r = 0; r < span(d, l); ++r)
        for (int64_t k = 0; k < d.D; ++k) fn((b * R + seg_offset(d, l) + offset + r) * d.D + k);
}

struct Case {
  int64_t B, T, D;
  int L;
  int64_t dilation;
  bool feedback, state;
};

// One case: both kernel families on the same inputs; budgets in bytes.
template <typename S>
bool check(const Case& c, int64_t fwd_budget, int64_t bwd_budget, std::mt19937& rng) {
  const Dims d{c.B, c.T, c.D, c.L, c.dilation, c.feedback, c.state};
  const int64_t B = d.B, T = d.T, D = d.D, L = d.L, R = hist_rows(d), D3 = 3 * D;
  std::normal_distribution<float> normal(0.f, 1.f);
  auto fill = [&](std::vector<float>& v, float scale) {
    for (auto& x : v) x = scale * normal(rng);
  };
  const float w_scale = 0.4f / std::sqrt(static_cast<float>(D));

  // Forward.
  std::vector<float> gi0(B * T * D3), u0(B * T * D), w_ih_t(L * D * D3), w_hh_t(L * D * D3),
      b_ih(L * D3), b_hh(L * D3);
  fill(gi0, 1.f);
  fill(u0, 1.f);
  fill(w_ih_t, w_scale);
  fill(w_hh_t, w_scale);
  fill(b_ih, 0.3f);
  fill(b_hh, 0.3f);
  std::vector<S> hist0(B * R * D, from_float<S>(kNaN));
  for_each_state_element(d, 0, [&](int64_t i) {
    hist0[i] = from_float<S>(c.state ? normal(rng) : 0.f);
  });
  Params p = make_params(d);
  p.gi0 = gi0.data();
  p.u0 = u0.data();
  p.w_ih = w_ih_t.data();
  p.w_hh = w_hh_t.data();
  p.b_ih = b_ih.data();
  p.b_hh = b_hh.data();
  p.whh_smem = true;
  std::vector<S> hist_ref = hist0, hist_got = hist0;
  std::vector<S> y_ref(B * T * D, from_float<S>(kNaN)), y_got = y_ref;
  p.hist = hist_ref.data();
  p.y = y_ref.data();
  const int64_t fwd_vectors = 2 * (L + 1) * D + L * D + D;
  run_grid(block_threads(d), B, fwd_vectors + L * D * D3, [&] { forward_kernel<S>(p); });
  Placement pf{};
  if (!plan_forward(d, fwd_budget, &pf)) {
    std::printf("SKIP plan (forward) declined\n");
    return true;
  }
  Params q = p;
  q.hist = hist_got.data();
  q.y = y_got.data();
  forward_grouped<S>(q, pf, B);
  Error e_hist, e_y;
  for (size_t i = 0; i < hist_ref.size(); ++i) e_hist.add(to_float(hist_got[i]), to_float(hist_ref[i]));
  for (size_t i = 0; i < y_ref.size(); ++i) e_y.add(to_float(y_got[i]), to_float(y_ref[i]));

  // Backward (float32), on arbitrary inputs of the right layouts.
  std::vector<float> gi(L * B * T * D3), gh(L * B * T * D3), u(L * B * T * D), histf(B * R * D),
      w_ih(L * D3 * D), w_hh(L * D3 * D), dy(B * T * D), dhist0(B * R * D, 0.f);
  fill(gi, 1.f);
  fill(gh, 1.f);
  fill(u, 1.f);
  fill(histf, 1.f);
  fill(w_ih, w_scale);
  fill(w_hh, w_scale);
  fill(dy, 1.f);
  for_each_state_element(d, T, [&](int64_t i) { dhist0[i] = normal(rng); });
  Params bp = make_params(d);
  bp.gi = gi.data();
  bp.gh = gh.data();
  bp.u = u.data();
  bp.histf = histf.data();
  bp.w_ih = w_ih.data();
  bp.w_hh = w_hh.data();
  bp.dy = dy.data();
  std::vector<float> dhist_ref = dhist0, dhist_got = dhist0;
  std::vector<float> dgi_ref(L * B * T * D3, kNaN), dgi_got = dgi_ref, dgh_ref = dgi_ref,
                     dgh_got = dgi_ref, du0_ref(B * T * D, kNaN), du0_got = du0_ref;
  bp.dhist = dhist_ref.data();
  bp.dgi = dgi_ref.data();
  bp.dgh = dgh_ref.data();
  bp.du0 = du0_ref.data();
  const int64_t bwd_vectors = backward_vector_floats(L, D);
  run_grid(block_threads(d), B, bwd_vectors, [&] { backward_kernel(bp); });
  Placement pb{};
  if (!plan_backward(d, bwd_budget, &pb)) {
    std::printf("SKIP plan (backward) declined\n");
    return true;
  }
  Params bq = bp;
  bq.dhist = dhist_got.data();
  bq.dgi = dgi_got.data();
  bq.dgh = dgh_got.data();
  bq.du0 = du0_got.data();
  backward_grouped(bq, pb, B);
  Error e_dstate, e_dg, e_du0;
  for_each_state_element(d, 0, [&](int64_t i) { e_dstate.add(dhist_got[i], dhist_ref[i]); });
  for (size_t i = 0; i < dgi_ref.size(); ++i) {
    e_dg.add(dgi_got[i], dgi_ref[i]);
    e_dg.add(dgh_got[i], dgh_ref[i]);
  }
  for (size_t i = 0; i < du0_ref.size(); ++i) e_du0.add(du0_got[i], du0_ref[i]);

  // Forward: the summation order differs, and bf16 rounds h at every step.
  const double tol = sizeof(S) == 2 ? 5e-2 : 1e-4;
  const bool bad = e_hist.bad(tol) || e_y.bad(tol) || e_dstate.bad(1e-4) || e_dg.bad(1e-4) ||
                   e_du0.bad(1e-4);
  if (bad) {
    std::printf(
        "FAIL %s B=%ld T=%ld D=%ld L=%d dilation=%ld feedback=%d state=%d G=%d/%d "
        "smem budget %ld/%ld | hist %.2e%s y %.2e%s | dstate %.2e%s dg %.2e%s du0 %.2e%s\n",
        sizeof(S) == 2 ? "bf16" : "fp32", (long)B, (long)T, (long)D, (int)L, (long)c.dilation,
        c.feedback, c.state, pf.G, pb.G, (long)fwd_budget, (long)bwd_budget, e_hist.worst,
        e_hist.nan ? " NaN" : "", e_y.worst, e_y.nan ? " NaN" : "", e_dstate.worst,
        e_dstate.nan ? " NaN" : "", e_dg.worst, e_dg.nan ? " NaN" : "", e_du0.worst,
        e_du0.nan ? " NaN" : "");
  }
  return !bad;
}

// Bytes of shared memory that leave `matrices` weight matrices in it.
void small_budgets(const Case& c, int matrices, int64_t* fwd, int64_t* bwd) {
  const Dims d{c.B, c.T, c.D, c.L, c.dilation, c.feedback, c.state};
  int64_t rings = 0;
  for (int l = 0; l < d.L; ++l) rings += (span(d, l) + 1) * d.D;
  const int G = group_lanes(d);
  const int64_t fwd_fixed = rings + forward_fixed_floats(d);
  const int64_t bwd_fixed = rings + backward_fixed_floats(d);
  *fwd = 4 * (fwd_fixed + matrices * 3 * d.D * padded_stride(d.D, G));
  *bwd = 4 * (bwd_fixed + matrices * d.D * padded_stride(3 * d.D, G));
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "ci";
  std::mt19937 rng(1234);
  std::vector<Case> cases;
  if (mode == "full" || mode == "small-smem") {
    for (int64_t T : {1, 2, 3, 7})
      for (int L : {1, 2, 3})
        for (int64_t dil : {1, 2, 3})
          for (int fb = 0; fb < 2; ++fb)
            for (int st = 0; st < 2; ++st)
              cases.push_back({2, T, 3 + (T + L + dil) % 4 * 5, L, dil, fb != 0, st != 0});
    cases.push_back({1, 4, 1, 8, 1, true, true});
    cases.push_back({1, 5, 128, 8, 1, true, true});
    cases.push_back({1, 3, 40, 1, 2, true, true});
  } else {
    // T below, at and above the spans; every feedback/state pair; L = 1 and 8;
    // a D whose groups straddle warps; layers padded to whole warps (D = 66 and
    // 100 with G = 4); the D = 66, L = 3 shape of the benchmark.
    cases = {{2, 1, 5, 2, 2, false, true},  {1, 3, 7, 3, 2, true, true},
             {2, 7, 8, 2, 3, true, false},  {1, 2, 13, 1, 2, false, false},
             {1, 4, 1, 8, 1, true, true},   {1, 5, 66, 3, 2, false, true},
             {1, 3, 40, 1, 2, true, true},  {1, 6, 100, 2, 2, true, true}};
  }
  int failed = 0, n = 0;
  for (const Case& c : cases) {
    if (mode == "small-smem") {
      for (int matrices : {0, 1, c.L + 1}) {
        int64_t fb, bb;
        small_budgets(c, matrices, &fb, &bb);
        ++n;
        failed += !check<float>(c, fb, bb, rng);
      }
      continue;
    }
    ++n;
    failed += !check<float>(c, kH100SharedBytes, kH100SharedBytes, rng);
    ++n;
    failed += !check<__nv_bfloat16>(c, kH100SharedBytes, kH100SharedBytes, rng);
    if (mode == "ci") {  // and once with as little shared memory as the plan allows
      int64_t fb, bb;
      small_budgets(c, 0, &fb, &bb);
      ++n;
      failed += !check<float>(c, fb, bb, rng);
    }
  }
  std::printf("%d / %d failed\n", failed, n);
  return failed ? 1 : 0;
}
