// tests/cuda/test_gpt2.cu — the GPU GPT-2 (nn::CudaGPT2<T>: the one model, ra/nn/gpt2_model.hpp, on
// the CUDA backend, ra/cuda/gpt2_backend.cuh) against the same model on the CPU backend
// (nn::GPT2<T>, through gpt2_reference.cpp), both arms, by the precision rule
// (tests/common/precision.hpp): the exact reference is the CPU model in double, the
// same-precision one the CPU model in the GPU model's precision (fp32 or bf16 storage), and
// every parameter tensor's gradient, the loss, the logits and the parameters after an AdamW
// step must be within twice its error plus a floor:
//   * bf16: u·√(B·T)·RMS: whole-model gradients have no tracked elementary terms; a
//     parameter's gradient sums the B·T tokens' terms, each through bf16 roundings;
//   * fp32: the CPU model sums in double and rounds only what it stores, while a
//     same-precision model sums in fp32, whose K-term sums carry up to γ_K = K·u/(1 − K·u) of
//     the terms' scale (the classical bound), so the floor is γ_4C·RMS (4C, the MLP's
//     reduction, the longest in a layer).
// Each tensor is one row (the element check uses the tensor's largest naive error).
// Also: both MLP paths and both bias-gradient paths, asked for explicitly and checked to have
// run; logits() without targets; determinism; a short training run lowers the loss and a
// checkpoint resumes bit-exactly; checkpoints move CPU -> GPU -> CPU with identical state;
// gate_stats() against a hand computation; the model's device memory is released with it;
// bad input is refused with errors naming the argument.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <ra/nn/gpt2_cuda.cuh>
#include <ra/nn/checkpoint.hpp>
#include <ra/nn/schedule.hpp>

#include "../common/precision.hpp"
#include "cuda_test_utils.cuh"
#include "gpt2_reference.hpp"

namespace ra::test {
namespace {

nn::GPT2Config tiny(nn::Arm arm) {
  nn::GPT2Config c;
  c.vocab = 257;
  c.max_seq = 64;
  c.n_layer = 2;
  c.n_head = 2;
  c.C = 128;  // D = 64
  c.arm = arm;
  c.R = 4;
  c.gates = GateMode::per_head;
  c.restart = arm == nn::Arm::ra;
  return c;
}

// Tokens and targets (B,T) row-major; one ignored target.
struct Batch {
  index_t B, T;
  std::vector<std::int32_t> tokens, targets;
  Batch(std::mt19937_64& g, index_t b, index_t t, index_t vocab) : B(b), T(t) {
    std::uniform_int_distribution<std::int32_t> tok(0, static_cast<std::int32_t>(vocab - 1));
    for (index_t i = 0; i < B * T; ++i) {
      tokens.push_back(tok(g));
      targets.push_back(tok(g));
    }
    targets[3] = -1;
  }
  StridedView<const std::int32_t, 2> in() const { return make_view(tokens.data(), shape(B, T)); }
  StridedView<const std::int32_t, 2> out() const { return make_view(targets.data(), shape(B, T)); }
};

template <class V>
std::vector<double> slice(const V& v, index_t offset, index_t n) {
  return std::vector<double>(v.begin() + offset, v.begin() + offset + n);
}

// The floor of the rule for one tensor: `scale` times its RMS.
std::vector<double> rms_floor(const std::vector<double>& ref, double scale) {
  double s = 0.0;
  for (double x : ref) s += x * x;
  const double rms = ref.empty() ? 0.0 : std::sqrt(s / static_cast<double>(ref.size()));
  return std::vector<double>(ref.size(), scale * rms);
}

// Judges every parameter tensor of `got` (flat, layout order) against naive and exact.
template <class Model>
void judge_tensors(const std::string& family, const Model& model, const std::vector<float>& got,
                   const std::vector<float>& naive, const std::vector<float>& exact,
                   double floor_scale) {
  REQUIRE(got.size() == exact.size());
  REQUIRE(naive.size() == exact.size());
  for (const auto& p : model.parameter_table()) {
    const auto ref = slice(exact, p.offset, p.size());
    RA_CHECK_PRECISION(judge(family, p.name, slice(got, p.offset, p.size()),
                             slice(naive, p.offset, p.size()), ref, rms_floor(ref, floor_scale),
                             static_cast<std::size_t>(p.size())));
  }
}

// The floor of the rule for the model's outputs, as a multiple of a tensor's RMS (see the
// top of this file); `tokens` is B·T.
double floor_scale(bool bf16, const nn::GPT2Config& cfg, index_t tokens) {
  const double ku = 4.0 * static_cast<double>(cfg.C) * unit_roundoff(DType::f32);
  return bf16 ? unit_roundoff(DType::bf16) * std::sqrt(static_cast<double>(tokens))
              : ku / (1.0 - ku);
}

}  // namespace

TEST_CASE("GPU GPT-2 in fp32 keeps the precision rule: loss, every gradient, one AdamW step",
          "[gpt2]") {
  auto g = rng(0x6b72);
  for (auto arm : {nn::Arm::baseline, nn::Arm::ra}) {
    auto cfg = tiny(arm);
    cfg.dropout = 0.1f;
    DYNAMIC_SECTION("arm " << nn::name(arm)) {
      const Batch batch(g, 2, 48, cfg.vocab);
      const std::uint64_t dseed = 99;
      const double lr = 1e-3;
      auto ref = [&](CpuCompute c) {
        return reference_gpt2(cfg, c, 7, batch.tokens, batch.targets, batch.B, batch.T, dseed, lr);
      };
      const auto exact = ref(CpuCompute::f64), naive = ref(CpuCompute::f32);
      nn::CudaGPT2<float> model(cfg);
      model.init_gpt2(7);
      model.set_training(true);
      model.set_dropout_seed(dseed);
      const double loss = model.forward(batch.in(), batch.out());
      const double fs = floor_scale(false, cfg, batch.B * batch.T);
      RA_CHECK_PRECISION(judge_scalar("gpt2 fp32 loss", "loss", loss, naive.loss, exact.loss,
                                      fs * std::abs(exact.loss)));
      model.backward();
      judge_tensors("gpt2 fp32 gradients", model, model.gradients(), naive.grads, exact.grads, fs);
      cuda::AdamW opt(model.num_parameters(), model.parameter_table());
      const double norm = model.step(opt, lr).grad_norm;
      CHECK(std::isfinite(norm));
      // The first Adam step moves each parameter by lr·g/(|g| + ε) (g clipped by c): its
      // floor adds the gradient's floor times that step's sensitivity, lr·c·ε/(c|g| + ε)²,
      // and 2·lr where the gradient is within its floor of 0 (the step's sign is not
      // determined at this precision).
      const double eps = nn::AdamWConfig{}.eps;
      double g2 = 0.0;
      for (float g : exact.grads) g2 += static_cast<double>(g) * g;
      const double clip = std::min(1.0, nn::AdamWConfig{}.grad_clip / std::sqrt(g2));
      const auto after = model.parameters();
      for (const auto& p : model.parameter_table()) {
        const auto ref = slice(exact.params_after, p.offset, p.size());
        const auto g_ref = slice(exact.grads, p.offset, p.size());
        auto floor = rms_floor(ref, fs);
        const auto g_floor = rms_floor(g_ref, fs);
        for (std::size_t i = 0; i < floor.size(); ++i) {
          const double cg = clip * std::abs(g_ref[i]) + eps;
          floor[i] += std::abs(g_ref[i]) <= g_floor[i] ? 2.0 * lr
                                                       : lr * clip * eps / (cg * cg) * g_floor[i];
        }
        RA_CHECK_PRECISION(judge("gpt2 fp32 AdamW step", p.name, slice(after, p.offset, p.size()),
                                 slice(naive.params_after, p.offset, p.size()), ref, floor,
                                 static_cast<std::size_t>(p.size())));
      }
    }
  }
}

TEST_CASE("GPU GPT-2 in bf16 keeps the precision rule on every MLP and bias-gradient path",
          "[gpt2]") {
  auto g = rng(0x6b73);
  for (auto arm : {nn::Arm::baseline, nn::Arm::ra}) {
    const auto cfg = tiny(arm);
    const Batch batch(g, 2, 64, cfg.vocab);
    auto ref = [&](CpuCompute c) {
      return reference_gpt2(cfg, c, 11, batch.tokens, batch.targets, batch.B, batch.T, 0, 0.0);
    };
    const auto exact = ref(CpuCompute::f64), naive = ref(CpuCompute::bf16);
    const double fs = floor_scale(true, cfg, batch.B * batch.T);
    const std::pair<bool, bool> paths[] = {{true, true}, {false, false}, {true, false}};
    for (const auto& [gelu, bias_grad] : paths) {
      INFO("arm " << nn::name(arm) << ", fused GELU asked " << gelu << ", fused bias grad asked "
                  << bias_grad);
      nn::CudaGPT2<bf16> model(cfg, cuda::default_context(), nullptr,
                               cuda::GPT2Options{gelu, bias_grad});
      model.init_gpt2(11);
      const double loss = model.forward(batch.in(), batch.out());
      // The path asked for is the path that ran (no silent fallback on this device).
      CHECK(model.backend().fused_gelu() == gelu);
      CHECK(model.backend().fused_bias_grad() == bias_grad);
      RA_CHECK_PRECISION(judge_scalar("gpt2 bf16 loss", "loss", loss, naive.loss, exact.loss,
                                      fs * std::abs(exact.loss)));
      model.backward();
      judge_tensors("gpt2 bf16 gradients", model, model.gradients(), naive.grads, exact.grads, fs);
    }
  }
}

TEST_CASE("GPU GPT-2 logits keep the precision rule and are refused after a forward with targets",
          "[gpt2]") {
  auto g = rng(0x6b74);
  const auto cfg = tiny(nn::Arm::ra);
  const Batch batch(g, 2, 20, cfg.vocab);
  auto ref = [&](CpuCompute c) {
    return reference_gpt2(cfg, c, 5, batch.tokens, {}, batch.B, batch.T, 0, 0.0, 1, 13);
  };
  const auto exact = ref(CpuCompute::f64), naive = ref(CpuCompute::f32);
  nn::CudaGPT2<float> model(cfg);
  model.init_gpt2(5);
  model.set_training(false);
  CHECK(std::isnan(model.forward(batch.in())));
  const auto z = model.logits(1, 13);
  RA_CHECK_PRECISION(judge("gpt2 fp32 logits", "logits(1, 13)", z, naive.logits, exact.logits,
                           rms_floor(exact.logits, floor_scale(false, cfg, batch.B * batch.T)),
                           z.size()));
  CHECK_THROWS_WITH(model.logits(2, 0), Catch::Contains("position"));
  CHECK_THROWS_WITH(model.backward(), Catch::Contains("forward() with targets"));
  model.forward(batch.in(), batch.out());
  CHECK_THROWS_WITH(model.logits(0, 0), Catch::Contains("without targets"));
}

TEST_CASE("GPU GPT-2 backward is deterministic", "[gpt2][sanitize]") {
  auto g = rng(0x6b75);
  const auto cfg = tiny(nn::Arm::ra);
  const Batch batch(g, 3, 40, cfg.vocab);
  nn::CudaGPT2<bf16> model(cfg);
  model.init_gpt2(1);
  model.forward(batch.in(), batch.out());
  model.backward();
  const auto first = model.gradients();
  model.forward(batch.in(), batch.out());
  model.backward();
  CHECK(bitwise_equal(first, model.gradients()));
}

namespace {

std::shared_ptr<nn::TokenFile> pattern_tokens() {
  auto data = std::make_shared<nn::TokenFile>();
  data->path = "pattern";
  data->vocab = 257;
  for (int i = 0; i < 4000; ++i) data->tokens.push_back(static_cast<std::uint16_t>((i * 7) % 50));
  return data;
}

std::string temp_path(const char* stem) {
  return (std::filesystem::temp_directory_path() /
          (std::string(stem) + std::to_string(std::random_device{}()) + ".bin"))
      .string();
}

}  // namespace

TEST_CASE("GPU GPT-2 trains: the loss falls, and a checkpoint resumes bit-exactly", "[gpt2]") {
  const auto data = pattern_tokens();
  const auto cfg = tiny(nn::Arm::ra);
  const nn::CosineSchedule lr{3e-3, 3e-4, 2, 40};
  struct Run {
    nn::CudaGPT2<bf16> model;
    cuda::AdamW opt;
    nn::BatchLoader loader;
    nn::TrainingState state;
    std::vector<std::int32_t> batch;
    Run(const nn::GPT2Config& c, std::shared_ptr<const nn::TokenFile> d)
        : model(c),
          opt(model.num_parameters(), model.parameter_table()),
          loader(d, 4, 32, 3),
          state(3) {
      model.init_gpt2(3);
    }
  };
  Run a(cfg, data);
  auto step = [&](Run& r) {
    return nn::train_step(r.model, r.opt, r.loader, r.state,
                          lr.at(static_cast<index_t>(r.state.step)), r.batch)
        .loss;
  };
  const double first = step(a);
  for (int i = 0; i < 9; ++i) step(a);
  const auto path = temp_path("ra_gpu_ckpt_");
  nn::save_checkpoint(path, a.model, a.opt, a.state, a.loader);
  double last = 0.0;
  for (int i = 0; i < 30; ++i) last = step(a);
  INFO("loss " << first << " -> " << last);
  CHECK(last < 0.5 * first);

  Run b(cfg, data);
  nn::load_checkpoint(path, b.model, b.opt, b.state, b.loader);
  std::filesystem::remove(path);
  for (int i = 0; i < 30; ++i) step(b);
  CHECK(bitwise_equal(a.model.parameters(), b.model.parameters()));
  CHECK(a.opt.steps() == b.opt.steps());
}

TEST_CASE("checkpoints move CPU -> GPU -> CPU with identical state in fp32", "[gpt2]") {
  const auto data = pattern_tokens();
  const auto cfg = tiny(nn::Arm::ra);
  const index_t B = 2, T = 32;
  const std::uint64_t seed = 5;
  const double lr = 2e-3;
  const auto from_cpu = temp_path("ra_ckpt_cpu_"), from_gpu = temp_path("ra_ckpt_gpu_");
  // CPU: 3 steps, save, step.
  const CpuRunState cpu = cpu_run(cfg, data, B, T, seed, 3, "", from_cpu, lr);

  // GPU: load the CPU's checkpoint: the same parameters and moments, bit for bit; save it.
  nn::CudaGPT2<float> model(cfg);
  cuda::AdamW opt(model.num_parameters(), model.parameter_table());
  nn::BatchLoader loader(data, B, T, seed);
  nn::TrainingState state(seed);
  nn::load_checkpoint(from_cpu, model, opt, state, loader);
  CHECK(bitwise_equal(model.parameters(), cpu.params));
  CHECK(bitwise_equal(opt.first_moment(), cpu.m));
  CHECK(bitwise_equal(opt.second_moment(), cpu.v));
  CHECK(opt.steps() == cpu.optimizer_steps);
  CHECK(state.step == cpu.step);
  nn::save_checkpoint(from_gpu, model, opt, state, loader);
  std::vector<std::int32_t> batch;
  const double gpu_loss = nn::train_step(model, opt, loader, state, lr, batch).loss;
  // The next step's loss, on the same batch, in fp32 on both sides.
  CHECK(gpu_loss == Approx(cpu.next_loss).epsilon(1e-5));

  // CPU again, from the GPU's checkpoint: the state the first CPU run had, and the same step.
  const CpuRunState back = cpu_run(cfg, data, B, T, seed, 0, from_gpu, "", lr);
  std::filesystem::remove(from_cpu);
  std::filesystem::remove(from_gpu);
  CHECK(bitwise_equal(back.params, cpu.params));
  CHECK(bitwise_equal(back.m, cpu.m));
  CHECK(bitwise_equal(back.v, cpu.v));
  CHECK(back.optimizer_steps == cpu.optimizer_steps);
  CHECK(back.step == cpu.step);
  CHECK(back.next_loss == cpu.next_loss);
}

TEST_CASE("GPU GPT-2 gate_stats() reports the effective gates and mixes", "[gpt2]") {
  auto cfg = tiny(nn::Arm::ra);
  cfg.gate_param = GateParam::clamp;
  nn::CudaGPT2<float> model(cfg);
  model.init_gpt2(2);
  auto p = model.parameters();
  // Layer 0: w_std (0.5, -1) -> g (0.5, 1e-8); w_rec (0.2, 0.4); a (-0.1, 0.7) -> (0, 0.5).
  // Layer 1: the initial values (0.9, 0.1 and 0.05 everywhere).
  const auto& s0 = model.layout().layers[0];
  p[static_cast<std::size_t>(s0.w_std)] = 0.5f;
  p[static_cast<std::size_t>(s0.w_std + 1)] = -1.f;
  p[static_cast<std::size_t>(s0.w_rec)] = 0.2f;
  p[static_cast<std::size_t>(s0.w_rec + 1)] = 0.4f;
  p[static_cast<std::size_t>(s0.a)] = -0.1f;
  p[static_cast<std::size_t>(s0.a + 1)] = 0.7f;
  model.set_parameters(p);
  const auto st = model.gate_stats();
  REQUIRE(st.size() == 2);
  CHECK(st[0].gated);
  CHECK(st[0].restart);
  CHECK(st[0].g_std.min == Approx(1e-8).epsilon(1e-6));
  CHECK(st[0].g_std.max == Approx(0.5));
  CHECK(st[0].g_std.mean == Approx((0.5 + 1e-8) / 2));
  CHECK(st[0].g_rec.mean == Approx(0.3));
  CHECK(st[0].alpha.min == 0.0);
  CHECK(st[0].alpha.max == Approx(0.5));
  CHECK(st[0].alpha.mean == Approx(0.25));
  CHECK(st[1].g_std.mean == Approx(kGateInitStd));
  CHECK(st[1].g_rec.mean == Approx(kGateInitRec));
  CHECK(st[1].alpha.mean == Approx(kRestartInit));
  // The baseline arm has no gates.
  nn::CudaGPT2<float> base(tiny(nn::Arm::baseline));
  const auto bs = base.gate_stats();
  REQUIRE(bs.size() == 2);
  CHECK_FALSE(bs[0].gated);
  CHECK_FALSE(bs[0].restart);
}

TEST_CASE("GPU GPT-2 reads and writes one tensor by name, as the CPU model does", "[gpt2]") {
  auto g = rng(0x6b77);
  const auto cfg = tiny(nn::Arm::ra);
  nn::CudaGPT2<float> model(cfg);
  model.init_gpt2(4);
  const auto& info = model.info("h.1.mlp.b_fc");
  std::vector<float> v(static_cast<std::size_t>(info.size()));
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (float& x : v) x = u(g);
  auto all = model.parameters();
  model.set_parameter("h.1.mlp.b_fc", v);
  CHECK(bitwise_equal(model.parameter("h.1.mlp.b_fc"), v));
  std::copy(v.begin(), v.end(), all.begin() + info.offset);
  CHECK(bitwise_equal(model.parameters(), all));  // nothing else moved
  // The working copy follows: the same loss as a model given all parameters at once.
  nn::CudaGPT2<float> whole(cfg);
  whole.set_parameters(all);
  const Batch batch(g, 2, 16, cfg.vocab);
  CHECK(model.forward(batch.in(), batch.out()) == whole.forward(batch.in(), batch.out()));
  model.backward();
  const auto grads = model.gradients();
  const auto& wpe = model.info("wpe");
  CHECK(bitwise_equal(
      model.gradient("wpe"),
      std::vector<float>(grads.begin() + wpe.offset, grads.begin() + wpe.offset + wpe.size())));
  CHECK_THROWS_WITH(model.set_parameter("h.1.mlp.b_fc", std::vector<float>(3)),
                    Catch::Contains("size") && Catch::Contains("'h.1.mlp.b_fc'"));
  CHECK_THROWS_WITH(model.gradient("h.7.mlp.b_fc"), Catch::Contains("h.7.mlp.b_fc"));
  cuda::AdamW small(3, std::vector<nn::ParameterInfo>{});
  CHECK_THROWS_WITH(model.step(small, 1e-3), Catch::Contains("optimizer size"));
}

TEST_CASE("GPU GPT-2 releases its device memory with the object", "[gpt2][alloc]") {
  const auto cfg = tiny(nn::Arm::ra);
  auto g = rng(0x6b76);
  const Batch batch(g, 2, 16, cfg.vocab);
  auto lifetime = [&](bool check_inside, std::size_t before) {
    nn::CudaGPT2<bf16> model(cfg);
    model.init_gpt2(1);
    model.forward(batch.in(), batch.out());
    model.backward();
    if (check_inside) CHECK(free_device_bytes() < before);
  };
  // A first lifetime loads the kernels' code and creates the process-wide cuBLAS handles,
  // which stay; the second must give back everything it took.
  lifetime(false, 0);
  const auto before = free_device_bytes();
  lifetime(true, before);
  CHECK(free_device_bytes() == before);
}

TEST_CASE("GPU GPT-2 refuses bad input, naming it", "[gpt2]") {
  const auto cfg = tiny(nn::Arm::ra);
  nn::CudaGPT2<bf16> model(cfg);
  model.init_gpt2(1);
  std::vector<std::int32_t> tokens(2 * 8, 5), targets(2 * 8, 6);
  const auto in = make_view(static_cast<const std::int32_t*>(tokens.data()), shape(2, 8));
  const auto out = make_view(static_cast<const std::int32_t*>(targets.data()), shape(2, 8));
  CHECK_THROWS_WITH(model.backward(), Catch::Contains("forward() with targets"));
  tokens[9] = 257;
  CHECK_THROWS_WITH(model.forward(in, out), Catch::Contains("token at (1,1) is 257"));
  tokens[9] = -1;
  CHECK_THROWS_WITH(model.forward(in, out), Catch::Contains("token at (1,1) is -1"));
  tokens[9] = 5;
  targets[2] = -2;
  CHECK_THROWS_WITH(model.forward(in, out), Catch::Contains("target at (0,2) is -2"));
  targets[2] = 6;
  std::vector<std::int32_t> long_tokens(65, 1);
  CHECK_THROWS_WITH(
      model.forward(make_view(static_cast<const std::int32_t*>(long_tokens.data()), shape(1, 65))),
      Catch::Contains("sequence length T"));
  const auto short_targets =
      make_view(static_cast<const std::int32_t*>(targets.data()), shape(2, 4));
  CHECK_THROWS_WITH(model.forward(in, short_targets), Catch::Contains("'targets' has shape"));
  std::vector<float> wrong(3);
  CHECK_THROWS_WITH(model.set_parameters(wrong), Catch::Contains("num_parameters()"));
  CHECK(model.forward(in, out) > 0.0);  // still usable
  auto bad = cfg;
  bad.C = 100;  // D = 50: not a supported head dim
  CHECK_THROWS_AS(nn::CudaGPT2<bf16>(bad), ra::error);
  auto one = cfg;
  one.n_head = 1;
  one.C = 68;  // not a multiple of 8 (and D = 68 unsupported)
  CHECK_THROWS_AS(nn::CudaGPT2<bf16>(one), ra::error);
}

}  // namespace ra::test
