// privsdk internal: Philox4x32-10 and the Box-Muller transform of
// normal_math.hpp, 8 lanes at a time with AVX2 intrinsics (x86-64 only; the
// functions carry target("avx2"), so a portable build calls them only after
// checking the CPU). Every float operation is the one of the scalar code, in
// the same order and without FMA, so both give the same bits.
// Not part of the public API: include <privsdk/fused.hpp> instead.
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "privsdk/detail/normal_math.hpp"

#define PRIVSDK_TARGET_AVX2 __attribute__((target("avx2"), always_inline)) inline

namespace privsdk {
namespace detail {

/// What Philox4x32-10 needs for the blocks (block, id, c2, c3) of one stream,
/// broadcast to 8 lanes. Only word 0 of the counter differs between the
/// blocks of a stream, so the first two rounds are partly the same for every
/// block: those parts are computed once here, exactly (64-bit products).
struct PhiloxStream8 {
  __m256i x1_r1;   ///< word 1 after round 0 ^ key 0 of round 1
  __m256i k_r0;    ///< c3 ^ key 1 of round 0 (word 2 after round 0 = hi(M0 w0) ^ this)
  __m256i x2_r1;   ///< hi(M0 * word 0 after round 0) ^ key 1 of round 1
  __m256i x3_r2;   ///< word 3 after round 1 (lo of that product) ^ key 1 of round 2
  __m256i k0_r2;   ///< key 0 of round 2
  __m256i k[14];   ///< keys of rounds 3..9: k[2 (r - 3)] and k[2 (r - 3) + 1]
};

PRIVSDK_TARGET_AVX2 __m256i broadcast8(std::uint32_t v) { return _mm256_set1_epi32(static_cast<int>(v)); }

__attribute__((target("avx2"))) inline void philox_stream8(std::uint32_t k0, std::uint32_t k1, std::uint32_t id,
                                                          std::uint32_t c2, std::uint32_t c3, PhiloxStream8* out) {
  std::uint32_t rk0[10], rk1[10];
  for (int r = 0; r < 10; ++r) {
    rk0[r] = k0 + static_cast<std::uint32_t>(r) * kPhiloxW0;
    rk1[r] = k1 + static_cast<std::uint32_t>(r) * kPhiloxW1;
  }
  // Round 0: the product of word 2 (= c2) is the same for every block.
  const std::uint64_t p1 = static_cast<std::uint64_t>(kPhiloxM1) * c2;
  const std::uint32_t x0_r0 = static_cast<std::uint32_t>(p1 >> 32) ^ id ^ rk0[0];
  const std::uint32_t x1_r0 = static_cast<std::uint32_t>(p1);
  // Round 1: word 0 (x0_r0) is the same for every block, so is its product.
  const std::uint64_t p0 = static_cast<std::uint64_t>(kPhiloxM0) * x0_r0;
  PhiloxStream8& st = *out;
  st.x1_r1 = broadcast8(x1_r0 ^ rk0[1]);
  st.k_r0 = broadcast8(c3 ^ rk1[0]);
  st.x2_r1 = broadcast8(static_cast<std::uint32_t>(p0 >> 32) ^ rk1[1]);
  st.x3_r2 = broadcast8(static_cast<std::uint32_t>(p0) ^ rk1[2]);
  st.k0_r2 = broadcast8(rk0[2]);
  for (int r = 3; r < 10; ++r) {
    st.k[2 * (r - 3)] = broadcast8(rk0[r]);
    st.k[2 * (r - 3) + 1] = broadcast8(rk1[r]);
  }
}

/// Philox4x32-10 of 4 blocks whose word 0 is held in the low halves of the
/// 64-bit lanes of x0 (the high halves are ignored: vpmuludq multiplies the
/// low halves only, so a round is two products, two shifts and four xors with
/// no shuffles). Returns the 4 words in the low halves of w0..w3.
PRIVSDK_TARGET_AVX2 void philox_rounds4(__m256i x0, const PhiloxStream8& st, __m256i& w0, __m256i& w1,
                                        __m256i& w2, __m256i& w3) {
  const __m256i m0 = _mm256_set1_epi32(static_cast<int>(kPhiloxM0));
  const __m256i m1 = _mm256_set1_epi32(static_cast<int>(kPhiloxM1));
  // Round 0: word 0 -> word 3 (lo) and word 2; words 0 and 1 are per-stream constants.
  __m256i x3 = _mm256_mul_epu32(x0, m0);
  __m256i x2 = _mm256_xor_si256(_mm256_srli_epi64(x3, 32), st.k_r0);
  // Round 1: word 0's product is a constant; word 3 becomes one too.
  __m256i x1 = _mm256_mul_epu32(x2, m1);
  x0 = _mm256_xor_si256(_mm256_srli_epi64(x1, 32), st.x1_r1);
  x2 = _mm256_xor_si256(x3, st.x2_r1);
  // Round 2: word 3 is the constant (folded into x3_r2).
  {
    const __m256i p0 = _mm256_mul_epu32(x0, m0), p1 = _mm256_mul_epu32(x2, m1);
    x0 = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p1, 32), x1), st.k0_r2);
    x2 = _mm256_xor_si256(_mm256_srli_epi64(p0, 32), st.x3_r2);
    x1 = p1;
    x3 = p0;
  }
  for (int r = 3; r < 10; ++r) {
    const __m256i p0 = _mm256_mul_epu32(x0, m0), p1 = _mm256_mul_epu32(x2, m1);
    x0 = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p1, 32), x1), st.k[2 * (r - 3)]);
    x2 = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p0, 32), x3), st.k[2 * (r - 3) + 1]);
    x1 = p1;
    x3 = p0;
  }
  w0 = x0;
  w1 = x1;
  w2 = x2;
  w3 = x3;
}

/// The 4 words of the Philox blocks with counters (block + j, id, c2, c3),
/// j = 0..7: w[i] holds word i of block j in lane j.
PRIVSDK_TARGET_AVX2 void philox8(std::uint32_t block, const PhiloxStream8& st, __m256i w[4]) {
  const __m256i base = _mm256_set1_epi32(static_cast<int>(block));
  // Blocks 0, 2, 4, 6 in one register and 1, 3, 5, 7 in the other.
  __m256i e[4], o[4];
  philox_rounds4(_mm256_add_epi32(base, _mm256_setr_epi32(0, 0, 2, 0, 4, 0, 6, 0)), st, e[0], e[1], e[2], e[3]);
  philox_rounds4(_mm256_add_epi32(base, _mm256_setr_epi32(1, 0, 3, 0, 5, 0, 7, 0)), st, o[0], o[1], o[2], o[3]);
  for (int i = 0; i < 4; ++i) w[i] = _mm256_blend_epi32(e[i], _mm256_slli_epi64(o[i], 32), 0xAA);
}

/// float(a) for unsigned a, correctly rounded (as the scalar conversion):
/// the two 16-bit halves convert exactly, only the final addition rounds.
/// `scale` (a power of two) is applied to both halves before that addition.
PRIVSDK_TARGET_AVX2 __m256 u32_to_float_scaled(__m256i a, float hi_scale, float lo_scale) {
  const __m256 hi = _mm256_cvtepi32_ps(_mm256_srli_epi32(a, 16));
  const __m256 lo = _mm256_cvtepi32_ps(_mm256_and_si256(a, _mm256_set1_epi32(0xffff)));
  return _mm256_add_ps(_mm256_mul_ps(hi, _mm256_set1_ps(hi_scale)), _mm256_mul_ps(lo, _mm256_set1_ps(lo_scale)));
}

/// log_unit of 8 floats (same operations as the scalar one).
PRIVSDK_TARGET_AVX2 __m256 log_unit8(__m256 u) {
  const __m256i bits = _mm256_castps_si256(u);
  const __m256i ix = _mm256_sub_epi32(bits, _mm256_set1_epi32(0x3f3504f3));
  const __m256 dk = _mm256_cvtepi32_ps(_mm256_srai_epi32(ix, 23));
  const __m256 m = _mm256_castsi256_ps(
      _mm256_sub_epi32(bits, _mm256_and_si256(ix, _mm256_set1_epi32(static_cast<int>(0xff800000u)))));
  const __m256 f = _mm256_sub_ps(m, _mm256_set1_ps(1.0f));
  const __m256 s = _mm256_div_ps(f, _mm256_add_ps(_mm256_set1_ps(2.0f), f));
  const __m256 z = _mm256_mul_ps(s, s), w = _mm256_mul_ps(z, z);
  const __m256 t1 = _mm256_mul_ps(
      w, _mm256_add_ps(_mm256_set1_ps(0.40000972152f), _mm256_mul_ps(w, _mm256_set1_ps(0.24279078841f))));
  const __m256 t2 = _mm256_mul_ps(
      z, _mm256_add_ps(_mm256_set1_ps(0.66666662693f), _mm256_mul_ps(w, _mm256_set1_ps(0.28498786688f))));
  const __m256 r = _mm256_add_ps(t2, t1);
  const __m256 l1f = _mm256_sub_ps(f, _mm256_mul_ps(s, _mm256_sub_ps(f, r)));
  return _mm256_add_ps(_mm256_mul_ps(dk, _mm256_set1_ps(0.693147182f)), l1f);
}

/// Box-Muller of 8 pairs of words (a, b): zc = r cos(2 pi b / 2^32), zs = r sin(...)
/// with r = sqrt(-2 ln u1) (box_muller_radius and sincos_turn, 8 lanes).
PRIVSDK_TARGET_AVX2 void box_muller8(__m256i a, __m256i b, __m256& zc, __m256& zs) {
  // Radius: u1 = float(a) 2^-32 + 2^-33.
  const __m256 u1 = _mm256_add_ps(u32_to_float_scaled(a, 1.52587890625e-05f, 2.3283064365386963e-10f),
                                  _mm256_set1_ps(1.1641532182693481e-10f));
  const __m256 rad = _mm256_sqrt_ps(_mm256_mul_ps(_mm256_set1_ps(-2.0f), log_unit8(u1)));
  // Angle: quadrant q = t >> 30 from the top bits of b, x = rem 2 pi / 2^32.
  const __m256i t = _mm256_add_epi32(b, _mm256_set1_epi32(0x20000000));
  const __m256 x = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_slli_epi32(b, 2)),
                                 _mm256_set1_ps(1.46291807926715968e-09f * 0.25f));
  const __m256 z = _mm256_mul_ps(x, x);
  __m256 s = _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(-1.9515295891e-4f), z), _mm256_set1_ps(8.3321608736e-3f));
  s = _mm256_sub_ps(_mm256_mul_ps(s, z), _mm256_set1_ps(1.6666654611e-1f));
  s = _mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(s, z), x), x);
  __m256 c = _mm256_sub_ps(_mm256_mul_ps(_mm256_set1_ps(2.443315711809948e-5f), z),
                           _mm256_set1_ps(1.388731625493765e-3f));
  c = _mm256_add_ps(_mm256_mul_ps(c, z), _mm256_set1_ps(4.166664568298827e-2f));
  c = _mm256_add_ps(_mm256_sub_ps(_mm256_mul_ps(_mm256_mul_ps(c, z), z), _mm256_mul_ps(_mm256_set1_ps(0.5f), z)),
                    _mm256_set1_ps(1.0f));
  // Odd quadrants swap sin and cos (blendv looks at the sign bit only: bit 30 of t).
  const __m256i odd = _mm256_slli_epi32(t, 1);
  const __m256 swap = _mm256_castsi256_ps(odd);
  const __m256 sv = _mm256_blendv_ps(s, c, swap), cv = _mm256_blendv_ps(c, s, swap);
  const __m256i sign = _mm256_set1_epi32(static_cast<int>(0x80000000u));
  const __m256i sin_sign = _mm256_and_si256(t, sign);
  const __m256i cos_sign = _mm256_and_si256(_mm256_xor_si256(t, odd), sign);
  zs = _mm256_mul_ps(rad, _mm256_xor_ps(sv, _mm256_castsi256_ps(sin_sign)));
  zc = _mm256_mul_ps(rad, _mm256_xor_ps(cv, _mm256_castsi256_ps(cos_sign)));
}

/// The 32 normals of the 8 Philox blocks starting at `block`, in stream order
/// (z[4 j + i] for block j: r cos and r sin of words 0-1, then of words 2-3).
PRIVSDK_TARGET_AVX2 void normals32(std::uint32_t block, const PhiloxStream8& st, float* z) {
  __m256i w[4];
  philox8(block, st, w);
  __m256 c0, s0, c1, s1;
  box_muller8(w[0], w[1], c0, s0);
  box_muller8(w[2], w[3], c1, s1);
  // 4 x 8 transpose: lane j of (c0, s0, c1, s1) becomes z[4 j .. 4 j + 4).
  const __m256 t0 = _mm256_unpacklo_ps(c0, s0), t1 = _mm256_unpackhi_ps(c0, s0);  // blocks 0,1|4,5 and 2,3|6,7
  const __m256 t2 = _mm256_unpacklo_ps(c1, s1), t3 = _mm256_unpackhi_ps(c1, s1);
  const __m256 b04 = _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(t0), _mm256_castps_pd(t2)));
  const __m256 b15 = _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(t0), _mm256_castps_pd(t2)));
  const __m256 b26 = _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(t1), _mm256_castps_pd(t3)));
  const __m256 b37 = _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(t1), _mm256_castps_pd(t3)));
  _mm256_storeu_ps(z, _mm256_permute2f128_ps(b04, b15, 0x20));
  _mm256_storeu_ps(z + 8, _mm256_permute2f128_ps(b26, b37, 0x20));
  _mm256_storeu_ps(z + 16, _mm256_permute2f128_ps(b04, b15, 0x31));
  _mm256_storeu_ps(z + 24, _mm256_permute2f128_ps(b26, b37, 0x31));
}

}  // namespace detail
}  // namespace privsdk

#undef PRIVSDK_TARGET_AVX2
