// Byte-level BPE from a Hugging Face tokenizer.json (see tokenizer.h for what is implemented).
#include "csrc/io/tokenizer.h"

#include "csrc/io/errors.h"
#include "csrc/io/utf8.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <climits>
#include <fstream>
#include <sstream>

namespace mamba_lrp {
namespace io {
namespace tokenizer_detail {

using namespace utf8;

// GPT-2's byte <-> unicode alphabet.
struct ByteAlphabet {
  std::string byte_to_str[256];
  std::unordered_map<uint32_t, uint8_t> cp_to_byte;
  ByteAlphabet() {
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool self = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      const uint32_t cp = self ? static_cast<uint32_t>(b) : next++;
      append_utf8(&byte_to_str[b], cp);
      cp_to_byte[cp] = static_cast<uint8_t>(b);
    }
  }
};
const ByteAlphabet& alphabet() {
  static const ByteAlphabet a;
  return a;
}

// GPT-2's pre-tokenization pattern, by hand (see tokenizer.h). `s` is valid UTF-8.
std::vector<std::string> gpt2_split(const std::string& s) {
  std::vector<uint32_t> cps;
  std::vector<size_t> pos;
  for (size_t i = 0; i < s.size();) {
    uint32_t cp = 0;
    size_t len = next_utf8(s, i, &cp);
    if (len == 0) len = 1;  // not reached: callers validate
    cps.push_back(cp);
    pos.push_back(i);
    i += len;
  }
  const size_t n = cps.size();
  pos.push_back(s.size());
  auto match_at = [&](size_t i) -> size_t {
    const uint32_t c = cps[i];
    if (c == '\'' && i + 1 < n) {  // 's|'t|'re|'ve|'m|'ll|'d
      const uint32_t c1 = cps[i + 1];
      if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return i + 2;
      if (i + 2 < n) {
        const uint32_t c2 = cps[i + 2];
        if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) return i + 3;
      }
    }
    const size_t start = (c == ' ' && i + 1 < n) ? i + 1 : i;  // the optional leading space
    for (bool (*cls)(uint32_t) : {is_letter, is_number, is_other}) {  //  ?\p{L}+ |  ?\p{N}+ |  ?[^\s\p{L}\p{N}]+
      if (cls(cps[start])) {
        size_t j = start;
        while (j < n && cls(cps[j])) ++j;
        return j;
      }
    }
    // \s+(?!\S) | \s+ : a whitespace run, leaving its last character to the next word
    // when a non-space follows and the run is longer than one.
    size_t j = i;
    while (j < n && is_space(cps[j])) ++j;
    if (j == i) return i + 1;  // not reached: every code point is in one of the classes
    if (j < n && j - i >= 2) return j - 1;
    return j;
  };
  std::vector<std::string> out;
  for (size_t i = 0; i < n;) {
    size_t j = match_at(i);
    out.push_back(s.substr(pos[i], pos[j] - pos[i]));
    i = j;
  }
  return out;
}

[[noreturn]] void tok_fail(const std::string& origin, const std::string& what) { throw InputError(origin + ": " + what); }

// o[key] when o is an object and that entry is a string, "" otherwise (a "type" that is a
// number, a normalizer that is a list: refused by the caller as unsupported).
std::string json_string(const nlohmann::json& o, const char* key) {
  if (!o.is_object()) return "";
  auto it = o.find(key);
  return it != o.end() && it->is_string() ? it->get<std::string>() : "";
}

bool json_bool(const nlohmann::json& o, const char* key, bool dflt) {
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) return dflt;
  return it->is_boolean() ? it->get<bool>() : dflt;
}

}  // namespace tokenizer_detail

using namespace tokenizer_detail;

namespace {
void check_utf8(const std::string& text) {
  for (size_t i = 0; i < text.size();) {
    uint32_t cp;
    size_t len = next_utf8(text, i, &cp);
    if (len == 0) throw InputError("text is not valid UTF-8 (byte " + std::to_string(i) + ")");
    i += len;
  }
}
}  // namespace

std::vector<std::string> gpt2_pretokenize(const std::string& text) {
  check_utf8(text);
  return gpt2_split(text);
}

BpeTokenizer BpeTokenizer::from_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError(path + ": cannot open the tokenizer file");
  f.seekg(0, std::ios::end);
  const std::streamoff size = f.tellg();
  if (size < 0 || static_cast<uint64_t>(size) > kMaxTokenizerBytes)
    throw InputError(path + ": tokenizer file of " + std::to_string(size) + " bytes exceeds the limit of " +
                     std::to_string(kMaxTokenizerBytes));
  f.seekg(0, std::ios::beg);
  std::ostringstream ss;
  ss << f.rdbuf();
  return from_json_string(ss.str(), path);
}

BpeTokenizer BpeTokenizer::from_json_string(const std::string& json, const std::string& origin) {
  // Every field is checked before use; this turns a field of a shape no check foresaw into
  // the same one-line refusal rather than a JSON library exception.
  try {
    return parse_json(json, origin);
  } catch (const nlohmann::json::exception& e) {
    tok_fail(origin, std::string("malformed tokenizer: ") + first_line(e.what()));
  }
}

BpeTokenizer BpeTokenizer::parse_json(const std::string& json, const std::string& origin) {
  if (json.size() > kMaxTokenizerBytes)
    tok_fail(origin, "tokenizer file of " + std::to_string(json.size()) + " bytes exceeds the limit of " +
                         std::to_string(kMaxTokenizerBytes));
  BpeTokenizer t;
  t.origin_ = origin;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(json);
  } catch (const nlohmann::json::exception& e) {
    tok_fail(origin, std::string("invalid JSON: ") + e.what());
  }
  if (!j.is_object()) tok_fail(origin, "not a JSON object");

  // model
  auto mi = j.find("model");
  if (mi == j.end() || !mi->is_object()) tok_fail(origin, "no \"model\" object");
  const auto& model = *mi;
  if (model.contains("type") && !(model["type"].is_string() && model["type"].get<std::string>() == "BPE"))
    tok_fail(origin, "model type " + model["type"].dump() + " is not supported (only \"BPE\")");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    auto it = model.find(key);
    if (it != model.end() && !it->is_null() && !(it->is_string() && it->get<std::string>().empty()))
      tok_fail(origin, std::string("BPE option \"") + key + "\" is not supported");
  }
  if (json_bool(model, "byte_fallback", false)) tok_fail(origin, "BPE option \"byte_fallback\" is not supported");
  t.ignore_merges_ = json_bool(model, "ignore_merges", false);

  auto vi = model.find("vocab");
  if (vi == model.end() || !vi->is_object()) tok_fail(origin, "model has no \"vocab\" object");
  int64_t max_id = -1;
  for (auto it = vi->begin(); it != vi->end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 || it.value().get<int64_t>() > INT32_MAX)
      tok_fail(origin, "vocab entry '" + it.key() + "' has no valid id");
    const int64_t id = it.value().get<int64_t>();
    t.vocab_[it.key()] = id;
    max_id = std::max(max_id, id);
  }

  auto ai = j.find("added_tokens");
  if (ai != j.end() && !ai->is_null()) {
    if (!ai->is_array()) tok_fail(origin, "\"added_tokens\" is not an array");
    for (const auto& a : *ai) {
      if (!a.is_object() || !a.contains("content") || !a["content"].is_string() || !a.contains("id") ||
          !a["id"].is_number_integer() || a["id"].get<int64_t>() < 0 || a["id"].get<int64_t>() > INT32_MAX)
        tok_fail(origin, "added token " + a.dump() + " needs a string \"content\" and an id");
      AddedToken at;
      at.content = a["content"].get<std::string>();
      at.id = a["id"].get<int64_t>();
      at.special = json_bool(a, "special", false);
      at.single_word = json_bool(a, "single_word", false);
      at.lstrip = json_bool(a, "lstrip", false);
      at.rstrip = json_bool(a, "rstrip", false);
      at.normalized = json_bool(a, "normalized", !at.special);
      if (at.content.empty()) continue;
      max_id = std::max(max_id, at.id);
      t.added_.push_back(at);
    }
  }
  // Ids are keys of a map, not indexes of a table: an id of 2^31 costs one entry, not a
  // table of 64 GiB.
  const size_t entries = t.vocab_.size() + t.added_.size();
  if (entries > kMaxTokenizerEntries)
    tok_fail(origin, std::to_string(entries) + " vocabulary entries exceed the limit of " +
                         std::to_string(kMaxTokenizerEntries));
  t.vocab_size_ = max_id + 1;
  for (const auto& kv : t.vocab_) t.id_to_token_[kv.second] = {kv.first, false};
  for (const auto& a : t.added_) t.id_to_token_[a.id] = {a.content, true};
  // longest first, so that the first match found at a position is the longest there
  std::stable_sort(t.added_.begin(), t.added_.end(),
                   [](const AddedToken& a, const AddedToken& b) { return a.content.size() > b.content.size(); });

  auto ui = model.find("unk_token");
  if (ui != model.end() && !ui->is_null()) {
    if (!ui->is_string()) tok_fail(origin, "\"unk_token\" is not a string");
    auto v = t.vocab_.find(ui->get<std::string>());
    if (v == t.vocab_.end()) tok_fail(origin, "unk_token '" + ui->get<std::string>() + "' is not in the vocabulary");
    t.unk_id_ = v->second;
  }

  auto mg = model.find("merges");
  if (mg == model.end() || !mg->is_array()) tok_fail(origin, "model has no \"merges\" array");
  int rank = 0;
  for (const auto& m : *mg) {
    std::string a, b;
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        tok_fail(origin, "merge \"" + s + "\" is not two symbols separated by one space");
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      a = m[0].get<std::string>();
      b = m[1].get<std::string>();
    } else {
      tok_fail(origin, "merge " + m.dump() + " is neither \"a b\" nor [\"a\", \"b\"]");
    }
    for (const std::string& tok : {a, b, a + b}) {
      if (!t.vocab_.count(tok))
        tok_fail(origin, "merge " + m.dump() + ": '" + tok + "' is not in the vocabulary");
    }
    t.merge_rank_.emplace(a + '\0' + b, rank++);  // the first occurrence keeps its rank
  }

  // normalizer: none or NFC (not applied, see tokenizer.h)
  auto ni = j.find("normalizer");
  if (ni != j.end() && !ni->is_null()) {
    const std::string type = json_string(*ni, "type");
    const bool empty_seq = type == "Sequence" && ni->contains("normalizers") && (*ni)["normalizers"].is_array() &&
                           (*ni)["normalizers"].empty();
    if (type != "NFC" && !empty_seq) tok_fail(origin, "normalizer " + ni->dump() + " is not supported (only none or NFC)");
  }

  // pre-tokenizer: ByteLevel, alone or as the only member of a Sequence
  auto pi = j.find("pre_tokenizer");
  const nlohmann::json* bl = nullptr;
  if (pi != j.end() && pi->is_object()) {
    const std::string type = json_string(*pi, "type");
    if (type == "ByteLevel") {
      bl = &*pi;
    } else if (type == "Sequence" && pi->contains("pretokenizers") && (*pi)["pretokenizers"].is_array() &&
               (*pi)["pretokenizers"].size() == 1 && json_string((*pi)["pretokenizers"][0], "type") == "ByteLevel") {
      bl = &(*pi)["pretokenizers"][0];
    }
  }
  if (!bl) {
    tok_fail(origin, "pre_tokenizer " + (pi == j.end() ? std::string("null") : pi->dump()) +
                         " is not supported (a ByteLevel pre-tokenizer is required)");
  }
  t.add_prefix_space_ = json_bool(*bl, "add_prefix_space", true);
  t.use_regex_ = json_bool(*bl, "use_regex", true);
  return t;
}

int64_t BpeTokenizer::token_to_id(const std::string& token) const {
  for (const auto& a : added_)
    if (a.content == token) return a.id;
  auto it = vocab_.find(token);
  return it == vocab_.end() ? -1 : it->second;
}

const std::string& BpeTokenizer::token_string(int64_t id) const {
  auto it = id_to_token_.find(id);
  if (it == id_to_token_.end() || it->second.text.empty())
    throw InputError(origin_ + ": token id " + std::to_string(id) + " is not in the vocabulary (size " +
                     std::to_string(vocab_size()) + ")");
  return it->second.text;
}

std::string BpeTokenizer::raw_bytes(int64_t id) const {
  const std::string& tok = token_string(id);
  if (id_to_token_.at(id).added) return tok;
  const auto& ab = alphabet();
  std::string out;
  for (size_t i = 0; i < tok.size();) {
    uint32_t cp = 0;
    size_t len = next_utf8(tok, i, &cp);
    if (len == 0) {  // not UTF-8 (cannot come from JSON): keep the byte
      out.push_back(tok[i]);
      ++i;
      continue;
    }
    auto it = ab.cp_to_byte.find(cp);
    if (it != ab.cp_to_byte.end()) out.push_back(static_cast<char>(it->second));
    else out.append(tok, i, len);
    i += len;
  }
  return out;
}

std::string BpeTokenizer::decode(int64_t id) const { return sanitize_utf8(raw_bytes(id)); }

std::string BpeTokenizer::decode(const std::vector<int64_t>& ids) const {
  std::string out;
  for (int64_t id : ids) out += raw_bytes(id);
  return sanitize_utf8(out);
}

// One word after pre-tokenization: bytes -> alphabet symbols -> merges -> ids.
void BpeTokenizer::encode_piece(const std::string& piece, std::vector<int64_t>* out) const {
  const auto& ab = alphabet();
  std::vector<std::string> sym;
  sym.reserve(piece.size());
  std::string whole;
  for (unsigned char c : piece) {
    sym.push_back(ab.byte_to_str[c]);
    whole += ab.byte_to_str[c];
  }
  if (ignore_merges_) {
    auto it = vocab_.find(whole);
    if (it != vocab_.end()) {
      out->push_back(it->second);
      return;
    }
  }
  while (sym.size() > 1) {
    int best = INT_MAX;
    std::string best_key;
    for (size_t i = 0; i + 1 < sym.size(); ++i) {
      auto it = merge_rank_.find(sym[i] + '\0' + sym[i + 1]);
      if (it != merge_rank_.end() && it->second < best) {
        best = it->second;
        best_key = it->first;
      }
    }
    if (best == INT_MAX) break;
    std::vector<std::string> next;
    next.reserve(sym.size());
    for (size_t i = 0; i < sym.size();) {
      if (i + 1 < sym.size() && sym[i] + '\0' + sym[i + 1] == best_key) {
        next.push_back(sym[i] + sym[i + 1]);
        i += 2;
      } else {
        next.push_back(sym[i]);
        i += 1;
      }
    }
    sym.swap(next);
  }
  for (const auto& s : sym) {
    auto it = vocab_.find(s);
    if (it != vocab_.end()) {
      out->push_back(it->second);
    } else if (unk_id_ >= 0) {
      out->push_back(unk_id_);
    } else {
      throw InputError(origin_ + ": symbol '" + s + "' is not in the vocabulary and there is no unk_token");
    }
  }
}

std::vector<int64_t> BpeTokenizer::encode(const std::string& text) const {
  if (text.size() > kMaxTextBytes)
    throw InputError("text of " + std::to_string(text.size()) + " bytes exceeds the limit of " +
                     std::to_string(kMaxTextBytes) + " bytes");
  check_utf8(text);
  // Pieces of text, or added tokens (id >= 0).
  struct Seg {
    std::string text;
    int64_t id;
  };
  std::vector<Seg> segs{{text, -1}};
  auto prev_cp = [](const std::string& s, size_t end, uint32_t* cp) -> size_t {  // code point ending at `end`
    size_t b = end;
    while (b > 0 && (static_cast<uint8_t>(s[b - 1]) & 0xC0) == 0x80) --b;
    if (b == 0) return 0;
    --b;
    next_utf8(s, b, cp);
    return end - b;
  };
  for (int pass = 0; pass < 2 && !added_.empty(); ++pass) {
    const bool normalized = pass == 1;
    std::vector<Seg> next;
    for (const Seg& seg : segs) {
      if (seg.id >= 0) {
        next.push_back(seg);
        continue;
      }
      const std::string& s = seg.text;
      size_t emitted = 0;  // s[emitted, i) is plain text not yet pushed
      size_t i = 0;
      while (i < s.size()) {
        const AddedToken* hit = nullptr;
        for (const auto& a : added_) {
          if (a.normalized != normalized || s.compare(i, a.content.size(), a.content) != 0) continue;
          if (a.single_word) {
            uint32_t cp = 0;
            if (i > 0 && prev_cp(s, i, &cp) && is_word_char(cp)) continue;
            const size_t e = i + a.content.size();
            if (e < s.size() && next_utf8(s, e, &cp) && is_word_char(cp)) continue;
          }
          hit = &a;
          break;
        }
        if (!hit) {
          uint32_t cp;
          size_t len = next_utf8(s, i, &cp);
          i += len ? len : 1;
          continue;
        }
        size_t start = i, end = i + hit->content.size();
        if (hit->lstrip) {
          uint32_t cp = 0;
          size_t len;
          while (start > emitted && (len = prev_cp(s, start, &cp)) && is_space(cp)) start -= len;
        }
        if (hit->rstrip) {
          uint32_t cp = 0;
          size_t len;
          while (end < s.size() && (len = next_utf8(s, end, &cp)) && is_space(cp)) end += len;
        }
        if (start > emitted) next.push_back({s.substr(emitted, start - emitted), -1});
        next.push_back({hit->content, hit->id});
        emitted = i = end;
      }
      if (emitted < s.size()) next.push_back({s.substr(emitted), -1});
    }
    segs.swap(next);
  }

  std::vector<int64_t> ids;
  for (const Seg& seg : segs) {
    if (seg.id >= 0) {
      ids.push_back(seg.id);
      continue;
    }
    if (seg.text.empty()) continue;
    std::string s = seg.text;
    if (add_prefix_space_ && s[0] != ' ') s.insert(s.begin(), ' ');
    if (use_regex_) {
      for (const auto& w : gpt2_split(s)) encode_piece(w, &ids);
    } else {
      encode_piece(s, &ids);
    }
  }
  return ids;
}

}  // namespace io
}  // namespace mamba_lrp
