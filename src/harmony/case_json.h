// JSON form of harmony conversations and messages, as used by `gptoss harmony render|parse` and the
// conformance cases (shared/data/harmony/cases.jsonl).
//
// Input object (every field optional):
//   system:    null | {model_identity, knowledge_cutoff, current_date, reasoning_effort ("low"|"medium"|
//              "high"), required_channels: [..], tools: null | {namespace: [tool]},
//              tool_namespace_descriptions: {namespace: text}}  -> a system message first
//   developer: null | {instructions, function_tools: null | [tool]}  -> a developer message second
//   messages:  [{role: user|assistant|tool|system|developer, author_name, channel, recipient,
//               content_type, content}]
//   tool = {name, description, parameters?} (parameters: a JSON Schema, key order kept)
// Missing or null fields of `system` are absent from the rendering (no defaults are filled in).
// Errors throw gptoss::InputError naming the field path (e.g. "messages[2].role").
#pragma once

#include <nlohmann/json.hpp>

#include "harmony/harmony.h"

namespace gptoss::harmony {

Conversation conversation_from_json(const nlohmann::ordered_json& obj);
Message message_from_json(const nlohmann::ordered_json& m, const std::string& where);

// {role, author_name?, channel?, recipient?, content_type?, content}: only the fields that are set.
nlohmann::ordered_json message_to_json(const Message& m);
nlohmann::ordered_json messages_to_json(const std::vector<Message>& ms);

}  // namespace gptoss::harmony
