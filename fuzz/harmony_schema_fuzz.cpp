// libFuzzer target: the JSON-Schema -> TypeScript converter, the renderer fed from JSON, and the
// OpenAI chat -> harmony mapping, on arbitrary JSON.
//
// Any JSON value is a valid input: the converter must return (never throw, never recurse without
// bound); conversation_from_json / chat_to_harmony may only fail with gptoss::InputError; whatever
// renders must render to text and tokens, and the text must equal the decoded tokens.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include <nlohmann/json.hpp>

#include "api/chat_mapping.h"
#include "core/error.h"
#include "fuzz_common.h"
#include "harmony/case_json.h"
#include "harmony/harmony.h"

using namespace gptoss;
using Json = nlohmann::ordered_json;

namespace {

void check_render(const harmony::Conversation& conv) {
  std::vector<harmony::Piece> pieces = harmony::render_for_completion_pieces(conv, harmony::Role::kAssistant);
  std::string text = harmony::pieces_to_text(pieces);
  std::vector<int> ids = harmony::pieces_to_tokens(pieces, fuzz::tokenizer());
  if (fuzz::tokenizer().decode(ids) != text) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Json j = Json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;

  // 1. The converter on the value itself, as a whole parameters schema and nested in a property.
  std::string ts = harmony::json_schema_to_typescript(j);
  (void)ts;
  harmony::DeveloperContent dev;
  dev.with_function_tools({{"f", "fuzzed", j}, {"g", "", Json{{"type", "object"}, {"properties", {{"p", j}}}}}});
  harmony::Conversation conv{{harmony::Message::system_message(harmony::SystemContent::defaults()),
                              harmony::Message::developer_message(dev)}};
  check_render(conv);

  // 2. As a cases.jsonl-style conversation.
  try {
    check_render(harmony::conversation_from_json(j));
  } catch (const InputError&) {
  }

  // 3. As an OpenAI chat request.
  try {
    check_render(chat_to_harmony(j, {.current_date = "2025-01-01", .model_identity = std::nullopt}).conversation);
  } catch (const InputError&) {
  }
  return 0;
}
