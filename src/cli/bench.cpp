// gptoss bench --model DIR [--prompt 512] [--gen 64] [--repeats 3] [--batch 1,4,16,64] [--json]
//
// llama-bench style: prompt processing (one sequence of --prompt tokens, logits of the last token
// only) and generation (--batch B sequences decoding one token each per forward, from an empty
// context, --gen steps), each repeated, reported as mean ± sd tokens/s. Token ids are random (seeded);
// tokenization and sampling are excluded.
//
// In the same run two probes measure this machine: memory bandwidth (a multi-threaded streaming read
// of a buffer much larger than the last-level cache) and the FMA peak (independent FMA chains on every
// thread, in the widest vectors the CPU kernels use: zmm with AVX-512). Results print as fractions of those rooflines:
//   decode:  (weight bytes read per step / bandwidth) / measured step time. At batch 1 the bytes are
//            decode_bytes_per_token(); at batch B the non-expert weights are read once per step and
//            the experts once per distinct expert selected, estimated for uniform routing as
//            E * (1 - (1 - k/E)^B) per layer. KV-cache reads (short contexts here) are not counted.
//   prefill: (FLOPs per token * tokens / time) / FMA peak, with FLOPs per token = 2 * (active
//            parameters without the unembedding) + attention (QK^T and PV over the causal/sliding
//            context) + the unembedding of the last token spread over the prompt.
// The CPU probes run twice, before and after the tests, and the rooflines use the higher reading of each
// (a VM's memory can run at 40 GB/s one minute and 65 the next: one slow probe must not flatter a result).
// On a shared machine wall-clock rates understate the code: every rate is also reported per second of
// CPU time per pool thread (`*_cpu_time` fields), probes included, with the cpu share of each test.
// --json prints {date, commit, card, command, bandwidth_gb_s, fma_peak_gflops, results: [...]}, the
// schema of bench/results/*.json.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <random>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "backend/cpu/kernels_simd.h"
#include "backend/cpu/probes.h"
#include "cli/command.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "model/gpt_oss.h"

namespace gptoss {
namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string model, adapter, device = "cpu", batch = "1", kv_cache_dtype = "auto";
  int prompt = 512, gen = 64, repeats = 3, depth = 0;
  int block_size = 16;
  uint64_t seed = 1;
  bool json = false, profile = false, no_prefill = false;
  size_t probe_mb = 1024;
};

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// --- probes ---------------------------------------------------------------------------------------

// Process CPU seconds (user + system) so far.
double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + 1e-6 * double(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

// A rate measured two ways: per wall second, and per second of CPU time per pool thread (what the
// rate would be with the cores to ourselves; on a shared machine the two differ).
struct Rate {
  double wall = 0, cpu = 0;
};

// Times fn() (which does `work` units) and keeps the best wall and CPU-time rates.
template <class Fn>
void measure(Rate& best, double work, Fn&& fn) {
  const int threads = ThreadPool::global().size();
  const double c0 = cpu_seconds();
  const auto t0 = Clock::now();
  fn();
  const double wall = seconds_since(t0), cpu = (cpu_seconds() - c0) / threads;
  best.wall = std::max(best.wall, work / wall);
  if (cpu > 0) best.cpu = std::max(best.cpu, work / cpu);
}

// Best of several multi-threaded streaming reads of `mb` MiB (the buffer is first filled with values that
// differ on every page, so its pages are real and cannot be merged). Returns bytes/s.
Rate probe_bandwidth(size_t mb) {
  const size_t n = mb * (1u << 20) / sizeof(float);
  auto& pool = ThreadPool::global();
  float* data = static_cast<float*>(std::aligned_alloc(64, n * sizeof(float)));
  if (!data) fail("bench: cannot allocate {} MiB for the bandwidth probe", mb);
  pool.parallel_for(int64_t(n), [&](int64_t b, int64_t e, int) {
    cpu::simd::probe_fill(data, b, e);
  });
  std::vector<double> sink(size_t(pool.size()) * 16);
  Rate best;
  for (int rep = 0; rep < 5; ++rep) {
    measure(best, double(n / 32 * 32) * sizeof(float), [&] {
    pool.parallel_for(int64_t(n / 32), [&](int64_t b, int64_t e, int t) {
      sink[size_t(t) * 16] += cpu::simd::stream_sum(data, b * 32, e * 32);
    });
    });
  }
  std::free(data);
  return best;
}

// Best of several runs of 10 independent FMA chains per thread, in the widest vectors the CPU kernels use
// (backend/cpu/probes.h). Returns FLOP/s.
Rate probe_fma_peak() {
  auto& pool = ThreadPool::global();
  const int64_t iters = 50'000'000;
  std::vector<float> sink(size_t(pool.size()) * 16);
  Rate best;
  for (int rep = 0; rep < 3; ++rep) {
    measure(best, double(pool.size()) * double(iters) * cpu::fma_chain_step_flops(), [&] {
      pool.parallel_for(pool.size(), [&](int64_t b, int64_t e, int t) {
        for (int64_t w = b; w < e; ++w)
          sink[size_t(t) * 16] += cpu::fma_chains(iters, sink[size_t(t) * 16] + 0.1f);
      });
    });
  }
  return best;
}

// --- model arithmetic -----------------------------------------------------------------------------

uint64_t expert_bytes(const GptOssConfig& c, bool mxfp4) {
  const uint64_t H = uint64_t(c.hidden_size), I = uint64_t(c.intermediate_size);
  const uint64_t w = H * 2 * I + I * H;
  return mxfp4 ? w / 2 + w / 32 + 2 * (2 * I + H) : 2 * (w + 2 * I + H);
}

// Weight bytes one decode step of `batch` sequences reads (see the header comment).
double decode_step_bytes(const GptOssConfig& c, bool mxfp4, int batch) {
  const double per_token = double(decode_bytes_per_token(c, mxfp4));
  const double eb = double(expert_bytes(c, mxfp4));
  const double E = c.num_local_experts, k = c.num_experts_per_tok, L = c.num_hidden_layers;
  const double non_expert = per_token - L * k * eb;
  const double distinct = batch <= 1 ? k : E * (1.0 - std::pow(1.0 - k / E, double(batch)));
  return non_expert + L * distinct * eb;
}

// FLOPs of a prefill of `n` tokens from position 0 (logits of the last token only).
double prefill_flops(const GptOssConfig& c, int64_t n) {
  const ParameterCounts p = parameter_counts(c);
  const double lm = double(c.vocab_size) * double(c.hidden_size);
  double flops = 2.0 * (double(p.active) - lm) * double(n) + 2.0 * lm;
  const double per_key = 4.0 * c.num_attention_heads * c.head_dim;  // QK^T and PV
  for (int l = 0; l < c.num_hidden_layers; ++l)
    for (int64_t t = 0; t < n; ++t) {
      int64_t keys = t + 1;
      if (c.is_sliding(l)) keys = std::min<int64_t>(keys, c.sliding_window);
      flops += per_key * double(keys);
    }
  return flops;
}

// --- measurements ---------------------------------------------------------------------------------

struct Stat {
  double mean = 0, sd = 0;
};
Stat stats(const std::vector<double>& v) {
  Stat s;
  for (double x : v) s.mean += x;
  s.mean /= double(v.size());
  for (double x : v) s.sd += (x - s.mean) * (x - s.mean);
  s.sd = v.size() > 1 ? std::sqrt(s.sd / double(v.size() - 1)) : 0.0;
  return s;
}

uint64_t peak_rss_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  return 0;
}

std::string command_line() {
  std::ifstream f("/proc/self/cmdline", std::ios::binary);
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>()), out;
  for (char ch : s) out += ch ? ch : ' ';
  while (!out.empty() && out.back() == ' ') out.pop_back();
  if (auto p = out.find("gptoss "); p != std::string::npos) out = out.substr(p);  // drop the binary's path
  return out;
}

std::string git_commit() {
#ifdef GPTOSS_SOURCE_DIR
  // "-dirty" when the checkout has uncommitted changes (the binary may hold them).
  std::string cmd = std::string("git -C '") + GPTOSS_SOURCE_DIR + "' describe --always --dirty --abbrev=7 2>/dev/null";
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[64] = {};
    size_t got = fread(buf, 1, sizeof(buf) - 1, p);
    pclose(p);
    std::string s(buf, got);
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    if (!s.empty()) return s;
  }
#endif
  return "unknown";
}

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

double load_average() {
  double l[1] = {0};
  return getloadavg(l, 1) == 1 ? l[0] : -1.0;
}

// Fraction of the pool's threads x wall time this process actually ran since `cpu0`/`wall0`: well
// below 1 means the machine was shared and the tok/s understate what the code can do.
struct CpuShare {
  double cpu0 = cpu_seconds();
  Clock::time_point wall0 = Clock::now();
  double get() const {
    return (cpu_seconds() - cpu0) / (seconds_since(wall0) * ThreadPool::global().size());
  }
  // Seconds of CPU time per pool thread since construction.
  double cpu_per_thread() const { return (cpu_seconds() - cpu0) / ThreadPool::global().size(); }
};

struct Result {
  std::string phase, test;
  int batch = 1;
  int prompt_tokens = 0, gen_tokens = 0;
  Stat tok_s;
  double roofline = 0;
  uint64_t peak_mem = 0;
  double cpu_share = 0;
  double tok_s_cpu = 0, roofline_cpu = 0;  // per CPU second per thread (see Rate)
  double rate = 0, rate_cpu = 0;  // bytes/s read (decode) or FLOP/s (prefill); NaN where no roofline applies
};

class Bench {
 public:
  Bench(GptOssModel& m, const Options& o, KvDtype kv_dtype) : m_(m), o_(o), kv_dtype_(kv_dtype), rng_(o.seed) {}

  std::vector<int32_t> random_tokens(int64_t n) {
    std::uniform_int_distribution<int32_t> d(0, int32_t(m_.config().vocab_size - 1));
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (auto& x : t) x = d(rng_);
    return t;
  }

  // Seconds for one prefill of `n` tokens on a fresh sequence.
  double prefill_once(int64_t n) {
    KvPool pool(m_.config(), m_.backend(), SequenceKv::blocks_needed(n, o_.block_size), o_.block_size, kv_dtype_);
    LinearBlockAllocator alloc(pool.num_blocks());
    SequenceKv seq(alloc, o_.block_size);
    auto tokens = random_tokens(n);
    std::vector<float> logits(size_t(m_.config().vocab_size));
    ForwardBatch b;
    b.seqs.push_back(seq.chunk(tokens, 0, false));
    auto t0 = Clock::now();
    m_.forward(b, pool, logits.data());
    return seconds_since(t0);
  }

  // Timed wall and CPU seconds of `steps` decode steps of `batch` sequences, after an untimed prefill of
  // o_.depth tokens per sequence (in chunks of at most 512) and one untimed warm-up step.
  struct Timed {
    double wall = 0, cpu = 0;
  };
  Timed decode_once(int batch, int steps) {
    const int64_t depth = o_.depth, positions = depth + steps + 1;
    KvPool pool(m_.config(), m_.backend(), SequenceKv::blocks_needed(positions, o_.block_size, batch),
                o_.block_size, kv_dtype_);
    LinearBlockAllocator alloc(pool.num_blocks());
    std::vector<SequenceKv> seqs(size_t(batch), SequenceKv(alloc, o_.block_size));
    for (auto& s : seqs) s.ensure(positions);
    auto tokens = random_tokens(int64_t(batch) * positions);
    std::vector<float> logits(size_t(batch) * size_t(m_.config().vocab_size));
    const std::span<const int32_t> all(tokens);
    for (int i = 0; i < batch; ++i)
      for (int64_t c = 0; c < depth; c += 512) {
        ForwardBatch b;
        b.seqs.push_back(seqs[size_t(i)].chunk(all.subspan(size_t(i * positions + c), size_t(std::min<int64_t>(512, depth - c))),
                                               int32_t(c), false));
        m_.forward(b, pool, logits.data());
      }
    Clock::time_point t0;
    double c0 = 0;
    for (int step = 0; step <= steps; ++step) {
      if (step == 1) {
        t0 = Clock::now();
        c0 = cpu_seconds();
      }
      ForwardBatch b;
      for (int i = 0; i < batch; ++i)
        b.seqs.push_back(seqs[size_t(i)].chunk(all.subspan(size_t(i * positions + depth + step), 1),
                                               int32_t(depth + step), false));
      m_.forward(b, pool, logits.data());
    }
    return {seconds_since(t0), cpu_seconds() - c0};
  }

 private:
  GptOssModel& m_;
  const Options& o_;
  KvDtype kv_dtype_;
  std::mt19937_64 rng_;
};

int run(const Options& o) {
  std::vector<int> batches = cli::parse_id_list(o.batch, "--batch");
  if (batches.empty()) fail_input("--batch is empty; expected batch sizes, e.g. --batch 1,4,16");
  for (int b : batches)
    if (b <= 0) fail_input("--batch has {}; expected positive batch sizes", b);
  if (o.prompt < 1) fail_input("--prompt is {}; expected >= 1", o.prompt);
  if (o.gen < 1) fail_input("--gen is {}; expected >= 1", o.gen);
  if (o.repeats < 1) fail_input("--repeats is {}; expected >= 1", o.repeats);
  if (o.depth < 0) fail_input("--depth is {}; expected >= 0", o.depth);
  const KvDtype kv_dtype = cli::parse_kv_cache_dtype(o.kv_cache_dtype);

  auto backend = make_backend(o.device);
  auto t_load = Clock::now();
  auto model = GptOssModel::load(o.model, *backend, o.adapter);
  const double load_s = seconds_since(t_load);
  const GptOssConfig& cfg = model->config();
  const bool mxfp4 = model->weights().mxfp4_experts;
  std::string name = std::filesystem::path(o.model).lexically_normal().filename().string();
  if (name.empty() || name == ".") name = std::filesystem::path(o.model).lexically_normal().parent_path().filename().string();
  const std::string lora = model->adapter() ? " + " + model->adapter()->describe() : "";
  const std::string model_name = fmt::format("{} ({}){}", name, mxfp4 ? "MXFP4" : "bf16", lora);

  fmt::print(stderr, "bench: {} on {}; loaded in {:.2f} s; probing bandwidth and FMA peak...\n", model_name,
             backend->device_name(), load_s);
  const double load_before = load_average();
  Rate bw_rate = probe_bandwidth(o.probe_mb);
  const double dev_bw = backend->probe_bandwidth();
  const bool device = dev_bw > 0;  // a GPU: its own memory; the FMA probe below is the host CPU's
  if (device) bw_rate = {dev_bw, dev_bw};
  Rate fma_rate = probe_fma_peak();
  const double bw_before = bw_rate.wall, fma_before = fma_rate.wall;
  fmt::print(stderr, "bench: bandwidth {:.2f} GB/s, FMA peak {:.1f} GFLOP/s (per CPU time: {:.2f} GB/s, {:.1f} GFLOP/s)\n",
             bw_rate.wall / 1e9, fma_rate.wall / 1e9, bw_rate.cpu / 1e9, fma_rate.cpu / 1e9);

  Bench bench(*model, o, kv_dtype);
  std::vector<Result> results;
  backend->set_profiling(o.profile);

  if (!o.no_prefill) {
    bench.prefill_once(std::min(o.prompt, 32));  // warm-up: faults in the weights, grows scratch
    backend->reset_profile();
    std::vector<double> rates;
    CpuShare share;
    for (int r = 0; r < o.repeats; ++r) {
      double s = bench.prefill_once(o.prompt);
      rates.push_back(o.prompt / s);
      fmt::print(stderr, "bench: pp{} repeat {}: {:.2f} tok/s\n", o.prompt, r + 1, rates.back());
    }
    Result res{"prefill", fmt::format("pp{}", o.prompt), 1, o.prompt, 0, stats(rates), 0, peak_rss_bytes()};
    // No GPU FMA probe: a prefill fraction is only reported for the CPU (NaN prints as n/a, JSON null).
    res.cpu_share = share.get();
    res.tok_s_cpu = double(o.prompt) * o.repeats / share.cpu_per_thread();
    res.rate = device ? NAN : prefill_flops(cfg, o.prompt) / o.prompt * res.tok_s.mean;
    res.rate_cpu = device ? NAN : prefill_flops(cfg, o.prompt) / o.prompt * res.tok_s_cpu;
    results.push_back(res);
    if (o.profile) fmt::print(stderr, "profile pp{}:\n{}", o.prompt, backend->profile_report());
  }
  const std::string tg = o.depth > 0 ? fmt::format("tg{}@d{}", o.gen, o.depth) : fmt::format("tg{}", o.gen);
  for (int b : batches) {
    if (o.depth == 0) bench.decode_once(b, 1);  // warm-up (with a depth, each run's prefill warms up)
    backend->reset_profile();
    std::vector<double> rates;
    double wall = 0, cpu = 0;
    for (int r = 0; r < o.repeats; ++r) {
      const auto tm = bench.decode_once(b, o.gen);
      wall += tm.wall;
      cpu += tm.cpu;
      rates.push_back(double(b) * o.gen / tm.wall);
      fmt::print(stderr, "bench: {} batch {} repeat {}: {:.2f} tok/s\n", tg, b, r + 1, rates.back());
    }
    // prompt_tokens of a decode row: the context each sequence had before the timed steps (--depth).
    Result res{"decode", tg, b, o.depth, o.gen, stats(rates), 0, peak_rss_bytes()};
    const double step_s = double(b) / res.tok_s.mean;
    const double threads = ThreadPool::global().size();
    res.rate = decode_step_bytes(cfg, mxfp4, b) / step_s;
    res.cpu_share = cpu / (wall * threads);
    res.tok_s_cpu = double(b) * o.gen * o.repeats / (cpu / threads);
    res.rate_cpu = decode_step_bytes(cfg, mxfp4, b) / (double(b) / res.tok_s_cpu);
    results.push_back(res);
    if (o.profile) fmt::print(stderr, "profile {} batch {}:\n{}", tg, b, backend->profile_report());
  }

  // The second probes (CPU only: a GPU reports its own bandwidth) and the rooflines against the higher readings.
  double bw_after = NAN, fma_after = NAN;
  if (!device) {
    const Rate bw2 = probe_bandwidth(o.probe_mb), fma2 = probe_fma_peak();
    bw_after = bw2.wall, fma_after = fma2.wall;
    bw_rate = {std::max(bw_rate.wall, bw2.wall), std::max(bw_rate.cpu, bw2.cpu)};
    fma_rate = {std::max(fma_rate.wall, fma2.wall), std::max(fma_rate.cpu, fma2.cpu)};
    fmt::print(stderr, "bench: after the tests: bandwidth {:.2f} GB/s, FMA peak {:.1f} GFLOP/s; rooflines use {:.2f} GB/s and {:.1f} GFLOP/s\n",
               bw2.wall / 1e9, fma2.wall / 1e9, bw_rate.wall / 1e9, fma_rate.wall / 1e9);
  }
  const double bw = bw_rate.wall, fma = fma_rate.wall;
  for (auto& r : results) {
    const bool decode = r.phase == "decode";
    r.roofline = r.rate / (decode ? bw : fma);
    r.roofline_cpu = r.rate_cpu / (decode ? bw_rate.cpu : fma_rate.cpu);
  }

  if (o.json) {
    nlohmann::json j;
    j["date"] = utc_now();
    j["commit"] = git_commit();
    j["card"] = backend->device_name();
    j["command"] = command_line();
    j["bandwidth_gb_s"] = bw / 1e9;
    j["fma_peak_gflops"] = fma / 1e9;
    // The probes before and after the tests (after: null on a GPU); the two fields above are the higher.
    auto gb = [](double v) { return std::isnan(v) ? nlohmann::json() : nlohmann::json(v / 1e9); };
    j["bandwidth_gb_s_probes"] = {gb(bw_before), gb(bw_after)};
    j["fma_peak_gflops_probes"] = {gb(fma_before), gb(fma_after)};
    j["bandwidth_gb_s_cpu_time"] = bw_rate.cpu / 1e9;
    j["fma_peak_gflops_cpu_time"] = fma_rate.cpu / 1e9;
    j["decode_bytes_per_token"] = decode_bytes_per_token(cfg, mxfp4);
    j["threads"] = ThreadPool::global().size();
    j["load_avg_1m_before"] = load_before;
    j["load_avg_1m_after"] = load_average();
    j["results"] = nlohmann::json::array();
    for (const auto& r : results)
      j["results"].push_back({{"model", model_name},
                              {"phase", r.phase},
                              {"test", r.test},
                              {"batch", r.batch},
                              {"prompt_tokens", r.prompt_tokens},
                              {"gen_tokens", r.gen_tokens},
                              {"tok_s", r.tok_s.mean},
                              {"sd", r.tok_s.sd},
                              {"roofline_fraction", std::isnan(r.roofline) ? nlohmann::json() : nlohmann::json(r.roofline)},
                              {"peak_mem_bytes", r.peak_mem},
                              {"cpu_share", r.cpu_share},
                              {"tok_s_cpu_time", r.tok_s_cpu},
                              {"roofline_fraction_cpu_time",
                               std::isnan(r.roofline_cpu) ? nlohmann::json() : nlohmann::json(r.roofline_cpu)}});
    fmt::print("{}\n", j.dump(2));
    return 0;
  }
  fmt::print("bandwidth {:.2f} GB/s · FMA peak {:.1f} GFLOP/s · decode reads {:.3f} GB/token at batch 1 · {}\n\n",
             bw / 1e9, fma / 1e9, double(decode_bytes_per_token(cfg, mxfp4)) / 1e9, backend->device_name());
  fmt::print("| model | phase | batch | test | tok/s | roofline | peak mem | cpu share |\n");
  fmt::print("| --- | --- | ---: | --- | ---: | ---: | ---: | ---: |\n");
  for (const auto& r : results)
    fmt::print("| {} | {} | {} | {} | {:.2f} ± {:.2f} | {} | {:.2f} GB | {:.0f} % |\n", model_name, r.phase, r.batch,
               r.test, r.tok_s.mean, r.tok_s.sd,
               std::isnan(r.roofline) ? std::string("n/a")
                                      : fmt::format("{:.1f} % {}", 100 * r.roofline, r.phase == "decode" ? "BW" : "FMA"),
               double(r.peak_mem) / 1e9, 100 * r.cpu_share);
  fmt::print("\nload average before {:.2f}, after {:.2f} (cpu share well below 100 % = shared machine)\n", load_before,
             load_average());
  fmt::print("per CPU time (as if the cores were ours): bandwidth {:.2f} GB/s, FMA peak {:.1f} GFLOP/s\n",
             bw_rate.cpu / 1e9, fma_rate.cpu / 1e9);
  for (const auto& r : results)
    if (!std::isnan(r.roofline_cpu))
      fmt::print("  {} batch {}: {:.2f} tok/s, {:.1f} % of the {} roofline\n", r.test, r.batch, r.tok_s_cpu,
                 100 * r.roofline_cpu, r.phase == "decode" ? "bandwidth" : "FMA");
  return 0;
}

const cli::Registrar reg{
    "bench", "Prefill and decode throughput with bandwidth/FMA roofline fractions (llama-bench style)",
    [](CLI::App& app) -> cli::Runner {
      auto o = std::make_shared<Options>();
      app.add_option("--model", o->model, "model directory")->required();
      app.add_option("--adapter", o->adapter, "PEFT LoRA adapter directory applied on top");
      app.add_option("--prompt", o->prompt, "prompt tokens of the prefill test")->capture_default_str();
      app.add_option("--gen", o->gen, "decode steps of the generation test")->capture_default_str();
      app.add_option("--repeats", o->repeats, "repeats of every test")->capture_default_str();
      app.add_option("--batch", o->batch, "decode batch sizes, comma-separated")->capture_default_str();
      app.add_option("--depth", o->depth, "context tokens of every sequence before the decode test (llama-bench -d)")
          ->capture_default_str();
      app.add_option("--device", o->device, "cpu, cuda or auto")->capture_default_str();
      app.add_option("--block-size", o->block_size, "KV block size")->capture_default_str();
      app.add_option("--kv-cache-dtype", o->kv_cache_dtype, "KV cache element type: auto (float32), float32, bfloat16")
          ->capture_default_str();
      app.add_option("--seed", o->seed, "seed of the random token ids")->capture_default_str();
      app.add_option("--probe-mb", o->probe_mb, "MiB streamed by the bandwidth probe")->capture_default_str();
      app.add_flag("--json", o->json, "print JSON (the bench/results schema) instead of a table");
      app.add_flag("--profile", o->profile, "print time per backend op for every test (stderr)");
      app.add_flag("--no-prefill", o->no_prefill, "skip the prefill test");
      return [o] { return run(*o); };
    }};

}  // namespace
}  // namespace gptoss
