#include "train/dataset.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <numeric>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "api/chat_mapping.h"
#include "core/error.h"
#include "hub/dataset_files.h"
#include "io/parquet.h"

namespace gptoss::train {
namespace {

namespace fs = std::filesystem;
using OJson = nlohmann::ordered_json;

constexpr const char* kCollator = "text_completions_only_with_padding";
constexpr const char* kAllTokens = "text_with_padding";  // and no collator: every token trained
constexpr const char* kDefaultResponse = "<|start|>assistant";
constexpr const char* kDefaultInstruction = "<|start|>user";
constexpr const char* kReasoningKeys[] = {"reasoning_content", "reasoning", "thinking"};

// A permutation of 0..n-1 fixed by `seed` (Fisher-Yates over splitmix64, so every platform gets the same).
std::vector<size_t> permutation(size_t n, uint64_t seed) {
  std::vector<size_t> p(n);
  std::iota(p.begin(), p.end(), size_t(0));
  uint64_t s = seed;
  auto next = [&s] {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  };
  for (size_t i = n; i > 1; --i) {
    // Multiply-shift onto [0, i): the bias is below 2^-32 for any dataset size that fits in memory.
    const size_t j = size_t((unsigned __int128)(next()) * i >> 64);
    std::swap(p[i - 1], p[j]);
  }
  return p;
}

bool starts_with(std::span<const int32_t> tokens, size_t at, std::span<const int32_t> pattern) {
  if (pattern.empty() || at + pattern.size() > tokens.size()) return false;
  return std::equal(pattern.begin(), pattern.end(), tokens.begin() + std::ptrdiff_t(at));
}

bool has_tool_calls(const OJson& m) {
  auto it = m.find("tool_calls");
  return it != m.end() && it->is_array() && !it->empty();
}

// nlohmann's "[json.exception.parse_error.101] parse error at line 1, column 5: ..." without the tag.
std::string json_error_text(const std::exception& e) {
  std::string s = e.what();
  if (s.rfind("[json.exception.", 0) == 0)
    if (auto p = s.find("] "); p != std::string::npos) s = s.substr(p + 2);
  return s;
}

// A collator template (harmony text with special tokens) as token ids.
std::vector<int32_t> template_ids(const Tokenizer& tok, const DatasetSplitParams& split, const std::string& where,
                                  const char* key, const char* fallback) {
  std::string text = fallback;
  if (split.collator_kwargs.is_object() && split.collator_kwargs.contains(key)) {
    const auto& v = split.collator_kwargs[key];
    if (!v.is_string() || v.get<std::string>().empty())
      fail_input("{}.collator_kwargs.{} is {}; expected harmony text such as \"{}\"", where, key, v.dump(), fallback);
    text = v.get<std::string>();
  }
  const std::vector<int> ids = tok.encode_with_special(text);
  return {ids.begin(), ids.end()};
}

// Whether the split trains the assistant's tokens only (else every token); checks the collator.
bool completion_only(const DatasetSplitParams& split, const std::string& where) {
  if (split.collator_name.empty() || split.collator_name == kAllTokens) {
    if (split.collator_kwargs.is_object() && !split.collator_kwargs.empty())
      fail_input("{}.collator_kwargs is {}; {} takes no options", where, split.collator_kwargs.dump(),
                 split.collator_name.empty() ? "training on every token (no collator_name)" : kAllTokens);
    return false;
  }
  if (split.collator_name != kCollator)
    fail_input("{}.collator_name is '{}'; gptoss train supports {} (train on the assistant's messages "
               "only) and {} (every token)",
               where, split.collator_name, kCollator, kAllTokens);
  return true;
}

// Checks the split's collator and options; returns whether it trains the assistant's tokens only.
bool check_split(const DatasetSplitParams& split, const std::string& where) {
  const bool only_assistant = completion_only(split, where);
  if (split.collator_kwargs.is_object() && only_assistant)
    for (const auto& [key, value] : split.collator_kwargs.items())
      if (key != "response_template" && key != "instruction_template")
        fail_input("{}.collator_kwargs.{} is not a {} option; expected response_template or "
                   "instruction_template",
                   where, key, kCollator);
  if (split.pack)
    fail_input("{}.pack is true; gptoss train trains one conversation per sequence (set it false)", where);
  if (split.datasets.empty())
    fail_input("{}.datasets is empty; list at least one dataset (a dataset_path or a hub dataset_name)", where);
  return only_assistant;
}

// A split name with an optional slice, as the datasets library takes it: "train", "train[:100]",
// "train[10:20]", "train[-50:]", "train[:10%]".
struct SplitSpec {
  std::string name;
  bool sliced = false;
  std::optional<double> from, to;  // rows, or percent when `percent`
  bool percent = false;
};

SplitSpec parse_split(const std::string& text, const std::string& key) {
  SplitSpec s;
  const size_t open = text.find('[');
  s.name = text.substr(0, open);
  auto bad = [&] {
    fail_input("{}.split is '{}'; expected a split name with an optional slice such as train, train[:100], "
               "train[10:20] or train[:10%]",
               key, text);
  };
  if (s.name.empty()) bad();
  if (open == std::string::npos) return s;
  if (text.back() != ']') bad();
  const std::string inner = text.substr(open + 1, text.size() - open - 2);
  const size_t colon = inner.find(':');
  if (colon == std::string::npos) bad();
  s.sliced = true;
  auto bound = [&](std::string b, bool* pct) -> std::optional<double> {
    *pct = !b.empty() && b.back() == '%';
    if (*pct) b.pop_back();
    if (b.empty()) {
      if (*pct) bad();
      return std::nullopt;
    }
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(b, &used);
    } catch (const std::exception&) {
      bad();
    }
    if (used != b.size()) bad();
    return double(v);
  };
  bool from_pct = false, to_pct = false;
  s.from = bound(inner.substr(0, colon), &from_pct);
  s.to = bound(inner.substr(colon + 1), &to_pct);
  if (s.from && s.to && from_pct != to_pct) bad();  // rows and percent mixed
  s.percent = from_pct || to_pct;
  return s;
}

// The rows [from, to) of n that a slice selects (Python's rules: negative counts from the end, clamped).
std::pair<size_t, size_t> slice_range(const SplitSpec& s, size_t n) {
  auto at = [&](std::optional<double> b, size_t fallback) {
    if (!b) return fallback;
    double v = s.percent ? *b * double(n) / 100.0 : *b;
    if (v < 0) v += double(n);
    return size_t(std::clamp(v, 0.0, double(n)));
  };
  const size_t from = at(s.from, 0), to = at(s.to, n);
  return {from, std::max(from, to)};
}

// The data files of datasets[i], checked: dataset_path (a file, or a folder whose files are chosen by
// split), else dataset_name as a hub dataset (hub/dataset_files.h).
std::vector<std::string> dataset_files(const DatasetParams& d, const std::string& key, const SplitSpec& split) {
  if (d.mixture_proportion)
    fail_input("{}.mixture_proportion is {}; gptoss train concatenates the datasets in order (remove it)", key,
               *d.mixture_proportion);
  if (d.sample_count && *d.sample_count <= 0)
    fail_input("{}.sample_count is {}; expected a positive number of examples (or leave it out)", key,
               *d.sample_count);
  std::error_code ec;
  if (!d.dataset_path.empty()) {
    if (!fs::exists(d.dataset_path, ec))
      fail_input("{}.dataset_path is '{}': no such file or folder; expected a JSONL or Parquet file, or a folder "
                 "of them",
                 key, d.dataset_path);
    try {
      return resolve_dataset_files(d.dataset_path, d.subset, split.name);
    } catch (const InputError& e) {
      fail_input("{}.dataset_path: {}", key, e.what());
    }
  }
  if (d.dataset_name.empty())
    fail_input("{} has neither dataset_path nor dataset_name; set dataset_path to a JSONL or Parquet file, or "
               "dataset_name to a hub dataset (ORG/NAME)",
               key);
  if (!looks_like_repo_id(d.dataset_name))
    fail_input("{}.dataset_name is '{}', not a hub dataset id (ORG/NAME); gptoss has no dataset classes by name: "
               "set {}.dataset_path to a JSONL or Parquet file of conversations",
               key, d.dataset_name, key);
  try {
    return resolve_dataset_files(d.dataset_name, d.subset, split.name);
  } catch (const InputError& e) {
    fail_input("{}.dataset_name: {}", key, e.what());
  }
}

struct Row {
  OJson json;
  size_t line = 0;      // line of a JSONL file, else row of a Parquet file or JSON array (1-based)
  bool by_row = false;  // `line` is a row: "path row 12", not "path:12"
};

std::string where_of(const std::string& path, const Row& r) {
  return r.by_row ? fmt::format("{} row {}", path, r.line) : fmt::format("{}:{}", path, r.line);
}

bool ends_with(const std::string& s, const char* suffix) {
  const size_t n = std::char_traits<char>::length(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

std::vector<Row> read_jsonl(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail_input("{}: cannot open for reading", path);
  std::vector<Row> rows;
  std::string text;
  size_t line = 0;
  while (std::getline(f, text)) {
    ++line;
    if (!text.empty() && text.back() == '\r') text.pop_back();
    if (text.find_first_not_of(" \t") == std::string::npos) continue;  // blank lines separate nothing
    Row r;
    r.line = line;
    try {
      r.json = OJson::parse(text);
    } catch (const nlohmann::json::exception& e) {
      fail_input("{}:{}: not valid JSON ({}); expected one {{\"messages\": [...]}} object per line", path, line,
                 json_error_text(e));
    }
    if (!r.json.is_object())
      fail_input("{}:{}: a JSON {}; expected an object {{\"messages\": [...]}}", path, line, r.json.type_name());
    rows.push_back(std::move(r));
  }
  if (f.bad()) fail_input("{}: read error after line {}", path, line);
  return rows;
}

// A .json file: JSON lines, or one array of row objects.
std::vector<Row> read_json(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail_input("{}: cannot open for reading", path);
  char c = 0;
  while (f.get(c) && std::isspace(static_cast<unsigned char>(c))) {
  }
  if (c != '[') return read_jsonl(path);
  f.seekg(0);
  OJson all;
  try {
    all = OJson::parse(f);
  } catch (const nlohmann::json::exception& e) {
    fail_input("{}: not valid JSON ({}); expected an array of {{\"messages\": [...]}} objects or JSON lines", path,
               json_error_text(e));
  }
  std::vector<Row> rows;
  for (size_t i = 0; i < all.size(); ++i) {
    if (!all[i].is_object())
      fail_input("{}: element {} is a JSON {}; expected an object {{\"messages\": [...]}}", path, i,
                 all[i].type_name());
    rows.push_back(Row{std::move(all[i]), i + 1, true});
  }
  return rows;
}

// A Parquet file's rows, only the columns a conversation reads.
std::vector<Row> read_parquet(const std::string& path, const std::string& messages_key) {
  io::ParquetReader reader(path);
  std::vector<std::string> columns;
  for (const std::string& f : reader.fields())
    if (f == messages_key || f == "tools" || f == "reasoning_effort") columns.push_back(f);
  if (std::find(columns.begin(), columns.end(), messages_key) == columns.end())
    fail_input("{}: no column '{}'; its columns: {} (data.train.target_col names the column of messages)", path,
               messages_key, fmt::join(reader.fields(), ", "));
  std::vector<Row> rows;
  for (int g = 0; g < reader.num_row_groups(); ++g)
    for (auto& json : reader.read_row_group(g, columns)) rows.push_back(Row{std::move(json), rows.size() + 1, true});
  return rows;
}

// The rows of one data file, by its extension.
std::vector<Row> read_rows(const std::string& path, const std::string& messages_key) {
  if (ends_with(path, ".parquet")) return read_parquet(path, messages_key);
  if (ends_with(path, ".json")) return read_json(path);
  return read_jsonl(path);  // .jsonl, and any other name given as dataset_path
}

}  // namespace

harmony::Conversation training_conversation(const OJson& row, const std::string& messages_key) {
  if (!row.is_object()) fail_input("the row is a JSON {}; expected an object", row.type_name());
  auto it = row.find(messages_key);
  if (it == row.end())
    fail_input("no '{}' key; expected {{\"{}\": [{{\"role\": ..., \"content\": ...}}, ...]}}", messages_key,
               messages_key);
  if (!it->is_array()) fail_input("'{}' is a JSON {}; expected an array of messages", messages_key, it->type_name());
  OJson msgs = *it;
  // Where gpt-oss's chat template keeps chain of thought in training: the last message, and tool-calling
  // messages after the last final answer (an assistant message without tool calls).
  std::ptrdiff_t last_final = -1;
  for (size_t i = 0; i < msgs.size(); ++i)
    if (msgs[i].is_object() && msgs[i].value("role", "") == "assistant" && !has_tool_calls(msgs[i]))
      last_final = std::ptrdiff_t(i);
  for (size_t i = 0; i < msgs.size(); ++i) {
    OJson& m = msgs[i];
    if (!m.is_object() || m.value("role", "") != "assistant") continue;
    const bool keep = has_tool_calls(m) ? std::ptrdiff_t(i) > last_final : i + 1 == msgs.size();
    if (!keep)
      for (const char* k : kReasoningKeys) m.erase(k);
  }
  OJson req = OJson::object();
  req["messages"] = std::move(msgs);
  for (const char* k : {"tools", "reasoning_effort"})
    if (auto f = row.find(k); f != row.end()) req[k] = *f;
  harmony::Conversation conv;
  try {
    conv = chat_to_harmony(req).conversation;
  } catch (const InputError& e) {
    // chat_to_harmony names fields of its request ("messages[2].role"); name them by the row's key.
    std::string msg = e.what();
    if (messages_key != "messages" && msg.rfind("messages", 0) == 0) msg = messages_key + msg.substr(8);
    throw InputError(msg);
  }
  return conv;
}

std::vector<int32_t> completion_only_labels(std::span<const int32_t> tokens, std::span<const int32_t> response_ids,
                                            std::span<const int32_t> instruction_ids) {
  const size_t n = tokens.size();
  std::vector<char> trained(n, 0);
  bool in_turn = false;
  for (size_t j = 0; j < n;) {
    if (starts_with(tokens, j, response_ids)) {
      if (!in_turn) {  // a turn's opening header: the prompt's, not trained
        in_turn = true;
        j += response_ids.size();
        continue;
      }
      // else: a header inside the assistant's turn (after its analysis), which the model writes: trained
    } else if (starts_with(tokens, j, instruction_ids) || (in_turn && tokens[j] == tok::kStart)) {
      in_turn = false;  // the user's (or a tool's) message
    }
    trained[j] = in_turn;
    ++j;
  }
  std::vector<int32_t> labels(n, kIgnoreLabel);
  for (size_t i = 0; i + 1 < n; ++i)
    if (trained[i + 1]) labels[i] = tokens[i + 1];
  return labels;
}

std::vector<size_t> epoch_order(size_t num_examples, uint64_t seed, int64_t epoch, bool shuffle) {
  if (shuffle) return permutation(num_examples, seed * 0x9e3779b97f4a7c15ull + uint64_t(epoch) + 1);
  std::vector<size_t> order(num_examples);
  std::iota(order.begin(), order.end(), size_t(0));
  return order;
}

std::vector<TrainExample> load_train_examples(const DataParams& data, const Tokenizer& tok, int64_t max_len,
                                              DatasetStats* stats) {
  return load_examples(data.train, "data.train", tok, max_len, stats);
}

std::vector<TrainExample> load_examples(const DatasetSplitParams& split, const std::string& where,
                                        const Tokenizer& tok, int64_t max_len, DatasetStats* stats) {
  GPTOSS_CHECK(max_len >= 2, "load_train_examples: max_len is {}; a training sequence needs at least 2 tokens",
               max_len);
  const bool only_assistant = check_split(split, where);
  const std::vector<int32_t> response = template_ids(tok, split, where, "response_template", kDefaultResponse);
  const std::vector<int32_t> instruction =
      template_ids(tok, split, where, "instruction_template", kDefaultInstruction);
  const std::string key = split.target_col.empty() ? "messages" : split.target_col;

  DatasetStats st;
  std::vector<TrainExample> out;
  harmony::RenderOptions ro;
  ro.auto_drop_analysis = false;  // training_conversation already chose which chain of thought stays
  for (size_t di = 0; di < split.datasets.size(); ++di) {
    const DatasetParams& d = split.datasets[di];
    const std::string dkey = fmt::format("{}.datasets[{}]", where, di);
    const SplitSpec spec = parse_split(d.split, dkey);
    std::vector<Row> rows;
    std::vector<std::string> row_file;  // the file of each row, for messages
    const std::vector<std::string> files = dataset_files(d, dkey, spec);
    for (const std::string& path : files) {
      std::vector<Row> more = read_rows(path, key);
      for (auto& r : more) {
        rows.push_back(std::move(r));
        row_file.push_back(path);
      }
    }
    const std::string named = d.dataset_path.empty() ? d.dataset_name : d.dataset_path;
    if (rows.empty()) fail_input("{}: no conversations ({})", named, dkey);
    auto [from, to] = spec.sliced ? slice_range(spec, rows.size()) : std::pair<size_t, size_t>{0, rows.size()};
    if (from == to) fail_input("{}.split '{}' selects none of the {} conversations of {}", dkey, d.split, rows.size(), named);
    std::vector<size_t> order(to - from);
    std::iota(order.begin(), order.end(), from);
    if (d.shuffle) {
      const std::vector<size_t> p = permutation(order.size(), uint64_t(d.seed));
      std::vector<size_t> shuffled(order.size());
      for (size_t i = 0; i < p.size(); ++i) shuffled[i] = order[p[i]];
      order = std::move(shuffled);
    }
    if (d.sample_count && size_t(*d.sample_count) < order.size()) order.resize(size_t(*d.sample_count));
    for (size_t idx : order) {
      const Row& row = rows[idx];
      ++st.conversations;
      std::vector<int> ids;
      try {
        const harmony::Conversation conv = training_conversation(row.json, key);
        if (only_assistant &&
            std::none_of(conv.messages.begin(), conv.messages.end(),
                         [](const harmony::Message& m) { return m.author.role == harmony::Role::kAssistant; }))
          fail_input("no assistant message; nothing to train on (only the assistant's messages are trained)");
        ids = harmony::render_for_training_tokens(conv, tok, ro);
      } catch (const InputError& e) {
        fail_input("{}: {}", where_of(row_file[idx], row), e.what());
      }
      TrainExample ex;
      ex.tokens.assign(ids.begin(), ids.end());
      if (int64_t(ex.tokens.size()) > max_len) {
        ex.tokens.resize(size_t(max_len));
        ++st.truncated;
      }
      if (only_assistant) {
        ex.labels = completion_only_labels(ex.tokens, response, instruction);
      } else {
        ex.labels.assign(ex.tokens.size(), kIgnoreLabel);
        for (size_t i = 0; i + 1 < ex.tokens.size(); ++i) ex.labels[i] = ex.tokens[i + 1];
      }
      const auto trained =
          std::count_if(ex.labels.begin(), ex.labels.end(), [](int32_t l) { return l != kIgnoreLabel; });
      if (trained == 0) {
        ++st.dropped_untrained;
        continue;
      }
      st.trained_tokens += trained;
      out.push_back(std::move(ex));
    }
  }
  if (stats) *stats = st;
  return out;
}

}  // namespace gptoss::train
