// The executables' BLAS thread count (mamba-lrp, the benches), not applied by the library.
#pragma once

namespace mamba_lrp {

// OpenBLAS's threads = libtorch's intra-op threads (by default one per physical core), unless
// the user chose them (OPENBLAS_NUM_THREADS, GOTO_NUM_THREADS or OMP_NUM_THREADS set): Debian's
// pthread OpenBLAS starts one per logical CPU, whose workers yield-spin between products on
// the sibling hyperthread of the thread doing the rest of the explanation. Measured on the
// 2-hyperthread machine of README's Performance (issue 20), interleaved in one process:
// 1 thread 8-13 % faster than 2 at L = 128 and 512, with less CPU time. Returns the count
// set, or 0 where nothing was changed (set by the user, or the BLAS is not OpenBLAS: found
// with dlsym, so any BLAS links). Call it first thing in main().
int match_blas_threads_to_intra_op();

}  // namespace mamba_lrp
