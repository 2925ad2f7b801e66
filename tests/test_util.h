// Helpers shared by the test suites.
#pragma once

#include <string>

#include "core/error.h"

namespace gptoss {

// The message of the InputError fn() throws, or "" when it throws none (other exceptions pass through).
template <class F>
std::string input_error_of(F&& fn) {
  try {
    fn();
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

}  // namespace gptoss
