// Tokenizer tests: the tiktoken vectors (100 %), the special-token table, streaming decode, UTF-8 errors.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
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

std::vector<Vector> load_vectors() {
  // Split on '\n' only: texts hold raw U+0085 / U+2028 / U+2029.
  std::string all = read_all(shared_dir() + "/data/tokenizer/vectors.jsonl");
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

}  // namespace
}  // namespace gptoss
