// torch.save files: the zip format written since torch 1.6 and the older legacy pickle
// stream. load_torch_checkpoint (checkpoint.h) is the entry; these are the pieces the
// directory loader shares with it.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

#include <string>

namespace mamba_lrp {
namespace io {

enum class TorchSaveFormat { Zip, Legacy, Unknown };

// From the first bytes of the file: a zip archive, a pickle stream (legacy), or neither.
// InputError "PATH: cannot open" when it cannot be read.
TorchSaveFormat torch_save_format(const std::string& path);

// What every loader hands back: floating tensors in `dtype`, integer and bool tensors as they are.
at::Tensor convert_floating(const at::Tensor& t, at::ScalarType dtype);

}  // namespace io
}  // namespace mamba_lrp
