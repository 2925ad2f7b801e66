#include "quantize/quantize.h"

#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <regex>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "core/atomic_file.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/mmap_file.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "io/checkpoint_writer.h"
#include "io/safetensors.h"
#include "model/config.h"

namespace gptoss {

namespace fs = std::filesystem;
using json = nlohmann::json;

const std::vector<std::string>& supported_quantization_methods() {
  static const std::vector<std::string> m = {"mxfp4"};
  return m;
}

namespace {

constexpr size_t kCopyPiece = size_t(64) << 20;

bool ends_with(const std::string& s, std::string_view suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

// Streaming order: embeddings, then layer by layer, then the rest (final norm, lm_head).
std::tuple<int, int64_t, std::string> order_key(const std::string& name) {
  static const std::regex layer_re(R"(^model\.layers\.(\d+)\.)");
  std::smatch m;
  if (std::regex_search(name, m, layer_re)) return {1, std::stoll(m[1].str()), name};
  if (name.rfind("model.embed_tokens", 0) == 0) return {0, 0, name};
  return {2, 0, name};
}

// One step of the plan: copy a tensor, or quantize an expert weight into its _blocks and _scales.
struct Step {
  const TensorView* src = nullptr;
  bool quantize = false;
  int64_t experts = 0, in = 0, out = 0;  // src shape [experts, in, out] (input-major)
};

float load_elem(const TensorView& t, int64_t i) {
  if (t.dtype == DType::BF16) return bf16_to_f32(reinterpret_cast<const uint16_t*>(t.data)[i]);
  float f;
  std::memcpy(&f, t.data + 4 * i, 4);
  return f;
}

}  // namespace

QuantizeReport quantize_checkpoint(const QuantizeOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto& methods = supported_quantization_methods();
  if (std::find(methods.begin(), methods.end(), opt.method) == methods.end())
    fail_input("quantization method '{}' is not supported; supported: {}", opt.method, fmt::join(methods, ", "));
  std::error_code ec;
  if (!fs::is_directory(opt.model, ec))
    fail_input("{}: not a directory; expected a bf16 gpt-oss checkpoint (config.json + *.safetensors)", opt.model);
  if (opt.output.empty()) fail_input("no output directory given; pass --output-dir DIR");
  if (fs::weakly_canonical(opt.model, ec) == fs::weakly_canonical(opt.output, ec))
    fail_input("{}: the output directory is the input; choose another --output-dir", opt.output);

  const GptOssConfig cfg = GptOssConfig::load(opt.model);
  const std::string cfg_path = (fs::path(opt.model) / "config.json").string();
  if (cfg.quantization_config)
    fail_input("{}: this checkpoint is already quantized (quantization_config.quant_method is \"{}\"); quantize "
               "takes the bf16 checkpoint (e.g. a merged fine-tune)",
               cfg_path, cfg.quantization_config->quant_method);
  Checkpoint ck = Checkpoint::open(opt.model);
  for (const auto& name : ck.names())
    if (ends_with(name, "_blocks") || ends_with(name, "_scales"))
      fail_input("{}: tensor '{}' is already MXFP4; quantize takes the bf16 checkpoint (experts as gate_up_proj / "
                 "down_proj)",
                 ck.get(name).file, name);

  const int64_t H = cfg.hidden_size, I = cfg.intermediate_size, E = cfg.num_local_experts;
  if (H % 32 != 0 || I % 32 != 0)
    fail_input("{}: hidden_size {} and intermediate_size {} must be multiples of 32 for MXFP4 (32-wide blocks)",
               cfg_path, H, I);

  // The plan: every input tensor, in streaming order; expert weights become blocks + scales.
  std::vector<std::string> names = ck.names();
  std::sort(names.begin(), names.end(), [](const auto& a, const auto& b) { return order_key(a) < order_key(b); });
  std::vector<Step> steps;
  std::vector<TensorSpec> specs;
  int expert_tensors = 0;
  for (const auto& name : names) {
    const TensorView& t = ck.get(name);
    const bool gate_up = ends_with(name, ".mlp.experts.gate_up_proj");
    const bool down = ends_with(name, ".mlp.experts.down_proj");
    if (!gate_up && !down) {
      steps.push_back({&t});
      specs.push_back({name, t.dtype, t.shape});
      continue;
    }
    const std::vector<int64_t> want = gate_up ? std::vector<int64_t>{E, H, 2 * I} : std::vector<int64_t>{E, I, H};
    if (t.shape != want)
      fail_input("{}: tensor '{}' has shape {}; expected {} ([experts, in, out] as in the hub's bf16 layout, from "
                 "config.json)",
                 t.file, name, t.shape_str(), fmt::format("[{}]", fmt::join(want, ", ")));
    if (t.dtype != DType::BF16 && t.dtype != DType::F32)
      fail_input("{}: tensor '{}' is {}; expected BF16 (or F32) expert weights", t.file, name, dtype_name(t.dtype));
    Step s{&t, true, want[0], want[1], want[2]};
    steps.push_back(s);
    specs.push_back({name + "_blocks", DType::U8, {s.experts, s.out, s.in / 32, 16}});
    specs.push_back({name + "_scales", DType::U8, {s.experts, s.out, s.in / 32}});
    ++expert_tensors;
  }
  if (expert_tensors == 0)
    fail_input("{}: no expert weights to quantize (expected model.layers.N.mlp.experts.gate_up_proj and down_proj "
               "in the hub's bf16 layout)",
               opt.model);
  for (int l = 0; l < cfg.num_hidden_layers; ++l)
    for (const char* w : {"gate_up_proj", "down_proj"}) {
      std::string n = fmt::format("model.layers.{}.mlp.experts.{}", l, w);
      if (!ck.find(n)) fail_input("{}: tensor '{}' is missing; every layer needs its expert weights", opt.model, n);
    }

  // Output config: the input's, plus the hub's quantization_config.
  json out_cfg = cfg.raw;
  out_cfg["quantization_config"] = {{"quant_method", "mxfp4"},
                                    {"modules_to_not_convert", default_modules_to_not_convert()}};

  StagedDir out(opt.output, opt.overwrite);
  write_file_atomic(out.file("config.json"), out_cfg.dump(2) + "\n");
  copy_side_files(opt.model, out.path());
  ShardedWriter writer(out.path(), specs, uint64_t(opt.max_shard_gb * 1e9), {{"format", "pt"}},
                       /*always_index=*/true);

  QuantizeReport rep;
  rep.shards = writer.num_shards();
  rep.bytes_out = writer.total_bytes();
  rep.bytes_in = ck.total_bytes();
  ProgressBar bar("quantize", rep.bytes_in);
  AsyncSink sink([&](const uint8_t* p, size_t n) { writer.write_next(p, n); });
  ThreadPool& pool = ThreadPool::global();

  for (const Step& s : steps) {
    if (opt.cancel && opt.cancel->load()) fail_input("interrupted; nothing was written to {}", opt.output);
    const TensorView& t = *s.src;
    if (!s.quantize) {
      for (size_t off = 0; off < t.nbytes; off += kCopyPiece) {
        const size_t n = std::min(kCopyPiece, t.nbytes - off);
        std::vector<uint8_t> buf = sink.acquire();
        buf.assign(t.data + off, t.data + off + n);
        sink.submit(std::move(buf), n);
        // Drop the piece's pages from this process (they stay in the page cache), so reading a 40 GB
        // checkpoint through the mapping does not grow the resident set.
        advise_pages(t.data + off, n, MADV_DONTNEED, /*whole_pages_only=*/true);
        bar.add(n);
      }
      continue;
    }
    // Expert weights [E, K=in, R=out] -> blocks [E, R, K/32, 16], scales [E, R, K/32].
    const int64_t K = s.in, R = s.out, KB = K / 32;
    const size_t esize = dtype_size(t.dtype);
    const size_t expert_bytes = size_t(K * R) * esize;
    std::vector<uint8_t> scales(size_t(s.experts * R * KB));
    std::vector<double> th_err(size_t(pool.size())), th_ref(size_t(pool.size()));
    std::vector<uint64_t> th_triton(size_t(pool.size()));
    std::vector<std::string> th_bad(size_t(pool.size()));  // first non-finite value each thread saw
    for (int64_t e = 0; e < s.experts; ++e) {
      if (opt.cancel && opt.cancel->load()) fail_input("interrupted; nothing was written to {}", opt.output);
      if (e + 1 < s.experts) advise_pages(t.data + size_t(e + 1) * expert_bytes, expert_bytes, MADV_WILLNEED,
                                        /*whole_pages_only=*/false);
      std::vector<uint8_t> blocks = sink.acquire();
      blocks.resize(size_t(R * KB * 16));
      const int64_t base = e * K * R;
      pool.parallel_for(KB, [&](int64_t kb0, int64_t kb1, int th) {
        // One k-block at a time: the 32 input rows (contiguous in the input-major layout) are
        // transposed into a [R][32] f32 tile, so each output row's block is contiguous.
        std::vector<float> tile(size_t(R) * 32);
        double err = 0, ref = 0;
        uint64_t tri = 0;
        for (int64_t kb = kb0; kb < kb1; ++kb) {
          for (int k = 0; k < 32; ++k) {
            const int64_t row = base + (kb * 32 + k) * R;
            float* dst = tile.data() + k;
            if (t.dtype == DType::BF16) {
              const uint16_t* src = reinterpret_cast<const uint16_t*>(t.data) + row;
              for (int64_t r = 0; r < R; ++r) dst[r * 32] = bf16_to_f32(src[r]);
            } else {
              for (int64_t r = 0; r < R; ++r) dst[r * 32] = load_elem(t, row + r);
            }
          }
          for (int64_t r = 0; r < R; ++r) {
            const float* x = tile.data() + r * 32;
            bool finite = true;
            for (int k = 0; k < 32; ++k) {
              ref += double(x[k]) * double(x[k]);
              if (!std::isfinite(x[k])) {
                if (th_bad[size_t(th)].empty())
                  th_bad[size_t(th)] = fmt::format("{} at [{}, {}, {}]", x[k], e, kb * 32 + k, r);
                finite = false;
              }
            }
            if (!finite) continue;
            bool used_triton = false;
            err += mxfp4_quantize_block(x, opt.rounding, &blocks[size_t((r * KB + kb) * 16)],
                                        &scales[size_t((e * R + r) * KB + kb)], &used_triton);
            tri += used_triton;
          }
        }
        th_err[size_t(th)] += err;
        th_ref[size_t(th)] += ref;
        th_triton[size_t(th)] += tri;
      });
      for (const auto& bad : th_bad)
        if (!bad.empty())
          fail_input("{}: tensor '{}' has a non-finite value {}; cannot quantize", t.file, t.name, bad);
      const size_t n = blocks.size();
      sink.submit(std::move(blocks), n);
      advise_pages(t.data + size_t(e) * expert_bytes, expert_bytes, MADV_DONTNEED, /*whole_pages_only=*/true);
      bar.add(expert_bytes);
    }
    const size_t ns = scales.size();
    sink.submit(std::move(scales), ns);
    TensorError te{t.name};
    for (size_t i = 0; i < th_err.size(); ++i) {
      te.sq_err += th_err[i];
      te.sq_ref += th_ref[i];
      rep.triton_blocks += th_triton[i];
    }
    rep.blocks += uint64_t(s.experts * R * KB);
    rep.total.sq_err += te.sq_err;
    rep.total.sq_ref += te.sq_ref;
    rep.tensors.push_back(te);
    if (opt.verbose) {
      std::printf("%-48s rel RMS error %.5f\n", te.name.c_str(), te.rel_rms());
      std::fflush(stdout);
    }
  }
  sink.finish();
  writer.finish();
  bar.finish();
  out.commit();
  rep.total.name = "total";
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return rep;
}

// ---------------------------------------------------------------------------------------------

QuantizeOptions load_quantize_config(const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    fail_input("{}: cannot open the quantization config", path);
  } catch (const YAML::Exception& e) {
    fail_input("{}: not valid YAML: {}", path, e.what());
  }
  if (!root.IsMap()) fail_input("{}: expected a mapping with model, method, output_path, output_format", path);
  // Oumi's QuantizationConfig keys; the calibration ones only matter for AWQ/GPTQ and are accepted.
  static const std::vector<std::string> known = {"model", "method", "output_path", "output_format",
                                                 "calibration_samples", "calibration_dataset", "batch_size",
                                                 "verbose", "overwrite"};
  QuantizeOptions o;
  auto str = [&](const YAML::Node& n, const std::string& key) {
    if (!n.IsScalar()) fail_input("{}: {} must be a string", path, key);
    return n.as<std::string>();
  };
  for (const auto& kv : root) {
    const std::string key = kv.first.as<std::string>();
    if (std::find(known.begin(), known.end(), key) == known.end())
      fail_input("{}: unknown key '{}'; expected one of {}", path, key, fmt::join(known, ", "));
    const YAML::Node& v = kv.second;
    if (key == "model") {
      if (!v.IsMap() || !v["model_name"])
        fail_input("{}: model must be a mapping with model_name (a directory or hub id)", path);
      o.model = str(v["model_name"], "model.model_name");
    } else if (key == "method") {
      o.method = str(v, key);
    } else if (key == "output_path") {
      o.output = str(v, key);
    } else if (key == "output_format") {
      std::string f = str(v, key);
      if (f != "safetensors")
        fail_input("{}: output_format is '{}'; expected safetensors (the MXFP4 hub layout)", path, f);
    } else if (key == "verbose") {
      o.verbose = v.as<bool>(true);
    } else if (key == "overwrite") {
      o.overwrite = v.as<bool>(false);
    }
  }
  if (o.model.empty()) fail_input("{}: model.model_name is missing", path);
  return o;
}

}  // namespace gptoss
