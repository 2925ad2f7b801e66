// JSON (de)serialisation for the OpenAI routes: request validation and normalisation, and the
// conversion of /v1/responses bodies to chat requests. No HTTP here.
//
// Contract:
//  - normalise_chat_request() checks every field the server documents (docs/api.md) and throws ApiError
//    400 naming the field (`param`) for a wrong type or value. It returns the request to hand to the
//    ChatService: `reasoning: {effort}` becomes `reasoning_effort`; with `emulate` (local engines, which
//    have no constrained decoding) `response_format` json_object/json_schema and `tool_choice`
//    "required"/named become developer instructions (named also keeps only that tool), and the
//    original fields are removed. Remote engines get them unchanged.
//  - responses_to_chat() maps a /v1/responses body (input text or items, instructions,
//    reasoning.effort, flat function tools, max_output_tokens, ...) to a chat request.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace gptoss::server {

using OJson = nlohmann::ordered_json;

struct StreamOptions {
  bool stream = false;
  bool include_usage = false;
};

OJson normalise_chat_request(const OJson& body, bool emulate, StreamOptions& stream);
OJson responses_to_chat(const OJson& body, StreamOptions& stream);

// Helpers shared with the completions route.
void check_number(const OJson& body, const char* key, double lo, double hi, bool lo_open = false);
void check_positive_int(const OJson& body, const char* key);

}  // namespace gptoss::server
