// `gptoss infer` as a user runs it: batch mode on a random tiny model with the real tokenizer (the whole
// pipeline: render -> tokenize -> engine -> parse -> JSONL), and interactive mode through a
// pseudo-terminal (streaming, dimmed reasoning, a tool call answered by the user or by an executor,
// Ctrl-C stopping a reply, /effort, /reset, /exit). The interactive sessions use the GPTOSS_TEST_SCRIPT
// hook (src/cli/infer_service.cpp) so the model's outputs are chosen.
#include <poll.h>
#include <pty.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "api/chat_mapping.h"
#include "core/atomic_file.h"
#include "harmony/harmony.h"
#include "model/config.h"
#include "model/random_model.h"
#include "tokenizer/tokenizer.h"
#include "test_util.h"

namespace fs = std::filesystem;
using OJson = nlohmann::ordered_json;

namespace gptoss {
namespace {

std::string shared_dir() {
  const char* e = std::getenv("GPTOSS_SHARED_DIR");
  return e && *e ? e : GPTOSS_SHARED_DIR;
}
std::string binary() {
  const char* e = std::getenv("GPTOSS_BINARY");
  return e && *e ? e : GPTOSS_BINARY;
}
std::string tokenizer_path() { return shared_dir() + "/data/tokenizer/tokenizer.json"; }

int sh(const std::string& cmd) {
  int st = std::system(cmd.c_str());
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

std::vector<OJson> read_jsonl(const std::string& p) {
  std::vector<OJson> out;
  std::ifstream in(p);
  std::string l;
  while (std::getline(in, l)) out.push_back(OJson::parse(l));
  return out;
}

TEST(InferCli, BatchOnARandomTinyModelWithTheRealTokenizer) {
  TempDir d("infer_pipeline");
  ASSERT_EQ(sh(fmt::format("{} make-random --shape tiny --vocab 201088 --output {} > {} 2>&1", binary(), d / "model",
                           d / "make.log")),
            0)
      << read_file(d / "make.log");
  fs::copy_file(tokenizer_path(), d / "model/tokenizer.json");  // make-random writes no tokenizer
  const std::vector<std::string> lines = {
      R"({"conversation_id": "first", "messages": [{"role": "user", "content": "Hello there"}]})",
      R"({"conversation_id": "second", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}], "metadata": {"k": 1}})",
      R"({"conversation_id": "third", "messages": [{"role": "user", "content": "Name a colour."}]})"};
  std::string in;
  for (const auto& l : lines) in += l + "\n";
  write_file_atomic(d / "in.jsonl", in);
  std::string cmd = fmt::format(
      "{} infer -c oumi://configs/recipes/gpt_oss/inference/20b_infer.yaml --model.model_name {} "
      "--engine_params.device cpu --engine_params.kv_cache_gb 0.1 --engine_params.max_model_len 2048 "
      "--generation.max_new_tokens 12 --input_path {} --output_path {{}} -q 2> {}",
      binary(), d / "model", d / "in.jsonl", d / "err.log");
  ASSERT_EQ(sh(fmt::format(fmt::runtime(cmd), d / "out.jsonl")), 0) << read_file(d / "err.log");
  auto rows = read_jsonl(d / "out.jsonl");
  ASSERT_EQ(rows.size(), 3u);
  Tokenizer tok = Tokenizer::from_file(tokenizer_path());
  const char* ids[] = {"first", "second", "third"};
  for (size_t i = 0; i < rows.size(); ++i) {
    SCOPED_TRACE(ids[i]);
    const OJson& r = rows[i];
    EXPECT_EQ(r["conversation_id"], ids[i]);  // input order
    OJson input = OJson::parse(lines[i]);
    ASSERT_EQ(r["messages"].size(), input["messages"].size() + 1);
    for (size_t m = 0; m < input["messages"].size(); ++m) EXPECT_EQ(r["messages"][m], input["messages"][m]);
    const OJson& a = r["messages"].back();
    EXPECT_EQ(a["role"], "assistant");
    EXPECT_TRUE(a["content"].is_string() || a["content"].is_null() || a.contains("tool_calls"));
    const OJson& usage = r["metadata"]["usage"];
    int completion = usage["completion_tokens"];
    EXPECT_GE(completion, 1);
    EXPECT_LE(completion, 12);
    if (r["metadata"]["finish_reason"] == "length") {
      EXPECT_EQ(completion, 12);
    }
    // prompt_tokens is the harmony rendering of the conversation with the real tokenizer.
    ChatMappingOptions opts;
    char date[16];
    std::time_t now = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&now, &tm);
    std::strftime(date, sizeof date, "%Y-%m-%d", &tm);
    opts.current_date = date;
    auto conv = chat_to_harmony(OJson{{"messages", input["messages"]}, {"reasoning_effort", "medium"}}, opts);
    auto prompt = harmony::render_for_completion_tokens(conv.conversation, harmony::Role::kAssistant, tok);
    EXPECT_EQ(usage["prompt_tokens"], prompt.size());
    EXPECT_EQ(usage["total_tokens"], usage["prompt_tokens"].get<int>() + completion);
  }
  EXPECT_EQ(rows[1]["metadata"]["k"], 1);
  // Greedy (Oumi's default temperature 0): a second run writes the same file, also with the weights copied
  // out of the mapping (engine_params.use_mmap false, llama.cpp's --no-mmap).
  ASSERT_EQ(sh(fmt::format(fmt::runtime(cmd + " --engine_params.use_mmap false"), d / "out2.jsonl")), 0)
      << read_file(d / "err.log");
  EXPECT_EQ(read_file(d / "out.jsonl"), read_file(d / "out2.jsonl"));
  EXPECT_FALSE(fs::exists(d / "out.jsonl.partial"));

  // model.adapter_model: a PEFT LoRA adapter applied on top (model/lora.h), named in the load line; it
  // changes the greedy answers.
  testing::write_random_adapter(d / "adapter", GptOssConfig::load(d / "model"), 8, 3);
  const std::string with_adapter = fmt::format(
      "{} infer -c oumi://configs/recipes/gpt_oss/inference/20b_infer.yaml --model.model_name {} "
      "--model.adapter_model {} --engine_params.device cpu --engine_params.kv_cache_gb 0.1 "
      "--engine_params.max_model_len 2048 --generation.max_new_tokens 12 --input_path {} --output_path {} 2> {}",
      binary(), d / "model", d / "adapter", d / "in.jsonl", d / "out3.jsonl", d / "err3.log");
  ASSERT_EQ(sh(with_adapter), 0) << read_file(d / "err3.log");
  EXPECT_NE(read_file(d / "err3.log").find("with LoRA r=8 alpha=16 on q_proj, k_proj, v_proj, o_proj, router of 4 layers"),
            std::string::npos)
      << read_file(d / "err3.log");
  EXPECT_EQ(read_jsonl(d / "out3.jsonl").size(), 3u);
  EXPECT_NE(read_file(d / "out.jsonl"), read_file(d / "out3.jsonl"));

  // A KV cache too small for the recipe's model_max_length (131072, as on a 16 GB GPU): the context is
  // shortened to what it holds, with a note; an explicit engine_params.max_model_len is an error that
  // names the length that fits.
  const std::string small = fmt::format(
      "{} infer -c gpt-oss-20b --model.model_name {} --engine_params.device cpu --engine_params.kv_cache_gb 0.001 "
      "--generation.max_new_tokens 4 --input_path {} --output_path {} -q {} 2> {}",
      binary(), d / "model", d / "in.jsonl", d / "out4.jsonl", "{}", d / "err4.log");
  ASSERT_EQ(sh(fmt::format(fmt::runtime(small), "")), 0) << read_file(d / "err4.log");
  EXPECT_NE(read_file(d / "err4.log").find("tokens, not model.model_max_length 131072: the KV cache holds no more"),
            std::string::npos)
      << read_file(d / "err4.log");
  EXPECT_EQ(read_jsonl(d / "out4.jsonl").size(), 3u);
  fs::remove(d / "out4.jsonl");
  // engine_params.kv_cache_dtype: bfloat16 holds twice the positions in the same budget.
  auto context_of = [](const std::string& log) {
    const size_t p = log.find("gptoss: context ");
    return p == std::string::npos ? 0 : std::atoi(log.c_str() + p + 16);
  };
  const int f32_context = context_of(read_file(d / "err4.log"));
  ASSERT_EQ(sh(fmt::format(fmt::runtime(small), "--engine_params.kv_cache_dtype bfloat16")), 0)
      << read_file(d / "err4.log");
  const int bf16_context = context_of(read_file(d / "err4.log"));
  EXPECT_GT(f32_context, 0) << read_file(d / "err4.log");
  EXPECT_GE(bf16_context, 2 * f32_context - 64) << read_file(d / "err4.log");
  EXPECT_EQ(read_jsonl(d / "out4.jsonl").size(), 3u);
  fs::remove(d / "out4.jsonl");
  EXPECT_NE(sh(fmt::format(fmt::runtime(small), "--engine_params.max_model_len 100000")), 0);
  EXPECT_NE(read_file(d / "err4.log").find("lower engine_params.max_model_len or raise engine_params.kv_cache_gb"),
            std::string::npos)
      << read_file(d / "err4.log");
  EXPECT_FALSE(fs::exists(d / "out4.jsonl"));
}

TEST(InferCli, ListAndConfigErrors) {
  TempDir d("infer_list");
  ASSERT_EQ(sh(fmt::format("{} infer --list > {} 2>&1", binary(), d / "list.txt")), 0);
  std::string list = read_file(d / "list.txt");
  EXPECT_NE(list.find("oumi://configs/recipes/gpt_oss/inference/20b_infer.yaml  alias: gpt-oss-20b"), std::string::npos) << list;
  EXPECT_NE(list.find("oumi://configs/recipes/gpt_oss/sft/20b_lora_train.yaml  alias: gpt-oss-20b-lora"), std::string::npos);
  EXPECT_EQ(sh(fmt::format("{} infer -c gpt-oss-20b --generation.temprature 0.5 -i > {} 2>&1", binary(), d / "e.txt")), 2);
  EXPECT_NE(read_file(d / "e.txt").find("did you mean generation.temperature?"), std::string::npos) << read_file(d / "e.txt");
  EXPECT_EQ(sh(fmt::format("HF_HUB_OFFLINE=1 HF_HOME={} {} infer -c gpt-oss-20b -i -q > {} 2>&1", d.str(), binary(), d / "o.txt")), 2);
  std::string off = read_file(d / "o.txt");
  EXPECT_NE(off.find("model openai/gpt-oss-20b is not in the cache and downloads are off"), std::string::npos) << off;
  EXPECT_NE(off.find("models--openai--gpt-oss-20b/snapshots"), std::string::npos) << off;
}

// A child process on a pseudo-terminal, driven like `expect`.
class Pty {
 public:
  Pty(const std::vector<std::string>& argv, const std::vector<std::pair<std::string, std::string>>& env) {
    winsize ws{40, 200, 0, 0};
    pid_ = ::forkpty(&fd_, nullptr, nullptr, &ws);
    if (pid_ == 0) {
      ::setenv("TERM", "xterm", 1);  // as in a terminal emulator: libedit edits the line
      for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
  }
  ~Pty() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (fd_ >= 0) ::close(fd_);
  }
  // Reads until `text` appears after the current mark; returns false on timeout (30 s: the build
  // machine is shared and often loaded).
  bool expect(const std::string& text, int timeout_ms = 30000) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (true) {
      size_t p = out_.find(text, mark_);
      if (p != std::string::npos) {
        mark_ = p + text.size();
        return true;
      }
      int left = int(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count());
      if (left <= 0) return false;
      pollfd pfd{fd_, POLLIN, 0};
      if (::poll(&pfd, 1, left) <= 0) continue;
      char buf[4096];
      ssize_t n = ::read(fd_, buf, sizeof buf);
      if (n <= 0) return false;
      out_.append(buf, size_t(n));
    }
  }
  void send(const std::string& s) { ASSERT_EQ(::write(fd_, s.data(), s.size()), ssize_t(s.size())); }
  int wait_exit() {
    int st = 0;
    for (int i = 0; i < 3000; ++i) {  // up to 30 s
      char buf[4096];
      pollfd pfd{fd_, POLLIN, 0};
      bool got = false;
      if (::poll(&pfd, 1, 10) > 0) {
        ssize_t n = ::read(fd_, buf, sizeof buf);
        if (n > 0) out_.append(buf, size_t(n)), got = true;
      }
      // A closed pty polls readable at once (EIO): wait properly for the child to be reaped.
      if (!got) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        exited_ = true;
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
      }
    }
    return -2;
  }
  const std::string& output() const { return out_; }
  std::string since_mark_before(size_t from) const { return out_.substr(from); }
  size_t mark() const { return mark_; }

 private:
  int fd_ = -1;
  pid_t pid_ = -1;
  bool exited_ = false;
  std::string out_;
  size_t mark_ = 0;
};

const char* kToolCall =
    "<|channel|>analysis<|message|>The user wants the weather. Call the tool.<|end|>"
    "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json"
    "<|message|>{\"city\": \"Paris\"}<|call|>";
const char* kAfterTool =
    "<|channel|>analysis<|message|>Tool said sunny.<|end|><|start|>assistant<|channel|>final"
    "<|message|>It is sunny in Paris.<|return|>";

void write_session(const TempDir& d, const std::vector<std::string>& turns, const std::string& executor) {
  OJson script = {{"turns", turns}, {"token_delay_ms", 10}, {"prompt_log", d / "prompts.log"}};
  write_file_atomic(d / "script.json", script.dump());
  std::string yaml = fmt::format(
      "model:\n  model_name: {}\n  tokenizer_name: {}\ngeneration:\n  max_new_tokens: 4000\n"
      "tool_use:\n  enabled: true\n{}  tools:\n    - type: function\n      function:\n        name: get_weather\n"
      "        parameters: {{type: object, properties: {{city: {{type: string}}}}, required: [city]}}\n",
      d.str(), tokenizer_path(), executor.empty() ? "" : "  executor: " + executor + "\n");
  write_file_atomic(d / "cfg.yaml", yaml);
}

std::vector<std::string> prompts(const TempDir& d) {
  std::vector<std::string> out;
  for (const auto& j : read_jsonl(d / "prompts.log")) out.push_back(j.get<std::string>());
  return out;
}

TEST(InferCli, InteractiveChatThroughAPseudoTerminal) {
  TempDir d("infer_pty");
  std::string long_reply = "<|channel|>final<|message|>";
  for (int i = 0; i < 1500; ++i) long_reply += fmt::format("word{} ", i);
  write_session(d, {kToolCall, kAfterTool, long_reply + "<|return|>", "<|channel|>final<|message|>Short again.<|return|>"}, "");
  Pty p({binary(), "infer", "-i", "-c", d / "cfg.yaml"}, {{"GPTOSS_TEST_SCRIPT", d / "script.json"}});
  ASSERT_TRUE(p.expect(">>> ")) << p.output();
  p.send("What is the weather in Paris?\r");
  ASSERT_TRUE(p.expect("tool result (get_weather)> ")) << p.output();
  // Reasoning is dimmed and labelled; the call is printed with its arguments.
  EXPECT_NE(p.output().find("\033[2m[reasoning] The user wants the weather. Call the tool."), std::string::npos) << p.output();
  EXPECT_NE(p.output().find("[tool call] get_weather({\"city\": \"Paris\"})"), std::string::npos) << p.output();
  p.send("sunny, 24C\r");
  ASSERT_TRUE(p.expect("It is sunny in Paris.")) << p.output();
  ASSERT_TRUE(p.expect(">>> ")) << p.output();

  // Ctrl-C stops the reply, not the program.
  p.send("Tell me a long story\r");
  ASSERT_TRUE(p.expect("word5 ")) << p.output();
  p.send("\x03");
  ASSERT_TRUE(p.expect("[stopped]")) << p.output();
  ASSERT_TRUE(p.expect(">>> ")) << p.output();
  EXPECT_EQ(p.output().find("word1400"), std::string::npos);

  p.send("/effort high\r");
  ASSERT_TRUE(p.expect("[reasoning effort: high]")) << p.output();
  p.send("/reset\r");
  ASSERT_TRUE(p.expect("[conversation cleared]")) << p.output();
  p.send("again\r");
  ASSERT_TRUE(p.expect("Short again.")) << p.output();
  ASSERT_TRUE(p.expect(">>> ")) << p.output();
  p.send("/exit\r");
  EXPECT_EQ(p.wait_exit(), 0) << p.output();

  auto ps = prompts(d);
  ASSERT_EQ(ps.size(), 4u);
  // The typed tool result went back to the model, in harmony's tool-message form.
  EXPECT_NE(ps[1].find("<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>sunny, 24C<|end|>"),
            std::string::npos)
      << ps[1];
  EXPECT_NE(ps[0].find("Reasoning: medium"), std::string::npos);
  // After Ctrl-C, /effort high and /reset: a fresh conversation at high effort.
  EXPECT_NE(ps[3].find("Reasoning: high"), std::string::npos);
  EXPECT_EQ(ps[3].find("Paris"), std::string::npos) << ps[3];
  EXPECT_NE(ps[3].find("<|start|>user<|message|>again<|end|><|start|>assistant"), std::string::npos);
}

TEST(InferCli, ToolExecutorAndHiddenReasoning) {
  TempDir d("infer_pty_exec");
  write_file_atomic(d / "exec.sh", "read call; printf 'weather for %s' \"$call\"\n");
  write_session(d, {kToolCall, kAfterTool}, "sh " + (d / "exec.sh"));
  Pty p({binary(), "infer", "-i", "--hide-reasoning", "--system-prompt", "Answer briefly.", "-c", d / "cfg.yaml"},
        {{"GPTOSS_TEST_SCRIPT", d / "script.json"}});
  ASSERT_TRUE(p.expect(">>> ")) << p.output();
  p.send("Weather?\r");
  ASSERT_TRUE(p.expect("[tool result] weather for {\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}")) << p.output();
  ASSERT_TRUE(p.expect("It is sunny in Paris.")) << p.output();
  ASSERT_TRUE(p.expect(">>> ")) << p.output();
  EXPECT_EQ(p.output().find("[reasoning]"), std::string::npos) << p.output();
  // Ctrl-D quits. Give libedit a moment to switch the terminal to raw mode first: in cooked mode the
  // kernel would turn ^D into a zero-length read before the editor sees it.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  p.send("\x04");
  EXPECT_EQ(p.wait_exit(), 0) << p.output();
  auto ps = prompts(d);
  ASSERT_EQ(ps.size(), 2u);
  EXPECT_NE(ps[0].find("# Instructions\n\nAnswer briefly."), std::string::npos) << ps[0];
  EXPECT_NE(ps[1].find("<|message|>weather for {\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}<|end|>"),
            std::string::npos)
      << ps[1];
}

}  // namespace
}  // namespace gptoss
