// Helpers shared by the file-format tests: a scratch directory per test and raw file writing.
#pragma once
#include "csrc/io/errors.h"

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <string>
#include <unistd.h>

namespace io_test {

// A fresh directory under /tmp, removed at the end of the scope.
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/mamba_lrp_io_XXXXXX";
    char* p = mkdtemp(tmpl);
    REQUIRE(p != nullptr);
    path = p;
  }
  ~TempDir() { std::system(("rm -rf '" + path + "'").c_str()); }
  std::string file(const std::string& name) const { return path + "/" + name; }
};

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// The message of the mamba_lrp::io::InputError `fn` throws; fails the test if it throws nothing or
// something else.
inline std::string input_error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const mamba_lrp::io::InputError& e) {
    return e.what();
  } catch (const std::exception& e) {
    FAIL("expected mamba_lrp::io::InputError, got another exception: " << e.what());
  }
  FAIL("expected mamba_lrp::io::InputError, nothing was thrown");
  return "";
}

}  // namespace io_test
