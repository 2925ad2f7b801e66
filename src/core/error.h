// Errors: library code throws gptoss::Error with a message that names the input, the value and the
// fix; main() turns it into one line on stderr and exit code 1.
#pragma once

#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace gptoss {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Thrown for bad user input (file contents, flags, config values): exit code 2 in the CLI.
class InputError : public Error {
 public:
  using Error::Error;
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

template <typename... Args>
[[noreturn]] void fail_input(fmt::format_string<Args...> f, Args&&... args) {
  throw InputError(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace gptoss

// GPTOSS_CHECK(cond, "fmt", args...): internal invariant; the message says what went wrong.
#define GPTOSS_CHECK(cond, ...)                                                              \
  do {                                                                                      \
    if (!(cond))                                                                            \
      throw ::gptoss::Error(fmt::format("{}:{}: check `{}` failed: {}", __FILE__, __LINE__, \
                                        #cond, fmt::format(__VA_ARGS__)));                  \
  } while (0)
