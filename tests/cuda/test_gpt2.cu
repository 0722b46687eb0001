// tests/cuda/test_gpt2.cu — the GPU GPT-2 (ra/cuda/gpt2.cuh) against the CPU model
// (ra/nn/gpt2.hpp, through gpt2_reference.cpp), both arms:
//   * fp32 compute: the loss and EVERY parameter gradient, tensor by tensor (relative L2
//     error 2e-3: both sides store fp32 activations and accumulate in different orders), with
//     dropout on (the GPU masks must be the CPU's), then one AdamW step (parameters 1e-5);
//   * bf16 compute: the loss within 0.03 of the fp32 CPU model, gradients in the same
//     direction (cosine > 0.98 overall and > 0.9 per tensor);
//   * logits() without targets; determinism (two backwards give identical bits); a short
//     training run lowers the loss; checkpoints written from the GPU model resume
//     bit-exactly; bad input is refused with errors naming the argument.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <ra/cuda/gpt2.cuh>
#include <ra/nn/checkpoint.hpp>
#include <ra/nn/schedule.hpp>

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

double rel_l2(const float* a, const float* ref, index_t n) {
  double d = 0.0, r = 0.0;
  for (index_t i = 0; i < n; ++i) {
    d += (double(a[i]) - ref[i]) * (double(a[i]) - ref[i]);
    r += double(ref[i]) * ref[i];
  }
  return r > 0.0 ? std::sqrt(d / r) : std::sqrt(d);
}

double cosine(const float* a, const float* b, index_t n) {
  double ab = 0.0, aa = 0.0, bb = 0.0;
  for (index_t i = 0; i < n; ++i) {
    ab += double(a[i]) * b[i];
    aa += double(a[i]) * a[i];
    bb += double(b[i]) * b[i];
  }
  return aa > 0.0 && bb > 0.0 ? ab / std::sqrt(aa * bb) : (aa == bb ? 1.0 : 0.0);
}

}  // namespace

TEST_CASE("GPU GPT-2 in fp32 matches the CPU model: loss, every gradient, one AdamW step",
          "[gpt2]") {
  auto g = rng(0x6b72);
  for (auto arm : {nn::Arm::baseline, nn::Arm::ra}) {
    auto cfg = tiny(arm);
    cfg.dropout = 0.1f;
    DYNAMIC_SECTION("arm " << nn::name(arm)) {
      const Batch batch(g, 2, 48, cfg.vocab);
      const std::uint64_t dseed = 99;
      const double lr = 1e-3;
      const auto ref =
          reference_gpt2(cfg, false, 7, batch.tokens, batch.targets, batch.B, batch.T, dseed, lr);
      cuda::GPT2<float> model(cfg);
      model.init_gpt2(7);
      model.set_training(true);
      model.set_dropout_seed(dseed);
      const double loss = model.forward(batch.in(), batch.out());
      CHECK(loss == Approx(ref.loss).epsilon(1e-5));
      model.backward();
      const auto grads = model.gradients();
      REQUIRE(grads.size() == ref.grads.size());
      for (const auto& p : model.parameter_table()) {
        const double e = rel_l2(grads.data() + p.offset, ref.grads.data() + p.offset, p.size());
        INFO(p.name << ": relative L2 error " << e);
        CHECK(e < 2e-3);
      }
      cuda::AdamW opt(model.num_parameters(), model.parameter_table());
      const double norm = cuda::optimizer_step(model, opt, lr);
      CHECK(std::isfinite(norm));
      const auto after = model.parameters();
      CHECK(rel_l2(after.data(), ref.params_after.data(), static_cast<index_t>(after.size())) <
            1e-5);
    }
  }
}

TEST_CASE("GPU GPT-2 in bf16 tracks the fp32 CPU model", "[gpt2]") {
  auto g = rng(0x6b73);
  for (auto arm : {nn::Arm::baseline, nn::Arm::ra}) {
    const auto cfg = tiny(arm);
    DYNAMIC_SECTION("arm " << nn::name(arm)) {
      const Batch batch(g, 2, 64, cfg.vocab);
      const auto ref =
          reference_gpt2(cfg, false, 11, batch.tokens, batch.targets, batch.B, batch.T, 0, 0.0);
      cuda::GPT2<bf16> model(cfg);
      model.init_gpt2(11);
      const double loss = model.forward(batch.in(), batch.out());
      CHECK(loss == Approx(ref.loss).margin(0.03));
      model.backward();
      const auto grads = model.gradients();
      CHECK(cosine(grads.data(), ref.grads.data(), static_cast<index_t>(grads.size())) > 0.98);
      for (const auto& p : model.parameter_table()) {
        const double c = cosine(grads.data() + p.offset, ref.grads.data() + p.offset, p.size());
        INFO(p.name << ": cosine " << c);
        CHECK(c > 0.9);
      }
    }
  }
}

TEST_CASE("GPU GPT-2 logits match the CPU model and are refused after a forward with targets",
          "[gpt2]") {
  auto g = rng(0x6b74);
  const auto cfg = tiny(nn::Arm::ra);
  const Batch batch(g, 2, 20, cfg.vocab);
  const auto ref = reference_gpt2(cfg, false, 5, batch.tokens, {}, batch.B, batch.T, 0, 0.0, 1, 13);
  cuda::GPT2<float> model(cfg);
  model.init_gpt2(5);
  model.set_training(false);
  CHECK(std::isnan(model.forward(batch.in())));
  const auto z = model.logits(1, 13);
  REQUIRE(z.size() == ref.logits.size());
  double err = 0.0, norm = 0.0;
  for (std::size_t i = 0; i < z.size(); ++i) {
    err += (z[i] - ref.logits[i]) * (z[i] - ref.logits[i]);
    norm += ref.logits[i] * ref.logits[i];
  }
  CHECK(std::sqrt(err / norm) < 1e-4);
  CHECK_THROWS_WITH(model.logits(2, 0), Catch::Contains("position"));
  CHECK_THROWS_WITH(model.backward(), Catch::Contains("forward() with targets"));
  model.forward(batch.in(), batch.out());
  CHECK_THROWS_WITH(model.logits(0, 0), Catch::Contains("without targets"));
}

TEST_CASE("GPU GPT-2 backward is deterministic", "[gpt2][sanitize]") {
  auto g = rng(0x6b75);
  const auto cfg = tiny(nn::Arm::ra);
  const Batch batch(g, 3, 40, cfg.vocab);
  cuda::GPT2<bf16> model(cfg);
  model.init_gpt2(1);
  model.forward(batch.in(), batch.out());
  model.backward();
  const auto first = model.gradients();
  model.forward(batch.in(), batch.out());
  model.backward();
  CHECK(bitwise_equal(first, model.gradients()));
}

TEST_CASE("GPU GPT-2 trains: the loss falls, and a checkpoint resumes bit-exactly", "[gpt2]") {
  auto data = std::make_shared<nn::TokenFile>();
  data->path = "pattern";
  data->vocab = 257;
  for (int i = 0; i < 4000; ++i) data->tokens.push_back(static_cast<std::uint16_t>((i * 7) % 50));
  const auto cfg = tiny(nn::Arm::ra);
  const nn::CosineSchedule lr{3e-3, 3e-4, 2, 40};
  struct Run {
    cuda::GPT2<bf16> model;
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
  const auto path = (std::filesystem::temp_directory_path() /
                     ("ra_gpu_ckpt_" + std::to_string(std::random_device{}()) + ".bin"))
                        .string();
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

TEST_CASE("GPU GPT-2 refuses bad input, naming it", "[gpt2]") {
  const auto cfg = tiny(nn::Arm::ra);
  cuda::GPT2<bf16> model(cfg);
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
  CHECK_THROWS_AS(cuda::GPT2<bf16>(bad), ra::error);
  auto one = cfg;
  one.n_head = 1;
  one.C = 68;  // not a multiple of 8 (and D = 68 unsupported)
  CHECK_THROWS_AS(cuda::GPT2<bf16>(one), ra::error);
}

}  // namespace ra::test
