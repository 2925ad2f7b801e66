#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

namespace gptoss {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

struct DTypeInfo {
  DType type;
  const char* name;
  size_t size;
};
constexpr DTypeInfo kDTypes[] = {
    {DType::F64, "F64", 8},   {DType::F32, "F32", 4},         {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2}, {DType::I64, "I64", 8},         {DType::I32, "I32", 4},
    {DType::I16, "I16", 2},   {DType::I8, "I8", 1},           {DType::U8, "U8", 1},
    {DType::U16, "U16", 2},   {DType::U32, "U32", 4},         {DType::U64, "U64", 8},
    {DType::BOOL, "BOOL", 1}, {DType::F8_E4M3, "F8_E4M3", 1}, {DType::F8_E5M2, "F8_E5M2", 1},
};

// A header longer than this is not a checkpoint we can sensibly read (the real 120b header is ~60 kB).
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

std::string example_names(const std::map<std::string, const TensorView*>& m) {
  std::vector<std::string> ex;
  for (const auto& [k, v] : m) {
    if (ex.size() == 3) break;
    ex.push_back("'" + k + "'");
  }
  return fmt::format("{}", fmt::join(ex, ", "));
}

}  // namespace

size_t dtype_size(DType t) {
  for (const auto& d : kDTypes)
    if (d.type == t) return d.size;
  GPTOSS_CHECK(false, "unknown DType {}", int(t));
}

std::string_view dtype_name(DType t) {
  for (const auto& d : kDTypes)
    if (d.type == t) return d.name;
  GPTOSS_CHECK(false, "unknown DType {}", int(t));
}

DType parse_dtype(std::string_view name, const std::string& context) {
  for (const auto& d : kDTypes)
    if (name == d.name) return d.type;
  std::vector<std::string> all;
  for (const auto& d : kDTypes) all.emplace_back(d.name);
  fail_input("{}: dtype '{}' is not a safetensors dtype; expected one of {}", context, name, fmt::join(all, ", "));
}

std::string TensorView::shape_str() const { return fmt::format("[{}]", fmt::join(shape, ", ")); }

uint64_t TensorSpec::nbytes() const {
  uint64_t n = dtype_size(dtype);
  for (int64_t d : shape) n *= uint64_t(d);
  return n;
}

// ---------------------------------------------------------------------------------------------
// Reading

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;
  f.map = MappedFile(path);
  const uint8_t* base = f.map.data();
  const uint64_t size = f.map.size();
  if (size < 8)
    fail_input("{}: file is {} bytes; a safetensors file starts with an 8-byte header length (truncated file?)",
               path, size);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | base[i];
  if (n > kMaxHeaderBytes || n > size - 8)
    fail_input("{}: header length is {} bytes; expected at most {} (the file size minus 8, and under 100 MB): "
               "truncated or not a safetensors file",
               path, n, std::min<uint64_t>(size - 8, kMaxHeaderBytes));
  json header;
  try {
    header = json::parse(base + 8, base + 8 + n);
  } catch (const json::exception& e) {
    fail_input("{}: header is not valid JSON ({}); not a safetensors file or corrupted", path, e.what());
  }
  if (!header.is_object()) fail_input("{}: header is JSON {}; expected an object", path, header.type_name());
  f.data_offset = 8 + n;
  const uint64_t data_size = size - f.data_offset;

  struct Range {
    uint64_t begin, end;
    size_t index;
  };
  std::vector<Range> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) fail_input("{}: __metadata__ is JSON {}; expected an object of strings", path, v.type_name());
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          fail_input("{}: __metadata__ entry '{}' is not a string; expected string values", path, m.key());
        f.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      fail_input("{}: tensor '{}': header entry must be an object with dtype, shape and data_offsets", path, name);
    const json& jd = v["dtype"];
    if (!jd.is_string()) fail_input("{}: tensor '{}': dtype is not a string", path, name);
    TensorView t;
    t.name = name;
    t.file = path;
    t.dtype = parse_dtype(jd.get<std::string>(), fmt::format("{}: tensor '{}'", path, name));
    const json& js = v["shape"];
    if (!js.is_array()) fail_input("{}: tensor '{}': shape is not an array", path, name);
    unsigned __int128 bytes = dtype_size(t.dtype);
    for (const json& d : js) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0)
        fail_input("{}: tensor '{}': shape {} has an entry {}; expected non-negative integers", path, name, js.dump(),
                   d.dump());
      t.shape.push_back(d.get<int64_t>());
      bytes *= uint64_t(t.shape.back());
      if (bytes > (unsigned __int128)(1) << 64) bytes = (unsigned __int128)(1) << 64;  // clamp; will mismatch
    }
    const json& jo = v["data_offsets"];
    if (!jo.is_array() || jo.size() != 2 || !jo[0].is_number_unsigned() || !jo[1].is_number_unsigned())
      fail_input("{}: tensor '{}': data_offsets {} must be two non-negative integers [begin, end]", path, name,
                 jo.dump());
    uint64_t begin = jo[0].get<uint64_t>(), end = jo[1].get<uint64_t>();
    if (end < begin)
      fail_input("{}: tensor '{}': data_offsets [{}, {}] end before begin", path, name, begin, end);
    if (bytes != end - begin)
      fail_input("{}: tensor '{}': shape {} of {} needs {} bytes but data_offsets [{}, {}] span {}", path, name,
                 t.shape_str(), dtype_name(t.dtype), uint64_t(bytes), begin, end, end - begin);
    if (end > data_size)
      fail_input("{}: tensor '{}': data_offsets [{}, {}] reach past the end of the data region ({} bytes): "
                 "truncated file?",
                 path, name, begin, end, data_size);
    t.data = base + f.data_offset + begin;
    t.nbytes = end - begin;
    ranges.push_back({begin, end, f.tensors.size()});
    f.tensors.push_back(std::move(t));
  }
  std::sort(ranges.begin(), ranges.end(),
            [](const Range& a, const Range& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
  for (size_t i = 1; i < ranges.size(); ++i) {
    const Range &a = ranges[i - 1], &b = ranges[i];
    if (b.begin < a.end && b.begin != b.end && a.begin != a.end)
      fail_input("{}: tensors '{}' [{}, {}] and '{}' [{}, {}] overlap in the data region; corrupted header", path,
                 f.tensors[a.index].name, a.begin, a.end, f.tensors[b.index].name, b.begin, b.end);
  }
  return f;
}

Checkpoint Checkpoint::open(const std::string& dir_or_file) {
  Checkpoint c;
  c.path_ = dir_or_file;
  std::error_code ec;
  fs::path p(dir_or_file);
  fs::path index, single;
  if (fs::is_directory(p, ec)) {
    if (fs::exists(p / "model.safetensors.index.json")) index = p / "model.safetensors.index.json";
    else if (fs::exists(p / "model.safetensors")) single = p / "model.safetensors";
    else
      fail_input("{}: no model.safetensors.index.json or model.safetensors in this directory; expected a "
                 "checkpoint in the Hugging Face layout",
                 dir_or_file);
  } else if (fs::exists(p, ec)) {
    if (p.extension() == ".json") index = p;
    else single = p;
  } else {
    fail_input("{}: no such file or directory", dir_or_file);
  }

  auto add_file = [&](const std::string& file) -> SafetensorsFile& {
    c.files_.push_back(std::make_unique<SafetensorsFile>(SafetensorsFile::open(file)));
    return *c.files_.back();
  };

  if (!single.empty()) {
    SafetensorsFile& f = add_file(single.string());
    for (const auto& t : f.tensors) c.tensors_[t.name] = &t;
    c.metadata_ = f.metadata;
    return c;
  }

  c.sharded_ = true;
  const std::string ipath = index.string();
  json j;
  try {
    j = json::parse(read_file(ipath));
  } catch (const json::exception& e) {
    fail_input("{}: not valid JSON ({})", ipath, e.what());
  }
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
    fail_input("{}: expected an object with a \"weight_map\" object (tensor name -> shard file)", ipath);
  if (j.contains("metadata") && j["metadata"].is_object())
    for (auto it = j["metadata"].begin(); it != j["metadata"].end(); ++it)
      c.metadata_[it.key()] = it.value().is_string() ? it.value().get<std::string>() : it.value().dump();
  const fs::path dir = index.parent_path();
  std::map<std::string, SafetensorsFile*> shards;  // file name -> parsed
  std::map<std::string, std::string> weight_map;
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    if (!it.value().is_string())
      fail_input("{}: weight_map entry for tensor '{}' is not a file name", ipath, it.key());
    weight_map[it.key()] = it.value().get<std::string>();
  }
  for (const auto& [name, file] : weight_map) {
    if (shards.count(file)) continue;
    fs::path fp = dir / file;
    if (!fs::exists(fp, ec))
      fail_input("{}: tensor '{}' is mapped to shard '{}', which does not exist in {}", ipath, name, file,
                 dir.string());
    shards[file] = &add_file(fp.string());
  }
  for (const auto& [name, file] : weight_map) {
    SafetensorsFile* f = shards[file];
    const TensorView* found = nullptr;
    for (const auto& t : f->tensors)
      if (t.name == name) found = &t;
    if (!found)
      fail_input("{}: tensor '{}' is listed in {} but missing from that shard", f->map.path(), name, ipath);
    c.tensors_[name] = found;
  }
  for (const auto& [file, f] : shards)
    for (const auto& [k, v] : f->metadata) c.metadata_.emplace(k, v);
  return c;
}

const TensorView* Checkpoint::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : it->second;
}

const TensorView& Checkpoint::get(const std::string& name) const {
  const TensorView* t = find(name);
  if (!t)
    fail_input("{}: tensor '{}' not found (checkpoint has {} tensors, e.g. {})", path_, name, tensors_.size(),
               example_names(tensors_));
  return *t;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& [k, v] : tensors_) out.push_back(k);
  return out;
}

std::vector<std::string> Checkpoint::files() const {
  std::vector<std::string> out;
  for (const auto& f : files_) out.push_back(f->map.path());
  return out;
}

uint64_t Checkpoint::total_bytes() const {
  uint64_t n = 0;
  for (const auto& [k, v] : tensors_) n += v->nbytes;
  return n;
}

// ---------------------------------------------------------------------------------------------
// Writing

std::string safetensors_header(const std::vector<TensorSpec>& tensors,
                               const std::map<std::string, std::string>& metadata) {
  json h = json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  uint64_t off = 0;
  for (const auto& t : tensors) {
    uint64_t n = t.nbytes();
    h[t.name] = {{"dtype", std::string(dtype_name(t.dtype))}, {"shape", t.shape}, {"data_offsets", {off, off + n}}};
    off += n;
  }
  std::string s = h.dump();
  // 8 (length) + header must be a multiple of 8 so that the data region is aligned.
  while (s.size() % 8 != 0) s.push_back(' ');
  return s;
}

SafetensorsWriter::SafetensorsWriter(std::string path, std::vector<TensorSpec> tensors,
                                     std::map<std::string, std::string> metadata)
    : path_(std::move(path)), specs_(std::move(tensors)) {
  std::set<std::string> seen;
  for (const auto& t : specs_) {
    if (t.name.empty() || t.name == "__metadata__")
      fail_input("{}: tensor name '{}' is not allowed", path_, t.name);
    if (!seen.insert(t.name).second) fail_input("{}: tensor '{}' declared twice", path_, t.name);
    for (int64_t d : t.shape)
      if (d < 0) fail_input("{}: tensor '{}' has a negative dimension {}", path_, t.name, d);
    data_size_ += t.nbytes();
  }
  std::string header = safetensors_header(specs_, metadata);
  file_ = std::make_unique<AtomicFile>(path_);
  uint8_t len[8];
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) len[i] = uint8_t(n >> (8 * i));
  file_->write(len, 8);
  file_->write(header);
  data_offset_ = 8 + n;
  while (cur_ < specs_.size() && specs_[cur_].nbytes() == 0) ++cur_;
}

void SafetensorsWriter::write_next(const void* data, size_t n) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    if (cur_ >= specs_.size())
      fail_input("{}: {} bytes written past the last declared tensor", path_, n);
    uint64_t left = specs_[cur_].nbytes() - cur_written_;
    size_t k = size_t(std::min<uint64_t>(left, n));
    file_->write(p, k);
    p += k;
    n -= k;
    cur_written_ += k;
    if (cur_written_ == specs_[cur_].nbytes()) {
      cur_written_ = 0;
      ++cur_;
      while (cur_ < specs_.size() && specs_[cur_].nbytes() == 0) ++cur_;
    }
  }
}

void SafetensorsWriter::finish() {
  if (cur_ < specs_.size())
    fail_input("{}: tensor '{}' got {} of {} bytes when the file was finished", path_, specs_[cur_].name,
               cur_written_, specs_[cur_].nbytes());
  file_->commit();
}

void write_safetensors(const std::string& path, const std::vector<TensorData>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<TensorSpec> specs;
  for (const auto& t : tensors) specs.push_back({t.name, t.dtype, t.shape});
  SafetensorsWriter w(path, specs, metadata);
  for (size_t i = 0; i < tensors.size(); ++i) {
    uint64_t n = specs[i].nbytes();
    if (n) {
      GPTOSS_CHECK(tensors[i].data != nullptr, "tensor '{}' has no data", tensors[i].name);
      w.write_next(tensors[i].data, n);
    }
  }
  w.finish();
}

}  // namespace gptoss
