// tests/cpu/test_layout.cpp — the layout algebra of ra/core, checked over EVERY coordinate.
//
// Properties: transpose twice is the identity (all 24 permutations of rank 4); split then
// join is the identity; split, transpose, view (reshape), slice and select alias the input's
// memory (each element's address is the one the layout algebra predicts); reshape works for
// contiguous groups and throws otherwise; folded_views and heads give the documented strides
// and addresses; compile-time extents (ra::Int<N>) survive where they should.
#include <catch2/catch.hpp>

#include <ra/core.hpp>

#include <algorithm>
#include <array>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace {

using Catch::Matchers::Contains;
using ra::index_t;

// Calls f(c) for every coordinate c of the extents, last mode fastest.
template <std::size_t N, class F>
void for_each_coord(const std::array<index_t, N>& ext, F&& f) {
  for (index_t e : ext)
    if (e <= 0) return;
  std::array<index_t, N> c{};
  for (;;) {
    f(std::as_const(c));
    std::size_t i = N;
    for (;;) {
      if (i == 0) return;
      --i;
      if (++c[i] < ext[i]) break;
      c[i] = 0;
    }
  }
}

template <std::size_t N>
index_t product(const std::array<index_t, N>& ext) {
  index_t n = 1;
  for (index_t e : ext) n *= e;
  return n;
}

// Row-major linear index of a coordinate, and its inverse.
template <std::size_t N>
index_t ravel(const std::array<index_t, N>& c, const std::array<index_t, N>& ext) {
  index_t l = 0;
  for (std::size_t i = 0; i < N; ++i) l = l * ext[i] + c[i];
  return l;
}

template <std::size_t N>
std::array<index_t, N> unravel(index_t l, const std::array<index_t, N>& ext) {
  std::array<index_t, N> c{};
  for (std::size_t i = N; i-- > 0;) {
    c[i] = l % ext[i];
    l /= ext[i];
  }
  return c;
}

struct EveryCoord {
  index_t visited = 0;
  index_t expected = 0;
  std::string first_bad;  // empty when the predicate held everywhere
};

template <std::size_t N, class Pred>
EveryCoord check_every(const std::array<index_t, N>& ext, Pred&& ok) {
  EveryCoord r;
  r.expected = product(ext);
  for_each_coord(ext, [&](const std::array<index_t, N>& c) {
    ++r.visited;
    if (r.first_bad.empty() && !ok(c)) r.first_bad = ra::to_string(c);
  });
  return r;
}

// Requires `pred(c)` at every coordinate of `ext` (and that every coordinate was visited).
#define REQUIRE_AT_EVERY_COORD(ext, ...)                       \
  do {                                                         \
    const EveryCoord every_ = check_every((ext), __VA_ARGS__); \
    INFO("first failing coordinate: " << every_.first_bad);    \
    REQUIRE(every_.first_bad.empty());                         \
    REQUIRE(every_.visited == every_.expected);                \
  } while (0)

// The type of mode I of a view's shape: ra::Int<N> (static) or index_t (runtime).
template <class V, int I>
using mode_type = std::tuple_element_t<I, typename std::remove_cvref_t<V>::shape_type>;

// ---- transpose -------------------------------------------------------------------------

constexpr auto all_permutations() {
  std::array<std::array<int, 4>, 24> out{};
  std::array<int, 4> p{0, 1, 2, 3};
  int i = 0;
  do {
    out[i++] = p;
  } while (std::next_permutation(p.begin(), p.end()));
  return out;
}
constexpr auto kPermutations = all_permutations();

constexpr std::array<int, 4> inverse(const std::array<int, 4>& p) {
  std::array<int, 4> q{};
  for (int i = 0; i < 4; ++i) q[p[i]] = i;
  return q;
}

template <int P0, int P1, int P2, int P3, class V>
void check_transpose_twice(const V& t) {
  constexpr std::array<int, 4> p{P0, P1, P2, P3};
  constexpr std::array<int, 4> q = inverse(p);
  INFO("permutation (" << P0 << "," << P1 << "," << P2 << "," << P3 << ") of " << t.layout());
  auto tp = ra::transpose<P0, P1, P2, P3>(t);  // mode i is t's mode p[i]
  using TP = decltype(tp);
  static_assert(std::is_same_v<mode_type<TP, 0>, mode_type<V, P0>> &&
                std::is_same_v<mode_type<TP, 1>, mode_type<V, P1>> &&
                std::is_same_v<mode_type<TP, 2>, mode_type<V, P2>> &&
                std::is_same_v<mode_type<TP, 3>, mode_type<V, P3>>);
  REQUIRE(tp.data() == t.data());
  for (int i = 0; i < 4; ++i) {
    REQUIRE(tp.extent(i) == t.extent(p[i]));
    REQUIRE(tp.stride(i) == t.stride(p[i]));
  }
  REQUIRE_AT_EVERY_COORD(tp.extents(), [&](const std::array<index_t, 4>& c) {
    std::array<index_t, 4> src{};
    for (int i = 0; i < 4; ++i) src[p[i]] = c[i];
    return &tp.at(c) == &t.at(src);
  });

  auto back = ra::transpose<q[0], q[1], q[2], q[3]>(tp);
  static_assert(std::is_same_v<typename decltype(back)::shape_type, typename V::shape_type>,
                "transposing back restores the shape type, static extents included");
  REQUIRE(back.data() == t.data());
  REQUIRE(back.extents() == t.extents());
  REQUIRE(back.strides() == t.strides());
  REQUIRE_AT_EVERY_COORD(t.extents(),
                         [&](const std::array<index_t, 4>& c) { return &back.at(c) == &t.at(c); });
}

template <class V>
void check_all_transposes_twice(const V& t) {
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    (check_transpose_twice<kPermutations[I][0], kPermutations[I][1], kPermutations[I][2],
                           kPermutations[I][3]>(t),
     ...);
  }
  (std::make_index_sequence<kPermutations.size()>{});
}

// ---- split and join ----------------------------------------------------------------------

template <int N, int Axis, class V>
void check_split_join(const V& t) {
  INFO("split<" << N << ", " << Axis << "> of " << t.layout());
  constexpr int rank = V::rank;
  auto parts = ra::split<N, Axis>(t);  // N views, mode Axis of extent/N, same strides
  using Part = typename decltype(parts)::value_type;
  if constexpr (ra::is_static_int_v<mode_type<V, Axis>>) {
    static_assert(std::is_same_v<mode_type<Part, Axis>, ra::Int<mode_type<V, Axis>::value / N>>,
                  "splitting a static extent gives a static extent");
  } else {
    static_assert(std::is_same_v<mode_type<Part, Axis>, index_t>);
  }
  const index_t part = t.extent(Axis) / N;
  for (int i = 0; i < N; ++i) {
    INFO("part " << i);
    REQUIRE(parts[i].strides() == t.strides());
    for (int m = 0; m < rank; ++m) REQUIRE(parts[i].extent(m) == (m == Axis ? part : t.extent(m)));
    REQUIRE_AT_EVERY_COORD(parts[i].extents(), [&](const std::array<index_t, rank>& c) {
      auto src = c;
      src[Axis] += i * part;
      return &parts[i].at(c) == &t.at(src);
    });
  }
  auto whole = ra::join<Axis>(parts);
  static_assert(std::is_same_v<typename decltype(whole)::shape_type, typename V::shape_type>,
                "split then join restores the shape type, static extents included");
  REQUIRE(whole.data() == t.data());
  REQUIRE(whole.extents() == t.extents());
  REQUIRE(whole.strides() == t.strides());
  REQUIRE_AT_EVERY_COORD(
      t.extents(), [&](const std::array<index_t, rank>& c) { return &whole.at(c) == &t.at(c); });
}

// ---- reshape -------------------------------------------------------------------------------

// A reshape is correct when element c of the result is element unravel(ravel(c)) of the input.
template <class V, class S>
void check_reshape(const V& t, const S& new_shape) {
  INFO("view of " << t.layout() << " as " << ra::to_string(ra::extents_of(new_shape)));
  auto r = ra::view(t, new_shape);
  constexpr int rank = decltype(r)::rank;
  REQUIRE(r.data() == t.data());
  REQUIRE(r.extents() == ra::extents_of(new_shape));
  const auto old_ext = t.extents();
  const auto new_ext = r.extents();
  REQUIRE_AT_EVERY_COORD(new_ext, [&](const std::array<index_t, rank>& c) {
    return &r.at(c) == &t.at(unravel(ravel(c, new_ext), old_ext));
  });
}

// A fused (B,T,3C) buffer whose element i holds i (so aliasing bugs are visible as values too).
struct Fused {
  index_t B, T, H, D, C;
  std::vector<float> data;
  Fused(index_t b, index_t t, index_t h, index_t d)
      : B(b), T(t), H(h), D(d), C(h * d), data(static_cast<std::size_t>(b * t * 3 * h * d)) {
    for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<float>(i);
  }
  auto view() { return ra::make_view(data.data(), ra::shape(B, T, 3 * C)); }  // (B,T,3C)
};

}  // namespace

TEST_CASE("layout: compact layouts", "[layout]") {
  auto l = ra::make_layout(ra::shape(2, 3, ra::Int<4>{}));  // (2,3,4) strides (12,4,1)
  REQUIRE(l.stride == std::array<index_t, 3>{12, 4, 1});
  REQUIRE(l.size() == 24);
  REQUIRE(l.cosize() == 24);
  REQUIRE(l.is_compact());
  REQUIRE_AT_EVERY_COORD(l.extents(), [&](const std::array<index_t, 3>& c) {
    return l.offset(c) == ravel(c, l.extents());
  });
  ra::Layout<ra::DynShape<2>> strided{{3, 4}, {10, 1}};  // (3,4) strides (10,1)
  REQUIRE_FALSE(strided.is_compact());
  REQUIRE(strided.cosize() == 24);
  ra::Layout<ra::DynShape<2>> empty{{0, 4}, {4, 1}};  // (0,4)
  REQUIRE(empty.size() == 0);
  REQUIRE(empty.cosize() == 0);
}

TEST_CASE("layout: transpose twice is the identity", "[layout][transpose]") {
  SECTION("compact (2,3,4,5)") {
    std::vector<float> buf(120);
    check_all_transposes_twice(ra::make_view(buf.data(), ra::shape(2, 3, 4, 5)));  // (2,3,4,5)
  }
  SECTION("folded Qf (B,H,T,D) strides (3TC,D,3C,1), static D") {
    Fused f(2, 5, 3, 4);
    auto q = ra::folded_views(f.view(), f.H, ra::Int<4>{}).q;  // (2,3,5,4) strides (180,4,36,1)
    check_all_transposes_twice(q);
  }
  SECTION("rank 2: transpose<1,0> is the matrix transpose") {
    std::vector<float> buf(12);
    auto m = ra::make_view(buf.data(), ra::shape(3, 4));  // (3,4) strides (4,1)
    auto mt = ra::transpose<1, 0>(m);                     // (4,3) strides (1,4)
    REQUIRE(mt.strides() == std::array<index_t, 2>{1, 4});
    REQUIRE_AT_EVERY_COORD(mt.extents(), [&](const std::array<index_t, 2>& c) {
      return &mt(c[0], c[1]) == &m(c[1], c[0]);
    });
    auto mtt = ra::transpose<1, 0>(mt);  // (3,4) strides (4,1)
    REQUIRE(mtt.strides() == m.strides());
  }
}

TEST_CASE("layout: split then join is the identity", "[layout][split]") {
  SECTION("compact (6,4,Int<12>)") {
    std::vector<float> buf(6 * 4 * 12);
    auto t =
        ra::make_view(buf.data(), ra::shape(6, 4, ra::Int<12>{}));  // (6,4,12) strides (48,12,1)
    check_split_join<1, 0>(t);
    check_split_join<2, 0>(t);
    check_split_join<3, 0>(t);
    check_split_join<6, 0>(t);
    check_split_join<2, 1>(t);
    check_split_join<4, 1>(t);
    check_split_join<2, 2>(t);
    check_split_join<3, 2>(t);
    check_split_join<12, 2>(t);
  }
  SECTION("strided: the Kf block of a fused buffer") {
    Fused f(2, 6, 2, 4);
    auto kf = ra::split<3, 2>(f.view())[1];  // (2,6,8) strides (144,24,1)
    check_split_join<2, 0>(kf);
    check_split_join<3, 1>(kf);
    check_split_join<2, 2>(kf);
    check_split_join<4, 2>(kf);
  }
  SECTION("the fused buffer itself into Qf, Kf, V blocks") {
    Fused f(3, 4, 2, 8);
    check_split_join<3, 2>(f.view());
  }
}

TEST_CASE("layout: views alias the same memory", "[layout][alias]") {
  Fused f(2, 3, 2, 4);  // (2,3,24)
  auto t = f.view();    // (2,3,24) strides (72,24,1)

  SECTION("slice") {
    auto check = [&]<int Axis>(index_t begin, index_t end) {
      INFO("slice<" << Axis << ">(" << begin << ", " << end << ")");
      auto s = ra::slice<Axis>(t, begin, end);  // t with mode Axis = [begin, end)
      static_assert(std::is_same_v<mode_type<decltype(s), Axis>, index_t>);
      REQUIRE(s.extent(Axis) == end - begin);
      REQUIRE(s.strides() == t.strides());
      REQUIRE_AT_EVERY_COORD(s.extents(), [&](const std::array<index_t, 3>& c) {
        auto src = c;
        src[Axis] += begin;
        return &s.at(c) == &t.at(src);
      });
    };
    check.template operator()<0>(0, 2);
    check.template operator()<0>(1, 2);
    check.template operator()<0>(1, 1);
    check.template operator()<1>(0, 3);
    check.template operator()<1>(1, 3);
    check.template operator()<1>(2, 3);
    check.template operator()<2>(5, 17);
    check.template operator()<2>(23, 24);
    check.template operator()<2>(0, 0);
  }

  SECTION("select") {
    auto check = [&]<int Axis>() {
      for (index_t i = 0; i < t.extent(Axis); ++i) {
        INFO("select<" << Axis << ">(" << i << ")");
        auto s = ra::select<Axis>(t, i);  // t without mode Axis
        static_assert(decltype(s)::rank == 2);
        REQUIRE_AT_EVERY_COORD(s.extents(), [&](const std::array<index_t, 2>& c) {
          std::array<index_t, 3> src{};
          for (int m = 0, k = 0; m < 3; ++m) src[m] = m == Axis ? i : c[k++];
          return &s.at(c) == &t.at(src);
        });
      }
    };
    check.template operator()<0>();
    check.template operator()<1>();
    check.template operator()<2>();
  }

  SECTION("split, transpose and view compose without copying") {
    auto v = ra::split<3, 2>(t)[2];                        // (2,3,8) strides (72,24,1)
    auto vh = ra::view(v, ra::shape(f.B, f.T, f.H, f.D));  // (2,3,2,4) strides (72,24,4,1)
    auto vt = ra::transpose<0, 2, 1, 3>(vh);               // (2,2,3,4) strides (72,4,24,1)
    auto row = ra::select<2>(vt, 1);                       // (2,2,4) strides (72,4,1)
    REQUIRE(vt.strides() == std::array<index_t, 4>{72, 4, 24, 1});
    REQUIRE_AT_EVERY_COORD(vt.extents(), [&](const std::array<index_t, 4>& c) {
      return &vt.at(c) == &t(c[0], c[2], 2 * f.C + c[1] * f.D + c[3]);
    });
    REQUIRE_AT_EVERY_COORD(row.extents(), [&](const std::array<index_t, 3>& c) {
      return &row.at(c) == &t(c[0], 1, 2 * f.C + c[1] * f.D + c[2]);
    });
    // A write through the innermost view is a write to the buffer.
    row(1, 1, 3) = -1.0f;
    REQUIRE(f.data[static_cast<std::size_t>(1 * 72 + 1 * 24 + 2 * f.C + 1 * f.D + 3)] == -1.0f);
  }
}

TEST_CASE("layout: reshape of contiguous groups", "[layout][view]") {
  SECTION("compact (2,3,4) to every grouping") {
    std::vector<float> buf(24);
    auto t = ra::make_view(buf.data(), ra::shape(2, 3, 4));  // (2,3,4) strides (12,4,1)
    check_reshape(t, ra::shape(24));
    check_reshape(t, ra::shape(6, 4));
    check_reshape(t, ra::shape(2, 12));
    check_reshape(t, ra::shape(4, 6));
    check_reshape(t, ra::shape(3, 2, 4));
    check_reshape(t, ra::shape(2, 3, 2, 2));
    check_reshape(t, ra::shape(1, 24, 1));
    check_reshape(t, ra::shape(2, 1, 3, 4, 1));
    check_reshape(t, ra::shape(2, 3, 4));
  }
  SECTION("strided: a block of the fused buffer") {
    Fused f(2, 3, 2, 4);
    auto qf = ra::split<3, 2>(f.view())[0];                   // (2,3,8) strides (72,24,1)
    check_reshape(qf, ra::shape(f.B, f.T, f.H, f.D));         // (2,3,2,4) strides (72,24,4,1)
    check_reshape(qf, ra::shape(f.B * f.T, f.C));             // (6,8) strides (24,1): B, T merge
    check_reshape(qf, ra::shape(f.B, f.T, f.H, 2, f.D / 2));  // splitting D is contiguous
    check_reshape(qf, ra::shape(f.B * f.T, f.H, f.D));
  }
  SECTION("extent-1 modes may have any stride") {
    std::vector<float> buf(100);
    auto t = ra::make_view(buf.data(), ra::shape(1, 3, 1, 4), {999, 4, 7, 1});  // (1,3,1,4)
    check_reshape(t, ra::shape(3, 4));
    check_reshape(t, ra::shape(12));
    check_reshape(t, ra::shape(3, 1, 4, 1));
  }
  SECTION("empty") {
    std::vector<float> buf(1);
    auto t = ra::make_view(buf.data(), ra::shape(0, 3));  // (0,3)
    auto r = ra::view(t, ra::shape(3, 0, 5));             // (3,0,5)
    REQUIRE(r.size() == 0);
  }
}

TEST_CASE("layout: reshape of non-contiguous groups throws", "[layout][view]") {
  Fused f(2, 3, 2, 4);
  auto qf = ra::split<3, 2>(f.view())[0];           // (2,3,8) strides (72,24,1)
  auto q = ra::folded_views(f.view(), f.H, f.D).q;  // (2,2,3,4) strides (72,4,24,1)
  const auto no_copy = Contains("without a copy");
  REQUIRE_THROWS_AS(ra::view(qf, ra::shape(f.B, f.T * f.C)), ra::error);
  REQUIRE_THROWS_WITH(ra::view(qf, ra::shape(f.B, f.T * f.C)), no_copy && Contains("(72,24,1)"));
  REQUIRE_THROWS_WITH(ra::view(qf, ra::shape(f.B * f.T * f.C)), no_copy);
  REQUIRE_THROWS_WITH(ra::view(q, ra::shape(f.B, f.H, f.T * f.D)), no_copy);
  REQUIRE_THROWS_WITH(ra::view(q, ra::shape(f.B * f.H, f.T, f.D)), no_copy);
  REQUIRE_THROWS_WITH(
      ra::view(ra::transpose<1, 0>(ra::make_view(f.data.data(), ra::shape(4, 6))), ra::shape(24)),
      no_copy);
}

TEST_CASE("layout: folded_views of a fused (B,T,3C) buffer", "[layout][folded]") {
  auto check = [](auto D) {
    Fused f(2, 3, 2, ra::value(D));
    auto fused = f.view();                       // (B,T,3C) strides (3TC,3C,1)
    auto qkv = ra::folded_views(fused, f.H, D);  // 3 x (B,H,T,D) strides (3TC,D,3C,1)
    const std::array<index_t, 4> ext{f.B, f.H, f.T, f.D};
    const std::array<index_t, 4> strides{3 * f.T * f.C, f.D, 3 * f.C, 1};
    int block = 0;
    for (auto* part : {&qkv.q, &qkv.k, &qkv.v}) {
      INFO("block " << block << " with D = " << f.D);
      REQUIRE(part->extents() == ext);
      REQUIRE(part->strides() == strides);
      REQUIRE_AT_EVERY_COORD(ext, [&](const std::array<index_t, 4>& c) {
        return &part->at(c) == &fused(c[0], c[2], block * f.C + c[1] * f.D + c[3]);
      });
      ++block;
    }
    using Q = decltype(qkv.q);
    if constexpr (ra::is_static_int_v<decltype(D)>) {
      static_assert(std::is_same_v<mode_type<Q, 3>, decltype(D)>, "a static head dim stays static");
    } else {
      static_assert(std::is_same_v<mode_type<Q, 3>, index_t>);
    }
  };
  check(ra::Int<64>{});
  check(ra::Int<32>{});
  check(index_t{8});
  check(index_t{1});
}

TEST_CASE("layout: heads of a (B,T,C) view", "[layout][folded]") {
  const index_t B = 2, T = 3, H = 3, D = 4, C = H * D;
  std::vector<float> buf(B * T * 3 * C);
  SECTION("compact (B,T,C): strides (TC,D,C,1)") {
    auto btc = ra::make_view(buf.data(), ra::shape(B, T, C));  // (B,T,C) strides (TC,C,1)
    auto h = ra::heads(btc, H, ra::Int<D>{});                  // (B,H,T,D) strides (TC,D,C,1)
    static_assert(std::is_same_v<mode_type<decltype(h), 3>, ra::Int<D>>);
    REQUIRE(h.strides() == std::array<index_t, 4>{T * C, D, C, 1});
    REQUIRE_AT_EVERY_COORD(h.extents(), [&](const std::array<index_t, 4>& c) {
      return &h.at(c) == &btc(c[0], c[2], c[1] * D + c[3]);
    });
  }
  SECTION("a block of a fused buffer: strides (3TC,D,3C,1)") {
    auto fused = ra::make_view(buf.data(), ra::shape(B, T, 3 * C));  // (B,T,3C)
    auto v = ra::split<3, 2>(fused)[2];                              // (B,T,C) strides (3TC,3C,1)
    auto h = ra::heads(v, H, D);  // (B,H,T,D) strides (3TC,D,3C,1)
    REQUIRE(h.strides() == std::array<index_t, 4>{3 * T * C, D, 3 * C, 1});
    REQUIRE_AT_EVERY_COORD(h.extents(), [&](const std::array<index_t, 4>& c) {
      return &h.at(c) == &fused(c[0], c[2], 2 * C + c[1] * D + c[3]);
    });
  }
}

TEST_CASE("layout: static extents survive the operations that keep them", "[layout][static]") {
  std::vector<float> buf(2 * 6 * 64);
  auto t = ra::make_view(buf.data(), ra::shape(2, 6, ra::Int<64>{}));  // (2,6,64)
  using T0 = decltype(t);
  static_assert(std::is_same_v<mode_type<T0, 2>, ra::Int<64>>);

  auto tt = ra::transpose<2, 0, 1>(t);  // (64,2,6)
  static_assert(std::is_same_v<mode_type<decltype(tt), 0>, ra::Int<64>>, "transpose moves it");

  auto halves = ra::split<2, 2>(t);  // 2 x (2,6,32)
  static_assert(std::is_same_v<mode_type<decltype(halves[0]), 2>, ra::Int<32>>, "split divides it");
  auto rows = ra::split<3, 1>(t);  // 3 x (2,2,64)
  static_assert(std::is_same_v<mode_type<decltype(rows[0]), 2>, ra::Int<64>>,
                "splitting another mode keeps it");
  static_assert(std::is_same_v<mode_type<decltype(ra::join<2>(halves)), 2>, ra::Int<64>>,
                "join multiplies it back");

  auto sl = ra::slice<1>(t, 1, 4);  // (2,3,64)
  static_assert(std::is_same_v<mode_type<decltype(sl), 2>, ra::Int<64>>,
                "slicing another mode keeps it");
  auto sl2 = ra::slice<2>(t, 0, 16);  // (2,6,16)
  static_assert(std::is_same_v<mode_type<decltype(sl2), 2>, index_t>,
                "slicing the static mode makes it a runtime extent");

  auto sel = ra::select<0>(t, 1);  // (6,64)
  static_assert(std::is_same_v<mode_type<decltype(sel), 1>, ra::Int<64>>, "select keeps it");

  auto re = ra::view(t, ra::shape(12, ra::Int<64>{}));  // (12,64)
  static_assert(std::is_same_v<mode_type<decltype(re), 1>, ra::Int<64>>, "a reshape names it");
  auto re2 = ra::view(t, ra::shape(12, 64));  // (12,64)
  static_assert(std::is_same_v<mode_type<decltype(re2), 1>, index_t>);

  auto h = ra::heads(ra::make_view(buf.data(), ra::shape(2, 3, 128)), 2, ra::Int<64>{});
  static_assert(std::is_same_v<mode_type<decltype(h), 3>, ra::Int<64>>);  // (2,2,3,64)

  // The static modes also hold the right runtime values.
  REQUIRE(tt.extents() == std::array<index_t, 3>{64, 2, 6});
  REQUIRE(halves[1].extents() == std::array<index_t, 3>{2, 6, 32});
  REQUIRE(rows[2].extents() == std::array<index_t, 3>{2, 2, 64});
  REQUIRE(sl.extents() == std::array<index_t, 3>{2, 3, 64});
  REQUIRE(sel.extents() == std::array<index_t, 2>{6, 64});
  REQUIRE(re.strides() == std::array<index_t, 2>{64, 1});
  REQUIRE(h.strides() == std::array<index_t, 4>{3 * 128, 64, 128, 1});
}
