#include "server/api_error.h"

namespace gptoss::server {

void bad_field(const std::string& param, const std::string& message) {
  throw ApiError(400, message, "invalid_request_error", param, "invalid_value");
}

nlohmann::json error_json(const std::string& message, const std::string& type, const std::string& param,
                          const std::string& code) {
  nlohmann::json e = {{"message", message}, {"type", type}, {"param", nullptr}, {"code", nullptr}};
  if (!param.empty()) e["param"] = param;
  if (!code.empty()) e["code"] = code;
  return {{"error", e}};
}

nlohmann::json error_json(const ApiError& e) { return error_json(e.what(), e.type, e.param, e.code); }

std::string error_type_for_status(int status) {
  switch (status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 429: return "rate_limit_error";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
  }
}

}  // namespace gptoss::server
