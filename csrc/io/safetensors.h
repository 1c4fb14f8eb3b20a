// Our own reader and writer of the safetensors format
// (https://huggingface.co/docs/safetensors): 8 bytes little-endian header length N, N bytes
// of JSON header {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__":
// {str: str}}, then the data section; offsets are relative to the data section.
//
// The reader maps the file read-only and checks everything against it before any byte of
// tensor data is touched: header length within the file and at most 100 MB, valid JSON,
// known dtype, non-negative shape whose element count and byte size do not overflow,
// byte size == end - begin, begin <= end <= size of the data section, and (as the reference
// implementation requires) the tensors in offset order tile the data section exactly: no
// overlap, no gap, no bytes left over. Whatever the file
// holds, nothing outside the mapping is read. Every failure is a mamba_lrp::InputError whose
// message names the file and, where there is one, the tensor.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>
#include <c10/util/Optional.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace mamba_lrp {
namespace io {

// Largest JSON header accepted (the limit the reference implementation uses too).
constexpr uint64_t kSafetensorsMaxHeaderBytes = 100ull * 1000 * 1000;

struct TensorInfo {
  std::string dtype;           // as in the file: "F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL"
  at::ScalarType scalar_type;  // the matching torch dtype
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // data_offsets, relative to the data section
};

class SafetensorsFile {
 public:
  // Maps and validates the whole header. Throws InputError.
  static SafetensorsFile open(const std::string& path);

  const std::string& path() const { return path_; }
  // Tensor names, sorted.
  std::vector<std::string> names() const;
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  // Throws InputError naming the file and the tensor when it is absent.
  const TensorInfo& info(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // A fresh CPU tensor (owning its memory; the file may be closed afterwards). Floating
  // tensors are converted to `as` when given (which must then be a floating type);
  // integer and bool tensors are returned in their stored dtype whatever `as` says.
  at::Tensor load(const std::string& name, c10::optional<at::ScalarType> as = c10::nullopt) const;

 private:
  struct Mapping;
  SafetensorsFile() = default;
  std::string path_;
  std::shared_ptr<const Mapping> map_;
  uint64_t data_start_ = 0;  // 8 + header length
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Writes `tensors` in the given order (contiguous, little-endian, dtype from the tensor;
// float64/32/16, bfloat16, int64/32/16/8, uint8, bool), the header padded with spaces to a
// multiple of 8 bytes. Throws InputError on a duplicate or empty name, an unsupported
// dtype, or a file that cannot be written.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// "F32" etc. for a torch dtype; throws InputError for dtypes safetensors cannot hold here.
std::string safetensors_dtype_name(at::ScalarType t);

}  // namespace io
}  // namespace mamba_lrp
