#include "server/auth.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

namespace gptoss::server {

bool constant_time_equal(std::string_view a, std::string_view b) {
  unsigned char da[SHA256_DIGEST_LENGTH], db[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(a.data()), a.size(), da);
  SHA256(reinterpret_cast<const unsigned char*>(b.data()), b.size(), db);
  return CRYPTO_memcmp(da, db, SHA256_DIGEST_LENGTH) == 0;
}

AuthResult check_bearer(std::string_view header, const std::string& expected_key) {
  if (expected_key.empty()) return AuthResult::kOk;
  while (!header.empty() && header.front() == ' ') header.remove_prefix(1);
  constexpr std::string_view kBearer = "Bearer ";
  if (header.empty()) return AuthResult::kMissing;
  if (header.size() < kBearer.size() || header.substr(0, kBearer.size()) != kBearer) return AuthResult::kWrong;
  std::string_view key = header.substr(kBearer.size());
  while (!key.empty() && (key.back() == ' ' || key.back() == '\r')) key.remove_suffix(1);
  return constant_time_equal(key, expected_key) ? AuthResult::kOk : AuthResult::kWrong;
}

}  // namespace gptoss::server
