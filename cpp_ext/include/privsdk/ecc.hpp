// privsdk head levelling: Euclidean image registration by ECC maximisation (C++17, no Python inside).
//
// Evangelidis & Psarakis, "Parametric Image Alignment Using Enhanced Correlation Coefficient
// Maximization", IEEE TPAMI 30(10), 2008: the forward-additive Gauss-Newton iteration for a rotation
// and a shift, with the same preprocessing, masks, fixed-point bilinear sampling and stopping rule as
// OpenCV's cv::findTransformECC(template, input, warp, MOTION_EUCLIDEAN, criteria, inputMask,
// gaussFiltSize). OpenCV's function is the reference the tests check this against on real faces
// (privsdk.regions.ecc); this one exists because OpenCV's warps three whole images per iteration,
// and on a 64x64 face crop that was most of a levelling filter's cost (bench/RESULTS.md).
//
// Example (C++):
//
//   #include <privsdk/ecc.hpp>
//   std::vector<float> templ(64 * 64), face(64 * 64);          // grey, 0-1
//   std::vector<std::uint8_t> rows(64 * 64, 0);
//   std::fill(rows.begin(), rows.begin() + 32 * 64, 1);          // register the top half only
//   float warp[6] = {1, 0, 0, 0, 1, 0};                           // template -> face pixels
//   privsdk::EccResult r = privsdk::ecc_euclidean(templ.data(), face.data(), rows.data(), 64, 64, warp,
//                                                {50, 1e-4, 3});
//   if (r.status == privsdk::EccStatus::Converged) { /* warp holds cos, -sin, tx, sin, cos, ty */ }
#pragma once

#include <cstdint>

namespace privsdk {

/// How a registration ended. OpenCV raises cv::Error::StsNoConv for the last two.
enum class EccStatus : int {
  Converged = 0,      ///< the correlation changed by less than eps
  MaxIterations = 1,  ///< stopped after max_iterations (OpenCV returns normally here too)
  Diverged = 2,       ///< the Gauss-Newton step lost its direction (OpenCV: "the algorithm stopped before its convergence")
  NotFinite = 3,      ///< the correlation was NaN (a flat image or mask)
};

struct EccCriteria {
  int max_iterations = 50;  ///< >= 1
  double eps = 1e-4;        ///< stop when |rho - last rho| < eps (<= 0: run all iterations)
  int gauss_size = 3;       ///< the Gaussian pre-filter's size: 1 (none), 3, 5 or 7
};

struct EccResult {
  EccStatus status;
  double rho;      ///< the last enhanced correlation coefficient computed
  int iterations;  ///< Gauss-Newton steps taken
};

/// Registers `image` onto `templ` (both height x width float32, row-major) with a rotation and a shift.
///
/// `mask` (height x width, nonzero = valid pixel of `image`, or null for all) restricts the pixels used.
/// `warp` is the 2x3 map from template to image pixel coordinates (row-major: a, b, tx, c, d, ty); it is
/// the starting point and receives the result, whatever the status. Throws std::invalid_argument for bad
/// arguments (sizes outside 4x4 to 16384x16384, a gauss_size other than 1/3/5/7, max_iterations < 1, a
/// non-finite warp or one shifted by more than 1e5 pixels). A step that shifts the image further than that
/// ends the registration as Diverged.
EccResult ecc_euclidean(const float* templ, const float* image, const std::uint8_t* mask, int height, int width,
                        float warp[6], const EccCriteria& criteria);

/// The channels' mean of an 8-bit image, in 0-1: ((c0 + c1) + ...) / channels / 255 in float32, as numpy's
/// ``image.astype(float32).mean(axis=2) / 255`` (privsdk.regions.ecc.grey01). `row_stride` in bytes.
void grey_mean01(const std::uint8_t* image, int height, int width, int channels, std::int64_t row_stride, float* out);

}  // namespace privsdk
