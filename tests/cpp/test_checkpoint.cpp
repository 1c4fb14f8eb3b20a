// load_state_dict: model directories, single and sharded safetensors, torch.save files
// (written at test time by /usr/bin/python3 with torch, as hustvl/Vim and HF save them).
#include "csrc/io/checkpoint.h"
#include "csrc/io/safetensors.h"

#include "io_test_util.h"

#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include <sys/stat.h>

using Catch::Matchers::Contains;
using mamba_lrp::io::load_sharded_checkpoint;
using mamba_lrp::io::load_state_dict;
using mamba_lrp::io::load_torch_checkpoint;
using mamba_lrp::io::save_safetensors;
using mamba_lrp::io::StateDict;
using namespace io_test;

namespace {

bool python_has_torch() {
  static const int rc = std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1");
  return rc == 0;
}

// Runs a Python script (given as text) with the directory as argv[1].
void run_python(const TempDir& dir, const std::string& script) {
  write_bytes(dir.file("make.py"), script);
  const std::string cmd = "/usr/bin/python3 '" + dir.file("make.py") + "' '" + dir.path + "'";
  REQUIRE(std::system(cmd.c_str()) == 0);
}

// What every fixture below holds: values a test can rebuild exactly.
at::Tensor expected_weight() { return at::arange(12, at::kFloat).reshape({3, 4}) / 8; }

}  // namespace

TEST_CASE("checkpoint: a single safetensors file and a model directory", "[checkpoint]") {
  TempDir dir;
  at::Tensor w = expected_weight().to(at::kHalf);
  at::Tensor ids = at::tensor({3, 1, 2}, at::kLong);
  save_safetensors(dir.file("model.safetensors"), {{"backbone.norm_f.weight", w}, {"ids", ids}});

  for (const std::string& where : {dir.file("model.safetensors"), dir.path}) {
    INFO(where);
    StateDict sd = load_state_dict(where, at::kDouble);
    REQUIRE(sd.size() == 2);
    CHECK(sd.at("backbone.norm_f.weight").scalar_type() == at::kDouble);
    CHECK(at::equal(sd.at("backbone.norm_f.weight"), w.to(at::kDouble)));
    CHECK(sd.at("ids").scalar_type() == at::kLong);  // integers are not converted
  }
  CHECK(load_state_dict(dir.path, at::kFloat).at("backbone.norm_f.weight").scalar_type() == at::kFloat);

  TempDir empty;
  CHECK_THAT(input_error_of([&] { load_state_dict(empty.path, at::kFloat); }),
             Contains(empty.path) && Contains("no model.safetensors"));
  CHECK_THAT(input_error_of([&] { load_state_dict(dir.file("absent.safetensors"), at::kFloat); }),
             Contains("absent.safetensors"));
  CHECK_THAT(input_error_of([&] { load_state_dict(dir.path, at::kLong); }), Contains("floating"));
}

TEST_CASE("checkpoint: sharded safetensors through model.safetensors.index.json", "[checkpoint]") {
  TempDir dir;
  at::Tensor a = expected_weight();
  at::Tensor b = at::ones({5}, at::kBFloat16) * 3;
  at::Tensor c = at::tensor({1.5, -2.0}, at::kDouble);
  save_safetensors(dir.file("model-00001-of-00002.safetensors"), {{"layers.0.a", a}, {"layers.0.b", b}});
  save_safetensors(dir.file("model-00002-of-00002.safetensors"), {{"lm_head.weight", c}, {"unlisted", c}});
  const std::string index = dir.file("model.safetensors.index.json");
  write_bytes(index, R"({"metadata": {"total_size": 100}, "weight_map": {
      "layers.0.a": "model-00001-of-00002.safetensors",
      "layers.0.b": "model-00001-of-00002.safetensors",
      "lm_head.weight": "model-00002-of-00002.safetensors"}})");

  for (const std::string& where : {dir.path, index}) {
    INFO(where);
    StateDict sd = load_state_dict(where, at::kFloat);
    REQUIRE(sd.size() == 3);  // only what the index lists
    CHECK(at::equal(sd.at("layers.0.a"), a));
    CHECK(at::equal(sd.at("layers.0.b"), b.to(at::kFloat)));
    CHECK(at::equal(sd.at("lm_head.weight"), c.to(at::kFloat)));
  }

  SECTION("a tensor missing from its shard") {
    write_bytes(index, R"({"weight_map": {"layers.0.a": "model-00002-of-00002.safetensors"}})");
    CHECK_THAT(input_error_of([&] { load_sharded_checkpoint(index, at::kFloat); }),
               Contains("model-00002-of-00002.safetensors: tensor 'layers.0.a'") && Contains("not in the shard"));
  }
  SECTION("a shard that does not exist") {
    write_bytes(index, R"({"weight_map": {"layers.0.a": "model-00003-of-00003.safetensors"}})");
    CHECK_THAT(input_error_of([&] { load_state_dict(dir.path, at::kFloat); }),
               Contains("model.safetensors.index.json") && Contains("model-00003-of-00003.safetensors") &&
                   Contains("does not exist"));
  }
  SECTION("a shard outside the directory") {
    write_bytes(index, R"({"weight_map": {"layers.0.a": "../elsewhere.safetensors"}})");
    CHECK_THAT(input_error_of([&] { load_state_dict(dir.path, at::kFloat); }), Contains("'layers.0.a'"));
  }
  SECTION("invalid index JSON") {
    write_bytes(index, R"({"weight_map": {"layers.0.a": )");
    CHECK_THAT(input_error_of([&] { load_state_dict(dir.path, at::kFloat); }),
               Contains("model.safetensors.index.json") && Contains("invalid JSON"));
    write_bytes(index, R"({"weights": {}})");
    CHECK_THAT(input_error_of([&] { load_state_dict(dir.path, at::kFloat); }), Contains("weight_map"));
  }
  SECTION("a corrupt shard names the shard and the tensor") {
    std::string bytes = read_bytes(dir.file("model-00002-of-00002.safetensors"));
    write_bytes(dir.file("model-00002-of-00002.safetensors"), bytes.substr(0, bytes.size() - 4));
    CHECK_THAT(input_error_of([&] { load_state_dict(dir.path, at::kFloat); }),
               Contains("model-00002-of-00002.safetensors: tensor '") && Contains("exceed the data section"));
  }
}

TEST_CASE("checkpoint: hostile pickles are refused without crashing", "[checkpoint]") {
  TempDir dir;
  const std::string p = dir.file("evil.pth");
  auto err = [&](const std::string& bytes) {
    write_bytes(p, bytes);
    return input_error_of([&] { load_state_dict(p, at::kFloat); });
  };
  // a million nested lists (torn down without recursion), then no magic number
  const int n = 1000000;
  CHECK_THAT(err("\x80\x02" + std::string(n, ']') + std::string(n - 1, 'a') + "."),
             Contains("evil.pth") && Contains("not a torch.save file"));
  // lengths beyond the data, memo keys never stored, stack underflow, no STOP
  CHECK_THAT(err(std::string("\x80\x02X\xff\xff\xff\x7f", 7)), Contains("evil.pth") && Contains("end of data"));
  CHECK_THAT(err(std::string("\x80\x02h\x05.", 5)), Contains("evil.pth") && Contains("memo"));
  CHECK_THAT(err(std::string("\x80\x02" "a.", 4)), Contains("evil.pth") && Contains("underflow"));
  CHECK_THAT(err(std::string("\x80\x02]", 3)), Contains("evil.pth") && Contains("end of data"));
}

TEST_CASE("checkpoint: torch.save files read by our unpickler", "[checkpoint]") {
  if (!python_has_torch()) {
    WARN("skipped: /usr/bin/python3 has no torch");
    return;
  }
  TempDir dir;
  // The shapes hustvl/Vim and Hugging Face write: an OrderedDict state dict (with its
  // _metadata attribute), nested under "model" beside optimizer state, an epoch and an
  // argparse.Namespace; Parameters; a tensor viewing part of a shared storage; several
  // dtypes; the legacy (pre-1.6) format; and pytorch_model.bin in a directory.
  run_python(dir, R"PY(
import argparse, collections, os, sys, torch
d = sys.argv[1]
w = torch.arange(12, dtype=torch.float32).reshape(3, 4) / 8
base = torch.arange(20, dtype=torch.float64)
sd = torch.nn.Linear(4, 3).state_dict()
sd['weight'] = w.clone()
sd['bias'] = torch.tensor([1.0, -2.0, 0.5])
sd['half'] = torch.tensor([0.25, -4.0], dtype=torch.float16)
sd['bf16'] = torch.tensor([3.0], dtype=torch.bfloat16)
sd['count'] = torch.tensor([7, 8], dtype=torch.int64)
sd['mask'] = torch.tensor([True, False])
sd['view_col'] = base.reshape(4, 5)[:, 1]   # strided view with an offset into a shared storage
sd['view_tail'] = base[15:]
sd['scalar'] = torch.tensor(2.5)
sd['param'] = torch.nn.Parameter(torch.ones(2, 2))
opt = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1)
torch.save({'model': sd, 'optimizer': opt.state_dict(), 'epoch': 299,
            'args': argparse.Namespace(lr=5e-4, model='vim_tiny'), 'scaler': {'scale': 65536.0}},
           os.path.join(d, 'vim.pth'))
torch.save(sd, os.path.join(d, 'flat.pth'))
torch.save({'state_dict': sd, 'n': 1}, os.path.join(d, 'lightning.ckpt'))
torch.save({'ema': sd, 'model': {'x': 1}}, os.path.join(d, 'ema.pth'))
torch.save(sd, os.path.join(d, 'legacy.pth'), _use_new_zipfile_serialization=False)
torch.save([w], os.path.join(d, 'list.pth'))
os.mkdir(os.path.join(d, 'hf'))
torch.save(sd, os.path.join(d, 'hf', 'pytorch_model.bin'))
)PY");

  auto check_sd = [&](const StateDict& sd) {
    CHECK(sd.size() == 10);
    CHECK(at::equal(sd.at("weight"), expected_weight().to(at::kDouble)));
    CHECK(at::equal(sd.at("bias"), at::tensor({1.0, -2.0, 0.5}, at::kDouble)));
    CHECK(at::equal(sd.at("half"), at::tensor({0.25, -4.0}, at::kDouble)));
    CHECK(at::equal(sd.at("bf16"), at::tensor({3.0}, at::kDouble)));
    CHECK(sd.at("count").scalar_type() == at::kLong);
    CHECK(at::equal(sd.at("count"), at::tensor({7, 8}, at::kLong)));
    CHECK(sd.at("mask").scalar_type() == at::kBool);
    CHECK(at::equal(sd.at("mask"), at::tensor({1, 0}, at::kLong).to(at::kBool)));
    CHECK(at::equal(sd.at("view_col"), at::tensor({1.0, 6.0, 11.0, 16.0}, at::kDouble)));
    CHECK(at::equal(sd.at("view_tail"), at::arange(15, 20, at::kDouble)));
    CHECK(sd.at("scalar").dim() == 0);
    CHECK(sd.at("scalar").item<double>() == 2.5);
    CHECK(at::equal(sd.at("param"), at::ones({2, 2}, at::kDouble)));
  };

  SECTION("nested under 'model', detected and named") {
    check_sd(load_state_dict(dir.file("vim.pth"), at::kDouble));
    check_sd(load_torch_checkpoint(dir.file("vim.pth"), at::kDouble, "model"));
  }
  SECTION("flat state dict, legacy format, pytorch_model.bin, 'state_dict' key") {
    check_sd(load_state_dict(dir.file("flat.pth"), at::kDouble));
    check_sd(load_state_dict(dir.file("legacy.pth"), at::kDouble));
    check_sd(load_state_dict(dir.file("hf"), at::kDouble));
    check_sd(load_state_dict(dir.file("lightning.ckpt"), at::kDouble));
    check_sd(load_torch_checkpoint(dir.file("ema.pth"), at::kDouble, "ema"));
    CHECK(load_state_dict(dir.file("flat.pth"), at::kFloat).at("weight").scalar_type() == at::kFloat);
  }
  SECTION("no state dict where asked or found") {
    CHECK_THAT(input_error_of([&] { load_torch_checkpoint(dir.file("vim.pth"), at::kFloat, "model_ema"); }),
               Contains("vim.pth") && Contains("no key 'model_ema'") && Contains("'optimizer'"));
    CHECK_THAT(input_error_of([&] { load_torch_checkpoint(dir.file("vim.pth"), at::kFloat, "epoch"); }),
               Contains("vim.pth") && Contains("'epoch'") && Contains("not a dict"));
    CHECK_THAT(input_error_of([&] { load_state_dict(dir.file("ema.pth"), at::kFloat); }),
               Contains("ema.pth") && Contains("no state dict found"));
    CHECK_THAT(input_error_of([&] { load_state_dict(dir.file("list.pth"), at::kFloat); }),
               Contains("list.pth") && Contains("found a list"));
  }
  SECTION("unreadable files") {
    const std::string good = read_bytes(dir.file("vim.pth"));
    write_bytes(dir.file("cut.pth"), good.substr(0, good.size() / 2));
    CHECK_THAT(input_error_of([&] { load_state_dict(dir.file("cut.pth"), at::kFloat); }), Contains("cut.pth"));
    write_bytes(dir.file("text.pth"), "this is not a checkpoint");
    CHECK_THAT(input_error_of([&] { load_torch_checkpoint(dir.file("text.pth"), at::kFloat); }),
               Contains("text.pth") && Contains("not a torch.save file"));
    const std::string legacy = read_bytes(dir.file("legacy.pth"));
    write_bytes(dir.file("cut_legacy.pth"), legacy.substr(0, legacy.size() - 10));
    CHECK_THAT(input_error_of([&] { load_state_dict(dir.file("cut_legacy.pth"), at::kFloat); }),
               Contains("cut_legacy.pth") && Contains("truncated"));
    write_bytes(dir.file("pickle_garbage.pth"), std::string("\x80\x02") + "\xff\xff\xff");
    CHECK_THAT(input_error_of([&] { load_state_dict(dir.file("pickle_garbage.pth"), at::kFloat); }),
               Contains("pickle_garbage.pth"));
  }
}
