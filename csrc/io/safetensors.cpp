// The safetensors reader and writer (see safetensors.h for the format and the checks).
#include "csrc/io/safetensors.h"

#include "csrc/io/errors.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the safetensors reader assumes a little-endian host"
#endif

namespace mamba_lrp {
namespace io {
namespace {

struct DtypeEntry {
  const char* name;
  at::ScalarType type;
  uint64_t size;
};
constexpr DtypeEntry kDtypes[] = {
    {"F64", at::kDouble, 8}, {"F32", at::kFloat, 4}, {"F16", at::kHalf, 2},  {"BF16", at::kBFloat16, 2},
    {"I64", at::kLong, 8},   {"I32", at::kInt, 4},   {"I16", at::kShort, 2}, {"I8", at::kChar, 1},
    {"U8", at::kByte, 1},    {"BOOL", at::kBool, 1},
};

const DtypeEntry* find_dtype(const std::string& name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return &d;
  return nullptr;
}

[[noreturn]] void fail(const std::string& path, const std::string& what) { throw InputError(path + ": " + what); }
[[noreturn]] void fail_tensor(const std::string& path, const std::string& name, const std::string& what) {
  throw InputError(path + ": tensor '" + name + "': " + what);
}

// A JSON integer that fits in uint64 (json numbers may be signed, unsigned or float).
bool json_to_u64(const nlohmann::json& j, uint64_t* out) {
  if (j.is_number_unsigned()) {
    *out = j.get<uint64_t>();
    return true;
  }
  if (j.is_number_integer()) {
    int64_t v = j.get<int64_t>();
    if (v < 0) return false;
    *out = static_cast<uint64_t>(v);
    return true;
  }
  return false;
}

// As the reference implementation does: the tensors, taken in the order of their offsets,
// tile the data section, each beginning where the previous one ends (no overlap, no gap,
// nothing left over at the end).
void check_tiling(const std::map<std::string, TensorInfo>& tensors, uint64_t data_size, const std::string& path) {
  std::vector<std::pair<const std::string*, const TensorInfo*>> by_offset;
  for (const auto& kv : tensors) by_offset.emplace_back(&kv.first, &kv.second);
  std::sort(by_offset.begin(), by_offset.end(), [](const auto& a, const auto& b) {
    return std::make_pair(a.second->begin, a.second->end) < std::make_pair(b.second->begin, b.second->end);
  });
  uint64_t expected = 0;
  for (const auto& [name, info] : by_offset) {
    if (info->begin != expected)
      fail_tensor(path, *name,
                  "data_offsets [" + std::to_string(info->begin) + ", " + std::to_string(info->end) + "] " +
                      (info->begin < expected ? "overlap the previous tensor" : "leave a gap after the previous tensor") +
                      " (expected to begin at " + std::to_string(expected) + ")");
    expected = info->end;
  }
  if (expected != data_size)
    fail(path, "the tensors cover " + std::to_string(expected) + " bytes of the data section, which holds " +
                   std::to_string(data_size));
}

}  // namespace

// The private mapping of the whole file, unmapped when the last SafetensorsFile copy and the
// last tensor viewing it go. Writable copy-on-write: a tensor loaded from it can be changed
// in place (zeroed biases, training) without touching the file.
struct SafetensorsFile::Mapping {
  const uint8_t* data = nullptr;
  uint64_t size = 0;
  ~Mapping() {
    if (data) munmap(const_cast<uint8_t*>(data), size);
  }
};

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;
  f.path_ = path;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    fail(path, std::string("cannot stat: ") + std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(path, "not a regular file");
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    fail(path, "file too small for a safetensors header (" + std::to_string(size) + " bytes, need at least 8)");
  }
  // MAP_POPULATE maps the pages in one go: loading a model reads every byte anyway, and on a
  // virtual machine one walk in the kernel is cheaper than a trap per page. Mapped read-only
  // first (populating a writable private mapping would copy every page), then made
  // copy-on-write. Measured against the alternatives (issue 20): MADV_WILLNEED /
  // MADV_HUGEPAGE / MADV_POPULATE_READ gave the same faults and time; reading into a
  // huge-page buffer cut the faults (250 for 517 MB) but took 0.35-0.47 s more (zeroing
  // and copying) and held a second copy of the weights.
  void* p = mmap(nullptr, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
  int map_errno = errno;
  ::close(fd);
  if (p == MAP_FAILED) fail(path, std::string("cannot map the file: ") + std::strerror(map_errno));
  if (mprotect(p, size, PROT_READ | PROT_WRITE) != 0) {
    map_errno = errno;
    munmap(p, size);
    fail(path, std::string("cannot map the file: ") + std::strerror(map_errno));
  }
  auto m = std::make_shared<Mapping>();
  m->data = static_cast<const uint8_t*>(p);
  m->size = size;
  f.map_ = m;

  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | m->data[i];
  if (n > kSafetensorsMaxHeaderBytes)
    fail(path, "header length " + std::to_string(n) + " exceeds the limit of " +
                   std::to_string(kSafetensorsMaxHeaderBytes) + " bytes");
  if (n > size - 8)
    fail(path, "header length " + std::to_string(n) + " exceeds the file (" + std::to_string(size) + " bytes)");
  if (n == 0) fail(path, "empty JSON header");
  f.data_start_ = 8 + n;
  const uint64_t data_size = size - f.data_start_;

  const char* hb = reinterpret_cast<const char*>(m->data + 8);
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(hb, hb + n);
  } catch (const nlohmann::json::exception& e) {
    fail(path, std::string("invalid JSON header: ") + e.what());
  }
  if (!header.is_object()) fail(path, "the JSON header is not an object");

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) fail(path, "__metadata__ is not an object");
      for (auto mi = v.begin(); mi != v.end(); ++mi) {
        if (!mi.value().is_string()) fail(path, "__metadata__ entry '" + mi.key() + "' is not a string");
        f.metadata_[mi.key()] = mi.value().get<std::string>();
      }
      continue;
    }
    if (!v.is_object()) fail_tensor(path, name, "header entry is not an object");
    TensorInfo info;
    auto dt = v.find("dtype");
    if (dt == v.end() || !dt->is_string()) fail_tensor(path, name, "missing or non-string \"dtype\"");
    info.dtype = dt->get<std::string>();
    const DtypeEntry* d = find_dtype(info.dtype);
    if (!d)
      fail_tensor(path, name,
                  "unsupported dtype \"" + info.dtype + "\" (supported: F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL)");
    info.scalar_type = d->type;

    auto sh = v.find("shape");
    if (sh == v.end() || !sh->is_array()) fail_tensor(path, name, "missing or non-array \"shape\"");
    uint64_t numel = 1;
    bool overflow = false;
    for (const auto& e : *sh) {
      uint64_t dim = 0;
      if (!json_to_u64(e, &dim)) fail_tensor(path, name, "shape " + sh->dump() + " has an entry that is not a non-negative integer");
      if (dim > static_cast<uint64_t>(INT64_MAX)) overflow = true;
      if (__builtin_mul_overflow(numel, dim, &numel)) overflow = true;
      info.shape.push_back(static_cast<int64_t>(std::min<uint64_t>(dim, INT64_MAX)));
    }
    uint64_t nbytes = 0;
    if (overflow || numel > static_cast<uint64_t>(INT64_MAX) || __builtin_mul_overflow(numel, d->size, &nbytes))
      fail_tensor(path, name, "shape " + sh->dump() + " overflows 64 bits");

    auto off = v.find("data_offsets");
    if (off == v.end() || !off->is_array() || off->size() != 2 || !json_to_u64((*off)[0], &info.begin) ||
        !json_to_u64((*off)[1], &info.end))
      fail_tensor(path, name, "\"data_offsets\" must be two non-negative integers [begin, end]");
    if (info.begin > info.end)
      fail_tensor(path, name, "data_offsets [" + std::to_string(info.begin) + ", " + std::to_string(info.end) + "] have begin > end");
    if (info.end > data_size)
      fail_tensor(path, name,
                  "data_offsets [" + std::to_string(info.begin) + ", " + std::to_string(info.end) +
                      "] exceed the data section (" + std::to_string(data_size) + " bytes)");
    if (info.end - info.begin != nbytes)
      fail_tensor(path, name,
                  "data_offsets [" + std::to_string(info.begin) + ", " + std::to_string(info.end) + "] hold " +
                      std::to_string(info.end - info.begin) + " bytes but dtype " + info.dtype + " and shape " +
                      shape_str(c10::IntArrayRef(info.shape)) + " need " + std::to_string(nbytes));
    f.tensors_.emplace(name, std::move(info));
  }
  check_tiling(f.tensors_, data_size, path);
  return f;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& kv : tensors_) out.push_back(kv.first);
  return out;
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) fail_tensor(path_, name, "not in the file");
  return it->second;
}

at::Tensor SafetensorsFile::load(const std::string& name, c10::optional<at::ScalarType> as) const {
  const TensorInfo& ti = info(name);
  if (as && !at::isFloatingType(*as))
    fail_tensor(path_, name, std::string("requested conversion to non-floating dtype ") + c10::toString(*as));
  // Offsets were validated in open(): data_start_ + end <= file size.
  const at::ScalarType stored = ti.scalar_type == at::kBool ? at::kByte : ti.scalar_type;
  const uint8_t* src = map_->data + data_start_ + ti.begin;
  const uint64_t nbytes = ti.end - ti.begin;
  const bool converted = ti.scalar_type == at::kBool || (as && *as != ti.scalar_type);
  if (!converted && nbytes && reinterpret_cast<uintptr_t>(src) % c10::elementSize(stored) == 0) {
    // A view of the mapping: no copy, and the weights count once in memory. The tensor
    // keeps the mapping alive.
    std::shared_ptr<const Mapping> keep = map_;
    return at::from_blob(const_cast<uint8_t*>(src), ti.shape, [keep](void*) {}, at::TensorOptions().dtype(stored));
  }
  // Unaligned for the dtype, or converted: copy out of the mapping.
  at::Tensor t = at::empty(ti.shape, at::TensorOptions().dtype(stored));
  if (nbytes) std::memcpy(t.data_ptr(), src, nbytes);
  if (ti.scalar_type == at::kBool) return t.ne(0);  // any non-zero byte is true, never an invalid bool
  if (as && at::isFloatingType(ti.scalar_type) && *as != ti.scalar_type) t = t.to(*as);
  return t;
}

std::string safetensors_dtype_name(at::ScalarType t) {
  for (const auto& d : kDtypes)
    if (d.type == t) return d.name;
  throw InputError(std::string("safetensors: dtype ") + c10::toString(t) + " cannot be written");
}

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json md = nlohmann::ordered_json::object();
    for (const auto& kv : metadata) md[kv.first] = kv.second;
    header["__metadata__"] = md;
  }
  std::vector<at::Tensor> data;
  data.reserve(tensors.size());
  uint64_t offset = 0;
  for (const auto& kv : tensors) {
    const std::string& name = kv.first;
    if (name.empty()) fail(path, "cannot write a tensor with an empty name");
    if (name == "__metadata__") fail(path, "'__metadata__' cannot be a tensor name");
    if (header.contains(name)) fail_tensor(path, name, "duplicate tensor name");
    if (!kv.second.defined()) fail_tensor(path, name, "undefined tensor");
    at::Tensor t = kv.second.detach().to(at::kCPU).contiguous();
    std::string dt;
    try {
      dt = safetensors_dtype_name(t.scalar_type());
    } catch (const InputError&) {
      fail_tensor(path, name, std::string("dtype ") + c10::toString(t.scalar_type()) + " cannot be written");
    }
    if (t.scalar_type() == at::kBool) t = t.to(at::kByte);  // 0/1 bytes
    const uint64_t nbytes = static_cast<uint64_t>(t.numel()) * t.element_size();
    header[name] = {{"dtype", dt}, {"shape", t.sizes().vec()}, {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    data.push_back(t);
  }
  std::string hs = header.dump();
  while (hs.size() % 8) hs.push_back(' ');
  // Written next to the target and renamed over it: a model loaded from `path` maps the old
  // file, which must not change under it.
  const std::string tmp = path + ".tmp";
  std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
  if (!out) fail(path, std::string("cannot open for writing: ") + std::strerror(errno));
  uint8_t len[8];
  uint64_t n = hs.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
  out.write(reinterpret_cast<const char*>(len), 8);
  out.write(hs.data(), static_cast<std::streamsize>(hs.size()));
  for (const auto& t : data)
    if (t.numel()) out.write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.numel() * t.element_size()));
  out.close();
  if (!out) {
    std::remove(tmp.c_str());
    fail(path, "write failed");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    std::remove(tmp.c_str());
    fail(path, std::string("cannot replace the file: ") + std::strerror(e));
  }
}

}  // namespace io
}  // namespace mamba_lrp
