// Harmony: the chat format of gpt-oss (openai/harmony v0.0.8), rendering side.
//
// A Conversation is a list of Messages. The first message is usually a system message carrying
// SystemContent (identity, knowledge cutoff, current date, reasoning effort, valid channels, built-in
// tool namespaces such as browser/python), then optionally a developer message carrying
// DeveloperContent (instructions and the `functions` tool namespace), then user / assistant / tool
// messages with plain text content.
//
// Rendering contract (byte-identical to OpenAI's harmony library):
//  - Every message renders as
//      <|start|>{header}<|message|>{content}<|end|>
//    where header = role (or, for tool messages, only the author name; other roles append ":name"),
//    then " to={recipient}" (unless recipient is "all"), then <|channel|>{channel}, then
//    " {content_type}". A content type that starts with "<|constrain|>" renders as " ", the special
//    token, then the rest. An assistant message with a recipient ends in <|call|> instead of <|end|>.
//  - render_for_completion appends <|start|>{next role}.
//  - auto_drop_analysis: when the last assistant message is on the `final` channel, messages on the
//    `analysis` channel that come before the FIRST `final` message are dropped (upstream's rule for
//    not feeding old chain-of-thought back to the model).
//  - render_for_training: as render_conversation, but when the last message is an assistant `final`
//    message its closing token becomes <|return|>.
//  - Rendering is text-first: a sequence of Pieces (a special token or a run of ordinary text).
//    Tokens are the special ids plus each text piece encoded on its own with ordinary BPE, exactly as
//    upstream does; the string form is the concatenation with special tokens written as their text.
//  - Errors (a tool message without an author name, SystemContent in a non-system message, ...)
//    throw gptoss::InputError naming the message index and the fix.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace gptoss {
class Tokenizer;
}

namespace gptoss::harmony {

enum class Role { kUser, kAssistant, kSystem, kDeveloper, kTool };
std::string_view role_name(Role r);                          // "user", "assistant", ...
std::optional<Role> role_from_name(std::string_view name);   // exact match, else nullopt

enum class ReasoningEffort { kLow, kMedium, kHigh };
std::string_view effort_name(ReasoningEffort e);                        // "low" | "medium" | "high"
std::optional<ReasoningEffort> effort_from_name(std::string_view name);  // exact match

// One function of a tool namespace. `parameters` is a JSON Schema; its key order is kept (properties
// render in the order given), which is why it is an ordered_json.
struct ToolDescription {
  std::string name;
  std::string description;                        // "" writes no comment line
  std::optional<nlohmann::ordered_json> parameters;  // nullopt renders `() => any`
};

struct ToolNamespace {
  std::string name;                        // "functions", "browser", "python", ...
  std::optional<std::string> description;  // lines become "// " comments (bare when no tools)
  std::vector<ToolDescription> tools;
};

// Namespaces keyed (and therefore rendered) in sorted name order, as upstream's BTreeMap.
using ToolNamespaces = std::map<std::string, ToolNamespace>;

struct SystemContent {
  std::optional<std::string> model_identity;
  std::optional<ReasoningEffort> reasoning_effort;
  std::optional<std::string> knowledge_cutoff;
  std::optional<std::string> current_date;       // "Current date: ..." line; callers pass today's date
  std::vector<std::string> valid_channels;       // empty: no "# Valid channels" line
  bool channel_required = true;
  ToolNamespaces tools;                           // built-in tools (browser, python)

  // Upstream SystemContent.new(): the ChatGPT identity, cutoff 2024-06, medium effort, channels
  // analysis/commentary/final (required), no date, no tools.
  static SystemContent defaults();
};

struct DeveloperContent {
  std::optional<std::string> instructions;
  ToolNamespaces tools;

  // Adds (or replaces) the `functions` namespace, as upstream with_function_tools().
  DeveloperContent& with_function_tools(std::vector<ToolDescription> fns);
};

struct Author {
  Role role = Role::kUser;
  std::optional<std::string> name;  // tool messages: "functions.get_weather", "browser.search", ...
};

struct Message {
  Author author;
  std::optional<std::string> recipient;     // "functions.get_weather", "assistant", ...
  std::optional<std::string> channel;       // "analysis" | "commentary" | "final" | ...
  std::optional<std::string> content_type;  // "<|constrain|>json", "json", "code", ...
  std::string content;                      // text content (rendered after system/developer content)
  std::optional<SystemContent> system;      // only in system messages
  std::optional<DeveloperContent> developer;  // only in developer messages

  static Message text(Role role, std::string content) {
    Message m;
    m.author.role = role;
    m.content = std::move(content);
    return m;
  }
  static Message system_message(SystemContent s) {
    Message m;
    m.author.role = Role::kSystem;
    m.system = std::move(s);
    return m;
  }
  static Message developer_message(DeveloperContent d) {
    Message m;
    m.author.role = Role::kDeveloper;
    m.developer = std::move(d);
    return m;
  }
  bool operator==(const Message& o) const;  // compares header fields and text content only
};

struct Conversation {
  std::vector<Message> messages;
};

struct RenderOptions {
  bool auto_drop_analysis = true;  // upstream Python's default
};

// A rendered piece: a special token (id >= 0, `text` holds its literal form) or ordinary text.
struct Piece {
  int special = -1;
  std::string text;
};

// The literal text of the harmony special tokens used by the renderer ("<|start|>" for tok::kStart).
std::string_view special_token_text(int id);

std::vector<Piece> render_conversation_pieces(const Conversation& conv, const RenderOptions& opts = {});
std::vector<Piece> render_for_completion_pieces(const Conversation& conv, Role next_role,
                                                const RenderOptions& opts = {});
std::vector<Piece> render_for_training_pieces(const Conversation& conv, const RenderOptions& opts = {});
// One message on its own (no conversation-level context: the system message never gets the
// "Calls to these tools" line).
std::vector<Piece> render_message_pieces(const Message& msg);

std::string pieces_to_text(const std::vector<Piece>& pieces);
std::vector<int> pieces_to_tokens(const std::vector<Piece>& pieces, const Tokenizer& tok);

// Convenience wrappers.
std::string render_conversation(const Conversation& conv, const RenderOptions& opts = {});
std::string render_for_completion(const Conversation& conv, Role next_role, const RenderOptions& opts = {});
std::string render_for_training(const Conversation& conv, const RenderOptions& opts = {});
std::vector<int> render_conversation_tokens(const Conversation& conv, const Tokenizer& tok,
                                            const RenderOptions& opts = {});
std::vector<int> render_for_completion_tokens(const Conversation& conv, Role next_role, const Tokenizer& tok,
                                              const RenderOptions& opts = {});
std::vector<int> render_for_training_tokens(const Conversation& conv, const Tokenizer& tok,
                                            const RenderOptions& opts = {});

// The text of the `# Tools` section for the given namespaces (upstream template_tools_section).
std::string render_tools_section(const ToolNamespaces& tools);

// JSON Schema -> harmony's TypeScript-like type (upstream json_schema_to_typescript). `indent` is
// the indentation of the enclosing property list ("" at the top level). Total: any JSON value is
// accepted (non-objects and unknown shapes render as `any`), never throws.
std::string json_schema_to_typescript(const nlohmann::ordered_json& schema, const std::string& indent = "");

}  // namespace gptoss::harmony
