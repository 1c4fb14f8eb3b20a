// One fuzz target per file: FUZZ_TARGET(name) { ... } defines its entry. Built with clang's
// -fsanitize=fuzzer (MAMBA_LRP_FUZZ=ON) it is the target's LLVMFuzzerTestOneInput; in the
// normal build (replay_main.cpp) every target registers under its name, so that ctest
// replays the regression corpus through the very same code without libFuzzer.
//
// A target returns normally when the input is accepted or refused with io::InputError;
// anything else (another exception, a sanitizer report, a hang) is a finding: fail_on
// aborts so that libFuzzer and the replay both report it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "csrc/io/errors.h"

namespace mamba_lrp_fuzz {

using Entry = int (*)(const uint8_t*, size_t);
bool register_target(const char* name, Entry entry);

// Runs fn; io::InputError is an accepted outcome, any other exception aborts.
template <typename Fn>
void expect_input_error_only(Fn&& fn) {
  try {
    fn();
  } catch (const mamba_lrp::io::InputError&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz finding: exception other than InputError: %s\n", e.what());
    std::abort();
  }
}

// The input as a file (the loaders take paths): one per process, rewritten each time.
std::string write_input_file(const uint8_t* data, size_t size, const char* suffix);

}  // namespace mamba_lrp_fuzz

#ifdef MAMBA_LRP_FUZZ_REPLAY
#define FUZZ_TARGET(name)                                                                       \
  static int fuzz_##name(const uint8_t* data, size_t size);                                     \
  static const bool fuzz_registered_##name = mamba_lrp_fuzz::register_target(#name, fuzz_##name); \
  static int fuzz_##name(const uint8_t* data, size_t size)
#else
#define FUZZ_TARGET(name) extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
#endif
