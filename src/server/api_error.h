// Errors in OpenAI's shape: {"error": {"message", "type", "param", "code"}} with an HTTP status.
//
// Handlers throw ApiError; the server turns it (and InputError, which becomes a 400 naming the field)
// into the JSON body and status. `param` names the offending request field when there is one.
#pragma once

#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace gptoss::server {

struct ApiError : std::runtime_error {
  int status;
  std::string type, param, code;
  ApiError(int status, std::string message, std::string type = "invalid_request_error", std::string param = "",
           std::string code = "")
      : std::runtime_error(std::move(message)), status(status), type(std::move(type)), param(std::move(param)),
        code(std::move(code)) {}
};

// 400 invalid_request_error naming `param`.
[[noreturn]] void bad_field(const std::string& param, const std::string& message);

nlohmann::json error_json(const std::string& message, const std::string& type, const std::string& param,
                          const std::string& code);
nlohmann::json error_json(const ApiError& e);
// The OpenAI error type for a status: 400 invalid_request_error, 401 authentication_error, 404
// not_found_error, 413 invalid_request_error, 429 rate_limit_error, 5xx server_error.
std::string error_type_for_status(int status);

}  // namespace gptoss::server
