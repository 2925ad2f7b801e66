// The tokenizer of a model as Oumi's configs name it: model.tokenizer_name (a tokenizer.json file, or a
// directory / hub id holding one), else the model directory's own tokenizer.json. Shared by infer/serve
// and train.
#pragma once

#include <string>

#include "hub/hub.h"
#include "tokenizer/tokenizer.h"

namespace gptoss {

// Throws InputError naming the directory and the fix when model_dir has no tokenizer.json.
Tokenizer load_model_tokenizer(const std::string& tokenizer_name, const std::string& model_dir,
                               const HubOptions& hub = {});

}  // namespace gptoss
