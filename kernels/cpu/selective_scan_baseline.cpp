// The scan loops compiled for one instruction set (flags set in CMakeLists.txt).
#define MAMBA_LRP_CPU_ISA baseline
#include "kernels/cpu/selective_scan_loops.h"
