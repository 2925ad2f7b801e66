#include "remote/retry_policy.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <string>

namespace gptoss {

bool is_retryable_status(long status) {
  switch (status) {
    case 400: case 401: case 403: case 404: case 413: case 422: return false;
    default: return status < 200 || status >= 300;
  }
}

double backoff_seconds(const RemoteParams& p, int attempt) {
  double base = std::max(0.0, p.retry_backoff_base);
  double wait = base * std::pow(10.0, std::max(0, attempt));
  if (p.retry_backoff_max > 0) wait = std::min(wait, p.retry_backoff_max);
  return wait * p.delay_scale;
}

std::optional<double> parse_retry_after(std::string_view value, std::time_t now) {
  std::string s(value);
  s.erase(0, s.find_first_not_of(" \t"));
  s.erase(s.find_last_not_of(" \t\r\n") + 1);
  if (s.empty()) return std::nullopt;
  if (std::isdigit(static_cast<unsigned char>(s[0]))) {
    char* end = nullptr;
    double v = std::strtod(s.c_str(), &end);
    if (end == s.c_str() || *end != '\0' || !std::isfinite(v) || v < 0) return std::nullopt;
    return v;
  }
  // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT".
  std::tm tm{};
  const char* rest = strptime(s.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (!rest || *rest != '\0') return std::nullopt;
  std::time_t when = timegm(&tm);
  return std::max(0.0, double(when - now));
}

double retry_wait_seconds(const RemoteParams& p, int attempt, std::optional<double> retry_after) {
  if (retry_after) return std::min(*retry_after, kMaxRetryAfterSeconds) * p.delay_scale;
  return backoff_seconds(p, attempt);
}

}  // namespace gptoss
