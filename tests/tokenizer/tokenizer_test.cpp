// Tokenizer tests: the tiktoken vectors (100 %), the special-token table, streaming decode, UTF-8 errors.
#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <thread>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace gptoss {
namespace {

std::string shared_dir() {
  const char* env = std::getenv("GPTOSS_SHARED_DIR");
  return env && *env ? env : GPTOSS_SHARED_DIR;
}
std::string tokenizer_path() { return shared_dir() + "/data/tokenizer/tokenizer.json"; }

const Tokenizer& tokenizer() {
  static const Tokenizer t = Tokenizer::from_file(tokenizer_path());
  return t;
}

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

struct Vector {
  std::string text;
  std::vector<int> ids, ids_special;
};

std::vector<Vector> load_vectors(const std::string& path = shared_dir() + "/data/tokenizer/vectors.jsonl") {
  // Split on '\n' only: texts hold raw U+0085 / U+2028 / U+2029.
  std::string all = read_all(path);
  std::vector<Vector> out;
  size_t i = 0;
  while (i < all.size()) {
    size_t j = all.find('\n', i);
    if (j == std::string::npos) j = all.size();
    if (j > i) {
      auto obj = nlohmann::json::parse(all.substr(i, j - i));
      out.push_back({obj["text"].get<std::string>(), obj["ids"].get<std::vector<int>>(),
                     obj["ids_special"].get<std::vector<int>>()});
    }
    i = j + 1;
  }
  return out;
}

TEST(Tokenizer, VectorsOrdinary) {
  auto vectors = load_vectors();
  ASSERT_EQ(vectors.size(), 306u);
  int failures = 0;
  for (size_t k = 0; k < vectors.size(); ++k) {
    const auto& v = vectors[k];
    auto ids = tokenizer().encode(v.text);
    if (ids != v.ids) {
      ++failures;
      ADD_FAILURE() << "line " << k + 1 << " text " << nlohmann::json(v.text).dump() << " ids "
                    << nlohmann::json(ids).dump() << " expected " << nlohmann::json(v.ids).dump();
    }
  }
  EXPECT_EQ(failures, 0);
}

TEST(Tokenizer, VectorsWithSpecial) {
  auto vectors = load_vectors();
  int failures = 0;
  for (size_t k = 0; k < vectors.size(); ++k) {
    const auto& v = vectors[k];
    auto ids = tokenizer().encode_with_special(v.text);
    if (ids != v.ids_special) {
      ++failures;
      ADD_FAILURE() << "line " << k + 1 << " text " << nlohmann::json(v.text).dump() << " ids "
                    << nlohmann::json(ids).dump() << " expected " << nlohmann::json(v.ids_special).dump();
    }
  }
  EXPECT_EQ(failures, 0);
}

TEST(Tokenizer, VectorsDecode) {
  for (const auto& v : load_vectors()) {
    EXPECT_EQ(tokenizer().decode(v.ids), v.text);
    EXPECT_EQ(tokenizer().decode(v.ids_special), v.text);
  }
}

std::vector<std::string> split(std::string_view text) {
  std::vector<std::string> pieces;
  const auto* p = reinterpret_cast<const uint8_t*>(text.data());
  for (size_t i = 0; i < text.size();) {
    size_t e = o200k_piece_end(p, text.size(), i);
    pieces.emplace_back(text.substr(i, e - i));
    i = e;
  }
  return pieces;
}

// The pattern's backtracking cases, spelled out (the vectors check the same through token ids).
TEST(PreTokenizer, Pieces) {
  using V = std::vector<std::string>;
  EXPECT_EQ(split("Hello world"), (V{"Hello", " world"}));
  EXPECT_EQ(split("HTTPServer's"), (V{"HTTPServer's"}));          // [A]*[B]+ then the contraction
  EXPECT_EQ(split("ABC DEF'LL"), (V{"ABC", " DEF'LL"}));          // alternative 2: [A]+[B]*
  EXPECT_EQ(split("abc123456"), (V{"abc", "123", "456"}));        // \p{N}{1,3}
  EXPECT_EQ(split("  \n\n  x"), (V{"  \n\n", " ", " x"}));   // \s*[\r\n]+ then \s+(?!\S)
  EXPECT_EQ(split("x   "), (V{"x", "   "}));                      // \s+(?!\S) at the end of the text
  EXPECT_EQ(split("a ... b//\n"), (V{"a", " ...", " b", "//\n"})); // " ?[^\s\p{L}\p{N}]+[\r\n/]*"
  EXPECT_EQ(split("x\xC5\xBF'\xC5\xBF"), (V{"x\xC5\xBF'\xC5\xBF"}));  // 'ſ folds to 's
  EXPECT_EQ(split("a\xC2\x85" "b"), (V{"a", "\xC2\x85" "b"}));    // U+0085 is \s, and a prefix
  EXPECT_EQ(split("\xEF\xBB\xBF a"), (V{"\xEF\xBB\xBF", " a"}));  // U+FEFF is not \s
  EXPECT_EQ(split("\xCC\x81" "abc"), (V{"\xCC\x81" "abc"}));   // a mark as the prefix
}

// Tricky cases generated with tiktoken (bench/tokenizer/tiktoken_ref.mjs): long single pieces (heap
// merge path), contractions with U+017F, white space next to U+0085/U+FEFF/U+180E, Unicode 16 letters,
// special-token look-alikes, random mixes of 13 scripts.
TEST(Tokenizer, ExtraVectors) {
  auto vectors = load_vectors(std::string(GPTOSS_SOURCE_DIR) + "/tests/tokenizer/extra_vectors.jsonl");
  ASSERT_GT(vectors.size(), 250u);
  int failures = 0;
  for (size_t k = 0; k < vectors.size(); ++k) {
    const auto& v = vectors[k];
    auto ids = tokenizer().encode(v.text);
    auto ids_special = tokenizer().encode_with_special(v.text);
    if (ids != v.ids || ids_special != v.ids_special) {
      ++failures;
      ADD_FAILURE() << "extra line " << k + 1 << " text " << nlohmann::json(v.text).dump();
    }
    EXPECT_EQ(tokenizer().decode(ids), v.text);
    EXPECT_EQ(tokenizer().decode(ids_special), v.text);
  }
  EXPECT_EQ(failures, 0);
}

TEST(Tokenizer, SpecialTable) {
  const Tokenizer& t = tokenizer();
  ASSERT_EQ(t.vocab_size(), tok::kVocabSize);
  // Every id decodes; exactly the ids from 199998 on are special.
  for (int id = 0; id < t.vocab_size(); ++id) {
    ASSERT_FALSE(t.token_bytes(id).empty()) << id;
    ASSERT_EQ(t.is_special(id), id >= tok::kFirstSpecial) << id;
  }
  const std::pair<const char*, int> named[] = {
      {"<|startoftext|>", tok::kStartOfText}, {"<|endoftext|>", tok::kEndOfText}, {"<|return|>", tok::kReturn},
      {"<|constrain|>", tok::kConstrain},     {"<|channel|>", tok::kChannel},     {"<|start|>", tok::kStart},
      {"<|end|>", tok::kEnd},                 {"<|message|>", tok::kMessage},     {"<|call|>", tok::kCall},
      {"<|endofprompt|>", tok::kEndOfPrompt}};
  for (auto [text, id] : named) {
    EXPECT_EQ(t.special_id(text), id) << text;
    EXPECT_EQ(t.token_bytes(id), text);
    EXPECT_EQ(t.encode_with_special(text), std::vector<int>{id});
    EXPECT_GT(t.encode(text).size(), 1u) << "ordinary encoding must not produce the special token";
  }
  // Reserved ids: listed in the file (200000) and filled in by the loader (200019..201087).
  EXPECT_EQ(t.token_bytes(200000), "<|reserved_200000|>");
  EXPECT_EQ(t.token_bytes(200019), "<|reserved_200019|>");
  EXPECT_EQ(t.token_bytes(201087), "<|reserved_201087|>");
  EXPECT_EQ(t.special_id("<|reserved_201087|>"), 201087);
  EXPECT_EQ(t.special_id("<|reserved_200018|>"), std::nullopt);  // 200018 is <|endofprompt|>
  EXPECT_EQ(t.special_id("<|reserved_201088|>"), std::nullopt);
  EXPECT_EQ(t.special_id("hello"), std::nullopt);
  EXPECT_FALSE(t.is_special(-1));
  EXPECT_FALSE(t.is_special(tok::kVocabSize));
  EXPECT_FALSE(t.is_special(0));
  EXPECT_EQ(t.decode(std::vector<int>{200006, 200019, 200007}), "<|start|><|reserved_200019|><|end|>");
}

TEST(Tokenizer, OutOfRangeIdsThrow) {
  const Tokenizer& t = tokenizer();
  try {
    (void)t.decode(std::vector<int>{1, tok::kVocabSize});
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("201088"), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)t.token_bytes(-1), InputError);
}

TEST(Tokenizer, InvalidUtf8NamesOffset) {
  const std::pair<std::string, size_t> cases[] = {
      {"ab\xff" "cd", 2},          // never a UTF-8 byte
      {"x\xc0\xaf", 1},            // overlong '/'
      {"abc\xed\xa0\x80", 3},      // surrogate U+D800
      {"12345678\xe2\x82", 8},     // truncated at the end
      {"\xf4\x90\x80\x80", 0},     // past U+10FFFF
      {"ok \x80", 3},              // lone continuation byte
  };
  for (const auto& [text, offset] : cases) {
    for (bool special : {false, true}) {
      try {
        (void)(special ? tokenizer().encode_with_special(text) : tokenizer().encode(text));
        ADD_FAILURE() << "no error for " << nlohmann::json::binary({text.begin(), text.end()}).dump();
      } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find(fmt::format("byte offset {}", offset)), std::string::npos) << e.what();
      }
    }
  }
  EXPECT_EQ(utf8::first_invalid("caf\xc3\xa9 \xf0\x9f\x98\x80"), utf8::kValid);
  EXPECT_EQ(utf8::replace_invalid("a\xff\xe2\x82" "b\xe2\x82"), "a\xEF\xBF\xBD\xEF\xBF\xBD" "b\xEF\xBF\xBD");
}

// Streaming: characters split across tokens come out whole, once complete, and never as U+FFFD.
TEST(IncrementalDecoder, SplitCharactersComeOutWhole) {
  const Tokenizer& t = tokenizer();
  const std::string texts[] = {"🦜🦩 parrots and flamingos 🐦‍🔥", "𠀀𠀁 rare CJK 鿿", "naïve café — ok ∑ ∞",
                               "𓃰𓃱𓃲 hieroglyphs", "emoji family 👩‍👩‍👧‍👦!"};
  int split_tokens = 0;
  for (const auto& text : texts) {
    auto ids = t.encode(text);
    IncrementalDecoder dec(t);
    std::string streamed;
    for (int id : ids) {
      std::string tb(t.token_bytes(id));
      if (utf8::first_invalid(tb) != utf8::kValid) ++split_tokens;
      std::string chunk = dec.push(id);
      EXPECT_EQ(utf8::first_invalid(chunk), utf8::kValid) << "chunk is not whole UTF-8";
      EXPECT_EQ(chunk.find("\xEF\xBF\xBD"), std::string::npos) << "replacement character mid-stream";
      streamed += chunk;
      EXPECT_EQ(text.compare(0, streamed.size(), streamed), 0) << "streamed text is not a prefix";
    }
    streamed += dec.flush();
    EXPECT_EQ(streamed, text);
  }
  EXPECT_GT(split_tokens, 5) << "the test texts must contain tokens that split characters";
}

TEST(IncrementalDecoder, InvalidBytesBecomeReplacementOnce) {
  const Tokenizer& t = tokenizer();
  auto byte_token = [&](uint8_t b) {
    if (b < 0x80) return t.encode(std::string(1, char(b))).at(0);
    // Non-ASCII single bytes are not valid text; find their token by scanning the vocabulary.
    for (int id = 0; id < t.vocab_size(); ++id)
      if (t.token_bytes(id).size() == 1 && uint8_t(t.token_bytes(id)[0]) == b) return id;
    return -1;
  };
  const int ff = byte_token(0xFF), e2 = byte_token(0xE2), x82 = byte_token(0x82), a = byte_token('a');
  ASSERT_GE(ff, 0);
  ASSERT_GE(e2, 0);
  ASSERT_GE(x82, 0);
  IncrementalDecoder dec(t);
  EXPECT_EQ(dec.push(ff), "\xEF\xBF\xBD");  // can never start a character
  EXPECT_EQ(dec.push(e2), "");              // may still become '€'
  EXPECT_EQ(dec.push(x82), "");
  EXPECT_EQ(dec.push(a), "\xEF\xBF\xBD" "a");  // E2 82 then 'a': one replacement for the broken part
  EXPECT_EQ(dec.push(e2), "");
  EXPECT_EQ(dec.flush(), "\xEF\xBF\xBD");  // incomplete tail at the end
  EXPECT_EQ(dec.flush(), "");
  EXPECT_EQ(dec.push(a), "a");
}

TEST(Tokenizer, ConcurrentEncodeMatches) {
  const Tokenizer copy = tokenizer();  // cheap copy sharing the tables
  auto vectors = load_vectors();
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int w = 0; w < 4; ++w)
    threads.emplace_back([&, w] {
      for (size_t k = size_t(w); k < vectors.size(); k += 4)
        if (copy.encode(vectors[k].text) != vectors[k].ids) ++failures;
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST(TokenizerLoad, ModelDirWithoutTokenizerJson) {
  auto dir = std::filesystem::temp_directory_path() / fmt::format("gptoss_tok_test_{}", ::getpid());
  std::filesystem::create_directories(dir);
  try {
    (void)Tokenizer::from_model_dir(dir.string());
    ADD_FAILURE() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find((dir / "tokenizer.json").string()), std::string::npos) << e.what();
  }
  std::filesystem::create_symlink(tokenizer_path(), dir / "tokenizer.json");
  EXPECT_EQ(Tokenizer::from_model_dir(dir.string()).encode("hello world"), (std::vector<int>{24912, 2375}));
  std::filesystem::remove_all(dir);
}

TEST(TokenizerLoad, BadFilesAreInputErrors) {
  auto dir = std::filesystem::temp_directory_path() / fmt::format("gptoss_tok_bad_{}", ::getpid());
  std::filesystem::create_directories(dir);
  auto write = [&](const std::string& name, const std::string& body) {
    std::ofstream(dir / name, std::ios::binary) << body;
    return (dir / name).string();
  };
  const std::string pat = nlohmann::json(std::string(kO200kPattern)).dump();
  const std::string pre = R"("pre_tokenizer":{"type":"Split","pattern":{"Regex":)" + pat + "}}";
  auto expect_error = [&](const std::string& path, const std::string& needle) {
    try {
      (void)Tokenizer::from_file(path);
      ADD_FAILURE() << "expected InputError for " << path;
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error((dir / "nope.json").string(), "nope.json");
  expect_error(write("trunc.json", R"({"model":{"type":"BPE","vocab":{"a":0,)"), "unexpected end of file");
  expect_error(write("wordpiece.json", "{" + pre + R"(,"model":{"type":"WordPiece","vocab":{}}})"), "\"WordPiece\"");
  expect_error(write("gap.json", "{" + pre + R"(,"model":{"type":"BPE","vocab":{"a":0,"b":2}}})"), "no token with id 1");
  expect_error(write("bytes.json", "{" + pre + R"(,"model":{"type":"BPE","vocab":{"a":0,"b":1}}})"), "no token for byte");
  expect_error(write("pattern.json", R"({"pre_tokenizer":{"type":"Split","pattern":{"Regex":"\\s+"}},"model":{"type":"BPE","vocab":{"a":0}}})"),
               "expected the o200k pattern");
  std::filesystem::remove_all(dir);
}

TEST(TokenizerLoad, LoadsQuickly) {
  auto t0 = std::chrono::steady_clock::now();
  auto t = Tokenizer::from_file(tokenizer_path());
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(t.vocab_size(), tok::kVocabSize);
  EXPECT_LT(s, 2.0) << "loading tokenizer.json took " << s << " s";
}

}  // namespace
}  // namespace gptoss
