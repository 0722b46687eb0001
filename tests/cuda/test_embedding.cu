// tests/cuda/test_embedding.cu — GPT-2's token + position embedding on the GPU
// (ra/cuda/embedding.cuh): TokenBuckets on the host; forward; backward with dwpe overwritten
// (rows T <= t < max_seq exactly 0) and dwte accumulated onto a non-zero dwte with repeated
// tokens (rows of absent tokens keep their value exactly). float and bf16, B = 3, T = 37
// (111 rows), C = 64 and 200; outputs poisoned with NaN first.
//
// Precision (tests/common/precision.hpp): error against the exact reference at most 2x the
// naive one's plus the floor, per element, per row (C values) and in relative L2. Both from
// training_reference.hpp: exact in double; naive in fp32 — out = T(wte + wpe) (floor
// u_T·‖(wte, wpe)‖₂); dwpe = Σ over the batch in order; dwte = dwte0 + (the token's dout
// summed over its positions in order), what `dwte += Σ` computes; both stored in fp32 (floors
// u32·‖terms‖₂, dwte's terms including dwte0).
#include <catch2/catch.hpp>

#include <cstdint>
#include <random>
#include <vector>

#include <ra/cuda/embedding.cuh>

#include "training_test_utils.cuh"

namespace {

using ra::index_t;
using ra::test::as_double;
using ra::test::sz;

}  // namespace

TEST_CASE("training TokenBuckets groups positions by token in order",
          "[cuda][training][embedding]") {
  const std::vector<std::int32_t> tokens = {5, 2, 5, 7, 2, 5};
  const ra::cuda::TokenBuckets b(tokens);
  CHECK(b.ids == std::vector<std::int32_t>{2, 5, 7});
  CHECK(b.start == std::vector<std::int32_t>{0, 2, 5, 6});
  CHECK(b.rows == std::vector<std::int32_t>{1, 4, 0, 2, 5, 3});
  const ra::cuda::TokenBuckets empty(std::vector<std::int32_t>{});
  CHECK(empty.ids.empty());
  CHECK(empty.start == std::vector<std::int32_t>{0});
  CHECK(empty.rows.empty());
}

TEMPLATE_TEST_CASE("training embedding forward and backward keep the precision rule",
                   "[sanitize][cuda][training][embedding]", float, ra::bf16) {
  using T = TestType;
  const index_t B = 3, S = 37, max_seq = 45, V = 50, N = B * S;
  ra::test::TrainingCase<T> tc("embedding", 500);
  for (index_t C : {64, 200}) {
    INFO(ra::test::describe(tc.dtype, N, C) << " B=" << B << " T=" << S << " max_seq=" << max_seq);
    auto g = tc.next_rng();
    auto tokens = ra::test::random_tokens(N, 20, g);  // 111 positions, 20 ids: repeats
    tokens[0] = tokens[40] = tokens[sz(N - 1)] = 7;
    const auto wte = ra::test::random_vector<T>(V * C, g);
    const auto wpe = ra::test::random_vector<T>(max_seq * C, g);
    auto tok_d = ra::test::to_device(tokens);
    auto wte_d = ra::test::to_device(wte);
    auto wpe_d = ra::test::to_device(wpe);
    auto out_d = ra::test::poisoned<T>(N * C);
    ra::cuda::embedding_forward(tok_d.data(), wte_d.data(), wpe_d.data(), out_d.data(), B, S, C,
                                tc.stream);
    const auto wte_d64 = as_double(wte), wpe_d64 = as_double(wpe);
    RA_CHECK_PRECISION(tc.judge(
        "out", out_d,
        ra::test::embedding_forward_reference<float, T>(tokens, wte_d64, wpe_d64, S, C),
        ra::test::embedding_forward_reference<double, T>(tokens, wte_d64, wpe_d64, S, C), C));

    // Backward: dwpe overwritten (poisoned first), dwte added onto a non-zero dwte.
    const auto dout = ra::test::random_vector<T>(N * C, g);
    const auto dwte0 = ra::test::random_vector<float>(V * C, g);
    auto dout_d = ra::test::to_device(dout);
    auto dwte_d = ra::test::to_device(dwte0);
    auto dwpe_d = ra::test::poisoned<float>(max_seq * C);
    const ra::cuda::TokenBuckets hb(tokens);
    auto ids_d = ra::test::to_device(hb.ids);
    auto start_d = ra::test::to_device(hb.start);
    auto rows_d = ra::test::to_device(hb.rows);
    const ra::cuda::DeviceTokenBuckets db{ids_d.data(), start_d.data(), rows_d.data(),
                                          static_cast<index_t>(hb.ids.size())};
    ra::cuda::embedding_backward(dout_d.data(), db, dwte_d.data(), dwpe_d.data(), B, S, max_seq, C,
                                 tc.stream);
    std::vector<bool> touched(sz(V), false);
    for (auto t : tokens) touched[sz(t)] = true;
    const auto dout_d64 = as_double(dout), dwte0_d64 = as_double(dwte0);
    ra::test::Computed wte_exact, wpe_exact, wte_naive, wpe_naive;
    ra::test::embedding_backward_reference<double>(tokens, dout_d64, dwte0_d64, S, max_seq, C,
                                                   wte_exact, wpe_exact);
    ra::test::embedding_backward_reference<float>(tokens, dout_d64, dwte0_d64, S, max_seq, C,
                                                  wte_naive, wpe_naive);
    const auto dwpe = ra::test::to_host(dwpe_d.data(), max_seq * C);
    const auto dwte = ra::test::to_host(dwte_d.data(), V * C);
    RA_CHECK_PRECISION(tc.judge("dwpe", dwpe, wpe_naive, wpe_exact, C));
    RA_CHECK_PRECISION(tc.judge("dwte", dwte, wte_naive, wte_exact, C));
    index_t nonzero_tail = 0, changed_untouched = 0;
    for (index_t i = S * C; i < max_seq * C; ++i) nonzero_tail += dwpe[sz(i)] != 0.f;
    for (index_t v = 0; v < V; ++v)
      for (index_t c = 0; c < C; ++c)
        changed_untouched += !touched[sz(v)] && dwte[sz(v * C + c)] != dwte0[sz(v * C + c)];
    CHECK(nonzero_tail == 0);       // rows t >= T of dwpe are exactly 0
    CHECK(changed_untouched == 0);  // rows of tokens absent from the batch keep their value
  }
}
