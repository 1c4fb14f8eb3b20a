// The SSD scan's entry points: check the sizes, pick the instruction set the selective scan
// runs with (selected_isa(), MAMBA_LRP_CPU_ISA may force a lower one) and run the tasks in
// parallel: (batch, head) pairs per step, (batch, group, block of heads) chunked. Compiled
// for the baseline instruction set.
#include "kernels/cpu/ssd_scan.h"

#include <cstring>
#include <stdexcept>
#include <string>

#include "kernels/cpu/selective_scan_cpu.h"

namespace mamba_lrp {
namespace kernels {
namespace cpu {
#define MAMBA_LRP_SSD_ISA_DECL(isa)                                                   \
  namespace isa {                                                                     \
  void ssd_rows_f(const SsdScanParams<float>& p, int64_t begin, int64_t end);         \
  void ssd_rows_d(const SsdScanParams<double>& p, int64_t begin, int64_t end);        \
  }
MAMBA_LRP_SSD_ISA_DECL(baseline)
MAMBA_LRP_SSD_ISA_DECL(avx2)
MAMBA_LRP_SSD_ISA_DECL(avx512)
#undef MAMBA_LRP_SSD_ISA_DECL

namespace {

template <typename T>
void check_sizes(const SsdScanParams<T>& p) {
  auto fail = [](const std::string& what) { throw std::invalid_argument("ssd_scan CPU kernel: " + what); };
  if (p.batch < 0 || p.heads < 1 || p.head_dim < 1 || p.seqlen < 1 || p.dstate < 1 || p.groups < 1)
    fail("sizes must be positive");
  if (p.heads % p.groups != 0) fail("groups must divide heads");
  if (p.threads < 1) fail("threads must be positive");
  if (p.chunk < 1 || p.chunk > kMaxSsdChunk) fail("chunk must be in [1, " + std::to_string(kMaxSsdChunk) + "]");
  if (!p.x || !p.delta || !p.A || !p.B || !p.C || !p.out) fail("missing input or output");
  if (p.transpose && p.last_state) fail("the transpose returns no last state");
  if (!p.transpose && p.init_state) fail("the forward starts from a zero state");
}

template <typename T, typename Rows>
void run(const SsdScanParams<T>& p, ParallelFor parallel_for, Rows baseline_rows, Rows avx2_rows, Rows avx512_rows) {
  check_sizes(p);
  const char* isa = selected_isa();
  const Rows rows = std::strcmp(isa, "avx512") == 0 ? avx512_rows : std::strcmp(isa, "avx2") == 0 ? avx2_rows
                                                                                                  : baseline_rows;
  const int64_t tasks = p.chunk >= 2 ? p.batch * p.groups * ssd_chunked_head_blocks(p) : p.batch * p.heads;
  run_parallel(parallel_for, tasks, 1, [&](int64_t begin, int64_t end) { rows(p, begin, end); });
}

}  // namespace

void ssd_scan(const SsdScanParams<float>& p, ParallelFor pf) {
  run(p, pf, &baseline::ssd_rows_f, &avx2::ssd_rows_f, &avx512::ssd_rows_f);
}
void ssd_scan(const SsdScanParams<double>& p, ParallelFor pf) {
  run(p, pf, &baseline::ssd_rows_d, &avx2::ssd_rows_d, &avx512::ssd_rows_d);
}

}  // namespace cpu
}  // namespace kernels
}  // namespace mamba_lrp
