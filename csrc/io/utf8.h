// UTF-8 decoding and encoding, and the Unicode classes that GPT-2's pre-tokenization pattern
// names (\p{L}, \p{N}, \s; see tokenizer.h for which scripts the tables cover).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace mamba_lrp {
namespace io {
namespace utf8 {

bool is_letter(uint32_t c);  // \p{L}
bool is_number(uint32_t c);  // \p{N}
bool is_space(uint32_t c);   // \s
bool is_other(uint32_t c);   // [^\s\p{L}\p{N}]
bool is_word_char(uint32_t c);  // \w: letter, number or '_'

void append_utf8(std::string* s, uint32_t c);

// One code point at s[i]; returns its length in bytes, 0 if the bytes there are not valid
// UTF-8 (overlong forms, surrogates and values above U+10FFFF are invalid).
size_t next_utf8(const std::string& s, size_t i, uint32_t* cp);

// Invalid bytes replaced by U+FFFD, one per byte.
std::string sanitize_utf8(const std::string& s);

}  // namespace utf8
}  // namespace io
}  // namespace mamba_lrp
