// Selective-scan kernels instantiated for float inputs (float32 weights and state).
#include "kernels/cuda/selective_scan_bwd.cuh"

MAMBA_LRP_INSTANTIATE_SCAN(float)
