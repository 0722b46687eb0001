// ra/model/gpt2_config.hpp — what describes a GPT-2 on every backend: its configuration, the
// flat layout of its fp32 parameters (the one parameter table), their GPT-2 initialisation and
// the gate statistics. The model itself is ra/nn/gpt2_model.hpp, written once over a backend
// (ra/cpu/gpt2_backend.hpp, ra/cuda/gpt2_backend.cuh); every backend starts from
// init_gpt2_parameters(), so the same seed gives the same model on each. Plain C++ over core/
// and expr/: the CUDA backend includes it too.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <ra/core/error.hpp>
#include <ra/core/folded.hpp>
#include <ra/expr/block.hpp>
#include <ra/expr/gates.hpp>
#include <ra/model/dropout.hpp>

namespace ra::model {

/// Which attention the model uses; everything else is identical between the arms.
enum class Arm : std::uint8_t { baseline, ra };

inline std::string_view name(Arm a) {
  return a == Arm::baseline ? "baseline" : "ra";
}

/// "baseline" or "ra"; throws ra::error naming the value otherwise.
inline Arm parse_arm(std::string_view s) {
  if (s == "baseline") return Arm::baseline;
  if (s == "ra") return Arm::ra;
  throw error(ra::detail::concat("arm: got '", s, "', expected 'baseline' or 'ra'"));
}

/// "none", "per_layer" or "per_head"; throws ra::error naming the value otherwise.
inline GateMode parse_gate_mode(std::string_view s) {
  if (s == "none") return GateMode::none;
  if (s == "per_layer") return GateMode::per_layer;
  if (s == "per_head") return GateMode::per_head;
  throw error(
      ra::detail::concat("gates: got '", s, "', expected 'none', 'per_layer' or 'per_head'"));
}

/// "clamp" or "softplus"; throws ra::error naming the value otherwise.
inline GateParam parse_gate_param(std::string_view s) {
  if (s == "clamp") return GateParam::clamp;
  if (s == "softplus") return GateParam::softplus;
  throw error(ra::detail::concat("gate param: got '", s, "', expected 'clamp' or 'softplus'"));
}

/// The vocabulary rounded up to a multiple of 64 (the rows of wte).
inline index_t padded_vocab(index_t vocab) {
  return (vocab + 63) / 64 * 64;
}

/// Shape and options of a GPT-2 model.
struct GPT2Config {
  index_t vocab = 257;     // real tokens (bytes + EOT); wte has padded_vocab() rows
  index_t max_seq = 1024;  // rows of wpe: the longest sequence
  index_t n_layer = 12;
  index_t n_head = 12;
  index_t C = 768;
  Arm arm = Arm::baseline;
  int R = 4;                             // RA arm only
  GateMode gates = GateMode::per_layer;  // RA arm only
  GateParam gate_param = GateParam::clamp;
  bool restart = false;  // RA arm only
  float dropout = 0.f;   // embeddings and both residual branches (not attention probabilities)
  bool bias = true;      // linear and LayerNorm biases

  /// GPT-2 small (124M) with a given vocabulary (50257: GPT-2's BPE).
  static GPT2Config gpt2_124m(index_t vocab = 50257) {
    GPT2Config c;
    c.vocab = vocab;
    return c;
  }

  index_t head_dim() const { return n_head > 0 ? C / n_head : 0; }
  index_t padded_vocab() const { return model::padded_vocab(vocab); }

  /// The attention block of a layer: the baseline ignores R, gates and restart.
  AttentionBlockConfig attention() const {
    AttentionBlockConfig a;
    a.C = C;
    a.H = n_head;
    a.R = arm == Arm::ra ? R : 0;
    a.gates = arm == Arm::ra ? gates : GateMode::none;
    a.gate_param = gate_param;
    a.restart = arm == Arm::ra && restart;
    a.bias = bias;
    return a;
  }

  /// Throws ra::error (ra::unsupported for an unsupported head dim or rank) naming the field.
  void validate(const char* where = "model::GPT2Config") const {
    require_arg(vocab >= 1, where, "vocab", vocab, "a positive vocabulary size");
    require_arg(max_seq >= 1, where, "max_seq", max_seq, "a positive sequence length");
    require_arg(n_layer >= 1, where, "n_layer", n_layer, "a positive layer count");
    Dropout{dropout}.validate(where);
    attention().validate(where);
  }

  bool operator==(const GPT2Config&) const = default;
};

/// One tensor of the flat parameter buffer.
struct ParameterInfo {
  std::string name;  // e.g. "h.3.mlp.w_fc"
  index_t rows = 0;  // (rows, cols) for matrices
  index_t cols = 1;  // 1 for vectors
  index_t offset = 0;
  bool decay = false;  // AdamW weight decay applies (2-D weights and embeddings)
  index_t size() const { return rows * cols; }
};

/// The offsets of one layer's tensors in the flat buffer (-1: absent).
struct GPT2LayerSlots {
  index_t ln1_w = -1, ln1_b = -1, w_attn = -1, b_attn = -1, w_o = -1, b_o = -1;
  index_t w_std = -1, w_rec = -1, a = -1;
  index_t ln2_w = -1, ln2_b = -1, w_fc = -1, b_fc = -1, w_proj = -1, b_proj = -1;
};

/// The flat layout of every parameter: its table (in buffer order: wte, wpe, the layers'
/// LayerNorm, linear weights and biases, ln_f, then every layer's gates and restart values),
/// the per-layer slots and the offsets of the shared tensors.
struct GPT2Layout {
  std::vector<ParameterInfo> table;
  std::vector<GPT2LayerSlots> layers;
  index_t wte = -1, wpe = -1, lnf_w = -1, lnf_b = -1;
  index_t total = 0;  // length of the flat buffer
};

/// The linear layers of a GPT-2, y = x·Wᵀ (+ b) with W (out, in): the backends key their GEMM
/// plans (and the CPU backend its gradient precision) on these.
enum class Linear : std::uint8_t { qkv, out, fc, proj, head };

/// W's shape of a linear layer of cfg, and whether it has a bias (the head never has one).
struct LinearShape {
  index_t out = 0, in = 0;
  bool bias = false;
};

inline LinearShape linear_shape(const GPT2Config& cfg, Linear l) {
  const index_t C = cfg.C;
  switch (l) {
    case Linear::qkv:
      return {3 * C, C, cfg.bias};
    case Linear::out:
      return {C, C, cfg.bias};
    case Linear::fc:
      return {4 * C, C, cfg.bias};
    case Linear::proj:
      return {C, 4 * C, cfg.bias};
    case Linear::head:
      break;
  }
  return {cfg.padded_vocab(), C, false};
}

/// Builds the layout of cfg (validating it). Weight decay goes to every 2-D tensor — the
/// linear weights and the embeddings wte (also the LM head) and wpe, as GPT-2/nanoGPT do —
/// and to nothing else (biases, LayerNorm, gates, restart).
inline GPT2Layout gpt2_layout(const GPT2Config& cfg) {
  cfg.validate("model::gpt2_layout");
  GPT2Layout l;
  auto add = [&](std::string name, index_t rows, index_t cols, bool decay) {
    if (rows * cols == 0) return index_t{-1};
    l.table.push_back({std::move(name), rows, cols, l.total, decay});
    l.total += rows * cols;
    return l.table.back().offset;
  };
  const index_t C = cfg.C, bias = cfg.bias ? 1 : 0;
  const auto attn = cfg.attention();
  l.wte = add("wte", cfg.padded_vocab(), C, true);
  l.wpe = add("wpe", cfg.max_seq, C, true);
  for (index_t i = 0; i < cfg.n_layer; ++i) {
    const std::string p = "h." + std::to_string(i) + ".";
    GPT2LayerSlots s;
    s.ln1_w = add(p + "ln1.weight", C, 1, false);
    s.ln1_b = add(p + "ln1.bias", bias * C, 1, false);
    s.w_attn = add(p + "attn.w_attn", 3 * C, C, true);
    s.b_attn = add(p + "attn.b_attn", bias * 3 * C, 1, false);
    s.w_o = add(p + "attn.w_o", C, C, true);
    s.b_o = add(p + "attn.b_o", bias * C, 1, false);
    s.ln2_w = add(p + "ln2.weight", C, 1, false);
    s.ln2_b = add(p + "ln2.bias", bias * C, 1, false);
    s.w_fc = add(p + "mlp.w_fc", 4 * C, C, true);
    s.b_fc = add(p + "mlp.b_fc", bias * 4 * C, 1, false);
    s.w_proj = add(p + "mlp.w_proj", C, 4 * C, true);
    s.b_proj = add(p + "mlp.b_proj", bias * C, 1, false);
    l.layers.push_back(s);
  }
  l.lnf_w = add("ln_f.weight", C, 1, false);
  l.lnf_b = add("ln_f.bias", bias * C, 1, false);
  // The gates and restart values last: every tensor before them has a multiple of C values,
  // so with C a multiple of 8 each starts 16-byte aligned in a 16-bit copy (the GPU kernels
  // read them in 16-byte packs).
  for (index_t i = 0; i < cfg.n_layer; ++i) {
    const std::string p = "h." + std::to_string(i) + ".";
    auto& s = l.layers[static_cast<std::size_t>(i)];
    s.w_std = add(p + "attn.w_std", attn.gate_count(), 1, false);
    s.w_rec = add(p + "attn.w_rec", attn.gate_count(), 1, false);
    s.a = add(p + "attn.a", attn.restart_count(), 1, false);
  }
  return l;
}

/// Number of parameters of cfg. With include_padding = false the padded rows of wte are not
/// counted (GPT-2 124M: 124,439,808 with vocab 50257; 124,475,904 stored).
inline index_t gpt2_parameter_count(const GPT2Config& cfg, bool include_padding = true) {
  const index_t stored = gpt2_layout(cfg).total;
  return include_padding ? stored : stored - (cfg.padded_vocab() - cfg.vocab) * cfg.C;
}

/// mean / min / max of a set of values.
struct Summary {
  double mean = 0.0, min = 0.0, max = 0.0;
};

/// The effective gates and restart mix of one layer (empty summaries when absent), summarised
/// over its heads, and the gates one by one (one per layer, or one per head).
struct LayerGateStats {
  bool gated = false, restart = false;
  Summary g_std, g_rec, alpha;
  std::vector<double> g_std_values, g_rec_values;
};

namespace detail {

// Standard normal numbers from mt19937_64 by Box-Muller: the same stream on every standard
// library (std::normal_distribution is implementation-defined).
class NormalStream {
 public:
  explicit NormalStream(std::uint64_t seed) : rng_(seed) {}
  double next() {
    if (have_spare_) {
      have_spare_ = false;
      return spare_;
    }
    const double u1 = static_cast<double>((rng_() >> 11) + 1) * 0x1p-53;  // (0, 1]
    const double u2 = static_cast<double>(rng_() >> 11) * 0x1p-53;        // [0, 1)
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double theta = 2.0 * std::numbers::pi * u2;
    spare_ = r * std::sin(theta);
    have_spare_ = true;
    return r * std::cos(theta);
  }

 private:
  std::mt19937_64 rng_;
  double spare_ = 0.0;
  bool have_spare_ = false;
};

inline Summary summarize(const std::vector<double>& v) {
  Summary s;
  if (v.empty()) return s;
  s.min = *std::min_element(v.begin(), v.end());
  s.max = *std::max_element(v.begin(), v.end());
  for (double x : v) s.mean += x;
  s.mean /= static_cast<double>(v.size());
  return s;
}

}  // namespace detail

/// GPT-2 initialisation of the flat fp32 parameters `params` of cfg (laid out by `layout`,
/// see the top of ra/nn/gpt2_model.hpp) from `seed`. Deterministic, and the same on every device:
/// every backend's model starts from these values. Throws ra::error on a size mismatch.
inline void init_gpt2_parameters(const GPT2Config& cfg, const GPT2Layout& layout,
                                 std::span<float> params, std::uint64_t seed) {
  require_arg(static_cast<index_t>(params.size()) == layout.total, "model::init_gpt2_parameters",
              "params.size()", params.size(), ra::detail::concat(layout.total, " (the layout's)"));
  detail::NormalStream normal(seed);
  std::fill(params.begin(), params.end(), 0.f);
  const index_t C = cfg.C, L = cfg.n_layer;
  const double std = 0.02, residual = std / std::sqrt(2.0 * static_cast<double>(L));
  auto draw = [&](index_t offset, index_t n, double scale) {
    for (index_t i = 0; i < n; ++i)
      params[static_cast<std::size_t>(offset + i)] = static_cast<float>(normal.next() * scale);
  };
  auto fill = [&](index_t offset, index_t n, float v) {
    if (offset >= 0) std::fill_n(params.begin() + offset, n, v);
  };
  draw(layout.wte, cfg.vocab * C, std);
  draw(layout.wpe, cfg.max_seq * C, std);
  const auto attn = cfg.attention();
  std::vector<float> qkv(static_cast<std::size_t>(3 * C * C));
  for (const auto& s : layout.layers) {
    fill(s.ln1_w, C, 1.f);
    fill(s.ln2_w, C, 1.f);
    // The baseline's [W_q; W_k; W_v], then repacked (a row permutation; the identity for
    // R = 0): row `row` of W_attn is row s.row of matrix s.matrix.
    for (float& w : qkv) w = static_cast<float>(normal.next() * std);
    for (index_t row = 0; row < 3 * C; ++row) {
      const RepackSource src = repack_source(C, cfg.n_head, attn.R, row);
      std::copy_n(qkv.begin() + (static_cast<index_t>(src.matrix) * C + src.row) * C, C,
                  params.begin() + s.w_attn + row * C);
    }
    draw(s.w_o, C * C, residual);
    draw(s.w_fc, 4 * C * C, std);
    draw(s.w_proj, 4 * C * C, residual);
    fill(s.w_std, attn.gate_count(), raw_gate_for(kGateInitStd, attn.gate_param));
    fill(s.w_rec, attn.gate_count(), raw_gate_for(kGateInitRec, attn.gate_param));
    fill(s.a, cfg.n_head, kRestartInit);
  }
  fill(layout.lnf_w, C, 1.f);
}

/// The effective gates g = gate(w) and restart mixes α = clamp(a) of each layer, read from
/// fp32 parameters of cfg: params[i] is the value at offset base + i of the flat layout (the
/// whole buffer with base 0, or any part holding every gate and restart value).
inline std::vector<LayerGateStats> gpt2_gate_stats(const GPT2Config& cfg, const GPT2Layout& layout,
                                                   std::span<const float> params,
                                                   index_t base = 0) {
  std::vector<LayerGateStats> out;
  const auto attn = cfg.attention();
  for (const auto& s : layout.layers) {
    LayerGateStats g;
    auto values = [&](index_t off, index_t n, auto f) {
      std::vector<double> v;
      for (index_t i = 0; i < n; ++i)
        v.push_back(f(params[static_cast<std::size_t>(off - base + i)]));
      return v;
    };
    auto collect = [&](index_t off, index_t n, auto f) {
      return detail::summarize(values(off, n, f));
    };
    auto gate = [&](float w) { return static_cast<double>(effective_gate(w, attn.gate_param)); };
    auto alpha = [](float a) { return static_cast<double>(effective_restart(a)); };
    if (s.w_std >= 0) {
      g.gated = true;
      g.g_std_values = values(s.w_std, attn.gate_count(), gate);
      g.g_rec_values = values(s.w_rec, attn.gate_count(), gate);
      g.g_std = detail::summarize(g.g_std_values);
      g.g_rec = detail::summarize(g.g_rec_values);
    }
    if (s.a >= 0) {
      g.restart = true;
      g.alpha = collect(s.a, cfg.n_head, alpha);
    }
    out.push_back(g);
  }
  return out;
}

}  // namespace ra::model
