#include "remote/http_client.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <mutex>

#include <curl/curl.h>

namespace gptoss {
namespace {

using Clock = std::chrono::steady_clock;

struct Transfer {
  const HttpRequest* req;
  HttpResponse* resp;
  CURL* curl;
  Clock::time_point last_byte;
  bool idle_expired = false;
  bool consumer_stopped = false;
};

void ensure_curl_initialised() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

size_t on_write(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t bytes = size * n;
  t->last_byte = Clock::now();
  long status = 0;
  curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
  t->resp->status = status;
  if (t->req->on_body && status >= 200 && status < 300) {
    if (!t->req->on_body(std::string_view(data, bytes))) {
      t->consumer_stopped = true;
      return 0;  // makes curl fail with CURLE_WRITE_ERROR
    }
  } else {
    t->resp->body.append(data, bytes);
  }
  return bytes;
}

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t bytes = size * n;
  t->last_byte = Clock::now();
  std::string line(data, bytes);
  if (line.rfind("HTTP/", 0) == 0) {
    t->resp->headers.clear();  // a new status line (after 100-continue or a redirect)
    return bytes;
  }
  auto colon = line.find(':');
  if (colon == std::string::npos) return bytes;
  std::string name = line.substr(0, colon);
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
  std::string value = line.substr(colon + 1);
  value.erase(0, value.find_first_not_of(" \t"));
  value.erase(value.find_last_not_of(" \t\r\n") + 1);
  t->resp->headers[name] = value;
  return bytes;
}

int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  if (t->req->cancel && t->req->cancel->load()) return 1;
  if (t->req->idle_timeout_s > 0) {
    double idle = std::chrono::duration<double>(Clock::now() - t->last_byte).count();
    if (idle > t->req->idle_timeout_s) {
      t->idle_expired = true;
      return 1;
    }
  }
  return 0;
}

}  // namespace

std::string_view failure_name(HttpResponse::Failure f) {
  switch (f) {
    case HttpResponse::Failure::None: return "none";
    case HttpResponse::Failure::Connect: return "connection failed";
    case HttpResponse::Failure::Timeout: return "timed out";
    case HttpResponse::Failure::Cut: return "connection cut";
    case HttpResponse::Failure::Cancelled: return "cancelled";
    case HttpResponse::Failure::Other: return "transfer failed";
  }
  return "?";
}

HttpResponse http_post(const HttpRequest& req) {
  ensure_curl_initialised();
  HttpResponse resp;
  CURL* curl = curl_easy_init();
  if (!curl) {
    resp.failure = HttpResponse::Failure::Other;
    resp.error = "curl_easy_init failed";
    return resp;
  }
  Transfer t{&req, &resp, curl, Clock::now()};
  curl_slist* headers = nullptr;
  for (const auto& h : req.headers) headers = curl_slist_append(headers, h.c_str());
  // "Expect: 100-continue" costs a round trip (or a 1 s stall) on large bodies for nothing here.
  headers = curl_slist_append(headers, "Expect:");
  curl_easy_setopt(curl, CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(curl, CURLOPT_POST, 1L);
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, req.body.data());
  curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(req.body.size()));
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &t);
  curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, long(std::max(1.0, req.connect_timeout_s * 1000)));
  if (req.total_timeout_s > 0)
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, long(std::max(1.0, req.total_timeout_s * 1000)));

  // The multi interface with a short poll lets cancel and the idle timeout act within ~50 ms
  // (curl_easy_perform calls the progress callback only about once a second while idle).
  CURLM* multi = curl_multi_init();
  curl_multi_add_handle(multi, curl);
  CURLcode rc = CURLE_OK;
  for (;;) {
    int running = 0;
    CURLMcode mc = curl_multi_perform(multi, &running);
    if (mc != CURLM_OK) {
      rc = CURLE_FAILED_INIT;
      break;
    }
    if (running == 0) {
      int left = 0;
      rc = CURLE_GOT_NOTHING;
      while (CURLMsg* m = curl_multi_info_read(multi, &left))
        if (m->msg == CURLMSG_DONE) rc = m->data.result;
      break;
    }
    if (on_progress(&t, 0, 0, 0, 0) != 0) {
      rc = CURLE_ABORTED_BY_CALLBACK;
      break;
    }
    curl_multi_poll(multi, nullptr, 0, 50, nullptr);
  }
  curl_multi_remove_handle(multi, curl);
  curl_multi_cleanup(multi);
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  resp.status = status;
  if (rc != CURLE_OK) {
    resp.error = curl_easy_strerror(rc);
    if (t.idle_expired) {
      resp.failure = HttpResponse::Failure::Timeout;
      resp.error = "no data for " + std::to_string(req.idle_timeout_s) + " s";
    } else if (rc == CURLE_ABORTED_BY_CALLBACK || t.consumer_stopped) {
      resp.failure = HttpResponse::Failure::Cancelled;
    } else if (rc == CURLE_OPERATION_TIMEDOUT) {
      resp.failure = HttpResponse::Failure::Timeout;
    } else if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
               rc == CURLE_COULDNT_RESOLVE_PROXY) {
      resp.failure = HttpResponse::Failure::Connect;
    } else if (rc == CURLE_PARTIAL_FILE || rc == CURLE_RECV_ERROR || rc == CURLE_GOT_NOTHING ||
               rc == CURLE_SEND_ERROR) {
      resp.failure = HttpResponse::Failure::Cut;
    } else {
      resp.failure = HttpResponse::Failure::Other;
    }
  }
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  return resp;
}

}  // namespace gptoss
