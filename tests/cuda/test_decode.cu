// tests/cuda/test_decode.cu — the decode kernel (attention_decode, ra/cuda/decode.cuh): T_q new
// query rows over a KV cache with per-sequence key counts in device memory, against its CPU
// twin (cpu::attention_forward with T_q < T_k, in double) by the precision rule
// (tests/common/precision.hpp; decode_reference.hpp builds the naive yardstick).
//
// Every compiled (D, R), dtype, gate mode (none; per layer, clamp; per head, softplus; per
// head, clamp) with and without self-restart, T_q in {1, 3}, ragged lengths including T_q
// (1 for T_q = 1) and the whole cache, one split and several (the combine); Qf read from a
// fused (B,T_q,3C) buffer, O' written in (B,T_q,C) layout, the cache filled with random values
// past each length (never read); outputs poisoned first; a second run gives the same bits.
#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include <ra/core.hpp>
#include <ra/cuda/attention.cuh>
#include <ra/cuda/buffer.cuh>

#include "../common/dr_test_case.hpp"
#include "../common/precision.hpp"
#include "cuda_test_utils.cuh"
#include "decode_reference.hpp"
#include "flash_reference.hpp"

namespace {

using ra::DType;
using ra::GateMode;
using ra::GateParam;
using ra::index_t;

struct DecodeCase {
  DType dtype = DType::bf16;
  int B = 3, H = 2, D = 64, R = 0, rows = 1, max_seq = 150;
  GateMode gates = GateMode::none;
  GateParam param = GateParam::clamp;
  bool restart = false;
  int splits = 1;  // 0: decode_splits()
};

std::string describe(const DecodeCase& c, const std::vector<int>& lengths) {
  std::string len;
  for (int n : lengths) {
    if (!len.empty()) len += ',';
    len += std::to_string(n);
  }
  return ra::detail::concat(c.dtype, " B=", c.B, " H=", c.H, " D=", c.D, " R=", c.R,
                            " T_q=", c.rows, " max_seq=", c.max_seq, " lengths {", len,
                            "} gates=", c.gates, "/", c.param, " restart=", c.restart,
                            " splits=", c.splits, " seed=", ra::test::seed());
}

template <class T>
std::vector<double> as_double(const std::vector<T>& v) {
  std::vector<double> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = ra::convert<double>(v[i]);
  return out;
}

// (B,T_q,C) device output as (B,H,T_q,D) row-major doubles.
template <class T>
std::vector<double> heads_of(const std::vector<T>& btc, int B, int S, int H, int D) {
  std::vector<double> out;
  out.reserve(btc.size());
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h)
      for (int t = 0; t < S; ++t)
        for (int d = 0; d < D; ++d)
          out.push_back(
              ra::convert<double>(btc[static_cast<std::size_t>(((b * S + t) * H + h) * D + d)]));
  return out;
}

template <class T>
void run_case(const DecodeCase& c, std::mt19937_64& rng) {
  const index_t B = c.B, H = c.H, D = c.D, S = c.rows, M = c.max_seq, C = H * D;
  // Lengths: the fewest keys a row set can have, the whole cache, and one in between.
  std::vector<int> lengths;
  for (int b = 0; b < c.B; ++b)
    lengths.push_back(b == 0 ? c.rows : b == 1 ? c.max_seq : (c.max_seq + c.rows) / 2 + 1);
  INFO(describe(c, lengths));

  // Inputs: a fused (B,T_q,3C) buffer holding Qf; the cache (B,H,max_seq,D) filled throughout.
  const auto fused_h = ra::test::random_vector<T>(B * S * 3 * C, rng);
  const auto k_h = ra::test::random_vector<T>(B * H * M * D, rng);
  const auto v_h = ra::test::random_vector<T>(B * H * M * D, rng);
  std::vector<T> q_h(static_cast<std::size_t>(B * H * S * D));  // compact copy for the reference
  for (index_t b = 0; b < B; ++b)
    for (index_t h = 0; h < H; ++h)
      for (index_t t = 0; t < S; ++t)
        for (index_t d = 0; d < D; ++d)
          q_h[static_cast<std::size_t>(((b * H + h) * S + t) * D + d)] =
              fused_h[static_cast<std::size_t>((b * S + t) * 3 * C + h * D + d)];

  ra::test::FoldedProblem params;  // only for its parameter draw
  params.heads = c.H;
  params.gate_mode = c.gates;
  params.gate_param = c.param;
  ra::test::randomize_parameters(params, c.restart, rng);

  ra::test::DecodeProblem pb;
  pb.dtype = c.dtype;
  pb.batch = c.B, pb.heads = c.H, pb.head_dim = c.D, pb.rank = c.R;
  pb.rows = c.rows, pb.max_seq = c.max_seq, pb.lengths = lengths;
  pb.gate_mode = c.gates, pb.gate_param = c.param;
  pb.w_std = params.w_std, pb.w_rec = params.w_rec, pb.a = params.a;
  pb.q = q_h.data(), pb.k = k_h.data(), pb.v = v_h.data();
  const auto ref = ra::test::decode_reference(pb);

  const auto fused = ra::test::to_device(fused_h);
  const auto k = ra::test::to_device(k_h), v = ra::test::to_device(v_h);
  const auto lens = ra::test::to_device(lengths);
  const auto w_std = ra::test::to_device(pb.w_std), w_rec = ra::test::to_device(pb.w_rec);
  const auto a = ra::test::to_device(pb.a);
  const int splits = c.splits > 0 ? c.splits : ra::cuda::decode_splits(B, H, M);
  ra::cuda::DeviceBuffer<float> ws(ra::cuda::decode_workspace_floats(B, H, S, D, splits));
  ra::cuda::DeviceBuffer<T> out(B * S * C), out_pre(B * S * C);
  ra::cuda::DeviceBuffer<float> lse(B * H * S);

  ra::cuda::AttentionParams p;
  p.q = fused.data();
  p.k = k.data();
  p.v = v.data();
  p.o = out.data();
  p.o_pre = c.restart ? out_pre.data() : nullptr;
  p.lse = lse.data();
  p.q_batch_stride = S * 3 * C, p.q_head_stride = D, p.q_row_stride = 3 * C;  // (3TC,D,3C,1)
  p.k_batch_stride = p.v_batch_stride = H * M * D;
  p.k_head_stride = p.v_head_stride = M * D;
  p.k_row_stride = p.v_row_stride = D;
  p.o_batch_stride = p.o_pre_batch_stride = S * C;  // (B,T_q,C) layout: (TC,D,C,1)
  p.o_head_stride = p.o_pre_head_stride = D;
  p.o_row_stride = p.o_pre_row_stride = C;
  p.batch = c.B, p.heads = c.H, p.head_dim = c.D, p.rank = c.R;
  p.seq = c.rows, p.seq_k = c.max_seq;
  p.scale = 1.0f / std::sqrt(static_cast<float>(D));
  p.dtype = c.dtype;
  p.gates = ra::Gates{c.gates, c.param, w_std.data(), w_rec.data()};
  p.restart = ra::Restart{c.restart ? a.data() : nullptr};
  p.seq_lens = lens.data();
  p.kv_splits = splits;
  p.split_ws = ws.data();
  p.split_ws_floats = ws.size();

  auto run = [&] {
    ra::test::poison(out.data(), out.size());
    ra::test::poison(out_pre.data(), out_pre.size());
    ra::test::poison(lse.data(), lse.size());
    ra::cuda::attention_decode(p, nullptr);
    RA_CUDA_CHECK(cudaDeviceSynchronize());
    return std::vector<std::vector<double>>{
        heads_of(ra::test::to_host(out.data(), out.size()), c.B, c.rows, c.H, c.D),
        heads_of(ra::test::to_host(out_pre.data(), out_pre.size()), c.B, c.rows, c.H, c.D),
        as_double(ra::test::to_host(lse.data(), lse.size()))};
  };
  const auto got = run();
  const std::string fam = ra::detail::concat(" ", c.dtype);
  const auto Dz = static_cast<std::size_t>(D);
  RA_CHECK_PRECISION(
      ra::test::judge("decode O'" + fam, "O'", got[0], ref.n_o, ref.o, ref.n_o_floor, Dz));
  if (c.restart)
    RA_CHECK_PRECISION(ra::test::judge("decode O" + fam, "O (before the restart mix)", got[1],
                                       ref.n_o_pre, ref.o_pre, ref.n_o_pre_floor, Dz));
  else  // o_pre not asked for: untouched
    CHECK(ra::test::is_poison(ra::test::to_host(out_pre.data(), 1)[0]));
  RA_CHECK_PRECISION(
      ra::test::judge("decode lse" + fam, "lse", got[2], ref.n_lse, ref.lse, ref.n_lse_floor, 1));
  // Deterministic: the same inputs give the same bits.
  const auto again = run();
  CHECK(ra::test::bitwise_equal(got[0], again[0]));
  CHECK(ra::test::bitwise_equal(got[2], again[2]));
}

void run_case(const DecodeCase& c, std::mt19937_64& rng) {
  switch (c.dtype) {
    case DType::f32:
      run_case<float>(c, rng);
      break;
    case DType::f16:
      run_case<ra::fp16>(c, rng);
      break;
    case DType::bf16:
      run_case<ra::bf16>(c, rng);
      break;
  }
}

}  // namespace

RA_DR_TEST_CASE(ra::test::every_pair, "decode kernel keeps the precision rule", "[decode][cuda]") {
  const DType dtype = GENERATE(DType::f16, DType::bf16, DType::f32);
  auto rng = ra::test::rng(ra::test::dr_salt(0xdc, static_cast<int>(dtype), D, R));
  struct GateChoice {
    GateMode mode;
    GateParam param;
  };
  for (GateChoice g : {GateChoice{GateMode::none, GateParam::clamp},
                       GateChoice{GateMode::per_layer, GateParam::clamp},
                       GateChoice{GateMode::per_head, GateParam::softplus},
                       GateChoice{GateMode::per_head, GateParam::clamp}})
    for (bool restart : {false, true})
      for (int rows : {1, 3})
        for (int splits : {1, 0, 5}) {
          DecodeCase c;
          c.dtype = dtype;
          c.D = D, c.R = R;
          c.gates = g.mode, c.param = g.param;
          c.restart = restart;
          c.rows = rows;
          c.splits = splits;
          run_case(c, rng);
        }
}

TEST_CASE("decode kernel at the largest T_q and a long cache", "[decode][cuda]") {
  auto rng = ra::test::rng(0xdd);
  for (DType dtype : {DType::bf16, DType::f32}) {
    DecodeCase c;
    c.dtype = dtype;
    c.B = 2, c.H = 3, c.D = ra::SupportedHeadDims::values[0], c.R = ra::test::reference_rank();
    if (c.R >= c.D) c.R = 0;
    c.rows = ra::cuda::kDecodeMaxRows;
    c.max_seq = 1100;
    c.gates = GateMode::per_head;
    c.restart = true;
    c.splits = 0;
    run_case(c, rng);
  }
}

TEST_CASE("attention_decode rejects bad parameters with a clear error", "[decode][cuda]") {
  using Catch::Contains;
  const index_t H = 2, D = 64, M = 32, S = 2;
  ra::cuda::DeviceBuffer<ra::bf16> q(S * H * D), kv(2 * H * M * D), o(S * H * D);
  const auto lens = ra::test::to_device(std::vector<int>{8});
  ra::cuda::DeviceBuffer<float> ws(ra::cuda::decode_workspace_floats(1, H, S, D, 4));
  ra::cuda::AttentionParams p;
  p.q = q.data();
  p.k = kv.data();
  p.v = kv.data() + H * M * D;
  p.o = o.data();
  p.q_batch_stride = p.o_batch_stride = S * H * D;
  p.q_head_stride = p.o_head_stride = D;
  p.q_row_stride = p.o_row_stride = H * D;
  p.k_batch_stride = p.v_batch_stride = H * M * D;
  p.k_head_stride = p.v_head_stride = M * D;
  p.k_row_stride = p.v_row_stride = D;
  p.batch = 1, p.heads = static_cast<int>(H), p.head_dim = static_cast<int>(D);
  p.rank = ra::SupportedRanks::values[0];
  p.seq = static_cast<int>(S), p.seq_k = static_cast<int>(M);
  p.scale = 0.125f;
  p.dtype = DType::bf16;
  p.seq_lens = lens.data();
  p.kv_splits = 4;
  p.split_ws = ws.data();
  p.split_ws_floats = ws.size();
  if (!ra::SupportedHeadDims::contains(64)) p.head_dim = ra::SupportedHeadDims::values[0];
  if (p.head_dim != 64) return;  // the shapes above are for D = 64
  REQUIRE_NOTHROW(ra::cuda::attention_decode(p, nullptr));
  RA_CUDA_CHECK(cudaDeviceSynchronize());
  SECTION("no query rows") {
    p.seq = 0;
    REQUIRE_THROWS_WITH(ra::cuda::attention_decode(p, nullptr),
                        Contains("'T_q' is 0") && Contains("1 to 16 new query rows"));
  }
  SECTION("more query rows than the decode kernel takes") {
    p.seq = 17;
    REQUIRE_THROWS_WITH(ra::cuda::attention_decode(p, nullptr),
                        Contains("'T_q' is 17") && Contains("attention_forward's"));
  }
  SECTION("a cache shorter than the new rows") {
    p.seq_k = 1;
    REQUIRE_THROWS_WITH(ra::cuda::attention_decode(p, nullptr),
                        Contains("'T_k' is 1") && Contains("T_k >= T_q = 2"));
  }
  SECTION("no lengths") {
    p.seq_lens = nullptr;
    REQUIRE_THROWS_WITH(ra::cuda::attention_decode(p, nullptr),
                        Contains("'seq_lens' is a null pointer"));
  }
  SECTION("splits out of range") {
    p.kv_splits = 0;
    REQUIRE_THROWS_WITH(ra::cuda::attention_decode(p, nullptr), Contains("'kv_splits' is 0"));
    p.kv_splits = ra::cuda::kDecodeMaxSplits + 1;
    REQUIRE_THROWS_WITH(ra::cuda::attention_decode(p, nullptr),
                        Contains("'kv_splits' is 65") && Contains("1 to 64"));
  }
  SECTION("a split workspace too small, or none") {
    p.split_ws_floats = ws.size() - 1;
    REQUIRE_THROWS_WITH(ra::cuda::attention_decode(p, nullptr),
                        Contains("'split_ws_floats'") && Contains("decode_workspace_floats"));
    p.split_ws = nullptr;
    p.split_ws_floats = ws.size();
    REQUIRE_THROWS_WITH(ra::cuda::attention_decode(p, nullptr), Contains("'split_ws_floats' is 0"));
  }
  SECTION("a cache row stride that breaks 16-byte rows") {
    p.k_row_stride = D + 1;
    REQUIRE_THROWS_WITH(ra::cuda::attention_decode(p, nullptr),
                        Contains("'stride' is 65") && Contains("16-byte rows"));
  }
  SECTION("a misaligned cache") {
    p.k = kv.data() + 1;
    REQUIRE_THROWS_WITH(ra::cuda::attention_decode(p, nullptr),
                        Contains("'pointer'") && Contains("16-byte alignment"));
  }
  SECTION("an unsupported head dim") {
    p.head_dim = 48;
    REQUIRE_THROWS_AS(ra::cuda::attention_decode(p, nullptr), ra::unsupported);
  }
  SECTION("the flash kernels refuse the decode shapes") {
    REQUIRE_THROWS_WITH(ra::cuda::attention_forward(p, nullptr),
                        Contains("attention_decode takes T_q < T_k"));
    p.seq_k = p.seq;
    REQUIRE_THROWS_WITH(ra::cuda::attention_forward(p, nullptr),
                        Contains("'seq_lens' is a pointer"));
  }
}
