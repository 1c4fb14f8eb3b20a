// What every fuzz target shares: the input written to a file.
#include "tests/fuzz/fuzz_target.h"

#include <unistd.h>

#include <fstream>

namespace mamba_lrp_fuzz {

std::string write_input_file(const uint8_t* data, size_t size, const char* suffix) {
  const char* dir = std::getenv("TMPDIR");
  const std::string path = std::string(dir && *dir ? dir : "/tmp") + "/mamba_lrp_fuzz_" + std::to_string(getpid()) + suffix;
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  f.close();
  if (!f) {
    std::fprintf(stderr, "fuzz: cannot write %s\n", path.c_str());
    std::abort();
  }
  return path;
}

}  // namespace mamba_lrp_fuzz
