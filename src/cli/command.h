// Subcommands register themselves: each src/cli/<name>.cpp defines one file-local
//
//   const gptoss::cli::Registrar reg{"tokenize", "Encode text to token ids",
//       [](CLI::App& app) -> gptoss::cli::Runner {
//         auto opts = std::make_shared<Options>();
//         app.add_option("--model", opts->model, "model directory");
//         return [opts] { return run(*opts); };   // exit code
//       }};
//
// and main.cpp knows none of them by name. The CLI sources are linked into the executable directly
// (not through a static library) so the registrars are never dropped by the linker.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "backend/backend.h"
#include "core/dtype.h"

namespace gptoss::cli {

using Runner = std::function<int()>;
using Setup = std::function<Runner(CLI::App&)>;

struct Command {
  std::string name;
  std::string help;
  Setup setup;
};

std::vector<Command>& registry();

struct Registrar {
  Registrar(std::string name, std::string help, Setup setup) {
    registry().push_back({std::move(name), std::move(help), std::move(setup)});
  }
};

// Parses "1,2,3" (spaces allowed) into ids; throws InputError naming `what` and the bad item.
std::vector<int> parse_id_list(const std::string& text, const std::string& what);

// --kv-cache-dtype: auto (float32) | float32 | bfloat16; throws InputError naming the value and the choices.
KvDtype parse_kv_cache_dtype(const std::string& text);

// The CPU backend's options, as llama.cpp names them: -t/--threads N (BackendOptions::threads) and
// --no-mmap (BackendOptions::use_mmap false: the weights copied into 2 MiB pages instead of computing from
// the mapped checkpoint).
void add_cpu_options(CLI::App& app, BackendOptions* options);

}  // namespace gptoss::cli
