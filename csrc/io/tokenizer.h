// Hugging Face byte-level BPE, as the GPT-NeoX tokenizer that Mamba models ship uses it,
// loaded from a tokenizer.json. Our own implementation of the documented behaviour of the
// `tokenizers` library for this configuration:
//
//  1. Added tokens (added_tokens, e.g. "<|endoftext|>") are split out of the raw text first,
//     leftmost-longest; those with "normalized": false (special tokens) in a first pass,
//     those with "normalized": true in a second pass over what is left. lstrip / rstrip
//     make the token swallow the whitespace on that side; single_word refuses a match
//     glued to a letter, digit or '_'.
//  2. Each remaining piece: ByteLevel pre-tokenizer. With add_prefix_space a space is
//     prepended when the piece does not start with one; with use_regex the piece is split
//     by GPT-2's pattern
//       's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//     implemented by hand (no regex engine), with \s as Oniguruma's Unicode whitespace and
//     \p{L} / \p{N} from a built-in table of code point ranges: ASCII, Latin-1, Latin
//     Extended-A/B and Additional, IPA, Greek (and Greek Extended), Cyrillic, Armenian,
//     Hebrew, Arabic, Devanagari, Thai, Georgian, Hangul, kana and CJK ideographs, plus the
//     usual digit blocks, superscripts, fractions and Roman numerals. Code points outside
//     the table (symbols, emoji, combining marks, unlisted scripts) count as "other", i.e.
//     they fall in the [^\s\p{L}\p{N}]+ class: right for symbols, emoji and marks, and for
//     letters of unlisted scripts it only changes where words split, never which bytes are
//     encoded.
//  3. Each split is mapped to GPT-2's byte-to-unicode alphabet (bytes 33-126, 161-172 and
//     174-255 stand for themselves, the other 68 bytes for U+0100 upwards in byte order)
//     and merged by BPE: repeatedly the adjacent pair with the lowest merge rank, all its
//     non-overlapping occurrences left to right. Merges may be "a b" strings or ["a", "b"]
//     pairs. ignore_merges (newer files) is honoured; unk_token is used for symbols missing
//     from the vocabulary, and without one such a symbol is an error (HF drops it silently).
//
// Not applied: the normalizer, which may be absent or NFC (NFC is the identity on text that
// is already NFC, which is what text editors and terminals produce; any other normalizer is
// refused); the post-processor (GPT-NeoX's adds no tokens) and the decoder (decode() maps
// bytes back itself). Files with another model type, pre-tokenizer or BPE options this does
// not implement (continuing_subword_prefix, end_of_word_suffix, byte_fallback) are refused
// with an InputError naming the file, as are missing files and invalid JSON.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace mamba_lrp {
namespace io {

// The GPT-2 split of step 2 on its own (exposed for tests and tools). Throws InputError if
// `text` is not valid UTF-8.
std::vector<std::string> gpt2_pretokenize(const std::string& text);

// Limits on what a tokenizer file and a text may hold (README, command line): a
// tokenizer.json of at most 256 MiB with at most 2^24 entries (vocabulary and added
// tokens; ids up to INT32_MAX, kept in a map, so memory follows the entries, not the
// largest id), and texts of at most 1 MiB.
constexpr size_t kMaxTokenizerBytes = size_t{256} << 20;
constexpr size_t kMaxTokenizerEntries = size_t{1} << 24;
constexpr size_t kMaxTextBytes = size_t{1} << 20;

class BpeTokenizer {
 public:
  static BpeTokenizer from_file(const std::string& path);
  // `origin` names the source in error messages.
  static BpeTokenizer from_json_string(const std::string& json, const std::string& origin = "tokenizer.json");

  // Throws InputError when the text is not valid UTF-8 or holds a symbol the vocabulary
  // lacks (and there is no unk_token).
  std::vector<int64_t> encode(const std::string& text) const;

  // The text of one token, its bytes mapped back, as valid UTF-8 for display (a token that
  // holds part of a multi-byte character shows U+FFFD for the partial bytes).
  std::string decode(int64_t id) const;
  // The text of a sequence (bytes joined first, so multi-byte characters split over tokens
  // come back whole); invalid UTF-8 replaced by U+FFFD.
  std::string decode(const std::vector<int64_t>& ids) const;
  // The token as the vocabulary spells it (byte-level alphabet, e.g. "Ġthe").
  const std::string& token_string(int64_t id) const;
  // Largest id + 1 over the vocabulary and the added tokens.
  int64_t vocab_size() const { return vocab_size_; }
  // -1 when absent.
  int64_t token_to_id(const std::string& token) const;

  struct AddedToken {
    std::string content;
    int64_t id = 0;
    bool single_word = false, lstrip = false, rstrip = false, normalized = false, special = false;
  };

 private:
  BpeTokenizer() = default;
  static BpeTokenizer parse_json(const std::string& json, const std::string& origin);
  void encode_piece(const std::string& piece, std::vector<int64_t>* out) const;
  std::string raw_bytes(int64_t id) const;

  std::string origin_;
  std::unordered_map<std::string, int64_t> vocab_;
  struct Token {
    std::string text;
    bool added = false;
  };
  std::unordered_map<int64_t, Token> id_to_token_;  // a map: ids may be sparse (up to INT32_MAX)
  int64_t vocab_size_ = 0;
  std::unordered_map<std::string, int> merge_rank_;  // key: a + '\0' + b
  std::vector<AddedToken> added_;
  bool add_prefix_space_ = false, use_regex_ = true, ignore_merges_ = false;
  int64_t unk_id_ = -1;
};

}  // namespace io
}  // namespace mamba_lrp
