// ra/nn/checkpoint.hpp — the training state, the one training step the trainer and the tests
// share, evaluation, and checkpoints that resume bit-exactly and are never loaded corrupt.
//
// A training step: next batch from the loader → dropout seed from the state's generator →
// forward → backward → AdamW (or AdamW with SPAM) at the given learning rate. Everything it
// reads is in the checkpoint, so a run resumed from one takes the same steps, bit for bit, as
// the run that wrote it:
//   model config, fp32 master parameters;
//   optimizer: its kind by name ("adamw" or "adamw_spam", ra/nn/adamw.hpp), step count t,
//   moments m, v, SPAM's hyperparameters (θ, ΔT, N, clip delay) and its count of clipped
//   elements (SPAM's phase follows from t);
//   training state: step, tokens seen, training seconds, generator state (as text);
//   data record: seed, B, T, windows, the training tokens' count and CRC-32C, the cursor
//   (epoch, position) and the name of the tokenizer that made the tokens;
//   a free-form `meta` string (the trainer stores its command line there).
//
// File layout (version 3), scalars in little-endian byte order, strings as (u64 length,
// bytes), arrays as (u64 count, values):
//   bytes 0..7    magic "RACHECKP"
//         8..11   version (3; 2 lacked the optimizer kind, SPAM and the tokenizer)
//         12..15  reserved (0)
//         16..23  body length n
//         24..    the body: the fields above, in that order
//         24+n..  CRC-32C (u32) of every byte before it, header included
// save_checkpoint() writes path.tmp, syncs it and renames it over path (ra/core/file.hpp), so
// a run killed at any moment leaves a whole checkpoint; the one it replaces is kept as
// path.prev (previous_checkpoint_path). read_checkpoint() verifies the checksum first (a
// flipped bit anywhere is refused), then every field — enumerations in range, the config
// valid, array lengths from the config's layout, every parameter and moment finite (v >= 0),
// the optimizer kind known and its SPAM settings valid, the data record self-consistent — and
// that the counters agree as train_step leaves them:
// AdamW's t = step, tokens = step·B·T, epoch·windows + position = step·B. Each error names
// the file, the field and what was expected. read_checkpoint_with_fallback() falls back to
// path.prev when path fails its check and says why.
#pragma once

#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <ra/core/checksum.hpp>
#include <ra/core/error.hpp>
#include <ra/core/file.hpp>
#include <ra/nn/adamw.hpp>
#include <ra/nn/data.hpp>
#include <ra/nn/gpt2_config.hpp>

namespace ra::nn {

static_assert(std::endian::native == std::endian::little,
              "checkpoints are stored in little-endian byte order");

inline constexpr std::array<char, 8> kCheckpointMagic = {'R', 'A', 'C', 'H', 'E', 'C', 'K', 'P'};
inline constexpr std::uint32_t kCheckpointVersion = 3;
inline constexpr std::size_t kCheckpointHeaderBytes = 24;

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
  AdamWStep optimizer;  // what the optimizer did (SPAM's phase and clipped elements)
};

/// One training step at learning rate lr (see the top of this header). `batch` is scratch
/// space (reused across steps). Works for any nn::GPT2Model (CPU or GPU backend) and its
/// backend's optimizer. Throws what the model and optimizer throw.
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
  r.optimizer = model.step(opt, lr);
  r.grad_norm = r.optimizer.grad_norm;
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

/// What a checkpoint records about the training data and the loader's position in it.
struct DataRecord {
  std::uint64_t seed = 0;
  index_t batch = 0;             // B
  index_t seq = 0;               // T
  index_t windows = 0;           // windows per epoch
  std::uint64_t tokens = 0;      // tokens in the training file
  std::uint32_t checksum = 0;    // their CRC-32C (BatchLoader::data_checksum)
  BatchLoader::Cursor cursor{};  // where the next batch starts
  std::string tokenizer;         // the tokenizer that made the tokens (TokenFile::tokenizer)

  /// The record of a loader as it stands.
  static DataRecord of(const BatchLoader& l) {
    return {l.seed(),          l.batch(),  l.seq(),           l.windows(), l.data().tokens.size(),
            l.data_checksum(), l.cursor(), l.data().tokenizer};
  }
};

/// Everything a checkpoint holds, as read_checkpoint() returns it (checked).
struct Checkpoint {
  std::string path;
  GPT2Config config;
  std::vector<float> parameters;  // the flat fp32 master parameters (gpt2_layout order)
  OptimizerKind optimizer = OptimizerKind::adamw;
  std::uint64_t adam_steps = 0;  // the optimizer's t
  std::vector<float> adam_m, adam_v;
  SpamConfig spam;                // meaningful for adamw_spam only
  std::uint64_t spam_spikes = 0;  // elements SPAM clipped so far (0 for adamw)
  TrainingState state;
  DataRecord data;
};

/// Where save_checkpoint() keeps the checkpoint it replaces: path + ".prev".
inline std::string previous_checkpoint_path(const std::string& path) {
  return path + ".prev";
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
  std::string& bytes() { return bytes_; }

 private:
  std::string bytes_;
};

// Reads the body of a checkpoint whose checksum matched: a field that does not fit is a file
// written wrongly (or edited with its checksum recomputed), never a disk error.
class Reader {
 public:
  Reader(const std::string& path, std::string_view body) : path_(path), bytes_(body) {}
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
    std::string s(bytes_.substr(pos_, n));
    pos_ += n;
    return s;
  }
  std::vector<float> get_floats(const char* what, std::size_t expected, const char* why) {
    const auto n = get<std::uint64_t>(what);
    require(n == expected, "checkpoint '", path_, "': field '", what, "' has ", n,
            " values, expected ", expected, " (", why, ")");
    need(n * sizeof(float), what);
    std::vector<float> v(n);
    std::memcpy(v.data(), bytes_.data() + pos_, n * sizeof(float));
    pos_ += n * sizeof(float);
    return v;
  }
  void expect_end() const {
    require(pos_ == bytes_.size(), "checkpoint '", path_, "' has ", bytes_.size() - pos_,
            " bytes after the data cursor, expected the body to end there");
  }

 private:
  void need(std::size_t n, const char* what) const {
    require(bytes_.size() - pos_ >= n, "checkpoint '", path_, "': field '", what, "' needs ", n,
            " bytes at body offset ", pos_, " but the body has ", bytes_.size(),
            " bytes, expected a complete body");
  }
  const std::string& path_;
  std::string_view bytes_;
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

// An enumeration byte, refused unless it is one of `count` codes ("0 (baseline), 1 (ra)").
inline std::uint8_t get_code(Reader& r, const std::string& path, const char* field, int count,
                             const char* codes) {
  const auto v = r.get<std::uint8_t>(field);
  require(v < count, "checkpoint '", path, "': field '", field, "' is ", +v, ", expected ", codes);
  return v;
}

inline GPT2Config get_config(Reader& r, const std::string& path) {
  GPT2Config c;
  c.vocab = r.get<std::int64_t>("config.vocab");
  c.max_seq = r.get<std::int64_t>("config.max_seq");
  c.n_layer = r.get<std::int64_t>("config.n_layer");
  c.n_head = r.get<std::int64_t>("config.n_head");
  c.C = r.get<std::int64_t>("config.C");
  c.arm = static_cast<Arm>(get_code(r, path, "config.arm", 2, "0 (baseline) or 1 (ra)"));
  c.R = r.get<std::int32_t>("config.R");
  c.gates = static_cast<GateMode>(
      get_code(r, path, "config.gates", 3, "0 (none), 1 (per_layer) or 2 (per_head)"));
  c.gate_param = static_cast<GateParam>(
      get_code(r, path, "config.gate_param", 2, "0 (clamp) or 1 (softplus)"));
  c.restart = get_code(r, path, "config.restart", 2, "0 or 1") != 0;
  c.dropout = r.get<float>("config.dropout");
  c.bias = get_code(r, path, "config.bias", 2, "0 or 1") != 0;
  // Token files store uint16 tokens: no vocabulary above 65536 can have been trained.
  require(c.vocab >= 1 && c.vocab <= 65536, "checkpoint '", path, "': field 'config.vocab' is ",
          c.vocab, ", expected 1..65536");
  try {
    c.validate("config");
  } catch (const error& e) {
    throw error(ra::detail::concat("checkpoint '", path, "': ", e.what()));
  }
  return c;
}

// Every value finite (and >= 0 with non_negative); the error names the tensor holding the
// first offender.
inline void require_finite(const std::string& path, const char* field, const std::vector<float>& v,
                           const std::vector<ParameterInfo>& table, bool non_negative = false) {
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (std::isfinite(v[i]) && (!non_negative || v[i] >= 0.f)) continue;
    std::string tensor = "?";
    for (const auto& p : table)
      if (static_cast<index_t>(i) >= p.offset && static_cast<index_t>(i) < p.offset + p.size())
        tensor = p.name;
    throw error(ra::detail::concat("checkpoint '", path, "': field '", field, "' holds ", v[i],
                                   " at index ", i, " (tensor ", tensor, "), expected ",
                                   non_negative ? "finite values >= 0" : "finite values"));
  }
}

// out = a · b; true when that overflows 64 bits.
inline bool mul_overflows(std::uint64_t a, std::uint64_t b, std::uint64_t& out) {
  return __builtin_mul_overflow(a, b, &out);
}

// Names every field where two configs differ ("" when equal).
inline std::string config_difference(const GPT2Config& a, const GPT2Config& b) {
  std::ostringstream os;
  auto cmp = [&](const char* name, const auto& x, const auto& y) {
    if (!(x == y))
      os << (os.tellp() == 0 ? "" : ", ") << name << " = " << x << " in the checkpoint, " << y
         << " in the model";
  };
  cmp("vocab", a.vocab, b.vocab);
  cmp("max_seq", a.max_seq, b.max_seq);
  cmp("n_layer", a.n_layer, b.n_layer);
  cmp("n_head", a.n_head, b.n_head);
  cmp("C", a.C, b.C);
  cmp("arm", name(a.arm), name(b.arm));
  cmp("R", a.R, b.R);
  cmp("gates", a.gates, b.gates);
  cmp("gate_param", a.gate_param, b.gate_param);
  cmp("restart", a.restart, b.restart);
  cmp("dropout", a.dropout, b.dropout);
  cmp("bias", a.bias, b.bias);
  return os.str();
}

}  // namespace detail

/// Writes model, optimizer, state and the loader's record to `path` atomically (via
/// path.tmp, synced, then renamed), keeping the checkpoint it replaces as
/// previous_checkpoint_path(path). Throws ra::error naming the path and the system's reason
/// when it cannot be written (the partial path.tmp is removed; path is unchanged).
template <class Model, class Optimizer>
void save_checkpoint(const std::string& path, const Model& model, const Optimizer& opt,
                     const TrainingState& state, const BatchLoader& loader) {
  detail::Writer w;
  w.bytes().append(kCheckpointMagic.begin(), kCheckpointMagic.end());
  w.put<std::uint32_t>(kCheckpointVersion);
  w.put<std::uint32_t>(0);  // reserved
  w.put<std::uint64_t>(0);  // body length, filled in below
  detail::put_config(w, model.config());
  w.put_floats(model.parameters());
  const AdamWConfig& oc = opt.config();
  w.put<std::uint8_t>(static_cast<std::uint8_t>(oc.kind));
  w.put<std::uint64_t>(opt.steps());
  w.put_floats(opt.first_moment());
  w.put_floats(opt.second_moment());
  w.put<double>(oc.spam.threshold);
  w.put<std::uint64_t>(oc.spam.reset_interval);
  w.put<std::uint64_t>(oc.spam.warmup);
  w.put<std::uint64_t>(oc.spam.clip_delay);
  w.put<std::uint64_t>(opt.spikes());
  w.put<std::uint64_t>(state.step);
  w.put<std::uint64_t>(state.tokens);
  w.put<double>(state.train_seconds);
  std::ostringstream rng;
  rng << state.rng;
  w.put_string(rng.str());
  w.put_string(state.meta);
  const DataRecord d = DataRecord::of(loader);
  w.put<std::uint64_t>(d.seed);
  w.put<std::int64_t>(d.batch);
  w.put<std::int64_t>(d.seq);
  w.put<std::int64_t>(d.windows);
  w.put<std::uint64_t>(d.tokens);
  w.put<std::uint32_t>(d.checksum);
  w.put<std::uint64_t>(d.cursor.epoch);
  w.put<std::uint64_t>(d.cursor.position);
  w.put_string(d.tokenizer);
  std::string& bytes = w.bytes();
  const std::uint64_t body = bytes.size() - kCheckpointHeaderBytes;
  std::memcpy(bytes.data() + 16, &body, sizeof body);
  const std::uint32_t crc = crc32c(bytes);
  bytes.append(reinterpret_cast<const char*>(&crc), sizeof crc);
  write_file_atomic(path, bytes, "checkpoint", previous_checkpoint_path(path));
}

/// Reads `path` and checks all of it (see the top of this header). Throws ra::error naming
/// the file, the field and what was expected: missing or unreadable, bad magic, another
/// version, truncated or trailing bytes, a checksum mismatch, any field out of range.
inline Checkpoint read_checkpoint(const std::string& path) {
  const std::string bytes = read_file(path, "checkpoint");
  require(bytes.size() >= kCheckpointMagic.size() &&
              std::memcmp(bytes.data(), kCheckpointMagic.data(), kCheckpointMagic.size()) == 0,
          "checkpoint '", path, "' has bad magic, expected 'RACHECKP' (not a checkpoint)");
  require(bytes.size() >= kCheckpointHeaderBytes + 4, "checkpoint '", path, "' is ", bytes.size(),
          " bytes, shorter than its header and checksum: truncated, expected a complete "
          "checkpoint");
  std::uint32_t version = 0;
  std::uint64_t body = 0;
  std::memcpy(&version, bytes.data() + 8, sizeof version);
  std::memcpy(&body, bytes.data() + 16, sizeof body);
  require(version == kCheckpointVersion, "checkpoint '", path, "' has version ", version,
          ", expected version ", kCheckpointVersion,
          version == 1   ? " (written before checkpoints had checksums)"
          : version == 2 ? " (written before checkpoints recorded the optimizer kind and the "
                           "tokenizer: start the run again)"
                         : "");
  const std::uint64_t want = kCheckpointHeaderBytes + 4 + body;
  require(body <= bytes.size() && bytes.size() == want, "checkpoint '", path, "' is ", bytes.size(),
          " bytes but its header promises ", want, ": ",
          bytes.size() < want ? "truncated" : "trailing bytes", ", expected a complete checkpoint");
  std::uint32_t stored = 0;
  std::memcpy(&stored, bytes.data() + bytes.size() - 4, sizeof stored);
  const std::uint32_t computed = crc32c(bytes.data(), bytes.size() - 4);
  if (stored != computed) {
    std::ostringstream os;
    os << "checkpoint '" << path << "' fails its checksum (stored CRC-32C " << std::hex << stored
       << ", computed " << computed
       << "): the file is corrupt, expected the bytes save_checkpoint wrote";
    throw error(os.str());
  }

  Checkpoint c;
  c.path = path;
  detail::Reader r(path, std::string_view(bytes).substr(kCheckpointHeaderBytes, body));
  c.config = detail::get_config(r, path);
  const GPT2Layout layout = gpt2_layout(c.config);
  const auto n = static_cast<std::size_t>(layout.total);
  c.parameters = r.get_floats("parameters", n, "the parameter count of the config");
  c.optimizer = static_cast<OptimizerKind>(
      detail::get_code(r, path, "optimizer.kind", 2, "0 (adamw) or 1 (adamw_spam)"));
  c.adam_steps = r.get<std::uint64_t>("adam.t");
  c.adam_m = r.get_floats("adam.m", n, "one per parameter");
  c.adam_v = r.get_floats("adam.v", n, "one per parameter");
  c.spam.threshold = r.get<double>("spam.threshold");
  c.spam.reset_interval = r.get<std::uint64_t>("spam.interval");
  c.spam.warmup = r.get<std::uint64_t>("spam.warmup");
  c.spam.clip_delay = r.get<std::uint64_t>("spam.clip_delay");
  c.spam_spikes = r.get<std::uint64_t>("spam.spikes");
  TrainingState& s = c.state;
  s.step = r.get<std::uint64_t>("state.step");
  s.tokens = r.get<std::uint64_t>("state.tokens");
  s.train_seconds = r.get<double>("state.train_seconds");
  {
    std::istringstream rng(r.get_string("state.rng"));
    rng >> s.rng;
    require(!rng.fail() && (rng >> std::ws).eof(), "checkpoint '", path,
            "': field 'state.rng' is not a generator state, expected 312 numbers of "
            "mt19937_64");
  }
  s.meta = r.get_string("state.meta");
  DataRecord& d = c.data;
  d.seed = r.get<std::uint64_t>("data.seed");
  d.batch = r.get<std::int64_t>("data.B");
  d.seq = r.get<std::int64_t>("data.T");
  d.windows = r.get<std::int64_t>("data.windows");
  d.tokens = r.get<std::uint64_t>("data.tokens");
  d.checksum = r.get<std::uint32_t>("data.checksum");
  d.cursor.epoch = r.get<std::uint64_t>("data.epoch");
  d.cursor.position = r.get<std::uint64_t>("data.position");
  d.tokenizer = r.get_string("data.tokenizer");
  r.expect_end();

  auto field = [&](bool ok, const char* name, const auto& value, const auto&... expected) {
    require(ok, "checkpoint '", path, "': field '", name, "' is ", value, ", expected ",
            expected...);
  };
  detail::require_finite(path, "parameters", c.parameters, layout.table);
  detail::require_finite(path, "adam.m", c.adam_m, layout.table);
  detail::require_finite(path, "adam.v", c.adam_v, layout.table, true);
  if (c.optimizer == OptimizerKind::adamw_spam) {
    try {
      c.spam.validate("spam");
    } catch (const error& e) {
      throw error(ra::detail::concat("checkpoint '", path, "': ", e.what()));
    }
  }
  {
    std::uint64_t most = 0;  // at most every element in every step
    field((c.optimizer == OptimizerKind::adamw_spam || c.spam_spikes == 0) &&
              !detail::mul_overflows(c.adam_steps, n, most) && c.spam_spikes <= most,
          "spam.spikes", c.spam_spikes,
          c.optimizer == OptimizerKind::adamw ? "0 (optimizer adamw clips no spikes)"
                                              : "at most adam.t · parameters");
  }
  field(d.tokenizer.empty() || detail::is_tokenizer_name(d.tokenizer), "data.tokenizer",
        ra::detail::concat("'", d.tokenizer, "'"), "a tokenizer name (or none)");
  field(std::isfinite(s.train_seconds) && s.train_seconds >= 0.0, "state.train_seconds",
        s.train_seconds, "a finite time >= 0");
  field(d.batch >= 1, "data.B", d.batch, "a positive batch size");
  field(d.seq >= 1 && d.seq <= c.config.max_seq, "data.T", d.seq, "1..", c.config.max_seq,
        " (config.max_seq)");
  field(d.windows >= 1 && d.tokens >= 1 &&
            static_cast<std::uint64_t>(d.windows) ==
                (d.tokens - 1) / static_cast<std::uint64_t>(d.seq),
        "data.windows", d.windows, "(tokens - 1) / T = (", d.tokens, " - 1) / ", d.seq);
  field(d.cursor.position < static_cast<std::uint64_t>(d.windows), "data.position",
        d.cursor.position, "a window index below ", d.windows);
  // The counters train_step keeps in step with each other.
  field(c.adam_steps == s.step, "adam.t", c.adam_steps, "state.step = ", s.step,
        " (one optimizer step per training step)");
  const auto B = static_cast<std::uint64_t>(d.batch), T = static_cast<std::uint64_t>(d.seq);
  std::uint64_t per_step = 0, tokens = 0, windows = 0, handed_out = 0;
  field(!detail::mul_overflows(B, T, per_step) &&
            !detail::mul_overflows(s.step, per_step, tokens) && tokens == s.tokens,
        "state.tokens", s.tokens, "state.step · B · T = ", s.step, " · ", d.batch, " · ", d.seq);
  // The loader hands out B windows per step: epoch · windows + position of them so far.
  field(!detail::mul_overflows(d.cursor.epoch, static_cast<std::uint64_t>(d.windows), windows) &&
            !detail::mul_overflows(s.step, B, handed_out) &&
            windows + d.cursor.position == handed_out,
        "data.epoch", d.cursor.epoch, "epoch · windows + position = state.step · B (here ",
        d.cursor.epoch, " · ", d.windows, " + ", d.cursor.position, " and ", s.step, " · ", d.batch,
        ")");
  return c;
}

/// A checkpoint read by read_checkpoint_with_fallback(), and why the newest was passed over.
struct RecoveredCheckpoint {
  Checkpoint checkpoint;
  std::string rejected;  // "" when `path` itself was read; else why it failed its check
};

/// read_checkpoint(path); when that fails and previous_checkpoint_path(path) exists, that
/// one instead, with the reason `path` was refused in `.rejected`. Throws ra::error with
/// both reasons when neither can be read.
inline RecoveredCheckpoint read_checkpoint_with_fallback(const std::string& path) {
  try {
    return {read_checkpoint(path), {}};
  } catch (const error& newest) {
    const std::string prev = previous_checkpoint_path(path);
    if (::access(prev.c_str(), F_OK) != 0) throw;
    try {
      return {read_checkpoint(prev), newest.what()};
    } catch (const error& older) {
      throw error(ra::detail::concat(newest.what(),
                                     "; the previous checkpoint failed too: ", older.what()));
    }
  }
}

/// The model config stored in a checkpoint (to construct the model before loading).
/// Throws ra::error as read_checkpoint().
inline GPT2Config read_checkpoint_config(const std::string& path) {
  return read_checkpoint(path).config;
}

/// Restores model parameters, optimizer state, training state and the loader's cursor from
/// a checkpoint read by read_checkpoint(). The model's config must equal the stored one and
/// the loader must have the stored seed, B, T and training tokens (count and checksum).
/// Throws ra::error naming the file and every mismatch; nothing is changed then.
template <class Model, class Optimizer>
void restore_checkpoint(const Checkpoint& c, Model& model, Optimizer& opt, TrainingState& state,
                        BatchLoader& loader) {
  const std::string diff = detail::config_difference(c.config, model.config());
  require(diff.empty(), "checkpoint '", c.path, "' is of another model: ", diff);
  const AdamWConfig& oc = opt.config();
  auto optimizer_text = [](OptimizerKind k, const SpamConfig& s) {
    if (k == OptimizerKind::adamw) return std::string(name(k));
    return ra::detail::concat(name(k), " (threshold ", s.threshold, ", interval ", s.reset_interval,
                              ", warmup ", s.warmup, ", clip delay ", s.clip_delay, ")");
  };
  require(c.optimizer == oc.kind && (oc.kind == OptimizerKind::adamw || c.spam == oc.spam),
          "checkpoint '", c.path, "' was written by optimizer ",
          optimizer_text(c.optimizer, c.spam), "; this run's optimizer is ",
          optimizer_text(oc.kind, oc.spam),
          ", expected the same (--optimizer and the --spam-* flags)");
  require(c.parameters.size() == model.num_parameters() && c.adam_m.size() == opt.size(),
          "checkpoint '", c.path, "' has ", c.parameters.size(),
          " parameters; the model and optimizer have ", model.num_parameters(), " and ", opt.size(),
          ", expected the same");
  const DataRecord have = DataRecord::of(loader);
  const DataRecord& d = c.data;
  require(d.seed == have.seed && d.batch == have.batch && d.seq == have.seq &&
              d.tokens == have.tokens && d.checksum == have.checksum,
          "checkpoint '", c.path, "' was written with data seed ", d.seed, ", B = ", d.batch,
          ", T = ", d.seq, " and ", d.tokens, " training tokens (CRC-32C ", d.checksum,
          "); the loader has seed ", have.seed, ", B = ", have.batch, ", T = ", have.seq, " and ",
          have.tokens, " tokens (CRC-32C ", have.checksum,
          "), expected the same (same --seed, --batch, --seq and training data)");
  require(d.tokenizer == have.tokenizer, "checkpoint '", c.path,
          "' was trained on tokens of tokenizer '", d.tokenizer, "'; the loader's are of '",
          have.tokenizer, "', expected the same");
  model.set_parameters(c.parameters);
  opt.restore(c.adam_m, c.adam_v, c.adam_steps, c.spam_spikes);
  state = c.state;
  loader.seek(d.cursor);
}

/// read_checkpoint(path), then restore_checkpoint(). Throws ra::error as those do.
template <class Model, class Optimizer>
void load_checkpoint(const std::string& path, Model& model, Optimizer& opt, TrainingState& state,
                     BatchLoader& loader) {
  restore_checkpoint(read_checkpoint(path), model, opt, state, loader);
}

}  // namespace ra::nn
