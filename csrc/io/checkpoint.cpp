// Weight loading: safetensors (single or sharded) and torch.save files through a restricted
// unpickler of our own (see checkpoint.h for why not torch::pickle_load).
#include "csrc/io/checkpoint.h"

#include "csrc/io/errors.h"
#include "csrc/io/safetensors.h"

#include <ATen/ATen.h>
#include <caffe2/serialize/inline_container.h>
#include <nlohmann/json.hpp>

#include <cstring>
#include <fstream>
#include <memory>
#include <functional>
#include <sstream>
#include <sys/stat.h>
#include <unordered_map>
#include <vector>

namespace mamba_lrp {
namespace io {
namespace {

// ---------------------------------------------------------------------------------------
// Files and paths

bool is_dir(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
bool is_file(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}
bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}
std::string join(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  return dir.back() == '/' ? dir + name : dir + "/" + name;
}
std::string dirname_of(const std::string& p) {
  auto pos = p.find_last_of('/');
  if (pos == std::string::npos) return "";
  return pos == 0 ? "/" : p.substr(0, pos);
}
std::string first_line(const std::string& s) {
  auto pos = s.find('\n');
  return pos == std::string::npos ? s : s.substr(0, pos);
}

std::vector<char> read_prefix(const std::string& path, size_t n) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError(path + ": cannot open");
  std::vector<char> b(n);
  f.read(b.data(), static_cast<std::streamsize>(n));
  b.resize(static_cast<size_t>(f.gcount()));
  return b;
}

at::Tensor convert(const at::Tensor& t, at::ScalarType dtype) {
  return at::isFloatingType(t.scalar_type()) && t.scalar_type() != dtype ? t.to(dtype) : t;
}

// ---------------------------------------------------------------------------------------
// The restricted unpickler. Values are reference-counted so that the memo and the stack
// share objects the way Python's do (SETITEMS fills a dict already in the memo).

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
  ~Value() {
    std::vector<ValuePtr> pending;
    take_children(&pending);
    while (!pending.empty()) {
      ValuePtr v = std::move(pending.back());
      pending.pop_back();
      if (v && v.use_count() == 1) v->take_children(&pending);
    }  // v goes here, childless
  }
  void take_children(std::vector<ValuePtr>* out) {
    for (auto& x : items) out->push_back(std::move(x));
    for (auto& kv : dict) {
      out->push_back(std::move(kv.first));
      out->push_back(std::move(kv.second));
    }
    if (state) out->push_back(std::move(state));
    items.clear();
    dict.clear();
  }
};

ValuePtr make(Value::Kind k) {
  auto v = std::make_shared<Value>();
  v->kind = k;
  return v;
}
ValuePtr make_str(Value::Kind k, std::string s) {
  auto v = make(k);
  v->s = std::move(s);
  return v;
}
ValuePtr make_int(int64_t i) {
  auto v = make(Value::Int);
  v->i = i;
  return v;
}

const char* kind_name(Value::Kind k) {
  switch (k) {
    case Value::None: return "None";
    case Value::Bool: return "bool";
    case Value::Int: case Value::BigInt: return "int";
    case Value::Float: return "float";
    case Value::Str: return "str";
    case Value::Bytes: return "bytes";
    case Value::List: return "list";
    case Value::Tuple: return "tuple";
    case Value::Dict: return "dict";
    case Value::Global: return "class";
    case Value::StorageRef: return "storage";
    case Value::TensorRef: return "tensor";
    case Value::Object: return "object";
  }
  return "?";
}
// "a dict", "an int", ...
std::string a_kind(Value::Kind k) {
  const std::string n = kind_name(k);
  return (n[0] == 'i' || n[0] == 'o' ? "an " : "a ") + n;
}

at::ScalarType storage_dtype(const std::string& global, const std::string& path) {
  static const std::pair<const char*, at::ScalarType> kTypes[] = {
      {"torch.DoubleStorage", at::kDouble}, {"torch.FloatStorage", at::kFloat}, {"torch.HalfStorage", at::kHalf},
      {"torch.BFloat16Storage", at::kBFloat16}, {"torch.LongStorage", at::kLong}, {"torch.IntStorage", at::kInt},
      {"torch.ShortStorage", at::kShort}, {"torch.CharStorage", at::kChar}, {"torch.ByteStorage", at::kByte},
      {"torch.BoolStorage", at::kBool}, {"torch.UntypedStorage", at::kByte},
  };
  for (const auto& t : kTypes)
    if (global == t.first) return t.second;
  throw InputError(path + ": unsupported storage type " + global);
}

class Unpickler {
 public:
  // `load_storage(storage)` is called for each new storage key (zip format: reads the bytes).
  Unpickler(const std::string& path, const char* data, size_t size,
            std::function<void(Storage&)> load_storage)
      : path_(path), p_(data), end_(data + size), load_storage_(std::move(load_storage)) {}

  size_t consumed(const char* begin) const { return static_cast<size_t>(p_ - begin); }
  const std::map<std::string, std::shared_ptr<Storage>>& storages() const { return storages_; }

  ValuePtr run() {
    stack_.clear();
    marks_.clear();
    memo_.clear();
    while (true) {
      const uint8_t op = u8();
      switch (op) {
        case 0x80: u8(); break;          // PROTO
        case 0x95: take(8); break;       // FRAME (length hint only)
        case '.':                        // STOP
          if (stack_.size() != 1) bad("STOP with " + std::to_string(stack_.size()) + " values on the stack");
          return pop();
        case '(': marks_.push_back(stack_.size()); break;  // MARK
        case '0': pop(); break;                            // POP
        case '1': pop_mark(); break;                       // POP_MARK
        case '2': push(top()); break;                      // DUP
        case 'N': push(make(Value::None)); break;
        case 0x88: case 0x89: {                            // NEWTRUE / NEWFALSE
          auto v = make(Value::Bool);
          v->b = op == 0x88;
          push(v);
          break;
        }
        case 'J': { int32_t x; std::memcpy(&x, take(4), 4); push(make_int(x)); break; }   // BININT
        case 'K': push(make_int(u8())); break;                                            // BININT1
        case 'M': { uint16_t x; std::memcpy(&x, take(2), 2); push(make_int(x)); break; }  // BININT2
        case 0x8a: long_int(u8()); break;                                                 // LONG1
        case 0x8b: long_int(u32()); break;                                                // LONG4
        case 'I': {                                                                        // INT (text)
          std::string l = line();
          if (l == "00" || l == "01") {
            auto v = make(Value::Bool);
            v->b = l == "01";
            push(v);
          } else {
            push(make_int(parse_int(l)));
          }
          break;
        }
        case 'L': { std::string l = line(); if (!l.empty() && l.back() == 'L') l.pop_back(); push(make_int(parse_int(l))); break; }
        case 'G': {  // BINFLOAT, big-endian
          const char* b = take(8);
          uint64_t bits = 0;
          for (int k = 0; k < 8; ++k) bits = (bits << 8) | static_cast<uint8_t>(b[k]);
          auto v = make(Value::Float);
          std::memcpy(&v->f, &bits, 8);
          push(v);
          break;
        }
        case 'F': { auto v = make(Value::Float); v->f = std::strtod(line().c_str(), nullptr); push(v); break; }
        case 'X': push(make_str(Value::Str, bytes(u32()))); break;       // BINUNICODE
        case 0x8c: push(make_str(Value::Str, bytes(u8()))); break;       // SHORT_BINUNICODE
        case 0x8d: push(make_str(Value::Str, bytes(u64()))); break;      // BINUNICODE8
        case 'T': push(make_str(Value::Str, bytes(u32()))); break;       // BINSTRING
        case 'U': push(make_str(Value::Str, bytes(u8()))); break;        // SHORT_BINSTRING
        case 'B': push(make_str(Value::Bytes, bytes(u32()))); break;     // BINBYTES
        case 'C': push(make_str(Value::Bytes, bytes(u8()))); break;      // SHORT_BINBYTES
        case 0x8e: push(make_str(Value::Bytes, bytes(u64()))); break;    // BINBYTES8
        case ']': push(make(Value::List)); break;                        // EMPTY_LIST
        case ')': push(make(Value::Tuple)); break;                       // EMPTY_TUPLE
        case '}': push(make(Value::Dict)); break;                        // EMPTY_DICT
        case 0x8f: push(make(Value::List)); break;                       // EMPTY_SET (kept as a list)
        case 'l': case 't': case 0x91: {                                  // LIST / TUPLE / FROZENSET
          auto v = make(op == 't' ? Value::Tuple : Value::List);
          v->items = pop_mark();
          push(v);
          break;
        }
        case 0x85: case 0x86: case 0x87: {                               // TUPLE1..3
          const size_t n = op - 0x84;
          need(n);
          auto v = make(Value::Tuple);
          v->items.assign(stack_.end() - n, stack_.end());
          stack_.resize(stack_.size() - n);
          push(v);
          break;
        }
        case 'd': {                                                      // DICT
          auto v = make(Value::Dict);
          set_items(v, pop_mark());
          push(v);
          break;
        }
        case 'a': { auto x = pop(); append(top(), {x}); break; }         // APPEND
        case 'e': case 0x90: { auto xs = pop_mark(); append(top(), xs); break; }  // APPENDS / ADDITEMS
        case 's': {                                                      // SETITEM
          auto v = pop();
          auto k = pop();
          set_items(top(), {k, v});
          break;
        }
        case 'u': { auto kv = pop_mark(); set_items(top(), kv); break; } // SETITEMS
        case 'q': memo_[u8()] = top(); break;                            // BINPUT
        case 'r': memo_[u32()] = top(); break;                           // LONG_BINPUT
        case 0x94: { uint64_t k = memo_.size(); memo_[k] = top(); break; }  // MEMOIZE
        case 'p': memo_[static_cast<uint64_t>(parse_int(line()))] = top(); break;  // PUT
        case 'h': push(get(u8())); break;                                // BINGET
        case 'j': push(get(u32())); break;                               // LONG_BINGET
        case 'g': push(get(static_cast<uint64_t>(parse_int(line())))); break;  // GET
        case 'c': {                                                      // GLOBAL
          std::string mod = line();
          std::string name = line();
          push(make_str(Value::Global, mod + "." + name));
          break;
        }
        case 0x93: {                                                     // STACK_GLOBAL
          auto name = pop();
          auto mod = pop();
          if (name->kind != Value::Str || mod->kind != Value::Str) bad("STACK_GLOBAL needs two strings");
          push(make_str(Value::Global, mod->s + "." + name->s));
          break;
        }
        case 'R': {                                                      // REDUCE
          auto args = pop();
          auto fn = pop();
          push(call(fn, args));
          break;
        }
        case 0x81: {                                                     // NEWOBJ
          auto args = pop();
          auto cls = pop();
          push(call(cls, args));
          break;
        }
        case 0x92: {                                                     // NEWOBJ_EX
          pop();  // kwargs
          auto args = pop();
          auto cls = pop();
          push(call(cls, args));
          break;
        }
        case 'b': {                                                      // BUILD
          auto st = pop();
          auto obj = top();
          if (obj->kind == Value::Object) obj->state = st;
          // dict (OrderedDict's _metadata), tensor (hooks) and others: state ignored
          break;
        }
        case 'Q': push(persistent_load(pop())); break;                   // BINPERSID
        default: {
          std::ostringstream o;
          o << "unsupported pickle opcode 0x" << std::hex << static_cast<int>(op);
          bad(o.str());
        }
      }
    }
  }

 private:
  [[noreturn]] void bad(const std::string& what) const {
    throw InputError(path_ + ": unreadable pickle: " + what);
  }
  const char* take(uint64_t n) {
    if (n > static_cast<uint64_t>(end_ - p_)) bad("unexpected end of data");
    const char* r = p_;
    p_ += n;
    return r;
  }
  uint8_t u8() { return static_cast<uint8_t>(*take(1)); }
  uint32_t u32() { uint32_t x; std::memcpy(&x, take(4), 4); return x; }
  uint64_t u64() { uint64_t x; std::memcpy(&x, take(8), 8); return x; }
  std::string bytes(uint64_t n) { const char* b = take(n); return std::string(b, n); }
  std::string line() {
    const char* nl = static_cast<const char*>(std::memchr(p_, '\n', static_cast<size_t>(end_ - p_)));
    if (!nl) bad("unterminated text line");
    std::string s(p_, nl);
    p_ = nl + 1;
    return s;
  }
  int64_t parse_int(const std::string& s) const {
    try {
      size_t pos = 0;
      long long v = std::stoll(s, &pos);
      if (pos != s.size()) bad("bad integer '" + s + "'");
      return v;
    } catch (const std::logic_error&) {
      bad("bad integer '" + s + "'");
    }
  }
  void long_int(uint64_t n) {
    const char* b = take(n);
    if (n > 8) {  // kept as raw bytes (only the legacy format's magic number is that long)
      push(make_str(Value::BigInt, std::string(b, n)));
      return;
    }
    uint64_t x = 0;
    for (uint64_t k = 0; k < n; ++k) x |= static_cast<uint64_t>(static_cast<uint8_t>(b[k])) << (8 * k);
    if (n > 0 && n < 8 && (static_cast<uint8_t>(b[n - 1]) & 0x80)) x |= ~uint64_t(0) << (8 * n);  // sign-extend
    push(make_int(static_cast<int64_t>(x)));
  }

  void push(ValuePtr v) {
    if (stack_.size() > (1u << 24)) bad("stack too deep");
    stack_.push_back(std::move(v));
  }
  void need(size_t n) const {
    const size_t floor = marks_.empty() ? 0 : marks_.back();
    if (stack_.size() < floor + n) bad("stack underflow");
  }
  ValuePtr pop() {
    need(1);
    auto v = stack_.back();
    stack_.pop_back();
    return v;
  }
  ValuePtr top() const {
    need(1);
    return stack_.back();
  }
  std::vector<ValuePtr> pop_mark() {
    if (marks_.empty()) bad("no MARK on the stack");
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<ValuePtr> out(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return out;
  }
  ValuePtr get(uint64_t k) const {
    auto it = memo_.find(k);
    if (it == memo_.end()) bad("memo key " + std::to_string(k) + " not found");
    return it->second;
  }
  void append(const ValuePtr& target, const std::vector<ValuePtr>& xs) {
    if (target->kind == Value::List) {
      target->items.insert(target->items.end(), xs.begin(), xs.end());
    } else if (target->kind != Value::Object) {  // list subclasses: contents not needed
      bad("APPEND to " + a_kind(target->kind));
    }
  }
  void set_items(const ValuePtr& target, const std::vector<ValuePtr>& kv) {
    if (kv.size() % 2) bad("odd number of values for dict items");
    if (target->kind != Value::Dict) {
      if (target->kind == Value::Object) return;  // dict subclasses of unknown classes: skipped
      bad("SETITEM on " + a_kind(target->kind));
    }
    for (size_t k = 0; k < kv.size(); k += 2) {
      bool replaced = false;
      if (kv[k]->kind == Value::Str)
        for (auto& e : target->dict)
          if (e.first->kind == Value::Str && e.first->s == kv[k]->s) {
            e.second = kv[k + 1];
            replaced = true;
            break;
          }
      if (!replaced) target->dict.emplace_back(kv[k], kv[k + 1]);
    }
  }

  static int64_t as_int(const ValuePtr& v, const char* what, const Unpickler& u) {
    if (v->kind != Value::Int) u.bad(std::string(what) + " is not an int");
    return v->i;
  }
  std::vector<int64_t> int_tuple(const ValuePtr& v, const char* what) const {
    if (v->kind != Value::Tuple && v->kind != Value::List) bad(std::string(what) + " is not a tuple");
    std::vector<int64_t> out;
    for (const auto& x : v->items) out.push_back(as_int(x, what, *this));
    return out;
  }

  ValuePtr rebuild_tensor(const std::vector<ValuePtr>& a) {
    if (a.size() < 4) bad("_rebuild_tensor needs (storage, offset, size, stride)");
    if (a[0]->kind != Value::StorageRef) bad("_rebuild_tensor: first argument is not a storage");
    auto t = make(Value::TensorRef);
    t->storage = a[0]->storage;
    t->offset = as_int(a[1], "storage offset", *this);
    t->sizes = int_tuple(a[2], "tensor size");
    t->strides = int_tuple(a[3], "tensor stride");
    if (t->sizes.size() != t->strides.size()) bad("tensor size and stride have different lengths");
    return t;
  }

  // What REDUCE / NEWOBJ do: the few constructors torch.save uses; everything else becomes
  // an opaque object holding its arguments.
  ValuePtr call(const ValuePtr& fn, const ValuePtr& args) {
    if (args->kind != Value::Tuple) bad("call arguments are not a tuple");
    const auto& a = args->items;
    if (fn->kind == Value::Global) {
      const std::string& g = fn->s;
      if (g == "torch._utils._rebuild_tensor_v2" || g == "torch._utils._rebuild_tensor") return rebuild_tensor(a);
      if (g == "torch._utils._rebuild_parameter" || g == "torch._utils._rebuild_parameter_with_state") {
        if (a.empty() || a[0]->kind != Value::TensorRef) bad(g + ": first argument is not a tensor");
        return a[0];
      }
      if (g == "torch._tensor._rebuild_from_type_v2" || g == "torch._tensor._rebuild_from_type") {
        if (a.size() < 3 || a[2]->kind != Value::Tuple || a[0]->kind != Value::Global ||
            a[0]->s.rfind("torch._tensor._rebuild_from_type", 0) == 0)
          bad(g + ": bad arguments");
        return call(a[0], a[2]);  // one level only: a[0] is not this function again
      }
      if (g == "collections.OrderedDict" || g == "builtins.dict" || g == "__builtin__.dict") {
        auto d = make(Value::Dict);
        if (!a.empty() && a[0]->kind == Value::List)  // OrderedDict([(k, v), ...])
          for (const auto& kv : a[0]->items)
            if (kv->kind == Value::Tuple && kv->items.size() == 2) set_items(d, kv->items);
        return d;
      }
      if (g == "builtins.set" || g == "builtins.frozenset" || g == "builtins.list") {
        auto l = make(Value::List);
        if (!a.empty() && a[0]->kind == Value::List) l->items = a[0]->items;
        return l;
      }
    }
    auto o = make(Value::Object);
    o->s = fn->kind == Value::Global ? fn->s : std::string("?");
    o->items = a;
    return o;
  }

  ValuePtr persistent_load(const ValuePtr& pid) {
    if (pid->kind != Value::Tuple || pid->items.size() < 5 || pid->items[0]->kind != Value::Str ||
        pid->items[0]->s != "storage" || pid->items[1]->kind != Value::Global || pid->items[2]->kind != Value::Str)
      bad("persistent id is not ('storage', type, key, location, size)");
    if (pid->items.size() > 5 && pid->items[5]->kind != Value::None)
      bad("storage views (legacy format view_metadata) are not supported");
    const std::string& key = pid->items[2]->s;
    auto it = storages_.find(key);
    if (it == storages_.end()) {
      auto st = std::make_shared<Storage>();
      st->dtype = storage_dtype(pid->items[1]->s, path_);
      st->key = key;
      if (load_storage_) load_storage_(*st);
      it = storages_.emplace(key, st).first;
    }
    auto v = make(Value::StorageRef);
    v->storage = it->second;
    return v;
  }

  std::string path_;
  const char* p_;
  const char* end_;
  std::function<void(Storage&)> load_storage_;
  std::vector<ValuePtr> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, ValuePtr> memo_;
  std::map<std::string, std::shared_ptr<Storage>> storages_;
};

// The tensor a TensorRef describes, copied out of its storage after checking that every
// element it addresses lies inside the storage.
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
    out[name] = convert(materialize(*kv.second, path, name), dtype);
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

bool is_torch_file(const std::string& path) {
  auto head = read_prefix(path, 4);
  return (head.size() >= 4 && std::memcmp(head.data(), "PK\x03\x04", 4) == 0) ||
         (head.size() >= 1 && static_cast<unsigned char>(head[0]) == 0x80);
}

StateDict load_safetensors_file(const std::string& path, at::ScalarType dtype) {
  auto f = SafetensorsFile::open(path);
  StateDict out;
  for (const auto& name : f.names()) out[name] = convert(f.load(name), dtype);
  return out;
}

}  // namespace

StateDict load_torch_checkpoint(const std::string& path, at::ScalarType dtype, const std::string& nested_key) {
  if (!at::isFloatingType(dtype)) throw InputError(path + ": requested dtype must be floating");
  if (!is_file(path)) throw InputError(path + ": no such file");
  auto head = read_prefix(path, 4);
  ValuePtr root;
  if (head.size() >= 4 && std::memcmp(head.data(), "PK\x03\x04", 4) == 0) {
    root = load_zip(path);
  } else if (!head.empty() && static_cast<unsigned char>(head[0]) == 0x80) {
    root = load_legacy(path);
  } else {
    throw InputError(path + ": not a torch.save file (neither a zip archive nor a pickle)");
  }
  return to_state_dict(find_state_dict(root, nested_key, path), path, dtype);
}

StateDict load_sharded_checkpoint(const std::string& index_path, at::ScalarType dtype) {
  std::ifstream f(index_path);
  if (!f) throw InputError(index_path + ": cannot open");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(f);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(index_path + ": invalid JSON: " + first_line(e.what()));
  }
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
    throw InputError(index_path + ": no \"weight_map\" object");
  const std::string dir = dirname_of(index_path);
  std::map<std::string, std::vector<std::string>> by_shard;  // shard file -> tensor names
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    if (!it.value().is_string())
      throw InputError(index_path + ": tensor '" + it.key() + "': shard name is not a string");
    const std::string shard = it.value().get<std::string>();
    if (shard.empty() || shard[0] == '/' || shard.find("..") != std::string::npos)
      throw InputError(index_path + ": tensor '" + it.key() + "': shard '" + shard +
                       "' must be a file name relative to the index");
    by_shard[shard].push_back(it.key());
  }
  if (by_shard.empty()) throw InputError(index_path + ": \"weight_map\" is empty");
  for (const auto& s : by_shard)
    if (!is_file(join(dir, s.first)))
      throw InputError(index_path + ": shard '" + s.first + "' (holding tensor '" + s.second.front() +
                       "') does not exist");
  StateDict out;
  for (const auto& s : by_shard) {
    const std::string shard_path = join(dir, s.first);
    if (ends_with(s.first, ".safetensors")) {
      auto sf = SafetensorsFile::open(shard_path);
      for (const auto& name : s.second) {
        if (!sf.contains(name))
          throw InputError(shard_path + ": tensor '" + name + "' (listed in " + index_path + ") is not in the shard");
        out[name] = convert(sf.load(name), dtype);
      }
    } else {
      StateDict sd = load_torch_checkpoint(shard_path, dtype);
      for (const auto& name : s.second) {
        auto it = sd.find(name);
        if (it == sd.end())
          throw InputError(shard_path + ": tensor '" + name + "' (listed in " + index_path + ") is not in the shard");
        out[name] = it->second;
      }
    }
  }
  return out;
}

StateDict load_state_dict(const std::string& model_dir_or_file, at::ScalarType dtype, const std::string& nested_key) {
  const std::string& p = model_dir_or_file;
  if (!at::isFloatingType(dtype)) throw InputError(p + ": requested dtype must be floating");
  if (is_dir(p)) {
    for (const char* name : {"model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                             "pytorch_model.bin.index.json"}) {
      const std::string f = join(p, name);
      if (!is_file(f)) continue;
      if (ends_with(f, ".json")) return load_sharded_checkpoint(f, dtype);
      if (ends_with(f, ".safetensors")) return load_safetensors_file(f, dtype);
      return load_torch_checkpoint(f, dtype, nested_key);
    }
    throw InputError(p + ": no model.safetensors, model.safetensors.index.json or pytorch_model.bin in the directory");
  }
  if (!is_file(p)) throw InputError(p + ": no such file or directory");
  if (ends_with(p, ".safetensors")) return load_safetensors_file(p, dtype);
  if (ends_with(p, ".json")) return load_sharded_checkpoint(p, dtype);
  if (is_torch_file(p)) return load_torch_checkpoint(p, dtype, nested_key);
  return load_safetensors_file(p, dtype);
}

}  // namespace io
}  // namespace mamba_lrp
