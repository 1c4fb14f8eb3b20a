// Selective-scan kernels instantiated for __half inputs (float32 weights and state).
#include "kernels/cuda/selective_scan_bwd.cuh"

MAMBA_LRP_INSTANTIATE_SCAN(__half)
