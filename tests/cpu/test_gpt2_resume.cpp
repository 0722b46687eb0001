// tests/cpu/test_gpt2_resume.cpp — checkpoints resume bit-exactly: a tiny RA GPT-2 (dropout
// on, so the generator state matters; a small data file, so epochs roll over) trained 8 steps
// straight equals 3 steps, a checkpoint, a fresh process-like restart (new model, optimizer,
// loader, state) and 5 more steps — losses, parameters and AdamW moments bit for bit. Plus
// the checkpoint's errors: missing, bad magic, truncated, another model, another loader or
// other training tokens; a flipped bit anywhere (the checksum); every field checked behind a
// valid checksum (NaN parameters, enumeration codes, counters that disagree, an old version);
// the previous checkpoint kept and used, saying why, when the newest fails; a failed save
// (a full disk) that leaves the previous checkpoint whole.
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <ra/core/checksum.hpp>
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
  Run(const nn::GPT2Config& cfg, std::shared_ptr<nn::TokenFile> data, std::uint64_t seed,
      const nn::AdamWConfig& optimizer = {})
      : model(cfg),
        opt(model.num_parameters(), model.parameter_table(), optimizer),
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
  ~TempFile() {
    std::filesystem::remove(path);
    std::filesystem::remove(nn::previous_checkpoint_path(path));
    std::filesystem::remove(path + ".tmp");
  }
};

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& path, const std::string& b) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(b.data(), static_cast<std::streamsize>(b.size()));
}

// Recomputes the trailing CRC-32C after an edit, so the edit meets the field checks behind it.
std::string resealed(std::string b) {
  const std::uint32_t crc = ra::crc32c(b.data(), b.size() - 4);
  std::memcpy(b.data() + b.size() - 4, &crc, 4);
  return b;
}

template <class V>
void poke(std::string& b, std::size_t offset, V v) {
  std::memcpy(b.data() + offset, &v, sizeof v);
}

// Byte offsets in a version-3 checkpoint of a model with n parameters (see checkpoint.hpp):
// a 24-byte header, then the config (5 int64, arm u8, R int32, gates u8, gate_param u8,
// restart u8, dropout float, bias u8), then (count, values) arrays, the optimizer kind (u8)
// before its t, m, v, and SPAM's five 8-byte fields after them.
struct Offsets {
  std::size_t n;
  std::size_t arm() const { return 24 + 40; }
  std::size_t gate_param() const { return arm() + 1 + 4 + 1; }
  std::size_t params() const { return 24 + 53 + 8; }
  std::size_t kind() const { return params() + 4 * n; }
  std::size_t adam_t() const { return kind() + 1; }
  std::size_t adam_v() const { return adam_t() + 8 + 8 + 4 * n + 8; }
  std::size_t spam() const { return adam_v() + 4 * n; }
  std::size_t spikes() const { return spam() + 4 * 8; }
  std::size_t step() const { return spam() + 5 * 8; }
};

// SPAM with a period short enough for a few steps to cross resets, warm-ups and clipping (a
// low threshold, so elements are clipped).
nn::AdamWConfig tiny_spam() {
  nn::AdamWConfig c;
  c.kind = nn::OptimizerKind::adamw_spam;
  c.spam.threshold = 1.5;
  c.spam.reset_interval = 3;
  c.spam.warmup = 2;
  c.spam.clip_delay = 1;
  return c;
}

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
  const std::string bytes = read_bytes(ckpt.path);
  auto write = [&](const std::string& b) { write_bytes(ckpt.path, b); };
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
  SECTION("other training tokens (same count)") {
    auto changed = std::make_shared<nn::TokenFile>(*data);  // the same tokens but one
    changed->tokens[100] = static_cast<std::uint16_t>((changed->tokens[100] + 1) % 257);
    nn::BatchLoader loader(changed, 4, 16, 1);
    CHECK_THROWS_WITH(
        nn::load_checkpoint(ckpt.path, other.model, other.opt, other.state, loader),
        Catch::Contains("300 training tokens (CRC-32C") && Catch::Contains("training data"));
  }
  SECTION("another model: every differing field is named") {
    auto cfg = tiny_ra();
    cfg.n_layer = 1;
    cfg.restart = false;
    Run small(cfg, data, 1);
    CHECK_THROWS_WITH(
        nn::load_checkpoint(ckpt.path, small.model, small.opt, small.state, small.loader),
        Catch::Contains("n_layer = 2 in the checkpoint, 1 in the model") &&
            Catch::Contains("restart = 1 in the checkpoint, 0 in the model"));
  }
  SECTION("an old version") {
    auto b = bytes;
    b[8] = 1;
    write(b);
    CHECK_THROWS_WITH(load(), Catch::Contains("version 1, expected version 3") &&
                                  Catch::Contains("before checkpoints had checksums"));
    b[8] = 2;
    write(b);
    CHECK_THROWS_WITH(load(), Catch::Contains("version 2, expected version 3") &&
                                  Catch::Contains("optimizer kind"));
  }
  SECTION("another optimizer kind, or other SPAM settings, by name") {
    Run spam(tiny_ra(), data, 1, tiny_spam());
    CHECK_THROWS_WITH(
        nn::load_checkpoint(ckpt.path, spam.model, spam.opt, spam.state, spam.loader),
        Catch::Contains("written by optimizer adamw;") &&
            Catch::Contains("this run's optimizer is adamw_spam (threshold 1.5, interval 3"));
    spam.step();
    nn::save_checkpoint(ckpt.path, spam.model, spam.opt, spam.state, spam.loader);
    CHECK_THROWS_WITH(load(), Catch::Contains("written by optimizer adamw_spam (threshold 1.5") &&
                                  Catch::Contains("this run's optimizer is adamw,"));
    auto longer = tiny_spam();
    longer.spam.reset_interval = 4;
    Run other_spam(tiny_ra(), data, 1, longer);
    CHECK_THROWS_WITH(nn::load_checkpoint(ckpt.path, other_spam.model, other_spam.opt,
                                          other_spam.state, other_spam.loader),
                      Catch::Contains("interval 3") && Catch::Contains("interval 4"));
  }
  SECTION("tokens of another tokenizer") {
    auto renamed = std::make_shared<nn::TokenFile>(*data);
    renamed->tokenizer = "sentencepiece:" + std::string(64, 'c');
    nn::BatchLoader loader(renamed, 4, 16, 1);
    CHECK_THROWS_WITH(nn::load_checkpoint(ckpt.path, other.model, other.opt, other.state, loader),
                      Catch::Contains("tokenizer ''") && Catch::Contains("'sentencepiece:cccc"));
  }
}

TEST_CASE("checkpoint resume with AdamW + SPAM is bit-exact across resets and clipping",
          "[gpt2][checkpoint][spam]") {
  RA_TEST_RNG(rng);
  const auto data = small_data(rng);
  const std::uint64_t seed = rng();
  Run straight(tiny_ra(), data, seed, tiny_spam());
  std::vector<double> want;
  for (int s = 0; s < 8; ++s) want.push_back(straight.step());
  CHECK(straight.opt.spikes() > 0);  // the low threshold clipped elements

  TempFile ckpt;
  std::uint64_t spikes_at_4 = 0;
  {
    // Saved at step 4: inside a period, after a reset (step 3), during the warm-up.
    Run first(tiny_ra(), data, seed, tiny_spam());
    for (int s = 0; s < 4; ++s) CHECK(first.step() == want[s]);
    spikes_at_4 = first.opt.spikes();
    nn::save_checkpoint(ckpt.path, first.model, first.opt, first.state, first.loader);
  }
  const auto c = nn::read_checkpoint(ckpt.path);
  CHECK(c.optimizer == nn::OptimizerKind::adamw_spam);
  CHECK(c.spam == tiny_spam().spam);
  CHECK(c.spam_spikes == spikes_at_4);
  Run resumed(tiny_ra(), data, seed, tiny_spam());
  nn::restore_checkpoint(c, resumed.model, resumed.opt, resumed.state, resumed.loader);
  CHECK(resumed.opt.spikes() == spikes_at_4);
  for (int s = 4; s < 8; ++s) {
    INFO("step " << s);
    const double l = resumed.step();
    CHECK(std::memcmp(&l, &want[s], sizeof l) == 0);
  }
  CHECK(same_bits(resumed.model.parameters(), straight.model.parameters()));
  CHECK(same_bits(resumed.opt.first_moment(), straight.opt.first_moment()));
  CHECK(same_bits(resumed.opt.second_moment(), straight.opt.second_moment()));
  CHECK(resumed.opt.spikes() == straight.opt.spikes());
}

TEST_CASE("checkpoint: a flipped bit anywhere is refused by its checksum",
          "[gpt2][checkpoint][errors]") {
  RA_TEST_RNG(rng);
  const auto data = small_data(rng);
  Run run(tiny_ra(), data, 1);
  run.step();
  TempFile ckpt;
  nn::save_checkpoint(ckpt.path, run.model, run.opt, run.state, run.loader);
  const std::string bytes = read_bytes(ckpt.path);
  const Offsets at{run.model.num_parameters()};
  // The config, a parameter, an AdamW moment, the step counter, the data cursor, the CRC.
  for (std::size_t i : {at.arm(), at.params() + 4 * 1000 + 2, at.adam_v() + 9, at.step(),
                        bytes.size() - 6, bytes.size() - 1}) {
    INFO("byte " << i);
    auto b = bytes;
    b[i] = static_cast<char>(b[i] ^ 0x04);
    write_bytes(ckpt.path, b);
    CHECK_THROWS_WITH(nn::read_checkpoint(ckpt.path),
                      Catch::Contains(ckpt.path) && Catch::Contains("fails its checksum"));
  }
}

TEST_CASE("checkpoint: every field is checked behind a valid checksum, naming it",
          "[gpt2][checkpoint][errors]") {
  RA_TEST_RNG(rng);
  const auto data = small_data(rng);
  Run run(tiny_ra(), data, 1);
  run.step();
  TempFile ckpt;
  nn::save_checkpoint(ckpt.path, run.model, run.opt, run.state, run.loader);
  const std::string bytes = read_bytes(ckpt.path);
  const Offsets at{run.model.num_parameters()};
  REQUIRE(nn::read_checkpoint(ckpt.path).state.step == 1);
  // The offsets are right: they find the counts and counters where the format puts them.
  auto peek_u64 = [&](std::size_t offset) {
    std::uint64_t v = 0;
    std::memcpy(&v, bytes.data() + offset, 8);
    return v;
  };
  REQUIRE(peek_u64(at.params() - 8) == at.n);
  REQUIRE(peek_u64(at.adam_t()) == 1);
  REQUIRE(static_cast<std::uint8_t>(bytes[at.kind()]) == 0);
  REQUIRE(peek_u64(at.adam_v() - 8) == at.n);
  REQUIRE(peek_u64(at.step()) == 1);
  auto expect = [&](std::string b, const std::string& what) {
    write_bytes(ckpt.path, resealed(std::move(b)));
    CHECK_THROWS_WITH(nn::read_checkpoint(ckpt.path),
                      Catch::Contains("checkpoint '" + ckpt.path + "'") && Catch::Contains(what));
  };
  auto b = bytes;
  SECTION("a NaN parameter") {
    poke(b, at.params() + 4 * 5, std::numeric_limits<float>::quiet_NaN());
    expect(b, "field 'parameters' holds nan at index 5 (tensor wte)");
  }
  SECTION("an infinite first moment") {
    const std::size_t m = at.adam_t() + 8 + 8;
    poke(b, m + 4 * (at.n - 1), std::numeric_limits<float>::infinity());
    expect(b, "field 'adam.m' holds inf at index " + std::to_string(at.n - 1));
  }
  SECTION("a negative second moment") {
    poke(b, at.adam_v(), -1.f);
    expect(b, "field 'adam.v' holds -1 at index 0 (tensor wte), expected finite values >= 0");
  }
  SECTION("an out-of-range gate parameterisation code") {
    poke(b, at.gate_param(), std::uint8_t{7});
    expect(b, "field 'config.gate_param' is 7, expected 0 (clamp) or 1 (softplus)");
  }
  SECTION("an out-of-range arm code") {
    poke(b, at.arm(), std::uint8_t{2});
    expect(b, "field 'config.arm' is 2, expected 0 (baseline) or 1 (ra)");
  }
  SECTION("a step counter edited beyond what was trained") {
    poke(b, at.step(), std::uint64_t{99});
    expect(b, "field 'adam.t' is 1, expected state.step = 99");
  }
  SECTION("an out-of-range optimizer kind") {
    poke(b, at.kind(), std::uint8_t{5});
    expect(b, "field 'optimizer.kind' is 5, expected 0 (adamw) or 1 (adamw_spam)");
  }
  SECTION("clipped spikes recorded for plain AdamW") {
    poke(b, at.spikes(), std::uint64_t{3});
    expect(b, "field 'spam.spikes' is 3, expected 0 (optimizer adamw clips no spikes)");
  }
  SECTION("an invalid SPAM setting") {
    poke(b, at.kind(), std::uint8_t{1});
    poke(b, at.spam(), -1.0);
    expect(b, "spam threshold");
  }
  SECTION("an invalid config (R >= D)") {
    poke(b, at.arm() + 1, std::int32_t{64});
    expect(b, "R");
  }
}

TEST_CASE("checkpoint: the previous one is kept and used, saying why, when the newest fails",
          "[gpt2][checkpoint]") {
  RA_TEST_RNG(rng);
  const auto data = small_data(rng);
  Run run(tiny_ra(), data, 1);
  TempFile ckpt;
  const std::string prev = nn::previous_checkpoint_path(ckpt.path);
  run.step();
  nn::save_checkpoint(ckpt.path, run.model, run.opt, run.state, run.loader);
  CHECK_FALSE(std::filesystem::exists(prev));
  run.step();
  nn::save_checkpoint(ckpt.path, run.model, run.opt, run.state, run.loader);
  CHECK(nn::read_checkpoint(prev).state.step == 1);
  CHECK(nn::read_checkpoint(ckpt.path).state.step == 2);
  CHECK(nn::read_checkpoint_with_fallback(ckpt.path).rejected.empty());
  const std::string newest = read_bytes(ckpt.path), older = read_bytes(prev);
  auto flipped = [](std::string b) {
    b[b.size() / 2] = static_cast<char>(b[b.size() / 2] ^ 1);
    return b;
  };

  SECTION("the newest is corrupt") {
    write_bytes(ckpt.path, flipped(newest));
    const auto r = nn::read_checkpoint_with_fallback(ckpt.path);
    CHECK(r.checkpoint.path == prev);
    CHECK(r.checkpoint.state.step == 1);
    CHECK_THAT(r.rejected, Catch::Contains(ckpt.path) && Catch::Contains("fails its checksum"));
    // It resumes: the loaded state continues as the run did from step 1.
    Run resumed(tiny_ra(), data, 1);
    nn::restore_checkpoint(r.checkpoint, resumed.model, resumed.opt, resumed.state, resumed.loader);
    CHECK(resumed.state.step == 1);
  }
  SECTION("the newest is missing") {
    std::filesystem::remove(ckpt.path);
    const auto r = nn::read_checkpoint_with_fallback(ckpt.path);
    CHECK(r.checkpoint.state.step == 1);
    CHECK_THAT(r.rejected, Catch::Contains("cannot open") && Catch::Contains("No such file"));
  }
  SECTION("both are corrupt: both reasons") {
    write_bytes(ckpt.path, flipped(newest));
    write_bytes(prev, older.substr(0, older.size() / 3));
    CHECK_THROWS_WITH(nn::read_checkpoint_with_fallback(ckpt.path),
                      Catch::Contains("fails its checksum") &&
                          Catch::Contains("the previous checkpoint failed too") &&
                          Catch::Contains("truncated"));
  }
  SECTION("no previous one: the newest's reason") {
    std::filesystem::remove(prev);
    write_bytes(ckpt.path, flipped(newest));
    CHECK_THROWS_WITH(
        nn::read_checkpoint_with_fallback(ckpt.path),
        Catch::Contains("fails its checksum") && !Catch::Contains("previous checkpoint"));
  }
}

TEST_CASE("checkpoint: a failed save names the reason and leaves the last checkpoint whole",
          "[gpt2][checkpoint][errors]") {
  RA_TEST_RNG(rng);
  const auto data = small_data(rng);
  Run run(tiny_ra(), data, 1);
  TempFile ckpt;
  run.step();
  nn::save_checkpoint(ckpt.path, run.model, run.opt, run.state, run.loader);
  const std::string before = read_bytes(ckpt.path);
  run.step();
  std::filesystem::create_symlink("/dev/full", ckpt.path + ".tmp");  // a full disk
  CHECK_THROWS_WITH(nn::save_checkpoint(ckpt.path, run.model, run.opt, run.state, run.loader),
                    Catch::Contains("checkpoint: cannot write '" + ckpt.path + ".tmp'") &&
                        Catch::Contains("No space left on device") &&
                        Catch::Contains("removed the partial"));
  CHECK_FALSE(std::filesystem::exists(std::filesystem::symlink_status(ckpt.path + ".tmp")));
  CHECK(read_bytes(ckpt.path) == before);
  CHECK(nn::read_checkpoint(ckpt.path).state.step == 1);
}
