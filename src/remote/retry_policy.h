// When and how long to wait before retrying a failed remote request.
//
// Contract:
//  - is_retryable_status(): false for 400, 401, 403, 404, 413 and 422 (the request itself is wrong;
//    sending it again cannot help), true for every other non-2xx status (408, 409, 429, 5xx, ...).
//  - backoff_seconds(attempt): the wait before retry number `attempt` (0-based) when the server gave no
//    Retry-After: retry_backoff_base * 10^attempt, capped at retry_backoff_max; with Oumi's defaults
//    (1 s, 30 s) that is 1 s, 10 s, 30 s, 30 s, ... Multiplied by delay_scale.
//  - parse_retry_after(): seconds from a Retry-After header, either delta-seconds ("7", "1.5") or an
//    HTTP-date ("Wed, 21 Oct 2026 07:28:00 GMT", relative to `now`); nullopt when absent or unparsable.
//    A Retry-After the server sends is honoured as given (times delay_scale), capped at 10 minutes.
#pragma once

#include <ctime>
#include <optional>
#include <string_view>

#include "remote/remote_params.h"

namespace gptoss {

bool is_retryable_status(long status);
double backoff_seconds(const RemoteParams& p, int attempt);
std::optional<double> parse_retry_after(std::string_view value, std::time_t now);
// The wait before retry `attempt`: Retry-After when present, else backoff_seconds(); scaled.
double retry_wait_seconds(const RemoteParams& p, int attempt, std::optional<double> retry_after);

inline constexpr double kMaxRetryAfterSeconds = 600.0;

}  // namespace gptoss
