// Torch glue of the fused dilated GRU stack (declared in dilated_gru_torch.h).
// The scans (dilated_gru.h) only walk the dependency chain; everything that
// is batched over time is an ATen GEMM here: layer 0's input projection (and
// the feedback encoder) before the forward scan, the gate pre-activations the
// backward recomputes from the saved hidden states, and the weight gradients.
#include "dilated_gru/dilated_gru_torch.h"
#include "check.h"

#include <c10/util/Exception.h>

#include <cmath>
#include <string>

#include "dilated_gru/dilated_gru.h"
// s2v_empty / s2v_empty_like: at::empty(_like) that NaN-fill under S2V_POISON_EMPTY=1.
#include "poison.h"

#ifdef S2V_WITH_CUDA
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#endif

namespace s2v {
namespace dgru {
namespace {

std::string shape_str(const at::Tensor& t) {
  std::string s = "(";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + (t.dim() == 1 ? ",)" : ")");
}

void check_tensor(const char* name, const at::Tensor& t, const at::Tensor& x,
                  std::initializer_list<int64_t> shape, const char* layout) {
  TORCH_CHECK_VALUE(t.defined(), "dilated_gru: ", name, " is undefined");
  TORCH_CHECK_VALUE(t.device() == x.device(), "dilated_gru: ", name, " is on ", t.device(),
                    " but x is on ", x.device());
  TORCH_CHECK_TYPE(t.scalar_type() == x.scalar_type(), "dilated_gru: ", name, " has dtype ",
                   t.scalar_type(), " but x has ", x.scalar_type());
  bool ok = t.dim() == static_cast<int64_t>(shape.size());
  int64_t i = 0;
  for (int64_t s : shape) ok = ok && t.size(i++) == s;
  if (!ok) {
    std::string want = "(";
    i = 0;
    for (int64_t s : shape) want += (i++ ? ", " : "") + std::to_string(s);
    TORCH_CHECK_VALUE(false, "dilated_gru: ", name, " must have shape ", layout, " = ", want,
                      (shape.size() == 1 ? ",)" : ")"), ", got ", shape_str(t));
  }
  TORCH_CHECK_VALUE(t.is_contiguous(), "dilated_gru: ", name,
                    " must be contiguous (call .contiguous() first)");
}

struct Checked {
  Dims d;
  int64_t S;  // rows of the concatenated state
};

Checked check_all(const at::Tensor& x, const at::Tensor& state, const at::Tensor& w_ih,
                  const at::Tensor& w_hh, const at::Tensor& b_ih, const at::Tensor& b_hh,
                  int64_t dilation, const std::optional<at::Tensor>& fb_w,
                  const std::optional<at::Tensor>& fb_b, bool has_state) {
  TORCH_CHECK_VALUE(x.defined() && x.dim() == 3, "dilated_gru: x must be [B, T, D], got ",
                    x.defined() ? shape_str(x) : std::string("undefined"));
  TORCH_CHECK_VALUE(x.device().is_cpu() || x.device().is_cuda(),
                    "dilated_gru: x must be a CPU or CUDA tensor, got ", x.device());
  const bool f64 = x.scalar_type() == at::kDouble && x.device().is_cpu();
  TORCH_CHECK_TYPE(x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16 || f64,
                   "dilated_gru: the fused kernels take float32 or bfloat16 (and float64 on "
                   "the CPU), got ", x.scalar_type(), " on ", x.device(),
                   " (use backend='eager' for other dtypes)");
  const int64_t B = x.size(0), T = x.size(1), D = x.size(2);
  TORCH_CHECK_VALUE(B >= 1 && T >= 1 && D >= 1, "dilated_gru: x must have B, T, D >= 1, got ",
                    shape_str(x));
  TORCH_CHECK_VALUE(w_ih.defined() && w_ih.dim() == 3, "dilated_gru: w_ih must be [L, 3D, D]");
  const int64_t L = w_ih.size(0);
  TORCH_CHECK_VALUE(L >= 1 && L <= kMaxLayers, "dilated_gru: expected 1 to ", kMaxLayers,
                    " layers, got ", L);
  TORCH_CHECK_VALUE(dilation >= 1, "dilated_gru: dilation must be >= 1, got ", dilation);
  Dims d{B, T, D, static_cast<int>(L), dilation, fb_w.has_value(), has_state};
  int64_t S = 0;
  for (int l = 0; l < d.L; ++l) {
    S += span(d, l);
    TORCH_CHECK_VALUE(S < (int64_t{1} << 40) / (B * D), "dilated_gru: dilation ", dilation,
                      " with ", L, " layers makes a state too large to hold");
  }
  check_tensor("x", x, x, {B, T, D}, "[B, T, D]");
  check_tensor("state", state, x, {B, S, D}, "[B, sum_l dilation**l, D]");
  check_tensor("w_ih", w_ih, x, {L, 3 * D, D}, "[L, 3D, D]");
  check_tensor("w_hh", w_hh, x, {L, 3 * D, D}, "[L, 3D, D]");
  check_tensor("b_ih", b_ih, x, {L, 3 * D}, "[L, 3D]");
  check_tensor("b_hh", b_hh, x, {L, 3 * D}, "[L, 3D]");
  TORCH_CHECK_VALUE(fb_w.has_value() == fb_b.has_value(),
                    "dilated_gru: give both feedback_weight and feedback_bias or neither");
  if (fb_w.has_value()) {
    check_tensor("feedback_weight", *fb_w, x, {D, D}, "[D, D]");
    check_tensor("feedback_bias", *fb_b, x, {D}, "[D]");
  }
  return {d, S};
}

// The feedback encoder's pre-activation W_fb x + b_fb, float32 [B, T, D].
at::Tensor feedback_pre(const at::Tensor& xf, const at::Tensor& fb_w, const at::Tensor& fb_b) {
  const int64_t D = xf.size(2);
  return at::addmm(fb_b.to(xf.scalar_type()), xf.reshape({-1, D}), fb_w.to(xf.scalar_type()).t())
      .view(xf.sizes());
}

at::Tensor lrelu(const at::Tensor& t) { return at::leaky_relu(t, 0.2); }

// Arithmetic type: float64 inputs compute in double, float32/bf16 in float.
at::ScalarType compute_type(const at::Tensor& x) {
  return x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

// Rows [begin, begin + count) of every layer's history segment, stacked [L, B, count, D].
at::Tensor segment_rows(const Dims& d, const at::Tensor& hist, bool hidden, int64_t count) {
  std::vector<at::Tensor> rows;
  for (int l = 0; l < d.L; ++l) {
    const int64_t begin = seg_offset(d, l) + (hidden ? span(d, l) : 0);
    rows.push_back(hist.narrow(1, begin, count));
  }
  return at::stack(rows, 0);
}

}  // namespace

std::vector<at::Tensor> forward(const at::Tensor& x, const at::Tensor& state,
                                const at::Tensor& w_ih, const at::Tensor& w_hh,
                                const at::Tensor& b_ih, const at::Tensor& b_hh, int64_t dilation,
                                const std::optional<at::Tensor>& fb_w,
                                const std::optional<at::Tensor>& fb_b, bool has_state) {
  const Checked c = check_all(x, state, w_ih, w_hh, b_ih, b_hh, dilation, fb_w, fb_b, has_state);
  const Dims& d = c.d;
  const int64_t B = d.B, T = d.T, D = d.D;
#ifdef S2V_WITH_CUDA
  std::optional<c10::cuda::CUDAGuard> guard;
  if (x.is_cuda()) guard.emplace(x.device());
#endif
  const auto ct = compute_type(x);
  const at::Tensor xf = x.to(ct).contiguous();
  const at::Tensor u0 = d.feedback ? lrelu(feedback_pre(xf, *fb_w, *fb_b)).contiguous() : xf;
  const at::Tensor w_ih_f = w_ih.to(ct), w_hh_f = w_hh.to(ct);
  const at::Tensor b_ih_f = b_ih.to(ct).contiguous();
  const at::Tensor b_hh_f = b_hh.to(ct).contiguous();
  const at::Tensor gi0 = at::addmm(b_ih_f[0], u0.view({B * T, D}), w_ih_f[0].t())
                             .view({B, T, 3 * D})
                             .contiguous();
  const at::Tensor w_ih_t = w_ih_f.transpose(1, 2).contiguous();
  const at::Tensor w_hh_t = w_hh_f.transpose(1, 2).contiguous();

  const int64_t R = hist_rows(d);
  at::Tensor hist = s2v_empty({B, R, D}, x.options());
  int64_t srow = 0;
  for (int l = 0; l < d.L; ++l) {
    hist.narrow(1, seg_offset(d, l), span(d, l)).copy_(state.narrow(1, srow, span(d, l)));
    srow += span(d, l);
  }
  at::Tensor y = s2v_empty({B, T, D}, x.options());
  const Storage storage = x.scalar_type() == at::kBFloat16 ? Storage::kBFloat16
                                                            : Storage::kFloat32;
  if (x.is_cuda()) {
#ifdef S2V_WITH_CUDA
    const int rc = forward_cuda(d, storage, gi0.data_ptr<float>(), u0.data_ptr<float>(),
                                w_ih_t.data_ptr<float>(), w_hh_t.data_ptr<float>(),
                                b_ih_f.data_ptr<float>(), b_hh_f.data_ptr<float>(),
                                hist.data_ptr(), y.data_ptr(),
                                c10::cuda::getCurrentCUDAStream().stream());
    S2V_CHECK(rc == 0, "dilated_gru: CUDA forward failed: ", cuda_error_string(rc));
#else
    S2V_CHECK(false, "dilated_gru: s2v._C was built without CUDA");
#endif
  } else if (ct == at::kDouble) {
    forward_cpu(d, gi0.data_ptr<double>(), u0.data_ptr<double>(), w_ih_t.data_ptr<double>(),
                w_hh_t.data_ptr<double>(), b_ih_f.data_ptr<double>(), b_hh_f.data_ptr<double>(),
                hist.data_ptr<double>(), y.data_ptr<double>());
  } else {
    forward_cpu(d, storage, gi0.data_ptr<float>(), u0.data_ptr<float>(),
                w_ih_t.data_ptr<float>(), w_hh_t.data_ptr<float>(), b_ih_f.data_ptr<float>(),
                b_hh_f.data_ptr<float>(), hist.data_ptr(), y.data_ptr());
  }
  std::vector<at::Tensor> parts;
  for (int l = 0; l < d.L; ++l) parts.push_back(hist.narrow(1, seg_offset(d, l) + T, span(d, l)));
  return {y, hist, at::cat(parts, 1)};
}

std::vector<at::Tensor> backward(const at::Tensor& dy_in, const at::Tensor& dnew_state_in,
                                 const at::Tensor& x, const at::Tensor& y,
                                 const at::Tensor& hist, const at::Tensor& w_ih,
                                 const at::Tensor& w_hh, const at::Tensor& b_ih,
                                 const at::Tensor& b_hh, int64_t dilation,
                                 const std::optional<at::Tensor>& fb_w,
                                 const std::optional<at::Tensor>& fb_b, bool has_state) {
  TORCH_CHECK_VALUE(x.defined() && x.dim() == 3, "dilated_gru backward: x must be [B, T, D]");
  const int64_t B = x.size(0), T = x.size(1), D = x.size(2);
  TORCH_CHECK_VALUE(w_ih.defined() && w_ih.dim() == 3 && w_ih.size(0) >= 1 &&
                        w_ih.size(0) <= kMaxLayers,
                    "dilated_gru backward: w_ih must be [L, 3D, D] with 1 <= L <= ", kMaxLayers);
  Dims d{B, T, D, static_cast<int>(w_ih.size(0)), dilation, fb_w.has_value(), has_state};
  TORCH_CHECK_VALUE(dilation >= 1, "dilated_gru backward: dilation must be >= 1");
  int64_t S = 0;
  for (int l = 0; l < d.L; ++l) S += span(d, l);
  const int64_t R = hist_rows(d), L = d.L, D3 = 3 * D;
  check_all(x, s2v_empty({B, S, D}, x.options()), w_ih, w_hh, b_ih, b_hh, dilation, fb_w, fb_b,
            has_state);
  check_tensor("dy", dy_in, x, {B, T, D}, "[B, T, D]");
  check_tensor("dnew_state", dnew_state_in, x, {B, S, D}, "[B, S, D]");
  check_tensor("y", y, x, {B, T, D}, "[B, T, D]");
  check_tensor("hist", hist, x, {B, R, D}, "[B, R, D]");
#ifdef S2V_WITH_CUDA
  std::optional<c10::cuda::CUDAGuard> guard;
  if (x.is_cuda()) guard.emplace(x.device());
#endif
  const auto ct = compute_type(x);
  const at::Tensor xf = x.to(ct).contiguous();
  const at::Tensor histf = hist.to(ct).contiguous();
  const at::Tensor w_ih_f = w_ih.to(ct).contiguous(), w_hh_f = w_hh.to(ct).contiguous();
  at::Tensor pre;
  at::Tensor u0;
  if (d.feedback) {
    pre = feedback_pre(xf, *fb_w, *fb_b);
    // u^0_t = s_t + y_{t-1}, y_{-1} = oldest stored h of the last layer or 0.
    at::Tensor prev = at::zeros({B, T, D}, xf.options());
    if (T > 1) prev.narrow(1, 1, T - 1).copy_(y.narrow(1, 0, T - 1));
    if (has_state) prev.select(1, 0).copy_(histf.select(1, seg_offset(d, L - 1)));
    u0 = lrelu(pre) + prev;
  } else {
    u0 = xf;
  }
  // Inputs of every layer, as the forward formed them from the stored h.
  const at::Tensor hcur = segment_rows(d, histf, true, T);    // [L, B, T, D] h^l_t
  const at::Tensor hprev = segment_rows(d, histf, false, T);  // [L, B, T, D] h^l_{t-span}
  std::vector<at::Tensor> us{u0};
  for (int l = 0; l + 1 < L; ++l) us.push_back(lrelu((hcur[l] + us.back()) * M_SQRT1_2));
  const at::Tensor u = at::stack(us, 0).contiguous();  // [L, B, T, D]
  const at::Tensor gi =
      at::baddbmm(b_ih.to(ct).unsqueeze(1), u.view({L, B * T, D}), w_ih_f.transpose(1, 2))
          .view({L, B, T, D3})
          .contiguous();
  const at::Tensor hprev_flat = hprev.reshape({L, B * T, D});
  const at::Tensor gh = at::baddbmm(b_hh.to(ct).unsqueeze(1), hprev_flat, w_hh_f.transpose(1, 2))
                            .view({L, B, T, D3})
                            .contiguous();
  const at::Tensor dy = dy_in.to(ct).contiguous();
  const at::Tensor dns = dnew_state_in.to(ct);
  at::Tensor dhist = at::zeros({B, R, D}, xf.options());
  int64_t srow = 0;
  for (int l = 0; l < L; ++l) {
    dhist.narrow(1, seg_offset(d, l) + T, span(d, l)).copy_(dns.narrow(1, srow, span(d, l)));
    srow += span(d, l);
  }
  at::Tensor dgi = s2v_empty({L, B, T, D3}, xf.options());
  at::Tensor dgh = s2v_empty({L, B, T, D3}, xf.options());
  at::Tensor du0 = s2v_empty({B, T, D}, xf.options());
  if (x.is_cuda()) {
#ifdef S2V_WITH_CUDA
    const int rc = backward_cuda(d, gi.data_ptr<float>(), gh.data_ptr<float>(),
                                 u.data_ptr<float>(), histf.data_ptr<float>(),
                                 w_ih_f.data_ptr<float>(), w_hh_f.data_ptr<float>(),
                                 dy.data_ptr<float>(), dhist.data_ptr<float>(),
                                 dgi.data_ptr<float>(), dgh.data_ptr<float>(),
                                 du0.data_ptr<float>(), c10::cuda::getCurrentCUDAStream().stream());
    S2V_CHECK(rc == 0, "dilated_gru: CUDA backward failed: ", cuda_error_string(rc));
#else
    S2V_CHECK(false, "dilated_gru: s2v._C was built without CUDA");
#endif
  } else if (ct == at::kDouble) {
    backward_cpu(d, gi.data_ptr<double>(), gh.data_ptr<double>(), u.data_ptr<double>(),
                 histf.data_ptr<double>(), w_ih_f.data_ptr<double>(), w_hh_f.data_ptr<double>(),
                 dy.data_ptr<double>(), dhist.data_ptr<double>(), dgi.data_ptr<double>(),
                 dgh.data_ptr<double>(), du0.data_ptr<double>());
  } else {
    backward_cpu(d, gi.data_ptr<float>(), gh.data_ptr<float>(), u.data_ptr<float>(),
                 histf.data_ptr<float>(), w_ih_f.data_ptr<float>(), w_hh_f.data_ptr<float>(),
                 dy.data_ptr<float>(), dhist.data_ptr<float>(), dgi.data_ptr<float>(),
                 dgh.data_ptr<float>(), du0.data_ptr<float>());
  }
  const at::Tensor dgi_flat = dgi.view({L, B * T, D3});
  const at::Tensor dgh_flat = dgh.view({L, B * T, D3});
  const at::Tensor dw_ih = at::bmm(dgi_flat.transpose(1, 2), u.view({L, B * T, D}));
  const at::Tensor dw_hh = at::bmm(dgh_flat.transpose(1, 2), hprev_flat);
  const at::Tensor db_ih = dgi_flat.sum(1);
  const at::Tensor db_hh = dgh_flat.sum(1);
  std::vector<at::Tensor> parts;
  for (int l = 0; l < L; ++l) parts.push_back(dhist.narrow(1, seg_offset(d, l), span(d, l)));
  const at::Tensor dstate = at::cat(parts, 1);
  at::Tensor dx, dfb_w, dfb_b;
  if (d.feedback) {
    // lrelu' applied in du0's dtype: at::where with two scalars makes a float32
    // tensor, which rounded the slope 0.2 and cost float64 gradients 8 digits.
    const at::Tensor dpre = at::where(pre > 0, du0, du0 * 0.2);
    const at::Tensor dpre_flat = dpre.view({B * T, D});
    dx = at::mm(dpre_flat, fb_w->to(ct)).view({B, T, D});
    dfb_w = at::mm(dpre_flat.t(), xf.view({B * T, D}));
    dfb_b = dpre_flat.sum(0);
  } else {
    dx = du0;
    dfb_w = s2v_empty({0}, x.options());
    dfb_b = s2v_empty({0}, x.options());
  }
  const auto dt = x.scalar_type();
  return {dx.to(dt),    dstate.to(dt), dw_ih.to(dt), dw_hh.to(dt),
          db_ih.to(dt), db_hh.to(dt),  dfb_w.to(dt), dfb_b.to(dt)};
}

}  // namespace dgru
}  // namespace s2v
