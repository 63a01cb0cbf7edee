// privsdk internal: Philox4x32-10, a float32 Box-Muller transform and a
// branch-free float -> half conversion, written so that the compiler
// vectorizes them with the baseline instruction set (SSE2 / NEON). These
// scalar functions define the C++ noise bit for bit: normal_avx2.hpp does the
// same float operations in the same order (no FMA: built with
// -ffp-contract=off), so every code path and thread count gives the same bits.
// Not part of the public API: include <privsdk/fused.hpp> instead.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace privsdk {
namespace detail {

constexpr std::uint32_t kPhiloxM0 = 0xD2511F53u, kPhiloxM1 = 0xCD9E8D57u;
constexpr std::uint32_t kPhiloxW0 = 0x9E3779B9u, kPhiloxW1 = 0xBB67AE85u;

/// Philox4x32-10 in place on c[0..4) with key (k0, k1).
inline void philox_block(std::uint32_t* c, std::uint32_t k0, std::uint32_t k1) {
  std::uint32_t c0 = c[0], c1 = c[1], c2 = c[2], c3 = c[3];
  for (int r = 0; r < 10; ++r) {
    const std::uint64_t p0 = static_cast<std::uint64_t>(kPhiloxM0) * c0;
    const std::uint64_t p1 = static_cast<std::uint64_t>(kPhiloxM1) * c2;
    const std::uint32_t hi0 = static_cast<std::uint32_t>(p0 >> 32), lo0 = static_cast<std::uint32_t>(p0);
    const std::uint32_t hi1 = static_cast<std::uint32_t>(p1 >> 32), lo1 = static_cast<std::uint32_t>(p1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
  c[0] = c0; c[1] = c1; c[2] = c2; c[3] = c3;
}

inline float as_float(std::uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
inline std::uint32_t as_uint(float f) { std::uint32_t u; std::memcpy(&u, &f, 4); return u; }

/// Natural logarithm of u in (0, 1] (u a normal float), branch-free: u = 2^k m
/// with m in [sqrt(1/2), sqrt(2)), f = m - 1 (exact), s = f / (2 + f) and
/// log(1 + f) = f - s (f - R(s^2)) with fdlibm's logf polynomial R; then
/// + k ln 2 (error below 2 ulp of the float result). Every step is one IEEE
/// float operation, so the AVX2 version (normal_avx2.hpp) gives the same bits.
inline float log_unit(float u) {
  const std::uint32_t ix = as_uint(u) - 0x3f3504f3u;  // offset by the bits of sqrt(1/2)
  const std::int32_t k = static_cast<std::int32_t>(ix) >> 23;
  const float m = as_float(as_uint(u) - (ix & 0xff800000u));
  const float f = m - 1.0f;
  const float s = f / (2.0f + f);
  const float z = s * s, w = z * z;
  const float t1 = w * (0.40000972152f + w * 0.24279078841f);
  const float t2 = z * (0.66666662693f + w * 0.28498786688f);
  const float r = t2 + t1;
  return static_cast<float>(k) * 0.693147182f + (f - s * (f - r));
}

/// sin and cos of 2 pi b / 2^32, branch-free. The quadrant q comes from the
/// top bits of b, so the reduction is exact integer arithmetic: b = q 2^30 + rem
/// with rem in [-2^29, 2^29) (int32(b << 2) = 4 rem), x = rem 2 pi / 2^32 in
/// [-pi/4, pi/4], then the Cephes sinf / cosf polynomials (about 1e-7 absolute
/// error).
inline void sincos_turn(std::uint32_t b, float& s_out, float& c_out) {
  const std::uint32_t t = b + 0x20000000u;  // q = t >> 30
  const float x = static_cast<float>(static_cast<std::int32_t>(b << 2)) * (1.46291807926715968e-09f * 0.25f);
  const float z = x * x;
  const float s = ((-1.9515295891e-4f * z + 8.3321608736e-3f) * z - 1.6666654611e-1f) * z * x + x;
  const float c = ((2.443315711809948e-5f * z - 1.388731625493765e-3f) * z + 4.166664568298827e-2f) * z * z
                  - 0.5f * z + 1.0f;
  // Quadrant q: (sin, cos) = (s, c), (c, -s), (-s, -c), (-c, s): odd q swaps,
  // sin is negative for q = 2, 3 (bit 31 of t), cos for q = 1, 2 (bit 31 ^ bit 30).
  const bool swap = (t & 0x40000000u) != 0;
  const float sv = swap ? c : s, cv = swap ? s : c;
  const std::uint32_t sin_sign = t & 0x80000000u, cos_sign = (t ^ (t << 1)) & 0x80000000u;
  s_out = as_float(as_uint(sv) ^ sin_sign);
  c_out = as_float(as_uint(cv) ^ cos_sign);
}

/// IEEE binary16 bits of f, round to nearest even (branch-free).
inline std::uint16_t float_to_half_bits(float f) {
  const std::uint32_t x = as_uint(f);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  const std::uint32_t a = x & 0x7fffffffu;
  const std::uint32_t normal = (a + 0xc8000fffu + ((a >> 13) & 1u)) >> 13;  // re-bias + round
  const std::uint32_t sub = as_uint(as_float(a) + 0.5f) - 0x3f000000u;     // the FPU rounds
  std::uint32_t r = a < 0x38800000u ? sub : normal;
  r = a >= 0x477ff000u ? 0x7c00u : r;  // overflow to infinity
  r = a > 0x7f800000u ? 0x7e00u : r;   // NaN stays NaN
  return static_cast<std::uint16_t>(sign | r);
}

/// The radius of Box-Muller for the word a: sqrt(-2 ln u1), u1 = a 2^-32 + 2^-33
/// in float32 (exactly the reference's u1; never 0, so the log is finite).
inline float box_muller_radius(std::uint32_t a) {
  const float u1 = static_cast<float>(a) * 2.3283064365386963e-10f + 1.1641532182693481e-10f;
  return std::sqrt(-2.0f * log_unit(u1));
}

/// Two normals from each pair of words (a[i], c[i]): r cos(2 pi u2), r sin(2 pi u2)
/// with u2 = c[i] 2^-32 (the angle's quadrant is taken from the integer bits).
inline void box_muller(const std::uint32_t* a, const std::uint32_t* c, float* zc, float* zs, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    const float rad = box_muller_radius(a[i]);
    float s, co;
    sincos_turn(c[i], s, co);
    zc[i] = rad * co;
    zs[i] = rad * s;
  }
}

constexpr std::size_t kMaxBlocks = 64;  ///< blocks per call of philox_normals_blocks

/// The Philox words of nb <= kMaxBlocks consecutive blocks starting at counter
/// (block, id, c2, c3): block b gives (w0[b], w1[b], w2[b], w3[b]).
inline void philox_words_blocks(std::uint32_t block, std::uint32_t id, std::uint32_t c2, std::uint32_t c3,
                                std::uint32_t k0, std::uint32_t k1, std::size_t nb, std::uint32_t* w0,
                                std::uint32_t* w1, std::uint32_t* w2, std::uint32_t* w3) {
  for (std::size_t b = 0; b < nb; ++b) {
    w0[b] = block + static_cast<std::uint32_t>(b);
    w1[b] = id;
    w2[b] = c2;
    w3[b] = c3;
  }
  for (int r = 0; r < 10; ++r) {
    for (std::size_t b = 0; b < nb; ++b) {
      const std::uint64_t p0 = static_cast<std::uint64_t>(kPhiloxM0) * w0[b];
      const std::uint64_t p1 = static_cast<std::uint64_t>(kPhiloxM1) * w2[b];
      const std::uint32_t n0 = static_cast<std::uint32_t>(p1 >> 32) ^ w1[b] ^ k0;
      const std::uint32_t n2 = static_cast<std::uint32_t>(p0 >> 32) ^ w3[b] ^ k1;
      w1[b] = static_cast<std::uint32_t>(p1);
      w3[b] = static_cast<std::uint32_t>(p0);
      w0[b] = n0;
      w2[b] = n2;
    }
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
}

/// Box-Muller (float32, as the reference) on the pairs (w0, w1) and (w2, w3)
/// of nb blocks: z[4 b + j] for b < nb, j < 4 (see privsdk::philox_normals).
inline void box_muller_blocks(const std::uint32_t* w0, const std::uint32_t* w1, const std::uint32_t* w2,
                              const std::uint32_t* w3, std::size_t nb, float* z) {
  float zc0[kMaxBlocks], zs0[kMaxBlocks], zc2[kMaxBlocks], zs2[kMaxBlocks];
  box_muller(w0, w1, zc0, zs0, nb);
  box_muller(w2, w3, zc2, zs2, nb);
  for (std::size_t b = 0; b < nb; ++b) {
    z[4 * b] = zc0[b];
    z[4 * b + 1] = zs0[b];
    z[4 * b + 2] = zc2[b];
    z[4 * b + 3] = zs2[b];
  }
}

/// Normals of nb <= kMaxBlocks consecutive Philox blocks starting at counter
/// (block, id, c2, c3): z[4 b + j] for b < nb, j < 4 (see privsdk::philox_normals).
inline void philox_normals_blocks(std::uint32_t block, std::uint32_t id, std::uint32_t c2,
                                  std::uint32_t c3, std::uint32_t k0, std::uint32_t k1,
                                  std::size_t nb, float* z) {
  std::uint32_t w0[kMaxBlocks], w1[kMaxBlocks], w2[kMaxBlocks], w3[kMaxBlocks];
  philox_words_blocks(block, id, c2, c3, k0, k1, nb, w0, w1, w2, w3);
  box_muller_blocks(w0, w1, w2, w3, nb, z);
}

}  // namespace detail
}  // namespace privsdk
