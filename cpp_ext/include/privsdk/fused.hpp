// privsdk fused kernels: the C++17 core (no Python inside; link privsdk_core).
//
// One kernel, two uses (DESIGN.md, "Fused kernels"). Per output element:
//
//   out[c, oy, ox] = bilinear(frame[roi])[oy, ox, 2 - c] / 255 * scale[c, oy, ox]
//                    + shift[c, oy, ox] + sigma[c, oy, ox] * N(0, 1)
//
// written once as NCHW float32 or float16, and post() is the inverse map back
// into a uint8 BGR frame. The numpy reference (privsdk/kernels/reference.py)
// defines the semantics; this implementation matches it to float rounding,
// including the noise (Philox4x32-10 + float32 Box-Muller, same counter layout).
//
// Every function validates its arguments and throws std::invalid_argument with
// a message that starts with the argument's name, says what it got and what
// was expected. Nothing is written into an output when an argument is invalid.
//
// Example (C++):
//
//   #include <privsdk/fused.hpp>
//   std::vector<uint8_t> bgr(480 * 640 * 3);               // a camera frame
//   privsdk::ImageView frame{bgr.data(), 480, 640, 640 * 3, 3, 1};
//   std::vector<float> scale(3 * 64 * 64, 1.f), shift(3 * 64 * 64, 0.f),
//                      sigma(3 * 64 * 64, 0.1f), out(3 * 64 * 64);
//   privsdk::Maps maps{scale.data(), shift.data(), sigma.data(), 64, 64};
//   privsdk::NoiseSource rng;                                // keyed from OS entropy
//   privsdk::pre(frame, {100, 50, 128, 128}, maps,
//                {out.data(), privsdk::DType::Float32, out.size()}, {}, &rng);
//   privsdk::post({out.data(), privsdk::DType::Float32, 64, 64},
//                 privsdk::MutableImageView{bgr.data(), 480, 640, 640 * 3, 3, 1},
//                 {100, 50, 128, 128}, nullptr, nullptr);
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace privsdk {

/// A read-only uint8 H x W x 3 image (BGR) with arbitrary strides in bytes
/// (strides may be negative; crops and flips are views, never copies).
struct ImageView {
  const std::uint8_t* data;
  std::int64_t height;
  std::int64_t width;
  std::int64_t stride_y;  ///< bytes between rows
  std::int64_t stride_x;  ///< bytes between pixels
  std::int64_t stride_c;  ///< bytes between channels
  std::int64_t channels = 3;
};

/// A writeable uint8 H x W x 3 image (BGR) with arbitrary strides in bytes.
struct MutableImageView {
  std::uint8_t* data;
  std::int64_t height;
  std::int64_t width;
  std::int64_t stride_y;
  std::int64_t stride_x;
  std::int64_t stride_c;
  std::int64_t channels = 3;
};

/// A region of a frame: top-left corner (x, y), width w and height h, in pixels.
struct Roi {
  std::int64_t x, y, w, h;
};

/// Element type of a float tensor.
enum class DType { Float32, Float16 };

/// Per-location maps of pre(), each a C-contiguous 3 x height x width float32
/// array (finite; sigma >= 0). `scale` and `shift` are required; `sigma` may
/// be null (no noise). height x width is the output (model) size.
///
/// pre() scans the maps' values on every call (NaN/inf, negative sigma, any
/// sigma != 0). A caller that has checked them once and never changes them
/// (e.g. a filter's maps, loaded once) may set `values_checked`, and then
/// must set `sigma_nonzero` (whether any sigma != 0): pre() skips the scans.
struct Maps {
  const float* scale;
  const float* shift;
  const float* sigma;
  std::int64_t height;
  std::int64_t width;
  bool values_checked = false;  ///< the values are known to be valid: no per-call scan
  bool sigma_nonzero = false;   ///< with values_checked: whether any sigma != 0
};

/// A writeable C-contiguous float tensor of `size` elements.
struct Tensor {
  void* data;
  DType dtype;
  std::size_t size;
};

/// A read-only C-contiguous 3 x height x width float tensor (the network output).
struct ConstPlanes {
  const void* data;
  DType dtype;
  std::int64_t height;
  std::int64_t width;
};

/// Philox4x32-10 block function (Salmon et al. 2011, Random123).
std::array<std::uint32_t, 4> philox4x32_10(std::array<std::uint32_t, 4> counter,
                                           std::array<std::uint32_t, 2> key);

/// Fill dst[0..n) with elements [start, start + n) of the N(0, 1) stream of one
/// tensor of one call: element i uses counter (i / 4, tensor_id, call low, call
/// high) and word i % 4; words (a, b) become two normals by float32 Box-Muller.
void philox_normals(std::uint64_t key, std::uint32_t tensor_id, std::uint64_t call,
                    std::uint64_t start, std::size_t n, float* dst);

/// A keyed Philox stream with an atomic call counter (thread-safe).
/// The default constructor keys it from the OS entropy source; a seed exists
/// for tests only (a seeded source is replayable).
class NoiseSource {
 public:
  NoiseSource();                                        ///< key from OS entropy
  explicit NoiseSource(std::uint64_t seed);             ///< key = seed (tests)
  /// Resume a stream: this key, next call number `first_call` (used to share a
  /// stream with the numpy reference's NoiseSource).
  NoiseSource(std::uint64_t key, std::uint64_t first_call, bool seeded);
  NoiseSource(const NoiseSource&) = delete;
  NoiseSource& operator=(const NoiseSource&) = delete;

  /// Take the next call number (every kernel call that draws noise takes one).
  std::uint64_t next_call() { return calls_.fetch_add(1, std::memory_order_relaxed); }
  std::uint64_t key() const { return key_; }
  bool seeded() const { return seeded_; }
  /// n normals of tensor `tensor_id` of call `call` (see philox_normals).
  void normals(float* dst, std::size_t n, std::uint32_t tensor_id, std::uint64_t call) const {
    philox_normals(key_, tensor_id, call, 0, n, dst);
  }

 private:
  std::uint64_t key_;
  std::atomic<std::uint64_t> calls_;
  bool seeded_;
};

/// IEEE binary16 conversions (round to nearest even; portable, no F16C needed).
std::uint16_t float_to_half(float f);
float half_to_float(std::uint16_t h);

/// The fused pre-kernel. `maps.scale` and `maps.shift` are required; `maps.sigma`
/// is optional. `out` must hold 3 * maps.height * maps.width elements; each
/// `noise_outputs[k]` is filled with N(0, 1) from tensor id k + 1. `rng` is
/// required when noise is drawn (any sigma != 0, or any noise output); it then
/// takes one call number. `swap_rb` turns BGR into RGB planes. `threads` = 0
/// uses the hardware concurrency (small outputs run on one thread); the result
/// does not depend on the thread count. Helper threads come from a persistent
/// pool started on first use (the calling thread always works too, and never
/// waits for a helper that has not started).
void pre(const ImageView& frame, const Roi& roi, const Maps& maps, const Tensor& out,
         const std::vector<Tensor>& noise_outputs, NoiseSource* rng, bool swap_rb = true,
         int threads = 0);

/// The fused post-kernel: u = y * scale + shift (each optional), bilinear
/// resize to the region, clamp to [0, 1], round to uint8 and write BGR into
/// frame[roi] in place. Throws before writing anything if y holds NaN or inf.
void post(const ConstPlanes& y, const MutableImageView& frame, const Roi& roi,
          const float* scale, const float* shift, bool swap_rb = true, int threads = 0);

}  // namespace privsdk
