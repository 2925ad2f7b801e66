// A loopback "hub" for tests: a small HTTP/1.1 server on 127.0.0.1 that serves files under the hub's URL
// scheme (/api/models|datasets/REPO/revision/REV, /[datasets/]REPO/resolve/COMMIT/FILE), with fault modes
// (cut connection, wrong bytes, an HTTP status for every request). Written on raw sockets so each fault is
// byte-exact and the tests need no HTTP library.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"

namespace gptoss::testing {

using Json = nlohmann::json;

inline std::string run(const std::string& cmd) {
  std::string out;
  std::FILE* p = ::popen(cmd.c_str(), "r");
  char buf[256];
  while (p && std::fgets(buf, sizeof buf, p)) out += buf;
  if (p) ::pclose(p);
  return out.substr(0, out.find_first_of(" \n"));
}

struct Request {
  std::string path, range, auth;
};

class FakeHub {
 public:
  static constexpr const char* kCommit = "0123456789abcdef0123456789abcdef01234567";
  std::map<std::string, std::string> files;  // rfilename -> bytes
  std::map<std::string, bool> lfs;
  std::string repo = "openai/gpt-oss-tiny";
  bool dataset = false;  // serve a dataset repo: /api/datasets/... and /datasets/REPO/resolve/...
  // Fault modes.
  std::map<std::string, size_t> cut_after;  // file -> bytes sent before the connection is closed (once)
  std::map<std::string, bool> corrupt;      // file -> serve with one byte flipped
  int status_override = 0;                  // e.g. 401 for every request
  std::vector<Request> requests;
  std::mutex mu;

  FakeHub() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    ::listen(fd_, 16);
    thread_ = std::thread([this] { loop(); });
  }
  ~FakeHub() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  std::string endpoint() const { return fmt::format("http://127.0.0.1:{}", port_); }
  std::vector<Request> requests_for(const std::string& file) {
    std::lock_guard<std::mutex> l(mu);
    std::vector<Request> out;
    for (const auto& r : requests)
      if (r.path.size() >= file.size() && r.path.compare(r.path.size() - file.size(), file.size(), file) == 0)
        out.push_back(r);
    return out;
  }

 private:
  void loop() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      int c = ::accept(fd_, nullptr, nullptr);
      if (c >= 0) {
        serve(c);
        ::close(c);
      }
    }
  }
  static void send_all(int c, const std::string& s) {
    size_t off = 0;
    while (off < s.size()) {
      ssize_t n = ::send(c, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return;
      off += size_t(n);
    }
  }
  static void respond(int c, int status, const std::string& body, const std::string& extra = "") {
    send_all(c, fmt::format("HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n", status,
                            body.size(), extra) + body);
  }
  void serve(int c) {
    std::string req;
    char buf[4096];
    while (req.find("\r\n\r\n") == std::string::npos) {
      ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n <= 0) return;
      req.append(buf, size_t(n));
    }
    Request r;
    size_t sp1 = req.find(' '), sp2 = req.find(' ', sp1 + 1);
    r.path = req.substr(sp1 + 1, sp2 - sp1 - 1);
    auto header = [&](const std::string& name) -> std::string {
      size_t p = req.find("\r\n" + name + ": ");
      if (p == std::string::npos) return "";
      p += name.size() + 4;
      return req.substr(p, req.find("\r\n", p) - p);
    };
    r.range = header("Range");
    r.auth = header("Authorization");
    {
      std::lock_guard<std::mutex> l(mu);
      requests.push_back(r);
    }
    if (status_override) return respond(c, status_override, "{\"error\": \"denied\"}");
    std::string path = r.path.substr(0, r.path.find('?'));
    std::string api = (dataset ? "/api/datasets/" : "/api/models/") + repo + "/revision/";
    std::string resolve = (dataset ? "/datasets/" : "/") + repo + "/resolve/" + kCommit + "/";
    if (path.rfind(api, 0) == 0) {
      Json siblings = Json::array();
      for (const auto& [name, bytes] : files) {
        Json s = {{"rfilename", name}, {"size", bytes.size()}, {"blobId", run_git_sha1(bytes)}};
        if (lfs[name]) s["lfs"] = {{"sha256", run_sha256(bytes)}, {"size", bytes.size()}, {"pointerSize", 134}};
        siblings.push_back(s);
      }
      return respond(c, 200, Json{{"id", repo}, {"sha", kCommit}, {"siblings", siblings}}.dump());
    }
    if (path.rfind(resolve, 0) != 0 || !files.count(path.substr(resolve.size())))
      return respond(c, 404, "Entry not found");
    std::string name = path.substr(resolve.size());
    std::string body = files[name];
    if (corrupt[name]) body[body.size() / 2] ^= 0x5a;
    size_t start = 0;
    if (!r.range.empty()) start = std::stoull(r.range.substr(r.range.find('=') + 1));
    std::string head = start > 0 ? fmt::format("HTTP/1.1 206 Partial\r\nContent-Range: bytes {}-{}/{}\r\n", start,
                                               body.size() - 1, body.size())
                                 : std::string("HTTP/1.1 200 OK\r\n");
    std::string part = body.substr(start);
    head += fmt::format("Content-Length: {}\r\nConnection: close\r\n\r\n", part.size());
    auto cut = cut_after.find(name);
    if (cut != cut_after.end()) {
      size_t n = cut->second > start ? cut->second - start : 0;
      cut_after.erase(cut);
      send_all(c, head + part.substr(0, n));
      return;  // close mid-body
    }
    send_all(c, head + part);
  }

 public:
  // Independent oracles for the hub's metadata: coreutils and git, not our own hashing code.
  static std::string tmp_with(const std::string& bytes) {
    std::string p = fmt::format("/tmp/gptoss_hub_oracle_{}", ::getpid());
    write_file_atomic(p, bytes);
    return p;
  }
  static std::string run_sha256(const std::string& bytes) {
    std::string p = tmp_with(bytes);
    std::string h = run("sha256sum " + p);
    std::remove(p.c_str());
    return h;
  }
  static std::string run_git_sha1(const std::string& bytes) {
    std::string p = tmp_with(bytes);
    std::string h = run("git hash-object " + p);
    std::remove(p.c_str());
    return h;
  }

 private:
  int fd_ = -1, port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace gptoss::testing
