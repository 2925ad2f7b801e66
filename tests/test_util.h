// Helpers shared by the test suites.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <string>
#include <system_error>
#include <utility>

#include "core/error.h"

namespace gptoss {

// A fresh directory under the system's temporary directory (mkdtemp: unique across processes and
// objects), removed with everything in it when the object goes.
class TempDir {
 public:
  explicit TempDir(const std::string& tag = "test") {
    std::string t = (std::filesystem::temp_directory_path() / ("gptoss_" + tag + "_XXXXXX")).string();
    GPTOSS_CHECK(::mkdtemp(t.data()) != nullptr, "cannot make a temporary directory {}", t);
    path_ = t;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& str() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Sets an environment variable for the object's lifetime, then restores it (or unsets it).
class ScopedEnv {
 public:
  ScopedEnv(std::string name, const std::string& value) : name_(std::move(name)) {
    if (const char* old = ::getenv(name_.c_str())) old_ = old, had_ = true;
    ::setenv(name_.c_str(), value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (had_)
      ::setenv(name_.c_str(), old_.c_str(), 1);
    else
      ::unsetenv(name_.c_str());
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_, old_;
  bool had_ = false;
};

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
