#include "csrc/ops/selective_scan_common.h"

#include <tuple>


namespace mamba_lrp {
namespace ops {

namespace {

// Copy if the last dimension is not contiguous (the kernels read it with stride 1).
at::Tensor last_dim_contiguous(const at::Tensor& t) {
  return (t.dim() == 0 || t.stride(-1) == 1 || t.size(-1) == 1) ? t : t.contiguous();
}

// The weights A, D, delta_bias: float64 with float64 inputs, float32 otherwise (float16 and
// bfloat16 inputs are computed in float32 with float32 weights, as mamba_ssm does).
at::ScalarType weight_dtype(at::ScalarType input_dtype) {
  return input_dtype == at::kDouble ? at::kDouble : at::kFloat;
}

void check_weight_dtype(const char* name, const at::Tensor& t, at::ScalarType input_dtype) {
  const at::ScalarType expected = weight_dtype(input_dtype);
  TORCH_CHECK(t.scalar_type() == expected, "selective_scan: ", name, " must have dtype ", expected, " (the weights' dtype for ",
              input_dtype, " inputs), got ", t.scalar_type());
}

}  // namespace

void check_real_scan_inputs(const at::Tensor& u, const at::Tensor& A, const at::Tensor& B, const at::Tensor& C) {
  for (const auto& [name, t] : {std::pair<const char*, const at::Tensor&>{"u", u}, {"A", A}, {"B", B}, {"C", C}}) {
    TORCH_CHECK(!t.is_complex(), "selective_scan: complex ", name, " (", t.scalar_type(),
                ") is not supported: the scan is real-valued (no S4D-style complex A, B, C); pass real tensors");
  }
}

ScanKernelForms scan_inputs_for_kernels(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                                        const at::Tensor& B, const at::Tensor& C,
                                        const c10::optional<at::Tensor>& z) {
  check_real_scan_inputs(u, A, B, C);
  ScanKernelForms f{u, delta, B, C, z, u.scalar_type()};
  const bool b_const = B.dim() == 2, c_const = C.dim() == 2;
  if (!b_const && !c_const) return f;
  TORCH_CHECK(u.dim() == 3, "selective_scan: u must have shape (batch, dim, seqlen), got ", u.sizes());
  const int64_t dim = u.size(1);
  TORCH_CHECK(A.dim() == 2, "selective_scan: A must have shape (dim, dstate), got ", A.sizes());
  const int64_t dstate = A.size(1);
  const at::ScalarType w_type = weight_dtype(u.scalar_type());
  bool promote = false;  // a float32 constant B/C next to float16/bfloat16 inputs
  for (const auto& [name, t, constant] : {std::tuple<const char*, const at::Tensor&, bool>{"B", B, b_const},
                                           {"C", C, c_const}}) {
    if (!constant) continue;
    TORCH_CHECK(t.size(0) == dim && t.size(1) == dstate, "selective_scan: a constant ", name,
                " must have shape (dim, dstate) = (", dim, ", ", dstate, ") (from u and A), got ", t.sizes());
    TORCH_CHECK(t.device() == u.device(), "selective_scan: ", name, " is on ", t.device(), " but u is on ",
                u.device(), "; all inputs must be on one device");
    TORCH_CHECK(t.scalar_type() == u.scalar_type() || t.scalar_type() == w_type, "selective_scan: a constant ", name,
                " must have u's dtype (", u.scalar_type(), ") or the weights' (", w_type, "), got ", t.scalar_type());
    promote = promote || t.scalar_type() != u.scalar_type();
  }
  const at::ScalarType compute = promote ? w_type : u.scalar_type();
  auto in_compute = [&](const at::Tensor& t) { return t.scalar_type() == compute ? t : t.to(compute); };
  if (promote) {
    f.u = in_compute(u);
    f.delta = in_compute(delta);
    if (z) f.z = in_compute(*z);
  }
  f.B = in_compute(B);
  f.C = in_compute(C);
  return f;
}

ScanInputs check_scan_inputs(ScanBackend backend, const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                             const at::Tensor& B, const at::Tensor& C, const c10::optional<at::Tensor>& D,
                             const c10::optional<at::Tensor>& z, const c10::optional<at::Tensor>& delta_bias,
                             bool delta_softplus) {
  check_real_scan_inputs(u, A, B, C);
  TORCH_CHECK(u.dim() == 3, "selective_scan: u must have shape (batch, dim, seqlen), got ", u.sizes());
  const int64_t batch = u.size(0), dim = u.size(1), seqlen = u.size(2);
  TORCH_CHECK(delta.sizes() == u.sizes(), "selective_scan: delta must have the shape of u ", u.sizes(), ", got ",
              delta.sizes());
  TORCH_CHECK(A.dim() == 2 && A.size(0) == dim,
              "selective_scan: A must have shape (dim, dstate) with dim = ", dim, ", got ", A.sizes());
  const int64_t dstate = A.size(1);
  TORCH_CHECK(dstate >= 1 && dstate <= kernels::kMaxDState, "selective_scan: A's dstate (its last dimension) must be in [1, ",
              kernels::kMaxDState, "], got ", dstate);
  for (const auto& [name, t] : {std::pair<const char*, const at::Tensor&>{"B", B}, {"C", C}}) {
    if (t.dim() == 2) {  // constant in time
      TORCH_CHECK(t.size(0) == dim && t.size(1) == dstate, "selective_scan: a constant ", name,
                  " must have shape (dim, dstate) = (", dim, ", ", dstate, ") (from u and A), got ", t.sizes());
      continue;
    }
    TORCH_CHECK(t.dim() == 3 || t.dim() == 4, "selective_scan: ", name,
                " must have shape (batch, dstate, seqlen), (batch, groups, dstate, seqlen) or (dim, dstate), got ",
                t.sizes());
    TORCH_CHECK(t.size(0) == batch && t.size(-2) == dstate && t.size(-1) == seqlen, "selective_scan: ", name,
                " must have batch ", batch, ", dstate ", dstate, " and seqlen ", seqlen, " (from u and A), got ",
                t.sizes());
  }
  // Groups: 1 for (batch, dstate, seqlen). A constant (dim, dstate) has a row per channel and
  // goes with any group count of the other (dim groups when both are constant).
  const bool b_const = B.dim() == 2, c_const = C.dim() == 2;
  auto group_count = [](const at::Tensor& t) { return t.dim() == 3 ? int64_t(1) : t.size(1); };
  TORCH_CHECK(b_const || c_const || (B.dim() == C.dim() && group_count(B) == group_count(C)),
              "selective_scan: B and C must have the same number of groups, got B ", B.sizes(), " and C ",
              C.sizes());
  int64_t groups = b_const && c_const ? dim : group_count(b_const ? C : B);
  TORCH_CHECK(groups >= 1 && dim % groups == 0, "selective_scan: the number of groups in B and C (", groups,
              ") must divide dim (", dim, ")");
  if (z) {
    TORCH_CHECK(z->sizes() == u.sizes(), "selective_scan: z must have the shape of u ", u.sizes(), ", got ",
                z->sizes());
  }
  for (const auto& [name, t] :
       {std::pair<const char*, const c10::optional<at::Tensor>&>{"D", D}, {"delta_bias", delta_bias}}) {
    if (t) {
      TORCH_CHECK(t->dim() == 1 && t->size(0) == dim, "selective_scan: ", name, " must have shape (dim) = (", dim,
                  "), got ", t->sizes());
    }
  }

  // Devices: everything on u's device.
  auto check_device = [&](const char* name, const at::Tensor& t) {
    TORCH_CHECK(t.device() == u.device(), "selective_scan: ", name, " is on ", t.device(), " but u is on ", u.device(),
                "; all inputs must be on one device");
  };
  check_device("delta", delta);
  check_device("A", A);
  check_device("B", B);
  check_device("C", C);
  if (D) check_device("D", *D);
  if (z) check_device("z", *z);
  if (delta_bias) check_device("delta_bias", *delta_bias);

  // Dtypes. u, delta, z, B, C in one dtype: float32, float16 or bfloat16 (both backends;
  // computed in float32) or float64 (CPU only). A, D, delta_bias in float32, or float64 with
  // float64 inputs.
  const at::ScalarType in_type = u.scalar_type();
  if (backend == ScanBackend::kCPU) {
    TORCH_CHECK(in_type == at::kFloat || in_type == at::kDouble || in_type == at::kHalf || in_type == at::kBFloat16,
                "selective_scan: on the CPU u must be float32, float64, float16 or bfloat16, got ", in_type);
  } else {
    TORCH_CHECK(in_type == at::kFloat || in_type == at::kHalf || in_type == at::kBFloat16,
                "selective_scan: on CUDA u must be float32, float16 or bfloat16, got ", in_type);
  }
  auto check_input_dtype = [&](const char* name, const at::Tensor& t) {
    TORCH_CHECK(t.scalar_type() == in_type, "selective_scan: ", name, " must have the dtype of u (", in_type, "), got ",
                t.scalar_type());
  };
  check_input_dtype("delta", delta);
  check_input_dtype("B", B);
  check_input_dtype("C", C);
  if (z) check_input_dtype("z", *z);
  check_weight_dtype("A", A, in_type);
  if (D) check_weight_dtype("D", *D, in_type);
  if (delta_bias) check_weight_dtype("delta_bias", *delta_bias, in_type);

  ScanInputs in;
  in.u = last_dim_contiguous(u);
  in.delta = last_dim_contiguous(delta);
  in.A = A.contiguous();
  // A constant (dim, dstate) as (batch, dim, dstate, seqlen): for the CPU kernels a stride-0
  // view over batch and time (time stride 0); for CUDA's, whose B and C have time stride 1
  // and one group count, copied along seqlen, with the other then repeated to dim groups
  // (channel d reads group d / (dim / groups)). The gradients go back in results().
  const bool copy_constant = backend == ScanBackend::kCUDA && (b_const || c_const);
  auto bc_form = [&](const at::Tensor& t) {
    if (t.dim() == 2) {
      at::Tensor steps = t.unsqueeze(-1).expand({dim, dstate, seqlen});
      if (copy_constant) steps = steps.contiguous();
      return steps.unsqueeze(0).expand({batch, dim, dstate, seqlen});
    }
    at::Tensor t4 = last_dim_contiguous(t.dim() == 3 ? t.unsqueeze(1) : t);
    if (!copy_constant || t4.size(1) == dim) return t4;
    const int64_t g = t4.size(1);
    return t4.unsqueeze(2).expand({batch, g, dim / g, dstate, seqlen}).reshape({batch, dim, dstate, seqlen});
  };
  in.B = bc_form(B);
  in.C = bc_form(C);
  if (copy_constant) groups = dim;
  in.B_constant = b_const && !copy_constant;
  in.C_constant = c_const && !copy_constant;
  if (D) in.D = D->contiguous();
  if (z) in.z = last_dim_contiguous(*z);
  if (delta_bias) in.delta_bias = delta_bias->contiguous();
  in.delta_softplus = delta_softplus;
  in.batch = batch;
  in.dim = dim;
  in.seqlen = seqlen;
  in.dstate = dstate;
  in.groups = groups;
  return in;
}

kernels::ScanRule parse_scan_rule(c10::string_view rule) {
  if (rule == "exact") return kernels::ScanRule::kExact;
  if (rule == "mambalrp") return kernels::ScanRule::kMambaLRP;
  TORCH_CHECK(false, "selective_scan: rule must be \"exact\" or \"mambalrp\", got \"", std::string(rule), "\"");
}

namespace {
kernels::ScanDType scan_dtype(at::ScalarType t) {
  switch (t) {
    case at::kDouble: return kernels::ScanDType::kFloat64;
    case at::kHalf: return kernels::ScanDType::kFloat16;
    case at::kBFloat16: return kernels::ScanDType::kBFloat16;
    default: return kernels::ScanDType::kFloat32;
  }
}
}  // namespace

void fill_scan_params(const ScanInputs& in, kernels::SelectiveScanParams& p) {
  p.batch = in.batch;
  p.dim = in.dim;
  p.seqlen = in.seqlen;
  p.dstate = in.dstate;
  p.n_groups = in.groups;
  p.input_type = scan_dtype(in.u.scalar_type());
  p.weight_type = scan_dtype(in.A.scalar_type());
  p.delta_softplus = in.delta_softplus;
  p.u = in.u.data_ptr();
  p.u_batch_stride = in.u.stride(0);
  p.u_dim_stride = in.u.stride(1);
  p.delta = in.delta.data_ptr();
  p.delta_batch_stride = in.delta.stride(0);
  p.delta_dim_stride = in.delta.stride(1);
  if (in.z) {
    p.z = in.z->data_ptr();
    p.z_batch_stride = in.z->stride(0);
    p.z_dim_stride = in.z->stride(1);
  }
  p.A = in.A.data_ptr();
  p.A_dim_stride = in.A.stride(0);
  p.A_dstate_stride = in.A.stride(1);
  p.B = in.B.data_ptr();
  p.B_batch_stride = in.B.stride(0);
  p.B_group_stride = in.B.stride(1);
  p.B_dstate_stride = in.B.stride(2);
  p.C = in.C.data_ptr();
  p.C_batch_stride = in.C.stride(0);
  p.C_group_stride = in.C.stride(1);
  p.C_dstate_stride = in.C.stride(2);
  p.B_time_stride = in.B_constant ? 0 : 1;
  p.C_time_stride = in.C_constant ? 0 : 1;
  p.D = in.D ? in.D->data_ptr() : nullptr;
  p.delta_bias = in.delta_bias ? in.delta_bias->data_ptr() : nullptr;
}

ScanForwardOutputs allocate_forward_outputs(const ScanInputs& in, bool return_last_state, at::ScalarType state_dtype,
                                            kernels::SelectiveScanParams& p, bool with_out_y) {
  ScanForwardOutputs o;
  o.out = at::empty({in.batch, in.dim, in.seqlen}, in.u.options());  // (B, D, L)
  p.out = o.out.data_ptr();
  p.out_batch_stride = o.out.stride(0);
  p.out_dim_stride = o.out.stride(1);
  if (in.z && with_out_y) {
    o.out_y = at::empty({in.batch, in.dim, in.seqlen}, in.u.options());  // (B, D, L) pre-gate y
    p.out_y = o.out_y->data_ptr();
    p.out_y_batch_stride = o.out_y->stride(0);
    p.out_y_dim_stride = o.out_y->stride(1);
  }
  if (return_last_state) {
    o.last_state = at::empty({in.batch, in.dim, in.dstate}, in.u.options().dtype(state_dtype));  // (B, D, N)
    p.last_state = o.last_state->data_ptr();
  }
  return o;
}

namespace {
void check_on_u_device(const char* name, const at::Tensor& t, const at::Tensor& u) {
  TORCH_CHECK(t.device() == u.device(), "selective_scan backward: ", name, " is on ", t.device(), " but u is on ",
              u.device(), "; all inputs must be on one device");
}
}  // namespace

ScanBackwardTensors prepare_backward(const ScanInputs& in, kernels::ScanRule rule, const at::Tensor& grad_out,
                                     const c10::optional<at::Tensor>& grad_last_state,
                                     const c10::optional<at::Tensor>& out_y, at::ScalarType state_dtype,
                                     kernels::SelectiveScanBwdParams& p, const at::Tensor& du_into,
                                     const at::Tensor& dz_into, bool needs_out_y) {
  ScanBackwardTensors t;
  p.rule = rule;
  check_on_u_device("grad_out", grad_out, in.u);
  TORCH_CHECK(grad_out.sizes() == in.u.sizes() && grad_out.scalar_type() == in.u.scalar_type(),
              "selective_scan backward: grad_out must match u (shape ", in.u.sizes(), ", dtype ",
              in.u.scalar_type(), "), got ", grad_out.sizes(), " ", grad_out.scalar_type());
  t.grad_out = grad_out.contiguous();
  p.grad_out = t.grad_out.data_ptr();
  p.grad_out_batch_stride = t.grad_out.stride(0);
  p.grad_out_dim_stride = t.grad_out.stride(1);
  if (grad_last_state && grad_last_state->defined()) {
    check_on_u_device("grad_last_state", *grad_last_state, in.u);
    TORCH_CHECK(grad_last_state->sizes() == at::IntArrayRef({in.batch, in.dim, in.dstate}),
                "selective_scan backward: grad_last_state must have shape (batch, dim, dstate), got ",
                grad_last_state->sizes());
    t.grad_last_state = grad_last_state->to(state_dtype).contiguous();
    p.grad_last_state = t.grad_last_state.data_ptr();
  }
  if (in.z && needs_out_y) {
    TORCH_CHECK(out_y && out_y->defined() && out_y->sizes() == in.u.sizes(),
                "selective_scan backward: out_y (the pre-gate output, shape of u) is needed when z is given");
    check_on_u_device("out_y", *out_y, in.u);
    t.out_y = out_y->to(in.u.scalar_type()).contiguous();
    p.out_y = t.out_y.data_ptr();
    p.out_y_batch_stride = t.out_y.stride(0);
    p.out_y_dim_stride = t.out_y.stride(1);
  }

  // du_into / dz_into: the caller's own dense tensors (the kernel's inputs it may overwrite).
  auto dense_like = [](const at::Tensor& into, const at::Tensor& like) {
    if (!into.defined()) return at::empty_like(like, at::MemoryFormat::Contiguous);
    TORCH_INTERNAL_ASSERT(into.is_contiguous() && into.sizes() == like.sizes() &&
                          into.scalar_type() == like.scalar_type());
    return into;
  };
  t.du = dense_like(du_into, in.u);
  p.du = t.du.data_ptr();
  p.du_batch_stride = t.du.stride(0);
  p.du_dim_stride = t.du.stride(1);
  if (in.z) {
    t.dz = dense_like(dz_into, *in.z);
    p.dz = t.dz->data_ptr();
    p.dz_batch_stride = t.dz->stride(0);
    p.dz_dim_stride = t.dz->stride(1);
  }
  if (rule == kernels::ScanRule::kExact) {
    t.ddelta = at::empty_like(in.delta, at::MemoryFormat::Contiguous);
    p.ddelta = t.ddelta->data_ptr();
    p.ddelta_batch_stride = t.ddelta->stride(0);
    p.ddelta_dim_stride = t.ddelta->stride(1);
    t.dA = at::empty({in.dim, in.dstate}, in.A.options());  // (D, N) dense, the weights' dtype
    p.dA = t.dA->data_ptr();
    // (B, G, N, L) dense, or (D, N) for a constant one whose kernel sums over batch and time
    auto bc_grad = [&](const at::Tensor& t, bool constant) {
      return constant ? at::empty({in.dim, in.dstate}, t.options()) : at::empty(t.sizes(), t.options());
    };
    t.dB = bc_grad(in.B, in.B_constant);
    p.dB = t.dB->data_ptr();
    t.dC = bc_grad(in.C, in.C_constant);
    p.dC = t.dC->data_ptr();
    if (in.D) {
      t.dD = at::empty({in.dim}, in.D->options());
      p.dD = t.dD->data_ptr();
    }
    if (in.delta_bias) {
      t.ddelta_bias = at::empty({in.dim}, in.delta_bias->options());
      p.ddelta_bias = t.ddelta_bias->data_ptr();
    }
  }
  return t;
}

ScanGradients ScanBackwardTensors::results(const at::Tensor& B, const at::Tensor& C) const {
  // g: (batch, groups', dstate, seqlen) as the kernel wrote it, or (dim, dstate) already.
  auto to_caller = [](const c10::optional<at::Tensor>& g, const at::Tensor& caller) -> c10::optional<at::Tensor> {
    if (!g || g->sizes() == caller.sizes()) return g;
    if (caller.dim() == 2) return g->sum(at::IntArrayRef{0, 3});  // a constant one copied along seqlen
    const int64_t groups = caller.dim() == 3 ? 1 : caller.size(1);
    at::Tensor t = *g;
    if (t.size(1) != groups)  // repeated to dim groups next to a constant one: sum the repeats
      t = t.view({t.size(0), groups, t.size(1) / groups, t.size(2), t.size(3)}).sum(2);
    return caller.dim() == 3 ? t.squeeze(1) : t;
  };
  return {du, ddelta, dA, to_caller(dB, B), to_caller(dC, C), dD, dz, ddelta_bias};
}

}  // namespace ops
}  // namespace mamba_lrp
