// Checks and dtype dispatch around video_predictor.h; see video_predictor_torch.h.
#include "video_predictor/video_predictor_torch.h"
#include "check.h"

#include <c10/util/Exception.h>

#include "video_predictor/video_predictor.h"
// s2v_empty / s2v_empty_like: at::empty(_like) that NaN-fill under S2V_POISON_EMPTY=1.
#include "buffer_pool.h"
#include "poison.h"

namespace s2v {
namespace video_predictor {
namespace {

void check_dtype(const at::Tensor& x) {
  const auto st = x.scalar_type();
  S2V_CHECK(st == at::kFloat || st == at::kDouble || st == at::kBFloat16 || st == at::kHalf,
              "x: expected float32, float64, bfloat16 or float16, got ", st);
}

// Every argument the kernels read: CPU, x's dtype, contiguous, the given shape.
void check_arg(const char* name, const at::Tensor& t, const at::Tensor& x,
               at::IntArrayRef shape) {
  S2V_CHECK(t.device().is_cpu(), name, ": expected a CPU tensor, got one on ", t.device());
  S2V_CHECK(t.scalar_type() == x.scalar_type(), name, ": expected dtype ", x.scalar_type(),
              " (that of x), got ", t.scalar_type());
  S2V_CHECK(t.sizes() == shape, name, ": expected shape ", shape, ", got ", t.sizes());
  S2V_CHECK(t.is_contiguous(), name, ": expected a contiguous tensor (call .contiguous())");
}

void check_absent(const char* name, const at::Tensor& t) {
  S2V_CHECK(t.numel() == 0, name, ": must be empty for the basic variant, got shape ",
              t.sizes());
}

// The computation type: bfloat16/float16 are computed in float32.
at::ScalarType compute_type(const at::Tensor& x) {
  const auto st = x.scalar_type();
  return (st == at::kFloat || st == at::kDouble) ? st : at::kFloat;
}

at::Tensor widen(const at::Tensor& t, at::ScalarType ct) {
  return t.numel() == 0 ? t : t.to(ct).contiguous();
}

template <typename T>
const T* ptr(const at::Tensor& t) {
  return t.numel() == 0 ? nullptr : t.data_ptr<T>();
}

template <typename T>
T* mptr(at::Tensor& t) {
  return t.numel() == 0 ? nullptr : t.data_ptr<T>();
}

Problem problem_of(const at::Tensor& x, int64_t Ch, int64_t k, Layout layout, int orientation,
                   int direction) {
  Problem p;
  p.B = x.size(0);
  p.T = x.size(1);
  p.C = x.size(2);
  p.H = x.size(3);
  p.W = x.size(4);
  p.Ch = Ch;
  p.k = k;
  p.layout = layout;
  p.orientation = orientation;
  p.direction = direction;
  return p;
}

void check_x(const at::Tensor& x) {
  S2V_CHECK(x.device().is_cpu(), "x: expected a CPU tensor, got one on ", x.device());
  check_dtype(x);
  S2V_CHECK(x.dim() == 5, "x: expected [B, T, C, H, W], got shape ", x.sizes());
  for (int d : {0, 1, 2, 3, 4})
    S2V_CHECK(x.size(d) >= 1, "x: expected every dimension >= 1, got shape ", x.sizes());
  S2V_CHECK(x.is_contiguous(), "x: expected a contiguous tensor (call .contiguous())");
}

// k of a square weight [3, Ch, C+Ch, k, k] (odd).
int64_t square_k(const at::Tensor& w) {
  S2V_CHECK(w.dim() == 5 && w.size(0) == 3 && w.size(3) == w.size(4) && w.size(3) % 2 == 1,
              "w_sq: expected [3, Ch, C + Ch, k, k] with odd k, got shape ", w.sizes());
  return w.size(3);
}

int64_t dir_taps(int64_t k) { return ((k + 1) / 2) * ((k + 1) / 2); }

struct LayerArgs {
  Problem p;
  std::vector<at::Tensor> w;  // w_sq, b_sq, w_h, b_h, w_w, b_w, blend_w, blend_b
};

LayerArgs check_layer(const at::Tensor& x, const at::Tensor& xh, const at::Tensor& h0,
                      const std::vector<at::Tensor>& w) {
  check_x(x);
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2), H = x.size(3), W = x.size(4);
  const int64_t k = square_k(w[0]);
  const int64_t Ch = w[0].size(1);
  const bool directional = w[2].numel() > 0;
  check_arg("w_sq", w[0], x, {3, Ch, C + Ch, k, k});
  check_arg("b_sq", w[1], x, {3, Ch});
  if (directional) {
    S2V_CHECK(Ch == C, "w_sq: the directional layer needs C_hid = C = ", C, ", got ", Ch);
    const int64_t taps = dir_taps(k);
    check_arg("w_h", w[2], x, {3, Ch, C + Ch, taps});
    check_arg("b_h", w[3], x, {3, Ch});
    check_arg("w_w", w[4], x, {3, Ch, C + Ch, taps});
    check_arg("b_w", w[5], x, {3, Ch});
    check_arg("blend_w", w[6], x, {C + 1, 5 * Ch});
    check_arg("blend_b", w[7], x, {C + 1});
  } else {
    S2V_CHECK(Ch == C + 1, "w_sq: the basic variant needs C_hid = C + 1 = ", C + 1, ", got ",
                Ch);
    const char* names[] = {"b_h", "w_w", "b_w", "blend_w", "blend_b"};
    for (int i = 3; i < 8; ++i) check_absent(names[i - 3], w[i]);
  }
  const int64_t F = directional ? 5 : 1;
  check_arg("xh", xh, x, {B, T, C, H, W});
  check_arg("h0", h0, x, {F, B, Ch, H, W});
  return {problem_of(x, Ch, k, directional ? Layout::kDirectional : Layout::kBasic, 0, 1), w};
}

template <typename T>
Weights<T> weights_of(const std::vector<at::Tensor>& w) {
  Weights<T> out;
  for (int c = 0; c < 3; ++c) {
    out.w[c] = ptr<T>(w[2 * c]);
    out.b[c] = ptr<T>(w[2 * c + 1]);
  }
  if (w.size() > 6) {
    out.blend_w = ptr<T>(w[6]);
    out.blend_b = ptr<T>(w[7]);
  }
  return out;
}

template <typename T>
WeightGrads<T> grads_of(std::vector<at::Tensor>& g) {
  WeightGrads<T> out;
  for (int c = 0; c < 3; ++c) {
    out.w[c] = mptr<T>(g[2 * c]);
    out.b[c] = mptr<T>(g[2 * c + 1]);
  }
  if (g.size() > 6) {
    out.blend_w = mptr<T>(g[6]);
    out.blend_b = mptr<T>(g[7]);
  }
  return out;
}

std::vector<at::Tensor> widen_all(const std::vector<at::Tensor>& v, at::ScalarType ct) {
  std::vector<at::Tensor> out;
  for (const at::Tensor& t : v) out.push_back(widen(t, ct));
  return out;
}

void check_cell_orientation(int64_t orientation, int64_t direction) {
  S2V_CHECK(orientation >= 0 && orientation <= 2,
              "orientation: expected 0 (square), 1 ('h') or 2 ('w'), got ", orientation);
  S2V_CHECK(direction == 1 || direction == -1, "direction: expected +1 or -1, got ",
              direction);
}

Problem check_cell(const at::Tensor& x, const at::Tensor& h0, const at::Tensor& weight,
                   const at::Tensor& bias, int64_t orientation, int64_t direction) {
  check_x(x);
  check_cell_orientation(orientation, direction);
  const int64_t B = x.size(0), C = x.size(2), H = x.size(3), W = x.size(4);
  int64_t k;
  if (orientation == 0) {
    S2V_CHECK(weight.dim() == 5, "weight: expected [3, Ch, C + Ch, k, k], got shape ",
                weight.sizes());
    k = square_k(weight);
  } else {
    S2V_CHECK(weight.dim() == 4 && weight.size(0) == 3,
                "weight: expected [3, Ch, C + Ch, taps], got shape ", weight.sizes());
    int64_t half = 1;
    while (half * half < weight.size(3)) ++half;
    S2V_CHECK(half * half == weight.size(3), "weight: the tap count ", weight.size(3),
                " is not ((k + 1) / 2)^2 for an odd k");
    k = 2 * half - 1;
  }
  const int64_t Ch = weight.size(1);
  if (orientation == 0)
    check_arg("weight", weight, x, {3, Ch, C + Ch, k, k});
  else
    check_arg("weight", weight, x, {3, Ch, C + Ch, dir_taps(k)});
  check_arg("bias", bias, x, {3, Ch});
  check_arg("h0", h0, x, {B, Ch, H, W});
  return problem_of(x, Ch, k, Layout::kSingleCell, static_cast<int>(orientation),
                    static_cast<int>(direction));
}

}  // namespace

std::vector<at::Tensor> forward(const at::Tensor& x, const at::Tensor& xh, const at::Tensor& h0,
                                const at::Tensor& w_sq, const at::Tensor& b_sq,
                                const at::Tensor& w_h, const at::Tensor& b_h,
                                const at::Tensor& w_w, const at::Tensor& b_w,
                                const at::Tensor& blend_w, const at::Tensor& blend_b,
                                bool save_gates) {
  const LayerArgs a = check_layer(x, xh, h0, {w_sq, b_sq, w_h, b_h, w_w, b_w, blend_w, blend_b});
  const Problem& p = a.p;
  const at::ScalarType ct = compute_type(x);
  const at::Tensor xc = widen(x, ct), xhc = widen(xh, ct), h0c = widen(h0, ct);
  const std::vector<at::Tensor> wc = widen_all(a.w, ct);
  const auto opt = xc.options();
  // Large outputs from the buffer pool (no fresh pages per call: buffer_pool.h).
  at::Tensor y = pooled_empty({p.B, p.T, p.C, p.H, p.W}, opt);
  at::Tensor h_seq = pooled_empty({p.flows(), p.B, p.T, p.Ch, p.H, p.W}, opt);
  // Only where the states are kept in the compute type: with 16-bit states the
  // backward recomputes the candidate gate anyway (see Problem).
  const bool save = save_gates && ct == x.scalar_type();
  at::Tensor saved =
      pooled_empty(save ? at::IntArrayRef{p.flows(), p.T, 3, p.B * p.H * p.W * p.Ch}
                        : at::IntArrayRef{0},
                   opt);
  AT_DISPATCH_FLOATING_TYPES(ct, "video_predictor_forward", [&] {
    forward_cpu<scalar_t>(p, xc.data_ptr<scalar_t>(), xhc.data_ptr<scalar_t>(),
                          h0c.data_ptr<scalar_t>(), weights_of<scalar_t>(wc),
                          y.data_ptr<scalar_t>(), h_seq.data_ptr<scalar_t>(),
                          save ? saved.data_ptr<scalar_t>() : nullptr);
  });
  return {y.to(x.scalar_type()), h_seq.to(x.scalar_type()), saved};
}

std::vector<at::Tensor> backward(const at::Tensor& dy, const at::Tensor& dh_last,
                                 const at::Tensor& dh_seq, const at::Tensor& x,
                                 const at::Tensor& xh, const at::Tensor& h0,
                                 const at::Tensor& h_seq, const at::Tensor& w_sq,
                                 const at::Tensor& b_sq, const at::Tensor& w_h,
                                 const at::Tensor& b_h, const at::Tensor& w_w,
                                 const at::Tensor& b_w, const at::Tensor& blend_w,
                                 const at::Tensor& blend_b, const at::Tensor& saved) {
  const LayerArgs a = check_layer(x, xh, h0, {w_sq, b_sq, w_h, b_h, w_w, b_w, blend_w, blend_b});
  Problem p = a.p;
  p.recompute_candidate = compute_type(x) != x.scalar_type();
  const bool has_saved = saved.defined() && saved.numel() > 0;
  if (has_saved) {
    S2V_CHECK(!p.recompute_candidate && saved.scalar_type() == x.scalar_type() &&
                    saved.is_contiguous() && saved.device().is_cpu() &&
                    saved.numel() == p.flows() * p.T * 3 * p.B * p.H * p.W * p.Ch,
                "saved: expected the gates saved by video_predictor_forward for this input "
                "(or an empty tensor)");
  }
  const int64_t F = p.flows();
  check_arg("dy", dy, x, {p.B, p.T, p.C, p.H, p.W});
  check_arg("h_seq", h_seq, x, {F, p.B, p.T, p.Ch, p.H, p.W});
  if (dh_last.numel()) check_arg("dh_last", dh_last, x, {F, p.B, p.Ch, p.H, p.W});
  if (dh_seq.numel()) check_arg("dh_seq", dh_seq, x, {F, p.B, p.T, p.Ch, p.H, p.W});
  const at::ScalarType ct = compute_type(x);
  const at::Tensor dyc = widen(dy, ct), dhlc = widen(dh_last, ct), dhsc = widen(dh_seq, ct),
                   xc = widen(x, ct), xhc = widen(xh, ct), h0c = widen(h0, ct),
                   hsc = widen(h_seq, ct);
  const std::vector<at::Tensor> wc = widen_all(a.w, ct);
  const auto opt = xc.options();
  at::Tensor dx = s2v_empty_like(xc), dxh = s2v_empty_like(xc), dh0 = s2v_empty_like(h0c);
  std::vector<at::Tensor> g;
  for (const at::Tensor& t : wc) g.push_back(s2v_empty(t.sizes(), opt));
  AT_DISPATCH_FLOATING_TYPES(ct, "video_predictor_backward", [&] {
    backward_cpu<scalar_t>(p, dyc.data_ptr<scalar_t>(), ptr<scalar_t>(dhsc),
                           ptr<scalar_t>(dhlc), xc.data_ptr<scalar_t>(),
                           xhc.data_ptr<scalar_t>(), h0c.data_ptr<scalar_t>(),
                           hsc.data_ptr<scalar_t>(), weights_of<scalar_t>(wc),
                           dx.data_ptr<scalar_t>(), dxh.data_ptr<scalar_t>(),
                           dh0.data_ptr<scalar_t>(), grads_of<scalar_t>(g),
                           has_saved ? saved.data_ptr<scalar_t>() : nullptr);
  });
  const auto st = x.scalar_type();
  std::vector<at::Tensor> out = {dx.to(st), dxh.to(st), dh0.to(st)};
  for (const at::Tensor& t : g) out.push_back(t.to(st));
  return out;
}

at::Tensor cell_forward(const at::Tensor& x, const at::Tensor& h0, const at::Tensor& weight,
                        const at::Tensor& bias, int64_t orientation, int64_t direction) {
  const Problem p = check_cell(x, h0, weight, bias, orientation, direction);
  const at::ScalarType ct = compute_type(x);
  const at::Tensor xc = widen(x, ct), h0c = widen(h0, ct), wc = widen(weight, ct),
                   bc = widen(bias, ct);
  at::Tensor h_seq = pooled_empty({p.B, p.T, p.Ch, p.H, p.W}, xc.options());
  AT_DISPATCH_FLOATING_TYPES(ct, "dirconv_gru_forward", [&] {
    Weights<scalar_t> w;
    w.w[0] = wc.data_ptr<scalar_t>();
    w.b[0] = bc.data_ptr<scalar_t>();
    forward_cpu<scalar_t>(p, xc.data_ptr<scalar_t>(), nullptr, h0c.data_ptr<scalar_t>(), w,
                          nullptr, h_seq.data_ptr<scalar_t>());
  });
  return h_seq.to(x.scalar_type());
}

std::vector<at::Tensor> cell_backward(const at::Tensor& dh_seq, const at::Tensor& x,
                                      const at::Tensor& h0, const at::Tensor& h_seq,
                                      const at::Tensor& weight, const at::Tensor& bias,
                                      int64_t orientation, int64_t direction) {
  Problem p = check_cell(x, h0, weight, bias, orientation, direction);
  p.recompute_candidate = compute_type(x) != x.scalar_type();
  check_arg("dh_seq", dh_seq, x, {p.B, p.T, p.Ch, p.H, p.W});
  check_arg("h_seq", h_seq, x, {p.B, p.T, p.Ch, p.H, p.W});
  const at::ScalarType ct = compute_type(x);
  const at::Tensor dhc = widen(dh_seq, ct), xc = widen(x, ct), h0c = widen(h0, ct),
                   hsc = widen(h_seq, ct), wc = widen(weight, ct), bc = widen(bias, ct);
  at::Tensor dx = s2v_empty_like(xc), dh0 = s2v_empty_like(h0c), dw = s2v_empty_like(wc),
             db = s2v_empty_like(bc);
  AT_DISPATCH_FLOATING_TYPES(ct, "dirconv_gru_backward", [&] {
    Weights<scalar_t> w;
    w.w[0] = wc.data_ptr<scalar_t>();
    w.b[0] = bc.data_ptr<scalar_t>();
    WeightGrads<scalar_t> g;
    g.w[0] = dw.data_ptr<scalar_t>();
    g.b[0] = db.data_ptr<scalar_t>();
    // A single cell's h_seq [B,T,Ch,H,W] is the F = 1 case of [F,B,T,Ch,H,W].
    backward_cpu<scalar_t>(p, nullptr, dhc.data_ptr<scalar_t>(), nullptr, xc.data_ptr<scalar_t>(),
                           nullptr, h0c.data_ptr<scalar_t>(), hsc.data_ptr<scalar_t>(), w,
                           dx.data_ptr<scalar_t>(), nullptr, dh0.data_ptr<scalar_t>(), g);
  });
  const auto st = x.scalar_type();
  return {dx.to(st), dh0.to(st), dw.to(st), db.to(st)};
}

}  // namespace video_predictor
}  // namespace s2v
