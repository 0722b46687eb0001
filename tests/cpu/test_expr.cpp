// tests/cpu/test_expr.cpp — expressions that nest: the attention block as ONE expression
// (gemm → fold → attend → gemm), its structure at compile time, its evaluation on cpu::device
// against the leaf ops it is made of (bit for bit, forward and backward: the same arithmetic),
// its backward against central finite differences in double, the workspace arena it takes its
// intermediates from, and bad input.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include <ra/cpu.hpp>

#include "reference.hpp"

namespace {

using namespace ra;
using Catch::Matchers::Contains;

// Random parameters of one block, and views of them and of gradient storage.
template <class T>
struct Block {
  AttentionBlockConfig cfg;
  std::vector<T> w_attn, b_attn, w_o, b_o;
  std::vector<float> w_std, w_rec, a;

  Block(std::mt19937_64& rng, const AttentionBlockConfig& c) : cfg(c) {
    const index_t C = c.C;
    const double s = 1.5 / std::sqrt(double(C));
    w_attn = test::random_normal<T>(rng, 3 * C * C, s);
    b_attn = test::random_normal<T>(rng, 3 * C, 0.1);
    w_o = test::random_normal<T>(rng, C * C, s);
    b_o = test::random_normal<T>(rng, C, 0.1);
    w_std = test::random_uniform(rng, std::max<index_t>(c.gate_count(), 1), 0.2, 1.5);
    w_rec = test::random_uniform(rng, std::max<index_t>(c.gate_count(), 1), 0.2, 1.5);
    a = test::random_uniform(rng, c.H, 0.0, 0.45);
  }
  AttentionBlockWeights<T> view() const {
    const index_t C = cfg.C;
    return {make_view(w_attn.data(), shape(3 * C, C)),
            make_view(b_attn.data(), shape(3 * C)),
            make_view(w_o.data(), shape(C, C)),
            make_view(b_o.data(), shape(C)),
            w_std.data(),
            w_rec.data(),
            a.data()};
  }
};

// Gradient storage of one block.
template <class G>
struct Grads {
  std::vector<G> w_attn, b_attn, w_o, b_o;
  std::vector<float> w_std, w_rec, a;
  index_t C;
  explicit Grads(const AttentionBlockConfig& cfg)
      : w_attn(3 * cfg.C * cfg.C),
        b_attn(3 * cfg.C),
        w_o(cfg.C * cfg.C),
        b_o(cfg.C),
        w_std(std::max<index_t>(cfg.gate_count(), 1)),
        w_rec(w_std.size()),
        a(static_cast<std::size_t>(cfg.H)),
        C(cfg.C) {
    for (auto* v : {&w_attn, &b_attn, &w_o, &b_o}) test::poison(*v);
    for (auto* v : {&w_std, &w_rec, &a}) test::poison(*v);
  }
  AttentionBlockGrads<G> view() {
    return {make_view(w_attn.data(), shape(3 * C, C)),
            make_view(b_attn.data(), shape(3 * C)),
            make_view(w_o.data(), shape(C, C)),
            make_view(b_o.data(), shape(C)),
            w_std.data(),
            w_rec.data(),
            a.data()};
  }
  bool operator==(const Grads& o) const {
    return w_attn == o.w_attn && b_attn == o.b_attn && w_o == o.w_o && b_o == o.b_o &&
           w_std == o.w_std && w_rec == o.w_rec && a == o.a;
  }
};

// Bitwise equality (NaN == NaN where the bits agree: unwritten poison stays poison).
template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

template <class G>
bool same_bits(const Grads<G>& a, const Grads<G>& b) {
  return same_bits(a.w_attn, b.w_attn) && same_bits(a.b_attn, b.b_attn) &&
         same_bits(a.w_o, b.w_o) && same_bits(a.b_o, b.b_o) && same_bits(a.w_std, b.w_std) &&
         same_bits(a.w_rec, b.w_rec) && same_bits(a.a, b.a);
}

constexpr AttentionBlockConfig kConfigs[] = {
    {128, 2, 4, GateMode::per_head, GateParam::clamp, true, true},
    {128, 2, 0, GateMode::none, GateParam::clamp, false, true},
    {192, 3, 16, GateMode::per_layer, GateParam::softplus, false, false},
    {64, 2, 8, GateMode::per_head, GateParam::softplus, true, false},
};

constexpr bool any_config_instantiated() {
  for (const auto& cfg : kConfigs)
    if (test::block_instantiated(int(cfg.C / cfg.H), cfg.R)) return true;
  return false;
}

// The block computed by its leaf ops one after another, as block_forward / block_backward
// were written before the block was one expression: gemm_forward, attention_forward,
// gemm_forward; then gemm_backward, attention_backward, gemm_backward.
template <class T>
void leaf_ops(const Block<T>& p, const std::vector<T>& x, const std::vector<T>& dy, index_t B,
              index_t S, std::vector<T>& y, std::vector<T>& dx, Grads<T>& g) {
  const auto& cfg = p.cfg;
  const index_t C = cfg.C, H = cfg.H, D = cfg.head_dim(), M = B * S;
  const auto w = p.view();
  const StridedView<const T, 1> no_bias{};
  const StridedView<T, 1> no_bias_grad{};
  std::vector<T> fused(M * 3 * C), o(M * C), d_o(M * C), d_fused(M * 3 * C);
  const auto x2 = make_view(x.data(), shape(M, C));              // (BT,C)
  const auto fused2 = make_view(fused.data(), shape(M, 3 * C));  // (BT,3C)
  const auto o2 = make_view(o.data(), shape(M, C));              // (BT,C)
  cpu::gemm_forward(gemm(x2, w.w_attn, cfg.bias ? w.b_attn : no_bias), fused2);
  const auto qkv = folded_views(make_view(static_cast<const T*>(fused.data()), shape(B, S, 3 * C)),
                                H, D);  // 3 x (B,H,T,D) strides (3TC,D,3C,1)
  const auto node =
      folded_attention(qkv.q, qkv.k, qkv.v, cfg.R, w.gates(cfg), causal, w.restart(cfg));
  cpu::attention_forward(node, heads(make_view(o.data(), shape(B, S, C)), H, D));
  cpu::gemm_forward(gemm(StridedView<const T, 2>(o2), w.w_o, cfg.bias ? w.b_o : no_bias),
                    make_view(y.data(), shape(M, C)));

  auto gv = g.view();
  cpu::gemm_backward(StridedView<const T, 2>(o2), w.w_o, make_view(dy.data(), shape(M, C)),
                     make_view(d_o.data(), shape(M, C)), gv.w_o, cfg.bias ? gv.b_o : no_bias_grad);
  const auto d_qkv = folded_views(make_view(d_fused.data(), shape(B, S, 3 * C)), H, D);
  cpu::attention_backward(node,
                          heads(make_view(static_cast<const T*>(d_o.data()), shape(B, S, C)), H, D),
                          d_qkv.q, d_qkv.k, d_qkv.v, AttentionGrads{gv.w_std, gv.w_rec, gv.a});
  cpu::gemm_backward(
      x2, w.w_attn, make_view(static_cast<const T*>(d_fused.data()), shape(M, 3 * C)),
      make_view(dx.data(), shape(M, C)), gv.w_attn, cfg.bias ? gv.b_attn : no_bias_grad);
}

}  // namespace

TEST_CASE("expr: the block is one expression whose D and R are types", "[expr]") {
  constexpr index_t B = 2, S = 3, H = 2, D = 64, C = H * D;
  const AttentionBlockConfig cfg{C, H, 4, GateMode::per_layer, GateParam::clamp, false, true};
  const float w_std = 0.9f, w_rec = 0.1f;
  const std::vector<float> w_attn(3 * C * C), b_attn(3 * C), w_o(C * C), b_o(C), xs(B * S * C),
      fused(B * S * 3 * C);
  const AttentionBlockWeights<float> w{make_view(w_attn.data(), shape(3 * C, C)),
                                       make_view(b_attn.data(), shape(3 * C)),
                                       make_view(w_o.data(), shape(C, C)),
                                       make_view(b_o.data(), shape(C)),
                                       &w_std,
                                       &w_rec,
                                       nullptr};
  const auto x = make_view(xs.data(), shape(B, S, C));  // (B,T,C)
  const auto expr = attention_block<Rank<4>>(cfg, x, w, Int<D>{});

  // y = gemm(attend<4>(fold(gemm(x, W_attn, b_attn), B, H, Int<64>)), W_o, b_o): nested nodes.
  using E = decltype(expr);
  using Att = decltype(expr.a);
  using F = decltype(expr.a.src);
  using Proj = decltype(expr.a.src.src);
  using X2 = StridedView<const float, 2>;
  static_assert(MatrixNode<E> && MatrixNode<Att> && MatrixNode<Proj>);
  static_assert(!Node<F> && !Node<X2> && Operand<X2> && Operand<Att>);
  static_assert(E::kNodeA && !Proj::kNodeA && F::kNodeSrc);
  static_assert(std::is_same_v<Att, Attend<4, F>> && Att::kRank == 4);
  static_assert(std::is_same_v<F, Fold<Proj, Int<D>>>);
  static_assert(std::is_same_v<decltype(Proj::a), X2>);
  static_assert(E::kHasBias && Proj::kHasBias);
  // The attention op it runs on the folded views has D and R as compile-time values: a GPU
  // device launches flash_forward_rank<T, 64, 4> from them with no runtime dispatch.
  const auto qkv = expr.a.src.views(make_view(fused.data(), shape(B * S, 3 * C)));  // (BT,3C)
  using Op = decltype(expr.a.op(qkv.q, qkv.k, qkv.v));
  static_assert(Op::kHeadDim == D && Op::kRank == 4);
  // A runtime rank and head dim stay runtime values.
  using Dyn = decltype(attention_block<DynamicRank>(cfg, x, w, D));
  static_assert(decltype(std::declval<Dyn>().a)::kRank == kDynamicRank);

  CHECK(expr.extents() == std::array<index_t, 2>{B * S, C});
  CHECK(expr.a.extents() == std::array<index_t, 2>{B * S, C});
  CHECK(expr.a.src.src.extents() == std::array<index_t, 2>{B * S, 3 * C});
  CHECK(qkv.q.strides() == std::array<index_t, 4>{3 * S * C, D, 3 * C, 1});  // (3TC,D,3C,1)
  CHECK(qkv.k.data() == qkv.q.data() + C);
  CHECK(qkv.v.data() == qkv.q.data() + 2 * C);
}

TEMPLATE_TEST_CASE("expr: ra::eval and ra::backward of the block equal its leaf ops bit for bit",
                   "[expr][block]", float, bf16) {
  using T = TestType;
  RA_TEST_RNG(rng);
  int ran = 0;
  for (const auto& cfg : kConfigs) {
    if (!test::block_supported(int(cfg.head_dim()), cfg.R)) continue;
    for (index_t S : {7, 1}) {
      const index_t B = S == 1 ? 1 : 2, C = cfg.C, M = B * S;
      INFO("C=" << C << " H=" << cfg.H << " R=" << cfg.R << " gates " << cfg.gates << "/"
                << cfg.gate_param << " restart " << cfg.restart << " bias " << cfg.bias
                << " B=" << B << " T=" << S);
      const Block<T> p(rng, cfg);
      const auto x = test::random_normal<T>(rng, M * C);
      const auto dy = test::random_normal<T>(rng, M * C);
      std::vector<T> y_leaf(M * C), dx_leaf(M * C), y_expr(M * C), dx_expr(M * C);
      test::poison(y_expr);
      test::poison(dx_expr);
      Grads<T> g_leaf(cfg), g_expr(cfg), g_block(cfg);
      leaf_ops(p, x, dy, B, S, y_leaf, dx_leaf, g_leaf);

      // The expression with D and R as template arguments, evaluated and differentiated on
      // one device.
      cpu::Workspace ws;
      const cpu::device dev{&ws};
      const auto xv = make_view(x.data(), shape(B, S, C));  // (B,T,C)
      dispatch_attention(int(cfg.head_dim()), cfg.R, [&](auto d, auto r) {
        constexpr int kR = static_cast<int>(decltype(r)::value);
        const auto expr = attention_block<Rank<kR>>(cfg, xv, p.view(), d, g_expr.view(),
                                                    make_view(dx_expr.data(), shape(B, S, C)));
        const auto tape = ra::eval(make_view(y_expr.data(), shape(M, C)), expr, dev);
        ra::backward(expr, tape, make_view(dy.data(), shape(M, C)), dev);
      });
      CHECK(same_bits(y_expr, y_leaf));
      CHECK(same_bits(dx_expr, dx_leaf));
      CHECK(same_bits(g_expr, g_leaf));
      ++ran;

      // cpu::block_backward: the same expression with runtime D and R.
      cpu::BlockBuffers<T> buffers;
      std::vector<T> dx_block(M * C);
      cpu::block_backward<T>(cfg, xv, p.view(), make_view(dy.data(), shape(B, S, C)),
                             make_view(dx_block.data(), shape(B, S, C)), g_block.view(), buffers);
      CHECK(same_bits(dx_block, dx_leaf));
      CHECK(same_bits(g_block, g_leaf));
    }
  }
  CHECK(ran > 0);
}

RA_TEST_CASE_IF(test::block_instantiated(32, 4),
                "expr: ra::backward of the block matches central finite differences in double",
                "[expr][gradients]") {
  RA_TEST_RNG(rng);
  const AttentionBlockConfig cfg{64, 2, 4, GateMode::per_head, GateParam::clamp, true, true};
  constexpr index_t B = 2, S = 5, C = 64, M = B * S;
  Block<double> p(rng, cfg);
  p.a = {0.2f, 0.3f};  // away from the clamp's kinks at 0 and 0.5
  const auto x = test::random_normal<double>(rng, M * C);
  const auto r = test::random_normal<double>(rng, M * C);  // loss = Σ r ⊙ y
  std::vector<double> dx(M * C);
  Grads<double> g(cfg);
  cpu::Workspace ws;
  const cpu::device dev{&ws};
  const auto xv = make_view(x.data(), shape(B, S, C));
  {
    const auto expr = attention_block<Rank<4>>(cfg, xv, p.view(), Int<32>{}, g.view(),
                                               make_view(dx.data(), shape(B, S, C)));
    const auto [y, tape] = ra::eval(expr, dev);
    ra::backward(expr, tape, make_view(r.data(), shape(M, C)), dev);
  }
  auto loss = [&] {
    std::vector<double> y(M * C);
    (void)ra::eval(make_view(y.data(), shape(M, C)),
                   attention_block<Rank<4>>(cfg, xv, p.view(), Int<32>{}), dev);
    double l = 0.0;
    for (index_t i = 0; i < M * C; ++i) l += r[i] * y[i];
    return l;
  };
  // Central differences of a few parameters of every kind, step h.
  auto check = [&](const char* name, auto& value, double analytic) {
    const double h = 1e-5, keep = value;
    value = keep + h;
    const double up = loss();
    value = keep - h;
    const double down = loss();
    value = keep;
    const double fd = (up - down) / (2 * h);
    INFO(name << ": analytic " << analytic << ", finite differences " << fd);
    CHECK(std::abs(analytic - fd) <= 1e-6 * (1.0 + std::abs(fd)));
  };
  auto& xm = const_cast<std::vector<double>&>(x);
  for (index_t i : {index_t{0}, M * C / 2 + 3, M * C - 1}) check("x", xm[i], dx[i]);
  for (index_t i : {index_t{5}, 3 * C * C - 7}) check("w_attn", p.w_attn[i], g.w_attn[i]);
  for (index_t i : {index_t{1}, 2 * C + 9}) check("b_attn", p.b_attn[i], g.b_attn[i]);
  for (index_t i : {index_t{0}, C * C - 1}) check("w_o", p.w_o[i], g.w_o[i]);
  check("b_o", p.b_o[7], g.b_o[7]);
  // Gates and restart are fp32 parameters: a larger step, a looser bound.
  auto check_f = [&](const char* name, float& value, float analytic) {
    const float h = 1e-2f, keep = value;
    value = keep + h;
    const double up = loss();
    value = keep - h;
    const double down = loss();
    value = keep;
    const double fd = (up - down) / (double(keep + h) - double(keep - h));
    INFO(name << ": analytic " << analytic << ", finite differences " << fd);
    CHECK(std::abs(analytic - fd) <= 2e-3 * (1.0 + std::abs(fd)));
  };
  check_f("w_std[1]", p.w_std[1], g.w_std[1]);
  check_f("w_rec[0]", p.w_rec[0], g.w_rec[0]);
  check_f("a[1]", p.a[1], g.a[1]);
}

RA_TEST_CASE_IF(test::block_instantiated(64, 4),
                "expr: a repeated evaluation takes its intermediates from the same memory",
                "[expr][arena]") {
  RA_TEST_RNG(rng);
  const AttentionBlockConfig cfg{128, 2, 4, GateMode::per_head, GateParam::clamp, true, true};
  constexpr index_t B = 2, S = 6, C = 128;
  const Block<float> p(rng, cfg);
  const auto x = test::random_normal<float>(rng, B * S * C);
  std::vector<float> y(B * S * C), dx(y.size());
  Grads<float> g(cfg);
  cpu::BlockBuffers<float> buffers;
  const auto xv = make_view(x.data(), shape(B, S, C));
  const auto step = [&] {
    cpu::block_forward<float>(cfg, xv, p.view(), make_view(y.data(), shape(B, S, C)), buffers);
    cpu::block_backward<float>(cfg, xv, p.view(),
                               make_view(static_cast<const float*>(y.data()), shape(B, S, C)),
                               make_view(dx.data(), shape(B, S, C)), g.view(), buffers);
  };
  step();
  step();  // the first call's growth is consolidated into one chunk here
  REQUIRE(buffers.workspace.chunks() == 1);
  const std::byte* base = buffers.workspace.chunk_data(0);
  const std::size_t bytes = buffers.workspace.chunk_bytes(0);
  const float* fused = buffers.fused.data();
  for (int i = 0; i < 3; ++i) step();
  CHECK(buffers.workspace.chunks() == 1);
  CHECK(buffers.workspace.chunk_data(0) == base);
  CHECK(buffers.workspace.chunk_bytes(0) == bytes);
  CHECK(buffers.fused.data() == fused);
  // fused, O', dO', dfused and the output of the backward's forward: at least these.
  CHECK(bytes >= (3 + 1 + 1 + 3 + 1) * B * S * C * sizeof(float));
}

TEST_CASE("expr: the arena hands out aligned memory, grows, settles, measures", "[expr][arena]") {
  cpu::Workspace arena;
  arena.begin();
  float* a = arena.take<float>(10);     // 40 bytes -> 256
  double* b = arena.take<double>(100);  // 800 bytes -> 1024
  CHECK(a != nullptr);
  CHECK(b != nullptr);
  CHECK(arena.take<float>(0) == nullptr);
  CHECK(arena.chunks() == 2);  // the first pass grows chunk by chunk; no pointer moves
  CHECK(arena.high_water() == 256 + 1024);
  // The next pass replaces the chunks by one of the largest pass's size: back to back.
  arena.begin();
  CHECK(arena.chunks() == 1);
  CHECK(arena.chunk_bytes(0) == 256 + 1024);
  a = arena.take<float>(10);
  b = arena.take<double>(100);
  CHECK(reinterpret_cast<std::byte*>(a) == arena.chunk_data(0));
  CHECK(reinterpret_cast<std::byte*>(b) - reinterpret_cast<std::byte*>(a) == 256);
  CHECK(arena.chunks() == 1);
  // A larger pass adds a chunk (earlier pointers stay valid) ...
  arena.begin();
  float* c = arena.take<float>(1000);
  float* d = arena.take<float>(1000);
  CHECK(c != nullptr);
  CHECK(d != nullptr);
  CHECK(arena.chunks() >= 2);
  CHECK(arena.high_water() == 2 * 4096);
  // ... and settles again.
  arena.begin();
  CHECK(arena.chunks() == 1);
  CHECK(arena.chunk_bytes(0) == 2 * 4096);
  const std::byte* base = arena.chunk_data(0);
  CHECK(reinterpret_cast<std::byte*>(arena.take<float>(1000)) == base);
  CHECK(reinterpret_cast<std::byte*>(arena.take<float>(1000)) == base + 4096);
  CHECK(arena.chunks() == 1);
  // Measuring records sizes and hands out placeholders, not memory.
  arena.measure(true);
  arena.begin();
  float* m1 = arena.take<float>(5000);
  float* m2 = arena.take<float>(1);
  CHECK(m1 != nullptr);
  CHECK(reinterpret_cast<std::byte*>(m2) - reinterpret_cast<std::byte*>(m1) == 20224);
  CHECK(arena.high_water() == 20224 + 256);
  CHECK(arena.chunk_data(0) == base);  // nothing allocated
  arena.measure(false);
  // Caller memory: used as it is, never freed.
  std::vector<std::byte> mine(4096 + 256);
  auto* aligned = reinterpret_cast<std::byte*>(
      (reinterpret_cast<std::uintptr_t>(mine.data()) + 255) / 256 * 256);
  cpu::Workspace adopted;
  adopted.adopt(aligned, 4096);
  adopted.begin();
  CHECK(reinterpret_cast<std::byte*>(adopted.take<float>(1000)) == aligned);
  CHECK(adopted.chunks() == 1);
  CHECK_THROWS_WITH(adopted.adopt(aligned + 16, 64), Contains("'memory'") && Contains("256-byte"));
  CHECK_THROWS_WITH(arena.take<float>(-1), Contains("'n' is -1"));
  const std::uint64_t pass = arena.pass();
  arena.begin();
  CHECK(arena.pass() == pass + 1);
}

RA_TEST_CASE_IF(test::block_instantiated(64, 4), "expr: errors name the argument and the value",
                "[expr][errors]") {
  RA_TEST_RNG(rng);
  const AttentionBlockConfig cfg{128, 2, 4, GateMode::per_head, GateParam::clamp, false, true};
  constexpr index_t B = 2, S = 3, C = 128, M = B * S;
  const Block<float> p(rng, cfg);
  const auto x = test::random_normal<float>(rng, M * C);
  std::vector<float> y(M * C), dy(M * C);
  const auto xv = make_view(x.data(), shape(B, S, C));
  const auto yv = make_view(y.data(), shape(M, C));
  const auto expr = attention_block<Rank<4>>(cfg, xv, p.view(), Int<64>{});

  // A nested expression needs a workspace for its intermediates.
  CHECK_THROWS_WITH(ra::eval(yv, expr, cpu::device{}), Contains("cpu::device") &&
                                                           Contains("intermediate buffers") &&
                                                           Contains("workspace"));
  // A leaf GEMM does not.
  CHECK_NOTHROW(ra::eval(make_view(y.data(), shape(M, C)),
                         gemm(make_view(x.data(), shape(M, C)), p.view().w_o), cpu::device{}));

  cpu::Workspace ws;
  const cpu::device dev{&ws};
  CHECK_THROWS_WITH(ra::eval(make_view(y.data(), shape(M, C - 1)), expr, dev),
                    Contains("output has shape (6,127)") && Contains("expected (6,128)"));
  // A tape is valid until the next ra::eval on its workspace.
  const auto tape = ra::eval(yv, expr, dev);
  CHECK_NOTHROW(ra::backward(expr, tape, make_view(dy.data(), shape(M, C)), dev));
  (void)ra::eval(yv, expr, dev);
  CHECK_THROWS_WITH(ra::backward(expr, tape, make_view(dy.data(), shape(M, C)), dev),
                    Contains("ra::backward") && Contains("pass") && Contains("another ra::eval"));

  // Node builders check their operands.
  const auto fused = make_view(x.data(), shape(M, C));  // (BT,C): not (BT,3C)
  CHECK_THROWS_WITH(fold(fused, B, 2, Int<64>{}),
                    Contains("'columns of the fused operand' is 128") && Contains("3·H·D = 384"));
  std::vector<float> f3(M * 3 * C);
  const auto fused3 = make_view(static_cast<const float*>(f3.data()), shape(M, 3 * C));
  CHECK_THROWS_WITH(fold(fused3, 4, 2, Int<64>{}),
                    Contains("'rows of the fused operand' is 6") && Contains("multiple of B = 4"));
  CHECK_THROWS_WITH(attend(fold(fused3, B, 2, Int<64>{}), 64),
                    Contains("attend") && Contains("'R' is 64") && Contains("0 <= R < D = 64"));
  const auto att = attend<Rank<4>>(fold(fused3, B, 2, Int<64>{}));
  std::vector<float> w_bad(C * (C + 1));
  CHECK_THROWS_WITH(gemm(att, make_view(static_cast<const float*>(w_bad.data()), shape(C, C + 1))),
                    Contains("'W.extent(1)' is 129") && Contains("K = A.extent(1) = 128"));
}
