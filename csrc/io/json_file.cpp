#include "csrc/io/json_file.h"

#include <cctype>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>
#include <vector>

#include "csrc/io/errors.h"

namespace mamba_lrp {
namespace io {

namespace {

// Python's json module writes float('inf'), -inf and nan as the bare words Infinity,
// -Infinity and NaN, in value positions only (a key is always a string). Strict JSON has no
// such words, so they are replaced, where a value is expected and nowhere else, by a marker
// string that parse_json_allowing_nonfinite turns back into the number after parsing. A
// word anywhere else stays as it is and the parser rejects it.
const char* const kMarker = "\\u0000mamba_lrp_nonfinite:";  // as JSON text: a NUL in front

struct NonfiniteWord {
  const char* word;
  double value;
};
const NonfiniteWord kWords[] = {{"-Infinity", -std::numeric_limits<double>::infinity()},
                                {"Infinity", std::numeric_limits<double>::infinity()},
                                {"NaN", std::numeric_limits<double>::quiet_NaN()}};

bool word_at(const std::string& text, size_t i, const char* word) {
  const size_t n = std::char_traits<char>::length(word);
  if (text.compare(i, n, word) != 0) return false;
  const size_t end = i + n;  // the word must end there (not "Infinityx")
  return end == text.size() || !(std::isalnum(static_cast<unsigned char>(text[end])) || text[end] == '_');
}

// Returns the text with the words replaced; `replaced` tells whether any was.
std::string mark_nonfinite_values(const std::string& text, bool& replaced) {
  enum class Expect { kValue, kKey, kOther };
  std::vector<char> containers;  // '{' or '['
  Expect expect = Expect::kValue;
  std::string out;
  out.reserve(text.size());
  replaced = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '"') {  // copy the string through its closing quote
      size_t j = i + 1;
      while (j < text.size() && text[j] != '"') j += text[j] == '\\' ? 2 : 1;
      out.append(text, i, std::min(j + 1, text.size()) - i);
      i = j;
      expect = Expect::kOther;
      continue;
    }
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      out += c;
      continue;
    }
    if (expect == Expect::kValue) {
      bool done = false;
      for (const NonfiniteWord& w : kWords) {
        if (!word_at(text, i, w.word)) continue;
        out += std::string("\"") + kMarker + w.word + "\"";
        i += std::char_traits<char>::length(w.word) - 1;
        replaced = done = true;
        break;
      }
      if (done) {
        expect = Expect::kOther;
        continue;
      }
    }
    out += c;
    if (c == '{') {
      containers.push_back('{');
      expect = Expect::kKey;
    } else if (c == '[') {
      containers.push_back('[');
      expect = Expect::kValue;
    } else if (c == '}' || c == ']') {
      if (!containers.empty()) containers.pop_back();
      expect = Expect::kOther;
    } else if (c == ':') {
      expect = Expect::kValue;
    } else if (c == ',') {
      expect = !containers.empty() && containers.back() == '{' ? Expect::kKey : Expect::kValue;
    } else {
      expect = Expect::kOther;
    }
  }
  return out;
}

void unmark_nonfinite_values(nlohmann::json& j) {
  if (j.is_string()) {
    const std::string prefix = std::string(1, '\0') + "mamba_lrp_nonfinite:";
    const std::string s = j.get<std::string>();  // a copy: j is assigned below
    if (s.compare(0, prefix.size(), prefix) != 0) return;
    for (const NonfiniteWord& w : kWords)
      if (s.substr(prefix.size()) == w.word) {
        j = w.value;
        return;
      }
  } else if (j.is_structured()) {
    for (auto& item : j) unmark_nonfinite_values(item);
  }
}

}  // namespace

nlohmann::json parse_json_allowing_nonfinite(const std::string& text) {
  bool replaced = false;
  const std::string strict = mark_nonfinite_values(text, replaced);
  nlohmann::json j = nlohmann::json::parse(strict);
  if (replaced) unmark_nonfinite_values(j);
  return j;
}

nlohmann::json read_json_file(const std::string& path, const std::string& hint_when_missing) {
  std::ifstream f(path);
  if (!f) throw InputError(path + ": cannot open" + (hint_when_missing.empty() ? "" : " (" + hint_when_missing + ")"));
  std::stringstream text;
  text << f.rdbuf();
  try {
    return parse_json_allowing_nonfinite(text.str());
  } catch (const nlohmann::json::exception& e) {
    std::string what = e.what();
    throw InputError(path + ": invalid JSON (" + what.substr(0, what.find('\n')) + ")");
  }
}

void throw_config_type_error(const std::string& origin, const char* key, const std::string& value, const char* what) {
  throw InputError(origin + ": config key \"" + key + "\" " + what + " (" + value + ")");
}

int64_t config_int(const nlohmann::json& j, const char* key, int64_t fallback, const std::string& origin) {
  if (j.contains(key) && !j[key].is_null() && !j[key].is_number_integer())
    throw_config_type_error(origin, key, j[key].dump(), "must be an integer");
  if (j.contains(key) && j[key].is_number_unsigned() && j[key].get<uint64_t>() > uint64_t(INT64_MAX))
    throw_config_type_error(origin, key, j[key].dump(), "is out of range");
  return config_value<int64_t>(j, key, fallback, origin);
}

int64_t config_int_in(const nlohmann::json& j, const char* key, int64_t fallback, int64_t lo, int64_t hi,
                      const std::string& origin) {
  const int64_t v = config_int(j, key, fallback, origin);
  if (v < lo || v > hi)
    throw InputError(origin + ": config key \"" + key + "\" must be in [" + std::to_string(lo) + ", " +
                     std::to_string(hi) + "], got " + std::to_string(v));
  return v;
}

}  // namespace io
}  // namespace mamba_lrp
