// The restricted unpickler: the pickle opcodes torch.save emits (protocol 2, and the text
// forms of protocol 0/1 that old files contain), and the few constructors it calls.
#include "csrc/io/pickle.h"

#include <cstring>
#include <sstream>
#include <stdexcept>

#include "csrc/io/errors.h"

namespace mamba_lrp {
namespace io {
namespace pickle {

Value::~Value() {
  std::vector<ValuePtr> pending;
  take_children(&pending);
  while (!pending.empty()) {
    ValuePtr v = std::move(pending.back());
    pending.pop_back();
    if (v && v.use_count() == 1) v->take_children(&pending);
  }  // v goes here, childless
}

void Value::take_children(std::vector<ValuePtr>* out) {
  for (auto& x : items) out->push_back(std::move(x));
  for (auto& kv : dict) {
    out->push_back(std::move(kv.first));
    out->push_back(std::move(kv.second));
  }
  if (state) out->push_back(std::move(state));
  items.clear();
  dict.clear();
}

namespace {

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

}  // namespace

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

Unpickler::Unpickler(const std::string& path, const char* data, size_t size,
                     std::function<void(Storage&)> load_storage)
    : path_(path), p_(data), end_(data + size), load_storage_(std::move(load_storage)) {}

ValuePtr Unpickler::run() {
  stack_.clear();
  marks_.clear();
  memo_.clear();
  try {
    ValuePtr root = run_opcodes();
    if (has_cycle()) bad("a container holds itself (self-referencing pickles are not supported)");
    mutated_.clear();
    return root;
  } catch (...) {
    break_references();
    throw;
  }
}

bool Unpickler::has_cycle() const {
  // Depth-first search without recursion from every changed container; a child found on
  // the current path closes a cycle.
  enum : char { kOnPath = 1, kDone = 2 };
  std::unordered_map<const Value*, char> seen;
  auto child = [](const Value* v, size_t k) -> const Value* {
    if (k < v->items.size()) return v->items[k].get();
    k -= v->items.size();
    if (k < 2 * v->dict.size()) return (k % 2 ? v->dict[k / 2].second : v->dict[k / 2].first).get();
    k -= 2 * v->dict.size();
    return k == 0 && v->state ? v->state.get() : nullptr;
  };
  auto has_children = [](const Value* v) { return !v->items.empty() || !v->dict.empty() || v->state; };
  for (const auto& w : mutated_) {
    const ValuePtr start = w.lock();
    if (!start || seen.count(start.get())) continue;
    std::vector<std::pair<const Value*, size_t>> path{{start.get(), 0}};
    seen[start.get()] = kOnPath;
    while (!path.empty()) {
      auto& [v, k] = path.back();
      const Value* c = child(v, k++);
      if (!c) {
        seen[v] = kDone;
        path.pop_back();
        continue;
      }
      if (!has_children(c)) continue;
      auto it = seen.find(c);
      if (it == seen.end()) {
        seen[c] = kOnPath;
        path.emplace_back(c, 0);
      } else if (it->second == kOnPath) {
        return true;
      }
    }
  }
  return false;
}

void Unpickler::break_references() {
  for (const auto& w : mutated_)
    if (ValuePtr v = w.lock()) {
      std::vector<ValuePtr> children;
      v->items.swap(children);
      for (auto& kv : v->dict) {
        children.push_back(std::move(kv.first));
        children.push_back(std::move(kv.second));
      }
      v->dict.clear();
      if (v->state) children.push_back(std::move(v->state));
    }  // children released here, after v no longer holds them
  mutated_.clear();
}

ValuePtr Unpickler::run_opcodes() {
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
        if (obj->kind == Value::Object) {
          obj->state = st;
          mutated(obj);
        }
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

void Unpickler::bad(const std::string& what) const {
  throw InputError(path_ + ": unreadable pickle: " + what);
}
const char* Unpickler::take(uint64_t n) {
  if (n > static_cast<uint64_t>(end_ - p_)) bad("unexpected end of data");
  const char* r = p_;
  p_ += n;
  return r;
}
uint8_t Unpickler::u8() { return static_cast<uint8_t>(*take(1)); }
uint32_t Unpickler::u32() { uint32_t x; std::memcpy(&x, take(4), 4); return x; }
uint64_t Unpickler::u64() { uint64_t x; std::memcpy(&x, take(8), 8); return x; }
std::string Unpickler::bytes(uint64_t n) { const char* b = take(n); return std::string(b, n); }
std::string Unpickler::line() {
  const char* nl = static_cast<const char*>(std::memchr(p_, '\n', static_cast<size_t>(end_ - p_)));
  if (!nl) bad("unterminated text line");
  std::string s(p_, nl);
  p_ = nl + 1;
  return s;
}
int64_t Unpickler::parse_int(const std::string& s) const {
  try {
    size_t pos = 0;
    long long v = std::stoll(s, &pos);
    if (pos != s.size()) bad("bad integer '" + s + "'");
    return v;
  } catch (const std::logic_error&) {
    bad("bad integer '" + s + "'");
  }
}
void Unpickler::long_int(uint64_t n) {
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

void Unpickler::push(ValuePtr v) {
  if (stack_.size() > (1u << 24)) bad("stack too deep");
  stack_.push_back(std::move(v));
}
void Unpickler::need(size_t n) const {
  const size_t floor = marks_.empty() ? 0 : marks_.back();
  if (stack_.size() < floor + n) bad("stack underflow");
}
ValuePtr Unpickler::pop() {
  need(1);
  auto v = stack_.back();
  stack_.pop_back();
  return v;
}
ValuePtr Unpickler::top() const {
  need(1);
  return stack_.back();
}
std::vector<ValuePtr> Unpickler::pop_mark() {
  if (marks_.empty()) bad("no MARK on the stack");
  const size_t m = marks_.back();
  marks_.pop_back();
  std::vector<ValuePtr> out(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
  stack_.resize(m);
  return out;
}
ValuePtr Unpickler::get(uint64_t k) const {
  auto it = memo_.find(k);
  if (it == memo_.end()) bad("memo key " + std::to_string(k) + " not found");
  return it->second;
}
void Unpickler::append(const ValuePtr& target, const std::vector<ValuePtr>& xs) {
  if (target->kind == Value::List) {
    target->items.insert(target->items.end(), xs.begin(), xs.end());
    mutated(target);
  } else if (target->kind != Value::Object) {  // list subclasses: contents not needed
    bad("APPEND to " + a_kind(target->kind));
  }
}
void Unpickler::set_items(const ValuePtr& target, const std::vector<ValuePtr>& kv) {
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
  mutated(target);
}

int64_t Unpickler::as_int(const ValuePtr& v, const char* what) const {
  if (v->kind != Value::Int) bad(std::string(what) + " is not an int");
  return v->i;
}
std::vector<int64_t> Unpickler::int_tuple(const ValuePtr& v, const char* what) const {
  if (v->kind != Value::Tuple && v->kind != Value::List) bad(std::string(what) + " is not a tuple");
  std::vector<int64_t> out;
  for (const auto& x : v->items) out.push_back(as_int(x, what));
  return out;
}

ValuePtr Unpickler::rebuild_tensor(const std::vector<ValuePtr>& a) {
  if (a.size() < 4) bad("_rebuild_tensor needs (storage, offset, size, stride)");
  if (a[0]->kind != Value::StorageRef) bad("_rebuild_tensor: first argument is not a storage");
  auto t = make(Value::TensorRef);
  t->storage = a[0]->storage;
  t->offset = as_int(a[1], "storage offset");
  t->sizes = int_tuple(a[2], "tensor size");
  t->strides = int_tuple(a[3], "tensor stride");
  if (t->sizes.size() != t->strides.size()) bad("tensor size and stride have different lengths");
  return t;
}

// What REDUCE / NEWOBJ do: the few constructors torch.save uses; everything else becomes
// an opaque object holding its arguments.
ValuePtr Unpickler::call(const ValuePtr& fn, const ValuePtr& args) {
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

ValuePtr Unpickler::persistent_load(const ValuePtr& pid) {
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

}  // namespace pickle
}  // namespace io
}  // namespace mamba_lrp
