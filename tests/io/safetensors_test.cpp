// Safetensors reader/writer: the fixtures, sharded checkpoints, every header corruption, round trips.
#include "io/safetensors.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/dtype.h"
#include "test_util.h"

namespace gptoss {
namespace {

namespace fs = std::filesystem;

std::string shared_dir() {
  const char* e = std::getenv("GPTOSS_SHARED_DIR");
  return e ? e : GPTOSS_SHARED_DIR;
}
std::string fixture(const std::string& variant) {
  return shared_dir() + "/fixtures/gpt-oss-tiny/" + variant;
}

// Writes a file with the given header text and `data_bytes` zero bytes of data.
void write_raw(const std::string& path, const std::string& header, size_t data_bytes) {
  std::ofstream f(path, std::ios::binary);
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) f.put(char(n >> (8 * i)));
  f << header;
  f << std::string(data_bytes, '\0');
}

// Expects an InputError whose message contains every one of `parts`.
template <class F>
void expect_input_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "message: " << msg << "\nmissing: " << p;
  }
}

TEST(DType, NamesAndSizes) {
  EXPECT_EQ(dtype_name(DType::BF16), "BF16");
  EXPECT_EQ(dtype_name(DType::F8_E4M3), "F8_E4M3");
  EXPECT_EQ(dtype_size(DType::BF16), 2u);
  EXPECT_EQ(dtype_size(DType::F64), 8u);
  EXPECT_EQ(dtype_size(DType::U8), 1u);
  EXPECT_EQ(parse_dtype("U8", "x"), DType::U8);
  EXPECT_EQ(parse_dtype("I64", "x"), DType::I64);
  expect_input_error([] { parse_dtype("bfloat16", "ctx"); }, {"ctx", "bfloat16", "BF16"});
}

TEST(Reader, FixtureMxfp4) {
  Checkpoint c = Checkpoint::open(fixture("mxfp4"));
  EXPECT_FALSE(c.sharded());
  EXPECT_EQ(c.size(), 79u);  // 3 + 4 layers x 19
  EXPECT_EQ(c.metadata().at("format"), "pt");
  const TensorView& sinks = c.get("model.layers.0.self_attn.sinks");
  EXPECT_EQ(sinks.dtype, DType::BF16);
  EXPECT_EQ(sinks.shape, (std::vector<int64_t>{4}));
  const uint16_t* s = sinks.as<uint16_t>();
  EXPECT_EQ(s[0], 0x3f1b);
  EXPECT_EQ(s[1], 0xbef5);
  EXPECT_EQ(s[2], 0x3eda);
  EXPECT_EQ(s[3], 0xbfb0);
  const TensorView& blocks = c.get("model.layers.2.mlp.experts.gate_up_proj_blocks");
  EXPECT_EQ(blocks.dtype, DType::U8);
  EXPECT_EQ(blocks.shape, (std::vector<int64_t>{8, 192, 4, 16}));
  EXPECT_EQ(blocks.nbytes, size_t(8 * 192 * 4 * 16));
  const TensorView& scales = c.get("model.layers.3.mlp.experts.down_proj_scales");
  EXPECT_EQ(scales.shape, (std::vector<int64_t>{8, 128, 3}));
  EXPECT_EQ(scales.as<uint8_t>()[0], 123);
  EXPECT_EQ(scales.as<uint8_t>()[1], 122);
  const TensorView& lm = c.get("lm_head.weight");
  EXPECT_EQ(lm.shape, (std::vector<int64_t>{1024, 128}));
  EXPECT_EQ(lm.as<uint16_t>()[1024 * 128 - 1], 0xbdd0);
  EXPECT_EQ(c.find("model.layers.0.mlp.experts.gate_up_proj"), nullptr);
  auto names = c.names();
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  EXPECT_EQ(names.front(), "lm_head.weight");
  expect_input_error([&] { c.get("nope"); }, {fixture("mxfp4"), "'nope'", "79 tensors"});
}


TEST(Reader, FixtureBf16AndTypedAccess) {
  Checkpoint c = Checkpoint::open(fixture("bf16") + "/model.safetensors");
  const TensorView& gu = c.get("model.layers.1.mlp.experts.gate_up_proj");
  EXPECT_EQ(gu.shape, (std::vector<int64_t>{8, 128, 192}));
  EXPECT_EQ(gu.numel(), 8 * 128 * 192);
  const TensorView& dn = c.get("model.layers.1.mlp.experts.down_proj");
  EXPECT_EQ(dn.shape, (std::vector<int64_t>{8, 96, 128}));
  expect_input_error([&] { gu.as<float>(); }, {"gate_up_proj", "BF16"});
}

TEST(Writer, RoundTripAndAlignment) {
  TempDir d;
  std::vector<float> a = {1.0f, -2.5f, 3.25f};
  std::vector<uint8_t> b = {1, 2, 3, 4, 5};  // odd size: the next tensor starts unaligned unless padded
  std::vector<uint16_t> c16(6);
  for (int i = 0; i < 6; ++i) c16[size_t(i)] = f32_to_bf16(float(i) * 0.5f);
  write_safetensors(d / "x.safetensors", {{"a", DType::F32, {3}, a.data()},
                                          {"b", DType::U8, {5}, b.data()},
                                          {"c", DType::BF16, {2, 3}, c16.data()},
                                          {"empty", DType::F32, {0, 4}, nullptr}},
                    {{"format", "pt"}, {"k", "v"}});
  Checkpoint ck = Checkpoint::open(d / "x.safetensors");
  EXPECT_EQ(ck.size(), 4u);
  EXPECT_EQ(ck.metadata().at("k"), "v");
  const float* pa = ck.get("a").as<float>();
  EXPECT_EQ(pa[1], -2.5f);
  EXPECT_EQ(ck.get("b").as<uint8_t>()[4], 5);
  EXPECT_EQ(ck.get("c").shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(bf16_to_f32(ck.get("c").data[10] | (ck.get("c").data[11] << 8)), 2.5f);
  EXPECT_EQ(ck.get("empty").nbytes, 0u);
  // Data region starts 8-aligned.
  std::string raw = read_file(d / "x.safetensors");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | uint8_t(raw[size_t(i)]);
  EXPECT_EQ((8 + n) % 8, 0u);
  EXPECT_EQ(raw.size(), 8 + n + 12 + 5 + 12);
}

TEST(Writer, StreamsInPiecesAcrossTensors) {
  TempDir d;
  std::vector<uint8_t> all(3 * 4 + 7);
  for (size_t i = 0; i < all.size(); ++i) all[i] = uint8_t(i * 7 + 1);
  {
    SafetensorsWriter w(d / "s.safetensors", {{"x", DType::I32, {3}}, {"y", DType::U8, {7}}});
    EXPECT_EQ(w.current()->name, "x");
    w.write_next(all.data(), 5);  // part of x
    w.write_next(all.data() + 5, 10);  // rest of x and part of y
    EXPECT_EQ(w.current()->name, "y");
    w.write_next(all.data() + 15, 4);
    EXPECT_EQ(w.current(), nullptr);
    EXPECT_THROW(w.write_next(all.data(), 1), InputError);
    w.finish();
  }
  Checkpoint ck = Checkpoint::open(d / "s.safetensors");
  EXPECT_EQ(std::memcmp(ck.get("x").data, all.data(), 12), 0);
  EXPECT_EQ(std::memcmp(ck.get("y").data, all.data() + 12, 7), 0);
}

TEST(Writer, NoPartialFileOnFailure) {
  TempDir d;
  {
    SafetensorsWriter w(d / "p.safetensors", {{"x", DType::F32, {4}}});
    float v[2] = {1, 2};
    w.write_next(v, sizeof v);
    expect_input_error([&] { w.finish(); }, {"p.safetensors", "'x'", "8 of 16"});
  }  // destroyed unfinished
  {
    SafetensorsWriter w(d / "q.safetensors", {{"x", DType::F32, {1}}});
    // abandoned without finish (e.g. an exception elsewhere)
  }
  EXPECT_FALSE(fs::exists(d / "p.safetensors"));
  EXPECT_FALSE(fs::exists(d / "q.safetensors"));
  EXPECT_TRUE(fs::is_empty(d.str())) << "temporary files left behind";
  expect_input_error([&] { SafetensorsWriter w(d / "r.safetensors", {{"x", DType::F32, {1}}, {"x", DType::F32, {1}}}); },
                     {"'x'", "twice"});
}

// A sharded checkpoint written by our writer, read back through the index.
void write_sharded(const TempDir& d, const std::string& index_json) {
  std::vector<uint16_t> w1(6, 0x3f80), w2(4, 0x4000);
  write_safetensors(d / "model-00001-of-00002.safetensors", {{"layer.0.w", DType::BF16, {2, 3}, w1.data()}});
  write_safetensors(d / "model-00002-of-00002.safetensors", {{"layer.1.w", DType::BF16, {4}, w2.data()}});
  write_file_atomic(d / "model.safetensors.index.json", index_json);
}

TEST(Reader, Sharded) {
  TempDir d;
  write_sharded(d, R"({"metadata": {"total_size": 20}, "weight_map": {
      "layer.0.w": "model-00001-of-00002.safetensors", "layer.1.w": "model-00002-of-00002.safetensors"}})");
  Checkpoint c = Checkpoint::open(d.str());
  EXPECT_TRUE(c.sharded());
  EXPECT_EQ(c.size(), 2u);
  EXPECT_EQ(c.files().size(), 2u);
  EXPECT_EQ(c.total_bytes(), 20u);
  EXPECT_EQ(c.get("layer.1.w").as<uint16_t>()[3], 0x4000);
  EXPECT_NE(c.get("layer.1.w").file.find("model-00002-of-00002"), std::string::npos);
  EXPECT_EQ(c.metadata().at("total_size"), "20");
  Checkpoint moved = std::move(c);
  EXPECT_EQ(moved.get("layer.0.w").as<uint16_t>()[5], 0x3f80);
}

TEST(Reader, ShardedIndexErrors) {
  {
    TempDir d;
    write_sharded(d, R"({"weight_map": {"layer.0.w": "model-00001-of-00002.safetensors",
        "layer.1.w": "model-00009-of-00009.safetensors"}})");
    expect_input_error([&] { Checkpoint::open(d.str()); },
                       {"model.safetensors.index.json", "'layer.1.w'", "model-00009-of-00009.safetensors", "does not exist"});
  }
  {
    TempDir d;
    write_sharded(d, R"({"weight_map": {"layer.0.w": "model-00001-of-00002.safetensors",
        "layer.1.w": "model-00001-of-00002.safetensors"}})");
    expect_input_error([&] { Checkpoint::open(d.str()); },
                       {"model-00001-of-00002.safetensors", "'layer.1.w'", "missing from that shard"});
  }
  {
    TempDir d;
    write_sharded(d, R"({"weights": {}})");
    expect_input_error([&] { Checkpoint::open(d.str()); }, {"model.safetensors.index.json", "weight_map"});
  }
  {
    TempDir d;
    expect_input_error([&] { Checkpoint::open(d.str()); }, {d.str(), "model.safetensors"});
    expect_input_error([&] { Checkpoint::open(d / "none.safetensors"); }, {"none.safetensors", "no such file"});
  }
}

struct Corruption {
  const char* what;
  std::string header;
  size_t data_bytes;
  std::vector<std::string> expect;  // besides the file name
};

TEST(Reader, Corruptions) {
  const std::string ok_t = R"("t": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]})";
  std::vector<Corruption> cases = {
      {"not json", "{\"t\": {\"dtype\": ", 16, {"not valid JSON"}},
      {"json array", "[1, 2]", 16, {"expected an object"}},
      {"unknown dtype", R"({"t": {"dtype": "F4", "shape": [4], "data_offsets": [0, 4]}})", 16, {"'t'", "'F4'"}},
      {"negative shape", R"({"t": {"dtype": "U8", "shape": [-4], "data_offsets": [0, 4]}})", 16, {"'t'", "-4"}},
      {"shape x size mismatch", R"({"t": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 16]}})", 32,
       {"'t'", "[2, 3]", "needs 24 bytes", "span 16"}},
      {"range past end", R"({"t": {"dtype": "F32", "shape": [2, 2], "data_offsets": [8, 24]}})", 16,
       {"'t'", "[8, 24]", "past the end"}},
      {"overlap", "{" + ok_t + R"(, "u": {"dtype": "U8", "shape": [8], "data_offsets": [12, 20]}})", 24,
       {"'t'", "'u'", "overlap"}},
      {"missing field", R"({"t": {"dtype": "U8", "shape": [4]}})", 16, {"'t'", "data_offsets"}},
      {"end before begin", R"({"t": {"dtype": "U8", "shape": [0], "data_offsets": [4, 0]}})", 16, {"'t'", "end before begin"}},
  };
  TempDir d;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    std::string path = d / "bad.safetensors";
    write_raw(path, c.header, c.data_bytes);
    std::vector<std::string> parts = c.expect;
    try {
      Checkpoint::open(path);
      ADD_FAILURE() << "no error for " << c.what;
    } catch (const InputError& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find(path), std::string::npos) << msg;
      for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << msg << "\nmissing: " << p;
    }
  }
}

TEST(Reader, BadHeaderLengthAndTruncation) {
  TempDir d;
  // Header length larger than the file.
  {
    std::string path = d / "len.safetensors";
    std::ofstream f(path, std::ios::binary);
    uint64_t n = 1000;
    for (int i = 0; i < 8; ++i) f.put(char(n >> (8 * i)));
    f << "{}";
    f.close();
    expect_input_error([&] { Checkpoint::open(path); }, {path, "header length is 1000"});
  }
  // Absurd header length (> 100 MB).
  {
    std::string path = d / "huge.safetensors";
    std::ofstream f(path, std::ios::binary);
    for (int i = 0; i < 8; ++i) f.put(char(0x7f));
    f.close();
    expect_input_error([&] { Checkpoint::open(path); }, {path, "header length"});
  }
  // Shorter than 8 bytes.
  {
    std::string path = d / "tiny.safetensors";
    std::ofstream(path, std::ios::binary) << "abc";
    expect_input_error([&] { Checkpoint::open(path); }, {path, "3 bytes"});
  }
  // The fixture cut in half: the header is intact, tensors at the end fall outside the file.
  {
    std::string src = read_file(fixture("mxfp4") + "/model.safetensors");
    std::string path = d / "model.safetensors";
    std::ofstream(path, std::ios::binary) << src.substr(0, src.size() / 2);
    expect_input_error([&] { Checkpoint::open(d.str()); }, {path, "tensor '", "past the end", "truncated"});
  }
}

}  // namespace
}  // namespace gptoss
