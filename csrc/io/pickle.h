// The restricted unpickler behind our torch.save readers (see checkpoint.h for why not
// torch::pickle_load). It runs no Python code: it understands dicts, lists, tuples, scalars,
// strings, storages and tensors (torch._utils._rebuild_tensor_v2, _rebuild_parameter); any
// other class becomes an opaque object holding its constructor arguments.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace mamba_lrp {
namespace io {
namespace pickle {

// Values are reference-counted so that the memo and the stack share objects the way
// Python's do (SETITEMS fills a dict already in the memo).
struct Value;
using ValuePtr = std::shared_ptr<Value>;

struct Storage {
  at::ScalarType dtype = at::kByte;
  std::string key;
  at::Tensor data;  // 1-D, filled when the bytes are read (at once for zip, after the pickle for legacy)
};

struct Value {
  enum Kind { None, Bool, Int, BigInt, Float, Str, Bytes, List, Tuple, Dict, Global, StorageRef, TensorRef, Object };
  Kind kind = None;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;                                  // Str, Bytes, BigInt (raw bytes), Global ("module.name"), Object (its class)
  std::vector<ValuePtr> items;                    // List, Tuple, Object (constructor args)
  std::vector<std::pair<ValuePtr, ValuePtr>> dict;  // Dict (in insertion order)
  std::shared_ptr<Storage> storage;               // StorageRef, TensorRef
  int64_t offset = 0;                             // TensorRef
  std::vector<int64_t> sizes, strides;            // TensorRef
  ValuePtr state;                                 // Object after BUILD

  Value() = default;
  Value(const Value&) = delete;
  Value& operator=(const Value&) = delete;
  // Iterative teardown: a pickle can nest lists a million deep in 2 MB, and the default
  // recursive destruction of such a chain would overflow the stack.
  ~Value();

 private:
  void take_children(std::vector<ValuePtr>* out);
};

// "dict", "int", ... as Python names the kind; a_kind: "a dict", "an int", ...
const char* kind_name(Value::Kind k);
std::string a_kind(Value::Kind k);

class Unpickler {
 public:
  // Reads one pickle from data[0, size); `path` names the file in errors (InputError).
  // `load_storage(storage)` is called for each new storage key (zip format: reads the bytes).
  Unpickler(const std::string& path, const char* data, size_t size, std::function<void(Storage&)> load_storage);

  ValuePtr run();
  size_t consumed(const char* begin) const { return static_cast<size_t>(p_ - begin); }
  const std::map<std::string, std::shared_ptr<Storage>>& storages() const { return storages_; }

 private:
  ValuePtr run_opcodes();
  [[noreturn]] void bad(const std::string& what) const;
  const char* take(uint64_t n);
  uint8_t u8();
  uint32_t u32();
  uint64_t u64();
  std::string bytes(uint64_t n);
  std::string line();
  int64_t parse_int(const std::string& s) const;
  void long_int(uint64_t n);

  void push(ValuePtr v);
  void need(size_t n) const;
  ValuePtr pop();
  ValuePtr top() const;
  std::vector<ValuePtr> pop_mark();
  ValuePtr get(uint64_t k) const;
  void append(const ValuePtr& target, const std::vector<ValuePtr>& xs);
  void set_items(const ValuePtr& target, const std::vector<ValuePtr>& kv);

  int64_t as_int(const ValuePtr& v, const char* what) const;
  std::vector<int64_t> int_tuple(const ValuePtr& v, const char* what) const;
  // Cycles: only a container changed after it was made (APPEND, SETITEM, BUILD) can close
  // one, so those are remembered; a pickle whose containers reach themselves is refused and
  // its references broken, as they are after any error (reference counting alone would
  // never free a cycle).
  void mutated(const ValuePtr& v) { mutated_.push_back(v); }
  bool has_cycle() const;
  void break_references();

  ValuePtr rebuild_tensor(const std::vector<ValuePtr>& a);
  ValuePtr call(const ValuePtr& fn, const ValuePtr& args);
  ValuePtr persistent_load(const ValuePtr& pid);

  std::string path_;
  const char* p_;
  const char* end_;
  std::function<void(Storage&)> load_storage_;
  std::vector<ValuePtr> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, ValuePtr> memo_;
  std::map<std::string, std::shared_ptr<Storage>> storages_;
  std::vector<std::weak_ptr<Value>> mutated_;
};

}  // namespace pickle
}  // namespace io
}  // namespace mamba_lrp
