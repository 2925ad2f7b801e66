// gptoss generate --model DIR --tokens 1,2,3 --max-new-tokens N [--temperature T --seed S]
// A plain token-level loop over one sequence with the KV cache: prefill the prompt, then decode one
// token per step. Prints the generated ids comma-separated on the last line of stdout. Temperature 0
// is greedy (argmax, lowest id on ties); T > 0 samples from softmax(logits / T) with a seeded RNG.
// Generates exactly N tokens unless --stop-at-eos is given.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>

#include <fmt/format.h>

#include "backend/backend.h"
#include "cli/command.h"
#include "core/error.h"
#include "model/gpt_oss.h"

namespace gptoss {
namespace {

struct Options {
  std::string model, tokens, device = "cpu";
  int max_new_tokens = 16;
  double temperature = 0.0;
  uint64_t seed = 0;
  bool stop_at_eos = false;
  int block_size = 16;
};

int sample(const std::vector<float>& logits, double temperature, std::mt19937_64& rng) {
  if (temperature <= 0) return int(std::max_element(logits.begin(), logits.end()) - logits.begin());
  const float mx = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p(logits.size());
  double sum = 0;
  for (size_t i = 0; i < p.size(); ++i) sum += p[i] = std::exp((double(logits[i]) - mx) / temperature);
  std::uniform_real_distribution<double> u(0.0, sum);
  double r = u(rng), acc = 0;
  for (size_t i = 0; i < p.size(); ++i)
    if ((acc += p[i]) > r) return int(i);
  return int(p.size() - 1);
}

int run(const Options& o) {
  std::vector<int> ids = cli::parse_id_list(o.tokens, "--tokens");
  if (ids.empty()) fail_input("--tokens is empty; expected comma-separated token ids, e.g. --tokens 1,2,3");
  if (o.max_new_tokens < 0) fail_input("--max-new-tokens is {}; expected >= 0", o.max_new_tokens);
  if (o.temperature < 0 || !std::isfinite(o.temperature))
    fail_input("--temperature is {}; expected a number >= 0 (0 = greedy)", o.temperature);
  if (o.block_size <= 0) fail_input("--block-size is {}; expected > 0", o.block_size);
  auto backend = make_backend(o.device);
  auto model = GptOssModel::load(o.model, *backend);
  const auto& cfg = model->config();
  const int64_t total = int64_t(ids.size()) + o.max_new_tokens;
  if (total > cfg.max_position_embeddings)
    fail_input("prompt ({}) + --max-new-tokens ({}) is {} positions; the model supports {}", ids.size(),
               o.max_new_tokens, total, cfg.max_position_embeddings);

  KvPool pool(cfg, *backend, SequenceKv::blocks_needed(total, o.block_size), o.block_size);
  LinearBlockAllocator alloc(pool.num_blocks());
  SequenceKv seq(alloc, o.block_size);
  seq.ensure(total);  // map everything now: chunks below keep pointing at stable tables
  std::vector<int32_t> tokens(ids.begin(), ids.end());
  tokens.reserve(size_t(total));
  std::vector<float> logits(size_t(cfg.vocab_size));
  std::mt19937_64 rng(o.seed);
  std::vector<int> out;

  auto t0 = std::chrono::steady_clock::now();
  int32_t pos = 0;
  size_t n_run = tokens.size();  // tokens to feed this step
  double prefill_s = 0;
  while (int(out.size()) < o.max_new_tokens) {
    ForwardBatch b;
    b.seqs.push_back(seq.chunk(std::span<const int32_t>(tokens).subspan(size_t(pos), n_run), pos, false));
    model->forward(b, pool, logits.data());
    if (pos == 0) prefill_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    pos += int32_t(n_run);
    const int next = sample(logits, o.temperature, rng);
    out.push_back(next);
    tokens.push_back(next);
    n_run = 1;
    if (o.stop_at_eos && std::find(cfg.eos_token_ids.begin(), cfg.eos_token_ids.end(), next) != cfg.eos_token_ids.end())
      break;
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!out.empty())
    fmt::print(stderr, "prompt {} tokens in {:.3f} s; {} new tokens, {:.2f} tok/s decode ({})\n", ids.size(),
               prefill_s, out.size(), out.size() > 1 ? double(out.size() - 1) / (secs - prefill_s) : 0.0,
               backend->device_name());
  std::string line;
  for (size_t i = 0; i < out.size(); ++i) line += (i ? "," : "") + std::to_string(out[i]);
  fmt::print("{}\n", line);
  return 0;
}

const cli::Registrar reg{"generate", "Generate token ids from prompt token ids (greedy or sampled)",
                         [](CLI::App& app) -> cli::Runner {
                           auto o = std::make_shared<Options>();
                           app.add_option("--model", o->model, "model directory")->required();
                           app.add_option("--tokens", o->tokens, "prompt token ids, comma-separated")->required();
                           app.add_option("--max-new-tokens", o->max_new_tokens, "tokens to generate")
                               ->capture_default_str();
                           app.add_option("--temperature", o->temperature, "0 = greedy")->capture_default_str();
                           app.add_option("--seed", o->seed, "sampling seed")->capture_default_str();
                           app.add_flag("--stop-at-eos", o->stop_at_eos, "stop after an eos token of config.json");
                           app.add_option("--device", o->device, "cpu, cuda or auto")->capture_default_str();
                           app.add_option("--block-size", o->block_size, "KV block size (positions)")
                               ->capture_default_str();
                           return [o] { return run(*o); };
                         }};

}  // namespace
}  // namespace gptoss
