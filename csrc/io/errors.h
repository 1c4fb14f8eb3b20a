// Error types shared by the loaders, the explain API and the command line.
#pragma once
#include <c10/util/ArrayRef.h>

#include <sstream>
#include <stdexcept>
#include <string>

namespace mamba_lrp {
namespace io {

// Bad input from the user (a file, an argument, a checkpoint): the CLI prints the message
// on one line and exits with status 2. Messages name the file / argument and what was
// expected, e.g. "model.safetensors: tensor 'backbone.norm_f.weight': expected shape [48], got [47]".
// The message is made printable on construction (printable_message below), so that bytes
// quoted from a file (a tensor name, a JSON parser's "last read" token) cannot put control
// characters, a second line or invalid UTF-8 on the user's terminal: control characters
// (C0 with newlines, C1), DEL and bytes that are not well-formed UTF-8 become "\\xNN", the
// rest (printable ASCII, valid UTF-8) is kept as it is. (errors.cpp)
std::string printable_message(const std::string& s);
struct InputError : std::runtime_error {
  explicit InputError(const std::string& what) : std::runtime_error(printable_message(what)) {}
};

// A shape as messages print it, "[2, 3]": of a tensor (anything with sizes()), or of sizes.
inline std::string shape_str(c10::IntArrayRef sizes) {
  std::ostringstream s;
  s << sizes;
  return s.str();
}
template <typename TensorLike>
std::string shape_str(const TensorLike& t) {
  return shape_str(t.sizes());
}

// The first line of a library's error text: enough to name the problem on one line.
inline std::string first_line(const std::string& s) {
  auto pos = s.find('\n');
  return pos == std::string::npos ? s : s.substr(0, pos);
}

}  // namespace io
}  // namespace mamba_lrp
