// gptoss infer: Oumi's `oumi infer`, on our engine.
//
//   gptoss infer -i -c oumi://configs/recipes/gpt_oss/inference/20b_infer.yaml    interactive chat
//   gptoss infer -c gpt-oss-20b --input_path in.jsonl --output_path out.jsonl     batch
//   gptoss infer --list                                                            bundled recipes
// Any config key can be overridden: --generation.temperature=0.7, --model.model_name DIR, --engine VLLM.
#include <cstdio>
#include <memory>

#include "cli/command.h"
#include "cli/infer_common.h"
#include "config/recipes.h"
#include "core/error.h"

namespace gptoss {
namespace {

struct Options {
  std::string config;
  bool interactive = false;
  bool list = false;
  bool print_config = false;
  bool hide_reasoning = false;
  bool quiet = false;
  std::string system_prompt;
  std::string on_error = "fail";
  std::string level;
  int concurrency = 0;
};

int list_recipes_cmd() {
  auto recipes = list_recipes();
  if (recipes.empty()) {
    std::fprintf(stderr, "gptoss: no bundled configs found; set GPTOSS_CONFIG_DIR to the configs/ folder of the source tree\n");
    return 1;
  }
  std::printf("Bundled recipes (%s):\n", bundled_configs_dir().c_str());
  std::string kind;
  for (const auto& r : recipes) {
    if (r.kind != kind) {
      kind = r.kind;
      std::printf("\n%s:\n", kind.c_str());
    }
    std::string aliases;
    for (const auto& a : r.aliases) aliases += (aliases.empty() ? "  alias: " : ", ") + a;
    std::printf("  %s%s\n      %s\n", r.name.c_str(), aliases.c_str(), r.description.c_str());
  }
  return 0;
}

int run(const Options& o, const std::vector<std::string>& extras) {
  if (o.list) return list_recipes_cmd();
  if (o.config.empty())
    fail_input("no config: pass -c FILE, -c oumi://configs/recipes/gpt_oss/inference/20b_infer.yaml or -c gpt-oss-20b "
               "(see `gptoss infer --list`)");
  InferenceConfig cfg = load_inference_config(o.config, parse_override_args(extras));
  if (o.print_config) {
    std::printf("%s\n", to_json(cfg).dump(2).c_str());
    return 0;
  }
  if (!o.interactive && cfg.input_path.empty())
    fail_input("nothing to do: pass -i for an interactive chat, or --input_path in.jsonl --output_path out.jsonl for "
               "batch inference");
  if (o.on_error != "skip" && o.on_error != "fail") fail_input("--on-error is '{}'; expected skip or fail", o.on_error);
  auto svc = infer::make_chat_service(cfg, o.quiet);
  if (o.interactive) {
    infer::InteractiveOptions io;
    io.system_prompt = o.system_prompt;
    io.hide_reasoning = o.hide_reasoning;
    return infer::run_interactive(*svc, cfg, io);
  }
  infer::BatchOptions bo;
  bo.input_path = cfg.input_path;
  bo.output_path = cfg.output_path;
  bo.fail_on_error = o.on_error == "fail";
  bo.quiet = o.quiet;
  bo.concurrency = o.concurrency;
  return infer::run_batch(*svc, cfg, bo);
}

const cli::Registrar reg{
    "infer", "Chat with gpt-oss (-i) or answer a JSONL file of conversations (Oumi's `oumi infer`)",
    [](CLI::App& app) -> cli::Runner {
      auto o = std::make_shared<Options>();
      app.add_option("-c,--config", o->config, "config file, oumi://configs/... name, or alias (gpt-oss-20b)");
      app.add_flag("-i,--interactive", o->interactive, "interactive multi-turn chat");
      app.add_flag("--list", o->list, "list the bundled recipes and aliases");
      app.add_option("--system-prompt", o->system_prompt, "system prompt for interactive mode");
      app.add_flag("--hide-reasoning", o->hide_reasoning, "do not show the analysis channel");
      app.add_option("--on-error", o->on_error, "batch: a bad input line or failed row: skip | fail (default fail)");
      app.add_option("--concurrency", o->concurrency,
                     "batch: conversations in flight (default engine_params.max_num_seqs or remote_params.num_workers)");
      app.add_flag("--print-config", o->print_config, "print the effective config and exit");
      app.add_flag("-q,--quiet", o->quiet, "no progress output");
      app.add_option("--level", o->level, "log level (accepted for Oumi compatibility)");
      app.allow_extras();
      app.footer(
          "Config overrides: any key as --section.key VALUE or --section.key=VALUE, e.g. --generation.temperature=0.7 "
          "--model.model_name ./model --engine VLLM --input_path in.jsonl --output_path out.jsonl");
      CLI::App* a = &app;
      return [o, a] { return run(*o, a->remaining()); };
    }};

}  // namespace
}  // namespace gptoss
