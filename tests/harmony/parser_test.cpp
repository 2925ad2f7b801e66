// Parser tests beyond cases.jsonl: events, terminators, recovery, UTF-8 streaming, random input.
#include <gtest/gtest.h>

#include <random>

#include "harmony/parser.h"
#include "harmony_test_util.h"

namespace gptoss::harmony {
namespace {

using namespace gptoss::harmony::testing;

std::vector<int> enc(const std::string& s) { return tokenizer().encode_with_special(s); }

TEST(Parser, EventsCarryHeaderDeltasAndTerminator) {
  StreamParser p(tokenizer(), {.role = Role::kAssistant});
  std::vector<ParseEvent> evs;
  for (int t : enc("<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"a\": 1}<|call|>"))
    p.push(t, evs);
  ASSERT_GE(evs.size(), 3u);
  EXPECT_EQ(evs.front().kind, ParseEvent::Kind::kMessageStart);
  EXPECT_EQ(evs.front().message.recipient, "functions.get_weather");
  EXPECT_EQ(evs.front().message.channel, "commentary");
  EXPECT_EQ(evs.front().message.content_type, "<|constrain|>json");
  EXPECT_EQ(evs.back().kind, ParseEvent::Kind::kMessageEnd);
  EXPECT_EQ(evs.back().terminator, Terminator::kCall);
  EXPECT_EQ(evs.back().message.content, "{\"a\": 1}");
  std::string joined;
  for (const auto& e : evs)
    if (e.kind == ParseEvent::Kind::kContentDelta) joined += e.delta;
  EXPECT_EQ(joined, "{\"a\": 1}");
  EXPECT_FALSE(p.in_content());
}

TEST(Parser, CurrentMessageWhileStreaming) {
  StreamParser p(tokenizer(), {.role = Role::kAssistant});
  for (int t : enc("<|channel|>final<|message|>Hello wor")) p.push(t);
  ASSERT_NE(p.current_message(), nullptr);
  EXPECT_EQ(p.current_message()->channel, "final");
  EXPECT_EQ(p.current_content(), "Hello wor");
  auto evs = p.finish();
  ASSERT_FALSE(evs.empty());
  EXPECT_EQ(evs.back().terminator, Terminator::kEndOfInput);
  ASSERT_EQ(p.messages().size(), 1u);
  EXPECT_EQ(p.messages()[0].content, "Hello wor");
}

TEST(Parser, ErrorIsReportedOnceAndParserResynchronises) {
  StreamParser p(tokenizer(), {});
  std::vector<ParseEvent> evs;
  for (int t : enc("garbage<|start|>assistant<|channel|>final<|message|>ok<|end|>")) p.push(t, evs);
  ASSERT_TRUE(p.error().has_value());
  EXPECT_NE(p.error()->find("while expecting start token"), std::string::npos);
  int errors = 0;
  for (const auto& e : evs) errors += e.kind == ParseEvent::Kind::kError;
  EXPECT_EQ(errors, 1);
  ASSERT_EQ(p.messages().size(), 1u);
  EXPECT_EQ(p.messages()[0].content, "ok");
  EXPECT_THROW(parse_completion(tokenizer(), enc("garbage"), {}), ParseError);
}

TEST(Parser, UnknownRoleAndEmptyChannelAreErrors) {
  EXPECT_THROW(parse_completion(tokenizer(), enc("<|start|>robot<|message|>x<|end|>"), {}), ParseError);
  EXPECT_THROW(parse_completion(tokenizer(), enc("<|start|>assistant<|channel|> <|message|>x<|end|>"), {}),
               ParseError);
}

TEST(Parser, TruncatedHeaderStrictErrorsNonStrictKeepsText) {
  auto ids = enc("<|channel|>analysis thinking about it");
  EXPECT_THROW(parse_completion(tokenizer(), ids, {.role = Role::kAssistant}), ParseError);
  auto ms = parse_completion(tokenizer(), ids, {.role = Role::kAssistant, .strict = false});
  ASSERT_EQ(ms.size(), 1u);
  EXPECT_EQ(ms[0].channel, "analysis");
  EXPECT_EQ(ms[0].content, "thinking about it");
}

TEST(Parser, ToolAuthorFromHeader) {
  auto ms = parse_completion(tokenizer(), enc("<|start|>functions.lookup to=assistant<|channel|>commentary<|message|>{}<|end|>"), {});
  ASSERT_EQ(ms.size(), 1u);
  EXPECT_EQ(ms[0].author.role, Role::kTool);
  EXPECT_EQ(ms[0].author.name, "functions.lookup");
  EXPECT_EQ(ms[0].recipient, "assistant");
}

TEST(Parser, RestatedStartWithPresetRole) {
  auto ms = parse_completion(tokenizer(), enc("<|start|>assistant<|channel|>final<|message|>hi<|return|>"),
                             {.role = Role::kAssistant});
  ASSERT_EQ(ms.size(), 1u);
  EXPECT_EQ(ms[0].content, "hi");
}

// Reference: from_utf8_lossy on the whole byte string (maximal-subpart replacement), written plainly.
std::string lossy(const std::string& b) {
  std::string out;
  size_t i = 0;
  while (i < b.size()) {
    unsigned char c = b[i];
    int n = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c < 0x80) {
      out += char(c);
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      n = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
      continue;
    }
    size_t j = i + 1;
    int got = 0;
    while (got < n && j < b.size()) {
      unsigned char d = b[j];
      unsigned char l = got == 0 ? lo : 0x80, h = got == 0 ? hi : 0xBF;
      if (d < l || d > h) break;
      ++j;
      ++got;
    }
    if (got == n) {
      out += b.substr(i, j - i);
    } else {
      out += "\xEF\xBF\xBD";
    }
    i = j;
  }
  return out;
}

TEST(Utf8Stream, MatchesWholeStringLossyDecodingOnRandomChunks) {
  std::mt19937 rng(7);
  const unsigned char alphabet[] = {'a', ' ', 0x80, 0xBF, 0xC2, 0xC0, 0xDF, 0xE0, 0xA0, 0xED, 0x9F,
                                    0xA5, 0xF0, 0x90, 0x9F, 0xF4, 0x8F, 0xF5, 0xFF, 0xE2, 0x82, 0xAC};
  for (int iter = 0; iter < 3000; ++iter) {
    std::string bytes;
    int len = rng() % 24;
    for (int i = 0; i < len; ++i) bytes += char(alphabet[rng() % sizeof(alphabet)]);
    Utf8Stream u;
    std::string out;
    size_t i = 0;
    while (i < bytes.size()) {
      size_t k = 1 + rng() % 4;
      out += u.push(std::string_view(bytes).substr(i, k));
      i += k;
    }
    out += u.flush();
    ASSERT_EQ(out, lossy(bytes)) << "iteration " << iter;
  }
}

TEST(Parser, RandomTokensNeverThrowAndStayConsistent) {
  std::mt19937 rng(11);
  const int specials[] = {tok::kStart, tok::kEnd, tok::kMessage, tok::kChannel, tok::kConstrain,
                          tok::kReturn, tok::kCall, -1, 201087, 9552};
  auto words = enc("assistant user tool to=functions.x commentary analysis final json hello 💖");
  for (int iter = 0; iter < 2000; ++iter) {
    bool strict = iter % 2;
    StreamParser p(tokenizer(), {.role = iter % 3 ? std::optional<Role>(Role::kAssistant) : std::nullopt,
                                 .strict = strict});
    int len = rng() % 40;
    std::vector<ParseEvent> evs;
    for (int i = 0; i < len; ++i) {
      int t = rng() % 3 ? words[rng() % words.size()] : specials[rng() % std::size(specials)];
      ASSERT_NO_THROW(p.push(t, evs));
    }
    ASSERT_NO_THROW(p.finish(evs));
    size_t ends = 0;
    for (const auto& e : evs) ends += e.kind == ParseEvent::Kind::kMessageEnd;
    EXPECT_EQ(ends, p.messages().size());
  }
}

}  // namespace
}  // namespace gptoss::harmony
