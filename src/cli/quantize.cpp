// gptoss quantize: bf16 gpt-oss -> the hub's MXFP4 checkpoint (see quantize/quantize.h).
//   gptoss quantize --model-id DIR|ORG/NAME --output-dir DIR --quantization-method mxfp4 [--overwrite]
//   gptoss quantize -c quantize.yaml     (Oumi QuantizationConfig: model.model_name, method, output_path)
#include <sys/resource.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <memory>

#include <fmt/format.h>

#include "cli/command.h"
#include "core/error.h"
#include "hub/hub.h"
#include "quantize/quantize.h"

namespace gptoss {
namespace {

struct Options {
  std::string config, model, output, method, rounding = "best";
  bool overwrite = false, quiet = false;
  double max_shard_gb = 5.0;
};

std::atomic<bool> g_cancel{false};

extern "C" void on_signal(int sig) {
  g_cancel.store(true);
  std::signal(sig, SIG_DFL);  // a second signal kills at once
}

int run(const Options& o) {
  QuantizeOptions q;
  if (!o.config.empty()) q = load_quantize_config(o.config);
  if (!o.model.empty()) q.model = o.model;
  if (!o.output.empty()) q.output = o.output;
  if (!o.method.empty()) q.method = o.method;
  if (o.overwrite) q.overwrite = true;
  if (o.quiet) q.verbose = false;
  q.rounding = parse_mxfp4_rounding(o.rounding);
  q.max_shard_gb = o.max_shard_gb;
  if (q.model.empty()) fail_input("no input model; pass --model-id DIR (or model.model_name in -c CONFIG)");
  if (q.output.empty()) fail_input("no output directory; pass --output-dir DIR (or output_path in -c CONFIG)");
  const auto& methods = supported_quantization_methods();
  if (std::find(methods.begin(), methods.end(), q.method) == methods.end())
    fail_input("quantization method '{}' is not supported; supported: {}", q.method, fmt::join(methods, ", "));
  std::error_code ec;
  if (!std::filesystem::is_directory(q.model, ec)) {
    if (!looks_like_repo_id(q.model))
      fail_input("{}: no such directory, and not a hub id (ORG/NAME); pass the bf16 checkpoint directory", q.model);
    q.model = resolve_model_dir(q.model);  // the HF cache, or a download
  }
  q.cancel = &g_cancel;
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);

  QuantizeReport r = quantize_checkpoint(q);

  struct rusage ru {};
  ::getrusage(RUSAGE_SELF, &ru);
  const double peak_rss_mb = double(ru.ru_maxrss) / 1024.0;
  fmt::print("{:<48} rel RMS error {:.5f}  ({} expert tensors, {} rounding)\n", "total", r.total.rel_rms(),
             r.tensors.size(), mxfp4_rounding_name(q.rounding));
  if (q.rounding == Mxfp4Rounding::Best && r.blocks)
    fmt::print("blocks         {} ({:.1f}% took the Triton scale, the rest the OCP scale)\n", r.blocks,
               100.0 * double(r.triton_blocks) / double(r.blocks));
  fmt::print("wrote          {} ({:.2f} GB in {} shard(s)) from {:.2f} GB\n", q.output, double(r.bytes_out) / 1e9,
             r.shards, double(r.bytes_in) / 1e9);
  fmt::print("time           {:.1f} s, {:.1f} MB/s of input, peak RSS {:.0f} MB\n", r.seconds,
             double(r.bytes_in) / 1e6 / r.seconds, peak_rss_mb);
  return 0;
}

const cli::Registrar reg{
    "quantize", "Quantize a bf16 gpt-oss checkpoint to the hub's MXFP4 layout",
    [](CLI::App& app) -> cli::Runner {
      auto o = std::make_shared<Options>();
      app.add_option("-c,--config", o->config, "Oumi quantization config (YAML: model.model_name, method, output_path)");
      app.add_option("--model-id,--model", o->model, "bf16 checkpoint directory or hub id");
      app.add_option("--output-dir,--output-path", o->output, "output directory");
      app.add_option("--quantization-method,--method", o->method, "quantization method (mxfp4)");
      app.add_flag("--overwrite", o->overwrite, "replace an existing output directory");
      app.add_option("--rounding", o->rounding,
                     "MXFP4 scale rule: best (per block the lower-error of ocp/triton), ocp, triton");
      app.add_option("--max-shard-gb", o->max_shard_gb, "shard size limit in GB")->check(CLI::PositiveNumber);
      app.add_flag("-q,--quiet", o->quiet, "no per-tensor error lines");
      return [o] { return run(*o); };
    }};

}  // namespace
}  // namespace gptoss
