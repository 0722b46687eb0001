// tests/cuda/test_block.cu — device memory (DeviceBuffer, Workspace) and the GPU attention
// block: fused path (flash kernel) and unfused path against ra::cpu::block_forward in double,
// ra::eval of the block expression on cuda::device (runtime and compile-time D and R), the
// backward against ra::cpu::block_backward in double, and the zero-allocation forward and
// backward.
//
// Block configs cover the baseline (R = 0, no gates), RA with per-layer gates, RA with
// per-head softplus gates, self-restart and no bias, and D = 32 / 64 / 128; every dtype; B·T at
// and below the planned maximum, T ragged (5, 7, 130). Outputs and the block's activations
// are poisoned with NaN before each forward.
//
// Precision (tests/common/precision.hpp): error against the double reference at most 2x that
// of a naive block in the element type plus its floors, per element, per row and in relative
// L2. The naive block (reference.hpp's naive_block) stores what a straightforward block
// stores: fused = T(x·W_attnᵀ + b_attn) and y = T(O'·W_oᵀ + b_o) with fp32 sequential sums
// (same_precision_gemm.hpp), O' = T(attention) with fp32 sums and Q̂, P, O rounded to T
// (same_precision_attention.hpp); y's floor is u·‖terms‖₂ of the last GEMM (u of the element
// type; terms o'_ik·w_jk and b_j), a row is a token's C values. The attention step alone (o,
// lse) is judged on the GPU's own fused buffer against the exact and naive attention on it,
// with that naive's floors (O': u·‖terms‖₂, rows of D; lse: 16·u_fp32·(1 + max |logit|)).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <ra/cuda.cuh>

#include "../common/precision.hpp"
#include "cuda_test_utils.cuh"
#include "reference.hpp"

namespace {

using ra::AttentionBlockConfig;
using ra::DType;
using ra::GateMode;
using ra::GateParam;
using ra::index_t;
using ra::cuda::AttentionPath;

std::string describe(const AttentionBlockConfig& c, DType t) {
  std::ostringstream os;
  os << t << " C=" << c.C << " H=" << c.H << " D=" << c.head_dim() << " R=" << c.R
     << " gates=" << c.gates << "/" << c.gate_param << " restart=" << c.restart
     << " bias=" << c.bias << " seed=" << ra::test::seed();
  return os.str();
}

AttentionBlockConfig block_config(index_t C, index_t H, int R, GateMode g, GateParam p,
                                  bool restart, bool bias) {
  AttentionBlockConfig c;
  c.C = C;
  c.H = H;
  c.R = R;
  c.gates = g;
  c.gate_param = p;
  c.restart = restart;
  c.bias = bias;
  return c;
}

const AttentionBlockConfig kConfigs[] = {
    block_config(256, 4, 0, GateMode::none, GateParam::clamp, false, true),         // baseline
    block_config(256, 4, 4, GateMode::per_layer, GateParam::clamp, false, true),    // RA
    block_config(256, 2, 8, GateMode::per_head, GateParam::softplus, true, false),  // D = 128
    block_config(96, 3, 2, GateMode::per_head, GateParam::clamp, true, true),       // D = 32
};

// Host parameters of one block, compact, plus the padded copy of W_attn that load() reads
// through a strided view when `padded` is set.
template <class T>
struct HostBlock {
  AttentionBlockConfig cfg;
  std::vector<T> w_attn, b_attn, w_o, b_o, w_attn_padded;
  std::vector<float> w_std, w_rec, a;
  bool padded = false;

  static constexpr index_t kPad = 8;

  HostBlock(const AttentionBlockConfig& c, std::mt19937_64& g, bool pad) : cfg(c), padded(pad) {
    const index_t C = c.C;
    const float s = 1.f / std::sqrt(static_cast<float>(C));
    w_attn = ra::test::random_vector<T>(3 * C * C, g, s);
    w_o = ra::test::random_vector<T>(C * C, g, s);
    if (c.bias) {
      b_attn = ra::test::random_vector<T>(3 * C, g, 0.2f);
      b_o = ra::test::random_vector<T>(C, g, 0.2f);
    }
    w_std = ra::test::uniform_floats(c.gate_count(), g, 0.3f, 1.2f);
    w_rec = ra::test::uniform_floats(c.gate_count(), g, 0.05f, 0.6f);
    if (c.restart) a = ra::test::uniform_floats(c.H, g, 0.f, 0.4f);
    if (pad) {
      w_attn_padded.resize(static_cast<std::size_t>(3 * C * (C + kPad)));
      for (index_t r = 0; r < 3 * C; ++r)
        for (index_t j = 0; j < C; ++j)
          w_attn_padded[static_cast<std::size_t>(r * (C + kPad) + j)] =
              w_attn[static_cast<std::size_t>(r * C + j)];
    }
  }

  ra::AttentionBlockWeights<T> views() const {
    const index_t C = cfg.C;
    ra::AttentionBlockWeights<T> w;
    w.w_attn = padded ? ra::make_view(w_attn_padded.data(), ra::shape(3 * C, C), {C + kPad, 1})
                      : ra::make_view(w_attn.data(), ra::shape(3 * C, C));  // (3C,C)
    w.w_o = ra::make_view(w_o.data(), ra::shape(C, C));                     // (C,C)
    if (cfg.bias) {
      w.b_attn = ra::make_view(b_attn.data(), ra::shape(3 * C));  // (3C)
      w.b_o = ra::make_view(b_o.data(), ra::shape(C));            // (C)
    }
    w.w_std = w_std.data();
    w.w_rec = w_rec.data();
    w.a = a.data();
    return w;
  }

  ra::test::BlockProblem problem(const std::vector<T>& x, index_t B, index_t T_) const {
    ra::test::BlockProblem pb;
    pb.cfg = cfg;
    pb.dtype = ra::dtype_v<T>;
    pb.B = B;
    pb.T = T_;
    pb.x = x.data();
    pb.w_attn = w_attn.data();
    pb.b_attn = cfg.bias ? b_attn.data() : nullptr;
    pb.w_o = w_o.data();
    pb.b_o = cfg.bias ? b_o.data() : nullptr;
    pb.w_std = w_std;
    pb.w_rec = w_rec;
    pb.a = a;
    return pb;
  }
};

template <class T>
std::vector<double> as_double(const std::vector<T>& v) {
  std::vector<double> d(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) d[i] = ra::convert<double>(v[i]);
  return d;
}

bool compiled(const AttentionBlockConfig& c) {
  return ra::SupportedHeadDims::contains(static_cast<int>(c.head_dim())) &&
         ra::SupportedRanks::contains(c.R);
}

template <class T>
void run_block_case(ra::cuda::Context& ctx, cudaStream_t stream, const AttentionBlockConfig& cfg,
                    std::uint64_t salt) {
  INFO(describe(cfg, ra::dtype_v<T>));
  const index_t max_B = 2, max_T = 130, C = cfg.C, H = cfg.H, D = cfg.head_dim();
  std::ostringstream dtype_name;
  dtype_name << ra::dtype_v<T>;
  const std::string family = "block " + dtype_name.str();
  auto g = ra::test::rng(salt);
  const HostBlock<T> host(cfg, g, /*pad=*/salt % 2 == 0);
  ra::cuda::AttentionBlock<T> block(cfg, max_B, max_T, /*plan_unfused=*/true, &ctx);
  block.load(host.views());

  for (auto [B, T_] : {std::pair<index_t, index_t>{2, 130}, {2, 7}, {1, 5}}) {
    INFO("B=" << B << " T=" << T_);
    const auto x = ra::test::random_vector<T>(B * T_ * C, g);
    auto x_d = ra::test::to_device(x);
    ra::cuda::DeviceBuffer<T> y_d(B * T_ * C);
    const auto ref = ra::test::reference_block(host.problem(x, B, T_));
    const auto naive = ra::test::naive_block(host.problem(x, B, T_));

    // Each path is held to the rule on its own, so the two agree within the sum of their
    // bounds; no separate check between them.
    for (AttentionPath path : {AttentionPath::fused, AttentionPath::unfused}) {
      INFO("path " << path);
      ra::test::poison(y_d.data(), y_d.size());
      RA_CUDA_CHECK(cudaMemset(block.scratch_data(), 0xff, block.scratch_bytes()));
      block.forward(x_d.data(), y_d.data(), B, T_, stream, path);
      RA_CHECK_PRECISION(ra::test::judge(family + " y", "y",
                                         as_double(ra::test::to_host(y_d.data(), y_d.size())),
                                         naive.values, ref, naive.floor, C));

      // The attention step, against the exact and naive attention on the GPU's own fused
      // buffer.
      const auto fused = ra::test::to_host(block.fused(), B * T_ * 3 * C);
      const auto pb = ra::test::attention_step(host.problem(x, B, T_), fused.data());
      std::vector<double> o_ref, lse_ref;
      ra::test::reference_attention(pb, o_ref, lse_ref);
      ra::test::Naive o_naive, lse_naive;
      ra::test::naive_attention(pb, o_naive, lse_naive);
      RA_CHECK_PRECISION(ra::test::judge(family + " lse (attention step)", "lse",
                                         as_double(ra::test::to_host(block.lse(), B * H * T_)),
                                         lse_naive.values, lse_ref, lse_naive.floor, 1));
      RA_CHECK_PRECISION(ra::test::judge(family + " o (attention step)", "o",
                                         as_double(ra::test::to_host(block.o(), B * T_ * C)),
                                         o_naive.values, o_ref, o_naive.floor, D));
    }

    // The block's expression, built here with runtime D and R and evaluated by ra::eval on a
    // cuda::device with an EvalState of its own.
    ra::cuda::EvalState state;
    const ra::cuda::device dev{stream, &ctx, false, &state};
    ra::cuda::DeviceBuffer<T> y2(B * T_ * C), y3(B * T_ * C), o3(B * T_ * C);
    ra::test::poison(y2.data(), y2.size());
    const auto xv = ra::make_view(static_cast<const T*>(x_d.data()), ra::shape(B, T_, C));
    const auto expr = ra::attention_block<ra::DynamicRank>(cfg, xv, block.device_weights(), D);
    const auto tape = ra::eval(ra::make_view(y2.data(), ra::shape(B * T_, C)), expr, dev);
    RA_CHECK_PRECISION(ra::test::judge(family + " y", "y (ra::eval on cuda::device)",
                                       as_double(ra::test::to_host(y2.data(), y2.size())),
                                       naive.values, ref, naive.floor, C));
    // The attention op alone on the expression's fused buffer: the same kernel on the same
    // inputs, so the same bits as the expression's O'.
    ra::test::poison(o3.data(), o3.size());
    const auto fused_v = ra::StridedView<const T, 2>(tape.tape.a_tape.fused);  // (BT,3C)
    const auto qkv = ra::folded_views(ra::view(fused_v, ra::shape(B, T_, 3 * C)), H, D);
    const auto o3_heads = ra::heads(ra::make_view(o3.data(), ra::shape(B, T_, C)), H,
                                    D);  // (B,H,T,D) strides (TC,D,C,1)
    ra::eval(o3_heads,
             ra::folded_attention(qkv.q, qkv.k, qkv.v, cfg.R, block.gates(), ra::causal,
                                  block.restart()),
             ra::cuda::device{stream, &ctx});
    const auto o_expr = tape.tape.a;  // (BT,C) O' in the state's scratch
    CHECK(ra::test::bitwise_equal(ra::test::to_host(o3.data(), o3.size()),
                                  ra::test::to_host(o_expr.data(), o_expr.size())));
    // With D and R as template arguments the kernels of <T, D, R> launch directly: the same
    // bits as through the runtime dispatch.
    ra::test::poison(y3.data(), y3.size());
    ra::dispatch_attention(static_cast<int>(D), cfg.R, [&](auto d, auto r) {
      constexpr int kR = static_cast<int>(decltype(r)::value);
      const auto fixed = ra::attention_block<ra::Rank<kR>>(cfg, xv, block.device_weights(), d);
      (void)ra::eval(ra::make_view(y3.data(), ra::shape(B * T_, C)), fixed, dev);
    });
    CHECK(ra::test::bitwise_equal(ra::test::to_host(y3.data(), y3.size()),
                                  ra::test::to_host(y2.data(), y2.size())));
  }
}

// The GPU block's backward against ra::cpu::block_backward in double, under the precision
// rule with the naive block backward's errors (reference.hpp): dx per token row of C, each
// weight gradient per row, each bias gradient and each gate / restart gradient as one row.
template <class T>
void run_backward_case(ra::cuda::Context& ctx, cudaStream_t stream, const AttentionBlockConfig& cfg,
                       std::uint64_t salt) {
  INFO(describe(cfg, ra::dtype_v<T>));
  const index_t max_B = 2, max_T = 130, C = cfg.C;
  std::ostringstream dtype_name;
  dtype_name << ra::dtype_v<T>;
  const std::string family = "block backward " + dtype_name.str();
  auto g = ra::test::rng(salt);
  const HostBlock<T> host(cfg, g, /*pad=*/false);
  ra::cuda::AttentionBlock<T> block(cfg, max_B, max_T, /*plan_unfused=*/false, &ctx,
                                    /*plan_backward=*/true);
  block.load(host.views());
  const auto grads = block.gradients();
  const index_t n_gates = cfg.gate_count(), n_a = cfg.restart_count();
  const auto poison_grads = [&] {
    for (const auto& [p, n] : {std::pair<float*, index_t>{grads.w_attn.data(), 3 * C * C},
                               {grads.b_attn.data(), cfg.bias ? 3 * C : 0},
                               {grads.w_o.data(), C * C},
                               {grads.b_o.data(), cfg.bias ? C : 0},
                               {grads.w_std, n_gates},
                               {grads.w_rec, n_gates},
                               {grads.a, n_a}})
      if (n > 0) ra::test::poison(p, n);
  };

  for (auto [B, T_] : {std::pair<index_t, index_t>{2, 130}, {1, 5}, {2, 7}}) {
    INFO("B=" << B << " T=" << T_);
    const auto x = ra::test::random_vector<T>(B * T_ * C, g);
    const auto dy = ra::test::random_vector<T>(B * T_ * C, g);
    auto x_d = ra::test::to_device(x);
    auto dy_d = ra::test::to_device(dy);
    ra::cuda::DeviceBuffer<T> dx_d(B * T_ * C);
    ra::test::poison(dx_d.data(), dx_d.size());
    poison_grads();
    RA_CUDA_CHECK(cudaMemset(block.scratch_data(), 0xff, block.scratch_bytes()));
    const auto count = ra::cuda::allocation_count();
    block.backward(x_d.data(), dy_d.data(), dx_d.data(), B, T_, stream);
    RA_CUDA_CHECK(cudaStreamSynchronize(stream));
    CHECK(ra::cuda::allocation_count() == count);  // planned by the constructor

    const auto pb = host.problem(x, B, T_);
    const auto ref = ra::test::reference_block_backward(pb, dy.data());
    const auto naive = ra::test::naive_block_backward(pb, dy.data());
    const auto& nv = naive.values;
    const auto& nf = naive.floor;
    const auto dx = as_double(ra::test::to_host(dx_d.data(), dx_d.size()));
    RA_CHECK_PRECISION(ra::test::judge(family + " dx", "dx", dx, nv.dx, ref.dx, nf.dx, C));
    const auto fetch = [](const float* p, index_t n) { return as_double(ra::test::to_host(p, n)); };
    RA_CHECK_PRECISION(ra::test::judge(family + " dW", "dW_attn",
                                       fetch(grads.w_attn.data(), 3 * C * C), nv.w_attn, ref.w_attn,
                                       nf.w_attn, C));
    RA_CHECK_PRECISION(ra::test::judge(family + " dW", "dW_o", fetch(grads.w_o.data(), C * C),
                                       nv.w_o, ref.w_o, nf.w_o, C));
    if (cfg.bias) {
      RA_CHECK_PRECISION(ra::test::judge(family + " db", "db_attn",
                                         fetch(grads.b_attn.data(), 3 * C), nv.b_attn, ref.b_attn,
                                         nf.b_attn, 3 * C));
      RA_CHECK_PRECISION(ra::test::judge(family + " db", "db_o", fetch(grads.b_o.data(), C), nv.b_o,
                                         ref.b_o, nf.b_o, C));
    }
    if (n_gates > 0) {
      RA_CHECK_PRECISION(ra::test::judge(family + " d w_std", "d w_std",
                                         fetch(grads.w_std, n_gates), nv.w_std, ref.w_std, nf.w_std,
                                         1));
      RA_CHECK_PRECISION(ra::test::judge(family + " d w_rec", "d w_rec",
                                         fetch(grads.w_rec, n_gates), nv.w_rec, ref.w_rec, nf.w_rec,
                                         1));
    }
    if (n_a > 0)
      RA_CHECK_PRECISION(
          ra::test::judge(family + " d a", "d a", fetch(grads.a, n_a), nv.a, ref.a, nf.a, 1));

    // Deterministic: a second backward gives the same bits.
    ra::cuda::DeviceBuffer<T> dx2(B * T_ * C);
    block.backward(x_d.data(), dy_d.data(), dx2.data(), B, T_, stream);
    CHECK(ra::test::bitwise_equal(ra::test::to_host(dx2.data(), dx2.size()),
                                  ra::test::to_host(dx_d.data(), dx_d.size())));
  }
}

}  // namespace

TEST_CASE("DeviceBuffer counts its allocation and frees it", "[cuda][buffer]") {
  const auto count = ra::cuda::allocation_count();
  const auto bytes = ra::cuda::allocated_bytes();
  {
    ra::cuda::DeviceBuffer<float> a(1000);
    CHECK(a.data() != nullptr);
    CHECK(a.bytes() == 4000);
    CHECK(ra::cuda::allocation_count() == count + 1);
    CHECK(ra::cuda::allocated_bytes() == bytes + 4000);
    ra::cuda::DeviceBuffer<float> b(std::move(a));
    CHECK(a.data() == nullptr);
    CHECK(a.size() == 0);
    CHECK(b.size() == 1000);
    CHECK(ra::cuda::allocation_count() == count + 1);  // a move allocates nothing
    ra::cuda::DeviceBuffer<float> empty(0);
    CHECK(empty.data() == nullptr);
    CHECK(ra::cuda::allocation_count() == count + 1);
  }
  CHECK(ra::cuda::allocated_bytes() == bytes);
  CHECK_THROWS_WITH(ra::cuda::DeviceBuffer<float>(-1), Catch::Contains("'n'"));
}

TEST_CASE("Workspace lays named regions out 256-byte aligned in one allocation",
          "[cuda][workspace]") {
  using ra::cuda::region_of;
  const auto count = ra::cuda::allocation_count();
  const auto ws = ra::cuda::Workspace::plan({region_of<ra::fp16>("a", 3),
                                             region_of<float>("empty", 0),
                                             region_of<float>("b", 1000),
                                             {"raw", 300}});
  CHECK(ra::cuda::allocation_count() == count + 1);
  CHECK(ws.size() == 4);
  CHECK(ws.region<float>("empty") == nullptr);
  std::set<std::uintptr_t> starts;
  for (const char* name : {"a", "b", "raw"}) {
    const auto p = reinterpret_cast<std::uintptr_t>(ws.region<std::byte>(name));
    CHECK(p % ra::cuda::Workspace::kAlignment == 0);
    starts.insert(p);
  }
  CHECK(starts.size() == 3);
  // Back to back, each rounded up to 256 bytes: 6 -> 256, 0 -> 0, 4000 -> 4096, 300 -> 512.
  CHECK(ws.region_offset(ws.index("b")) == 256);
  CHECK(ws.region_offset(ws.index("raw")) == 256 + 4096);
  CHECK(ws.bytes() == 256 + 4096 + 512);
  CHECK(ws.region_bytes("b") == 4000);
  CHECK_THROWS_WITH(ws.region<float>("missing"), Catch::Contains("missing"));
  CHECK_THROWS_WITH(ws.region<float>("a"), Catch::Contains("sizeof(T)"));
  CHECK_THROWS_WITH(ra::cuda::Workspace::plan({{"x", 4}, {"x", 8}}),
                    Catch::Contains("'region name'") && Catch::Contains("x"));
  CHECK(ra::cuda::allocation_count() == count + 1);  // the failed plan allocated nothing
}

/// Runs `run(ctx, stream, cfg, salt)` for every block config whose (D, R) this build compiles
/// (warning for the others), and fails when none ran.
template <class T, class Run>
void for_each_compiled_config(std::uint64_t salt, Run&& run) {
  ra::cuda::Context ctx;
  ra::test::Stream stream;
  int ran = 0;
  for (const auto& cfg : kConfigs) {
    ++salt;
    if (!compiled(cfg)) {
      WARN("skipped (D, R) not compiled in: " << describe(cfg, ra::dtype_v<T>));
      continue;
    }
    run(ctx, stream, cfg, salt);
    ++ran;
  }
  INFO("no block config has a (D, R) pair this build compiles");
  CHECK(ran > 0);
}

TEMPLATE_TEST_CASE("the GPU attention block matches ra::cpu::block_forward on both paths",
                   "[cuda][block]", float, ra::fp16, ra::bf16) {
  for_each_compiled_config<TestType>(3000, [](auto& ctx, auto& stream, const auto& cfg, auto salt) {
    run_block_case<TestType>(ctx, stream, cfg, salt);
  });
}

TEMPLATE_TEST_CASE("the GPU attention block's backward matches ra::cpu::block_backward",
                   "[cuda][block][backward]", float, ra::fp16, ra::bf16) {
  for_each_compiled_config<TestType>(3500, [](auto& ctx, auto& stream, const auto& cfg, auto salt) {
    run_backward_case<TestType>(ctx, stream, cfg, salt);
  });
}

TEST_CASE("a block forward makes no device allocation, on either path", "[cuda][block][alloc]") {
  ra::cuda::Context ctx;
  ra::test::Stream stream;
  const auto cfg = block_config(768, 12, 4, GateMode::per_layer, GateParam::clamp, false, true);
  const index_t max_B = 2, max_T = 256, C = cfg.C;
  const auto before = ra::cuda::allocation_count();
  ra::cuda::AttentionBlock<ra::bf16> block(cfg, max_B, max_T, true, &ctx);
  CHECK(ra::cuda::allocation_count() == before + 1);  // everything in one workspace
  CHECK(block.device_bytes() == block.workspace().bytes());

  auto g = ra::test::rng(4000);
  const HostBlock<ra::bf16> host(cfg, g, false);
  block.load(host.views());
  auto x = ra::test::to_device(ra::test::random_vector<ra::bf16>(max_B * max_T * C, g));
  ra::cuda::DeviceBuffer<ra::bf16> y(max_B * max_T * C);
  const auto forwards = [&] {
    block.forward(x.data(), y.data(), max_B, max_T, stream, AttentionPath::fused);
    block.forward(x.data(), y.data(), max_B, max_T, stream, AttentionPath::unfused);
    block.forward(x.data(), y.data(), 1, 100, stream, AttentionPath::fused);  // below the plan
  };
  forwards();  // warm-up: lazy module loading, cuBLAS initialisation, plans for B·T = 100
  const auto count = ra::cuda::allocation_count();
  const auto free_bytes = ra::test::free_device_bytes();
  for (int i = 0; i < 3; ++i) forwards();
  CHECK(ra::test::free_device_bytes() == free_bytes);
  CHECK(ra::cuda::allocation_count() == count);
}

TEST_CASE("the GPU attention block rejects bad configs, sizes and pointers",
          "[cuda][block][errors]") {
  ra::cuda::Context ctx;
  ra::test::Stream stream;
  const auto cfg = block_config(256, 4, 4, GateMode::none, GateParam::clamp, false, true);
  CHECK_THROWS_WITH(
      ra::cuda::AttentionBlock<ra::fp16>(
          block_config(250, 4, 4, GateMode::none, GateParam::clamp, false, true), 1, 8, true, &ctx),
      Catch::Contains("'C'"));
  CHECK_THROWS_AS(
      ra::cuda::AttentionBlock<ra::fp16>(
          block_config(200, 4, 4, GateMode::none, GateParam::clamp, false, true), 1, 8, true, &ctx),
      ra::unsupported);  // D = 50
  CHECK_THROWS_WITH(ra::cuda::AttentionBlock<ra::fp16>(cfg, 0, 8, true, &ctx),
                    Catch::Contains("max_batch"));

  ra::cuda::AttentionBlock<ra::fp16> block(cfg, 2, 16, /*plan_unfused=*/false, &ctx);
  ra::cuda::DeviceBuffer<ra::fp16> x(2 * 16 * 256 + 8), y(2 * 16 * 256);
  CHECK_THROWS_WITH(block.forward(x.data(), y.data(), 2, 16, stream), Catch::Contains("load()"));
  auto g = ra::test::rng(5000);
  const HostBlock<ra::fp16> host(cfg, g, false);
  block.load(host.views());
  CHECK_THROWS_WITH(block.forward(x.data(), y.data(), 3, 16, stream), Catch::Contains("'B'"));
  CHECK_THROWS_WITH(block.forward(x.data(), y.data(), 2, 17, stream), Catch::Contains("'T'"));
  CHECK_THROWS_WITH(block.forward(x.data() + 1, y.data(), 2, 16, stream),
                    Catch::Contains("'x'") && Catch::Contains("aligned"));
  CHECK_THROWS_WITH(block.forward(x.data(), nullptr, 2, 16, stream), Catch::Contains("'y'"));
  CHECK_THROWS_WITH(block.forward(x.data(), y.data(), 2, 16, stream, AttentionPath::unfused),
                    Catch::Contains("plan_unfused"));
  CHECK_THROWS_WITH(block.set_gates(0.5f, 0.5f), Catch::Contains("gates"));
  CHECK_THROWS_WITH(block.set_restart(0.1f), Catch::Contains("restart"));
  auto bad = host.views();
  bad.w_o = ra::make_view(host.w_o.data(), ra::shape(128, 256));
  CHECK_THROWS_WITH(block.load(bad), Catch::Contains("w_o"));
  CHECK_NOTHROW(block.forward(x.data(), y.data(), 0, 16, stream));  // nothing to do
  CHECK_THROWS_WITH(block.backward(x.data(), y.data(), nullptr, 2, 16, stream),
                    Catch::Contains("'plan_backward'"));

  ra::cuda::AttentionBlock<ra::fp16> trained(cfg, 2, 16, /*plan_unfused=*/false, &ctx,
                                             /*plan_backward=*/true);
  CHECK_THROWS_WITH(trained.backward(x.data(), y.data(), nullptr, 2, 16, stream),
                    Catch::Contains("load()"));
  trained.load(host.views());
  CHECK_THROWS_WITH(trained.backward(x.data(), y.data(), x.data(), 2, 16, stream),
                    Catch::Contains("'dx'") && Catch::Contains("memory of its own"));
  CHECK_THROWS_WITH(trained.backward(x.data(), y.data() + 1, nullptr, 2, 16, stream),
                    Catch::Contains("'dy'") && Catch::Contains("aligned"));
  CHECK_THROWS_WITH(trained.backward(x.data(), y.data(), nullptr, 2, 17, stream),
                    Catch::Contains("'T'"));
  CHECK_NOTHROW(trained.backward(x.data(), y.data(), nullptr, 2, 16, stream));  // dx not wanted

  // A nested expression needs an EvalState on the device for its intermediates.
  const auto xv = ra::make_view(static_cast<const ra::fp16*>(x.data()), ra::shape(2, 16, 256));
  const auto expr =
      ra::attention_block<ra::DynamicRank>(cfg, xv, block.device_weights(), ra::index_t{64});
  CHECK_THROWS_WITH(
      ra::eval(ra::make_view(y.data(), ra::shape(32, 256)), expr, ra::cuda::device{stream, &ctx}),
      Catch::Contains("EvalState"));
}
