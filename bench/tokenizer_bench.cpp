// Tokenizer encode throughput, single thread:
//   tokenizer_bench --tokenizer tokenizer.json --corpus FILE [--repeats N] [--ids-out FILE]
// Prints one JSON object {name, bytes, tokens, seconds (best of N), mb_s, cpu_seconds, mb_s_cpu,
// load_seconds}. --ids-out writes
// the ids comma-separated so bench/tokenizer/run.sh can check them against tiktoken's.
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "tokenizer/tokenizer.h"

// CPU time of this thread: on a shared machine wall time also counts time spent preempted.
static double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

int main(int argc, char** argv) {
  std::string tokenizer_path, corpus_path, ids_out;
  int repeats = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--tokenizer") tokenizer_path = argv[i + 1];
    else if (a == "--corpus") corpus_path = argv[i + 1];
    else if (a == "--repeats") repeats = std::max(1, std::atoi(argv[i + 1]));
    else if (a == "--ids-out") ids_out = argv[i + 1];
    else {
      std::fprintf(stderr, "tokenizer_bench: unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  if (tokenizer_path.empty() || corpus_path.empty()) {
    std::fprintf(stderr, "usage: tokenizer_bench --tokenizer FILE --corpus FILE [--repeats N] [--ids-out FILE]\n");
    return 2;
  }
  try {
    using clock = std::chrono::steady_clock;
    auto t0 = clock::now();
    const auto tok = gptoss::Tokenizer::from_file(tokenizer_path);
    const double load_s = std::chrono::duration<double>(clock::now() - t0).count();
    const std::string text = gptoss::read_file(corpus_path);
    (void)tok.encode(std::string_view(text).substr(0, 10000));  // warm caches
    double best = 1e30, best_cpu = 1e30;
    std::vector<int> ids;
    for (int r = 0; r < repeats; ++r) {
      const double c1 = thread_cpu_seconds();
      auto t1 = clock::now();
      ids = tok.encode(text);
      best = std::min(best, std::chrono::duration<double>(clock::now() - t1).count());
      best_cpu = std::min(best_cpu, thread_cpu_seconds() - c1);
    }
    if (!ids_out.empty()) {
      std::string s;
      s.reserve(ids.size() * 7);
      for (size_t k = 0; k < ids.size(); ++k) {
        if (k) s += ',';
        s += std::to_string(ids[k]);
      }
      s += '\n';
      gptoss::write_file_atomic(ids_out, s);
    }
    nlohmann::json out = {{"name", "gptoss"},          {"bytes", text.size()},
                          {"tokens", ids.size()},      {"seconds", best},
                          {"mb_s", double(text.size()) / 1e6 / best}, {"repeats", repeats},
                          {"cpu_seconds", best_cpu},   {"mb_s_cpu", double(text.size()) / 1e6 / best_cpu},
                          {"load_seconds", load_s}};
    std::printf("%s\n", out.dump().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tokenizer_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
