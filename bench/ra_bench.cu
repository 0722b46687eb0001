// bench/ra_bench.cu — ra's GPU benchmark: the attention kernel alone and the attention block in
// six configurations, timed with CUDA events, printed as a table and written as JSON.
//
// Shapes: B = 8, H = 12, D = 64, C = H·D = 768, T ∈ {1024, 2048, 4096}, fp16 (flags override).
//   kernel  ra::cuda::attention_forward on Qf, Kf, V read in place from a fused (B,T,3C)
//           buffer, O' written in (B,T,C) layout, LSE (B,H,T): baseline (R = 0, no gates) and
//           RA (R = 4, per-layer gates, clamp); per forward path (automatic, mma_sync, sm90).
//   backward ra::cuda::attention_backward of the same calls (dQf, dKf, dV folded into a
//           (B,T,3C) buffer, gate gradients for RA), "attention_bwd", per backward path
//           (mma_sync, sm90); FLOPs 2.5x the forward's.
//   block   ra::cuda::AttentionBlock (fused GEMM -> attention -> output GEMM) in
//           {baseline, RA} x {unfused, fused, graph}; graph = CUDA-graph replay of the fused path.
//
// FLOP conventions (the design's, so figures compare across implementations):
//   attention = 2·B·H·T²·D  (causal forward: QKᵀ and PV are 2·B·H·T²·D each when dense, and the
//                            mask halves both; the RA gates and the softmax are not counted)
//   block     = 2·B·T·C·3C + 2·B·T·C·C + attention   (the two projections plus the attention)
// Time: median over --iters runs after --warmup runs, each run between two CUDA events. Kernel
// inputs are random (never zeros) and rotate among enough input sets to exceed 4x the L2 cache,
// so repeated runs do not measure the cache. A block reads one input x, as in a model where x
// was just produced; its workspace is its own and reused, as in a real forward.
// Memory: peak_bytes of a kernel = its inputs + outputs (it allocates nothing); of a block =
// AttentionBlock::device_bytes() (weights + workspace planned for that path alone) + x + y.
// allocs_per_call = growth of ra::cuda::allocation_count() over all forwards / their number (must
// be 0).
//
// Usage: ra_bench [--B 8] [--H 12] [--D 64] [--R 4] [--T 1024,2048,4096] [--dtype fp16|bf16]
//                 [--warmup 10] [--iters 50] [--quick] [--no-unfused] [--json out.json]
#include <ra/core/file.hpp>
#include <ra/core/parse.hpp>
#include <ra/cuda.cuh>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <cstdlib>
#include <ctime>
#include <exception>
#include <iostream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace {

using ra::index_t;

struct Options {
  index_t batch = 8;
  index_t heads = 12;
  index_t head_dim = 64;
  int rank = 4;
  std::vector<index_t> seqs{1024, 2048, 4096};
  std::string dtype = "fp16";
  int warmup = 10;
  int iters = 50;
  bool unfused = true;
  std::string json;
};

constexpr const char* kUsage =
    "usage: ra_bench [--B 8] [--H 12] [--D 64] [--R 4] [--T 1024,2048,4096]\n"
    "                [--dtype fp16|bf16] [--warmup 10] [--iters 50] [--quick]\n"
    "                [--no-unfused] [--json out.json]\n"
    "  --quick       T = 1024 only, 5 warm-up + 20 timed runs (unless given)\n"
    "  --no-unfused  skip the unfused block (it plans B*H*T^2 scores)\n";

[[noreturn]] void usage(const std::string& problem) {
  std::cerr << "ra_bench: " << problem << "\n" << kUsage;
  std::exit(2);
}

// A positive integer (at most 2^24: every size, rank and count here), parsed strictly
// (ra/core/parse.hpp); a bad value ends the program with the usage.
index_t parse_int(const std::string& flag, const std::string& s) {
  try {
    return ra::parse_integer<index_t>("flag " + flag, s, 1, index_t{1} << 24);
  } catch (const ra::error& e) {
    usage(e.what());
  }
}

Options parse(int argc, char** argv) {
  Options o;
  bool quick = false, iters_set = false, warmup_set = false, seqs_set = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) usage("flag " + a + " needs a value");
      return argv[++i];
    };
    if (a == "--B") {
      o.batch = parse_int(a, next());
    } else if (a == "--H") {
      o.heads = parse_int(a, next());
    } else if (a == "--D") {
      o.head_dim = parse_int(a, next());
    } else if (a == "--R") {
      o.rank = static_cast<int>(parse_int(a, next()));
    } else if (a == "--T") {
      o.seqs.clear();
      std::stringstream ss(next());
      for (std::string t; std::getline(ss, t, ',');) o.seqs.push_back(parse_int(a, t));
      seqs_set = true;
    } else if (a == "--dtype") {
      o.dtype = next();
      if (o.dtype != "fp16" && o.dtype != "bf16")
        usage("flag --dtype got '" + o.dtype + "', expected fp16 or bf16");
    } else if (a == "--warmup") {
      o.warmup = static_cast<int>(parse_int(a, next()));
      warmup_set = true;
    } else if (a == "--iters") {
      o.iters = static_cast<int>(parse_int(a, next()));
      iters_set = true;
    } else if (a == "--quick") {
      quick = true;
    } else if (a == "--no-unfused") {
      o.unfused = false;
    } else if (a == "--json") {
      o.json = next();
    } else if (a == "--help" || a == "-h") {
      std::cout << kUsage;
      std::exit(0);
    } else {
      usage("unknown flag '" + a + "'");
    }
  }
  if (quick) {  // one shape, fewer runs: a smoke test of the whole harness
    if (!seqs_set) o.seqs = {1024};
    if (!iters_set) o.iters = 20;
    if (!warmup_set) o.warmup = 5;
  }
  if (o.rank < 0 || o.rank >= o.head_dim)
    usage("flag --R must satisfy 0 < R < D (the RA configuration's rank)");
  return o;
}

// ---- device memory and random data ---------------------------------------------------------

__host__ __device__ inline std::uint64_t splitmix64(std::uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/// p[i] = scale · u_i with u_i uniform in [-1, 1): counter-based, so any seed gives fresh data.
template <class T>
__global__ void fill_uniform_kernel(T* p, index_t n, std::uint64_t seed, float scale) {
  const index_t step = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    const std::uint64_t z = splitmix64(seed ^ splitmix64(static_cast<std::uint64_t>(i)));
    const float u = static_cast<float>(z >> 40) * 0x1p-24f * 2.f - 1.f;
    p[i] = T(u * scale);
  }
}

template <class T>
void fill_uniform(T* p, index_t n, std::uint64_t seed, float scale, cudaStream_t s) {
  if (n == 0) return;
  const int blocks = static_cast<int>(std::min<index_t>((n + 255) / 256, 65536));
  fill_uniform_kernel<T><<<blocks, 256, 0, s>>>(p, n, seed, scale);
  RA_CUDA_CHECK_LAUNCH();
}

template <class T>
std::vector<T> random_host(index_t n, std::uint64_t seed, float scale) {
  std::vector<T> v(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i) {
    const std::uint64_t z = splitmix64(seed ^ splitmix64(static_cast<std::uint64_t>(i)));
    v[static_cast<std::size_t>(i)] =
        T(static_cast<float>(z >> 40) * 0x1p-24f * scale * 2.f - scale);
  }
  return v;
}

// ---- timing ---------------------------------------------------------------------------------

class Events {
 public:
  explicit Events(int n) : ev_(static_cast<std::size_t>(n)) {
    for (auto& e : ev_) RA_CUDA_CHECK(cudaEventCreate(&e));
  }
  Events(const Events&) = delete;
  Events& operator=(const Events&) = delete;
  ~Events() {
    for (auto e : ev_)
      if (e) cudaEventDestroy(e);
  }
  cudaEvent_t operator[](int i) const { return ev_[static_cast<std::size_t>(i)]; }

 private:
  std::vector<cudaEvent_t> ev_;
};

/// Median time in microseconds of f(i) over `iters` runs after `warmup` runs, each run
/// bracketed by its own pair of events on `s` (the runs are queued back to back).
template <class F>
double median_us(F&& f, int warmup, int iters, cudaStream_t s) {
  for (int i = 0; i < warmup; ++i) f(i);
  RA_CUDA_CHECK(cudaStreamSynchronize(s));
  Events ev(2 * iters);
  for (int i = 0; i < iters; ++i) {
    RA_CUDA_CHECK(cudaEventRecord(ev[2 * i], s));
    f(warmup + i);
    RA_CUDA_CHECK(cudaEventRecord(ev[2 * i + 1], s));
  }
  RA_CUDA_CHECK(cudaStreamSynchronize(s));
  std::vector<double> us(static_cast<std::size_t>(iters));
  for (int i = 0; i < iters; ++i) {
    float ms = 0.f;
    RA_CUDA_CHECK(cudaEventElapsedTime(&ms, ev[2 * i], ev[2 * i + 1]));
    us[static_cast<std::size_t>(i)] = 1e3 * ms;
  }
  std::sort(us.begin(), us.end());
  const std::size_t n = us.size();
  return n % 2 ? us[n / 2] : 0.5 * (us[n / 2 - 1] + us[n / 2]);
}

std::size_t used_device_bytes() {
  std::size_t free_b = 0, total_b = 0;
  RA_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  return total_b - free_b;
}

// ---- records ----------------------------------------------------------------------------------

struct Record {
  std::string what, config, path, dtype, gates;
  index_t B = 0, H = 0, T = 0, D = 0;
  int R = 0;
  double median_us = 0, tflops = 0, flops = 0;
  std::size_t peak_bytes = 0;
  std::size_t device_bytes = 0;  // block: AttentionBlock::device_bytes()
  double allocs_per_call = 0;
  int input_sets = 1;
  long long mem_info_delta_bytes = 0;   // block: device memory taken by construction + load
  long long mem_info_change_bytes = 0;  // device memory gained or lost across the timed runs
  double check_rel_diff = -1;           // block: max |y - y_unfused| / max |y_unfused|; -1 = none
  std::string error;                    // why the measurement failed; empty when it ran
};

std::string json_escape(const std::string& s) {
  std::string r;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      r += '\\';
      r += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      r += ' ';
    } else {
      r += c;
    }
  }
  return r;
}

std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

void write_json(const std::string& path, const std::string& device, const std::string& sm,
                const std::vector<Record>& records) {
  const char* commit_env = std::getenv("RA_COMMIT");
  const std::string commit = commit_env && *commit_env ? commit_env : "unknown";
  char date[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  std::ostringstream f;
  f << "{\n  \"device\": \"" << json_escape(device) << "\",\n  \"sm\": \"" << sm
    << "\",\n  \"date\": \"" << date << "\",\n  \"commit\": \"" << json_escape(commit)
    << "\",\n  \"flops_convention\": \"attention 2*B*H*T^2*D (causal forward); block "
       "2*B*T*C*3C + 2*B*T*C*C + attention\",\n  \"records\": [";
  for (std::size_t i = 0; i < records.size(); ++i) {
    const Record& r = records[i];
    f << (i ? "," : "") << "\n    {\"impl\": \"ra\", \"what\": \"" << r.what << "\", \"config\": \""
      << r.config << "\", \"path\": \"" << r.path << "\", \"B\": " << r.B << ", \"H\": " << r.H
      << ", \"T\": " << r.T << ", \"D\": " << r.D << ", \"R\": " << r.R << ", \"dtype\": \""
      << r.dtype << "\", \"gates\": \"" << r.gates
      << "\", \"median_us\": " << json_number(r.median_us)
      << ", \"tflops\": " << json_number(r.tflops) << ", \"flops\": " << json_number(r.flops)
      << ", \"peak_bytes\": " << r.peak_bytes
      << ", \"allocs_per_call\": " << json_number(r.allocs_per_call)
      << ", \"input_sets\": " << r.input_sets
      << ", \"mem_info_delta_bytes\": " << r.mem_info_delta_bytes
      << ", \"mem_info_change_bytes\": " << r.mem_info_change_bytes;
    if (r.check_rel_diff >= 0) f << ", \"check_rel_diff\": " << json_number(r.check_rel_diff);
    if (r.device_bytes > 0) f << ", \"device_bytes\": " << r.device_bytes;
    if (!r.error.empty()) f << ", \"error\": \"" << json_escape(r.error) << "\"";
    f << "}";
  }
  f << "\n  ]\n}\n";
  ra::write_file_atomic(path, f.str(), "ra_bench");
}

void print_header() {
  std::printf("%-13s %-8s %-8s %3s %5s %10s %8s %9s %7s %9s\n", "what", "config", "path", "R", "T",
              "median_us", "TFLOP/s", "peak_MB", "allocs", "check");
}

void print_row(const Record& r) {
  if (!r.error.empty()) {
    std::printf("%-13s %-8s %-8s %3d %5lld error: %s\n", r.what.c_str(), r.config.c_str(),
                r.path.c_str(), r.R, static_cast<long long>(r.T), r.error.c_str());
  } else {
    char check[16] = "-";
    if (r.check_rel_diff >= 0) std::snprintf(check, sizeof check, "%.1e", r.check_rel_diff);
    std::printf("%-13s %-8s %-8s %3d %5lld %10.1f %8.1f %9.1f %7.2f %9s\n", r.what.c_str(),
                r.config.c_str(), r.path.c_str(), r.R, static_cast<long long>(r.T), r.median_us,
                r.tflops, static_cast<double>(r.peak_bytes) / (1 << 20), r.allocs_per_call, check);
  }
  std::fflush(stdout);
}

double attention_flops(index_t B, index_t H, index_t T, index_t D) {
  return 2.0 * B * H * static_cast<double>(T) * T * D;
}

// Input sets enough to cover 4x L2 (1 to 16), so each timed run finds its inputs in device
// memory, not in L2.
int input_sets(const cudaDeviceProp& prop, std::size_t set_bytes) {
  const std::size_t l2 = static_cast<std::size_t>(std::max(prop.l2CacheSize, 1));
  return static_cast<int>(std::clamp<std::size_t>((4 * l2 + set_bytes - 1) / set_bytes, 1, 16));
}

// Times run(i) (input set i % sets) on s and returns a record with what every attention row
// measures: the dtype, the median, the input sets and their bytes, allocations per call and
// the device memory gained or lost across the timed runs. The first run, untimed, loads the
// kernel's module (device memory that is not ours).
template <class Run>
Record time_attention_call(const Options& opt, Run&& run, cudaStream_t s, int sets,
                           std::size_t set_bytes) {
  const std::int64_t allocs0 = ra::cuda::allocation_count();
  run(0);
  RA_CUDA_CHECK(cudaStreamSynchronize(s));
  const std::size_t used0 = used_device_bytes();
  const double us = median_us(run, opt.warmup, opt.iters, s);
  const std::size_t used1 = used_device_bytes();
  const std::int64_t allocs1 = ra::cuda::allocation_count();
  Record r;
  r.dtype = opt.dtype;
  r.median_us = us;
  r.peak_bytes = set_bytes;
  r.allocs_per_call = static_cast<double>(allocs1 - allocs0) / (1 + opt.warmup + opt.iters);
  r.input_sets = sets;
  r.mem_info_change_bytes = static_cast<long long>(used1) - static_cast<long long>(used0);
  return r;
}

// ---- the attention kernel alone ------------------------------------------------------------

template <class T>
void bench_kernel(const Options& opt, index_t seq, bool ra_config, const cudaDeviceProp& prop,
                  cudaStream_t s, std::vector<Record>& out, std::string& stage,
                  ra::cuda::ForwardPath path, const char* label) {
  stage = label;
  const index_t B = opt.batch, H = opt.heads, D = opt.head_dim, C = H * D;
  const int R = ra_config ? opt.rank : 0;
  const std::size_t set_bytes =
      static_cast<std::size_t>(B * seq) * (4 * C * sizeof(T) + H * sizeof(float));
  const int sets = input_sets(prop, set_bytes);

  ra::cuda::DeviceBuffer<float> gate_vals(2);
  const float host_gates[2] = {ra::kGateInitStd, ra::kGateInitRec};
  RA_CUDA_CHECK(
      cudaMemcpy(gate_vals.data(), host_gates, sizeof host_gates, cudaMemcpyHostToDevice));
  const ra::Gates gates =
      ra_config ? ra::gates::per_layer(gate_vals.data(), gate_vals.data() + 1) : ra::gates::none();

  std::vector<ra::cuda::DeviceBuffer<T>> fused, o;
  std::vector<ra::cuda::DeviceBuffer<float>> lse;
  std::vector<ra::cuda::AttentionParams> params;
  for (int i = 0; i < sets; ++i) {
    fused.emplace_back(B * seq * 3 * C);
    o.emplace_back(B * seq * C);
    lse.emplace_back(B * H * seq);
    fill_uniform(fused.back().data(), fused.back().size(), 0x5eed0000ull + 977 * i + seq, 1.f, s);
    auto fused_v = ra::make_view(static_cast<const T*>(fused.back().data()),
                                 ra::shape(B, seq, 3 * C));  // (B,T,3C)
    auto qkv = ra::folded_views(fused_v, H, D);              // 3 x (B,H,T,D) strides (3TC,D,3C,1)
    auto o_btc = ra::make_view(o.back().data(), ra::shape(B, seq, C));  // (B,T,C)
    auto o_heads = ra::heads(o_btc, H, D);  // (B,H,T,D) strides (TC,D,C,1)
    auto node = ra::folded_attention(qkv.q, qkv.k, qkv.v, R, gates, ra::causal);
    params.push_back(ra::cuda::make_params(node, o_heads, lse.back().data()));
    params.back().path = path;
  }

  auto run = [&](int i) {
    ra::cuda::attention_forward(params[static_cast<std::size_t>(i % sets)], s);
  };
  Record r = time_attention_call(opt, run, s, sets, set_bytes);
  r.what = "attention";
  r.config = ra_config ? "ra" : "baseline";
  r.path = label;
  r.gates = ra_config ? "per_layer" : "none";
  r.B = B, r.H = H, r.T = seq, r.D = D, r.R = R;
  r.flops = attention_flops(B, H, seq, D);
  r.tflops = r.flops / (r.median_us * 1e-6) / 1e12;
  out.push_back(r);
}

// ---- the attention backward alone -----------------------------------------------------------

// The backward's FLOPs by the usual convention: 2.5x the forward's (five products of the
// forward's size: S recomputed, dP, dV, dK, dQ), whatever a kernel recomputes beyond that.
double attention_backward_flops(index_t B, index_t H, index_t T, index_t D) {
  return 2.5 * attention_flops(B, H, T, D);
}

/// ra::cuda::attention_backward on the forward's outputs (O', lse; computed once per input
/// set, not timed), gradients folded into a (B,T,3C) buffer, on one explicit tensor-core path.
template <class T>
void bench_backward(const Options& opt, index_t seq, bool ra_config, const cudaDeviceProp& prop,
                    cudaStream_t s, std::vector<Record>& out, std::string& stage,
                    ra::cuda::BackwardPath path, const char* label) {
  stage = label;
  const index_t B = opt.batch, H = opt.heads, D = opt.head_dim, C = H * D;
  const int R = ra_config ? opt.rank : 0;
  const std::size_t set_bytes =
      static_cast<std::size_t>(B * seq) * (8 * C * sizeof(T) + H * sizeof(float)) +
      ra::cuda::backward_workspace_floats(B, H, seq) * sizeof(float);
  const int sets = input_sets(prop, set_bytes);

  ra::cuda::DeviceBuffer<float> gate_vals(2), gate_grads(2);
  const float host_gates[2] = {ra::kGateInitStd, ra::kGateInitRec};
  RA_CUDA_CHECK(
      cudaMemcpy(gate_vals.data(), host_gates, sizeof host_gates, cudaMemcpyHostToDevice));
  const ra::Gates gates =
      ra_config ? ra::gates::per_layer(gate_vals.data(), gate_vals.data() + 1) : ra::gates::none();

  std::vector<ra::cuda::DeviceBuffer<T>> fused, o, d_out, dfused;
  std::vector<ra::cuda::DeviceBuffer<float>> lse, ws;
  std::vector<ra::cuda::AttentionBackwardParams> params;
  for (int i = 0; i < sets; ++i) {
    fused.emplace_back(B * seq * 3 * C);
    o.emplace_back(B * seq * C);
    d_out.emplace_back(B * seq * C);
    dfused.emplace_back(B * seq * 3 * C);
    lse.emplace_back(B * H * seq);
    ws.emplace_back(ra::cuda::backward_workspace_floats(B, H, seq));
    fill_uniform(fused.back().data(), fused.back().size(), 0x5eed1000ull + 977 * i + seq, 1.f, s);
    fill_uniform(d_out.back().data(), d_out.back().size(), 0x5eed2000ull + 977 * i + seq, 1.f, s);
    auto fused_v = ra::make_view(static_cast<const T*>(fused.back().data()),
                                 ra::shape(B, seq, 3 * C));  // (B,T,3C)
    auto qkv = ra::folded_views(fused_v, H, D);              // 3 x (B,H,T,D) strides (3TC,D,3C,1)
    auto grads = ra::folded_views(ra::make_view(dfused.back().data(), ra::shape(B, seq, 3 * C)), H,
                                  D);  // 3 x (B,H,T,D) strides (3TC,D,3C,1)
    auto o_heads = ra::heads(ra::make_view(o.back().data(), ra::shape(B, seq, C)), H,
                             D);  // (B,H,T,D) strides (TC,D,C,1)
    auto do_heads = ra::heads(
        ra::make_view(static_cast<const T*>(d_out.back().data()), ra::shape(B, seq, C)), H, D);
    auto node = ra::folded_attention(qkv.q, qkv.k, qkv.v, R, gates, ra::causal);
    const ra::cuda::AttentionParams fwd = ra::cuda::make_params(node, o_heads, lse.back().data());
    ra::cuda::attention_forward(fwd, s);
    params.push_back(ra::cuda::make_backward_params(
        fwd, do_heads, grads.q, grads.k, grads.v, ra_config ? gate_grads.data() : nullptr,
        ra_config ? gate_grads.data() + 1 : nullptr, nullptr, ws.back().data()));
    params.back().path = path;
  }

  auto run = [&](int i) {
    ra::cuda::attention_backward(params[static_cast<std::size_t>(i % sets)], s);
  };
  Record r = time_attention_call(opt, run, s, sets, set_bytes);
  r.what = "attention_bwd";
  r.config = ra_config ? "ra" : "baseline";
  r.path = label;
  r.gates = ra_config ? "per_layer" : "none";
  r.B = B, r.H = H, r.T = seq, r.D = D, r.R = R;
  r.flops = attention_backward_flops(B, H, seq, D);
  r.tflops = r.flops / (r.median_us * 1e-6) / 1e12;
  out.push_back(r);
}

// ---- the block -------------------------------------------------------------------------------

template <class T>
std::vector<float> to_float(const ra::cuda::DeviceBuffer<T>& d) {
  std::vector<T> h(static_cast<std::size_t>(d.size()));
  RA_CUDA_CHECK(cudaMemcpy(h.data(), d.data(), d.bytes(), cudaMemcpyDeviceToHost));
  std::vector<float> f(h.size());
  for (std::size_t i = 0; i < h.size(); ++i) f[i] = static_cast<float>(h[i]);
  return f;
}

/// max |y - ref| / max |ref|; +inf when y holds a NaN or ref is all zeros.
double rel_diff(const std::vector<float>& y, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < y.size(); ++i) {
    if (!std::isfinite(y[i]) || !std::isfinite(ref[i])) return INFINITY;
    num = std::max(num, std::fabs(static_cast<double>(y[i]) - ref[i]));
    den = std::max(den, std::fabs(static_cast<double>(ref[i])));
  }
  return den > 0 ? num / den : INFINITY;
}

template <class T>
void bench_block(const Options& opt, index_t seq, bool ra_config, cudaStream_t s,
                 std::vector<Record>& out, std::string& stage) {
  stage = "setup";
  const index_t B = opt.batch, H = opt.heads, D = opt.head_dim, C = H * D;
  ra::AttentionBlockConfig cfg;
  cfg.C = C;
  cfg.H = H;
  cfg.R = ra_config ? opt.rank : 0;
  cfg.gates = ra_config ? ra::GateMode::per_layer : ra::GateMode::none;
  cfg.gate_param = ra::GateParam::clamp;
  cfg.restart = false;
  cfg.bias = true;

  // nn.Linear-like initial weights, uniform in ±1/sqrt(C); biases small but non-zero.
  const float w_scale = 1.f / std::sqrt(static_cast<float>(C));
  const auto w_attn = random_host<T>(3 * C * C, 11, w_scale);
  const auto b_attn = random_host<T>(3 * C, 12, 0.02f);
  const auto w_o = random_host<T>(C * C, 13, w_scale);
  const auto b_o = random_host<T>(C, 14, 0.02f);
  const float w_std = ra::kGateInitStd, w_rec = ra::kGateInitRec;
  ra::AttentionBlockWeights<T> weights;
  weights.w_attn = ra::make_view(w_attn.data(), ra::shape(3 * C, C));  // (3C,C)
  weights.b_attn = ra::make_view(b_attn.data(), ra::shape(3 * C));     // (3C)
  weights.w_o = ra::make_view(w_o.data(), ra::shape(C, C));            // (C,C)
  weights.b_o = ra::make_view(b_o.data(), ra::shape(C));               // (C)
  if (ra_config) {
    weights.w_std = &w_std;
    weights.w_rec = &w_rec;
  }

  ra::cuda::DeviceBuffer<T> x(B * seq * C), y(B * seq * C);
  fill_uniform(x.data(), x.size(), 0xb10c0000ull + seq, 1.f, s);
  RA_CUDA_CHECK(cudaStreamSynchronize(s));

  // Each path runs on a block planned for it alone, so a fused block's memory does not
  // include the unfused path's score buffers.
  std::size_t used_before = 0, used_after = 0;
  auto plan = [&](bool unfused) {
    used_before = used_device_bytes();
    auto b = std::make_unique<ra::cuda::AttentionBlock<T>>(cfg, B, seq, unfused);
    b->load(weights);
    RA_CUDA_CHECK(cudaDeviceSynchronize());
    used_after = used_device_bytes();
    return b;
  };
  std::unique_ptr<ra::cuda::AttentionBlock<T>> block;

  auto record = [&](const char* path, double us, double allocs, long long change) {
    Record r;
    r.what = "block";
    r.config = ra_config ? "ra" : "baseline";
    r.path = path;
    r.dtype = opt.dtype;
    r.gates = ra_config ? "per_layer" : "none";
    r.B = B, r.H = H, r.T = seq, r.D = D, r.R = cfg.R;
    r.median_us = us;
    r.flops = 2.0 * B * seq * C * (3.0 * C) + 2.0 * B * seq * C * C + attention_flops(B, H, seq, D);
    r.tflops = r.flops / (us * 1e-6) / 1e12;
    r.device_bytes = block->device_bytes();
    r.peak_bytes = r.device_bytes + x.bytes() + y.bytes();
    r.allocs_per_call = allocs;
    r.mem_info_delta_bytes =
        static_cast<long long>(used_after) - static_cast<long long>(used_before);
    r.mem_info_change_bytes = change;
    return r;
  };
  // Times `run` and counts the library's allocations across every call of it. Device memory
  // is compared from after the first call, which may load kernel modules (not allocations).
  auto measure = [&](const char* path, auto&& run) {
    const std::int64_t allocs0 = ra::cuda::allocation_count();
    run();
    RA_CUDA_CHECK(cudaStreamSynchronize(s));
    const std::size_t used0 = used_device_bytes();
    const double us = median_us([&](int) { run(); }, opt.warmup, opt.iters, s);
    const std::size_t used1 = used_device_bytes();
    const double allocs =
        static_cast<double>(ra::cuda::allocation_count() - allocs0) / (1 + opt.warmup + opt.iters);
    return record(path, us, allocs, static_cast<long long>(used1) - static_cast<long long>(used0));
  };

  using ra::cuda::AttentionPath;
  std::vector<float> y_unfused;
  if (opt.unfused) {
    stage = "unfused";
    block = plan(true);
    out.push_back(measure(
        "unfused", [&] { block->forward(x.data(), y.data(), B, seq, s, AttentionPath::unfused); }));
    RA_CUDA_CHECK(cudaStreamSynchronize(s));
    y_unfused = to_float(y);
    block.reset();
  }
  block = plan(false);
  // Outputs are poisoned between paths, so a path that writes nothing cannot pass the check.
  auto poison = [&] { RA_CUDA_CHECK(cudaMemsetAsync(y.data(), 0xff, y.bytes(), s)); };
  auto check = [&](Record& r) {
    RA_CUDA_CHECK(cudaStreamSynchronize(s));
    if (y_unfused.empty()) return;
    r.check_rel_diff = rel_diff(to_float(y), y_unfused);
    if (!(r.check_rel_diff <= 2e-2))
      std::fprintf(stderr, "ra_bench: WARNING block %s/%s T=%lld differs from unfused by %.3g\n",
                   r.config.c_str(), r.path.c_str(), static_cast<long long>(seq), r.check_rel_diff);
  };

  stage = "fused";
  poison();
  Record fused =
      measure("fused", [&] { block->forward(x.data(), y.data(), B, seq, s, AttentionPath::fused); });
  check(fused);
  out.push_back(fused);

  stage = "graph";
  const auto graph = ra::cuda::Graph::capture(s, [&](cudaStream_t cs) {
    block->forward(x.data(), y.data(), B, seq, cs, AttentionPath::fused);
  });
  graph.upload(s);
  poison();
  Record replay = measure("graph", [&] { graph.replay(s); });
  check(replay);
  out.push_back(replay);
}

/// Runs every measurement; a step that throws is recorded with its error and the rest go on
/// (after a sticky CUDA error they fail too, each saying why). Returns the number of errors.
template <class T>
int run_all(const Options& opt, const cudaDeviceProp& prop, cudaStream_t s,
            std::vector<Record>& records) {
  int errors = 0;
  // A failed step keeps the records it completed and adds one naming the stage that threw.
  auto step = [&](const char* what, index_t seq, bool ra_config, auto&& body) {
    const std::size_t n = records.size();
    std::string stage;
    try {
      body(stage);
    } catch (const std::exception& e) {
      ++errors;
      Record r;
      r.what = what;
      r.config = ra_config ? "ra" : "baseline";
      r.path = stage;
      r.dtype = opt.dtype;
      r.gates = ra_config ? "per_layer" : "none";
      r.B = opt.batch, r.H = opt.heads, r.T = seq, r.D = opt.head_dim;
      r.R = ra_config ? opt.rank : 0;
      r.median_us = r.tflops = NAN;
      r.error = e.what();
      records.push_back(r);
      (void)cudaGetLastError();
    }
    for (std::size_t i = n; i < records.size(); ++i) print_row(records[i]);
  };
  print_header();
  for (index_t seq : opt.seqs) {
    for (bool ra_config : {false, true})
      step("attention", seq, ra_config, [&](std::string& stage) {
        // "kernel" is the automatic path (what users get); the explicit paths beside it show
        // what each tensor-core kernel measures on this device.
        using ra::cuda::ForwardPath;
        bench_kernel<T>(opt, seq, ra_config, prop, s, records, stage, ForwardPath::automatic,
                        "kernel");
        bench_kernel<T>(opt, seq, ra_config, prop, s, records, stage, ForwardPath::mma_sync,
                        "mma_sync");
        if (sizeof(T) == 2 && ra::cuda::sm90::flash_forward_available())
          bench_kernel<T>(opt, seq, ra_config, prop, s, records, stage, ForwardPath::tma_wgmma,
                          "sm90");
      });
    for (bool ra_config : {false, true})
      step("attention_bwd", seq, ra_config, [&](std::string& stage) {
        // The backward per tensor-core path: mma.sync everywhere; where this build and device
        // have them (fp16/bf16, D = 64 and 128) the sm_90a dK/dV and dQ passes ("sm90") and the
        // sm_90a dK/dV pass beside the mma.sync dQ pass ("sm90_dkdv": the dQ kernels compared).
        using ra::cuda::BackwardPath;
        bench_backward<T>(opt, seq, ra_config, prop, s, records, stage, BackwardPath::mma_sync,
                          "mma_sync");
        if (sizeof(T) == 2 &&
            ra::cuda::sm90::backward_head_dim_supported(static_cast<int>(opt.head_dim)) &&
            ra::cuda::sm90::flash_forward_available()) {
          bench_backward<T>(opt, seq, ra_config, prop, s, records, stage, BackwardPath::tma_wgmma,
                            "sm90");
          bench_backward<T>(opt, seq, ra_config, prop, s, records, stage,
                            BackwardPath::tma_wgmma_dkdv, "sm90_dkdv");
        }
      });
    for (bool ra_config : {false, true})
      step("block", seq, ra_config,
           [&](std::string& stage) { bench_block<T>(opt, seq, ra_config, s, records, stage); });
  }
  return errors;
}

}  // namespace

int main(int argc, char** argv) {
  const Options opt = parse(argc, argv);
  try {
    int device = 0;
    RA_CUDA_CHECK(cudaGetDevice(&device));
    cudaDeviceProp prop{};
    RA_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    const std::string sm = std::to_string(prop.major) + "." + std::to_string(prop.minor);
    std::printf(
        "ra_bench: %s (sm %s, %d SMs, L2 %d MB), B=%lld H=%lld D=%lld R=%d %s, "
        "%d warm-up + %d timed runs\n",
        prop.name, sm.c_str(), prop.multiProcessorCount, prop.l2CacheSize >> 20,
        static_cast<long long>(opt.batch), static_cast<long long>(opt.heads),
        static_cast<long long>(opt.head_dim), opt.rank, opt.dtype.c_str(), opt.warmup, opt.iters);
    cudaStream_t stream = nullptr;
    RA_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));

    std::vector<Record> records;
    const int errors = opt.dtype == "bf16" ? run_all<ra::bf16>(opt, prop, stream, records)
                                           : run_all<ra::fp16>(opt, prop, stream, records);
    (void)cudaStreamDestroy(stream);

    std::printf("\nra_bench summary (FLOPs: attention 2*B*H*T^2*D, block adds 2*B*T*C*4C)\n");
    print_header();
    for (const Record& r : records) print_row(r);
    for (const Record& r : records)
      if (r.allocs_per_call != 0)
        std::fprintf(stderr, "ra_bench: WARNING %s/%s/%s made %.2f allocations per call\n",
                     r.what.c_str(), r.config.c_str(), r.path.c_str(), r.allocs_per_call);
    if (!opt.json.empty()) {
      write_json(opt.json, prop.name, sm, records);
      std::printf("ra_bench: wrote %s\n", opt.json.c_str());
    }
    if (errors > 0) {
      std::fprintf(stderr, "ra_bench: %d measurement(s) failed\n", errors);
      return 1;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ra_bench: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
