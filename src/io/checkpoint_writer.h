// Writing whole checkpoints: a staged output directory that appears under its final name only when
// complete, sharded safetensors streamed tensor by tensor, and a background writer thread so that
// producing the bytes (random generation, quantization) overlaps with the disk.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "io/safetensors.h"

namespace gptoss {

// A directory built under "<final>.tmp-<pid>" and renamed to <final> by commit(). The destructor
// removes the temporary if commit() was not reached, so an interrupted or failed run leaves no
// directory under the final name. An existing <final> is refused (InputError naming `flag`) unless
// it is an empty directory or `overwrite` is set; with overwrite it is replaced only at commit().
class StagedDir {
 public:
  StagedDir(std::string final_path, bool overwrite, const std::string& flag = "--overwrite");
  ~StagedDir();
  StagedDir(const StagedDir&) = delete;
  StagedDir& operator=(const StagedDir&) = delete;
  const std::string& path() const { return tmp_; }  // write files here
  std::string file(const std::string& name) const { return tmp_ + "/" + name; }
  const std::string& final_path() const { return final_; }
  void commit();

 private:
  std::string final_, tmp_;
  bool overwrite_ = false, committed_ = false;
};

// Copies the top-level files of checkpoint directory `from` that are neither weights nor config.json nor
// the weight index (tokenizer, generation config, chat template, ...) into `to`.
void copy_side_files(const std::string& from, const std::string& to);

// Hugging Face shard file name: "model-00002-of-00003.safetensors".
std::string shard_file_name(int index, int count);

// Writes tensors (in the given order) to `dir` as one model.safetensors, or, when they exceed
// max_shard_bytes, as model-0000i-of-0000N.safetensors files plus model.safetensors.index.json
// (weight_map + metadata.total_size). Bytes come through write_next in declaration order, like
// SafetensorsWriter. A tensor larger than max_shard_bytes gets a shard of its own. always_index:
// shard names and the index even for a single shard (the layout save_pretrained writes for big models).
class ShardedWriter {
 public:
  ShardedWriter(std::string dir, std::vector<TensorSpec> tensors, uint64_t max_shard_bytes,
                std::map<std::string, std::string> metadata = {{"format", "pt"}}, bool always_index = false);
  void write_next(const void* data, size_t n);
  void finish();
  int num_shards() const { return int(shards_.size()); }
  uint64_t total_bytes() const { return total_; }

 private:
  void open_shard(size_t i);
  std::string dir_;
  std::map<std::string, std::string> metadata_;
  std::vector<std::vector<TensorSpec>> shards_;
  std::vector<uint64_t> shard_bytes_;
  std::unique_ptr<SafetensorsWriter> cur_;
  size_t cur_index_ = 0;
  uint64_t cur_left_ = 0, total_ = 0;
  bool always_index_ = false;
};

// A writer thread fed with filled buffers, so that filling the next buffer overlaps with writing
// this one. acquire() hands out a buffer (blocking while `depth` are in flight); submit() queues
// bytes [0, n) of it; finish() drains the queue. An exception in the sink is rethrown by the next
// acquire/submit/finish. Memory: at most 2 x depth + 1 buffers (in flight, spare, being filled).
class AsyncSink {
 public:
  AsyncSink(std::function<void(const uint8_t*, size_t)> sink, int depth = 2);
  ~AsyncSink();
  std::vector<uint8_t> acquire();
  void submit(std::vector<uint8_t> buf, size_t n);
  void finish();

 private:
  void run();
  void rethrow();
  std::function<void(const uint8_t*, size_t)> sink_;
  int depth_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<std::vector<uint8_t>, size_t>> queue_;
  std::vector<std::vector<uint8_t>> free_;
  int in_flight_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
  std::thread thread_;
};

}  // namespace gptoss
