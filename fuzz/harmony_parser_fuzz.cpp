// libFuzzer target: the harmony streaming parser on arbitrary token sequences.
//
// Input: byte 0 picks the options (preset role or not, strict or not); then tokens: a byte < 0x10 is
// a harmony special token (so headers and terminators come often), 0x10..0x1f an id outside the
// vocabulary, and a byte >= 0x20 starts a 3-byte big-endian id (byte - 0x20, then two bytes). Invariants checked (abort on violation): push()/finish() never
// throw; one MessageEnd per message; the deltas of each message add up to its content; the streaming
// messages equal parse_completion's result unless there was an error.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "fuzz_common.h"
#include "harmony/parser.h"

using namespace gptoss;

namespace {

constexpr int kSpecials[] = {tok::kStart, tok::kEnd, tok::kMessage, tok::kChannel, tok::kConstrain,
                             tok::kReturn, tok::kCall, tok::kEndOfText, tok::kEndOfPrompt, 200001};

std::vector<int> to_tokens(const uint8_t* data, size_t size) {
  std::vector<int> ids;
  size_t i = 0;
  while (i < size) {
    uint8_t b = data[i++];
    if (b < 0x10) {
      ids.push_back(kSpecials[b % std::size(kSpecials)]);
    } else if (b < 0x20) {
      ids.push_back(b & 1 ? -1 - b : tok::kVocabSize + b);  // outside the vocabulary
    } else {
      // Three bytes: any id (the seeds spell real token ids this way).
      unsigned hi = b - 0x20u, mid = i < size ? data[i++] : 0, lo = i < size ? data[i++] : 0;
      ids.push_back(int(((hi << 16) | (mid << 8) | lo) % unsigned(tok::kVocabSize)));
    }
  }
  return ids;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const Tokenizer& tok = fuzz::tokenizer();
  harmony::ParserOptions opts;
  if (data[0] & 1) opts.role = harmony::Role::kAssistant;
  opts.strict = (data[0] & 2) == 0;
  std::vector<int> ids = to_tokens(data + 1, size - 1);

  harmony::StreamParser p(tok, opts);
  std::vector<harmony::ParseEvent> evs;
  for (int t : ids) p.push(t, evs);
  p.finish(evs);

  size_t ends = 0;
  std::string building;
  bool open = false;
  for (const auto& e : evs) {
    switch (e.kind) {
      case harmony::ParseEvent::Kind::kMessageStart:
        if (open) std::abort();
        open = true;
        building.clear();
        break;
      case harmony::ParseEvent::Kind::kContentDelta:
        if (!open || e.delta.empty()) std::abort();
        building += e.delta;
        break;
      case harmony::ParseEvent::Kind::kMessageEnd:
        if (!open || building != e.message.content) std::abort();
        if (ends >= p.messages().size() || !(p.messages()[ends] == e.message)) std::abort();
        open = false;
        ++ends;
        break;
      case harmony::ParseEvent::Kind::kError:
        if (!p.error()) std::abort();
        open = false;
        break;
    }
  }
  if (ends != p.messages().size()) std::abort();
  if (!p.error()) {
    std::vector<harmony::Message> whole = harmony::parse_completion(tok, ids, opts);
    if (whole.size() != p.messages().size()) std::abort();
    for (size_t i = 0; i < whole.size(); ++i)
      if (!(whole[i] == p.messages()[i])) std::abort();
  }
  return 0;
}
