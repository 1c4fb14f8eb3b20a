// CUDA selective scan: checks the parameters and dispatches on the input dtype to the
// launch templates instantiated in selective_scan_{fp32,fp16,bf16}.cu.
#include <stdexcept>
#include <string>

#include "kernels/cuda/selective_scan_common.cuh"
#include "kernels/cuda/selective_scan_cuda.h"

namespace mamba_lrp {
namespace kernels {
namespace cuda {
namespace {

void fail(const std::string& what) { throw std::invalid_argument("selective_scan CUDA kernel: " + what); }

void check_supported(const SelectiveScanParams& p) {
  if (p.input_type != ScanDType::kFloat32 && p.input_type != ScanDType::kFloat16 &&
      p.input_type != ScanDType::kBFloat16)
    fail("inputs must be float32, float16 or bfloat16");
  if (p.weight_type != ScanDType::kFloat32) fail("A, D and delta_bias must be float32");
  if (p.dstate < 1 || p.dstate > kMaxDState) fail("dstate must be in [1, " + std::to_string(kMaxDState) + "]");
  if (p.n_groups < 1 || p.dim % p.n_groups != 0) fail("the number of groups must divide dim");
  if (p.batch < 0 || p.dim < 0 || p.seqlen < 0) fail("negative size");
  if (!p.u || !p.delta || !p.A || !p.B || !p.C) {
    if (p.batch * p.dim * p.seqlen > 0) fail("u, delta, A, B and C are required");
  }
}

// Nothing to scan: batch, dim or seqlen is 0. A zero-size tensor may have a null data
// pointer, so the launchers test this before any pointer.
bool empty(const SelectiveScanParams& p) { return p.batch == 0 || p.dim == 0 || p.seqlen == 0; }

size_t input_element_bytes(ScanDType t) {
  switch (t) {
    case ScanDType::kFloat16:
    case ScanDType::kBFloat16: return 2;
    case ScanDType::kFloat64: return 8;
    default: return 4;
  }
}

// Zeros `count` elements of `bytes_each` at ptr (queued on stream); nothing when ptr is
// null or count is 0. `err` carries the first error through a chain of calls.
void zero_fill(cudaError_t& err, void* ptr, int64_t count, size_t bytes_each, cudaStream_t stream) {
  if (err != cudaSuccess || !ptr || count <= 0) return;
  err = cudaMemsetAsync(ptr, 0, static_cast<size_t>(count) * bytes_each, stream);
}

}  // namespace

cudaError_t selective_scan_fwd(const SelectiveScanParams& p, cudaStream_t stream) {
  check_supported(p);
  if (empty(p)) {
    // out and out_y have no element; the last state is zero (nothing entered it).
    cudaError_t err = cudaSuccess;
    zero_fill(err, p.last_state, p.batch * p.dim * p.dstate, sizeof(float), stream);
    return err;
  }
  if (!p.out) fail("out is required");
  switch (p.input_type) {
    case ScanDType::kFloat16: return run_fwd<__half>(p, stream);
    case ScanDType::kBFloat16: return run_fwd<__nv_bfloat16>(p, stream);
    default: return run_fwd<float>(p, stream);
  }
}

size_t selective_scan_bwd_workspace_bytes(const SelectiveScanBwdParams& p) {
  check_supported(p);
  if (empty(p)) return 0;
  return bwd_workspace_layout(p).total;
}

cudaError_t selective_scan_bwd(const SelectiveScanBwdParams& p, void* workspace, cudaStream_t stream) {
  check_supported(p);
  if (empty(p)) {
    // du, dz and ddelta have no element. Every gradient that has one is a sum over no
    // terms: dA (dim, dstate), dD and ddelta_bias (dim), and dB, dC (batch, groups,
    // dstate, seqlen), which have elements when only dim is 0.
    cudaError_t err = cudaSuccess;
    const int64_t bc_count = p.batch * p.n_groups * p.dstate * p.seqlen;
    zero_fill(err, p.dA, p.dim * p.dstate, sizeof(float), stream);
    zero_fill(err, p.dD, p.dim, sizeof(float), stream);
    zero_fill(err, p.ddelta_bias, p.dim, sizeof(float), stream);
    zero_fill(err, p.dB, bc_count, input_element_bytes(p.input_type), stream);
    zero_fill(err, p.dC, bc_count, input_element_bytes(p.input_type), stream);
    return err;
  }
  if (!p.grad_out || !p.du) fail("grad_out and du are required");
  if (p.z && (!p.out_y || !p.dz)) fail("with z, the pre-gate output out_y and dz are required");
  if (p.rule == ScanRule::kExact) {
    if (!p.dA || !p.dB || !p.dC) fail("the exact rule needs dA, dB and dC");
    if (!workspace && bwd_workspace_layout(p).total > 0) fail("the exact rule needs its workspace");
  }
  switch (p.input_type) {
    case ScanDType::kFloat16: return run_bwd<__half>(p, workspace, stream);
    case ScanDType::kBFloat16: return run_bwd<__nv_bfloat16>(p, workspace, stream);
    default: return run_bwd<float>(p, workspace, stream);
  }
}

}  // namespace cuda
}  // namespace kernels
}  // namespace mamba_lrp
