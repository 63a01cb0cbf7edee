// pybind11 binding of the fused kernels: the extension module privsdk._fused.
//
// A thin layer: it turns numpy arrays into views (no copies), releases the GIL
// and calls the C++ core, whose std::invalid_argument becomes ValueError. The
// user-facing Python API (with the reference's validation and messages) is
// privsdk.kernels._cpp; call that, not this module.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "privsdk/ecc.hpp"
#include "privsdk/fused.hpp"

namespace py = pybind11;
using privsdk::DType;

namespace {

[[noreturn]] void bad(const std::string& msg) { throw std::invalid_argument(msg); }

DType float_dtype(const py::array& a, const char* name) {
  if (a.dtype().is(py::dtype::of<float>())) return DType::Float32;
  if (a.dtype().kind() == 'f' && a.dtype().itemsize() == 2) return DType::Float16;
  bad(std::string(name) + ": expected a float32 or float16 array, got dtype " +
      std::string(py::str(a.dtype())));
}

void require_c_contiguous(const py::array& a, const char* name) {
  if (!(a.flags() & py::array::c_style)) bad(std::string(name) + ": expected a C-contiguous array");
}

void require_writeable(const py::array& a, const char* name) {
  if (!a.writeable()) bad(std::string(name) + ": expected a writeable array, got a read-only one");
}

template <typename View, typename Ptr>
View image_view(const py::array& a, Ptr data, const char* name) {
  if (!a.dtype().is(py::dtype::of<std::uint8_t>()))
    bad(std::string(name) + ": expected dtype uint8 (HxWx3 BGR), got " + std::string(py::str(a.dtype())));
  if (a.ndim() != 3) bad(std::string(name) + ": expected a 3-D array HxWx3, got " + std::to_string(a.ndim()) + "-D");
  return View{data, a.shape(0), a.shape(1), a.strides(0), a.strides(1), a.strides(2), a.shape(2)};
}

const float* map_ptr(const std::optional<py::array>& m, const char* name, std::int64_t h, std::int64_t w) {
  if (!m) return nullptr;
  if (!m->dtype().is(py::dtype::of<float>()))
    bad(std::string(name) + ": expected a float32 array CxHxW, got dtype " + std::string(py::str(m->dtype())));
  if (m->ndim() != 3 || m->shape(0) != 3 || m->shape(1) != h || m->shape(2) != w)
    bad(std::string(name) + ": expected shape (3, " + std::to_string(h) + ", " + std::to_string(w) + ")");
  require_c_contiguous(*m, name);
  return static_cast<const float*>(m->data());
}

void pre(const py::array& frame, std::int64_t x, std::int64_t y, std::int64_t w, std::int64_t h,
         const py::array& scale, const std::optional<py::array>& shift, const std::optional<py::array>& sigma,
         py::array out, std::vector<py::array> noise_outputs, privsdk::NoiseSource* rng, bool swap_rb,
         int threads, std::optional<bool> sigma_nonzero) {
  const auto view = image_view<privsdk::ImageView>(frame, static_cast<const std::uint8_t*>(frame.data()), "frame");
  if (scale.ndim() != 3) bad("scale: expected shape (3, H, W), got " + std::to_string(scale.ndim()) + "-D");
  const std::int64_t H = scale.shape(1), W = scale.shape(2);
  privsdk::Maps maps{map_ptr(scale, "scale", H, W), map_ptr(shift, "shift", H, W), map_ptr(sigma, "sigma", H, W), H, W};
  // Maps checked once by the caller (privsdk.kernels.PreparedMaps): no per-call scan.
  maps.values_checked = sigma_nonzero.has_value();
  maps.sigma_nonzero = sigma_nonzero.value_or(false);
  const DType od = float_dtype(out, "out");
  require_c_contiguous(out, "out");
  require_writeable(out, "out");
  privsdk::Tensor out_t{out.mutable_data(), od, static_cast<std::size_t>(out.size())};
  std::vector<privsdk::Tensor> extra;
  for (std::size_t k = 0; k < noise_outputs.size(); ++k) {
    const std::string name = "noise_outputs[" + std::to_string(k) + "]";
    const DType d = float_dtype(noise_outputs[k], name.c_str());
    require_c_contiguous(noise_outputs[k], name.c_str());
    require_writeable(noise_outputs[k], name.c_str());
    extra.push_back({noise_outputs[k].mutable_data(), d, static_cast<std::size_t>(noise_outputs[k].size())});
  }
  py::gil_scoped_release release;
  privsdk::pre(view, {x, y, w, h}, maps, out_t, extra, rng, swap_rb, threads);
}

void post(const py::array& yarr, py::array frame, std::int64_t x, std::int64_t y, std::int64_t w, std::int64_t h,
          const std::optional<py::array>& scale, const std::optional<py::array>& shift, bool swap_rb, int threads) {
  const DType yd = float_dtype(yarr, "y");
  if (yarr.ndim() != 3 || yarr.shape(0) != 3) bad("y: expected shape (3, H, W)");
  require_c_contiguous(yarr, "y");
  require_writeable(frame, "frame");
  const auto view = image_view<privsdk::MutableImageView>(frame, static_cast<std::uint8_t*>(frame.mutable_data()), "frame");
  const std::int64_t H = yarr.shape(1), W = yarr.shape(2);
  const float* sc = map_ptr(scale, "scale", H, W);
  const float* sh = map_ptr(shift, "shift", H, W);
  privsdk::ConstPlanes planes{yarr.data(), yd, H, W};
  py::gil_scoped_release release;
  privsdk::post(planes, view, {x, y, w, h}, sc, sh, swap_rb, threads);
}

py::tuple ecc_euclidean(const py::array& templ, const py::array& image, const std::optional<py::array>& mask,
                        py::array warp, int max_iterations, double eps, int gauss_size) {
  if (!templ.dtype().is(py::dtype::of<float>()) || templ.ndim() != 2) bad("template: expected a 2-D float32 array");
  require_c_contiguous(templ, "template");
  const int h = static_cast<int>(templ.shape(0)), w = static_cast<int>(templ.shape(1));
  // image: H×W float32 grey, or an H×W(×C) uint8 image whose channels' mean is taken here
  const bool bytes = image.dtype().is(py::dtype::of<std::uint8_t>());
  if (!(bytes ? (image.ndim() == 2 || image.ndim() == 3) : (image.dtype().is(py::dtype::of<float>()) && image.ndim() == 2)))
    bad("image: expected an H×W float32 array or an H×W(×C) uint8 one");
  if (image.shape(0) != h || image.shape(1) != w) bad("image: expected the template's height and width");
  require_c_contiguous(image, "image");
  const std::uint8_t* m = nullptr;
  if (mask) {
    if (!mask->dtype().is(py::dtype::of<std::uint8_t>()) || mask->ndim() != 2 || mask->shape(0) != h ||
        mask->shape(1) != w)
      bad("mask: expected a uint8 array of the template's shape");
    require_c_contiguous(*mask, "mask");
    m = static_cast<const std::uint8_t*>(mask->data());
  }
  if (!warp.dtype().is(py::dtype::of<float>()) || warp.ndim() != 2 || warp.shape(0) != 2 || warp.shape(1) != 3)
    bad("warp: expected a 2x3 float32 array");
  require_c_contiguous(warp, "warp");
  require_writeable(warp, "warp");
  const auto* t = static_cast<const float*>(templ.data());
  auto* wp = static_cast<float*>(warp.mutable_data());
  const int channels = bytes && image.ndim() == 3 ? static_cast<int>(image.shape(2)) : 1;
  privsdk::EccResult r;
  {
    py::gil_scoped_release release;
    std::vector<float> grey;
    const float* im = static_cast<const float*>(image.data());
    if (bytes) {
      grey.resize(static_cast<std::size_t>(h) * w);
      privsdk::grey_mean01(static_cast<const std::uint8_t*>(image.data()), h, w, channels,
                           static_cast<std::int64_t>(image.strides(0)), grey.data());
      im = grey.data();
    }
    r = privsdk::ecc_euclidean(t, im, m, h, w, wp, {max_iterations, eps, gauss_size});
  }
  return py::make_tuple(static_cast<int>(r.status), r.rho, r.iterations);
}

}  // namespace

PYBIND11_MODULE(_fused, m) {
  m.doc() = "privsdk fused C++ kernels (use privsdk.kernels, which validates and documents them)";

  py::class_<privsdk::NoiseSource>(m, "NoiseSource",
                                   "Keyed Philox4x32-10 stream with an atomic call counter.")
      .def(py::init<>(), "Key from the OS entropy source.")
      .def(py::init<std::uint64_t>(), py::arg("seed"), "Key = seed (tests only).")
      .def(py::init<std::uint64_t, std::uint64_t, bool>(), py::arg("key"), py::arg("first_call"), py::arg("seeded"))
      .def("next_call", &privsdk::NoiseSource::next_call, "Take the next call number.")
      .def_property_readonly("key", &privsdk::NoiseSource::key)
      .def_property_readonly("seeded", &privsdk::NoiseSource::seeded)
      .def(
          "normals",
          [](const privsdk::NoiseSource& self, std::size_t n, std::uint32_t tensor_id, std::uint64_t call) {
            py::array_t<float> z(static_cast<py::ssize_t>(n));
            float* dst = z.mutable_data();
            {
              py::gil_scoped_release release;
              self.normals(dst, n, tensor_id, call);
            }
            return z;
          },
          py::arg("n"), py::arg("tensor_id"), py::arg("call"),
          "n N(0, 1) float32 values of one tensor of one call.");

  m.def(
      "philox4x32_10",
      [](std::array<std::uint32_t, 4> counter, std::array<std::uint32_t, 2> key) {
        return privsdk::philox4x32_10(counter, key);
      },
      py::arg("counter"), py::arg("key"), "Philox4x32-10 block function: 4 uint32 words.");
  m.def("float_to_half", &privsdk::float_to_half, py::arg("value"), "IEEE binary16 bits of a float (nearest even).");
  m.def("half_to_float", &privsdk::half_to_float, py::arg("bits"), "The float of IEEE binary16 bits.");
  m.def("pre", &pre, py::arg("frame"), py::arg("x"), py::arg("y"), py::arg("w"), py::arg("h"), py::arg("scale"),
        py::arg("shift"), py::arg("sigma"), py::arg("out"), py::arg("noise_outputs"), py::arg("rng"),
        py::arg("swap_rb"), py::arg("threads"), py::arg("sigma_nonzero") = py::none(),
        "Fused pre-kernel (raw; see privsdk.kernels.pre). sigma_nonzero: None scans the maps' values; "
        "True/False trusts a caller that checked them (privsdk.kernels.PreparedMaps).");
  m.def("post", &post, py::arg("y"), py::arg("frame"), py::arg("x0"), py::arg("y0"), py::arg("w"), py::arg("h"),
        py::arg("scale"), py::arg("shift"), py::arg("swap_rb"), py::arg("threads"),
        "Fused post-kernel (raw; see privsdk.kernels.post).");
  m.def("ecc_euclidean", &ecc_euclidean, py::arg("template"), py::arg("image"), py::arg("mask"), py::arg("warp"),
        py::arg("max_iterations"), py::arg("eps"), py::arg("gauss_size"),
        "Euclidean ECC registration (raw; see privsdk.regions.ecc): (status, rho, iterations), warp updated "
        "in place. status 0 converged, 1 max iterations, 2 diverged, 3 not finite.");
}
