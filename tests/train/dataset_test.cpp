// train/dataset.h with the real o200k_harmony tokenizer: JSONL conversations render as gpt-oss's chat
// template renders them for training, the labels cover exactly the assistant's spans (checked on the
// detokenized labelled text), chain of thought survives only where the template keeps it, truncation and
// untrained examples, Parquet files, JSON arrays, folders and split slices, and every bad line or config
// value is an InputError naming where it is.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "core/atomic_file.h"
#include "core/error.h"
#include "tokenizer/tokenizer.h"
#include "train/dataset.h"
#include "test_util.h"

namespace gptoss::train {
namespace {

namespace fs = std::filesystem;

std::string shared_dir() {
  if (const char* e = std::getenv("GPTOSS_SHARED_DIR"); e && *e) return e;
  return GPTOSS_SHARED_DIR;
}

const Tokenizer& tokenizer() {
  static const Tokenizer tok = Tokenizer::from_file(shared_dir() + "/data/tokenizer/tokenizer.json");
  return tok;
}

// The system message chat_to_harmony writes (SystemContent::defaults(), medium effort, no date line).
const std::string kSystem =
    "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n"
    "Knowledge cutoff: 2024-06\n\nReasoning: medium\n\n"
    "# Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|>";

const std::string kSingleTurn =
    R"({"messages": [{"role": "system", "content": "Answer briefly."},)"
    R"( {"role": "user", "content": "What is 2+2?"},)"
    R"( {"role": "assistant", "thinking": "Two plus two is four.", "content": "4"}]})";

const std::string kMultiTurn =
    R"({"messages": [{"role": "user", "content": "Hi"},)"
    R"( {"role": "assistant", "thinking": "OLD THOUGHT", "content": "Hello!"},)"
    R"( {"role": "user", "content": "Capital of France?"},)"
    R"( {"role": "assistant", "reasoning_content": "It is Paris.", "content": "Paris."}]})";

const std::string kToolTurn =
    R"({"messages": [{"role": "user", "content": "Weather in Paris?"},)"
    R"( {"role": "assistant", "thinking": "Call the tool.", "tool_calls": [{"id": "c1", "type": "function",)"
    R"(   "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},)"
    R"( {"role": "tool", "tool_call_id": "c1", "content": "sunny"},)"
    R"( {"role": "assistant", "content": "It is sunny."}],)"
    R"( "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object",)"
    R"(   "properties": {"city": {"type": "string"}}}}}]})";

class Dataset : public ::testing::Test {
 protected:
  std::string write(const std::string& name, const std::vector<std::string>& lines) {
    std::string text;
    for (const auto& l : lines) text += l + "\n";
    const std::string p = dir_ / name;
    write_file_atomic(p, text);
    return p;
  }

  static DataParams data_for(const std::string& path) {
    DataParams d;
    d.train.collator_name = "text_completions_only_with_padding";
    DatasetParams ds;
    ds.dataset_name = "text_sft";
    ds.dataset_path = path;
    d.train.datasets.push_back(ds);
    return d;
  }

  // The trained targets as text, one string per run of consecutive trained labels.
  static std::vector<std::string> trained_spans(const TrainExample& ex) {
    std::vector<std::string> spans;
    std::vector<int> run;
    for (size_t i = 0; i <= ex.labels.size(); ++i) {
      const bool on = i < ex.labels.size() && ex.labels[i] != kIgnoreLabel;
      if (on) {
        EXPECT_EQ(ex.labels[i], ex.tokens[i + 1]) << "label " << i << " is not the next token";
        run.push_back(ex.labels[i]);
      } else if (!run.empty()) {
        spans.push_back(tokenizer().decode(run));
        run.clear();
      }
    }
    return spans;
  }

  static std::string text_of(const TrainExample& ex) {
    return tokenizer().decode(std::vector<int>(ex.tokens.begin(), ex.tokens.end()));
  }

  std::string error_of(const DataParams& d, int64_t max_len = 4096) {
    return input_error_of([&] { load_train_examples(d, tokenizer(), max_len); });
  }

  TempDir dir_{"dataset"};
};

// system + user + assistant (thinking + final): rendered as gpt-oss's chat template renders a training
// conversation (minus its date line), trained on exactly the assistant's analysis and final messages.
TEST_F(Dataset, SingleTurnLabelsTheAssistantsAnalysisAndFinal) {
  DatasetStats st;
  const auto ex = load_train_examples(data_for(write("a.jsonl", {kSingleTurn})), tokenizer(), 4096, &st);
  ASSERT_EQ(ex.size(), 1u);
  EXPECT_EQ(text_of(ex[0]), kSystem +
                                "<|start|>developer<|message|># Instructions\n\nAnswer briefly.<|end|>"
                                "<|start|>user<|message|>What is 2+2?<|end|>"
                                "<|start|>assistant<|channel|>analysis<|message|>Two plus two is four.<|end|>"
                                "<|start|>assistant<|channel|>final<|message|>4<|return|>");
  ASSERT_EQ(ex[0].labels.size(), ex[0].tokens.size());
  EXPECT_EQ(ex[0].labels.back(), kIgnoreLabel);
  EXPECT_EQ(trained_spans(ex[0]),
            std::vector<std::string>{"<|channel|>analysis<|message|>Two plus two is four.<|end|>"
                                     "<|start|>assistant<|channel|>final<|message|>4<|return|>"});
  EXPECT_EQ(st.conversations, 1);
  EXPECT_EQ(st.truncated, 0);
  EXPECT_EQ(st.trained_tokens,
            std::count_if(ex[0].labels.begin(), ex[0].labels.end(), [](int32_t l) { return l != kIgnoreLabel; }));
}

// Two turns: both answers trained, the user's second message not; the first turn's thinking is dropped
// (as the chat template drops it), the last turn's kept. Read from the second line of the file.
// text_with_padding (and no collator at all, TRL's default) trains every token: the labels are the
// whole rendering shifted by one; a conversation without an assistant message is fine there.
TEST_F(Dataset, TextWithPaddingTrainsEveryToken) {
  for (const char* collator : {"text_with_padding", ""}) {
    DataParams d = data_for(write("all.jsonl", {kSingleTurn, R"({"messages": [{"role": "user", "content": "hi"}]})"}));
    d.train.collator_name = collator;
    const auto ex = load_train_examples(d, tokenizer(), 4096);
    ASSERT_EQ(ex.size(), 2u) << collator;
    for (const TrainExample& e : ex) {
      ASSERT_EQ(e.labels.size(), e.tokens.size());
      for (size_t i = 0; i + 1 < e.tokens.size(); ++i) EXPECT_EQ(e.labels[i], e.tokens[i + 1]);
      EXPECT_EQ(e.labels.back(), kIgnoreLabel);
    }
    d.train.collator_name = "text_completions_only_with_padding";  // the user-only line has nothing to train
    EXPECT_NE(error_of(d).find("all.jsonl:2: no assistant message"), std::string::npos);
  }
}

TEST_F(Dataset, MultiTurnLabelsEachAnswerAndDropsOldThinking) {
  const auto ex = load_train_examples(data_for(write("b.jsonl", {kSingleTurn, "", kMultiTurn})), tokenizer(), 4096);
  ASSERT_EQ(ex.size(), 2u);
  const std::string text = text_of(ex[1]);
  EXPECT_EQ(text.find("OLD THOUGHT"), std::string::npos) << text;
  EXPECT_EQ(text, kSystem +
                      "<|start|>user<|message|>Hi<|end|>"
                      "<|start|>assistant<|channel|>final<|message|>Hello!<|end|>"
                      "<|start|>user<|message|>Capital of France?<|end|>"
                      "<|start|>assistant<|channel|>analysis<|message|>It is Paris.<|end|>"
                      "<|start|>assistant<|channel|>final<|message|>Paris.<|return|>");
  EXPECT_EQ(trained_spans(ex[1]), (std::vector<std::string>{
                                      "<|channel|>final<|message|>Hello!<|end|>",
                                      "<|channel|>analysis<|message|>It is Paris.<|end|><|start|>assistant"
                                      "<|channel|>final<|message|>Paris.<|return|>"}));
}

// A tool call: the call is trained, the tool's result (written by the environment) is not, the answer
// after it is; the call's thinking is dropped because a final answer follows.
TEST_F(Dataset, ToolResultsAreNotTrained) {
  const auto ex = load_train_examples(data_for(write("t.jsonl", {kToolTurn})), tokenizer(), 4096);
  ASSERT_EQ(ex.size(), 1u);
  const std::string text = text_of(ex[0]);
  EXPECT_EQ(text.find("Call the tool."), std::string::npos) << text;
  EXPECT_NE(text.find("<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>sunny<|end|>"),
            std::string::npos)
      << text;
  EXPECT_EQ(trained_spans(ex[0]),
            (std::vector<std::string>{
                " to=functions.get_weather<|channel|>commentary <|constrain|>json<|message|>"
                "{\"city\":\"Paris\"}<|call|>",
                "<|channel|>final<|message|>It is sunny.<|return|>"}));
}

// The last message's thinking stays on a conversation that ends in a tool call (no final answer after it).
TEST(TrainingConversation, KeepsThinkingOfTrailingToolCalls) {
  const auto row = nlohmann::ordered_json::parse(
      R"({"messages": [{"role": "user", "content": "Weather?"}, {"role": "assistant", "thinking": "Use the tool.",)"
      R"( "tool_calls": [{"id": "c", "type": "function", "function": {"name": "w", "arguments": "{}"}}]}]})");
  const auto conv = training_conversation(row);
  ASSERT_EQ(conv.messages.size(), 4u);  // system, user, analysis, call
  EXPECT_EQ(conv.messages[2].channel, "analysis");
  EXPECT_EQ(conv.messages[2].content, "Use the tool.");
  EXPECT_EQ(conv.messages[3].recipient, "functions.w");
}

TEST_F(Dataset, TruncationKeepsLabelsConsistent) {
  const std::string p = write("c.jsonl", {kSingleTurn});
  const auto full = load_train_examples(data_for(p), tokenizer(), 4096);
  ASSERT_EQ(full.size(), 1u);
  const int64_t n = int64_t(full[0].tokens.size());
  DatasetStats st;
  const auto cut = load_train_examples(data_for(p), tokenizer(), n - 3, &st);
  ASSERT_EQ(cut.size(), 1u);
  EXPECT_EQ(st.truncated, 1);
  ASSERT_EQ(cut[0].tokens.size(), size_t(n - 3));
  ASSERT_EQ(cut[0].labels.size(), size_t(n - 3));
  EXPECT_TRUE(std::equal(cut[0].tokens.begin(), cut[0].tokens.end(), full[0].tokens.begin()));
  EXPECT_TRUE(std::equal(cut[0].labels.begin(), cut[0].labels.end() - 1, full[0].labels.begin()));
  EXPECT_EQ(cut[0].labels.back(), kIgnoreLabel);
  // Cut before the assistant speaks: nothing to train, the example is dropped.
  const auto none = load_train_examples(data_for(p), tokenizer(), 40, &st);
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(st.dropped_untrained, 1);
  EXPECT_EQ(st.trained_tokens, 0);
}

TEST_F(Dataset, BadLinesNameFileLineAndProblem) {
  const std::string p = write("bad.jsonl", {kSingleTurn, kSingleTurn, "{\"messages\": [", kSingleTurn});
  std::string e = error_of(data_for(p));
  EXPECT_NE(e.find(p + ":3: not valid JSON"), std::string::npos) << e;

  e = error_of(data_for(write("role.jsonl", {kSingleTurn, R"({"messages": [{"role": "robot", "content": "x"}]})"})));
  EXPECT_NE(e.find("role.jsonl:2: messages[0].role is 'robot'"), std::string::npos) << e;

  e = error_of(data_for(write("key.jsonl", {R"({"conversation": []})"})));
  EXPECT_NE(e.find("key.jsonl:1: no 'messages' key"), std::string::npos) << e;

  e = error_of(data_for(write("arr.jsonl", {"[1, 2]"})));
  EXPECT_NE(e.find("arr.jsonl:1: a JSON array"), std::string::npos) << e;

  e = error_of(data_for(write("user.jsonl", {R"({"messages": [{"role": "user", "content": "hi"}]})"})));
  EXPECT_NE(e.find("user.jsonl:1: no assistant message"), std::string::npos) << e;

  e = error_of(data_for(write("think.jsonl", {R"({"messages": [{"role": "assistant", "thinking": 3}]})"})));
  EXPECT_NE(e.find("think.jsonl:1: messages[0].thinking is 3; expected a string"), std::string::npos) << e;

  e = error_of(data_for(write("empty.jsonl", {""})));
  EXPECT_NE(e.find("no conversations"), std::string::npos) << e;
}

TEST_F(Dataset, ConfigErrorsNameTheKey) {
  DataParams d = data_for(write("ok.jsonl", {kSingleTurn}));
  d.train.collator_name = "DataCollatorForLanguageModeling";
  std::string e = error_of(d);
  EXPECT_NE(e.find("data.train.collator_name is 'DataCollatorForLanguageModeling'"), std::string::npos) << e;
  EXPECT_NE(e.find("text_completions_only_with_padding"), std::string::npos) << e;
  EXPECT_NE(e.find("text_with_padding"), std::string::npos) << e;
  d.train.collator_name = "text_with_padding";
  d.train.collator_kwargs = {{"response_template", "<|start|>assistant"}};
  EXPECT_NE(error_of(d).find("text_with_padding takes no options"), std::string::npos);

  // A hub dataset that is not in the cache, offline: the dataset, the cache and the way out.
  d = data_for("");
  d.train.datasets[0].dataset_name = "HuggingFaceH4/Multilingual-Thinking";
  {
    ScopedEnv offline("HF_HUB_OFFLINE", "1"), cache("HF_HUB_CACHE", dir_ / "hub-cache");
    e = error_of(d);
  }
  EXPECT_NE(e.find("data.train.datasets[0].dataset_name: dataset HuggingFaceH4/Multilingual-Thinking"),
            std::string::npos) << e;
  EXPECT_NE(e.find("HF_HUB_OFFLINE"), std::string::npos) << e;
  EXPECT_NE(e.find("dataset_path"), std::string::npos) << e;
  d.train.datasets[0].dataset_name = "text_sft";  // an Oumi dataset class, without its file
  e = error_of(d);
  EXPECT_NE(e.find("'text_sft', not a hub dataset id"), std::string::npos) << e;
  EXPECT_NE(e.find("data.train.datasets[0].dataset_path"), std::string::npos) << e;

  e = error_of(data_for(dir_ / "missing.jsonl"));
  EXPECT_NE(e.find("data.train.datasets[0].dataset_path is"), std::string::npos) << e;
  EXPECT_NE(e.find("no such file"), std::string::npos) << e;

  d = data_for(write("ok2.jsonl", {kSingleTurn}));
  d.train.pack = true;
  EXPECT_NE(error_of(d).find("data.train.pack"), std::string::npos);
  d.train.pack = false;
  d.train.collator_kwargs = {{"mlm", false}};
  EXPECT_NE(error_of(d).find("data.train.collator_kwargs.mlm"), std::string::npos);
}

// target_col names the messages key; collator_kwargs.response_template narrows training to final answers;
// sample_count / shuffle pick a seeded subset.
TEST_F(Dataset, TargetColTemplatesAndSampling) {
  std::string row = kSingleTurn;
  row.replace(row.find("\"messages\""), 10, "\"chat\"");
  DataParams d = data_for(write("col.jsonl", {row}));
  d.train.target_col = "chat";
  d.train.collator_kwargs = {{"response_template", "<|start|>assistant<|channel|>final"}};
  auto ex = load_train_examples(d, tokenizer(), 4096);
  ASSERT_EQ(ex.size(), 1u);
  EXPECT_EQ(trained_spans(ex[0]), std::vector<std::string>{"<|message|>4<|return|>"});

  std::vector<std::string> lines;
  for (int i = 0; i < 10; ++i) {
    std::string l = kSingleTurn;
    l.replace(l.find("What is 2+2?"), 12, "Question " + std::to_string(i));
    lines.push_back(l);
  }
  d = data_for(write("many.jsonl", lines));
  d.train.datasets[0].sample_count = 4;
  auto first = load_train_examples(d, tokenizer(), 4096);
  ASSERT_EQ(first.size(), 4u);
  for (size_t i = 0; i < 4; ++i)
    EXPECT_NE(text_of(first[i]).find("Question " + std::to_string(i)), std::string::npos);
  d.train.datasets[0].shuffle = true;
  auto a = load_train_examples(d, tokenizer(), 4096), b = load_train_examples(d, tokenizer(), 4096);
  ASSERT_EQ(a.size(), 4u);
  std::vector<std::string> ta, tb;
  for (size_t i = 0; i < 4; ++i) {
    ta.push_back(text_of(a[i]));
    tb.push_back(text_of(b[i]));
  }
  EXPECT_EQ(ta, tb);  // deterministic
  std::vector<std::string> tf;
  for (auto& e : first) tf.push_back(text_of(e));
  EXPECT_NE(ta, tf);  // but not the file order
}

// split slices rows as the datasets library does; a .json file may be one array of rows; a folder's files
// are chosen by split.
TEST_F(Dataset, SplitSlicesJsonArraysAndFolders) {
  std::vector<std::string> lines;
  for (int i = 0; i < 10; ++i) {
    std::string l = kSingleTurn;
    l.replace(l.find("What is 2+2?"), 12, "Question " + std::to_string(i));
    lines.push_back(l);
  }
  DataParams d = data_for(write("ten.jsonl", lines));
  auto questions = [&](const DataParams& params) {
    std::vector<int> out;
    for (const auto& ex : load_train_examples(params, tokenizer(), 4096)) {
      const std::string t = text_of(ex);
      out.push_back(std::stoi(t.substr(t.find("Question ") + 9, 1)));
    }
    return out;
  };
  d.train.datasets[0].split = "train[2:5]";
  EXPECT_EQ(questions(d), (std::vector<int>{2, 3, 4}));
  d.train.datasets[0].split = "train[-2:]";
  EXPECT_EQ(questions(d), (std::vector<int>{8, 9}));
  d.train.datasets[0].split = "train[:30%]";
  EXPECT_EQ(questions(d), (std::vector<int>{0, 1, 2}));
  d.train.datasets[0].split = "train[50%:]";
  d.train.datasets[0].sample_count = 2;
  EXPECT_EQ(questions(d), (std::vector<int>{5, 6}));  // the slice, then the sample
  d.train.datasets[0].sample_count.reset();
  for (const char* bad : {"train[a:b]", "train[3]", "train[:5", "[1:2]", "train[1:50%]"}) {
    d.train.datasets[0].split = bad;
    const std::string e = error_of(d);
    EXPECT_NE(e.find(std::string("data.train.datasets[0].split is '") + bad + "'"), std::string::npos) << e;
  }
  d.train.datasets[0].split = "train[9:2]";
  EXPECT_NE(error_of(d).find("selects none of the 10 conversations"), std::string::npos);

  // The same rows as one JSON array.
  std::string array = "[";
  for (size_t i = 0; i < lines.size(); ++i) array += (i ? ",\n" : "\n") + lines[i];
  const std::string json_path = dir_ / "ten.json";
  write_file_atomic(json_path, array + "\n]\n");
  EXPECT_EQ(questions(data_for(json_path)), (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  write_file_atomic(json_path, "[" + lines[0] + ", 7]");
  EXPECT_NE(error_of(data_for(json_path)).find("ten.json: element 1 is a JSON number"), std::string::npos);

  // A folder with a train and a test file: split picks.
  fs::create_directories(dir_ / "folder");
  write_file_atomic(dir_ / "folder/train.jsonl", lines[1] + "\n");
  write_file_atomic(dir_ / "folder/test.jsonl", lines[7] + "\n" + lines[8] + "\n");
  d = data_for(dir_ / "folder");
  EXPECT_EQ(questions(d), std::vector<int>{1});
  d.train.datasets[0].split = "test";
  EXPECT_EQ(questions(d), (std::vector<int>{7, 8}));
  d.train.datasets[0].split = "validation";
  const std::string e = error_of(d);
  EXPECT_NE(e.find("data.train.datasets[0].dataset_path: dataset"), std::string::npos) << e;
  EXPECT_NE(e.find("no split 'validation'; its splits: test, train"), std::string::npos) << e;
}

// A Parquet file (Multilingual-Thinking's columns, from tests/io/data) trains exactly as the same rows
// written as JSON lines: its first three rows, the ones with messages.
TEST_F(Dataset, ParquetRowsTrainAsTheirJsonLines) {
  const std::string data = std::string(GPTOSS_SOURCE_DIR) + "/tests/io/data/";
  const nlohmann::json expected = nlohmann::json::parse(read_file(data + "mt.expected.json"));
  std::vector<std::string> lines;
  for (size_t i = 0; i < 3; ++i) lines.push_back(expected.at(i).dump());
  DataParams from_parquet = data_for(data + "mt_snappy_dict_v1.parquet");
  from_parquet.train.datasets[0].split = "train[:3]";
  const auto a = load_train_examples(from_parquet, tokenizer(), 4096);
  const auto b = load_train_examples(data_for(write("mt.jsonl", lines)), tokenizer(), 4096);
  ASSERT_EQ(a.size(), 3u);
  ASSERT_EQ(b.size(), 3u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].tokens, b[i].tokens) << "row " << i;
    EXPECT_EQ(a[i].labels, b[i].labels) << "row " << i;
  }
  EXPECT_NE(text_of(a[0]).find("Grüße aus München"), std::string::npos) << text_of(a[0]);

  // Row 4 has an empty list of messages: named by file and row.
  from_parquet.train.datasets[0].split = "train[:4]";
  const std::string e = error_of(from_parquet);
  EXPECT_NE(e.find("mt_snappy_dict_v1.parquet row 4: messages is empty"), std::string::npos) << e;
  from_parquet.train.target_col = "conversation";
  EXPECT_NE(error_of(from_parquet).find("no column 'conversation'; its columns: reasoning_language, developer"),
            std::string::npos);
}

// The span rule on plain ids: response template R = [1, 2], instruction template I = [1, 3] (no
// tok::kStart in the sequence, so only the templates switch training on and off).
TEST(CompletionOnlyLabels, SpansBetweenTemplates) {
  const std::vector<int32_t> R = {1, 2}, I = {1, 3};
  //                                 0  1  2  3  4  5  6  7  8  9 10 11 12
  const std::vector<int32_t> toks = {9, 1, 3, 8, 1, 2, 5, 6, 1, 3, 7, 1, 2};
  // Trained positions: 6, 7 (after R at 4..5, up to I at 8). R at 11..12 opens a turn with nothing after it.
  const auto labels = completion_only_labels(toks, R, I);
  std::vector<int32_t> want(toks.size(), kIgnoreLabel);
  want[5] = 5;
  want[6] = 6;
  EXPECT_EQ(labels, want);
  // No response template anywhere: nothing trained.
  const std::vector<int32_t> plain = {9, 8, 7};
  EXPECT_EQ(completion_only_labels(plain, R, I), std::vector<int32_t>(3, kIgnoreLabel));
}

TEST(EpochOrder, CoversEveryExampleOnceAndIsSeeded) {
  const auto o = epoch_order(10, 42, 0);
  EXPECT_EQ(std::multiset<size_t>(o.begin(), o.end()), (std::multiset<size_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_NE(o, epoch_order(10, 42, 0, false));
  EXPECT_EQ(epoch_order(10, 42, 0), o);
  EXPECT_NE(epoch_order(10, 42, 1), o);
  EXPECT_NE(epoch_order(10, 43, 0), o);
  EXPECT_EQ(epoch_order(5, 42, 0, false), (std::vector<size_t>{0, 1, 2, 3, 4}));
  EXPECT_TRUE(epoch_order(0, 1, 0).empty());
}

}  // namespace
}  // namespace gptoss::train
