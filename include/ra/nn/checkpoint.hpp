// ra/nn/checkpoint.hpp — the training state, the one training step the trainer and the tests
// share, evaluation, and checkpoints that resume bit-exactly.
//
// A training step: next batch from the loader → dropout seed from the state's generator →
// forward → backward → AdamW at the given learning rate. Everything it reads is in the
// checkpoint, so a run resumed from one takes the same steps, bit for bit, as the run that
// wrote it:
//   model config, fp32 master parameters; AdamW moments m, v and step count t;
//   training state: step, tokens seen, training seconds, generator state (as text);
//   data cursor: seed, B, T, windows, epoch, position (checked against the loader);
//   a free-form `meta` string (the trainer stores its options there).
// File layout: magic "RACHECKP", version (u32), then the fields above in that order, scalars
// in the host's little-endian byte order, strings as (u64 length, bytes), arrays as
// (u64 count, values). Writes go to `path.tmp` and are renamed over `path`, so a run killed
// mid-write leaves the previous checkpoint intact. Loads check everything and throw ra::error
// naming the file and the mismatch (missing, bad magic, version, truncated, config field,
// size, data cursor).
#pragma once

#include <array>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <ra/core/error.hpp>
#include <ra/nn/adamw.hpp>
#include <ra/nn/data.hpp>
#include <ra/nn/gpt2_config.hpp>

namespace ra::nn {

static_assert(std::endian::native == std::endian::little,
              "checkpoints are stored in little-endian byte order");

inline constexpr std::array<char, 8> kCheckpointMagic = {'R', 'A', 'C', 'H', 'E', 'C', 'K', 'P'};
inline constexpr std::uint32_t kCheckpointVersion = 1;

/// What a training run carries from step to step besides the model and the optimizer.
struct TrainingState {
  std::uint64_t step = 0;      // steps taken
  std::uint64_t tokens = 0;    // training tokens seen (B·T per step)
  double train_seconds = 0.0;  // wall-clock spent in training steps (not evaluation)
  std::mt19937_64 rng;         // one draw per step: the dropout seed
  std::string meta;            // free-form (the trainer's options)

  TrainingState() = default;
  explicit TrainingState(std::uint64_t seed) : rng(seed) {}
};

/// What one training step did.
struct StepResult {
  double loss = 0.0;
  double grad_norm = 0.0;
  double lr = 0.0;
};

/// The optimizer step of a model whose parameters() and gradients() are host spans (the CPU
/// model); returns the gradient norm before clipping. The GPU model brings its own overload
/// (ra::cuda::optimizer_step), which train_step finds by argument-dependent lookup.
template <class Model>
double optimizer_step(Model& model, AdamW& opt, double lr) {
  return opt.step(model.parameters(), model.gradients(), lr).grad_norm;
}

/// One training step at learning rate lr (see the top of this header). `batch` is scratch
/// space (reused across steps). Works for any model with the GPT2 interface (CPU or GPU) and
/// its optimizer. Throws what the model and optimizer throw.
template <class Model, class Optimizer>
StepResult train_step(Model& model, Optimizer& opt, BatchLoader& loader, TrainingState& state,
                      double lr, std::vector<std::int32_t>& batch) {
  loader.next(batch);
  model.set_training(true);
  model.set_dropout_seed(state.rng());
  StepResult r;
  r.lr = lr;
  r.loss = model.forward(loader.inputs(batch), loader.targets(batch));
  model.backward();
  r.grad_norm = optimizer_step(model, opt, lr);
  ++state.step;
  state.tokens += static_cast<std::uint64_t>(loader.batch() * loader.seq());
  return r;
}

/// Mean loss over the first `batches` batches of `val` (from its start, dropout off).
/// Throws ra::error unless batches >= 1.
template <class Model>
double evaluate(Model& model, BatchLoader& val, index_t batches) {
  require_arg(batches >= 1, "nn::evaluate", "batches", batches, "a positive batch count");
  const bool was_training = model.training();
  model.set_training(false);
  val.reset();
  std::vector<std::int32_t> batch;
  double sum = 0.0;
  for (index_t i = 0; i < batches; ++i) {
    val.next(batch);
    sum += model.forward(val.inputs(batch), val.targets(batch));
  }
  model.set_training(was_training);
  return sum / static_cast<double>(batches);
}

namespace detail {

class Writer {
 public:
  template <class V>
  void put(const V& v) {
    static_assert(std::is_trivially_copyable_v<V>);
    const auto* p = reinterpret_cast<const char*>(&v);
    bytes_.append(p, sizeof v);
  }
  void put_string(const std::string& s) {
    put<std::uint64_t>(s.size());
    bytes_ += s;
  }
  void put_floats(std::span<const float> v) {
    put<std::uint64_t>(v.size());
    bytes_.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
  }
  const std::string& bytes() const { return bytes_; }
  std::string& bytes() { return bytes_; }

 private:
  std::string bytes_;
};

class Reader {
 public:
  Reader(std::string path, std::string bytes) : path_(std::move(path)), bytes_(std::move(bytes)) {}
  template <class V>
  V get(const char* what) {
    V v;
    need(sizeof v, what);
    std::memcpy(&v, bytes_.data() + pos_, sizeof v);
    pos_ += sizeof v;
    return v;
  }
  std::string get_string(const char* what) {
    const auto n = get<std::uint64_t>(what);
    need(n, what);
    std::string s = bytes_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  std::vector<float> get_floats(const char* what, std::size_t expected) {
    const auto n = get<std::uint64_t>(what);
    require(n == expected, "checkpoint '", path_, "': ", what, " has ", n, " values, expected ",
            expected, " (a checkpoint of another model)");
    need(n * sizeof(float), what);
    std::vector<float> v(n);
    std::memcpy(v.data(), bytes_.data() + pos_, n * sizeof(float));
    pos_ += n * sizeof(float);
    return v;
  }
  void expect_end() const {
    require(pos_ == bytes_.size(), "checkpoint '", path_, "' has ", bytes_.size() - pos_,
            " trailing bytes, expected the file to end after the data cursor");
  }
  const std::string& path() const { return path_; }

 private:
  void need(std::size_t n, const char* what) const {
    require(bytes_.size() - pos_ >= n, "checkpoint '", path_, "' is truncated: ", what, " needs ",
            n, " bytes at offset ", pos_, " but the file has ", bytes_.size(),
            " bytes, expected a complete checkpoint");
  }
  std::string path_, bytes_;
  std::size_t pos_ = 0;
};

inline void put_config(Writer& w, const GPT2Config& c) {
  w.put<std::int64_t>(c.vocab);
  w.put<std::int64_t>(c.max_seq);
  w.put<std::int64_t>(c.n_layer);
  w.put<std::int64_t>(c.n_head);
  w.put<std::int64_t>(c.C);
  w.put<std::uint8_t>(static_cast<std::uint8_t>(c.arm));
  w.put<std::int32_t>(c.R);
  w.put<std::uint8_t>(static_cast<std::uint8_t>(c.gates));
  w.put<std::uint8_t>(static_cast<std::uint8_t>(c.gate_param));
  w.put<std::uint8_t>(c.restart ? 1 : 0);
  w.put<float>(c.dropout);
  w.put<std::uint8_t>(c.bias ? 1 : 0);
}

inline GPT2Config get_config(Reader& r) {
  GPT2Config c;
  c.vocab = r.get<std::int64_t>("config.vocab");
  c.max_seq = r.get<std::int64_t>("config.max_seq");
  c.n_layer = r.get<std::int64_t>("config.n_layer");
  c.n_head = r.get<std::int64_t>("config.n_head");
  c.C = r.get<std::int64_t>("config.C");
  c.arm = static_cast<Arm>(r.get<std::uint8_t>("config.arm"));
  c.R = r.get<std::int32_t>("config.R");
  c.gates = static_cast<GateMode>(r.get<std::uint8_t>("config.gates"));
  c.gate_param = static_cast<GateParam>(r.get<std::uint8_t>("config.gate_param"));
  c.restart = r.get<std::uint8_t>("config.restart") != 0;
  c.dropout = r.get<float>("config.dropout");
  c.bias = r.get<std::uint8_t>("config.bias") != 0;
  return c;
}

inline Reader open_checkpoint(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f)
    throw error(ra::detail::concat("checkpoint: cannot open '", path, "': ", std::strerror(errno)));
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  require(bytes.size() >= kCheckpointMagic.size() &&
              std::memcmp(bytes.data(), kCheckpointMagic.data(), kCheckpointMagic.size()) == 0,
          "checkpoint '", path, "' has bad magic, expected 'RACHECKP' (not a checkpoint)");
  Reader r(path, std::move(bytes));
  r.get<std::array<char, 8>>("magic");
  const auto version = r.get<std::uint32_t>("version");
  require(version == kCheckpointVersion, "checkpoint '", path, "' has version ", version,
          ", expected version ", kCheckpointVersion);
  return r;
}

// Names the first field where two configs differ ("" when equal).
inline std::string config_difference(const GPT2Config& a, const GPT2Config& b) {
  std::ostringstream os;
  auto cmp = [&](const char* name, const auto& x, const auto& y) {
    if (os.tellp() == 0 && !(x == y))
      os << name << " = " << +x << " in the checkpoint, " << +y << " in the model";
  };
  cmp("vocab", a.vocab, b.vocab);
  cmp("max_seq", a.max_seq, b.max_seq);
  cmp("n_layer", a.n_layer, b.n_layer);
  cmp("n_head", a.n_head, b.n_head);
  cmp("C", a.C, b.C);
  cmp("arm", static_cast<int>(a.arm), static_cast<int>(b.arm));
  cmp("R", a.R, b.R);
  cmp("gates", static_cast<int>(a.gates), static_cast<int>(b.gates));
  cmp("gate_param", static_cast<int>(a.gate_param), static_cast<int>(b.gate_param));
  cmp("restart", a.restart, b.restart);
  cmp("dropout", a.dropout, b.dropout);
  cmp("bias", a.bias, b.bias);
  return os.str();
}

}  // namespace detail

/// Writes model, optimizer, state and the loader's cursor to `path` (atomically, via
/// path.tmp). Throws ra::error naming the path when it cannot be written.
template <class Model, class Optimizer>
void save_checkpoint(const std::string& path, const Model& model, const Optimizer& opt,
                     const TrainingState& state, const BatchLoader& loader) {
  detail::Writer w;
  w.bytes().append(kCheckpointMagic.begin(), kCheckpointMagic.end());
  w.put<std::uint32_t>(kCheckpointVersion);
  detail::put_config(w, model.config());
  w.put_floats(model.parameters());
  w.put<std::uint64_t>(opt.steps());
  w.put_floats(opt.first_moment());
  w.put_floats(opt.second_moment());
  w.put<std::uint64_t>(state.step);
  w.put<std::uint64_t>(state.tokens);
  w.put<double>(state.train_seconds);
  std::ostringstream rng;
  rng << state.rng;
  w.put_string(rng.str());
  w.put_string(state.meta);
  w.put<std::uint64_t>(loader.seed());
  w.put<std::int64_t>(loader.batch());
  w.put<std::int64_t>(loader.seq());
  w.put<std::int64_t>(loader.windows());
  w.put<std::uint64_t>(loader.cursor().epoch);
  w.put<std::uint64_t>(loader.cursor().position);

  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    require(static_cast<bool>(f), "checkpoint: cannot open '", tmp,
            "' for writing: ", std::strerror(errno));
    f.write(w.bytes().data(), static_cast<std::streamsize>(w.bytes().size()));
    f.close();
    require(static_cast<bool>(f), "checkpoint: writing '", tmp, "' failed");
  }
  require(std::rename(tmp.c_str(), path.c_str()) == 0, "checkpoint: cannot rename '", tmp, "' to '",
          path, "': ", std::strerror(errno));
}

/// The model config stored in a checkpoint (to construct the model before loading).
/// Throws ra::error naming the file when it is missing or not a checkpoint.
inline GPT2Config read_checkpoint_config(const std::string& path) {
  auto r = detail::open_checkpoint(path);
  return detail::get_config(r);
}

/// Restores model parameters, optimizer state, training state and the loader's cursor from
/// `path`. The model's config must equal the stored one and the loader must have the stored
/// seed, B, T and window count. Throws ra::error naming the file and the first mismatch.
template <class Model, class Optimizer>
void load_checkpoint(const std::string& path, Model& model, Optimizer& opt, TrainingState& state,
                     BatchLoader& loader) {
  auto r = detail::open_checkpoint(path);
  const GPT2Config cfg = detail::get_config(r);
  const std::string diff = detail::config_difference(cfg, model.config());
  require(diff.empty(), "checkpoint '", path, "' is of another model: ", diff);
  const auto params = r.get_floats("parameters", model.num_parameters());
  const auto t = r.get<std::uint64_t>("adam.t");
  const auto m = r.get_floats("adam.m", opt.size());
  const auto v = r.get_floats("adam.v", opt.size());
  TrainingState s;
  s.step = r.get<std::uint64_t>("state.step");
  s.tokens = r.get<std::uint64_t>("state.tokens");
  s.train_seconds = r.get<double>("state.train_seconds");
  std::istringstream rng(r.get_string("state.rng"));
  rng >> s.rng;
  require(!rng.fail(), "checkpoint '", path, "' has a corrupt generator state");
  s.meta = r.get_string("state.meta");
  const auto seed = r.get<std::uint64_t>("data.seed");
  const auto B = r.get<std::int64_t>("data.B");
  const auto T_ = r.get<std::int64_t>("data.T");
  const auto W = r.get<std::int64_t>("data.windows");
  BatchLoader::Cursor c;
  c.epoch = r.get<std::uint64_t>("data.epoch");
  c.position = r.get<std::uint64_t>("data.position");
  r.expect_end();
  require(
      seed == loader.seed() && B == loader.batch() && T_ == loader.seq() && W == loader.windows(),
      "checkpoint '", path, "' was written with data seed ", seed, ", B = ", B, ", T = ", T_,
      " and ", W, " windows; the loader has seed ", loader.seed(), ", B = ", loader.batch(),
      ", T = ", loader.seq(), " and ", loader.windows(),
      " windows, expected the same (same --seed, --batch, --seq and data)");

  model.set_parameters(params);
  opt.restore(m, v, t);
  state = std::move(s);
  loader.seek(c);
}

}  // namespace ra::nn
