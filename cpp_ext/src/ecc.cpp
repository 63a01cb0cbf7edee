// Euclidean ECC registration (see privsdk/ecc.hpp for the contract).
//
// Written from the paper and OpenCV's documented behaviour, step for step where it changes a result:
//  * both images are smoothed by the small Gaussian OpenCV uses for a size with sigma 0 (binomial
//    weights), borders reflected (BORDER_REFLECT_101);
//  * the input mask is blurred and kept only where the blur stays >= 0.95 (so it shrinks by the filter's
//    radius), and the image's gradients (-0.5, 0, 0.5) are zeroed outside it;
//  * images, gradients and mask are sampled in template coordinates as cv::warpAffine(WARP_INVERSE_MAP)
//    samples them: coordinates in 1/1024 pixel, bilinear weights in 1/32 pixel, outside pixels 0, and
//    the mask by its nearest pixel;
//  * each step solves the 3x3 Gauss-Newton system of the ECC criterion and updates the angle additively.
// Where OpenCV materialises the warped images, the Jacobian and the error, this makes one pass per step
// and keeps sums, and only over template rows whose samples can reach the valid part of the image.
#include "privsdk/ecc.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

namespace privsdk {
namespace {

[[noreturn]] void fail(const std::string& msg) { throw std::invalid_argument(msg); }

// OpenCV's getGaussianKernel(n, sigma <= 0) for n <= 7: fixed binomial weights.
std::vector<float> gaussian_weights(int n) {
  switch (n) {
    case 1: return {1.f};
    case 3: return {0.25f, 0.5f, 0.25f};
    case 5: return {0.0625f, 0.25f, 0.375f, 0.25f, 0.0625f};
    case 7: return {0.03125f, 0.109375f, 0.21875f, 0.28125f, 0.21875f, 0.109375f, 0.03125f};
    default: fail("gauss_size: expected 1, 3, 5 or 7, got " + std::to_string(n));
  }
}

inline int reflect101(int i, int n) {
  while (i < 0 || i >= n) i = i < 0 ? -i : 2 * n - 2 - i;
  return i;
}

// Separable filter, rows then columns, float intermediate, reflected borders (cv::sepFilter2D).
void separable(const float* src, float* dst, int h, int w, const std::vector<float>& kernel, std::vector<float>& tmp) {
  const int taps = static_cast<int>(kernel.size()), r = taps / 2;
  float k[7];
  std::copy(kernel.begin(), kernel.end(), k);
  tmp.resize(static_cast<std::size_t>(h) * w);
  float* __restrict mid = tmp.data();
  for (int y = 0; y < h; ++y) {
    const float* __restrict row = src + static_cast<std::size_t>(y) * w;
    float* __restrict out = mid + static_cast<std::size_t>(y) * w;
    for (int x = 0; x < w; ++x) {
      float s = 0.f;
      if (x >= r && x + r < w) {
        for (int t = 0; t < taps; ++t) s += k[t] * row[x + t - r];
      } else {
        for (int t = 0; t < taps; ++t) s += k[t] * row[reflect101(x + t - r, w)];
      }
      out[x] = s;
    }
  }
  for (int y = 0; y < h; ++y) {
    const float* rows[7];
    for (int t = 0; t < taps; ++t) rows[t] = mid + static_cast<std::size_t>(reflect101(y + t - r, h)) * w;
    float* __restrict out = dst + static_cast<std::size_t>(y) * w;
    for (int x = 0; x < w; ++x) out[x] = k[0] * rows[0][x];
    for (int t = 1; t < taps; ++t) {
      const float* __restrict in = rows[t];
      const float kt = k[t];
      for (int x = 0; x < w; ++x) out[x] += kt * in[x];
    }
  }
}

constexpr int kSums = 21, kLanes = 8;
// |shift| beyond this many pixels is taken as divergence: coordinates x 1024 must stay well inside an int
constexpr double kMaxShift = 1e5;
constexpr int kAbBits = 10, kAbScale = 1 << kAbBits, kInterBits = 5, kInterTab = 1 << kInterBits;

inline int round_int(double v) { return static_cast<int>(std::lrint(v)); }  // cvRound: half to even

}  // namespace

EccResult ecc_euclidean(const float* templ, const float* image, const std::uint8_t* mask, int height, int width,
                        float warp[6], const EccCriteria& criteria) {
  if (templ == nullptr || image == nullptr || warp == nullptr) fail("ecc_euclidean: null template, image or warp");
  if (height < 4 || width < 4 || height > 16384 || width > 16384)
    fail("ecc_euclidean: expected images of 4x4 to 16384x16384, got " + std::to_string(height) + "x" +
         std::to_string(width));
  if (criteria.max_iterations < 1)
    fail("max_iterations: expected >= 1, got " + std::to_string(criteria.max_iterations));
  for (int k = 0; k < 6; ++k)
    if (!std::isfinite(warp[k])) fail("warp: expected 6 finite values (a, b, tx, c, d, ty)");
  if (std::fabs(warp[2]) > kMaxShift || std::fabs(warp[5]) > kMaxShift)
    fail("warp: expected shifts of at most 1e5 pixels");
  const std::vector<float> g = gaussian_weights(criteria.gauss_size);
  const int h = height, w = width;
  const std::size_t n = static_cast<std::size_t>(h) * w;

  std::vector<float> t(n), im(n), gx(n), gy(n), premask(n), scratch;
  separable(templ, t.data(), h, w, g, scratch);
  separable(image, im.data(), h, w, g, scratch);
  // The valid pixels: the mask shrunk by the filter (kept where its blur, x 0.5/0.95, rounds to 1).
  for (std::size_t i = 0; i < n; ++i) premask[i] = (mask == nullptr || mask[i] != 0) ? 1.f : 0.f;
  std::vector<float> blurred(n);
  separable(premask.data(), blurred.data(), h, w, g, scratch);
  std::vector<std::uint8_t> valid(n);
  int valid_top = h, valid_bottom = -1;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const std::size_t i = static_cast<std::size_t>(y) * w + x;
      // cvRound(blur * 0.5 / 0.95) != 0; halves round to even, so exactly 0.5 rounds to 0
      valid[i] = blurred[i] * static_cast<float>(0.5 / 0.95) > 0.5f;
      if (valid[i]) {
        valid_top = std::min(valid_top, y);
        valid_bottom = std::max(valid_bottom, y);
      }
    }
  // the image's gradients, (-0.5, 0, 0.5) across and down, zero outside the valid pixels
  for (int y = 0; y < h; ++y) {
    const float* __restrict row = im.data() + static_cast<std::size_t>(y) * w;
    const float* __restrict up = im.data() + static_cast<std::size_t>(reflect101(y - 1, h)) * w;
    const float* __restrict down = im.data() + static_cast<std::size_t>(reflect101(y + 1, h)) * w;
    const std::uint8_t* __restrict ok = valid.data() + static_cast<std::size_t>(y) * w;
    float* __restrict dx = gx.data() + static_cast<std::size_t>(y) * w;
    float* __restrict dy = gy.data() + static_cast<std::size_t>(y) * w;
    for (int x = 0; x < w; ++x) {
      const float m = ok[x] ? 1.f : 0.f;
      const float right = row[x + 1 < w ? x + 1 : w - 2], left = row[x > 0 ? x - 1 : 1];
      dx[x] = (0.5f * right + -0.5f * left) * m;
      dy[x] = (0.5f * down[x] + -0.5f * up[x]) * m;
    }
  }

  // Bilinear weights in 1/32 pixel, as float (cv::initInterTab2D).
  float tab[kInterTab][2];
  for (int k = 0; k < kInterTab; ++k) {
    const float f = static_cast<float>(k) / kInterTab;
    tab[k][0] = 1.f - f;
    tab[k][1] = f;
  }
  std::vector<int> adelta(w), bdelta(w);
  std::vector<float> row_i(w), row_x(w), row_y(w), row_m(w);

  const double eps = criteria.eps;
  double rho = -1.0, last_rho = -eps;
  int it = 0;
  for (int i = 1; i <= criteria.max_iterations && std::fabs(rho - last_rho) >= eps; ++i) {
    it = i;
    const double M[6] = {warp[0], warp[1], warp[2], warp[3], warp[4], warp[5]};
    for (int x = 0; x < w; ++x) {
      adelta[x] = round_int(M[0] * x * kAbScale);
      bdelta[x] = round_int(M[3] * x * kAbScale);
    }
    const float cos_t = warp[0], sin_t = warp[3];
    // Sums over the template grid: the mask's statistics, and J·(.) for the three parameters. Each row
    // is sampled first (gathers), then summed in float (a loop the compiler vectorises), then added in
    // double.
    double count = 0, s_i = 0, s_ii = 0, s_t = 0, s_tt = 0, s_ti = 0;
    double sj[3] = {0, 0, 0}, sjt[3] = {0, 0, 0}, sji[3] = {0, 0, 0}, hess[3][3] = {{0}};
    for (int y = 0; y < h; ++y) {
      const int X0 = round_int((M[1] * y + M[2]) * kAbScale), Y0 = round_int((M[4] * y + M[5]) * kAbScale);
      // the rows this template row samples (affine in x: its ends bound it); gradients and mask are zero
      // outside the valid rows, so a template row that cannot reach them adds nothing
      const int ya = (Y0 + bdelta[0]) >> kAbBits, yb = (Y0 + bdelta[w - 1]) >> kAbBits;
      if (std::max(ya, yb) + 2 < valid_top || std::min(ya, yb) - 1 > valid_bottom) continue;
      for (int x = 0; x < w; ++x) {
        // nearest sample of the valid mask
        const int nx = (X0 + kAbScale / 2 + adelta[x]) >> kAbBits, ny = (Y0 + kAbScale / 2 + bdelta[x]) >> kAbBits;
        row_m[x] = (nx >= 0 && nx < w && ny >= 0 && ny < h && valid[static_cast<std::size_t>(ny) * w + nx]) ? 1.f : 0.f;
        // bilinear samples of the image and its (masked) gradients
        const int X = (X0 + kAbScale / kInterTab / 2 + adelta[x]) >> (kAbBits - kInterBits);
        const int Y = (Y0 + kAbScale / kInterTab / 2 + bdelta[x]) >> (kAbBits - kInterBits);
        const int ix = X >> kInterBits, iy = Y >> kInterBits;
        const float* wx = tab[X & (kInterTab - 1)];
        const float* wy = tab[Y & (kInterTab - 1)];
        float vi = 0.f, vx = 0.f, vy = 0.f;
        if (ix >= 0 && iy >= 0 && ix + 1 < w && iy + 1 < h) {
          const std::size_t p = static_cast<std::size_t>(iy) * w + ix;
          const float w00 = wy[0] * wx[0], w01 = wy[0] * wx[1], w10 = wy[1] * wx[0], w11 = wy[1] * wx[1];
          vi = im[p] * w00 + im[p + 1] * w01 + im[p + w] * w10 + im[p + w + 1] * w11;
          vx = gx[p] * w00 + gx[p + 1] * w01 + gx[p + w] * w10 + gx[p + w + 1] * w11;
          vy = gy[p] * w00 + gy[p + 1] * w01 + gy[p + w] * w10 + gy[p + w + 1] * w11;
        } else if (ix + 1 >= 0 && iy + 1 >= 0 && ix < w && iy < h) {  // partly outside: outside pixels are 0
          for (int dy = 0; dy < 2; ++dy)
            for (int dx = 0; dx < 2; ++dx) {
              const int xx = ix + dx, yy = iy + dy;
              if (xx < 0 || yy < 0 || xx >= w || yy >= h) continue;
              const std::size_t p = static_cast<std::size_t>(yy) * w + xx;
              const float wt = wy[dy] * wx[dx];
              vi += im[p] * wt;
              vx += gx[p] * wt;
              vy += gy[p] * wt;
            }
        }
        row_i[x] = vi;
        row_x[x] = vx;
        row_y[x] = vy;
      }
      // the Jacobian of the warped image w.r.t. (angle, tx, ty), and the row's sums, in kLanes partial
      // sums each so that the compiler can vectorise the loop (a float sum is otherwise one serial chain)
      const float yf = static_cast<float>(y);
      const float* __restrict trow = t.data() + static_cast<std::size_t>(y) * w;
      float acc[kSums][kLanes] = {};
      for (int x0 = 0; x0 < w; x0 += kLanes) {
        for (int l = 0; l < kLanes; ++l) {
          const int x = std::min(x0 + l, w - 1);
          const float keep = x0 + l < w ? 1.f : 0.f;  // the last block's lanes past the row's end add 0
          const float xf = static_cast<float>(x);
          const float hat_x = -(xf * sin_t) - (yf * cos_t), hat_y = (xf * cos_t) - (yf * sin_t);
          const float vi = row_i[x], vx = keep * row_x[x], vy = keep * row_y[x], m = keep * row_m[x], tv = trow[x];
          const float j0 = vx * hat_x + vy * hat_y;
          acc[0][l] += j0 * j0; acc[1][l] += j0 * vx; acc[2][l] += j0 * vy;
          acc[3][l] += vx * vx; acc[4][l] += vx * vy; acc[5][l] += vy * vy;
          acc[6][l] += j0 * vi; acc[7][l] += vx * vi; acc[8][l] += vy * vi;  // every pixel, as OpenCV projects
          // the mask's moments about 0.5 (the middle grey), which keeps the float sums from cancelling
          const float mj0 = m * j0, mvx = m * vx, mvy = m * vy, mi = m * (vi - 0.5f), mt = m * (tv - 0.5f);
          acc[9][l] += mj0; acc[10][l] += mvx; acc[11][l] += mvy;
          acc[12][l] += mj0 * tv; acc[13][l] += mvx * tv; acc[14][l] += mvy * tv;
          acc[15][l] += m; acc[16][l] += mi; acc[17][l] += mi * mi; acc[18][l] += mt; acc[19][l] += mt * mt;
          acc[20][l] += mi * mt;
        }
      }
      double r[kSums];
      for (int k = 0; k < kSums; ++k) {
        r[k] = 0.0;
        for (int l = 0; l < kLanes; ++l) r[k] += acc[k][l];
      }
      hess[0][0] += r[0]; hess[0][1] += r[1]; hess[0][2] += r[2];
      hess[1][1] += r[3]; hess[1][2] += r[4]; hess[2][2] += r[5];
      for (int a = 0; a < 3; ++a) {
        sji[a] += r[6 + a];
        sj[a] += r[9 + a];
        sjt[a] += r[12 + a];
      }
      count += r[15]; s_i += r[16]; s_ii += r[17]; s_t += r[18]; s_tt += r[19]; s_ti += r[20];
    }
    for (int a = 0; a < 3; ++a)
      for (int b = 0; b < a; ++b) hess[a][b] = hess[b][a];
    // zero-mean image and template over the mask (outside it the image keeps its warped values)
    const double di = count > 0 ? s_i / count : 0.0, dt = count > 0 ? s_t / count : 0.0;  // means - 0.5
    const double img_mean = 0.5 + di, tmp_mean = 0.5 + dt;
    const double img_norm2 = s_ii - count * di * di, tmp_norm2 = s_tt - count * dt * dt;
    const double correlation = s_ti - count * di * dt;
    last_rho = rho;
    rho = correlation / (std::sqrt(std::max(img_norm2, 0.0)) * std::sqrt(std::max(tmp_norm2, 0.0)));
    if (std::isnan(rho)) return {EccStatus::NotFinite, rho, it};
    double img_proj[3], tmp_proj[3];
    for (int a = 0; a < 3; ++a) {
      img_proj[a] = sji[a] - img_mean * sj[a];
      tmp_proj[a] = sjt[a] - tmp_mean * sj[a];
    }
    // the inverse Hessian (3x3, by cofactors)
    const double(&H)[3][3] = hess;
    const double c00 = H[1][1] * H[2][2] - H[1][2] * H[2][1], c01 = H[1][2] * H[2][0] - H[1][0] * H[2][2],
                 c02 = H[1][0] * H[2][1] - H[1][1] * H[2][0];
    const double det = H[0][0] * c00 + H[0][1] * c01 + H[0][2] * c02;
    if (!(std::fabs(det) > 0.0) || !std::isfinite(det)) return {EccStatus::NotFinite, rho, it};
    double inv[3][3];
    inv[0][0] = c00 / det;
    inv[1][0] = c01 / det;
    inv[2][0] = c02 / det;
    inv[0][1] = (H[0][2] * H[2][1] - H[0][1] * H[2][2]) / det;
    inv[1][1] = (H[0][0] * H[2][2] - H[0][2] * H[2][0]) / det;
    inv[2][1] = (H[0][1] * H[2][0] - H[0][0] * H[2][1]) / det;
    inv[0][2] = (H[0][1] * H[1][2] - H[0][2] * H[1][1]) / det;
    inv[1][2] = (H[0][2] * H[1][0] - H[0][0] * H[1][2]) / det;
    inv[2][2] = (H[0][0] * H[1][1] - H[0][1] * H[1][0]) / det;
    double img_proj_hess[3];
    for (int a = 0; a < 3; ++a)
      img_proj_hess[a] = inv[a][0] * img_proj[0] + inv[a][1] * img_proj[1] + inv[a][2] * img_proj[2];
    // the illumination factor lambda of the ECC criterion; a non-positive denominator has no maximiser
    double lambda_n = img_norm2, lambda_d = correlation;
    for (int a = 0; a < 3; ++a) {
      lambda_n -= img_proj[a] * img_proj_hess[a];
      lambda_d -= tmp_proj[a] * img_proj_hess[a];
    }
    if (lambda_d <= 0.0) return {EccStatus::Diverged, -1.0, it};
    const double lambda = lambda_n / lambda_d;
    // error = lambda * template_zm - image_zm, projected onto the Jacobian
    double err_proj[3], delta[3];
    for (int a = 0; a < 3; ++a) err_proj[a] = lambda * tmp_proj[a] - img_proj[a];
    for (int a = 0; a < 3; ++a) delta[a] = inv[a][0] * err_proj[0] + inv[a][1] * err_proj[1] + inv[a][2] * err_proj[2];
    // the angle is updated additively, the matrix rebuilt from it
    double theta = static_cast<float>(delta[0]);
    if (warp[3] > 0) theta += std::acos(warp[0]);
    if (warp[3] < 0) theta -= std::acos(warp[0]);
    warp[2] += static_cast<float>(delta[1]);
    warp[5] += static_cast<float>(delta[2]);
    warp[0] = warp[4] = static_cast<float>(std::cos(theta));
    warp[3] = static_cast<float>(std::sin(theta));
    warp[1] = -warp[3];
    // a step that threw the image far away has diverged (and its coordinates would overflow the fixed point)
    if (!std::isfinite(warp[2]) || !std::isfinite(warp[5]) || std::fabs(warp[2]) > kMaxShift ||
        std::fabs(warp[5]) > kMaxShift)
      return {EccStatus::Diverged, rho, it};
  }
  const bool converged = std::fabs(rho - last_rho) < eps;
  return {converged ? EccStatus::Converged : EccStatus::MaxIterations, rho, it};
}

void grey_mean01(const std::uint8_t* image, int height, int width, int channels, std::int64_t row_stride, float* out) {
  if (image == nullptr || out == nullptr || height < 1 || width < 1 || channels < 1)
    fail("grey_mean01: expected a non-empty image with at least one channel");
  const float n = static_cast<float>(channels);
  for (int y = 0; y < height; ++y) {
    const std::uint8_t* row = image + y * row_stride;
    for (int x = 0; x < width; ++x) {
      float s = row[x * channels];
      for (int c = 1; c < channels; ++c) s += row[x * channels + c];
      out[static_cast<std::size_t>(y) * width + x] = s / n / 255.f;
    }
  }
}

}  // namespace privsdk
