// The safetensors reader and writer: round trips of every dtype, and every kind of broken
// file giving an mamba_lrp::io::InputError that names the file (and the tensor).
#include "csrc/io/safetensors.h"

#include "io_test_util.h"

#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include <random>

using Catch::Matchers::Contains;
using mamba_lrp::io::InputError;
using mamba_lrp::io::SafetensorsFile;
using mamba_lrp::io::save_safetensors;
using namespace io_test;

namespace {

// 8-byte little-endian length (of `header`, or `len` when given), header, data.
constexpr uint64_t kHeaderSize = ~uint64_t(0);
std::string st_bytes(const std::string& header, const std::string& data = "", uint64_t len = kHeaderSize) {
  const uint64_t n = len == kHeaderSize ? header.size() : len;
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xFF));
  return out + header + data;
}

// Opens and loads every tensor.
void open_and_load(const std::string& path) {
  auto f = SafetensorsFile::open(path);
  for (const auto& n : f.names()) f.load(n);
}

}  // namespace

TEST_CASE("safetensors round trip of every dtype", "[safetensors]") {
  TempDir dir;
  const std::string path = dir.file("all.safetensors");
  at::manual_seed(0);
  std::vector<std::pair<std::string, at::Tensor>> tensors = {
      {"f64", at::randn({2, 3}, at::kDouble)},
      {"f32", at::randn({4}, at::kFloat)},
      {"f16", at::randn({3, 2}, at::kFloat).to(at::kHalf)},
      {"bf16", at::randn({5}, at::kFloat).to(at::kBFloat16)},
      {"i64", at::arange(-3, 3, at::kLong).reshape({2, 3})},
      {"i32", at::arange(0, 7, at::kInt)},
      {"i16", at::arange(-2, 2, at::kShort)},
      {"i8", at::arange(-4, 4, at::kChar)},
      {"u8", at::arange(250, 256, at::kLong).to(at::kByte)},
      {"bool", at::tensor({1, 0, 1}, at::kLong).to(at::kBool)},
      {"scalar", at::scalar_tensor(2.5, at::kFloat)},
      {"empty", at::zeros({0, 3}, at::kFloat)},
      {"transposed", at::arange(6, at::kFloat).reshape({2, 3}).t()},  // non-contiguous input
  };
  save_safetensors(path, tensors, {{"format", "pt"}, {"note", "round trip"}});

  // header length is a multiple of 8 (spaces pad it)
  const std::string raw = read_bytes(path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(raw[i]);
  CHECK(n % 8 == 0);

  auto f = SafetensorsFile::open(path);
  CHECK(f.names().size() == tensors.size());
  CHECK(f.metadata().at("format") == "pt");
  CHECK(f.metadata().at("note") == "round trip");
  CHECK(f.info("f16").dtype == "F16");
  CHECK(f.info("bf16").dtype == "BF16");
  CHECK(f.info("bool").dtype == "BOOL");
  CHECK(f.info("i64").shape == std::vector<int64_t>{2, 3});
  CHECK(f.info("scalar").shape.empty());
  CHECK(f.contains("u8"));
  CHECK_FALSE(f.contains("nope"));
  for (const auto& kv : tensors) {
    INFO(kv.first);
    at::Tensor got = f.load(kv.first);
    CHECK(got.scalar_type() == kv.second.scalar_type());
    CHECK(got.sizes() == kv.second.sizes());
    CHECK(got.is_contiguous());
    CHECK(at::equal(got, kv.second));
  }
}

TEST_CASE("safetensors converts floating tensors to the requested dtype", "[safetensors]") {
  TempDir dir;
  const std::string path = dir.file("conv.safetensors");
  at::Tensor h = at::tensor({0.5, -1.25, 3.0}, at::kFloat).to(at::kHalf);
  at::Tensor b = at::tensor({0.5, -1.25, 3.0}, at::kFloat).to(at::kBFloat16);
  at::Tensor d = at::tensor({0.1, 0.2}, at::kDouble);
  at::Tensor ids = at::tensor({1, 2, 3}, at::kLong);
  save_safetensors(path, {{"h", h}, {"b", b}, {"d", d}, {"ids", ids}});
  auto f = SafetensorsFile::open(path);
  CHECK(at::equal(f.load("h", at::kFloat), h.to(at::kFloat)));
  CHECK(at::equal(f.load("h", at::kDouble), h.to(at::kDouble)));
  CHECK(at::equal(f.load("b", at::kFloat), b.to(at::kFloat)));
  CHECK(f.load("d", at::kFloat).scalar_type() == at::kFloat);
  // integer tensors keep their dtype whatever is asked for
  CHECK(f.load("ids", at::kFloat).scalar_type() == at::kLong);
  // asking for a non-floating dtype is an error naming the tensor
  CHECK_THAT(input_error_of([&] { f.load("h", at::kLong); }), Contains("conv.safetensors") && Contains("'h'"));
}

TEST_CASE("safetensors: loaded tensors view the file copy-on-write", "[safetensors]") {
  TempDir dir;
  const std::string path = dir.file("w.safetensors");
  const at::Tensor w = at::arange(64, at::kFloat).reshape({8, 8});
  save_safetensors(path, {{"w", w}});
  at::Tensor t = SafetensorsFile::open(path).load("w");  // outlives its SafetensorsFile
  CHECK(at::equal(t, w));
  t.zero_();  // in place, as --zero-bias and training do: the file keeps its values
  CHECK(at::equal(SafetensorsFile::open(path).load("w"), w));
  // Saving over a file that is still mapped replaces it without changing the loaded tensor.
  save_safetensors(path, {{"w", w * 2}});
  CHECK(at::equal(SafetensorsFile::open(path).load("w"), w * 2));
  CHECK(t.abs().sum().item<float>() == 0.0f);
}

TEST_CASE("safetensors writer refuses what it cannot write", "[safetensors]") {
  TempDir dir;
  const std::string path = dir.file("w.safetensors");
  CHECK_THAT(input_error_of([&] { save_safetensors(path, {{"a", at::zeros({1})}, {"a", at::zeros({1})}}); }),
             Contains("'a'") && Contains("duplicate"));
  CHECK_THAT(input_error_of([&] { save_safetensors(path, {{"c", at::zeros({1}, at::kComplexFloat)}}); }),
             Contains("'c'") && Contains("cannot be written"));
  CHECK_THAT(input_error_of([&] { save_safetensors(dir.file("no/such/dir.safetensors"), {{"a", at::zeros({1})}}); }),
             Contains("no/such/dir.safetensors"));
}

TEST_CASE("safetensors: broken files give an mamba_lrp::io::InputError naming the file and tensor", "[safetensors]") {
  TempDir dir;
  const std::string p = dir.file("m.safetensors");
  const std::string data12(12, '\0');  // room for 3 float32
  auto err = [&](const std::string& bytes) {
    write_bytes(p, bytes);
    return input_error_of([&] { open_and_load(p); });
  };

  SECTION("missing file") {
    CHECK_THAT(input_error_of([&] { SafetensorsFile::open(dir.file("absent.safetensors")); }),
               Contains("absent.safetensors") && Contains("cannot open"));
  }
  SECTION("a directory") { CHECK_THAT(input_error_of([&] { SafetensorsFile::open(dir.path); }), Contains(dir.path)); }
  SECTION("empty and truncated header length") {
    CHECK_THAT(err(""), Contains("m.safetensors") && Contains("too small"));
    CHECK_THAT(err("\x05\x00\x00"), Contains("m.safetensors") && Contains("too small"));
  }
  SECTION("header length beyond the file") {
    CHECK_THAT(err(st_bytes("{}", "", 1000)), Contains("m.safetensors") && Contains("header length 1000 exceeds the file"));
  }
  SECTION("header length over the 100 MB limit") {
    CHECK_THAT(err(st_bytes("{}", "", 200ull * 1000 * 1000)), Contains("m.safetensors") && Contains("limit"));
    CHECK_THAT(err(st_bytes("{}", "", kHeaderSize - 1)), Contains("m.safetensors") && Contains("limit"));  // 2^64 - 2
  }
  SECTION("zero header length") { CHECK_THAT(err(st_bytes("")), Contains("m.safetensors") && Contains("empty")); }
  SECTION("invalid JSON") {
    CHECK_THAT(err(st_bytes("{\"a\": {\"dtype\": \"F32\",")), Contains("m.safetensors") && Contains("invalid JSON"));
    CHECK_THAT(err(st_bytes("[1, 2]")), Contains("m.safetensors") && Contains("not an object"));
  }
  SECTION("data_offsets out of range") {
    CHECK_THAT(err(st_bytes(R"({"a.weight": {"dtype": "F32", "shape": [100], "data_offsets": [0, 400]}})", data12)),
               Contains("m.safetensors: tensor 'a.weight': data_offsets [0, 400] exceed the data section (12 bytes)"));
    CHECK_THAT(err(st_bytes(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [12, 16]}})", data12)),
               Contains("'a'") && Contains("exceed the data section"));
  }
  SECTION("begin > end") {
    CHECK_THAT(err(st_bytes(R"({"a": {"dtype": "F32", "shape": [0], "data_offsets": [8, 4]}})", data12)),
               Contains("m.safetensors") && Contains("'a'") && Contains("begin > end"));
  }
  SECTION("byte size does not match dtype and shape") {
    CHECK_THAT(err(st_bytes(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 12]}})", data12)),
               Contains("m.safetensors: tensor 'a'") && Contains("hold 12 bytes") && Contains("need 8"));
    CHECK_THAT(err(st_bytes(R"({"b": {"dtype": "F64", "shape": [3], "data_offsets": [0, 12]}})", data12)),
               Contains("'b'") && Contains("need 24"));
  }
  SECTION("unknown dtype") {
    CHECK_THAT(err(st_bytes(R"({"a": {"dtype": "F8_E4M3", "shape": [12], "data_offsets": [0, 12]}})", data12)),
               Contains("m.safetensors: tensor 'a'") && Contains("unsupported dtype \"F8_E4M3\""));
    CHECK_THAT(err(st_bytes(R"({"a": {"dtype": 4, "shape": [3], "data_offsets": [0, 12]}})", data12)),
               Contains("'a'") && Contains("dtype"));
  }
  SECTION("negative, fractional and overflowing shapes") {
    CHECK_THAT(err(st_bytes(R"({"a": {"dtype": "F32", "shape": [-3], "data_offsets": [0, 12]}})", data12)),
               Contains("'a'") && Contains("not a non-negative integer"));
    CHECK_THAT(err(st_bytes(R"({"a": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 12]}})", data12)),
               Contains("'a'") && Contains("not a non-negative integer"));
    // 2^32 * 2^32 elements overflows 64 bits; so does 2^62 elements of 4 bytes
    CHECK_THAT(err(st_bytes(R"({"a": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}})")),
               Contains("'a'") && Contains("overflows"));
    CHECK_THAT(err(st_bytes(R"({"a": {"dtype": "F32", "shape": [4611686018427387904], "data_offsets": [0, 0]}})")),
               Contains("'a'") && Contains("overflows"));
    CHECK_THAT(err(st_bytes(R"({"a": {"dtype": "F32", "shape": [18446744073709551615], "data_offsets": [0, 0]}})")),
               Contains("'a'") && Contains("overflows"));
    // a zero dimension makes the product 0 even next to a huge one: a valid empty tensor
    write_bytes(p, st_bytes(R"({"a": {"dtype": "F32", "shape": [0, 4611686018427387904], "data_offsets": [0, 0]}})"));
    CHECK(SafetensorsFile::open(p).load("a").numel() == 0);
  }
  SECTION("missing or malformed fields") {
    CHECK_THAT(err(st_bytes(R"({"a": {"dtype": "F32", "shape": [3]}})", data12)), Contains("'a'") && Contains("data_offsets"));
    CHECK_THAT(err(st_bytes(R"({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0]}})", data12)),
               Contains("'a'") && Contains("data_offsets"));
    CHECK_THAT(err(st_bytes(R"({"a": {"dtype": "F32", "shape": [3], "data_offsets": [-4, 8]}})", data12)),
               Contains("'a'") && Contains("data_offsets"));
    CHECK_THAT(err(st_bytes(R"({"a": {"dtype": "F32", "data_offsets": [0, 12]}})", data12)), Contains("'a'") && Contains("shape"));
    CHECK_THAT(err(st_bytes(R"({"a": [1, 2]})", data12)), Contains("'a'") && Contains("not an object"));
    CHECK_THAT(err(st_bytes(R"({"__metadata__": {"k": 1}})")), Contains("m.safetensors") && Contains("__metadata__"));
  }
  SECTION("truncated data section") {
    save_safetensors(p, {{"w", at::ones({4, 4})}, {"v", at::ones({8})}});
    std::string full = read_bytes(p);
    CHECK_THAT(err(full.substr(0, full.size() - 1)), Contains("m.safetensors: tensor '") && Contains("exceed the data section"));
    CHECK_THAT(err(full.substr(0, 20)), Contains("m.safetensors") && Contains("exceeds the file"));
  }
  SECTION("absent tensor") {
    save_safetensors(p, {{"w", at::ones({2})}});
    auto f = SafetensorsFile::open(p);
    CHECK_THAT(input_error_of([&] { f.load("backbone.norm_f.weight"); }),
               Contains("m.safetensors: tensor 'backbone.norm_f.weight': not in the file"));
  }
}

TEST_CASE("safetensors: header padding and metadata are accepted", "[safetensors]") {
  TempDir dir;
  const std::string p = dir.file("pad.safetensors");
  std::string data(12, '\0');
  float one = 1.0f;
  std::memcpy(&data[4], &one, 4);
  write_bytes(p, st_bytes(R"({"__metadata__": {"format": "pt"}, "x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]}}   )",
                          data));
  auto f = SafetensorsFile::open(p);
  CHECK(f.names() == std::vector<std::string>{"x"});
  CHECK(at::equal(f.load("x"), at::tensor({0.0f, 1.0f, 0.0f})));
}

TEST_CASE("safetensors: random corruption never escapes as anything but mamba_lrp::io::InputError", "[safetensors]") {
  // Flip, truncate and overwrite bytes of a valid file (header included): every result
  // either loads or throws mamba_lrp::io::InputError; nothing is read outside the mapping (the data is
  // copied only after every offset was checked).
  TempDir dir;
  const std::string p = dir.file("fuzz.safetensors");
  save_safetensors(p, {{"a", at::arange(6, at::kFloat).reshape({2, 3})}, {"b", at::ones({4}, at::kHalf)}});
  const std::string good = read_bytes(p);
  std::mt19937 rng(1234);
  int loaded = 0, rejected = 0;
  for (int it = 0; it < 400; ++it) {
    std::string bad = good;
    const int kind = it % 3;
    if (kind == 0) {
      bad[rng() % bad.size()] = static_cast<char>(rng() & 0xFF);
    } else if (kind == 1) {
      bad.resize(rng() % bad.size());
    } else {  // a digit in the header replaced by another digit
      size_t at = 8 + rng() % (bad.size() - 8);
      if (bad[at] >= '0' && bad[at] <= '9') bad[at] = static_cast<char>('0' + rng() % 10);
    }
    write_bytes(p, bad);
    try {
      open_and_load(p);
      ++loaded;
    } catch (const mamba_lrp::io::InputError& e) {
      CHECK_THAT(std::string(e.what()), Contains("fuzz.safetensors"));
      ++rejected;
    }
  }
  CHECK(loaded + rejected == 400);
  CHECK(rejected > 0);
}
