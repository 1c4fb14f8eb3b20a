// Byte-level BPE on a tokenizer.json built here, against encodings worked out by hand.
#include "csrc/io/tokenizer.h"

#include "io_test_util.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using Catch::Matchers::Contains;
using mamba_lrp::io::BpeTokenizer;
using mamba_lrp::io::gpt2_pretokenize;
using namespace io_test;
using Ids = std::vector<int64_t>;

namespace {

// The byte-level alphabet used below: ' ' = 0x20 -> "Ġ" (U+0120), '\n' -> "Ċ" (U+010A),
// '\t' -> "ĉ" (U+0109); "é" = bytes C3 A9, both printable Latin-1, so they stand for
// themselves: "Ã" (U+00C3) and "©" (U+00A9). Letters, digits and ASCII punctuation stand
// for themselves.
//
//  id token      id token      id token       id token
//   0 <|endoftext|> (added, special)
//   1 h           9 1          17 Ċ           25 Ġwor
//   2 e          10 2          18 ,           26 Ġworl
//   3 l          11 3          19 he          27 Ġworld
//   4 o          12 !          20 ll          28 12
//   5 Ġ          13 '          21 hell        29 Ã©
//   6 w          14 s          22 hello       30 's
//   7 r          15 Ã          23 Ġw          31 Ġh
//   8 d          16 ©          24 or          32 Ġhe
//                                             33 !!
//  35 "\t\t" (added, normalized, not special); 40 "<mask>" (added, special, lstrip)
//
// Merges, rank = position: 0 "h e", 1 "l l", 2 "he ll", 3 "hell o", 4 "Ġ w", 5 "o r",
// 6 "Ġw or", 7 "Ġwor l", 8 "Ġworl d", 9 "1 2", 10 ["Ã", "©"] (pair form), 11 "' s",
// 12 "Ġ h", 13 "Ġh e", 14 ["!", "!"] (pair form).
std::string tokenizer_json(bool add_prefix_space) {
  const std::vector<std::string> vocab = {"<|endoftext|>", "h", "e", "l", "o", "Ġ", "w", "r", "d", "1", "2", "3",
                                          "!", "'", "s", "Ã", "©", "Ċ", ",", "he", "ll", "hell", "hello", "Ġw",
                                          "or", "Ġwor", "Ġworl", "Ġworld", "12", "Ã©", "'s", "Ġh", "Ġhe", "!!"};
  nlohmann::json v = nlohmann::json::object();
  for (size_t i = 0; i < vocab.size(); ++i) v[vocab[i]] = i;
  nlohmann::json merges = {"h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "Ġwor l", "Ġworl d", "1 2"};
  merges.push_back({"Ã", "©"});
  merges.push_back("' s");
  merges.push_back("Ġ h");
  merges.push_back("Ġh e");
  merges.push_back({"!", "!"});
  nlohmann::json j = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens",
       {{{"id", 0}, {"content", "<|endoftext|>"}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
         {"normalized", false}, {"special", true}},
        {{"id", 35}, {"content", "\t\t"}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
         {"normalized", true}, {"special", false}},
        {{"id", 40}, {"content", "<mask>"}, {"single_word", false}, {"lstrip", true}, {"rstrip", false},
         {"normalized", false}, {"special", true}}}},
      {"normalizer", {{"type", "NFC"}}},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", add_prefix_space}, {"trim_offsets", true}, {"use_regex", true}}},
      {"post_processor", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}}},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}}},
      {"model",
       {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"vocab", v}, {"merges", merges}}},
  };
  return j.dump();
}

BpeTokenizer make(bool add_prefix_space = false) { return BpeTokenizer::from_json_string(tokenizer_json(add_prefix_space)); }

}  // namespace

TEST_CASE("tokenizer: GPT-2 pre-tokenization split", "[tokenizer]") {
  using V = std::vector<std::string>;
  // letters (Latin, Cyrillic, Greek) take one leading space; digits likewise; "€" and the
  // emoji are neither letter nor number nor space: the [^\s\p{L}\p{N}]+ class.
  CHECK(gpt2_pretokenize("Hello, мир! αβγ 42€ 😀x") == V{"Hello", ",", " мир", "!", " αβγ", " 42", "€", " 😀", "x"});
  // contractions split off, case-sensitively ("'S" is punctuation then a letter)
  CHECK(gpt2_pretokenize("don't stop's 'S") == V{"don", "'t", " stop", "'s", " '", "S"});
  CHECK(gpt2_pretokenize("we'll they're I've") == V{"we", "'ll", " they", "'re", " I", "'ve"});
  // a whitespace run before a word leaves its last character to the word (\s+(?!\S));
  // a lone "\n" before a word is its own piece (\s+); a run at the end stays whole
  CHECK(gpt2_pretokenize("a  \n\nb") == V{"a", "  \n", "\n", "b"});
  CHECK(gpt2_pretokenize("a   b") == V{"a", "  ", " b"});
  CHECK(gpt2_pretokenize("x  ") == V{"x", "  "});
  CHECK(gpt2_pretokenize(" 12ab?!") == V{" 12", "ab", "?!"});
  // é is a letter; a combining accent (U+0301) is not
  CHECK(gpt2_pretokenize("café e\xCC\x81") == V{"café", " e", "\xCC\x81"});
  CHECK(gpt2_pretokenize("").empty());
  CHECK_THAT(input_error_of([] { gpt2_pretokenize("ab\xff"); }), Contains("UTF-8"));
}

TEST_CASE("tokenizer: byte-level BPE encodings worked out by hand", "[tokenizer]") {
  BpeTokenizer t = make();
  CHECK(t.vocab_size() == 41);

  // "hello": h e l l o; best pair "h e" (rank 0) -> he l l o; "l l" (1) -> he ll o;
  // "he ll" (2) -> hell o; "hell o" (3) -> hello = 22.
  CHECK(t.encode("hello") == Ids{22});
  // " world" is one piece: Ġ w o r l d; "Ġ w" (4) -> Ġw o r l d; "o r" (5) -> Ġw or l d;
  // then ranks 6, 7, 8 -> Ġworld = 27.
  CHECK(t.encode("hello world") == Ids{22, 27});
  // "world" without its space: w o r l d -> "o r" -> w or l d; no merge "w or" -> 6 24 3 8.
  CHECK(t.encode("world") == Ids{6, 24, 3, 8});
  // two spaces: pieces "hello", " " (the run minus its last space), " world".
  CHECK(t.encode("hello  world") == Ids{22, 5, 27});
  // newline: "hello", "\n" (Ċ = 17), "world".
  CHECK(t.encode("hello\nworld") == Ids{22, 17, 6, 24, 3, 8});
  // trailing spaces: one piece "  " -> Ġ Ġ.
  CHECK(t.encode("hello  ") == Ids{22, 5, 5});
  // digits: " 123" is one piece Ġ 1 2 3; "1 2" (9) -> Ġ 12 3 (no merge with Ġ).
  CHECK(t.encode("hello 123") == Ids{22, 5, 28, 11});
  // letters and digits are separate pieces: "hello", "123" -> 12 3.
  CHECK(t.encode("hello123") == Ids{22, 28, 11});
  // contraction and punctuation: "hello", "'s" ("' s", 11 -> 30), "!!" (pair merge 14 -> 33).
  CHECK(t.encode("hello's!!") == Ids{22, 30, 33});
  // " !!," is one piece Ġ ! ! , -> "! !" -> Ġ !! ,
  CHECK(t.encode("hello !!,") == Ids{22, 5, 33, 18});
  // "é" = C3 A9 -> Ã © -> pair merge 10 -> Ã© = 29.
  CHECK(t.encode("é") == Ids{29});
  CHECK(t.encode("hello é") == Ids{22, 5, 29});
  // "héllo" is one word: h Ã © l l o; lowest rank first: "l l" (1) -> h Ã © ll o; then
  // "Ã ©" (10) -> h Ã© ll o; no merge "h Ã©" nor "ll o" -> 1 29 20 4.
  CHECK(t.encode("héllo") == Ids{1, 29, 20, 4});
  // " he": Ġ h e; "h e" (0) outranks "Ġ h" (12) -> Ġ he; no "Ġ he" merge -> 5 19.
  CHECK(t.encode(" he") == Ids{5, 19});
  CHECK(t.encode("").empty());
}

TEST_CASE("tokenizer: added tokens and the prefix space", "[tokenizer]") {
  BpeTokenizer t = make();
  // added tokens are split out before pre-tokenization
  CHECK(t.encode("hello<|endoftext|>world") == Ids{22, 0, 6, 24, 3, 8});
  CHECK(t.encode("<|endoftext|>") == Ids{0});
  CHECK(t.encode("<|endoftext|><|endoftext|>") == Ids{0, 0});
  // lstrip: "<mask>" swallows the space before it (otherwise Ġ = 5 would appear)
  CHECK(t.encode("hello <mask>") == Ids{22, 40});
  CHECK(t.encode("hello <|endoftext|>") == Ids{22, 5, 0});
  // the normalized added token "\t\t" (a tab alone is not in this vocabulary)
  CHECK(t.encode("hello\t\tworld") == Ids{22, 35, 6, 24, 3, 8});
  CHECK_THAT(input_error_of([&] { t.encode("hello\tworld"); }), Contains("not in the vocabulary"));

  // add_prefix_space: each piece of text between added tokens gets a leading space when
  // it lacks one: " hello" -> Ġ hello (5 22), " world" -> Ġworld (27).
  BpeTokenizer p = make(true);
  CHECK(p.encode("hello") == Ids{5, 22});
  CHECK(p.encode("hello world") == Ids{5, 22, 27});
  CHECK(p.encode(" world") == Ids{27});  // already starts with a space
  CHECK(p.encode("hello<|endoftext|>world") == Ids{5, 22, 0, 27});
}

TEST_CASE("tokenizer: decoding and token strings", "[tokenizer]") {
  BpeTokenizer t = make();
  CHECK(t.token_string(27) == "Ġworld");
  CHECK(t.token_string(0) == "<|endoftext|>");
  CHECK(t.token_to_id("Ġworld") == 27);
  CHECK(t.token_to_id("<mask>") == 40);
  CHECK(t.token_to_id("absent") == -1);
  CHECK(t.decode(27) == " world");
  CHECK(t.decode(17) == "\n");
  CHECK(t.decode(29) == "é");
  CHECK(t.decode(0) == "<|endoftext|>");
  CHECK(t.decode(15) == "\xEF\xBF\xBD");  // half of "é" alone: U+FFFD for display
  CHECK(t.decode(Ids{15, 16}) == "é");     // both halves joined first
  CHECK(t.decode(t.encode("hello world's 123 é!!")) == "hello world's 123 é!!");
  CHECK_THAT(input_error_of([&] { t.token_string(41); }), Contains("token id 41"));
  CHECK_THAT(input_error_of([&] { t.token_string(38); }), Contains("token id 38"));  // a gap in the ids
  CHECK_THAT(input_error_of([&] { t.decode(-1); }), Contains("token id -1"));
  CHECK_THAT(input_error_of([&] { t.encode("hello \xC3"); }), Contains("UTF-8"));
  CHECK_THAT(input_error_of([&] { t.encode("zebra"); }), Contains("'z'") && Contains("not in the vocabulary"));
}

TEST_CASE("tokenizer: bad files give an mamba_lrp::io::InputError naming the file", "[tokenizer]") {
  TempDir dir;
  const std::string path = dir.file("tokenizer.json");
  CHECK_THAT(input_error_of([&] { BpeTokenizer::from_file(path); }), Contains("tokenizer.json") && Contains("cannot open"));

  write_bytes(path, tokenizer_json(false));
  CHECK(BpeTokenizer::from_file(path).encode("hello world") == Ids{22, 27});

  auto with = [&](const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json j = nlohmann::json::parse(tokenizer_json(false));
    edit(j);
    write_bytes(path, j.dump());
    return input_error_of([&] { BpeTokenizer::from_file(path); });
  };
  write_bytes(path, "{\"model\": ");
  CHECK_THAT(input_error_of([&] { BpeTokenizer::from_file(path); }), Contains(path) && Contains("invalid JSON"));
  CHECK_THAT(with([](nlohmann::json& j) { j["model"]["type"] = "WordPiece"; }),
             Contains(path) && Contains("\"WordPiece\" is not supported"));
  CHECK_THAT(with([](nlohmann::json& j) { j["model"]["merges"].push_back("x y"); }),
             Contains(path) && Contains("'x' is not in the vocabulary"));
  CHECK_THAT(with([](nlohmann::json& j) { j["model"]["merges"].push_back("h e l"); }), Contains(path) && Contains("h e l"));
  CHECK_THAT(with([](nlohmann::json& j) { j["model"].erase("vocab"); }), Contains(path) && Contains("vocab"));
  CHECK_THAT(with([](nlohmann::json& j) { j["pre_tokenizer"] = {{"type", "Whitespace"}}; }),
             Contains(path) && Contains("ByteLevel"));
  CHECK_THAT(with([](nlohmann::json& j) { j["normalizer"] = {{"type", "Lowercase"}}; }),
             Contains(path) && Contains("normalizer"));
  CHECK_THAT(with([](nlohmann::json& j) { j["model"]["end_of_word_suffix"] = "</w>"; }),
             Contains(path) && Contains("end_of_word_suffix"));
  CHECK_THAT(with([](nlohmann::json& j) { j["model"]["unk_token"] = "<unk>"; }), Contains(path) && Contains("<unk>"));
  CHECK_THAT(with([](nlohmann::json& j) { j["added_tokens"][0].erase("id"); }), Contains(path) && Contains("added token"));
  // unk_token present in the vocabulary: unknown symbols map to it
  nlohmann::json j = nlohmann::json::parse(tokenizer_json(false));
  j["model"]["vocab"]["<unk>"] = 34;
  j["model"]["unk_token"] = "<unk>";
  CHECK(BpeTokenizer::from_json_string(j.dump()).encode("hez") == Ids{19, 34});
}
