// torch.save files read through our restricted unpickler (see checkpoint.h for why not
// torch::pickle_load), then the state dict found in what they hold.
#include "csrc/io/torch_save.h"

#include <ATen/ATen.h>
#include <caffe2/serialize/inline_container.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>
#include <vector>

#include "csrc/io/checkpoint.h"
#include "csrc/io/errors.h"
#include "csrc/io/pickle.h"

namespace mamba_lrp {
namespace io {

using pickle::a_kind;
using pickle::kind_name;
using pickle::Storage;
using pickle::Unpickler;
using pickle::Value;
using pickle::ValuePtr;

namespace {

std::vector<char> read_prefix(const std::string& path, size_t n) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError(path + ": cannot open");
  std::vector<char> b(n);
  f.read(b.data(), static_cast<std::streamsize>(n));
  b.resize(static_cast<size_t>(f.gcount()));
  return b;
}

// The tensor a TensorRef describes, copied out of its storage after checking that every
// element it addresses lies inside the storage, and that it has no more elements than the
// storage holds from its offset on: a view that repeats elements (stride 0, overlapping
// strides) could otherwise make the copy far larger than the file (one stored float viewed
// as [2^30] is 4 GiB).
at::Tensor materialize(const Value& t, const std::string& path, const std::string& name) {
  const Storage& st = *t.storage;
  if (!st.data.defined()) throw InputError(path + ": tensor '" + name + "': storage '" + st.key + "' has no data");
  const int64_t n = st.data.numel();
  bool ok = t.offset >= 0;
  int64_t last = t.offset, numel = 1;
  for (size_t d = 0; ok && d < t.sizes.size(); ++d) {
    if (t.sizes[d] < 0 || t.strides[d] < 0) ok = false;
    else if (__builtin_mul_overflow(numel, t.sizes[d], &numel)) ok = false;
  }
  for (size_t d = 0; ok && numel > 0 && d < t.sizes.size(); ++d) {
    int64_t step;
    if (__builtin_mul_overflow(t.sizes[d] - 1, t.strides[d], &step) || __builtin_add_overflow(last, step, &last)) ok = false;
  }
  if (ok && numel > n - t.offset) {
    std::ostringstream o;
    o << path << ": tensor '" << name << "': size " << at::IntArrayRef(t.sizes) << " has " << numel
      << " elements, more than its storage holds from offset " << t.offset << " (" << n << " elements): "
      << "views that repeat elements are not supported";
    throw InputError(o.str());
  }
  if (!ok || (numel > 0 && last >= n)) {
    std::ostringstream o;
    o << path << ": tensor '" << name << "': size " << at::IntArrayRef(t.sizes) << ", stride "
      << at::IntArrayRef(t.strides) << " and offset " << t.offset << " do not fit its storage of " << n << " elements";
    throw InputError(o.str());
  }
  at::Tensor data = st.dtype == at::kBool ? st.data.ne(0) : st.data;
  return data.as_strided(t.sizes, t.strides, t.offset).clone(at::MemoryFormat::Contiguous);
}

bool is_tensor_dict(const ValuePtr& v) {
  if (!v || v->kind != Value::Dict || v->dict.empty()) return false;
  for (const auto& kv : v->dict)
    if (kv.first->kind != Value::Str || kv.second->kind != Value::TensorRef) return false;
  return true;
}

std::string top_level_keys(const ValuePtr& root) {
  std::string out;
  for (const auto& kv : root->dict) {
    if (!out.empty()) out += ", ";
    out += kv.first->kind == Value::Str ? "'" + kv.first->s + "'" : std::string("<") + kind_name(kv.first->kind) + ">";
    if (out.size() > 200) return out + ", ...";
  }
  return out;
}

ValuePtr find_state_dict(const ValuePtr& root, const std::string& nested_key, const std::string& path) {
  if (!nested_key.empty()) {
    if (root->kind != Value::Dict)
      throw InputError(path + ": expected a dict with key '" + nested_key + "' at the top level, found " +
                       a_kind(root->kind));
    for (const auto& kv : root->dict)
      if (kv.first->kind == Value::Str && kv.first->s == nested_key) {
        if (kv.second->kind != Value::Dict)
          throw InputError(path + ": entry '" + nested_key + "' is " + a_kind(kv.second->kind) +
                           ", not a dict of tensors");
        return kv.second;
      }
    throw InputError(path + ": no key '" + nested_key + "' at the top level (keys: " + top_level_keys(root) + ")");
  }
  if (root->kind != Value::Dict)
    throw InputError(path + ": expected a state dict (a dict of tensors), found " + a_kind(root->kind));
  if (is_tensor_dict(root)) return root;
  for (const char* key : {"model", "state_dict"})
    for (const auto& kv : root->dict)
      if (kv.first->kind == Value::Str && kv.first->s == key && is_tensor_dict(kv.second)) return kv.second;
  throw InputError(path + ": no state dict found: the top level is not a dict of tensors and has no 'model' or "
                   "'state_dict' entry that is one (keys: " + top_level_keys(root) + ")");
}

StateDict to_state_dict(const ValuePtr& sd, const std::string& path, at::ScalarType dtype) {
  StateDict out;
  for (const auto& kv : sd->dict) {
    if (kv.first->kind != Value::Str) throw InputError(path + ": state dict has a non-string key");
    const std::string& name = kv.first->s;
    if (kv.second->kind != Value::TensorRef)
      throw InputError(path + ": entry '" + name + "' is " + a_kind(kv.second->kind) + ", not a tensor");
    out[name] = convert_floating(materialize(*kv.second, path, name), dtype);
  }
  return out;
}

void fill_storage(Storage& st, const char* bytes, uint64_t nbytes, const std::string& path) {
  const uint64_t el = c10::elementSize(st.dtype);
  const at::ScalarType raw = st.dtype == at::kBool ? at::kByte : st.dtype;
  st.data = at::empty({static_cast<int64_t>(nbytes / el)}, at::TensorOptions().dtype(raw));
  if (nbytes / el) std::memcpy(st.data.data_ptr(), bytes, (nbytes / el) * el);
}

ValuePtr load_zip(const std::string& path) {
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> reader;
  try {
    reader = std::make_unique<caffe2::serialize::PyTorchStreamReader>(path);
  } catch (const c10::Error& e) {
    throw InputError(path + ": not a readable torch.save zip archive: " + first_line(e.what_without_backtrace()));
  }
  try {
    if (reader->hasRecord("byteorder")) {
      auto rec = reader->getRecord("byteorder");
      std::string order(static_cast<const char*>(std::get<0>(rec).get()), std::get<1>(rec));
      if (order != "little") throw InputError(path + ": byte order '" + order + "' is not supported (little-endian only)");
    }
    if (!reader->hasRecord("data.pkl")) throw InputError(path + ": zip archive has no data.pkl (not a torch.save file)");
    auto pkl = reader->getRecord("data.pkl");
    const char* p = static_cast<const char*>(std::get<0>(pkl).get());
    auto* rd = reader.get();
    Unpickler u(path, p, std::get<1>(pkl), [rd, &path](Storage& st) {
      const std::string rec_name = "data/" + st.key;
      if (!rd->hasRecord(rec_name)) throw InputError(path + ": storage record '" + rec_name + "' is missing");
      auto rec = rd->getRecord(rec_name);
      fill_storage(st, static_cast<const char*>(std::get<0>(rec).get()), std::get<1>(rec), path);
    });
    return u.run();
  } catch (const c10::Error& e) {
    throw InputError(path + ": unreadable torch.save archive: " + first_line(e.what_without_backtrace()));
  }
}

// The format torch.save wrote before 1.6 (and with _use_new_zipfile_serialization=False):
// pickle(magic number), pickle(protocol 1001), pickle(sys_info), pickle(object), pickle(list
// of storage keys), then per key: int64 element count and the raw bytes.
ValuePtr load_legacy(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError(path + ": cannot open");
  std::vector<char> buf((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const char* begin = buf.data();
  size_t pos = 0;
  auto next_pickle = [&]() -> ValuePtr {
    Unpickler u(path, begin + pos, buf.size() - pos, nullptr);
    ValuePtr v = u.run();
    pos += u.consumed(begin + pos);
    return v;
  };
  static const unsigned char kMagic[10] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
  ValuePtr magic = next_pickle();
  if (magic->kind != Value::BigInt || magic->s != std::string(reinterpret_cast<const char*>(kMagic), 10))
    throw InputError(path + ": not a torch.save file (no zip archive and no legacy magic number)");
  ValuePtr proto = next_pickle();
  if (proto->kind != Value::Int || proto->i != 1001)
    throw InputError(path + ": unsupported legacy torch.save protocol");
  next_pickle();  // sys_info: {'little_endian': ..., 'type_sizes': ...}
  Unpickler main(path, begin + pos, buf.size() - pos, nullptr);
  ValuePtr root = main.run();
  pos += main.consumed(begin + pos);
  ValuePtr keys = next_pickle();
  if (keys->kind != Value::List) throw InputError(path + ": legacy storage key list missing");
  for (const auto& k : keys->items) {
    if (k->kind != Value::Str) throw InputError(path + ": legacy storage key is not a string");
    auto it = main.storages().find(k->s);
    if (it == main.storages().end()) throw InputError(path + ": storage '" + k->s + "' is not referenced");
    Storage& st = *it->second;
    if (buf.size() - pos < 8) throw InputError(path + ": truncated (storage '" + k->s + "')");
    int64_t count;
    std::memcpy(&count, begin + pos, 8);
    pos += 8;
    const uint64_t el = c10::elementSize(st.dtype);
    if (count < 0 || static_cast<uint64_t>(count) > (buf.size() - pos) / el)
      throw InputError(path + ": truncated (storage '" + k->s + "' needs " + std::to_string(count) + " elements)");
    fill_storage(st, begin + pos, static_cast<uint64_t>(count) * el, path);
    pos += static_cast<size_t>(count) * el;
  }
  return root;
}

}  // namespace

at::Tensor convert_floating(const at::Tensor& t, at::ScalarType dtype) {
  return at::isFloatingType(t.scalar_type()) && t.scalar_type() != dtype ? t.to(dtype) : t;
}

TorchSaveFormat torch_save_format(const std::string& path) {
  auto head = read_prefix(path, 4);
  if (head.size() >= 4 && std::memcmp(head.data(), "PK\x03\x04", 4) == 0) return TorchSaveFormat::Zip;
  if (!head.empty() && static_cast<unsigned char>(head[0]) == 0x80) return TorchSaveFormat::Legacy;
  return TorchSaveFormat::Unknown;
}

StateDict load_torch_checkpoint(const std::string& path, at::ScalarType dtype, const std::string& nested_key) {
  if (!at::isFloatingType(dtype)) throw InputError(path + ": requested dtype must be floating");
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) throw InputError(path + ": no such file");
  ValuePtr root;
  switch (torch_save_format(path)) {
    case TorchSaveFormat::Zip: root = load_zip(path); break;
    case TorchSaveFormat::Legacy: root = load_legacy(path); break;
    case TorchSaveFormat::Unknown:
      throw InputError(path + ": not a torch.save file (neither a zip archive nor a pickle)");
  }
  return to_state_dict(find_state_dict(root, nested_key, path), path, dtype);
}

}  // namespace io
}  // namespace mamba_lrp
