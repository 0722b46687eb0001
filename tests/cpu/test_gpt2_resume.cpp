// tests/cpu/test_gpt2_resume.cpp — checkpoints resume bit-exactly: a tiny RA GPT-2 (dropout
// on, so the generator state matters; a small data file, so epochs roll over) trained 8 steps
// straight equals 3 steps, a checkpoint, a fresh process-like restart (new model, optimizer,
// loader, state) and 5 more steps — losses, parameters and AdamW moments bit for bit. Plus
// the checkpoint's errors: missing, bad magic, truncated, another model, another loader.
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <ra/nn.hpp>

#include "reference.hpp"

namespace {

using namespace ra;

nn::GPT2Config tiny_ra() {
  nn::GPT2Config c;
  c.vocab = 257;
  c.max_seq = 16;
  c.n_layer = 2;
  c.n_head = 2;
  c.C = 64;
  c.arm = nn::Arm::ra;
  c.R = 4;
  c.gates = GateMode::per_head;
  c.restart = true;
  c.dropout = 0.1f;
  return c;
}

// 300 random tokens: 18 windows of 17, so 4-window batches cross epoch boundaries.
std::shared_ptr<nn::TokenFile> small_data(std::mt19937_64& rng) {
  auto t = std::make_shared<nn::TokenFile>();
  t->path = "random";
  t->vocab = 257;
  for (int i = 0; i < 300; ++i) t->tokens.push_back(static_cast<std::uint16_t>(rng() % 257));
  return t;
}

// Everything one run holds, made as the trainer makes it.
struct Run {
  nn::GPT2<float> model;
  nn::AdamW opt;
  nn::BatchLoader loader;
  nn::TrainingState state;
  nn::CosineSchedule lr{1e-3, 1e-4, 2, 8};
  std::vector<std::int32_t> batch;
  Run(const nn::GPT2Config& cfg, std::shared_ptr<nn::TokenFile> data, std::uint64_t seed)
      : model(cfg),
        opt(model.num_parameters(), model.parameter_table()),
        loader(std::move(data), 4, 16, seed),
        state(seed) {
    model.init_gpt2(seed);
  }
  double step() {
    return nn::train_step(model, opt, loader, state, lr.at(static_cast<index_t>(state.step)), batch)
        .loss;
  }
};

bool same_bits(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

struct TempFile {
  std::string path = (std::filesystem::temp_directory_path() /
                      ("ra_test_ckpt_" + std::to_string(std::random_device{}()) + ".bin"))
                         .string();
  ~TempFile() { std::filesystem::remove(path); }
};

}  // namespace

TEST_CASE("checkpoint resume is bit-exact (params, AdamW state, step, generator, data cursor)",
          "[gpt2][checkpoint]") {
  RA_TEST_RNG(rng);
  const auto data = small_data(rng);
  const std::uint64_t seed = rng();  // model init, data order and dropout of the run
  Run straight(tiny_ra(), data, seed);
  std::vector<double> want;
  for (int s = 0; s < 8; ++s) want.push_back(straight.step());

  TempFile ckpt;
  {
    Run first(tiny_ra(), data, seed);
    for (int s = 0; s < 3; ++s) CHECK(first.step() == want[s]);
    first.state.meta = "--steps 8";
    nn::save_checkpoint(ckpt.path, first.model, first.opt, first.state, first.loader);
  }
  CHECK(nn::read_checkpoint_config(ckpt.path) == tiny_ra());
  // A fresh run, deliberately initialised differently: the checkpoint must override it all
  // (the data seed is what the loader is made with, and is checked).
  Run resumed(tiny_ra(), data, seed);
  resumed.model.init_gpt2(seed + 1);
  resumed.state = nn::TrainingState(seed + 1);
  nn::load_checkpoint(ckpt.path, resumed.model, resumed.opt, resumed.state, resumed.loader);
  CHECK(resumed.state.step == 3);
  CHECK(resumed.state.meta == "--steps 8");
  for (int s = 3; s < 8; ++s) {
    INFO("step " << s);
    const double l = resumed.step();
    CHECK(std::memcmp(&l, &want[s], sizeof l) == 0);
  }
  CHECK(same_bits(resumed.model.parameters(), straight.model.parameters()));
  CHECK(same_bits(resumed.opt.first_moment(), straight.opt.first_moment()));
  CHECK(same_bits(resumed.opt.second_moment(), straight.opt.second_moment()));
  CHECK(resumed.opt.steps() == straight.opt.steps());
  CHECK(resumed.loader.cursor() == straight.loader.cursor());
  CHECK(resumed.loader.cursor().epoch >= 1);  // the run crossed an epoch boundary
  CHECK(resumed.state.tokens == straight.state.tokens);
  CHECK(resumed.state.rng == straight.state.rng);
}

TEST_CASE("checkpoint errors name the file and the problem", "[gpt2][checkpoint][errors]") {
  RA_TEST_RNG(rng);
  const auto data = small_data(rng);
  Run run(tiny_ra(), data, 1);
  run.step();
  TempFile ckpt;
  nn::save_checkpoint(ckpt.path, run.model, run.opt, run.state, run.loader);
  std::string bytes;
  {
    std::ifstream f(ckpt.path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  }
  auto write = [&](const std::string& b) {
    std::ofstream f(ckpt.path, std::ios::binary | std::ios::trunc);
    f.write(b.data(), static_cast<std::streamsize>(b.size()));
  };
  Run other(tiny_ra(), data, 1);
  auto load = [&] {
    nn::load_checkpoint(ckpt.path, other.model, other.opt, other.state, other.loader);
  };

  SECTION("missing") {
    CHECK_THROWS_WITH(nn::read_checkpoint_config(ckpt.path + ".none"),
                      Catch::Contains("cannot open") && Catch::Contains(".none"));
  }
  SECTION("bad magic") {
    write("NOTACKPT" + bytes.substr(8));
    CHECK_THROWS_WITH(load(), Catch::Contains("bad magic"));
  }
  SECTION("truncated") {
    write(bytes.substr(0, bytes.size() / 2));
    CHECK_THROWS_WITH(load(), Catch::Contains("truncated") && Catch::Contains(ckpt.path));
  }
  SECTION("another model") {
    auto cfg = tiny_ra();
    cfg.arm = nn::Arm::baseline;
    Run base(cfg, data, 1);
    CHECK_THROWS_WITH(nn::load_checkpoint(ckpt.path, base.model, base.opt, base.state, base.loader),
                      Catch::Contains("another model") && Catch::Contains("arm"));
  }
  SECTION("another loader") {
    nn::BatchLoader wide(data, 2, 16, 1);
    CHECK_THROWS_WITH(nn::load_checkpoint(ckpt.path, other.model, other.opt, other.state, wide),
                      Catch::Contains("B = 4") && Catch::Contains("B = 2"));
  }
}
