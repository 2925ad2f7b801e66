// `gptoss harmony render [--tokens]` and `gptoss harmony parse --tokens 1,2,3 [--role assistant]`.
//
// render: reads one JSON object on stdin with the fields of a shared/data/harmony/cases.jsonl line
//   (system, developer, messages, options {next_turn_role, auto_drop_analysis, drop_last_token}, kind:
//   render_for_completion (default) | render_conversation | render_for_training) and prints the
//   rendering, or with --tokens the token ids comma-separated, with no trailing newline.
// parse: parses completion token ids (from --tokens, else stdin, comma or whitespace separated) and
//   prints the messages as a JSON array of {role, author_name?, channel?, recipient?, content_type?,
//   content}. --role sets the role of a first message whose <|start|>role was part of the prompt;
//   --non-strict turns malformed headers into best-effort messages instead of an error.
// The tokenizer (needed by --tokens and parse) comes from --tokenizer (tokenizer.json or its folder),
// else $GPTOSS_TOKENIZER, else the shared data folder ($GPTOSS_SHARED_DIR or next to the source tree).
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>

#include "cli/command.h"
#include "core/error.h"
#include "harmony/case_json.h"
#include "harmony/harmony.h"
#include "harmony/parser.h"
#include "tokenizer/tokenizer.h"

namespace gptoss::cli {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

struct Options {
  std::string tokenizer;
  bool tokens = false;       // render: print ids
  std::string ids;           // parse: --tokens
  std::string role;          // parse: --role
  bool non_strict = false;   // parse
};

Tokenizer load_tokenizer(const std::string& flag) {
  std::vector<std::string> candidates;
  if (!flag.empty()) candidates.push_back(flag);
  if (const char* e = std::getenv("GPTOSS_TOKENIZER"); e && *e) candidates.push_back(e);
  if (flag.empty()) {
    if (const char* e = std::getenv("GPTOSS_SHARED_DIR"); e && *e)
      candidates.push_back(std::string(e) + "/data/tokenizer/tokenizer.json");
    candidates.push_back(std::string(GPTOSS_SOURCE_DIR) + "/../shared/data/tokenizer/tokenizer.json");
  }
  for (const std::string& c : candidates) {
    if (fs::is_directory(c) && fs::exists(fs::path(c) / "tokenizer.json"))
      return Tokenizer::from_model_dir(c);
    if (fs::is_regular_file(c)) return Tokenizer::from_file(c);
    if (!flag.empty() && c == flag)
      fail_input("--tokenizer {}: no such file or folder with tokenizer.json; pass the path of a "
                 "tokenizer.json or of a model folder", c);
  }
  fail_input("harmony: no tokenizer found; pass --tokenizer PATH (tokenizer.json or a model folder) or set "
             "GPTOSS_TOKENIZER");
}

std::string join_ids(const std::vector<int>& ids) {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ',';
    out += std::to_string(ids[i]);
  }
  return out;
}

int run_render(const Options& o) {
  std::string input((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  Json obj;
  try {
    obj = Json::parse(input);
  } catch (const std::exception& e) {
    fail_input("harmony render: stdin is not one JSON object ({}); expected the fields of a cases.jsonl line",
               e.what());
  }
  harmony::Conversation conv = harmony::conversation_from_json(obj);
  Json opts = obj.contains("options") && obj["options"].is_object() ? obj["options"] : Json::object();
  harmony::RenderOptions ro;
  if (opts.contains("auto_drop_analysis") && opts["auto_drop_analysis"].is_boolean())
    ro.auto_drop_analysis = opts["auto_drop_analysis"].get<bool>();
  std::string kind = obj.contains("kind") && obj["kind"].is_string() ? obj["kind"].get<std::string>()
                                                                     : "render_for_completion";
  std::vector<harmony::Piece> pieces;
  if (kind == "render_for_completion") {
    std::string next = opts.contains("next_turn_role") && opts["next_turn_role"].is_string()
                           ? opts["next_turn_role"].get<std::string>()
                           : "assistant";
    auto role = harmony::role_from_name(next);
    if (!role) fail_input("options.next_turn_role is '{}'; expected user, assistant, system, developer or tool", next);
    pieces = harmony::render_for_completion_pieces(conv, *role, ro);
  } else if (kind == "render_conversation") {
    pieces = harmony::render_conversation_pieces(conv, ro);
  } else if (kind == "render_for_training") {
    pieces = harmony::render_for_training_pieces(conv, ro);
  } else {
    fail_input("kind is '{}'; expected render_for_completion, render_conversation or render_for_training", kind);
  }
  bool drop_last = opts.contains("drop_last_token") && opts["drop_last_token"].is_boolean() &&
                   opts["drop_last_token"].get<bool>();
  std::string out;
  if (o.tokens || (drop_last && !pieces.empty() && pieces.back().special < 0)) {
    Tokenizer tok = load_tokenizer(o.tokenizer);
    std::vector<int> ids = harmony::pieces_to_tokens(pieces, tok);
    if (drop_last && !ids.empty()) ids.pop_back();
    out = o.tokens ? join_ids(ids) : tok.decode(ids);
  } else {
    if (drop_last && !pieces.empty()) pieces.pop_back();
    out = harmony::pieces_to_text(pieces);
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fflush(stdout);
  return 0;
}

int run_parse(const Options& o) {
  std::string text = o.ids;
  if (text.empty()) text.assign((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  for (char& c : text)
    if (c == ' ' || c == '\n' || c == '\t' || c == '\r') c = ',';
  std::vector<int> ids = parse_id_list(text, "--tokens");
  harmony::ParserOptions po;
  po.strict = !o.non_strict;
  if (!o.role.empty()) {
    po.role = harmony::role_from_name(o.role);
    if (!po.role) fail_input("--role is '{}'; expected user, assistant, system, developer or tool", o.role);
  }
  Tokenizer tok = load_tokenizer(o.tokenizer);
  std::vector<harmony::Message> ms;
  try {
    ms = harmony::parse_completion(tok, ids, po);
  } catch (const harmony::ParseError& e) {
    fail_input("harmony parse: {} (malformed harmony; --non-strict recovers missing <|message|> tokens)", e.what());
  }
  std::string out = harmony::messages_to_json(ms).dump(-1, ' ', false, Json::error_handler_t::replace);
  std::printf("%s\n", out.c_str());
  return 0;
}

const Registrar reg{"harmony", "Render conversations to harmony text/tokens, parse completions",
                    [](CLI::App& app) -> Runner {
                      auto opts = std::make_shared<Options>();
                      app.require_subcommand(1);
                      CLI::App* render = app.add_subcommand("render", "Render one JSON conversation read from stdin");
                      render->add_flag("--tokens", opts->tokens, "print token ids instead of text");
                      render->add_option("--tokenizer", opts->tokenizer, "tokenizer.json or a model folder");
                      CLI::App* parse = app.add_subcommand("parse", "Parse completion token ids into messages");
                      parse->add_option("--tokens", opts->ids, "comma-separated token ids (default: stdin)");
                      parse->add_option("--role", opts->role, "role of the first message when its header was in the prompt");
                      parse->add_flag("--non-strict", opts->non_strict, "best-effort recovery of malformed headers");
                      parse->add_option("--tokenizer", opts->tokenizer, "tokenizer.json or a model folder");
                      return [opts, render] { return render->parsed() ? run_render(*opts) : run_parse(*opts); };
                    }};

}  // namespace
}  // namespace gptoss::cli
