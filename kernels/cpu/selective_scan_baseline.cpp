// The scan loops compiled for one instruction set (flags set in CMakeLists.txt).
#define MAMBA_LRP_CPU_ISA baseline
#include "kernels/cpu/selective_scan_fwd_loops.h"
#include "kernels/cpu/selective_scan_bwd_loops.h"
