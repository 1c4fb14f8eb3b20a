// tokenizer.json loading, then encoding and decoding. Input: the JSON, a NUL byte, the text
// (no NUL: a built-in small tokenizer and the whole input as text).
#include <cstring>

#include "csrc/io/tokenizer.h"
#include "tests/fuzz/fuzz_target.h"

namespace {
const char* kSmallTokenizer = R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "\u0120": 3, "\u0120a": 4},
  "merges": ["a b", "\u0120 a"], "unk_token": "a"}, "added_tokens": [{"id": 5, "content": "<s>", "special": true}],
  "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": true}})";
}

FUZZ_TARGET(tokenizer) {
  const char* begin = reinterpret_cast<const char*>(data);
  const char* nul = static_cast<const char*>(std::memchr(begin, 0, size));
  const std::string json = nul ? std::string(begin, nul) : std::string(kSmallTokenizer);
  const std::string text = nul ? std::string(nul + 1, begin + size) : std::string(begin, size);
  mamba_lrp_fuzz::expect_input_error_only([&] {
    const auto t = mamba_lrp::io::BpeTokenizer::from_json_string(json, "tokenizer.json");
    const std::vector<int64_t> ids = t.encode(text);
    t.decode(ids);
    for (int64_t id : ids) t.token_string(id);
  });
  return 0;
}
