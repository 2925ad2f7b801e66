// Harmony renderer: conversations -> pieces (special tokens + ordinary text) -> text or token ids.
#include <algorithm>

#include "core/error.h"
#include "harmony/harmony.h"
#include "tokenizer/tokenizer.h"

namespace gptoss::harmony {

std::string_view role_name(Role r) {
  switch (r) {
    case Role::kUser: return "user";
    case Role::kAssistant: return "assistant";
    case Role::kSystem: return "system";
    case Role::kDeveloper: return "developer";
    case Role::kTool: return "tool";
  }
  return "user";
}

std::optional<Role> role_from_name(std::string_view name) {
  for (Role r : {Role::kUser, Role::kAssistant, Role::kSystem, Role::kDeveloper, Role::kTool})
    if (role_name(r) == name) return r;
  return std::nullopt;
}

std::string_view effort_name(ReasoningEffort e) {
  switch (e) {
    case ReasoningEffort::kLow: return "low";
    case ReasoningEffort::kMedium: return "medium";
    case ReasoningEffort::kHigh: return "high";
  }
  return "medium";
}

std::optional<ReasoningEffort> effort_from_name(std::string_view name) {
  for (ReasoningEffort e : {ReasoningEffort::kLow, ReasoningEffort::kMedium, ReasoningEffort::kHigh})
    if (effort_name(e) == name) return e;
  return std::nullopt;
}

SystemContent SystemContent::defaults() {
  SystemContent s;
  s.model_identity = "You are ChatGPT, a large language model trained by OpenAI.";
  s.reasoning_effort = ReasoningEffort::kMedium;
  s.knowledge_cutoff = "2024-06";
  s.valid_channels = {"analysis", "commentary", "final"};
  s.channel_required = true;
  return s;
}

DeveloperContent& DeveloperContent::with_function_tools(std::vector<ToolDescription> fns) {
  ToolNamespace ns;
  ns.name = "functions";
  ns.tools = std::move(fns);
  tools["functions"] = std::move(ns);
  return *this;
}

bool Message::operator==(const Message& o) const {
  return author.role == o.author.role && author.name == o.author.name && recipient == o.recipient &&
         channel == o.channel && content_type == o.content_type && content == o.content;
}

std::string_view special_token_text(int id) {
  switch (id) {
    case tok::kStart: return "<|start|>";
    case tok::kEnd: return "<|end|>";
    case tok::kMessage: return "<|message|>";
    case tok::kChannel: return "<|channel|>";
    case tok::kConstrain: return "<|constrain|>";
    case tok::kReturn: return "<|return|>";
    case tok::kCall: return "<|call|>";
    case tok::kEndOfPrompt: return "<|endofprompt|>";
    case tok::kStartOfText: return "<|startoftext|>";
    case tok::kEndOfText: return "<|endoftext|>";
  }
  return "";
}

namespace {

constexpr std::string_view kConstrainText = "<|constrain|>";

// Rust's str::lines(): split on '\n', drop one trailing '\r' per line, no final empty line.
std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = s.find('\n', i);
    if (j == std::string::npos) j = s.size();
    std::string line = s.substr(i, j - i);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    out.push_back(std::move(line));
    i = j + 1;
  }
  return out;
}

std::string join(const std::vector<std::string>& parts, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i) out += sep;
    out += parts[i];
  }
  return out;
}

struct Builder {
  std::vector<Piece> pieces;
  void special(int id) { pieces.push_back({id, std::string(special_token_text(id))}); }
  void text(std::string s) {
    if (!s.empty()) pieces.push_back({-1, std::move(s)});
  }
};

std::string system_text(const SystemContent& sys, bool has_function_tools) {
  std::vector<std::string> sections;
  std::vector<std::string> top;
  if (sys.model_identity) top.push_back(*sys.model_identity);
  if (sys.knowledge_cutoff) top.push_back("Knowledge cutoff: " + *sys.knowledge_cutoff);
  if (sys.current_date) top.push_back("Current date: " + *sys.current_date);
  if (!top.empty()) sections.push_back(join(top, "\n"));
  if (sys.reasoning_effort) sections.push_back("Reasoning: " + std::string(effort_name(*sys.reasoning_effort)));
  if (!sys.tools.empty()) sections.push_back(render_tools_section(sys.tools));
  if (!sys.valid_channels.empty()) {
    std::string ch = "# Valid channels: " + join(sys.valid_channels, ", ") + ".";
    if (sys.channel_required) ch += " Channel must be included for every message.";
    if (has_function_tools) ch += "\nCalls to these tools must go to the commentary channel: 'functions'.";
    sections.push_back(std::move(ch));
  }
  return join(sections, "\n\n");
}

std::string developer_text(const DeveloperContent& dev) {
  std::vector<std::string> sections;
  if (dev.instructions) {
    sections.push_back("# Instructions");
    sections.push_back(*dev.instructions);
  }
  if (!dev.tools.empty()) sections.push_back(render_tools_section(dev.tools));
  return join(sections, "\n\n");
}

void render_message_into(const Message& msg, size_t index, bool has_function_tools, Builder& b) {
  b.special(tok::kStart);
  if (msg.author.role == Role::kTool) {
    if (!msg.author.name || msg.author.name->empty())
      fail_input("harmony: messages[{}] is a tool message without an author name; set author name to the "
                 "tool that produced it (e.g. functions.get_weather)", index);
    b.text(*msg.author.name);
  } else {
    b.text(std::string(role_name(msg.author.role)));
    if (msg.author.name) b.text(":" + *msg.author.name);
  }
  if (msg.recipient && *msg.recipient != "all") b.text(" to=" + *msg.recipient);
  if (msg.channel) {
    b.special(tok::kChannel);
    b.text(*msg.channel);
  }
  if (msg.content_type) {
    const std::string& ct = *msg.content_type;
    if (ct.starts_with(kConstrainText)) {
      // <|constrain|> must be its special token, so the space and the rest are separate pieces.
      b.text(" ");
      b.special(tok::kConstrain);
      b.text(ct.substr(kConstrainText.size()));
    } else {
      b.text(" " + ct);
    }
  }
  b.special(tok::kMessage);
  if (msg.system) {
    if (msg.author.role != Role::kSystem)
      fail_input("harmony: messages[{}] carries system content but its role is {}; only system messages may",
                 index, role_name(msg.author.role));
    b.text(system_text(*msg.system, has_function_tools));
  }
  if (msg.developer) {
    if (msg.author.role != Role::kDeveloper)
      fail_input("harmony: messages[{}] carries developer content but its role is {}; only developer "
                 "messages may", index, role_name(msg.author.role));
    b.text(developer_text(*msg.developer));
  }
  b.text(msg.content);
  b.special(msg.author.role == Role::kAssistant && msg.recipient ? tok::kCall : tok::kEnd);
}

bool conversation_has_function_tools(const Conversation& conv) {
  for (const Message& m : conv.messages) {
    if (!m.developer) continue;
    auto it = m.developer->tools.find("functions");
    if (it != m.developer->tools.end() && !it->second.tools.empty()) return true;
  }
  return false;
}

void render_conversation_into(const Conversation& conv, const RenderOptions& opts, Builder& b) {
  const auto& msgs = conv.messages;
  bool has_fn = conversation_has_function_tools(conv);
  bool last_assistant_is_final = false;
  for (auto it = msgs.rbegin(); it != msgs.rend(); ++it) {
    if (it->author.role == Role::kAssistant) {
      last_assistant_is_final = it->channel == "final";
      break;
    }
  }
  bool drop = opts.auto_drop_analysis && last_assistant_is_final;
  size_t first_final = msgs.size();
  for (size_t i = 0; i < msgs.size(); ++i)
    if (msgs[i].channel == "final") {
      first_final = i;
      break;
    }
  for (size_t i = 0; i < msgs.size(); ++i) {
    if (drop && i < first_final && msgs[i].channel == "analysis") continue;
    render_message_into(msgs[i], i, has_fn, b);
  }
}

}  // namespace

std::string render_tools_section(const ToolNamespaces& tools) {
  std::vector<std::string> sections{"# Tools"};
  for (const auto& [key, ns] : tools) {
    std::vector<std::string> lines;
    lines.push_back("## " + ns.name + "\n");
    if (ns.description)
      for (const std::string& line : split_lines(*ns.description))
        lines.push_back(ns.tools.empty() ? line : "// " + line);
    if (!ns.tools.empty()) {
      lines.push_back("namespace " + ns.name + " {\n");
      for (const ToolDescription& t : ns.tools) {
        for (const std::string& line : split_lines(t.description)) lines.push_back("// " + line);
        if (t.parameters)
          lines.push_back("type " + t.name + " = (_: " + json_schema_to_typescript(*t.parameters, "") +
                          ") => any;\n");
        else
          lines.push_back("type " + t.name + " = () => any;\n");
      }
      lines.push_back("} // namespace " + ns.name);
    }
    sections.push_back(join(lines, "\n"));
  }
  return join(sections, "\n\n");
}

std::vector<Piece> render_message_pieces(const Message& msg) {
  Builder b;
  render_message_into(msg, 0, false, b);
  return std::move(b.pieces);
}

std::vector<Piece> render_conversation_pieces(const Conversation& conv, const RenderOptions& opts) {
  Builder b;
  render_conversation_into(conv, opts, b);
  return std::move(b.pieces);
}

std::vector<Piece> render_for_completion_pieces(const Conversation& conv, Role next_role,
                                                const RenderOptions& opts) {
  Builder b;
  render_conversation_into(conv, opts, b);
  b.special(tok::kStart);
  b.text(std::string(role_name(next_role)));
  return std::move(b.pieces);
}

std::vector<Piece> render_for_training_pieces(const Conversation& conv, const RenderOptions& opts) {
  Builder b;
  render_conversation_into(conv, opts, b);
  if (!conv.messages.empty()) {
    const Message& last = conv.messages.back();
    if (last.author.role == Role::kAssistant && last.channel == "final" && !b.pieces.empty() &&
        b.pieces.back().special >= 0) {
      b.pieces.back() = {tok::kReturn, std::string(special_token_text(tok::kReturn))};
    }
  }
  return std::move(b.pieces);
}

std::string pieces_to_text(const std::vector<Piece>& pieces) {
  std::string out;
  for (const Piece& p : pieces) out += p.text;
  return out;
}

std::vector<int> pieces_to_tokens(const std::vector<Piece>& pieces, const Tokenizer& tok) {
  std::vector<int> out;
  for (const Piece& p : pieces) {
    if (p.special >= 0) {
      out.push_back(p.special);
    } else {
      std::vector<int> ids = tok.encode(p.text);
      out.insert(out.end(), ids.begin(), ids.end());
    }
  }
  return out;
}

std::string render_conversation(const Conversation& conv, const RenderOptions& opts) {
  return pieces_to_text(render_conversation_pieces(conv, opts));
}
std::string render_for_completion(const Conversation& conv, Role next_role, const RenderOptions& opts) {
  return pieces_to_text(render_for_completion_pieces(conv, next_role, opts));
}
std::string render_for_training(const Conversation& conv, const RenderOptions& opts) {
  return pieces_to_text(render_for_training_pieces(conv, opts));
}
std::vector<int> render_conversation_tokens(const Conversation& conv, const Tokenizer& tok,
                                            const RenderOptions& opts) {
  return pieces_to_tokens(render_conversation_pieces(conv, opts), tok);
}
std::vector<int> render_for_completion_tokens(const Conversation& conv, Role next_role, const Tokenizer& tok,
                                              const RenderOptions& opts) {
  return pieces_to_tokens(render_for_completion_pieces(conv, next_role, opts), tok);
}
std::vector<int> render_for_training_tokens(const Conversation& conv, const Tokenizer& tok,
                                            const RenderOptions& opts) {
  return pieces_to_tokens(render_for_training_pieces(conv, opts), tok);
}

}  // namespace gptoss::harmony
