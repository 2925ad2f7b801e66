// gptoss tokenize / detokenize: text <-> o200k_harmony token ids.
//
//   gptoss tokenize (--model DIR | --tokenizer FILE) [--allow-special] (TEXT | --file F | --jsonl)
//   gptoss detokenize (--model DIR | --tokenizer FILE) (IDS | --file F | --jsonl)
//
// tokenize prints ids comma-separated; with --jsonl it reads {"text": ...} lines on stdin and writes
// {"ids": [...]} lines in the same order. detokenize prints the decoded bytes; with --jsonl it reads
// {"ids": [...]} lines and writes {"text": ...} (ill-formed UTF-8 from partial tokens becomes U+FFFD).
// Input that is not UTF-8 is an error naming the source and the byte offset.
#include <charconv>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace gptoss::cli {
namespace {

struct Options {
  std::string model, tokenizer, file, input;
  bool allow_special = false, jsonl = false;
  bool has_input = false;  // TEXT / IDS given (possibly empty)
};

Tokenizer load(const Options& o) {
  if (!o.model.empty() && !o.tokenizer.empty())
    fail_input("--model and --tokenizer are both given; pass one of them");
  if (!o.tokenizer.empty()) return Tokenizer::from_file(o.tokenizer);
  if (!o.model.empty()) return Tokenizer::from_model_dir(o.model);
  fail_input("no tokenizer given; pass --model DIR (with DIR/tokenizer.json) or --tokenizer FILE");
}

// Exactly one of TEXT, --file, --jsonl.
void check_one_input(const Options& o, const char* positional) {
  int n = int(o.has_input) + int(!o.file.empty()) + int(o.jsonl);
  if (n != 1)
    fail_input("{}; pass exactly one of {}, --file F or --jsonl",
               n == 0 ? "no input given" : "more than one input given", positional);
}

void check_utf8(std::string_view text, const std::string& source) {
  if (size_t bad = utf8::first_invalid(text); bad != utf8::kValid)
    fail_input("{}: invalid UTF-8 at byte offset {} (byte 0x{:02x}); the input must be UTF-8 text", source, bad,
               uint8_t(text[bad]));
}

void append_ids(std::string& out, const std::vector<int>& ids) {
  char buf[16];
  for (size_t k = 0; k < ids.size(); ++k) {
    if (k) out += ',';
    auto r = std::to_chars(buf, buf + sizeof buf, ids[k]);
    out.append(buf, r.ptr);
  }
}

void write_stdout(const std::string& s) {
  if (std::fwrite(s.data(), 1, s.size(), stdout) != s.size()) fail("writing to stdout failed");
}

// Calls f(line, line_number) for each non-empty line of stdin, split on '\n' only (a JSON line may hold
// raw U+2028 / U+0085).
template <typename F>
void for_each_stdin_line(F&& f) {
  std::string line;
  size_t number = 0;
  while (std::getline(std::cin, line)) {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    f(line, number);
  }
}

nlohmann::json parse_line(const std::string& line, size_t number) {
  check_utf8(line, fmt::format("stdin line {}", number));
  auto j = nlohmann::json::parse(line, nullptr, false);
  if (j.is_discarded()) fail_input("stdin line {}: not valid JSON; expected one JSON object a line", number);
  return j;
}

int run_tokenize(const Options& o) {
  check_one_input(o, "TEXT");
  const Tokenizer tok = load(o);
  auto encode = [&](std::string_view text) {
    return o.allow_special ? tok.encode_with_special(text) : tok.encode(text);
  };
  std::string out;
  if (o.jsonl) {
    for_each_stdin_line([&](const std::string& line, size_t number) {
      auto j = parse_line(line, number);
      if (!j.is_object() || !j.contains("text") || !j["text"].is_string())
        fail_input("stdin line {}: expected an object with a string \"text\", got {}", number,
                   j.dump().substr(0, 80));
      out += "{\"ids\":[";
      append_ids(out, encode(j["text"].get_ref<const std::string&>()));
      out += "]}\n";
      if (out.size() > (1 << 16)) {
        write_stdout(out);
        out.clear();
      }
    });
  } else {
    std::string text = o.has_input ? o.input : read_file(o.file);
    check_utf8(text, o.has_input ? std::string("TEXT argument") : "--file " + o.file);
    append_ids(out, encode(text));
    out += '\n';
  }
  write_stdout(out);
  return 0;
}

int run_detokenize(const Options& o) {
  check_one_input(o, "IDS");
  const Tokenizer tok = load(o);
  if (o.jsonl) {
    std::string out;
    for_each_stdin_line([&](const std::string& line, size_t number) {
      auto j = parse_line(line, number);
      if (!j.is_object() || !j.contains("ids") || !j["ids"].is_array())
        fail_input("stdin line {}: expected an object with an array \"ids\", got {}", number,
                   j.dump().substr(0, 80));
      std::vector<int> ids;
      for (const auto& v : j["ids"]) {
        if (!v.is_number_integer() || v.get<long long>() < 0 || v.get<long long>() >= tok.vocab_size())
          fail_input("stdin line {}: {} is not a token id; expected integers 0..{}", number, v.dump(),
                     tok.vocab_size() - 1);
        ids.push_back(v.get<int>());
      }
      out += nlohmann::json{{"text", utf8::replace_invalid(tok.decode(ids))}}.dump();
      out += '\n';
      if (out.size() > (1 << 16)) {
        write_stdout(out);
        out.clear();
      }
    });
    write_stdout(out);
    return 0;
  }
  std::string list = o.has_input ? o.input : read_file(o.file);
  for (char& c : list)
    if (c == '\n' || c == '\r') c = ',';
  auto ids = parse_id_list(list, o.has_input ? std::string("IDS argument") : "--file " + o.file);
  write_stdout(tok.decode(ids));
  return 0;
}

void add_common(CLI::App& app, Options& o) {
  app.add_option("--model", o.model, "model directory holding tokenizer.json");
  app.add_option("--tokenizer", o.tokenizer, "path of a tokenizer.json");
  app.add_option("--file", o.file, "read the input from this file");
  app.add_flag("--jsonl", o.jsonl, "read JSON lines on stdin, write JSON lines on stdout");
}

const Registrar tokenize_reg{
    "tokenize", "Encode text to o200k_harmony token ids (comma-separated)", [](CLI::App& app) -> Runner {
      auto o = std::make_shared<Options>();
      add_common(app, *o);
      app.add_flag("--allow-special", o->allow_special, "recognise special-token text such as <|start|>");
      CLI::Option* text = app.add_option("text", o->input, "text to encode");
      return [o, text] {
        o->has_input = text->count() > 0;
        return run_tokenize(*o);
      };
    }};

const Registrar detokenize_reg{
    "detokenize", "Decode comma-separated token ids to text", [](CLI::App& app) -> Runner {
      auto o = std::make_shared<Options>();
      add_common(app, *o);
      CLI::Option* ids = app.add_option("ids", o->input, "comma-separated token ids");
      return [o, ids] {
        o->has_input = ids->count() > 0;
        return run_detokenize(*o);
      };
    }};

}  // namespace
}  // namespace gptoss::cli
