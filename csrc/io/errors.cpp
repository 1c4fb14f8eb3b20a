#include "csrc/io/errors.h"

#include "csrc/io/utf8.h"

namespace mamba_lrp {
namespace io {

std::string printable_message(const std::string& s) {
  static const char* kHex = "0123456789abcdef";
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    uint32_t cp = 0;
    const size_t n = utf8::next_utf8(s, i, &cp);
    if (n == 0 || c < 0x20 || c == 0x7F || (cp >= 0x80 && cp <= 0x9F)) {  // C0, DEL, C1, invalid
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
      i += 1;
    } else {
      out.append(s, i, n);
      i += n;
    }
  }
  return out;
}

}  // namespace io
}  // namespace mamba_lrp
