// `gptoss infer --input_path in.jsonl --output_path out.jsonl`: Oumi Conversation JSONL in, the same rows
// with the assistant's answer appended out.
//
// - Every line is validated before anything is generated; bad lines are reported with their line number
//   and either fail the run (--on-error fail, the default) or are left out (--on-error skip).
// - All conversations go through the service concurrently (`concurrency` workers; the local engine
//   batches whatever is in flight).
// - Each finished row is appended to <output_path>.partial at once, so an interrupted run resumes there:
//   rows whose input line is unchanged are not generated again. The output file is written (atomically,
//   in input order) only when every row is done; then the scratch file is removed.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "cli/infer_common.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/progress.h"

namespace gptoss::infer {

namespace {

using Json = nlohmann::ordered_json;
using OJson = nlohmann::ordered_json;

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

struct Row {
  int line = 0;       // 1-based line in the input
  std::string text;   // the input line
  OJson input;        // parsed, key order kept
  Json request;
  std::string key;    // hash of the line, for resuming
};

// The assistant message as written to the output: OpenAI shape, reasoning and tool calls only when present.
OJson output_message(const nlohmann::json& m) {
  OJson out;
  out["role"] = "assistant";
  out["content"] = m.contains("content") ? OJson::parse(m["content"].dump()) : OJson(nullptr);
  if (m.contains("reasoning_content") && m["reasoning_content"].is_string() &&
      !m["reasoning_content"].get<std::string>().empty())
    out["reasoning_content"] = m["reasoning_content"];
  if (m.contains("tool_calls") && m["tool_calls"].is_array() && !m["tool_calls"].empty())
    out["tool_calls"] = OJson::parse(m["tool_calls"].dump());
  return out;
}

}  // namespace

int run_batch(ChatService& svc, const InferenceConfig& cfg, const BatchOptions& opt) {
  namespace fs = std::filesystem;
  if (opt.output_path.empty())
    fail_input("batch mode needs an output file: --output_path out.jsonl (or output_path in the config)");
  std::ifstream in(opt.input_path);
  if (!in) fail_input("{}: cannot open the input file: {}", opt.input_path, std::strerror(errno));

  // 1. Read and validate every line.
  std::vector<Row> rows;
  std::vector<std::string> bad;
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    std::string where = fmt::format("{}:{}", opt.input_path, line_no);
    try {
      Row r;
      r.line = line_no;
      r.text = line;
      r.key = fmt::format("{:016x}", fnv1a(line));
      try {
        r.input = OJson::parse(line);
      } catch (const OJson::exception& e) {
        fail_input("{}: not valid JSON ({})", where, e.what());
      }
      if (!r.input.is_object()) fail_input("{}: expected a JSON object with \"messages\"", where);
      if (!r.input.contains("messages") || !r.input["messages"].is_array() || r.input["messages"].empty())
        fail_input("{}: \"messages\" is missing or empty; expected a list of {{role, content}} messages", where);
      Json msgs = Json::array();
      for (size_t i = 0; i < r.input["messages"].size(); ++i)
        msgs.push_back(normalise_message(r.input["messages"][i], fmt::format("{}: messages[{}]", where, i)));
      Json tools;
      if (r.input.contains("tools") && !r.input["tools"].is_null()) {
        tools = r.input["tools"];
        if (!tools.is_array()) fail_input("{}: \"tools\" is {}; expected a list of OpenAI function definitions", where, tools.dump());
      }
      r.request = build_request(cfg, msgs, tools.is_array() ? &tools : nullptr);
      rows.push_back(std::move(r));
    } catch (const InputError& e) {
      bad.push_back(e.what());
    }
  }
  for (size_t i = 0; i < bad.size() && i < 20; ++i) std::fprintf(stderr, "gptoss: %s: %s\n", opt.fail_on_error ? "error" : "skipping", bad[i].c_str());
  if (bad.size() > 20) std::fprintf(stderr, "gptoss: ... and %zu more bad lines\n", bad.size() - 20);
  if (!bad.empty() && opt.fail_on_error)
    fail_input("{}: {} bad line(s) (first: {}); fix them or pass --on-error skip to leave them out", opt.input_path,
               bad.size(), bad[0]);

  // 2. Resume from the scratch file.
  std::string scratch = opt.output_path + ".partial";
  std::vector<std::optional<OJson>> done(rows.size());
  size_t resumed = 0;
  {
    std::ifstream s(scratch);
    std::string l;
    while (std::getline(s, l)) {
      OJson e;
      try {
        e = OJson::parse(l);
      } catch (...) {
        continue;  // a line cut by a crash
      }
      if (!e.is_object() || !e.contains("line") || !e.contains("key") || !e.contains("row")) continue;
      int ln = e["line"].get<int>();
      for (size_t i = 0; i < rows.size(); ++i)
        if (rows[i].line == ln && rows[i].key == e["key"].get<std::string>() && !done[i]) {
          done[i] = e["row"];
          ++resumed;
        }
    }
  }
  if (resumed && !opt.quiet)
    std::fprintf(stderr, "gptoss: resuming from %s: %zu of %zu rows already done\n", scratch.c_str(), resumed, rows.size());
  std::FILE* scratch_f = std::fopen(scratch.c_str(), "ab");
  if (!scratch_f) fail_input("{}: cannot write the scratch file: {}", scratch, std::strerror(errno));

  // 3. Generate.
  std::vector<size_t> todo;
  for (size_t i = 0; i < rows.size(); ++i)
    if (!done[i]) todo.push_back(i);
  int workers = opt.concurrency > 0 ? opt.concurrency
                : is_local_engine(cfg.engine) ? int(cfg.engine_params.max_num_seqs)
                                              : int(cfg.remote_params.num_workers);
  workers = std::max(1, std::min<int>(workers, int(todo.size())));
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex mu;
  std::vector<std::string> gen_errors;
  std::vector<char> skipped(rows.size(), 0);
  int64_t prompt_tokens = 0, completion_tokens = 0;
  auto t0 = std::chrono::steady_clock::now();
  ProgressBar bar("generating", todo.size(), "rows");
  if (opt.quiet) ProgressBar::set_enabled(false);
  std::atomic<uint64_t> finished{0};

  auto work = [&] {
    while (!failed) {
      size_t k = next++;
      if (k >= todo.size()) return;
      Row& r = rows[todo[k]];
      std::string where = fmt::format("{}:{}", opt.input_path, r.line);
      ChatEvent done_ev;
      std::string err;
      try {
        auto stream = svc.start_ordered(r.request);
        ChatEvent ev;
        while (stream->next(ev)) {
          if (ev.kind == ChatEvent::Kind::Done || ev.kind == ChatEvent::Kind::Error) done_ev = ev;
        }
        if (done_ev.kind == ChatEvent::Kind::Error) err = done_ev.text;
      } catch (const std::exception& e) {
        err = e.what();
      }
      std::lock_guard<std::mutex> lock(mu);
      if (!err.empty()) {
        gen_errors.push_back(fmt::format("{}: {}", where, err));
        std::fprintf(stderr, "\ngptoss: %s: %s: %s\n", opt.fail_on_error ? "error" : "skipping", where.c_str(), err.c_str());
        if (opt.fail_on_error) failed = true;
        skipped[todo[k]] = 1;
      } else {
        OJson out = r.input;
        out["messages"].push_back(output_message(done_ev.message));
        if (!out.contains("metadata") || !out["metadata"].is_object()) out["metadata"] = OJson::object();
        out["metadata"]["finish_reason"] = done_ev.finish_reason;
        out["metadata"]["usage"] = OJson::parse(done_ev.usage.dump());
        if (!done_ev.text.empty()) out["metadata"]["parse_warning"] = done_ev.text;
        prompt_tokens += done_ev.usage.value("prompt_tokens", int64_t(0));
        completion_tokens += done_ev.usage.value("completion_tokens", int64_t(0));
        OJson entry = {{"line", r.line}, {"key", r.key}, {"row", out}};
        std::string s = entry.dump() + "\n";
        std::fwrite(s.data(), 1, s.size(), scratch_f);
        std::fflush(scratch_f);
        done[todo[k]] = std::move(out);
      }
      bar.set(++finished);
    }
  };
  std::vector<std::thread> threads;
  for (int w = 0; w < workers; ++w) threads.emplace_back(work);
  for (auto& t : threads) t.join();
  bar.finish();
  std::fclose(scratch_f);
  if (failed)
    fail("{}; {} finished rows are kept in {} and a rerun resumes there", gen_errors.front(),
         std::count_if(done.begin(), done.end(), [](const auto& d) { return d.has_value(); }), scratch);

  // 4. Output in input order.
  std::string text;
  size_t written = 0;
  for (size_t i = 0; i < rows.size(); ++i)
    if (done[i]) {
      text += done[i]->dump() + "\n";
      ++written;
    }
  if (fs::path(opt.output_path).has_parent_path()) fs::create_directories(fs::path(opt.output_path).parent_path());
  write_file_atomic(opt.output_path, text);
  std::remove(scratch.c_str());
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!opt.quiet)
    std::fprintf(stderr,
                 "gptoss: wrote %zu rows to %s (%zu bad lines skipped, %zu failed, %zu resumed) in %.1fs: %lld prompt + "
                 "%lld completion tokens, %.1f completion tok/s\n",
                 written, opt.output_path.c_str(), bad.size(), gen_errors.size(), resumed, secs,
                 (long long)prompt_tokens, (long long)completion_tokens, secs > 0 ? double(completion_tokens) / secs : 0.0);
  return 0;
}

}  // namespace gptoss::infer
