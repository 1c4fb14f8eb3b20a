// Regression tests for the hostile files of issue 14 (checkpoints, safetensors, tokenizers,
// error messages): each file is written here, byte by byte, and must be refused quickly with
// an InputError naming the file and what is wrong, with no large allocation on the way.
#include "csrc/io/checkpoint.h"
#include "csrc/io/errors.h"
#include "csrc/io/safetensors.h"
#include "csrc/io/tokenizer.h"

#include "io_test_util.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <sys/resource.h>

#include <cstdint>
#include <cstring>
#include <string>

using Catch::Matchers::Contains;
using mamba_lrp::io::BpeTokenizer;
using mamba_lrp::io::load_state_dict;
using mamba_lrp::io::SafetensorsFile;
using namespace io_test;
using namespace std::string_literals;  // "..."s keeps embedded NUL bytes

namespace {

// Pickle opcodes (protocol 2), enough to write torch.save's legacy format by hand.
std::string le(uint64_t v, int bytes) {
  std::string out;
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
  return out;
}
std::string p_str(const std::string& s) { return "X" + le(s.size(), 4) + s; }      // BINUNICODE
std::string p_int(int32_t v) { return "J" + le(static_cast<uint32_t>(v), 4); }      // BININT
std::string p_global(const std::string& mod, const std::string& name) { return "c" + mod + "\n" + name + "\n"; }
const std::string kProto = "\x80\x02";

// A legacy torch.save file: {"w": tensor(storage of `count` floats, offset, size, stride)}.
std::string legacy_checkpoint(int64_t count, int32_t offset, const std::vector<int32_t>& size,
                              const std::vector<int32_t>& stride) {
  const std::string magic = kProto + "\x8a\x0a" + std::string("\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19", 10) + ".";
  const std::string protocol = kProto + p_int(1001) + ".";
  const std::string sys_info = kProto + "}.";
  auto tuple = [](const std::vector<int32_t>& xs) {
    std::string t = "(";
    for (int32_t x : xs) t += p_int(x);
    return t + "t";
  };
  const std::string storage = "(" + p_str("storage") + p_global("torch", "FloatStorage") + p_str("0") + p_str("cpu") +
                              p_int(static_cast<int32_t>(count)) + "tQ";
  const std::string tensor = p_global("torch._utils", "_rebuild_tensor_v2") + "(" + storage + p_int(offset) +
                             tuple(size) + tuple(stride) + "\x89" + "}" + "tR";
  const std::string object = kProto + "}(" + p_str("w") + tensor + "u.";
  const std::string keys = kProto + "(" + p_str("0") + "l.";
  std::string data = le(static_cast<uint64_t>(count), 8);
  for (int64_t i = 0; i < count; ++i) data += le(0x3f800000, 4);  // 1.0f
  return magic + protocol + sys_info + object + keys + data;
}

std::string st_file(const std::string& header, const std::string& data) { return le(header.size(), 8) + header + data; }

}  // namespace

TEST_CASE("hardening: a .pth view of one stored float with stride 0 and a huge size is refused", "[hardening]") {
  TempDir dir;
  const std::string p = dir.file("expand.pth");
  // Control: the same file with a view that fits loads, so the refusal below is about the view.
  write_bytes(p, legacy_checkpoint(4, 1, {3}, {1}));
  CHECK(load_state_dict(p, at::kFloat).at("w").numel() == 3);
  // One float viewed as [2^30] with stride 0: the element range check passes (every element
  // is element 0), the copy would be 4 GiB.
  write_bytes(p, legacy_checkpoint(1, 0, {1 << 30}, {0}));
  CHECK_THAT(input_error_of([&] { load_state_dict(p, at::kFloat); }),
             Contains("expand.pth") && Contains("tensor 'w'") && Contains("more than its storage holds"));
  // Overlapping strides: 4 floats seen as 3 x 3 with strides (1, 1).
  write_bytes(p, legacy_checkpoint(4, 0, {3, 3}, {1, 1}));
  CHECK_THAT(input_error_of([&] { load_state_dict(p, at::kFloat); }), Contains("more than its storage holds"));
}

TEST_CASE("hardening: self-referencing pickles are refused (cycles broken, nothing leaked)", "[hardening]") {
  TempDir dir;
  const std::string p = dir.file("cycle.pth");
  auto err = [&](const std::string& pickle) {
    write_bytes(p, kProto + pickle);
    return input_error_of([&] { load_state_dict(p, at::kFloat); });
  };
  // a list appended to itself (EMPTY_LIST, BINPUT 0, BINGET 0, APPEND)
  CHECK_THAT(err("]q\x00h\x00" "a."s), Contains("cycle.pth") && Contains("holds itself"));
  // an object whose BUILD state is itself (GLOBAL, EMPTY_TUPLE, REDUCE, DUP, BUILD)
  CHECK_THAT(err(p_global("argparse", "Namespace") + ")R2b."), Contains("holds itself"));
  // a cycle through a dict and a tuple, popped before STOP: unreachable from the result
  CHECK_THAT(err("}q\x00" "(K\x01h\x00\x85u0N."s), Contains("holds itself"));
}

TEST_CASE("hardening: safetensors offsets must tile the data section, as the reference requires", "[hardening]") {
  TempDir dir;
  const std::string p = dir.file("tiles.safetensors");
  const std::string data(16, '\0');
  auto header = [](int a0, int a1, int b0, int b1) {
    return R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [)" + std::to_string(a0) + ", " + std::to_string(a1) +
           R"(]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [)" + std::to_string(b0) + ", " +
           std::to_string(b1) + "]}}";
  };
  // in order, and listed out of order: both fine (the reference sorts by offset)
  write_bytes(p, st_file(header(0, 8, 8, 16), data));
  CHECK(SafetensorsFile::open(p).names().size() == 2);
  write_bytes(p, st_file(header(8, 16, 0, 8), data));
  CHECK(SafetensorsFile::open(p).names().size() == 2);
  // overlapping: both tensors on the same bytes
  write_bytes(p, st_file(header(0, 8, 0, 8), data));
  CHECK_THAT(input_error_of([&] { SafetensorsFile::open(p); }),
             Contains("tiles.safetensors") && Contains("overlap the previous tensor"));
  write_bytes(p, st_file(header(0, 8, 4, 12), data));
  CHECK_THAT(input_error_of([&] { SafetensorsFile::open(p); }), Contains("overlap"));
  // a gap, and bytes left over at the end
  write_bytes(p, st_file(header(0, 8, 12, 20), data + std::string(4, '\0')));
  CHECK_THAT(input_error_of([&] { SafetensorsFile::open(p); }), Contains("gap"));
  write_bytes(p, st_file(header(0, 8, 8, 16), data + std::string(4, '\0')));
  CHECK_THAT(input_error_of([&] { SafetensorsFile::open(p); }), Contains("cover 16 bytes") && Contains("holds 20"));
}

TEST_CASE("hardening: error messages quote file bytes escaped, on one line", "[hardening]") {
  TempDir dir;
  const std::string p = dir.file("raw.safetensors");
  // a raw 0xff byte where JSON is expected: the parser's message quotes it
  write_bytes(p, st_file(std::string("{\"a\": \xff}", 8), ""));
  const std::string e1 = input_error_of([&] { SafetensorsFile::open(p); });
  CHECK(e1.find('\xff') == std::string::npos);
  CHECK_THAT(e1, Contains("\\xff"));
  // a tensor name holding a newline, an escape sequence and a C1 control (U+009B, CSI)
  write_bytes(p, st_file(R"({"a\nb\u001b[31m\u009b": {"dtype": "X", "shape": [], "data_offsets": [0, 0]}})", ""));
  const std::string e2 = input_error_of([&] { SafetensorsFile::open(p); });
  CHECK(e2.find('\n') == std::string::npos);
  CHECK(e2.find('\x1b') == std::string::npos);
  CHECK(e2.find("\xc2\x9b") == std::string::npos);
  CHECK_THAT(e2, Contains("a\\x0ab\\x1b[31m\\xc2\\x9b"));
  // valid UTF-8 is kept as it is
  CHECK(std::string(mamba_lrp::io::InputError("caf\xc3\xa9: x").what()) == "caf\xc3\xa9: x");
}

namespace {
long peak_rss_kib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;
}

std::string tiny_tokenizer(const std::function<void(nlohmann::json&)>& edit) {
  nlohmann::json j = {{"model", {{"type", "BPE"}, {"vocab", {{"a", 0}, {"b", 1}, {"ab", 2}}}, {"merges", {"a b"}}}},
                      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}}}};
  edit(j);
  return j.dump();
}
}  // namespace

TEST_CASE("hardening: tokenizer ids and malformed fields", "[hardening]") {
  TempDir dir;
  const std::string p = dir.file("tokenizer.json");
  auto err = [&](const std::function<void(nlohmann::json&)>& edit) {
    write_bytes(p, tiny_tokenizer(edit));
    return input_error_of([&] { BpeTokenizer::from_file(p); });
  };
  write_bytes(p, tiny_tokenizer([](nlohmann::json&) {}));
  CHECK(BpeTokenizer::from_file(p).encode("ab") == std::vector<int64_t>{2});
  // An id near INT32_MAX sized a table of 2^31 strings (64 GiB): now one map entry. The
  // peak memory stays far below the table's.
  const long rss_before = peak_rss_kib();
  write_bytes(p, tiny_tokenizer([](nlohmann::json& j) {
    j["model"]["vocab"]["ab"] = 2147483646;
    j["added_tokens"] = {{{"id", 2000000000}, {"content", "<s>"}, {"special", true}}};
  }));
  const BpeTokenizer sparse = BpeTokenizer::from_file(p);
  CHECK(peak_rss_kib() - rss_before < 256 * 1024);
  CHECK(sparse.vocab_size() == 2147483647);
  CHECK(sparse.encode("ab<s>") == std::vector<int64_t>{2147483646, 2000000000});
  CHECK(sparse.decode(std::vector<int64_t>{2147483646, 2000000000}) == "ab<s>");
  CHECK_THAT(input_error_of([&] { sparse.token_string(7); }), Contains("token id 7 is not in the vocabulary"));
  // fields of the wrong JSON type: refusals naming the field, not JSON library exceptions
  CHECK_THAT(err([](nlohmann::json& j) { j["normalizer"] = {1, 2}; }), Contains("tokenizer.json") && Contains("normalizer"));
  CHECK_THAT(err([](nlohmann::json& j) { j["normalizer"] = "NFC"; }), Contains("normalizer"));
  CHECK_THAT(err([](nlohmann::json& j) { j["pre_tokenizer"]["type"] = 7; }), Contains("pre_tokenizer"));
  CHECK_THAT(err([](nlohmann::json& j) {
               j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", {{{"type", 3}}}}};
             }),
             Contains("pre_tokenizer"));
  // text beyond the documented limit
  write_bytes(p, tiny_tokenizer([](nlohmann::json&) {}));
  const BpeTokenizer t = BpeTokenizer::from_file(p);
  CHECK_THAT(input_error_of([&] { t.encode(std::string(mamba_lrp::io::kMaxTextBytes + 1, 'a')); }),
             Contains("exceeds the limit"));
}
