// gptoss score --model DIR --tokens 1,2,3 --output logits.safetensors
// Runs one forward over the tokens and writes the logits of every position: tensor `logits`,
// f32 [n_tokens, vocab] (written to a temporary name and renamed).
#include <chrono>
#include <cstdio>

#include <fmt/format.h>

#include "backend/backend.h"
#include "cli/command.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "model/gpt_oss.h"

namespace gptoss {
namespace {

struct Options {
  std::string model, adapter, tokens, output, device = "cpu";
  int block_size = 16;
  BackendOptions backend;
};

int run(const Options& o) {
  std::vector<int> ids = cli::parse_id_list(o.tokens, "--tokens");
  if (ids.empty()) fail_input("--tokens is empty; expected comma-separated token ids, e.g. --tokens 1,2,3");
  if (o.block_size <= 0) fail_input("--block-size is {}; expected > 0", o.block_size);
  auto backend = make_backend(o.device, o.backend);
  auto model = GptOssModel::load(o.model, *backend, o.adapter);
  const int64_t n = int64_t(ids.size()), V = model->config().vocab_size;
  std::vector<int32_t> tokens(ids.begin(), ids.end());

  KvPool pool(model->config(), *backend, SequenceKv::blocks_needed(n, o.block_size), o.block_size);
  LinearBlockAllocator alloc(pool.num_blocks());
  SequenceKv seq(alloc, o.block_size);
  ForwardBatch batch;
  batch.seqs.push_back(seq.chunk(tokens, 0, /*all_logits=*/true));
  std::vector<float> logits(size_t(n * V));
  auto t0 = std::chrono::steady_clock::now();
  model->forward(batch, pool, logits.data());
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  write_safetensors(o.output, {TensorData{"logits", DType::F32, {n, V}, logits.data()}});
  fmt::print(stderr, "scored {} tokens in {:.3f} s ({:.1f} tok/s) on {}\n", n, secs, double(n) / secs,
             backend->device_name());
  fmt::print("wrote {} (logits f32 [{}, {}])\n", o.output, n, V);
  return 0;
}

const cli::Registrar reg{"score", "Logits of every position of a token sequence, to a safetensors file",
                         [](CLI::App& app) -> cli::Runner {
                           auto o = std::make_shared<Options>();
                           app.add_option("--model", o->model, "model directory (config.json + safetensors)")
                               ->required();
                           app.add_option("--adapter", o->adapter, "PEFT LoRA adapter directory applied on top");
                           app.add_option("--tokens", o->tokens, "token ids, comma-separated")->required();
                           app.add_option("--output", o->output, "output .safetensors file")->required();
                           app.add_option("--device", o->device, "cpu, cuda or auto")->capture_default_str();
                           app.add_option("--block-size", o->block_size, "KV block size (positions)")
                               ->capture_default_str();
                           cli::add_cpu_options(app, &o->backend);
                           return [o] { return run(*o); };
                         }};

}  // namespace
}  // namespace gptoss
