// Text streaming and stop strings with the real o200k_harmony tokenizer, through the ScriptedRunner.
#include <gtest/gtest.h>

#include <cstdlib>

#include "engine/engine.h"
#include "engine/fake_runners.h"
#include "tokenizer/tokenizer.h"

namespace gptoss {
namespace {

const Tokenizer& tokenizer() {
  const char* env = std::getenv("GPTOSS_SHARED_DIR");
  static const Tokenizer t =
      Tokenizer::from_file(std::string(env ? env : GPTOSS_SHARED_DIR) + "/data/tokenizer/tokenizer.json");
  return t;
}

RequestOutput run_script(const std::vector<int>& script, SamplingParams params) {
  auto runner = std::make_unique<ScriptedRunner>();
  runner->add_script({1, 2, 3}, std::vector<int32_t>(script.begin(), script.end()));
  EngineConfig c;
  c.num_blocks = 256;
  c.max_model_len = 1024;
  Engine e(std::move(runner), c);
  e.set_tokenizer(tokenizer());
  e.start();
  Request r;
  r.prompt = {1, 2, 3};
  r.params = std::move(params);
  r.params.temperature = 0;
  return e.submit(r).wait();
}

TEST(EngineText, StreamsTextAndCutsStopStrings) {
  const std::string text = "The answer is 42.\n\nSTOP and nothing after it, ünïcödé 日本語.";
  std::vector<int> ids = tokenizer().encode(text);
  ids.push_back(tok::kReturn);
  // No stop string: the whole text, finished by <|return|> (which adds no text).
  auto all = run_script(ids, {});
  EXPECT_EQ(all.text, text);
  EXPECT_EQ(all.reason, FinishReason::kStop);
  EXPECT_EQ(all.stop_token, tok::kReturn);
  EXPECT_EQ(all.tokens.back(), tok::kReturn);
  // A stop string: everything before it, nothing of it or after it.
  SamplingParams p;
  p.stop = {"\n\nSTOP"};
  auto cut = run_script(ids, p);
  EXPECT_EQ(cut.text, "The answer is 42.");
  EXPECT_EQ(cut.reason, FinishReason::kStop);
  EXPECT_EQ(cut.stop_string, "\n\nSTOP");
  EXPECT_LT(cut.tokens.size(), ids.size());
  // A stop string inside a multi-byte character sequence's neighbourhood.
  p.stop = {"日本"};
  auto cjk = run_script(ids, p);
  EXPECT_EQ(cjk.text, "The answer is 42.\n\nSTOP and nothing after it, ünïcödé ");
  // Harmony stops can be switched off: then the script's end token repeats until max_new_tokens.
  SamplingParams off;
  off.harmony_stops = false;
  off.max_new_tokens = int(ids.size()) + 2;
  auto more = run_script(ids, off);
  EXPECT_EQ(more.reason, FinishReason::kLength);
  EXPECT_EQ(more.tokens.size(), ids.size() + 2);
}

}  // namespace
}  // namespace gptoss
