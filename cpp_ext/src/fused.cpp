// privsdk fused kernels: implementation (see include/privsdk/fused.hpp).
//
// Compiled with -ffp-contract=off so that every float operation rounds as in
// the numpy reference (no fused multiply-add), on x86-64 and aarch64 alike.
#include "privsdk/fused.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <system_error>
#include <cmath>
#include <cstring>
#include <exception>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>

#include "privsdk/detail/normal_math.hpp"

#if defined(__linux__)
#include <sys/random.h>
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

// Portable builds also carry an AVX2 variant of the hot loops, picked at run
// time (GCC function multi-versioning); the results are identical (no FMA).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    !defined(PRIVSDK_NO_CLONES) && !defined(__AVX2__)
#define PRIVSDK_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define PRIVSDK_CLONES
#endif

#if defined(__GNUC__) && defined(__x86_64__) && defined(__SSE2__) && !defined(PRIVSDK_NO_AVX2)
#define PRIVSDK_AVX2 1
#include <immintrin.h>

#include "privsdk/detail/normal_avx2.hpp"
#else
#define PRIVSDK_AVX2 0
#endif

namespace privsdk {
namespace {

#if PRIVSDK_AVX2
// Runtime dispatch (portable builds): the CPU's AVX2 is checked once.
bool cpu_has_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2");
}
const bool kHaveAvx2 = cpu_has_avx2();
#endif

// ------------------------------------------------------------------ helpers

[[noreturn]] void fail(const std::string& msg) { throw std::invalid_argument(msg); }

template <typename T>
std::string str(const T& v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

std::string roi_text(const Roi& r) {
  return "(x=" + str(r.x) + ", y=" + str(r.y) + ", w=" + str(r.w) + ", h=" + str(r.h) + ")";
}

template <typename View>
void check_image(const View& f, const char* name) {
  if (f.data == nullptr) fail(std::string(name) + ": expected image data, got a null pointer");
  if (f.channels != 3)
    fail(std::string(name) + ": expected 3 channels (BGR) in the last axis, got " + str(f.channels));
  if (f.height <= 0 || f.width <= 0)
    fail(std::string(name) + ": expected a non-empty image, got " + str(f.height) + "x" + str(f.width));
}

void check_roi(const Roi& r, std::int64_t height, std::int64_t width) {
  if (r.w <= 0 || r.h <= 0) fail("roi: expected a positive width and height, got " + roi_text(r));
  if (r.x < 0 || r.y < 0 || r.x + r.w > width || r.y + r.h > height)
    fail("roi: " + roi_text(r) + " reaches outside the " + str(width) + "x" + str(height) +
         " frame; expected 0 <= x, x + w <= " + str(width) + ", 0 <= y, y + h <= " + str(height));
}

// Scan a float map for NaN/inf (and negatives, and any non-zero) with integer
// OR-reductions, which the compiler vectorizes: one fast pass, no branches.
struct MapScan {
  bool non_finite, negative, nonzero;
};

PRIVSDK_CLONES MapScan scan_map(const float* m, std::size_t n) {
  const std::uint32_t* bits = reinterpret_cast<const std::uint32_t*>(m);
  std::uint32_t special = 0, neg = 0, any = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint32_t b = bits[i], a = b & 0x7fffffffu;
    special |= (b & 0x7f800000u) + 0x00800000u;  // bit 31 set iff the exponent is all ones
    neg |= b & (a + 0x7fffffffu);                  // bit 31 set iff sign and not +-0
    any |= a;
  }
  return {(special & 0x80000000u) != 0, (neg & 0x80000000u) != 0, any != 0};
}

MapScan check_finite_map(const float* m, std::size_t n, const char* name, bool nonnegative) {
  const MapScan s = scan_map(m, n);
  if (s.non_finite) fail(std::string(name) + ": contains NaN or infinity; expected finite values");
  if (nonnegative && s.negative) fail(std::string(name) + ": contains negative values; expected σ ≥ 0");
  return s;
}

void check_threads(int threads) {
  if (threads < 0) fail("threads: expected 0 (hardware concurrency) or a positive count, got " + str(threads));
}

int resolve_threads(int threads, std::int64_t rows, std::size_t work) {
  int n = threads;
  if (n == 0) {
    n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    if (work < (std::size_t(1) << 15)) n = 1;  // thread start-up costs more than it saves
  }
  return static_cast<int>(std::max<std::int64_t>(1, std::min<std::int64_t>(n, rows)));
}

// Run body(i) for every chunk i in [0, chunks) on up to n threads and rethrow
// the first exception. Chunks are claimed dynamically, so the result does not
// depend on which thread ran what, and a helper thread that the OS starts late
// (a busy machine) is never waited for: the caller claims the remaining chunks
// itself, closes the job and waits only for helpers that are running a chunk.
// Helpers (threads of HelperPool, below) share the job's state, never the
// caller's stack, once the job is closed.
struct ChunkJob {
  std::function<void(std::int64_t)> body;
  std::int64_t chunks = 0;
  std::atomic<std::int64_t> next{0};
  std::mutex lock;
  std::condition_variable idle;
  int active = 0;       // helpers inside the job (guarded by lock)
  bool closed = false;  // the caller has returned or is about to (guarded by lock)
  std::exception_ptr error;

  void drain() {
    for (std::int64_t i = next.fetch_add(1); i < chunks; i = next.fetch_add(1)) {
      try {
        body(i);
      } catch (...) {
        std::lock_guard<std::mutex> g(lock);
        if (!error) error = std::current_exception();
        next.store(chunks);  // stop handing out chunks
      }
    }
  }
};

// A persistent pool of helper threads (started lazily, never joined: it lives
// until the process exits). A kernel call posts one ticket per helper it
// wants; a helper that takes a ticket of a job that is already closed drops it.
// So the caller never waits for a helper that is busy elsewhere or not yet
// scheduled, and a process that forks (whose child has no helpers) still
// finishes every call on the calling thread.
class HelperPool {
 public:
  static HelperPool& instance() {
    static const bool registered = register_fork_handler();
    (void)registered;
    HelperPool* pool = current().load(std::memory_order_acquire);
    if (pool == nullptr) {
      HelperPool* fresh = new HelperPool();  // leaked on purpose: no join at exit
      if (current().compare_exchange_strong(pool, fresh, std::memory_order_acq_rel)) return *fresh;
      delete fresh;  // another thread installed one first
    }
    return *pool;
  }

  /// Hand `job` to up to `helpers` helper threads; returns how many tickets were posted.
  int post(const std::shared_ptr<ChunkJob>& job, int helpers) {
    std::lock_guard<std::mutex> g(lock_);
    while (threads_ < helpers && threads_ < kMaxHelpers) {
      try {
        std::thread([this] { loop(); }).detach();
        ++threads_;
      } catch (const std::system_error&) {
        break;  // no more threads available: the caller does the rest
      }
    }
    const int posted = std::min(helpers, threads_);
    for (int t = 0; t < posted; ++t) tickets_.push_back(job);
    if (posted == 1) wake_.notify_one();
    else if (posted > 1) wake_.notify_all();
    return posted;
  }

 private:
  static constexpr int kMaxHelpers = 256;

  static std::atomic<HelperPool*>& current() {
    static std::atomic<HelperPool*> pool{nullptr};
    return pool;
  }

  // A forked child has none of the parent's helper threads (and maybe a
  // locked queue): it starts a fresh pool on its next parallel call.
  static bool register_fork_handler() {
#if defined(__unix__) || defined(__APPLE__)
    pthread_atfork(nullptr, nullptr, [] { current().store(nullptr, std::memory_order_relaxed); });
#endif
    return true;
  }

  void loop() {
    for (;;) {
      std::shared_ptr<ChunkJob> job;
      {
        std::unique_lock<std::mutex> g(lock_);
        wake_.wait(g, [this] { return !tickets_.empty(); });
        job = std::move(tickets_.front());
        tickets_.pop_front();
      }
      {
        std::lock_guard<std::mutex> g(job->lock);
        if (job->closed) continue;
        ++job->active;
      }
      job->drain();
      std::lock_guard<std::mutex> g(job->lock);
      if (--job->active == 0) job->idle.notify_all();
    }
  }

  std::mutex lock_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<ChunkJob>> tickets_;
  int threads_ = 0;
};

template <typename Body>
void parallel_chunks(int n, std::int64_t chunks, Body body) {
  if (n <= 1 || chunks <= 1) {
    for (std::int64_t i = 0; i < chunks; ++i) body(i);
    return;
  }
  auto job = std::make_shared<ChunkJob>();
  job->body = body;
  job->chunks = chunks;
  HelperPool::instance().post(job, static_cast<int>(std::min<std::int64_t>(n - 1, chunks - 1)));
  job->drain();
  std::unique_lock<std::mutex> g(job->lock);
  job->closed = true;
  job->idle.wait(g, [&] { return job->active == 0; });
  if (job->error) std::rethrow_exception(job->error);
}

// Rows per chunk so that each of n threads gets about 4 chunks (load balance).
inline std::int64_t chunk_rows(std::int64_t rows, int n) {
  return std::max<std::int64_t>(1, rows / (4 * static_cast<std::int64_t>(n)));
}

inline std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

// Half-pixel-centre source coordinates of a bilinear resize (as the reference).
struct Axis {
  std::vector<std::int64_t> i0, i1;
  std::vector<float> f, g;  // weight of i1 and of i0 (g = 1 - f, rounded as numpy does)
};

Axis source_axis(std::int64_t n_out, std::int64_t n_in) {
  Axis a;
  a.i0.resize(n_out);
  a.i1.resize(n_out);
  a.f.resize(n_out);
  a.g.resize(n_out);
  const float ratio = static_cast<float>(n_in) / static_cast<float>(n_out);
  const float hi = static_cast<float>(n_in - 1);
  for (std::int64_t o = 0; o < n_out; ++o) {
    float s = (static_cast<float>(o) + 0.5f) * ratio - 0.5f;
    s = std::min(std::max(s, 0.0f), hi);
    const std::int64_t i0 = static_cast<std::int64_t>(std::floor(s));
    a.i0[o] = i0;
    a.i1[o] = std::min<std::int64_t>(i0 + 1, n_in - 1);
    a.f[o] = s - static_cast<float>(i0);
    a.g[o] = 1.0f - a.f[o];
  }
  return a;
}

void store_row(const float* src, std::size_t n, void* out, DType dtype, std::size_t offset) {
  if (dtype == DType::Float32) {
    std::memcpy(static_cast<float*>(out) + offset, src, n * sizeof(float));
  } else {
    std::uint16_t* dst = static_cast<std::uint16_t*>(out) + offset;
    for (std::size_t i = 0; i < n; ++i) dst[i] = detail::float_to_half_bits(src[i]);
  }
}

// ------------------------------------------------------------------ normals

// Portable path: batches of blocks, loops the compiler vectorizes (SSE2, NEON).
PRIVSDK_CLONES void normals_portable(std::uint32_t k0, std::uint32_t k1, std::uint32_t id, std::uint32_t c2,
                                     std::uint32_t c3, std::uint64_t start, std::size_t n, float* dst) {
  constexpr std::size_t B = detail::kMaxBlocks;  // blocks per batch: 256 normals
  alignas(64) float z[4 * B];
  std::uint64_t block = start / 4;
  std::size_t skip = static_cast<std::size_t>(start % 4), done = 0;
  while (done < n) {
    const std::size_t want = n - done + skip;
    const std::size_t nb = std::min<std::size_t>(B, (want + 3) / 4);
    alignas(32) std::uint32_t w0[B], w1[B], w2[B], w3[B];
    detail::philox_words_blocks(static_cast<std::uint32_t>(block), id, c2, c3, k0, k1, nb, w0, w1, w2, w3);
    detail::box_muller_blocks(w0, w1, w2, w3, nb, z);
    const std::size_t take = std::min(nb * 4 - skip, n - done);
    std::memcpy(dst + done, z + skip, take * sizeof(float));
    done += take;
    skip = 0;
    block += nb;
  }
}

#if PRIVSDK_AVX2
// AVX2 path: 32 normals (8 Philox blocks) per step, stored straight into dst;
// only a partial group at either end goes through a small buffer.
__attribute__((target("avx2"))) void normals_avx2(const detail::PhiloxStream8& st, std::uint64_t start,
                                                  std::size_t n, float* dst) {
  std::uint64_t block = start / 4;
  std::size_t skip = static_cast<std::size_t>(start % 4), done = 0;
  alignas(32) float z[32];
  while (done < n) {
    if (skip == 0 && n - done >= 32) {
      detail::normals32(static_cast<std::uint32_t>(block), st, dst + done);
      done += 32;
    } else {
      detail::normals32(static_cast<std::uint32_t>(block), st, z);
      const std::size_t take = std::min<std::size_t>(32 - skip, n - done);
      std::memcpy(dst + done, z + skip, take * sizeof(float));
      done += take;
      skip = 0;
    }
    block += 8;
  }
}
#endif

// The N(0, 1) stream of one tensor of one call (see privsdk::philox_normals):
// what Philox needs is set up once (for the AVX2 path: the round keys and the
// per-stream part of the first rounds), then any range can be drawn, e.g. one
// output row at a time.
class NormalStream {
 public:
  NormalStream(std::uint64_t key, std::uint32_t id, std::uint64_t call)
      : k0_(static_cast<std::uint32_t>(key)), k1_(static_cast<std::uint32_t>(key >> 32)), id_(id),
        c2_(static_cast<std::uint32_t>(call)), c3_(static_cast<std::uint32_t>(call >> 32)) {
#if PRIVSDK_AVX2
    if (kHaveAvx2) detail::philox_stream8(k0_, k1_, id_, c2_, c3_, &avx2_);
#endif
  }

  /// Elements [start, start + n) of the stream into dst.
  void fill(std::uint64_t start, std::size_t n, float* dst) const {
#if PRIVSDK_AVX2
    if (kHaveAvx2) {
      normals_avx2(avx2_, start, n, dst);
      return;
    }
#endif
    normals_portable(k0_, k1_, id_, c2_, c3_, start, n, dst);
  }

 private:
  std::uint32_t k0_, k1_, id_, c2_, c3_;
#if PRIVSDK_AVX2
  detail::PhiloxStream8 avx2_;  // set up only when the CPU has AVX2
#endif
};

constexpr std::size_t kNoiseChunk = 1024;  // elements per batch of normals

void fill_noise_tensor(const Tensor& t, std::uint64_t key, std::uint32_t id, std::uint64_t call,
                       std::size_t begin, std::size_t end) {
  const NormalStream stream(key, id, call);
  if (t.dtype == DType::Float32) {  // straight into the tensor
    stream.fill(begin, end - begin, static_cast<float*>(t.data) + begin);
    return;
  }
  float buf[kNoiseChunk];
  for (std::size_t i = begin; i < end; i += kNoiseChunk) {
    const std::size_t n = std::min(kNoiseChunk, end - i);
    stream.fill(i, n, buf);
    store_row(buf, n, t.data, t.dtype, i);
  }
}

std::uint64_t os_entropy_key() {
  std::uint64_t key = 0;
#if defined(__linux__)
  std::size_t got = 0;
  unsigned char* p = reinterpret_cast<unsigned char*>(&key);
  while (got < sizeof(key)) {
    const ssize_t r = getrandom(p + got, sizeof(key) - got, 0);
    if (r <= 0) break;
    got += static_cast<std::size_t>(r);
  }
  if (got == sizeof(key)) return key;
#endif
  std::random_device rd;  // the OS entropy source on every mainstream platform
  key = (static_cast<std::uint64_t>(rd()) << 32) ^ static_cast<std::uint64_t>(rd());
  return key;
}

}  // namespace

// ------------------------------------------------------------------ Philox

std::array<std::uint32_t, 4> philox4x32_10(std::array<std::uint32_t, 4> c,
                                           std::array<std::uint32_t, 2> k) {
  detail::philox_block(c.data(), k[0], k[1]);
  return c;
}

PRIVSDK_CLONES void philox_normals(std::uint64_t key, std::uint32_t tensor_id, std::uint64_t call,
                                   std::uint64_t start, std::size_t n, float* dst) {
  if (n == 0) return;
  if (dst == nullptr) fail("dst: expected a buffer for the normals, got a null pointer");
  NormalStream(key, tensor_id, call).fill(start, n, dst);
}

NoiseSource::NoiseSource() : key_(os_entropy_key()), calls_(0), seeded_(false) {}
NoiseSource::NoiseSource(std::uint64_t seed) : key_(seed), calls_(0), seeded_(true) {}
NoiseSource::NoiseSource(std::uint64_t key, std::uint64_t first_call, bool seeded)
    : key_(key), calls_(first_call), seeded_(seeded) {}

// ------------------------------------------------------------------ half

std::uint16_t float_to_half(float f) { return detail::float_to_half_bits(f); }

float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  std::uint32_t bits;
  if (e == 0) {
    if (m == 0) {
      bits = sign;
    } else {  // subnormal: m * 2^-24, exact in float
      const float v = static_cast<float>(m) * 5.9604644775390625e-08f;
      std::memcpy(&bits, &v, 4);
      bits |= sign;
    }
  } else if (e == 31) {
    bits = sign | 0x7f800000u | (m << 13);
  } else {
    bits = sign | ((e + 112u) << 23) | (m << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// ------------------------------------------------------------------ post rows
namespace {

// Horizontal pass first, cached per model row (two rows per thread), then a
// vectorizable vertical blend: the same float operations, in the same order,
// as the reference's separable bilinear resize, with far fewer gathers when
// the region is larger than the model output.
struct PostPlan {
  const float* u;  // 3 x H x W, already y * scale + shift
  std::int64_t H, W, w;
  const Axis* ay;
  const Axis* ax;
};

PRIVSDK_CLONES void post_hrow(const PostPlan& p, std::int64_t i, float* __restrict buf) {
  const std::int64_t w = p.w;
  const std::int64_t* __restrict x0 = p.ax->i0.data();
  const std::int64_t* __restrict x1 = p.ax->i1.data();
  const float* __restrict f = p.ax->f.data();
  const float* __restrict g = p.ax->g.data();
  for (int c = 0; c < 3; ++c) {
    const float* __restrict row = p.u + (static_cast<std::int64_t>(c) * p.H + i) * p.W;
    float* __restrict o = buf + c * w;
    for (std::int64_t fx = 0; fx < w; ++fx) o[fx] = row[x0[fx]] * g[fx] + row[x1[fx]] * f[fx];
  }
}

PRIVSDK_CLONES void post_rows(const PostPlan& p, const MutableImageView& frame, const Roi& roi, bool swap_rb,
                              std::int64_t r0, std::int64_t r1) {
  const std::int64_t w = p.w;
  std::vector<float> cache(static_cast<std::size_t>(6 * w));
  std::vector<std::uint8_t> q(static_cast<std::size_t>(3 * w));
  float* bufs[2] = {cache.data(), cache.data() + 3 * w};
  std::int64_t tags[2] = {-1, -1};
  auto fetch = [&](std::int64_t i, std::int64_t keep) -> const float* {
    for (int k = 0; k < 2; ++k)
      if (tags[k] == i) return bufs[k];
    const int k = (tags[0] != keep) ? 0 : 1;
    post_hrow(p, i, bufs[k]);
    tags[k] = i;
    return bufs[k];
  };
  const std::int64_t sx = frame.stride_x, sc = frame.stride_c;
  const std::int64_t ch[3] = {(swap_rb ? 2 : 0) * sc, sc, (swap_rb ? 0 : 2) * sc};
  for (std::int64_t fy = r0; fy < r1; ++fy) {
    const std::int64_t i0 = p.ay->i0[fy], i1 = p.ay->i1[fy];
    const float* top = fetch(i0, i1);
    const float* bot = fetch(i1, i0);
    const float wy = p.ay->f[fy], gy = p.ay->g[fy];
    for (int c = 0; c < 3; ++c) {
      const float* __restrict t = top + c * w;
      const float* __restrict b = bot + c * w;
      std::uint8_t* __restrict o = q.data() + c * w;
      for (std::int64_t fx = 0; fx < w; ++fx) {
        float v = t[fx] * gy + b[fx] * wy;
        v = v < 0.0f ? 0.0f : v;
        v = v > 1.0f ? 1.0f : v;
        // v * 255 + 0.5 >= 0.5, so truncation is floor.
        o[fx] = static_cast<std::uint8_t>(static_cast<std::int32_t>(v * 255.0f + 0.5f));
      }
    }
    std::uint8_t* dst = frame.data + (roi.y + fy) * frame.stride_y + roi.x * sx;
    if (sx == 3 && sc == 1) {  // packed BGR rows: constant offsets, so the interleave vectorizes
      const std::uint8_t* __restrict qb = q.data() + (swap_rb ? 2 : 0) * w;
      const std::uint8_t* __restrict qg = q.data() + w;
      const std::uint8_t* __restrict qr = q.data() + (swap_rb ? 0 : 2) * w;
      std::uint8_t* __restrict d = dst;
      for (std::int64_t fx = 0; fx < w; ++fx) {
        d[3 * fx] = qb[fx];
        d[3 * fx + 1] = qg[fx];
        d[3 * fx + 2] = qr[fx];
      }
    } else {
      const std::uint8_t* q0 = q.data();
      const std::uint8_t* q1 = q0 + w;
      const std::uint8_t* q2 = q1 + w;
      for (std::int64_t fx = 0; fx < w; ++fx) {
        std::uint8_t* d = dst + fx * sx;
        d[ch[0]] = q0[fx];
        d[ch[1]] = q1[fx];
        d[ch[2]] = q2[fx];
      }
    }
  }
}

// ------------------------------------------------------------------ pre rows

struct PrePlan {
  const ImageView& frame;
  const Roi& roi;
  const Maps& maps;
  const Tensor& out;
  const Axis* ay;
  const Axis* ax;
  const std::int64_t* off0;  // byte offset of each output column's left source pixel
  const std::int64_t* off1;  // ... and of its right one
  std::int64_t H, W;
  bool sigma_draws;
  const NormalStream* noise;  // tensor 0's stream (null: no sigma noise)
  std::int64_t ch[3];  // byte offset of the source channel of output channel c
  std::size_t vector_cols;           // columns that may use 4-byte pixel loads (0: none)
  std::size_t vector_cols_last_row;  // the same on the frame's last row
  std::size_t pair_cols;             // columns whose taps one 8-byte load gives (0: none)
  std::size_t pair_cols_last_row;    // the same on the frame's last row
  const std::int32_t* off0_32;       // off0 / off1 as 32-bit offsets (null: they do not fit)
  const std::int32_t* off1_32;
};

#if defined(__SSE2__) && !defined(PRIVSDK_NO_SSE2_PIXELS)
#define PRIVSDK_SSE2_PIXELS 1
// 4 bytes at p as 4 floats (exact: small integers).
inline __m128 load_pixel(const std::uint8_t* p) {
  std::int32_t b;
  std::memcpy(&b, p, 4);
  const __m128i zero = _mm_setzero_si128();
  const __m128i x = _mm_unpacklo_epi16(_mm_unpacklo_epi8(_mm_cvtsi32_si128(b), zero), zero);
  return _mm_cvtepi32_ps(x);
}
#else
#define PRIVSDK_SSE2_PIXELS 0
#endif

#if PRIVSDK_SSE2_PIXELS && PRIVSDK_AVX2 && !defined(PRIVSDK_NO_AVX2_GATHER)
#define PRIVSDK_AVX2_GATHER 1

// Horizontal pass of 8 output columns at a time: gather the 4 bytes of each
// left and right source pixel (32-bit offsets from the row), split the
// channels and blend, the same float operations per element as the scalar
// loop (a * gx + b * fx, no FMA). Returns the number of columns done.
//
// The first `pairs` columns have packed pixels (3 bytes apart) whose right
// tap is the next pixel: one 8-byte load gives both taps, which is cheaper
// than two gathers on CPUs with slow gathers.
__attribute__((target("avx2"))) std::size_t hrow_avx2(const std::uint8_t* row, const std::int32_t* off0,
                                                      const std::int32_t* off1, const float* gxs,
                                                      const float* fxs, std::size_t pairs, std::size_t cols,
                                                      std::size_t W, const std::int64_t* ch, float* buf) {
  const __m256i mask = _mm256_set1_epi32(0xff);
  const __m128i sh[3] = {_mm_cvtsi32_si128(static_cast<int>(8 * ch[0])),
                         _mm_cvtsi32_si128(static_cast<int>(8 * ch[1])),
                         _mm_cvtsi32_si128(static_cast<int>(8 * ch[2]))};
  const int* base = reinterpret_cast<const int*>(row);
  std::size_t ox = 0;
  const __m256i even_odd = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
  for (; ox + 8 <= pairs; ox += 8) {
    long long q[8];
    for (int k = 0; k < 8; ++k) std::memcpy(&q[k], row + off0[ox + k], 8);
    const __m256i lo = _mm256_setr_epi64x(q[0], q[1], q[2], q[3]);
    const __m256i hi = _mm256_setr_epi64x(q[4], q[5], q[6], q[7]);
    // Low dword of each qword: bytes 0..3 (left pixel); bytes 3..6 (right pixel).
    const __m256i a = _mm256_permute2x128_si256(_mm256_permutevar8x32_epi32(lo, even_odd),
                                                _mm256_permutevar8x32_epi32(hi, even_odd), 0x20);
    const __m256i b = _mm256_permute2x128_si256(_mm256_permutevar8x32_epi32(_mm256_srli_epi64(lo, 24), even_odd),
                                                _mm256_permutevar8x32_epi32(_mm256_srli_epi64(hi, 24), even_odd),
                                                0x20);
    const __m256 gx = _mm256_loadu_ps(gxs + ox), fx = _mm256_loadu_ps(fxs + ox);
    for (int c = 0; c < 3; ++c) {
      const __m256 fa = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srl_epi32(a, sh[c]), mask));
      const __m256 fb = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srl_epi32(b, sh[c]), mask));
      _mm256_storeu_ps(buf + c * W + ox, _mm256_add_ps(_mm256_mul_ps(fa, gx), _mm256_mul_ps(fb, fx)));
    }
  }
  for (; ox + 8 <= cols; ox += 8) {
    const __m256i a = _mm256_i32gather_epi32(base, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(off0 + ox)), 1);
    const __m256i b = _mm256_i32gather_epi32(base, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(off1 + ox)), 1);
    const __m256 gx = _mm256_loadu_ps(gxs + ox), fx = _mm256_loadu_ps(fxs + ox);
    for (int c = 0; c < 3; ++c) {
      const __m256 fa = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srl_epi32(a, sh[c]), mask));
      const __m256 fb = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srl_epi32(b, sh[c]), mask));
      _mm256_storeu_ps(buf + c * W + ox, _mm256_add_ps(_mm256_mul_ps(fa, gx), _mm256_mul_ps(fb, fx)));
    }
  }
  return ox;
}
#else
#define PRIVSDK_AVX2_GATHER 0
#endif



// uint8 -> float by table lookup: a load is cheaper than a scalar conversion.
struct ByteFloats {
  float v[256];
  ByteFloats() {
    for (int i = 0; i < 256; ++i) v[i] = static_cast<float>(i);
  }
};
const ByteFloats kByteFloats;

PRIVSDK_CLONES void pre_rows(const PrePlan& p, std::int64_t r0, std::int64_t r1) {
  const std::size_t W = static_cast<std::size_t>(p.W);
  const std::size_t plane = static_cast<std::size_t>(p.H) * W;
  const float inv255 = static_cast<float>(1.0 / 255.0);
  const float* lut = kByteFloats.v;
  std::vector<float> rows(3 * W), z(p.sigma_draws ? W : 0), cache(6 * W);
  float* const v0 = rows.data();
  const std::int64_t s0 = p.ch[0], s1 = p.ch[1], s2 = p.ch[2];
  const float* __restrict fxs = p.ax->f.data();
  const float* __restrict gxs = p.ax->g.data();
  // Horizontal pass of one source row (3 planes of W), cached for the next
  // output row: upscaling reads each source row once. Same float operations,
  // in the same order, as the reference's separable bilinear resize.
  auto hrow = [&](std::int64_t sy, float* __restrict buf) {
    const std::uint8_t* row = p.frame.data + (p.roi.y + sy) * p.frame.stride_y;
    std::size_t ox = 0;
#if PRIVSDK_SSE2_PIXELS
    // Packed pixels: B, G, R (and one byte past them, inside the frame for
    // these columns) as one 4-lane vector; same float operations per lane.
    const std::size_t vec = (p.roi.y + sy == p.frame.height - 1) ? p.vector_cols_last_row : p.vector_cols;
#if PRIVSDK_AVX2_GATHER
    if (kHaveAvx2 && p.off0_32 != nullptr) {
      const std::size_t pairs = (p.roi.y + sy == p.frame.height - 1) ? p.pair_cols_last_row : p.pair_cols;
      ox = hrow_avx2(row, p.off0_32, p.off1_32, gxs, fxs, std::min(pairs, vec), vec, W, p.ch, buf);
    }
#endif
    alignas(16) float lanes[4];
    for (; ox < vec; ++ox) {
      const __m128 gx = _mm_set1_ps(gxs[ox]), fx = _mm_set1_ps(fxs[ox]);
      const __m128 v = _mm_add_ps(_mm_mul_ps(load_pixel(row + p.off0[ox]), gx),
                                  _mm_mul_ps(load_pixel(row + p.off1[ox]), fx));
      _mm_store_ps(lanes, v);
      buf[ox] = lanes[s0];
      buf[W + ox] = lanes[1];
      buf[2 * W + ox] = lanes[s2];
    }
#endif
    for (; ox < W; ++ox) {
      const float fx = fxs[ox], gx = gxs[ox];
      const std::uint8_t* a = row + p.off0[ox];
      const std::uint8_t* b = row + p.off1[ox];
      buf[ox] = lut[a[s0]] * gx + lut[b[s0]] * fx;
      buf[W + ox] = lut[a[s1]] * gx + lut[b[s1]] * fx;
      buf[2 * W + ox] = lut[a[s2]] * gx + lut[b[s2]] * fx;
    }
  };
  float* bufs[2] = {cache.data(), cache.data() + 3 * W};
  std::int64_t tags[2] = {-1, -1};
  auto fetch = [&](std::int64_t sy, std::int64_t keep) -> const float* {
    for (int k = 0; k < 2; ++k)
      if (tags[k] == sy) return bufs[k];
    const int k = (tags[0] != keep) ? 0 : 1;
    hrow(sy, bufs[k]);
    tags[k] = sy;
    return bufs[k];
  };
  for (std::int64_t oy = r0; oy < r1; ++oy) {
    const std::int64_t i0 = p.ay->i0[oy], i1 = p.ay->i1[oy];
    const float* __restrict top = fetch(i0, i1);
    const float* __restrict bot = fetch(i1, i0);
    const float fy = p.ay->f[oy], gy = p.ay->g[oy];
    // Vertical blend, per-location affine, noise, one store (vectorized).
    for (std::size_t c = 0; c < 3; ++c) {
      const std::size_t base = c * plane + static_cast<std::size_t>(oy) * W;
      const bool f32 = p.out.dtype == DType::Float32;
      // float32 output is written directly; float16 goes through v for the conversion.
      float* __restrict v = f32 ? static_cast<float*>(p.out.data) + base : v0 + c * W;
      const float* __restrict t = top + c * W;
      const float* __restrict b = bot + c * W;
      const float* __restrict sc = p.maps.scale + base;
      const float* __restrict sh = p.maps.shift + base;
      if (p.sigma_draws) {
        // The row's normals first (an L1-sized buffer), then one pass: the
        // reference's (affine) + sigma * z, rounded in the same order.
        p.noise->fill(base, W, z.data());
        const float* __restrict sg = p.maps.sigma + base;
        const float* __restrict zz = z.data();
        for (std::size_t ox = 0; ox < W; ++ox)
          v[ox] = ((t[ox] * gy + b[ox] * fy) * inv255 * sc[ox] + sh[ox]) + sg[ox] * zz[ox];
      } else {
        for (std::size_t ox = 0; ox < W; ++ox) v[ox] = (t[ox] * gy + b[ox] * fy) * inv255 * sc[ox] + sh[ox];
      }
      if (!f32) {
        std::uint16_t* __restrict dst = static_cast<std::uint16_t*>(p.out.data) + base;
        for (std::size_t ox = 0; ox < W; ++ox) dst[ox] = detail::float_to_half_bits(v[ox]);
      }
    }
  }
}

}  // namespace

// ------------------------------------------------------------------ pre

void pre(const ImageView& frame, const Roi& roi, const Maps& maps, const Tensor& out,
         const std::vector<Tensor>& noise_outputs, NoiseSource* rng, bool swap_rb, int threads) {
  check_threads(threads);
  check_image(frame, "frame");
  check_roi(roi, frame.height, frame.width);
  if (maps.height <= 0 || maps.width <= 0)
    fail("scale: expected shape (3, H, W) with H, W > 0, got (3, " + str(maps.height) + ", " + str(maps.width) + ")");
  if (maps.scale == nullptr) fail("scale: expected a 3xHxW float32 map, got a null pointer");
  if (maps.shift == nullptr) fail("shift: expected a 3xHxW float32 map, got a null pointer");
  const std::int64_t H = maps.height, W = maps.width;
  const std::size_t plane = static_cast<std::size_t>(H * W), total = 3 * plane;
  bool sigma_draws = maps.sigma != nullptr && maps.sigma_nonzero;
  if (!maps.values_checked) {
    check_finite_map(maps.scale, total, "scale", false);
    check_finite_map(maps.shift, total, "shift", false);
    if (maps.sigma != nullptr) sigma_draws = check_finite_map(maps.sigma, total, "sigma", true).nonzero;
  }
  if (out.data == nullptr) fail("out: expected an output buffer, got a null pointer");
  if (out.size != total)
    fail("out: expected " + str(total) + " elements (3x" + str(H) + "x" + str(W) + "), got " + str(out.size));
  for (std::size_t k = 0; k < noise_outputs.size(); ++k)
    if (noise_outputs[k].data == nullptr && noise_outputs[k].size > 0)
      fail("noise_outputs[" + str(k) + "]: expected a writeable float buffer, got a null pointer");
  const bool draws = sigma_draws || !noise_outputs.empty();
  if (draws && rng == nullptr) fail("rng: expected a privsdk NoiseSource when noise is drawn, got none");
  const std::uint64_t call = draws ? rng->next_call() : 0;
  const std::uint64_t key = draws ? rng->key() : 0;

  const Axis ay = source_axis(H, roi.h), ax = source_axis(W, roi.w);
  std::vector<std::int64_t> off0(W), off1(W);
  for (std::int64_t o = 0; o < W; ++o) {
    off0[o] = (roi.x + ax.i0[o]) * frame.stride_x;
    off1[o] = (roi.x + ax.i1[o]) * frame.stride_x;
  }
  std::size_t noise_total = 0;
  for (const Tensor& t : noise_outputs) noise_total += t.size;
  const int n = resolve_threads(threads, H, total + noise_total);
  const std::int64_t cs = frame.stride_c;
  // 4-byte pixel loads read one byte past a pixel's R: safe when channels are
  // adjacent and that byte lies inside the frame's span, i.e. everywhere but
  // the last pixel of the last row (i1 only grows with the output column).
  std::size_t vector_cols = 0, vector_cols_last_row = 0;
  if (cs == 1 && frame.stride_x >= 3 && frame.stride_y > 0) {
    vector_cols = static_cast<std::size_t>(W);
    while (vector_cols_last_row < static_cast<std::size_t>(W) &&
           roi.x + ax.i1[vector_cols_last_row] < frame.width - 1)
      ++vector_cols_last_row;
  }
  // 32-bit copies of the offsets for the AVX2 gathers, when the frame's rows are short enough.
  std::vector<std::int32_t> off0_32, off1_32;
  if (vector_cols > 0 && (roi.x + roi.w) * frame.stride_x + 4 < (std::int64_t(1) << 31)) {
    off0_32.assign(off0.begin(), off0.end());
    off1_32.assign(off1.begin(), off1.end());
  }
  // 8-byte loads at the left tap give the right tap too where pixels are packed
  // (3 bytes apart) and i1 = i0 + 1 (everywhere but the clamped right edge).
  // They read up to 2 bytes past the right pixel: inside the frame's span on
  // every row but the last, where the pixel must leave 8 bytes to the row's end.
  std::size_t pair_cols = 0, pair_cols_last_row = 0;
  if (vector_cols > 0 && frame.stride_x == 3) {
    while (pair_cols < static_cast<std::size_t>(W) && ax.i1[pair_cols] == ax.i0[pair_cols] + 1) ++pair_cols;
    while (pair_cols_last_row < pair_cols && (roi.x + ax.i0[pair_cols_last_row]) * 3 + 8 <= frame.width * 3)
      ++pair_cols_last_row;
  }
  const NormalStream noise0(key, 0, call);
  const PrePlan plan{frame, roi, maps, out, &ay, &ax, off0.data(), off1.data(), H, W, sigma_draws,
                     sigma_draws ? &noise0 : nullptr,
                     {(swap_rb ? 2 : 0) * cs, cs, (swap_rb ? 0 : 2) * cs}, vector_cols, vector_cols_last_row,
                     pair_cols, pair_cols_last_row,
                     off0_32.empty() ? nullptr : off0_32.data(), off1_32.empty() ? nullptr : off1_32.data()};

  // One list of chunks: row blocks of the main tensor, then blocks of each noise output.
  const std::int64_t rows_per = chunk_rows(H, n), row_chunks = ceil_div(H, rows_per);
  constexpr std::int64_t kNoisePer = 1 << 15;  // elements per noise-output chunk
  std::vector<std::int64_t> first_chunk(noise_outputs.size() + 1, row_chunks);
  for (std::size_t k = 0; k < noise_outputs.size(); ++k)
    first_chunk[k + 1] = first_chunk[k] + ceil_div(static_cast<std::int64_t>(noise_outputs[k].size), kNoisePer);
  parallel_chunks(n, first_chunk.back(), [&](std::int64_t i) {
    if (i < row_chunks) {
      pre_rows(plan, i * rows_per, std::min(H, (i + 1) * rows_per));
      return;
    }
    std::size_t k = 0;
    while (i >= first_chunk[k + 1]) ++k;
    const std::size_t size = noise_outputs[k].size;
    const std::size_t b = static_cast<std::size_t>((i - first_chunk[k]) * kNoisePer);
    fill_noise_tensor(noise_outputs[k], key, static_cast<std::uint32_t>(k + 1), call, b,
                      std::min(size, b + static_cast<std::size_t>(kNoisePer)));
  });
}

// ------------------------------------------------------------------ post

void post(const ConstPlanes& y, const MutableImageView& frame, const Roi& roi, const float* scale,
          const float* shift, bool swap_rb, int threads) {
  check_threads(threads);
  if (y.data == nullptr) fail("y: expected a 3xHxW float array, got a null pointer");
  if (y.height <= 0 || y.width <= 0)
    fail("y: expected shape (3, H, W) with H, W > 0, got (3, " + str(y.height) + ", " + str(y.width) + ")");
  check_image(frame, "frame");
  check_roi(roi, frame.height, frame.width);
  const std::int64_t H = y.height, W = y.width;
  const std::size_t total = static_cast<std::size_t>(3 * H * W);
  if (scale != nullptr) check_finite_map(scale, total, "scale", false);
  if (shift != nullptr) check_finite_map(shift, total, "shift", false);

  // u = y * scale + shift in float32; the finiteness check comes first of all writes.
  std::vector<float> u(total);
  if (y.dtype == DType::Float32) {
    std::memcpy(u.data(), y.data, total * sizeof(float));
  } else {
    const std::uint16_t* h = static_cast<const std::uint16_t*>(y.data);
    for (std::size_t i = 0; i < total; ++i) u[i] = half_to_float(h[i]);
  }
  if (scan_map(u.data(), total).non_finite)
    fail("y: the network output contains NaN or infinity; expected finite values (nothing was written)");
  if (scale != nullptr)
    for (std::size_t i = 0; i < total; ++i) u[i] = u[i] * scale[i];
  if (shift != nullptr)
    for (std::size_t i = 0; i < total; ++i) u[i] = u[i] + shift[i];

  const Axis ay = source_axis(roi.h, H), ax = source_axis(roi.w, W);
  const int n = resolve_threads(threads, roi.h, static_cast<std::size_t>(roi.h * roi.w * 3));
  PostPlan plan{u.data(), H, W, roi.w, &ay, &ax};
  const std::int64_t rows_per = chunk_rows(roi.h, n);
  parallel_chunks(n, ceil_div(roi.h, rows_per), [&](std::int64_t i) {
    post_rows(plan, frame, roi, swap_rb, i * rows_per, std::min(roi.h, (i + 1) * rows_per));
  });
}

}  // namespace privsdk
