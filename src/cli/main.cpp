// gptoss: one binary, one subcommand per file in src/cli/ (see command.h).
#include <algorithm>
#include <cstdio>
#include <map>

#include <fmt/ranges.h>

#include "cli/command.h"
#include "core/error.h"
#include "core/thread_pool.h"

namespace gptoss::cli {

std::vector<Command>& registry() {
  static std::vector<Command> commands;
  return commands;
}

KvDtype parse_kv_cache_dtype(const std::string& text) {
  KvDtype d = KvDtype::f32;
  if (!parse_kv_dtype(text, &d))
    fail_input("--kv-cache-dtype is {}; expected one of {}", text, fmt::join(kKvDtypeSettings, ", "));
  return d;
}

void add_cpu_options(CLI::App& app, BackendOptions* options) {
  app.add_option("-t,--threads", options->threads, "CPU threads (default: $GPTOSS_THREADS, else all)")
      ->check(CLI::Range(1, ThreadPool::kMaxThreads));
  app.add_flag_callback(
      "--no-mmap", [options] { options->use_mmap = false; },
      "CPU: copy the weights into 2 MiB pages (private memory, slower load) instead of reading the mapped "
      "checkpoint; faster where the file system caches in 4 KiB pages");
}

std::vector<int> parse_id_list(const std::string& text, const std::string& what) {
  std::vector<int> ids;
  size_t i = 0;
  while (i < text.size()) {
    size_t j = text.find(',', i);
    if (j == std::string::npos) j = text.size();
    std::string item = text.substr(i, j - i);
    item.erase(0, item.find_first_not_of(" \t\n"));
    item.erase(item.find_last_not_of(" \t\n") + 1);
    if (!item.empty()) {
      size_t used = 0;
      long v = -1;
      try {
        v = std::stol(item, &used);
      } catch (...) {
        used = 0;
      }
      if (used != item.size() || v < 0 || v > 0x7fffffff)
        fail_input("{}: '{}' is not a token id; expected comma-separated non-negative integers", what, item);
      ids.push_back(int(v));
    }
    i = j + 1;
  }
  return ids;
}

}  // namespace gptoss::cli

int main(int argc, char** argv) {
  using namespace gptoss::cli;
  CLI::App app{"gptoss: gpt-oss inference, serving, fine-tuning and quantization in one binary"};
  app.set_version_flag("--version", std::string("gptoss ") + GPTOSS_VERSION);
  app.require_subcommand(1);
  auto& cmds = registry();
  std::sort(cmds.begin(), cmds.end(), [](const Command& a, const Command& b) { return a.name < b.name; });
  std::map<CLI::App*, Runner> runners;
  for (auto& c : cmds) {
    CLI::App* sub = app.add_subcommand(c.name, c.help);
    runners[sub] = c.setup(*sub);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (auto& [sub, run] : runners)
      if (sub->parsed()) return run();
  } catch (const gptoss::InputError& e) {
    std::fprintf(stderr, "gptoss: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gptoss: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
