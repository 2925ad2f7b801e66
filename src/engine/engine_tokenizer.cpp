// Engine::set_tokenizer lives apart from engine.cpp so that programs which never attach a tokenizer
// (tests with fake models) do not pull the tokenizer's code in.
#include "engine/engine.h"
#include "tokenizer/tokenizer.h"

namespace gptoss {
namespace {

class IncrementalTokenDecoder : public TokenDecoder {
 public:
  explicit IncrementalTokenDecoder(Tokenizer tok) : tok_(std::move(tok)), dec_(tok_) {}
  std::string push(int token) override { return dec_.push(token); }
  std::string flush() override { return dec_.flush(); }

 private:
  Tokenizer tok_;  // cheap shared copy; dec_ refers to it
  IncrementalDecoder dec_;
};

}  // namespace

void Engine::set_tokenizer(const Tokenizer& tok) {
  set_decoder_factory([tok]() -> std::unique_ptr<TokenDecoder> { return std::make_unique<IncrementalTokenDecoder>(tok); });
}

}  // namespace gptoss
