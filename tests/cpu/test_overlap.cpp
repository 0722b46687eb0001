// tests/cpu/test_overlap.cpp — ra::overlaps against brute force, and the attention ops
// refusing outputs that share memory with an input or another output.
//
// Property: for random strided views placed in one buffer (same or different strides, random
// offsets, extents of 1 and 0), overlaps() is true whenever the views share a byte (never a
// miss), and equals brute force whenever both have the same strides in a layout where each
// stride steps over what the smaller ones reach (the layouts ra builds: compact, heads(),
// the folded views of a fused buffer).
#include <catch2/catch.hpp>

#include <array>
#include <set>
#include <vector>

#include <ra/cpu.hpp>

#include "reference.hpp"

namespace {

using namespace ra;

// Every byte a footprint addresses.
std::set<std::uintptr_t> bytes_of(const Footprint& f) {
  std::set<std::uintptr_t> out;
  if (f.empty()) return out;
  std::array<index_t, Footprint::kMaxRank> idx{};
  while (true) {
    index_t off = 0;
    for (int i = 0; i < f.rank; ++i) off += idx[i] * f.stride[i];
    for (index_t b = 0; b < f.elem; ++b)
      out.insert(f.base + static_cast<std::uintptr_t>(off * f.elem + b));
    int i = f.rank - 1;
    while (i >= 0 && ++idx[i] == f.extent[i]) idx[i--] = 0;
    if (i < 0) return out;
  }
}

bool brute(const Footprint& a, const Footprint& b) {
  const auto x = bytes_of(a), y = bytes_of(b);
  for (auto p : x)
    if (y.count(p)) return true;
  return false;
}

// Same strides, each dominating the smaller ones.
bool dominated(const Footprint& a, const Footprint& b) {
  if (a.rank != b.rank || a.elem != b.elem) return false;
  std::vector<std::pair<index_t, index_t>> m;  // (stride, largest |d|)
  for (int i = 0; i < a.rank; ++i) {
    if (a.extent[i] == 1 && b.extent[i] == 1) continue;
    if (a.stride[i] != b.stride[i] || a.stride[i] == 0) return false;
    m.push_back({a.stride[i], std::max(a.extent[i], b.extent[i]) - 1});
  }
  std::sort(m.begin(), m.end());
  index_t below = 1;
  for (auto [s, d] : m) {
    if (s < below) return false;
    below += s * d;
  }
  return true;
}

TEST_CASE("overlaps: never misses shared bytes, and is exact on same-stride dominated layouts",
          "[overlap]") {
  RA_TEST_RNG(rng);
  alignas(16) static float buf[4096];
  auto pick = [&](index_t lo, index_t hi) {
    return std::uniform_int_distribution<index_t>(lo, hi)(rng);
  };
  int exact_checked = 0, overlapping = 0;
  for (int trial = 0; trial < 4000; ++trial) {
    // Either a folded-like layout (rows of width W holding several column blocks) or random.
    Footprint a, b;
    a.elem = b.elem = sizeof(float);
    a.rank = b.rank = 3;
    if (trial % 2 == 0) {
      const index_t cols = pick(1, 4), blocks = pick(1, 4), rows = pick(1, 5);
      const index_t width = cols * blocks + pick(0, 2);
      const std::array<index_t, 3> st{width * rows, width, 1};
      for (Footprint* f : {&a, &b}) {
        f->extent = {pick(0, 2), pick(1, rows), pick(1, cols), 0, 0, 0, 0, 0};
        f->stride = {st[0], st[1], st[2], 0, 0, 0, 0, 0};
      }
      a.base = reinterpret_cast<std::uintptr_t>(buf + pick(0, blocks - 1) * cols);
      b.base =
          reinterpret_cast<std::uintptr_t>(buf + pick(0, blocks - 1) * cols + pick(0, 1) * width);
    } else {
      for (Footprint* f : {&a, &b}) {
        for (int i = 0; i < 3; ++i) {
          f->extent[i] = pick(1, 4);
          f->stride[i] = pick(0, 12);
        }
        f->base = reinterpret_cast<std::uintptr_t>(buf + pick(0, 40));
      }
      if (trial % 4 == 1) b.stride = a.stride;
    }
    const bool truth = brute(a, b);
    const bool got = overlaps(a, b);
    INFO("trial " << trial << " a: base+" << (a.base - reinterpret_cast<std::uintptr_t>(buf)) / 4
                  << " ext " << a.extent[0] << "," << a.extent[1] << "," << a.extent[2] << " str "
                  << a.stride[0] << "," << a.stride[1] << "," << a.stride[2] << "; b: base+"
                  << (b.base - reinterpret_cast<std::uintptr_t>(buf)) / 4 << " ext " << b.extent[0]
                  << "," << b.extent[1] << "," << b.extent[2] << " str " << b.stride[0] << ","
                  << b.stride[1] << "," << b.stride[2]);
    if (truth) CHECK(got);
    if (dominated(a, b)) {
      CHECK(got == truth);
      ++exact_checked;
      overlapping += truth;
    }
    CHECK(overlaps(a, b) == overlaps(b, a));
  }
  INFO(exact_checked << " exact cases, " << overlapping << " of them overlapping");
  CHECK(exact_checked > 1000);
  CHECK(overlapping > 100);
  CHECK(exact_checked - overlapping > 100);
}

TEST_CASE("overlaps: the folded views of one fused buffer are disjoint, each overlaps itself",
          "[overlap]") {
  for (index_t H : {1, 3})
    for (index_t D : {1, 8}) {
      std::vector<float> fused(static_cast<std::size_t>(2 * 5 * 3 * H * D));
      auto fv = make_view(fused.data(), shape(2, 5, 3 * H * D));
      auto qkv = folded_views(fv, H, D);
      CHECK_FALSE(overlaps(footprint(qkv.q), footprint(qkv.k)));
      CHECK_FALSE(overlaps(footprint(qkv.k), footprint(qkv.v)));
      CHECK_FALSE(overlaps(footprint(qkv.q), footprint(qkv.v)));
      CHECK(overlaps(footprint(qkv.v), footprint(qkv.v)));
      CHECK(
          overlaps(footprint(fv), footprint(qkv.k)));  // different strides: conservative, and true
    }
}

// A (B,H,T,D) double view of rows [0, T) in a compact buffer, base offset `at` elements.
auto view_at(std::vector<double>& buf, index_t at, index_t T) {
  return make_view(buf.data() + at, shape(1, 2, T, 8));
}

TEST_CASE("cpu attention refuses outputs that share memory with an input or another output",
          "[overlap][attention][errors]") {
  std::vector<double> in(4 * 2 * 6 * 8, 0.5), out(4 * 2 * 6 * 8, 0.0);
  auto q = view_at(in, 0, 6), k = view_at(in, 96, 6), v = view_at(in, 192, 6);
  std::vector<float> w{1.f, 1.f}, gw(2, 0.f), ga(2, 0.f);
  const auto node =
      folded_attention(std::as_const(q), std::as_const(k), std::as_const(v), 4,
                       gates::per_layer(&w[0], &w[1]), causal, restart::per_head(w.data()));
  auto o = view_at(out, 0, 6);
  CHECK_NOTHROW(cpu::attention_forward(node, o));
  CHECK_THROWS_WITH(cpu::attention_forward(node, q),
                    Catch::Contains("output 'O' overlaps input 'Qf'"));
  CHECK_THROWS_WITH(cpu::attention_forward(node, view_at(in, 190, 6)),
                    Catch::Contains("output 'O' overlaps input 'Kf'"));
  std::vector<float> lse(12);
  CHECK_THROWS_WITH(cpu::attention_forward(node, o, reinterpret_cast<float*>(in.data() + 100)),
                    Catch::Contains("output 'lse' overlaps input 'Kf'"));
  CHECK_THROWS_WITH(cpu::attention_forward(node, o, reinterpret_cast<float*>(out.data() + 4)),
                    Catch::Contains("output 'O' overlaps output 'lse'"));

  auto dq = view_at(out, 0, 6), dk = view_at(out, 96, 6), dv = view_at(out, 192, 6);
  auto d_o = view_at(out, 288, 6);
  CHECK_NOTHROW(cpu::attention_backward(node, d_o, dq, dk, dv, {&gw[0], &gw[1], ga.data()}));
  CHECK_THROWS_WITH(cpu::attention_backward(node, d_o, dq, dq, dv),
                    Catch::Contains("output 'dQf' overlaps output 'dKf'"));
  CHECK_THROWS_WITH(cpu::attention_backward(node, dv, dq, dk, dv),
                    Catch::Contains("output 'dV' overlaps input 'dO'"));
  CHECK_THROWS_WITH(cpu::attention_backward(node, d_o, dq, dk, view_at(in, 200, 6)),
                    Catch::Contains("output 'dV' overlaps input 'V'"));
  CHECK_THROWS_WITH(cpu::attention_backward(node, d_o, dq, dk, dv, {&w[0], &gw[1], ga.data()}),
                    Catch::Contains("output 'grads.w_std' overlaps input 'gates.w_std'"));
  CHECK_THROWS_WITH(cpu::attention_backward(node, d_o, dq, dk, dv, {&gw[0], &gw[0], ga.data()}),
                    Catch::Contains("output 'grads.w_std' overlaps output 'grads.w_rec'"));
  CHECK_THROWS_WITH(cpu::attention_backward(node, d_o, dq, dk, dv, {&gw[0], &gw[1], &gw[1]}),
                    Catch::Contains("overlaps output 'grads.a'"));
}

}  // namespace
