// The regression corpus replay of the normal build (no libFuzzer): fuzz_replay TARGET PATH...
// runs the target on every file (directories: every file inside, sorted). It exits 0 when
// every input is accepted or refused with io::InputError; a finding aborts, as in fuzzing.
#include "tests/fuzz/fuzz_target.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <vector>

namespace mamba_lrp_fuzz {

std::map<std::string, Entry>& targets() {
  static std::map<std::string, Entry> t;
  return t;
}
bool register_target(const char* name, Entry entry) {
  targets()[name] = entry;
  return true;
}

}  // namespace mamba_lrp_fuzz

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  auto& targets = mamba_lrp_fuzz::targets();
  if (argc < 3 || !targets.count(argv[1])) {
    std::fprintf(stderr, "usage: %s TARGET FILE_OR_DIR...  (targets:", argv[0]);
    for (const auto& t : targets) std::fprintf(stderr, " %s", t.first.c_str());
    std::fprintf(stderr, ")\n");
    return 2;
  }
  std::vector<fs::path> files;
  for (int i = 2; i < argc; ++i) {
    if (fs::is_directory(argv[i])) {
      for (const auto& e : fs::directory_iterator(argv[i]))
        if (e.is_regular_file()) files.push_back(e.path());
    } else if (fs::is_regular_file(argv[i])) {
      files.push_back(argv[i]);
    } else {
      std::fprintf(stderr, "fuzz_replay: %s: no such file or directory\n", argv[i]);
      return 2;
    }
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    std::fprintf(stderr, "fuzz_replay: no input files\n");
    return 2;
  }
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    const std::vector<uint8_t> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::printf("%s: %s (%zu bytes)\n", argv[1], f.filename().c_str(), data.size());
    std::fflush(stdout);
    targets.at(argv[1])(data.data(), data.size());
  }
  std::printf("%s: %zu inputs, no finding\n", argv[1], files.size());
  return 0;
}
