// API-key check for `gptoss serve --api-key`.
//
// Contract: check_bearer() accepts "Authorization: Bearer <key>" whose key equals the configured one.
// The comparison takes the same time whatever the key's contents and length (both sides are hashed
// with SHA-256 and the digests compared with CRYPTO_memcmp), so response timing does not reveal how
// much of a guessed key was right. An empty configured key disables the check.
#pragma once

#include <string>
#include <string_view>

namespace gptoss::server {

bool constant_time_equal(std::string_view a, std::string_view b);

enum class AuthResult { kOk, kMissing, kWrong };
AuthResult check_bearer(std::string_view authorization_header, const std::string& expected_key);

}  // namespace gptoss::server
