// Loading a model's weights into a name -> tensor map, whatever form they come in.
//
// Accepted (DESIGN.md §4):
//  - a directory holding model.safetensors, or model.safetensors.index.json (Hugging Face's
//    sharded layout: {"weight_map": {tensor name: shard file}}), or pytorch_model.bin, or
//    pytorch_model.bin.index.json (sharded .bin), tried in that order;
//  - a single .safetensors file, or an index .json file;
//  - a torch.save file (.pth, .pt, .bin, any name): the zip format written since torch 1.6,
//    and the older "legacy" pickle-stream format. These are read by our own restricted
//    unpickler, not torch::pickle_load: libtorch 1.13's pickle_load turns the OrderedDict of
//    a state dict into None and stops at the SETITEM opcode, so it cannot read what
//    torch.save writes for a state dict. Ours runs no Python code: it understands dicts,
//    lists, tuples, scalars, strings and tensors (torch._utils._rebuild_tensor_v2,
//    _rebuild_parameter); any other class (argparse.Namespace, optimizer state, ...) is kept
//    as an opaque object, which is fine as long as it is not where the tensors are.
//
// A torch.save file may hold the state dict at its top level or nested under a key, as
// hustvl/Vim checkpoints do ({"model": state_dict, "optimizer": ..., "args": ...}):
// `nested_key` names that key; when it is empty, a top level that is a dict of tensors is
// taken as it is, otherwise its "model" entry (then "state_dict") if that is a dict of
// tensors.
//
// Floating tensors are converted to `dtype` (a floating type); integer and bool tensors are
// kept as they are. Every failure is a mamba_lrp::InputError naming the file (and tensor).
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

#include <map>
#include <string>

namespace mamba_lrp {
namespace io {

using StateDict = std::map<std::string, at::Tensor>;

StateDict load_state_dict(const std::string& model_dir_or_file, at::ScalarType dtype,
                          const std::string& nested_key = "");

// A torch.save file only (zip or legacy format); see above for nested_key.
StateDict load_torch_checkpoint(const std::string& path, at::ScalarType dtype, const std::string& nested_key = "");

// A Hugging Face index file (model.safetensors.index.json or pytorch_model.bin.index.json):
// every shard must exist next to the index and hold each tensor the index assigns to it.
StateDict load_sharded_checkpoint(const std::string& index_path, at::ScalarType dtype);

}  // namespace io
}  // namespace mamba_lrp
