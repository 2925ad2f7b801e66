// gptoss make-random: a random-weight gpt-oss checkpoint in the exact hub layout, for tests and for
// benchmarks at real shapes. Streams to disk (the 20b is 13 GB; bf16 experts ~40 GB) with a fixed
// amount of memory, generating on every core while a writer thread drains the previous buffer.
//
// Values: bf16 weights and biases ~ N(0, 0.02) (Irwin-Hall approximation), norms 1 + N(0, 0.02),
// sinks 1 + N(0, 0.1), MXFP4 blocks uniform random bytes with E8M0 scales 121..123
// (2^-6..2^-4), so activations stay finite through every layer. Each 1M-element chunk of each
// tensor has its own RNG stream derived from (seed, tensor index, chunk index): the output depends
// on the seed only, never on the thread count.
#include <cstdio>
#include <filesystem>
#include <memory>

#include "cli/command.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "io/checkpoint_writer.h"
#include "model/config.h"

namespace gptoss {
namespace {

struct Options {
  std::string shape = "tiny";
  std::string output;
  int64_t vocab = 0;
  bool bf16_experts = false;
  uint64_t seed = 0;
  double max_shard_gb = 4.0;
};

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// xoshiro256**: fast, good enough for weights.
struct Rng {
  uint64_t s[4];
  explicit Rng(uint64_t seed) {
    for (auto& v : s) v = splitmix64(seed);
  }
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t next() {
    const uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
  }
  // ~N(0, 1): the sum of four 16-bit uniforms, centred and scaled (Irwin-Hall, n = 4).
  float normal() {
    uint64_t r = next();
    float sum = float((r & 0xffff) + ((r >> 16) & 0xffff) + ((r >> 32) & 0xffff) + (r >> 48));
    return (sum * (1.0f / 65536.0f) - 2.0f) * 1.7320508f;
  }
};

enum class Init { Normal, Norm, Sink, Bytes, Scales };

Init init_of(const TensorSpec& t) {
  const std::string& n = t.name;
  auto ends = [&](const char* s) {
    std::string_view v(s);
    return n.size() >= v.size() && n.compare(n.size() - v.size(), v.size(), v) == 0;
  };
  if (ends("_blocks")) return Init::Bytes;
  if (ends("_scales")) return Init::Scales;
  if (ends("layernorm.weight") || n == "model.norm.weight") return Init::Norm;
  if (ends("self_attn.sinks")) return Init::Sink;
  return Init::Normal;
}

constexpr int64_t kChunk = int64_t(1) << 20;  // elements per RNG stream

// Fills elements [begin, end) of tensor `index` (both multiples of kChunk except at the tensor end).
void fill(uint8_t* out, const TensorSpec& t, size_t index, int64_t begin, int64_t end, uint64_t seed) {
  const Init init = init_of(t);
  const int64_t chunks = (end - begin + kChunk - 1) / kChunk;
  ThreadPool::global().parallel_for(chunks, [&](int64_t c0, int64_t c1, int) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t e0 = begin + c * kChunk, e1 = std::min(end, e0 + kChunk);
      uint64_t s = seed ^ (uint64_t(index) * 0x9e3779b97f4a7c15ull) ^ (uint64_t(e0 / kChunk) * 0xc2b2ae3d27d4eb4full);
      Rng rng(s);
      if (init == Init::Bytes || init == Init::Scales) {
        uint8_t* o = out + (e0 - begin);
        int64_t i = 0, n = e1 - e0;
        if (init == Init::Bytes) {
          for (; i + 8 <= n; i += 8) {
            uint64_t r = rng.next();
            std::memcpy(o + i, &r, 8);
          }
          for (; i < n; ++i) o[i] = uint8_t(rng.next());
        } else {
          for (; i < n; ++i) o[i] = uint8_t(121 + rng.next() % 3);
        }
      } else {
        uint16_t* o = reinterpret_cast<uint16_t*>(out) + (e0 - begin);
        const float mean = init == Init::Normal ? 0.0f : 1.0f;
        const float std = init == Init::Sink ? 0.1f : 0.02f;
        for (int64_t i = 0; i < e1 - e0; ++i) o[i] = f32_to_bf16(mean + std * rng.normal());
      }
    }
  });
}

int run(const Options& o) {
  GptOssConfig c = GptOssConfig::preset(o.shape);
  if (o.vocab > 0) {
    c.vocab_size = o.vocab;
    // Keep the special ids inside the vocabulary (as the fixture generator does).
    if (o.vocab >= 201088) {
      c.eos_token_id = 200002;
      c.pad_token_id = 199999;
    } else {
      c.eos_token_id = int(o.vocab - 2 >= 0 ? o.vocab - 2 : 0);
      c.pad_token_id = int(o.vocab - 1);
    }
    c.eos_token_ids = {c.eos_token_id};
  }
  if (o.bf16_experts) c.quantization_config.reset();
  c.validate("make-random");
  const bool mxfp4 = !o.bf16_experts;
  std::vector<TensorSpec> specs = hub_tensor_specs(c, mxfp4);

  StagedDir out(o.output, /*overwrite=*/false, "a new --output");
  write_file_atomic(out.file("config.json"), c.to_json().dump(2) + "\n");
  ShardedWriter writer(out.path(), specs, uint64_t(o.max_shard_gb * 1e9));
  std::fprintf(stderr, "make-random: %s%s, %zu tensors, %.2f GB in %d file(s), seed %llu\n", o.shape.c_str(),
               mxfp4 ? " (MXFP4 experts)" : " (bf16 experts)", specs.size(), double(writer.total_bytes()) / 1e9,
               writer.num_shards(), (unsigned long long)o.seed);

  constexpr size_t kBufBytes = size_t(64) << 20;
  ProgressBar bar("make-random", writer.total_bytes());
  AsyncSink sink([&](const uint8_t* p, size_t n) { writer.write_next(p, n); });
  for (size_t ti = 0; ti < specs.size(); ++ti) {
    const TensorSpec& t = specs[ti];
    const int64_t esize = int64_t(dtype_size(t.dtype));
    const int64_t numel = int64_t(t.nbytes()) / esize;
    const int64_t step = int64_t(kBufBytes) / esize / kChunk * kChunk;
    for (int64_t b = 0; b < numel; b += step) {
      const int64_t e = std::min(numel, b + step);
      std::vector<uint8_t> buf = sink.acquire();
      buf.resize(size_t((e - b) * esize));
      fill(buf.data(), t, ti, b, e, o.seed);
      const size_t n = buf.size();
      sink.submit(std::move(buf), n);
      bar.add(n);
    }
  }
  sink.finish();
  writer.finish();
  bar.finish();
  out.commit();
  std::printf("%s\n", o.output.c_str());
  return 0;
}

const cli::Registrar reg{
    "make-random", "Write a random-weight gpt-oss checkpoint in the hub layout (tests, benchmarks)",
    [](CLI::App& app) -> cli::Runner {
      auto o = std::make_shared<Options>();
      app.add_option("--shape", o->shape, "model shape")->check(CLI::IsMember({"tiny", "20b", "120b"}));
      app.add_option("--output", o->output, "output directory (must not exist, or be empty)")->required();
      app.add_option("--vocab", o->vocab, "override vocab_size (e.g. 201088 for the real tokenizer)")
          ->check(CLI::Range(int64_t(2), int64_t(1) << 30));
      app.add_flag("--bf16-experts", o->bf16_experts, "experts as bf16 gate_up_proj/down_proj (no MXFP4)");
      app.add_option("--seed", o->seed, "RNG seed");
      app.add_option("--max-shard-gb", o->max_shard_gb, "shard size limit in GB (default 4)")
          ->check(CLI::PositiveNumber);
      return [o] { return run(*o); };
    }};

}  // namespace
}  // namespace gptoss
