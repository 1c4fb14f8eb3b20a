// The SSD scan loops compiled for one instruction set (flags set in CMakeLists.txt).
#define MAMBA_LRP_CPU_ISA avx512
#include "kernels/cpu/ssd_scan_loops.h"

namespace mamba_lrp {
namespace kernels {
namespace cpu {
namespace avx512 {
void ssd_rows_f(const SsdScanParams<float>& p, int64_t begin, int64_t end) { ssd_rows(p, begin, end); }
void ssd_rows_d(const SsdScanParams<double>& p, int64_t begin, int64_t end) { ssd_rows(p, begin, end); }
}  // namespace avx512
}  // namespace cpu
}  // namespace kernels
}  // namespace mamba_lrp
