// Conformance: every case of shared/data/harmony/cases.jsonl (openai/harmony v0.0.8 behaviour).
#include <gtest/gtest.h>

#include <sstream>

#include "harmony/case_json.h"
#include "harmony/harmony.h"
#include "harmony/parser.h"
#include "harmony_test_util.h"

namespace gptoss::harmony {
namespace {

using Json = nlohmann::ordered_json;
using namespace gptoss::harmony::testing;

std::vector<Json> cases_of(bool render) {
  std::vector<Json> out;
  for (Json& c : load_cases()) {
    std::string kind = c["kind"];
    bool is_render = kind.starts_with("render");
    if (is_render == render) out.push_back(std::move(c));
  }
  return out;
}

std::string case_name(const ::testing::TestParamInfo<Json>& info) { return info.param["name"].get<std::string>(); }

RenderOptions render_options(const Json& c) {
  RenderOptions o;
  const Json& opts = c["options"];
  if (opts.contains("auto_drop_analysis")) o.auto_drop_analysis = opts["auto_drop_analysis"].get<bool>();
  return o;
}

std::vector<Piece> render_case(const Json& c) {
  Conversation conv = conversation_from_json(c);
  std::string kind = c["kind"];
  RenderOptions o = render_options(c);
  if (kind == "render_for_completion") {
    auto role = role_from_name(c["options"]["next_turn_role"].get<std::string>());
    EXPECT_TRUE(role.has_value());
    return render_for_completion_pieces(conv, *role, o);
  }
  if (kind == "render_for_training") return render_for_training_pieces(conv, o);
  return render_conversation_pieces(conv, o);
}

std::string expected_render_text(const Json& c) {
  if (c["expected_file"].is_string())
    return rstrip(read_text(harmony_dir() + "/expected/" + c["expected_file"].get<std::string>()));
  return c["expected_text"].get<std::string>();
}

class RenderCase : public ::testing::TestWithParam<Json> {};

TEST_P(RenderCase, TextIsByteExact) {
  const Json& c = GetParam();
  std::string got = rstrip(pieces_to_text(render_case(c)));
  std::string want = expected_render_text(c);
  if (c["options"].value("drop_last_token", false)) GTEST_SKIP() << "compared as tokens";
  EXPECT_EQ(got, want);
}

TEST_P(RenderCase, TokensMatchEncodingWithSpecials) {
  const Json& c = GetParam();
  std::vector<int> got = pieces_to_tokens(render_case(c), tokenizer());
  std::vector<int> want = tokenizer().encode_with_special(expected_render_text(c));
  if (c["options"].value("drop_last_token", false)) {
    ASSERT_FALSE(got.empty());
    got.pop_back();
  }
  // Every case is token-exact (the README checked that piecewise encoding equals whole-text encoding).
  EXPECT_EQ(got, want);
  EXPECT_EQ(tokenizer().decode(got), expected_render_text(c));
}

INSTANTIATE_TEST_SUITE_P(Cases, RenderCase, ::testing::ValuesIn(cases_of(true)), case_name);

// ---- parse cases ----

std::vector<int> parse_input(const Json& c) {
  const Tokenizer& tok = tokenizer();
  std::string fmt = c.value("input_format", "");
  std::vector<int> ids;
  if (c.contains("input_segments")) {
    for (const Json& seg : c["input_segments"]) {
      if (seg.contains("ids")) {
        for (const Json& id : seg["ids"]) ids.push_back(static_cast<int>(id.get<uint32_t>()));
      } else {
        std::vector<int> t = tok.encode_with_special(seg["text"].get<std::string>());
        if (seg.value("first_token_only", false)) t.resize(std::min<size_t>(t.size(), 1));
        ids.insert(ids.end(), t.begin(), t.end());
      }
    }
    return ids;
  }
  if (c.contains("input_text")) return tok.encode_with_special(c["input_text"].get<std::string>());
  std::string file = read_text(harmony_dir() + "/expected/" + c["expected_file"].get<std::string>());
  if (fmt == "token_ids") {
    std::istringstream in(file);
    long v;
    while (in >> v) ids.push_back(static_cast<int>(v));
    return ids;
  }
  return tok.encode_with_special(rstrip(file));
}

ParserOptions parser_options(const Json& c) {
  ParserOptions o;
  const Json& opts = c["options"];
  if (opts.contains("role") && opts["role"].is_string()) o.role = role_from_name(opts["role"].get<std::string>());
  if (opts.contains("strict")) o.strict = opts["strict"].get<bool>();
  return o;
}

std::vector<Message> expected_messages(const Json& c) {
  std::vector<Message> out;
  for (size_t i = 0; i < c["expected_messages"].size(); ++i)
    out.push_back(message_from_json(c["expected_messages"][i], "expected_messages"));
  return out;
}

std::string dump(const std::vector<Message>& ms) { return messages_to_json(ms).dump(1); }

class ParseCase : public ::testing::TestWithParam<Json> {};

TEST_P(ParseCase, GivesExpectedOutcome) {
  const Json& c = GetParam();
  std::vector<int> ids = parse_input(c);
  ParserOptions po = parser_options(c);
  bool expect_error = c.value("expect_error", false);
  std::string kind = c["kind"];
  if (kind == "parse_completion_tokens") {
    if (expect_error) {
      try {
        auto ms = parse_completion(tokenizer(), ids, po);
        ADD_FAILURE() << "expected an error, got " << dump(ms);
      } catch (const ParseError& e) {
        if (c.contains("error_contains")) {
          EXPECT_NE(std::string(e.what()).find(c["error_contains"].get<std::string>()), std::string::npos) << e.what();
        }
      }
    } else {
      EXPECT_EQ(dump(parse_completion(tokenizer(), ids, po)), dump(expected_messages(c)));
    }
  } else {
    StreamParser p(tokenizer(), po);
    std::string joined;
    for (int t : ids) {
      p.push(t);
      if (p.last_content_delta()) joined += *p.last_content_delta();
    }
    if (c["options"].value("process_eos", false)) p.finish();
    if (expect_error) {
      ASSERT_TRUE(p.error().has_value()) << dump(p.messages());
      if (c.contains("error_contains")) {
        EXPECT_NE(p.error()->find(c["error_contains"].get<std::string>()), std::string::npos) << *p.error();
      }
      return;
    }
    EXPECT_FALSE(p.error().has_value()) << *p.error();
    EXPECT_EQ(dump(p.messages()), dump(expected_messages(c)));
    if (c.contains("expected_current_content")) {
      EXPECT_EQ(p.current_content(), c["expected_current_content"].get<std::string>());
    }
    if (c.contains("expected_last_content_delta")) {
      const Json& want = c["expected_last_content_delta"];
      if (want.is_null()) {
        EXPECT_FALSE(p.last_content_delta().has_value());
      } else {
        EXPECT_EQ(p.last_content_delta().value_or("<none>"), want.get<std::string>());
      }
    }
    if (c.contains("expected_content_deltas_joined")) {
      EXPECT_EQ(joined, c["expected_content_deltas_joined"].get<std::string>());
    }
  }
  if (c["options"].value("render_roundtrip", false)) {
    Conversation conv;
    conv.messages = expected_messages(c);
    EXPECT_EQ(render_conversation_tokens(conv, tokenizer(), {}), ids);
  }
}

// The streaming parser (one token at a time, events collected) agrees with the whole-output parser.
TEST_P(ParseCase, StreamingEqualsWholeOutput) {
  const Json& c = GetParam();
  std::vector<int> ids = parse_input(c);
  ParserOptions po = parser_options(c);
  std::optional<std::vector<Message>> whole;
  try {
    whole = parse_completion(tokenizer(), ids, po);
  } catch (const ParseError&) {
  }
  StreamParser p(tokenizer(), po);
  std::vector<Message> from_events;
  Message building;
  bool open = false;
  for (int t : ids) {
    for (const ParseEvent& ev : p.push(t)) {
      if (ev.kind == ParseEvent::Kind::kMessageStart) {
        building = ev.message;
        open = true;
      } else if (ev.kind == ParseEvent::Kind::kContentDelta) {
        ASSERT_TRUE(open);
        building.content += ev.delta;
      } else if (ev.kind == ParseEvent::Kind::kMessageEnd) {
        ASSERT_TRUE(open);
        EXPECT_EQ(building.content, ev.message.content);
        from_events.push_back(ev.message);
        open = false;
      }
    }
  }
  for (const ParseEvent& ev : p.finish()) {
    if (ev.kind == ParseEvent::Kind::kContentDelta) building.content += ev.delta;
    if (ev.kind == ParseEvent::Kind::kMessageEnd) {
      EXPECT_EQ(building.content, ev.message.content);
      from_events.push_back(ev.message);
    }
  }
  EXPECT_EQ(whole.has_value(), !p.error().has_value());
  if (whole) {
    EXPECT_EQ(dump(from_events), dump(*whole));
    EXPECT_EQ(dump(p.messages()), dump(*whole));
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, ParseCase, ::testing::ValuesIn(cases_of(false)), case_name);

TEST(Cases, AllLoaded) {
  EXPECT_GE(load_cases().size(), 47u);
}

}  // namespace
}  // namespace gptoss::harmony
