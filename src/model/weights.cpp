#include "model/weights.h"

#include <filesystem>

#include "core/dtype.h"
#include "core/error.h"

namespace gptoss {

namespace {

std::string shape_string(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// Finds `name`, checks dtype and shape, returns its bytes prepared by the backend.
class TensorGetter {
 public:
  TensorGetter(const Checkpoint& c, Backend& b) : ckpt_(c), backend_(b) {}

  const TensorView& view(const std::string& name, DType dtype, const std::vector<int64_t>& shape) const {
    const TensorView* t = ckpt_.find(name);
    if (!t)
      fail_input("{}: tensor '{}' is missing; expected {} {} (is this a gpt-oss checkpoint matching its config.json?)",
                 ckpt_.path(), name, dtype_name(dtype), shape_string(shape));
    if (t->shape != shape)
      fail_input("{}: tensor '{}' has shape {}; expected {} from config.json", t->file, name,
                 shape_string(t->shape), shape_string(shape));
    if (t->dtype != dtype)
      fail_input("{}: tensor '{}' has dtype {}; expected {}", t->file, name, dtype_name(t->dtype),
                 dtype_name(dtype));
    return *t;
  }
  const uint16_t* bf16(const std::string& name, const std::vector<int64_t>& shape) const {
    const TensorView& t = view(name, DType::BF16, shape);
    return static_cast<const uint16_t*>(backend_.prepare_weight(t.as<uint16_t>(), t.nbytes));
  }
  const uint16_t* gather_table(const std::string& name, const std::vector<int64_t>& shape) const {
    const TensorView& t = view(name, DType::BF16, shape);
    return static_cast<const uint16_t*>(backend_.prepare_gather_table(t.as<uint16_t>(), t.nbytes));
  }
  const uint8_t* u8(const std::string& name, const std::vector<int64_t>& shape) const {
    const TensorView& t = view(name, DType::U8, shape);
    return static_cast<const uint8_t*>(backend_.prepare_weight(t.data, t.nbytes));
  }
  bool has(const std::string& name) const { return ckpt_.find(name) != nullptr; }

 private:
  const Checkpoint& ckpt_;
  Backend& backend_;
};

}  // namespace

std::unique_ptr<Weights> Weights::load(const std::string& model_dir, const GptOssConfig& cfg, Backend& backend) {
  return from_checkpoint(Checkpoint::open(model_dir), cfg, backend);
}

Weights::~Weights() {
  for (void* p : owned_) backend_.free(p);
}

std::unique_ptr<Weights> Weights::from_checkpoint(Checkpoint ckpt, const GptOssConfig& cfg, Backend& backend) {
  std::unique_ptr<Weights> w(new Weights(std::move(ckpt), backend));
  TensorGetter get(w->ckpt_, backend);
  const int64_t H = cfg.hidden_size, V = cfg.vocab_size, Q = cfg.q_dim(), KV = cfg.kv_dim();
  const int64_t E = cfg.num_local_experts, I = cfg.intermediate_size;

  // The embedding table is only gathered from (Backend::prepare_gather_table: it may stay in host
  // memory), unless lm_head shares it.
  const bool tied = cfg.tie_word_embeddings && !get.has("lm_head.weight");
  w->embed = tied ? get.bf16("model.embed_tokens.weight", {V, H})
                  : get.gather_table("model.embed_tokens.weight", {V, H});
  w->norm = get.bf16("model.norm.weight", {H});
  w->lm_head = tied ? w->embed : get.bf16("lm_head.weight", {V, H});

  // The expert layout is decided once, from layer 0, so a checkpoint mixing layouts is an error.
  const std::string probe = "model.layers.0.mlp.experts.gate_up_proj_blocks";
  w->mxfp4_experts = get.has(probe) || !get.has("model.layers.0.mlp.experts.gate_up_proj");
  if (w->mxfp4_experts && (H % kMxfp4BlockSize || I % kMxfp4BlockSize))
    fail_input("{}: MXFP4 experts need hidden_size ({}) and intermediate_size ({}) to be multiples of {}",
               w->ckpt_.path(), H, I, kMxfp4BlockSize);

  w->layers.resize(size_t(cfg.num_hidden_layers));
  for (int l = 0; l < cfg.num_hidden_layers; ++l) {
    LayerWeights& L = w->layers[size_t(l)];
    const std::string p = "model.layers." + std::to_string(l) + ".";
    L.attn_norm = get.bf16(p + "input_layernorm.weight", {H});
    L.q_w = get.bf16(p + "self_attn.q_proj.weight", {Q, H});
    L.q_b = cfg.attention_bias ? get.bf16(p + "self_attn.q_proj.bias", {Q}) : nullptr;
    L.k_w = get.bf16(p + "self_attn.k_proj.weight", {KV, H});
    L.k_b = cfg.attention_bias ? get.bf16(p + "self_attn.k_proj.bias", {KV}) : nullptr;
    L.v_w = get.bf16(p + "self_attn.v_proj.weight", {KV, H});
    L.v_b = cfg.attention_bias ? get.bf16(p + "self_attn.v_proj.bias", {KV}) : nullptr;
    L.o_w = get.bf16(p + "self_attn.o_proj.weight", {H, Q});
    L.o_b = cfg.attention_bias ? get.bf16(p + "self_attn.o_proj.bias", {H}) : nullptr;
    {
      const TensorView& s = get.view(p + "self_attn.sinks", DType::BF16, {cfg.num_attention_heads});
      std::vector<float> f(size_t(cfg.num_attention_heads));
      const uint16_t* src = s.as<uint16_t>();
      for (size_t i = 0; i < f.size(); ++i) f[i] = bf16_to_f32(src[i]);
      void* buf = backend.alloc(f.size() * sizeof(float));
      w->owned_.push_back(buf);
      backend.to_device(buf, f.data(), f.size() * sizeof(float));
      L.sinks = static_cast<const float*>(buf);
    }
    L.mlp_norm = get.bf16(p + "post_attention_layernorm.weight", {H});
    L.router_w = get.bf16(p + "mlp.router.weight", {E, H});
    L.router_b = get.bf16(p + "mlp.router.bias", {E});

    const std::string x = p + "mlp.experts.";
    auto& gu = L.gate_up;
    auto& dn = L.down;
    gu.mxfp4 = dn.mxfp4 = w->mxfp4_experts;
    gu.experts = dn.experts = int(E);
    gu.rows = 2 * I, gu.cols = H;
    dn.rows = H, dn.cols = I;
    gu.bias = get.bf16(x + "gate_up_proj_bias", {E, 2 * I});
    dn.bias = get.bf16(x + "down_proj_bias", {E, H});
    if (w->mxfp4_experts) {
      gu.blocks = get.u8(x + "gate_up_proj_blocks", {E, 2 * I, H / 32, 16});
      gu.scales = get.u8(x + "gate_up_proj_scales", {E, 2 * I, H / 32});
      dn.blocks = get.u8(x + "down_proj_blocks", {E, H, I / 32, 16});
      dn.scales = get.u8(x + "down_proj_scales", {E, H, I / 32});
    } else {
      gu.w = get.bf16(x + "gate_up_proj", {E, H, 2 * I});
      dn.w = get.bf16(x + "down_proj", {E, I, H});
    }
  }
  return w;
}

}  // namespace gptoss
