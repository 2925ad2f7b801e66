#include "io/checkpoint_writer.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"

namespace gptoss {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------

StagedDir::StagedDir(std::string final_path, bool overwrite, const std::string& flag)
    : final_(std::move(final_path)), overwrite_(overwrite) {
  while (final_.size() > 1 && final_.back() == '/') final_.pop_back();
  std::error_code ec;
  if (fs::exists(final_, ec) && !overwrite_) {
    if (!fs::is_directory(final_, ec))
      fail_input("{}: exists and is not a directory; choose another output path", final_);
    if (!fs::is_empty(final_, ec))
      fail_input("{}: output directory exists and is not empty; pass {} to replace it, or choose another", final_,
                 flag);
  }
  fs::path parent = fs::path(final_).parent_path();
  if (!parent.empty() && !fs::is_directory(parent, ec))
    fail_input("{}: parent directory {} does not exist", final_, parent.string());
  tmp_ = final_ + ".tmp-" + std::to_string(::getpid());
  fs::remove_all(tmp_, ec);
  if (!fs::create_directory(tmp_, ec)) fail_input("{}: cannot create: {}", tmp_, ec.message());
}

StagedDir::~StagedDir() {
  if (!committed_) {
    std::error_code ec;
    fs::remove_all(tmp_, ec);
  }
}

void StagedDir::commit() {
  std::error_code ec;
  std::string old;
  if (fs::exists(final_, ec)) {
    if (fs::is_directory(final_, ec) && fs::is_empty(final_, ec)) {
      fs::remove(final_, ec);
    } else {
      GPTOSS_CHECK(overwrite_, "{} appeared while writing", final_);
      old = final_ + ".old-" + std::to_string(::getpid());
      fs::rename(final_, old, ec);
      if (ec) fail_input("{}: cannot move the old output aside: {}", final_, ec.message());
    }
  }
  fs::rename(tmp_, final_, ec);
  if (ec) fail_input("{}: cannot rename {} into place: {}", final_, tmp_, ec.message());
  committed_ = true;
  if (!old.empty()) fs::remove_all(old, ec);
}

// ---------------------------------------------------------------------------------------------

std::string shard_file_name(int index, int count) {
  return fmt::format("model-{:05d}-of-{:05d}.safetensors", index, count);
}

ShardedWriter::ShardedWriter(std::string dir, std::vector<TensorSpec> tensors, uint64_t max_shard_bytes,
                             std::map<std::string, std::string> metadata, bool always_index)
    : dir_(std::move(dir)), metadata_(std::move(metadata)), always_index_(always_index) {
  for (auto& t : tensors) {
    uint64_t n = t.nbytes();
    total_ += n;
    if (shards_.empty() || (shard_bytes_.back() + n > max_shard_bytes && !shards_.back().empty())) {
      shards_.emplace_back();
      shard_bytes_.push_back(0);
    }
    shards_.back().push_back(std::move(t));
    shard_bytes_.back() += n;
  }
  if (shards_.empty()) {
    shards_.emplace_back();
    shard_bytes_.push_back(0);
  }
  open_shard(0);
}

void ShardedWriter::open_shard(size_t i) {
  cur_index_ = i;
  std::string name = shards_.size() == 1 && !always_index_ ? "model.safetensors" : shard_file_name(int(i) + 1, int(shards_.size()));
  cur_ = std::make_unique<SafetensorsWriter>(dir_ + "/" + name, shards_[i], metadata_);
  cur_left_ = shard_bytes_[i];
}

void ShardedWriter::write_next(const void* data, size_t n) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    while (cur_left_ == 0) {
      GPTOSS_CHECK(cur_index_ + 1 < shards_.size(), "{}: {} bytes past the last tensor", dir_, n);
      cur_->finish();
      open_shard(cur_index_ + 1);
    }
    size_t k = size_t(std::min<uint64_t>(n, cur_left_));
    cur_->write_next(p, k);
    p += k;
    n -= k;
    cur_left_ -= k;
  }
}

void ShardedWriter::finish() {
  while (cur_left_ == 0 && cur_index_ + 1 < shards_.size()) {  // trailing empty tensors
    cur_->finish();
    open_shard(cur_index_ + 1);
  }
  GPTOSS_CHECK(cur_left_ == 0 && cur_index_ + 1 == shards_.size(), "{}: finished with tensors missing bytes", dir_);
  cur_->finish();
  cur_.reset();
  if (shards_.size() > 1 || always_index_) {
    nlohmann::json weight_map = nlohmann::json::object();
    for (size_t i = 0; i < shards_.size(); ++i)
      for (const auto& t : shards_[i]) weight_map[t.name] = shard_file_name(int(i) + 1, int(shards_.size()));
    nlohmann::json index = {{"metadata", {{"total_size", total_}}}, {"weight_map", weight_map}};
    write_file_atomic(dir_ + "/model.safetensors.index.json", index.dump(2) + "\n");
  }
}

// ---------------------------------------------------------------------------------------------

AsyncSink::AsyncSink(std::function<void(const uint8_t*, size_t)> sink, int depth)
    : sink_(std::move(sink)), depth_(depth) {
  thread_ = std::thread([this] { run(); });
}

AsyncSink::~AsyncSink() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
    queue_.clear();
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void AsyncSink::rethrow() {
  if (error_) std::rethrow_exception(error_);
}

void AsyncSink::run() {
  for (;;) {
    std::pair<std::vector<uint8_t>, size_t> item;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;
      item = std::move(queue_.front());
      queue_.pop_front();
    }
    try {
      if (!error_) sink_(item.first.data(), item.second);
    } catch (...) {
      std::lock_guard<std::mutex> lk(mu_);
      error_ = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lk(mu_);
      --in_flight_;
      // Keep at most depth spare buffers: callers may submit buffers they did not acquire (e.g. a
      // tensor's scales), and keeping every one of them would grow memory with the model size.
      if (int(free_.size()) < depth_) free_.push_back(std::move(item.first));
    }
    item.first = std::vector<uint8_t>();  // free outside the lock
    cv_.notify_all();
  }
}

std::vector<uint8_t> AsyncSink::acquire() {
  std::unique_lock<std::mutex> lk(mu_);
  cv_.wait(lk, [&] { return in_flight_ < depth_ || error_; });
  rethrow();
  if (!free_.empty()) {
    std::vector<uint8_t> b = std::move(free_.back());
    free_.pop_back();
    return b;
  }
  return {};
}

void AsyncSink::submit(std::vector<uint8_t> buf, size_t n) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    rethrow();
    queue_.emplace_back(std::move(buf), n);
    ++in_flight_;
  }
  cv_.notify_all();
}

void AsyncSink::finish() {
  std::unique_lock<std::mutex> lk(mu_);
  cv_.wait(lk, [&] { return in_flight_ == 0; });
  rethrow();
}

// Every regular top-level file of `from` except weights, config.json and the weight index (tokenizer,
// generation config, chat template, README, ...) into `to`.
void copy_side_files(const std::string& from, const std::string& to) {
  static const std::vector<std::string> skip_ext = {".safetensors", ".bin", ".pt", ".pth", ".gguf", ".msgpack",
                                                    ".h5", ".ckpt"};
  for (const auto& entry : fs::directory_iterator(from)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name[0] == '.' || !entry.is_regular_file()) continue;  // follows symlinks (HF cache)
    if (name == "config.json" || name == "model.safetensors.index.json") continue;
    const std::string ext = entry.path().extension().string();
    if (std::find(skip_ext.begin(), skip_ext.end(), ext) != skip_ext.end()) continue;
    std::error_code ec;
    fs::copy_file(entry.path(), fs::path(to) / name, fs::copy_options::overwrite_existing, ec);
    if (ec) fail_input("{}: cannot copy to {}: {}", entry.path().string(), to, ec.message());
  }
}

}  // namespace gptoss
