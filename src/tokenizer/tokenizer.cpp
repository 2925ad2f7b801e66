#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mmap_file.h"
#include "tokenizer/bpe.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/utf8.h"

namespace gptoss {

struct Tokenizer::Impl {
  std::string path;                      // the tokenizer.json it came from (for messages)
  std::vector<std::string> tokens;       // bytes of every id (special: its text)
  int n_ordinary = 0;                    // ids [0, n_ordinary) are BPE tokens
  std::vector<uint8_t> special;          // special[id] != 0: added/special token
  RankTable ranks;                       // BPE tokens only
  std::unordered_map<std::string, int> special_ids;
  size_t max_special_len = 0;

  void encode_ordinary(const uint8_t* p, size_t n, std::vector<int>& out) const {
    size_t i = 0;
    while (i < n) {
      const size_t e = o200k_piece_end(p, n, i);
      bpe_encode_piece(ranks, p + i, e - i, out);
      i = e;
    }
  }
};

namespace {

[[noreturn]] void fail_utf8(std::string_view text, size_t offset) {
  fail_input("text is not valid UTF-8: byte 0x{:02x} at byte offset {}; tokenizer input must be UTF-8",
             uint8_t(text[offset]), offset);
}

// --- a minimal JSON reader for tokenizer.json --------------------------------------------------------
// The file is 27 MB, most of it the merges list that BPE-by-rank does not need; a full DOM parse takes
// ~0.8 s, this reader skips what it does not need and loads in a fraction of that.
class JsonReader {
 public:
  JsonReader(const char* p, size_t n, const std::string& file) : begin_(p), p_(p), end_(p + n), file_(file) {}

  [[noreturn]] void error(std::string_view what) const {
    fail_input("{}: not a valid tokenizer.json: {} at byte offset {}", file_, what, size_t(p_ - begin_));
  }
  void ws() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }
  char peek() {
    ws();
    if (p_ >= end_) error("unexpected end of file");
    return *p_;
  }
  void expect(char c) {
    if (peek() != c) error(fmt::format("expected '{}'", c));
    ++p_;
  }
  // Iterates the members of an object; f(key) must consume the value.
  template <typename F>
  void object(F&& f) {
    expect('{');
    if (peek() == '}') {
      ++p_;
      return;
    }
    for (;;) {
      std::string key = string();
      expect(':');
      f(key);
      char c = peek();
      ++p_;
      if (c == '}') return;
      if (c != ',') error("expected ',' or '}'");
    }
  }
  std::string string() {
    expect('"');
    std::string out;
    for (;;) {
      const char* q = p_;
      while (q < end_ && *q != '"' && *q != '\\') ++q;
      if (q >= end_) error("unterminated string");
      out.append(p_, q);
      p_ = q + 1;
      if (*q == '"') return out;
      if (p_ >= end_) error("unterminated string");
      char e = *p_++;
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00) {
            if (end_ - p_ < 6 || p_[0] != '\\' || p_[1] != 'u') error("unpaired surrogate escape");
            p_ += 2;
            uint32_t lo = hex4();
            if (lo < 0xDC00 || lo >= 0xE000) error("unpaired surrogate escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp < 0xE000) {
            error("unpaired surrogate escape");
          }
          utf8::append(out, cp);
          break;
        }
        default: error("bad escape in string");
      }
    }
  }
  long integer() {
    ws();
    const char* q = p_;
    bool neg = q < end_ && *q == '-';
    if (neg) ++q;
    if (q >= end_ || *q < '0' || *q > '9') error("expected an integer");
    long v = 0;
    while (q < end_ && *q >= '0' && *q <= '9' && v < (1L << 40)) v = v * 10 + (*q++ - '0');
    if (q < end_ && (*q == '.' || *q == 'e' || *q == 'E')) error("expected an integer");
    p_ = q;
    return neg ? -v : v;
  }
  // Skips one value; returns its text.
  std::string_view skip() {
    ws();
    const char* start = p_;
    if (p_ >= end_) error("unexpected end of file");
    if (*p_ == '"') {
      skip_string();
    } else if (*p_ == '{' || *p_ == '[') {
      int depth = 0;
      for (;;) {
        if (p_ >= end_) error("unexpected end of file");
        const char c = *p_;
        if (c == '"') {
          skip_string();
          continue;
        }
        ++p_;
        if (c == '{' || c == '[') {
          ++depth;
        } else if (c == '}' || c == ']') {
          if (--depth == 0) break;
        }
      }
    } else {  // number, true, false, null
      while (p_ < end_ && *p_ != ',' && *p_ != '}' && *p_ != ']' && *p_ != ' ' && *p_ != '\n' &&
             *p_ != '\r' && *p_ != '\t')
        ++p_;
      if (p_ == start) error("expected a value");
    }
    return std::string_view(start, size_t(p_ - start));
  }

 private:
  void skip_string() {  // at the opening quote
    ++p_;
    for (;;) {
      const char* q = static_cast<const char*>(std::memchr(p_, '"', size_t(end_ - p_)));
      if (!q) error("unterminated string");
      // The quote ends the string unless an odd number of backslashes precede it.
      const char* b = q;
      while (b > p_ && b[-1] == '\\') --b;
      p_ = q + 1;
      if ((q - b) % 2 == 0) return;
    }
  }
  uint32_t hex4() {
    if (end_ - p_ < 4) error("bad \\u escape");
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      char c = *p_++;
      v <<= 4;
      if (c >= '0' && c <= '9') v |= uint32_t(c - '0');
      else if (c >= 'a' && c <= 'f') v |= uint32_t(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= uint32_t(c - 'A' + 10);
      else error("bad \\u escape");
    }
    return v;
  }
  const char* begin_;
  const char* p_;
  const char* end_;
  const std::string& file_;
};

// GPT-2's byte-level alphabet: printable code points stand for raw bytes in the vocab's keys.
struct ByteLevelDecoder {
  int16_t byte_of[324];
  ByteLevelDecoder() {
    std::fill(std::begin(byte_of), std::end(byte_of), int16_t(-1));
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      byte_of[printable ? b : 256 + n++] = int16_t(b);
    }
  }
  // Returns false if s holds a code point outside the alphabet.
  bool decode(const std::string& s, std::string& out) const {
    out.clear();
    const auto* p = reinterpret_cast<const uint8_t*>(s.data());
    size_t i = 0;
    while (i < s.size()) {
      uint32_t cp;
      int r = utf8::sequence(p + i, s.size() - i, &cp);
      if (r <= 0 || cp >= 324 || byte_of[cp] < 0) return false;
      out += char(byte_of[cp]);
      i += size_t(r);
    }
    return true;
  }
};

std::string_view find_split_pattern(const nlohmann::json& pre) {
  if (!pre.is_object()) return {};
  if (pre.value("type", "") == "Split" && pre.contains("pattern") && pre["pattern"].is_object()) {
    const auto& pat = pre["pattern"];
    if (pat.contains("Regex") && pat["Regex"].is_string()) return pat["Regex"].get_ref<const std::string&>();
  }
  if (pre.value("type", "") == "Sequence" && pre.contains("pretokenizers") && pre["pretokenizers"].is_array()) {
    for (const auto& p : pre["pretokenizers"])
      if (auto s = find_split_pattern(p); !s.empty()) return s;
  }
  return {};
}

}  // namespace

Tokenizer Tokenizer::from_model_dir(const std::string& dir) {
  const std::string path = (std::filesystem::path(dir) / "tokenizer.json").string();
  if (!std::filesystem::exists(path))
    fail_input("{}: no such file; the model directory {} has no tokenizer.json (pass --tokenizer FILE or a "
               "model directory that ships one)", path, dir);
  return from_file(path);
}

Tokenizer Tokenizer::from_file(const std::string& path) {
  if (std::filesystem::is_directory(path))
    fail_input("{}: is a directory; expected the path of a tokenizer.json (or load a model directory with "
               "from_model_dir / --model)", path);
  MappedFile file(path);
  auto impl = std::make_shared<Impl>();
  impl->path = path;
  JsonReader json(reinterpret_cast<const char*>(file.data()), file.size(), path);
  const ByteLevelDecoder byte_level;

  std::vector<std::string> vocab;  // index = id
  std::vector<uint8_t> have;
  std::string model_type, pattern;
  bool saw_model = false, saw_pre = false;
  nlohmann::json added = nlohmann::json::array();
  json.object([&](const std::string& key) {
    if (key == "added_tokens") {
      std::string_view raw = json.skip();
      added = nlohmann::json::parse(raw, nullptr, false);
      if (!added.is_array()) fail_input("{}: added_tokens is not an array of tokens", path);
    } else if (key == "pre_tokenizer") {
      std::string_view raw = json.skip();
      auto pre = nlohmann::json::parse(raw, nullptr, false);
      pattern = std::string(find_split_pattern(pre));
      saw_pre = true;
    } else if (key == "model") {
      saw_model = true;
      json.object([&](const std::string& mkey) {
        if (mkey == "type") {
          model_type = json.string();
        } else if (mkey == "vocab") {
          std::string bytes;
          json.object([&](const std::string& token) {
            long id = json.integer();
            if (id < 0 || id >= tok::kVocabSize)
              fail_input("{}: model.vocab[{}] is {}; expected an id in 0..{}", path, token, id, tok::kVocabSize - 1);
            if (!byte_level.decode(token, bytes))
              fail_input("{}: model.vocab key {} is not in the byte-level alphabet; expected a GPT-2 "
                         "byte-level BPE vocabulary", path, nlohmann::json(token).dump());
            if (size_t(id) >= vocab.size()) {
              vocab.resize(size_t(id) + 1);
              have.resize(size_t(id) + 1);
            }
            if (have[size_t(id)]) fail_input("{}: model.vocab has id {} twice", path, id);
            vocab[size_t(id)] = bytes;
            have[size_t(id)] = 1;
          });
        } else {
          json.skip();  // merges: BPE by rank does not need them
        }
      });
    } else {
      json.skip();
    }
  });

  if (!saw_model) fail_input("{}: no \"model\" section; expected a hub tokenizer.json", path);
  if (model_type != "BPE") fail_input("{}: model.type is \"{}\"; expected \"BPE\"", path, model_type);
  if (vocab.empty()) fail_input("{}: model.vocab is empty", path);
  for (size_t id = 0; id < vocab.size(); ++id)
    if (!have[id]) fail_input("{}: model.vocab has no token with id {}; expected ids 0..{} without gaps", path, id, vocab.size() - 1);
  if (!saw_pre || pattern != kO200kPattern)
    fail_input("{}: pre_tokenizer Split pattern is {}; expected the o200k pattern (this tokenizer implements "
               "o200k_base / o200k_harmony only)", path, saw_pre ? nlohmann::json(pattern).dump() : "missing");

  impl->n_ordinary = int(vocab.size());
  impl->ranks.build(vocab);
  for (int b = 0; b < 256; ++b)
    if (impl->ranks.byte_rank(uint8_t(b)) == RankTable::kNone)
      fail_input("{}: model.vocab has no token for byte 0x{:02x}; expected a byte-level vocabulary", path, b);

  // Special tokens: the file's added_tokens, then <|reserved_N|> for every other id up to the vocab size.
  int vocab_size = std::max(tok::kVocabSize, impl->n_ordinary);
  std::vector<std::string> special_text;
  std::vector<uint8_t> special_have;
  for (const auto& t : added) {
    if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer() || !t.contains("content") ||
        !t["content"].is_string())
      fail_input("{}: added_tokens entry {} needs an integer \"id\" and a string \"content\"", path, t.dump());
    long id = t["id"].get<long>();
    const std::string& content = t["content"].get_ref<const std::string&>();
    if (id < impl->n_ordinary || id >= (1L << 24))
      fail_input("{}: added_tokens id {} ({}) overlaps the BPE vocabulary 0..{}; expected an id past it", path, id,
                 content, impl->n_ordinary - 1);
    vocab_size = std::max(vocab_size, int(id) + 1);
    if (special_text.size() < size_t(vocab_size)) {
      special_text.resize(size_t(vocab_size));
      special_have.resize(size_t(vocab_size));
    }
    special_text[size_t(id)] = content;
    special_have[size_t(id)] = 1;
  }
  special_text.resize(size_t(vocab_size));
  special_have.resize(size_t(vocab_size));
  impl->tokens = std::move(vocab);
  impl->tokens.resize(size_t(vocab_size));
  impl->special.assign(size_t(vocab_size), 0);
  for (int id = impl->n_ordinary; id < vocab_size; ++id) {
    std::string text = special_have[size_t(id)] ? special_text[size_t(id)] : fmt::format("<|reserved_{}|>", id);
    if (text.empty()) fail_input("{}: added_tokens id {} has empty content", path, id);
    if (!impl->special_ids.emplace(text, id).second)
      fail_input("{}: special token {} is listed twice", path, text);
    impl->max_special_len = std::max(impl->max_special_len, text.size());
    impl->tokens[size_t(id)] = std::move(text);
    impl->special[size_t(id)] = 1;
  }
  return Tokenizer(std::move(impl));
}

std::vector<int> Tokenizer::encode(std::string_view text) const {
  if (size_t bad = utf8::first_invalid(text); bad != utf8::kValid) fail_utf8(text, bad);
  std::vector<int> out;
  out.reserve(text.size() / 4 + 4);
  impl_->encode_ordinary(reinterpret_cast<const uint8_t*>(text.data()), text.size(), out);
  return out;
}

std::vector<int> Tokenizer::encode_with_special(std::string_view text) const {
  if (size_t bad = utf8::first_invalid(text); bad != utf8::kValid) fail_utf8(text, bad);
  std::vector<int> out;
  out.reserve(text.size() / 4 + 4);
  const auto* p = reinterpret_cast<const uint8_t*>(text.data());
  const size_t n = text.size();
  // Special tokens are found leftmost first and the text between them is encoded on its own (as tiktoken
  // does: the pre-tokenizer sees each segment as a whole text). All specials look like "<|name|>" with no
  // "|>" inside, so at most one can start at a given position.
  size_t seg = 0, i = 0;
  while (i < n) {
    const void* lt = std::memchr(p + i, '<', n - i);
    if (!lt) break;
    i = size_t(static_cast<const uint8_t*>(lt) - p);
    const size_t limit = std::min(n, i + impl_->max_special_len);
    size_t end = 0;
    for (size_t k = i + 1; k + 1 < limit; ++k) {
      if (p[k] == '|' && p[k + 1] == '>' && k > i + 1) {
        end = k + 2;
        break;
      }
    }
    if (end) {
      auto it = impl_->special_ids.find(std::string(text.substr(i, end - i)));
      if (it != impl_->special_ids.end()) {
        impl_->encode_ordinary(p + seg, i - seg, out);
        out.push_back(it->second);
        seg = i = end;
        continue;
      }
    }
    ++i;
  }
  impl_->encode_ordinary(p + seg, n - seg, out);
  return out;
}

std::string_view Tokenizer::token_bytes(int id) const {
  if (id < 0 || id >= vocab_size())
    fail_input("token id {} is out of range; expected 0..{}", id, vocab_size() - 1);
  return impl_->tokens[size_t(id)];
}

std::string Tokenizer::decode(std::span<const int> ids) const {
  size_t total = 0;
  for (int id : ids) total += token_bytes(id).size();
  std::string out;
  out.reserve(total);
  for (int id : ids) out += impl_->tokens[size_t(id)];
  return out;
}

bool Tokenizer::is_special(int id) const {
  return id >= 0 && id < vocab_size() && impl_->special[size_t(id)] != 0;
}

std::optional<int> Tokenizer::special_id(std::string_view text) const {
  auto it = impl_->special_ids.find(std::string(text));
  if (it == impl_->special_ids.end()) return std::nullopt;
  return it->second;
}

int Tokenizer::vocab_size() const { return int(impl_->tokens.size()); }

// --- IncrementalDecoder -------------------------------------------------------------------------------

namespace {

// Moves every complete character of pending (and a U+FFFD for every ill-formed part) to the result;
// keeps a well-formed but incomplete tail in pending unless final.
std::string drain(std::string& pending, bool final) {
  const auto* p = reinterpret_cast<const uint8_t*>(pending.data());
  const size_t n = pending.size();
  std::string out;
  out.reserve(n);
  size_t i = 0;
  while (i < n) {
    uint32_t cp;
    int r = utf8::sequence(p + i, n - i, &cp);
    if (r > 0) {
      out.append(pending, i, size_t(r));
      i += size_t(r);
    } else if (r == 0) {
      if (final) {
        out += utf8::kReplacement;
        i = n;
      }
      break;
    } else {
      out += utf8::kReplacement;
      i += size_t(-r);
    }
  }
  pending.erase(0, i);
  return out;
}

}  // namespace

std::string IncrementalDecoder::push(int id) {
  pending_ += tok_.token_bytes(id);
  return drain(pending_, false);
}

std::string IncrementalDecoder::flush() { return drain(pending_, true); }

}  // namespace gptoss
