// privsdk C++ sample: sanitize an image or a video with a filter bundle, without Python.
//
// It links the fused-kernel core of privsdk (cpp_ext/: crop + resize + BGR->RGB +
// per-location normalization + fresh noise in one pass, and the inverse) and runs
// the bundle's filter.onnx through OpenCV DNN. Faces come from OpenCV's Haar cascade
// (or the whole frame with --full). A levelling bundle (input.level_head) has each face
// registered onto its template by the core's ECC (privsdk/ecc.hpp) and cut out level, as
// privsdk.regions.level does; an erasing bundle (erase.npz) has the secret's linear eraser
// run on the network's output, as privsdk.erase does. Bundle hashes are not verified here:
// verify bundles with the Python runtime (privsdk.bundle.load_bundle) before deploying them.
//
//   privsdk_sample BUNDLE_DIR INPUT OUTPUT [--full] [--cascade FILE] [--seed N]
//
// INPUT/OUTPUT: an image (.png, .jpg) or a video (.mp4, .avi). Example:
//   ./privsdk_sample ../sdk/privsdk/filters/emotion-lite-erased face.jpg face_filtered.png
#include <privsdk/ecc.hpp>
#include <privsdk/fused.hpp>

#include <opencv2/core.hpp>
#include <opencv2/dnn.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/objdetect.hpp>
#include <opencv2/videoio.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// UTF-8 bytes of a code point (for \uXXXX escapes).
void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

// OpenCV's JSON reader accepts neither `null` nor \uXXXX escapes (Python's json writes both): bare nulls
// (outside strings) become "", and escapes inside strings their UTF-8 characters.
std::string for_opencv_json(const std::string& json) {
  std::string out;
  out.reserve(json.size());
  bool in_string = false;
  auto hex4 = [&](size_t p) { return uint32_t(std::stoul(json.substr(p, 4), nullptr, 16)); };
  for (size_t i = 0; i < json.size(); ++i) {
    char c = json[i];
    if (in_string) {
      if (c == '\\' && i + 5 < json.size() && json[i + 1] == 'u') {
        uint32_t cp = hex4(i + 2);
        i += 5;
        if (cp >= 0xD800 && cp < 0xDC00 && i + 6 < json.size() && json[i + 1] == '\\' && json[i + 2] == 'u') {
          cp = 0x10000 + ((cp - 0xD800) << 10) + (hex4(i + 3) - 0xDC00);  // a surrogate pair
          i += 6;
        }
        append_utf8(out, cp);
        continue;
      }
      out += c;
      if (c == '\\' && i + 1 < json.size()) out += json[++i];
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
      out += c;
    } else if (json.compare(i, 4, "null") == 0) {
      out += "\"\"";
      i += 3;
    } else {
      out += c;
    }
  }
  return out;
}

// The bundle's .npz files are written by numpy.savez: a zip of uncompressed (stored) .npy files of
// C-ordered float32 arrays. Returns each array's values by name (shapes are checked by the caller).
std::map<std::string, std::vector<float>> read_npz(const std::string& path) {
  const std::string zip = read_file(path);
  std::map<std::string, std::vector<float>> maps;
  size_t pos = 0;
  auto u16 = [&](size_t p) { return uint32_t(uint8_t(zip[p])) | uint32_t(uint8_t(zip[p + 1])) << 8; };
  auto u32 = [&](size_t p) { return u16(p) | u16(p + 2) << 16; };
  while (pos + 30 <= zip.size() && u32(pos) == 0x04034b50) {
    uint32_t method = u16(pos + 8), csize = u32(pos + 18), nlen = u16(pos + 26), xlen = u16(pos + 28);
    std::string name = zip.substr(pos + 30, nlen);
    size_t data = pos + 30 + nlen + xlen;
    if (method != 0) throw std::runtime_error(path + ": " + name + " is compressed; expected numpy.savez (stored)");
    uint64_t size = csize;
    if (csize == 0xFFFFFFFFu) {  // zip64 (numpy writes it): sizes are in the extra field, id 0x0001
      size_t e = pos + 30 + nlen, end = e + xlen;
      bool found = false;
      while (e + 4 <= end) {
        uint32_t id = u16(e), len = u16(e + 2);
        if (id == 1 && len >= 16) {  // uncompressed size, then compressed size (8 bytes each)
          size = uint64_t(u32(e + 12)) | uint64_t(u32(e + 16)) << 32;
          found = true;
          break;
        }
        e += 4 + len;
      }
      if (!found) throw std::runtime_error(path + ": zip64 member without its size record");
    }
    std::string npy = zip.substr(data, size);
    if (npy.compare(0, 6, "\x93NUMPY") != 0) throw std::runtime_error(path + ": " + name + " is not a .npy");
    size_t hlen = uint8_t(npy[6]) == 1 ? u16(data + 8) : u32(data + 8);
    size_t hstart = uint8_t(npy[6]) == 1 ? 10 : 12;
    std::string header = npy.substr(hstart, hlen);
    if (header.find("'<f4'") == std::string::npos || header.find("'fortran_order': False") == std::string::npos)
      throw std::runtime_error(path + ": " + name + " is not a C-ordered float32 array: " + header);
    size_t bytes = npy.size() - hstart - hlen;
    std::vector<float> v(bytes / sizeof(float));
    std::memcpy(v.data(), npy.data() + hstart + hlen, v.size() * sizeof(float));
    maps[name.substr(0, name.size() - 4)] = std::move(v);
    pos = data + size;
  }
  return maps;
}

// The array `key` of an .npz, which must hold `size` values (or a multiple of it when `multiple`).
const std::vector<float>& npz_array(const std::map<std::string, std::vector<float>>& npz, const std::string& path,
                                    const std::string& key, size_t size, bool multiple = false) {
  auto it = npz.find(key);
  if (it == npz.end()) throw std::runtime_error(path + " lacks the array '" + key + "'");
  const size_t n = it->second.size();
  if (multiple ? (n == 0 || n % size != 0) : n != size)
    throw std::runtime_error(path + ": " + key + " has " + std::to_string(n) + " values; expected " +
                             (multiple ? "a multiple of " : "") + std::to_string(size));
  for (float v : it->second)
    if (!std::isfinite(v)) throw std::runtime_error(path + ": " + key + " contains NaN or infinity");
  return it->second;
}

// Head levelling, as privsdk.regions.level.HeadLeveller: the face's upper rows are registered onto the
// bundle's template (Euclidean ECC, privsdk/ecc.hpp) and the face is cut out of the frame turned level.
class Leveller {
 public:
  Leveller(std::vector<float> templ, int h, int w, double upper_share, double max_roll_deg, double max_shift_share)
      : templ_(std::move(templ)), mask_(size_t(h) * w, 0), h_(h), w_(w), max_roll_(max_roll_deg),
        max_shift_(max_shift_share) {
    // Python's round(): halves to even, as std::nearbyint in the default rounding mode
    const int rows = std::max(2, int(std::nearbyint(upper_share * h)));
    std::fill(mask_.begin(), mask_.begin() + size_t(std::min(rows, h)) * w, 1);
  }

  // Cut `roi` out of `frame` at the template's size into `out` (h x w BGR), level when the face registers.
  bool crop(const cv::Mat& frame, const cv::Rect& roi, cv::Mat& out) const {
    const double sx = double(w_) / roi.width, sy = double(h_) / roi.height;  // pixel centres aligned
    cv::Mat to_crop = (cv::Mat_<double>(3, 3) << sx, 0, (0.5 - roi.x) * sx - 0.5, 0, sy, (0.5 - roi.y) * sy - 0.5,
                       0, 0, 1);
    cv::warpAffine(frame, out, to_crop.rowRange(0, 2), cv::Size(w_, h_), cv::INTER_LINEAR, cv::BORDER_REPLICATE);
    std::vector<float> grey(size_t(h_) * w_);
    privsdk::grey_mean01(out.data, h_, w_, 3, int64_t(out.step[0]), grey.data());
    float warp[6] = {1, 0, 0, 0, 1, 0};
    const privsdk::EccResult r = privsdk::ecc_euclidean(templ_.data(), grey.data(), mask_.data(), h_, w_, warp,
                                                        {50, 1e-4, 3});  // privsdk.regions.ecc's settings
    if (r.status == privsdk::EccStatus::Diverged || r.status == privsdk::EccStatus::NotFinite) return false;
    const double a = warp[0], b = warp[1], tx = warp[2], c = warp[3], d = warp[4], ty = warp[5];
    const double roll = std::atan2(c, a) * 180.0 / M_PI, cx = (w_ - 1) / 2.0, cy = (h_ - 1) / 2.0;
    const double shift_x = a * cx + b * cy + tx - cx, shift_y = c * cx + d * cy + ty - cy;
    if (std::abs(roll) > max_roll_ || std::max(std::abs(shift_x), std::abs(shift_y)) > max_shift_ * std::max(h_, w_))
      return false;  // an implausible registration: the face is filtered as it sits
    cv::Mat turn = cv::Mat::eye(3, 3, CV_64F);
    cv::getRotationMatrix2D(cv::Point2f(float(cx), float(cy)), roll, 1.0).copyTo(turn.rowRange(0, 2));
    cv::Mat level = turn * to_crop;
    cv::warpAffine(frame, out, level.rowRange(0, 2), cv::Size(w_, h_), cv::INTER_LINEAR, cv::BORDER_REPLICATE);
    return true;
  }

 private:
  std::vector<float> templ_;
  std::vector<uint8_t> mask_;
  int h_, w_;
  double max_roll_, max_shift_;
};

// The secret's linear eraser, as privsdk.erase.LinearEraser: x' = x - basis^T (readout (x - mean)).
class Eraser {
 public:
  Eraser(const std::map<std::string, std::vector<float>>& npz, const std::string& path, size_t plane)
      : mean_(npz_array(npz, path, "mean", plane)), basis_(npz_array(npz, path, "basis", plane, true)),
        readout_(npz_array(npz, path, "readout", plane, true)), plane_(plane), rank_(basis_.size() / plane) {
    if (readout_.size() != basis_.size()) throw std::runtime_error(path + ": basis and readout differ in shape");
    for (size_t k = 0; k < rank_; ++k) {  // readout . mean, once
      double s = 0;
      for (size_t i = 0; i < plane_; ++i) s += double(readout_[k * plane_ + i]) * mean_[i];
      offset_.push_back(float(s));
    }
  }

  void apply(float* x) const {
    std::vector<float> coeff(rank_);
    for (size_t k = 0; k < rank_; ++k) {
      float s = 0;
      for (size_t i = 0; i < plane_; ++i) s += readout_[k * plane_ + i] * x[i];
      coeff[k] = s - offset_[k];
    }
    for (size_t k = 0; k < rank_; ++k)
      for (size_t i = 0; i < plane_; ++i) x[i] -= coeff[k] * basis_[k * plane_ + i];
  }

  size_t rank() const { return rank_; }

 private:
  std::vector<float> mean_, basis_, readout_, offset_;
  size_t plane_, rank_;
};

struct NoiseInput {
  std::string name;
  std::vector<int> shape;  // C, h, w
};

class Sanitizer {
 public:
  Sanitizer(const std::string& bundle, bool full, const std::string& cascade, const uint64_t* seed)
      : full_(full), rng_(seed ? std::make_unique<privsdk::NoiseSource>(*seed) : std::make_unique<privsdk::NoiseSource>()) {
    std::string manifest = for_opencv_json(read_file(bundle + "/filter.json"));
    cv::FileStorage fs(manifest, cv::FileStorage::READ | cv::FileStorage::MEMORY | cv::FileStorage::FORMAT_JSON);
    if ((std::string)fs["format"] != "privsdk-filter/1")
      throw std::runtime_error(bundle + ": filter.json format is not privsdk-filter/1");
    h_ = (int)fs["input"]["height"];
    w_ = (int)fs["input"]["width"];
    kind_ = (std::string)fs["kind"];
    swap_rb_ = fs["input"]["colour_order"].empty() || (std::string)fs["input"]["colour_order"] == "RGB";
    // Frame faces as the training faces were (input.face_crop, measured with this same Haar cascade).
    cv::FileNode crop = fs["input"]["face_crop"];
    if (!crop.empty() && (std::string)crop["detector"] == "haar" && crop["box"].size() == 4) {
      for (int i = 0; i < 4; ++i) crop_[i] = (double)crop["box"][i];
      if (!(crop_[0] < crop_[2] && crop_[1] < crop_[3]))
        throw std::runtime_error(bundle + ": input.face_crop.box must be [left, top, right, bottom] with left < right");
    }
    const size_t plane = size_t(3) * h_ * w_;
    maps_ = read_npz(bundle + "/norm.npz");
    for (const char* key : {"scale", "shift", "sigma"}) npz_array(maps_, bundle + "/norm.npz", key, plane);
    for (const char* key : {"post_scale", "post_shift"})
      if (maps_.count(key)) npz_array(maps_, bundle + "/norm.npz", key, plane);
    // A levelling bundle was evaluated on faces cut out level, an erasing one with its eraser: both stages run.
    cv::FileNode level = fs["input"]["level_head"];
    if (level.isMap()) {
      if ((std::string)level["template"] != "level.npz")
        throw std::runtime_error(bundle + ": input.level_head.template must be level.npz");
      auto read = [&](const char* key, double fallback) { return level[key].isReal() || level[key].isInt() ? (double)level[key] : fallback; };
      leveller_ = std::make_unique<Leveller>(
          npz_array(read_npz(bundle + "/level.npz"), bundle + "/level.npz", "template", size_t(h_) * w_), h_, w_,
          read("upper_share", 0.5), read("max_roll_deg", 30.0), read("max_shift_share", 0.125));
    } else if (!level.empty() && !level.isString()) {
      throw std::runtime_error(bundle + ": input.level_head must be a mapping");
    }
    if (fs["erase"].isMap()) {
      if ((std::string)fs["erase"]["file"] != "erase.npz")
        throw std::runtime_error(bundle + ": erase.file must be erase.npz");
      eraser_ = std::make_unique<Eraser>(read_npz(bundle + "/erase.npz"), bundle + "/erase.npz", plane);
    }
    if (kind_ == "unet") {
      cv::FileNode onnx = fs["onnx"];
      image_input_ = (std::string)onnx["image_input"];
      output_ = (std::string)onnx["output"];
      for (const auto& n : onnx["noise_inputs"]) {
        NoiseInput in{(std::string)n["name"], {}};
        for (const auto& d : n["shape"]) in.shape.push_back((int)d);
        noise_.push_back(in);
      }
      net_ = cv::dnn::readNetFromONNX(bundle + "/filter.onnx");
      net_.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
      net_.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
    }
    if (!full_) {
      if (!faces_.load(cascade)) throw std::runtime_error("cannot load the Haar cascade " + cascade);
    }
    std::cerr << "filter " << (std::string)fs["name"] << " (" << kind_ << ", " << w_ << "x" << h_ << "), "
              << (kind_ == "unet" ? "OpenCV DNN on the CPU" : "fused kernel only") << ", regions "
              << (full_ ? "full" : "faces") << (leveller_ ? ", head levelling" : "")
              << (eraser_ ? ", linear eraser of rank " + std::to_string(eraser_->rank()) : "") << "\n";
  }

  // Filter every region of `frame` in place; returns the number of regions.
  int apply(cv::Mat& frame) {
    std::vector<cv::Rect> rois;
    if (full_) {
      rois.push_back({0, 0, frame.cols, frame.rows});
    } else {
      cv::Mat grey;
      cv::cvtColor(frame, grey, cv::COLOR_BGR2GRAY);
      std::vector<cv::Rect> found;
      faces_.detectMultiScale(grey, found, 1.2, 4, 0, cv::Size(40, 40));
      for (const auto& r : found) rois.push_back(expand(r, frame.size()));
    }
    const size_t plane = size_t(3) * h_ * w_;
    std::vector<float> x(plane);
    for (const auto& r : rois) {
      privsdk::ImageView view{frame.data, frame.rows, frame.cols, int64_t(frame.step[0]), 3, 1};
      privsdk::Maps maps{maps_["scale"].data(), maps_["shift"].data(), maps_["sigma"].data(), h_, w_};
      std::vector<cv::Mat> noise_mats;
      std::vector<privsdk::Tensor> noise_tensors;
      for (const auto& n : noise_) {
        std::vector<int> shape{1, n.shape[0], n.shape[1], n.shape[2]};
        noise_mats.emplace_back(4, shape.data(), CV_32F);
        noise_tensors.push_back({noise_mats.back().ptr<float>(), privsdk::DType::Float32, noise_mats.back().total()});
      }
      privsdk::Roi src_roi{r.x, r.y, r.width, r.height};
      if (leveller_) {  // cut out level; the filtered face is pasted back level by post
        if (!leveller_->crop(frame, r, level_crop_)) ++unlevelled_;
        view = {level_crop_.data, level_crop_.rows, level_crop_.cols, int64_t(level_crop_.step[0]), 3, 1};
        src_roi = {0, 0, w_, h_};
      }
      privsdk::pre(view, src_roi, maps, {x.data(), privsdk::DType::Float32, plane}, noise_tensors, rng_.get(),
                   swap_rb_);
      float* y = x.data();
      cv::Mat out;  // the network's output (OpenCV DNN's buffer, ours until the next forward())
      if (kind_ == "unet") {
        std::vector<int> shape{1, 3, h_, w_};
        cv::Mat blob(4, shape.data(), CV_32F, x.data());
        net_.setInput(blob, image_input_);
        for (size_t k = 0; k < noise_.size(); ++k) net_.setInput(noise_mats[k], noise_[k].name);
        out = net_.forward(output_);
        if (out.total() != plane) throw std::runtime_error("the network returned an output of the wrong size");
        y = out.ptr<float>();
      }
      if (eraser_) eraser_->apply(y);
      privsdk::MutableImageView dst{frame.data, frame.rows, frame.cols, int64_t(frame.step[0]), 3, 1};
      const float* ps = maps_.count("post_scale") ? maps_["post_scale"].data() : nullptr;
      const float* pt = maps_.count("post_shift") ? maps_["post_shift"].data() : nullptr;
      privsdk::post({y, privsdk::DType::Float32, h_, w_}, dst, {r.x, r.y, r.width, r.height}, ps, pt, swap_rb_);
    }
    return int(rois.size());
  }

 private:
  // Place the crop in the Haar box as the bundle says (default: margin 0.25, chin 0.15, as the
  // Python runtime), make it the model's aspect, clip it.
  cv::Rect expand(const cv::Rect& r, cv::Size size) const {
    double x0 = r.x + crop_[0] * r.width, x1 = r.x + crop_[2] * r.width;
    double y0 = r.y + crop_[1] * r.height, y1 = r.y + crop_[3] * r.height;
    double cx = (x0 + x1) / 2, cy = (y0 + y1) / 2, bw = x1 - x0, bh = y1 - y0, aspect = double(w_) / h_;
    if (bw / bh < aspect) bw = bh * aspect; else bh = bw / aspect;
    cv::Rect box(int(cx - bw / 2 + 0.5), int(cy - bh / 2 + 0.5), int(bw + 0.5), int(bh + 0.5));
    return box & cv::Rect(0, 0, size.width, size.height);
  }

  bool full_;
  double crop_[4] = {-0.25, -0.25, 1.25, 1.40};  // left, top, right, bottom in Haar-box units
  std::unique_ptr<privsdk::NoiseSource> rng_;
  int h_ = 0, w_ = 0;
  bool swap_rb_ = true;
  std::string kind_, image_input_, output_;
  std::vector<NoiseInput> noise_;
  std::map<std::string, std::vector<float>> maps_;
  cv::dnn::Net net_;
  cv::CascadeClassifier faces_;
  std::unique_ptr<Leveller> leveller_;
  std::unique_ptr<Eraser> eraser_;
  cv::Mat level_crop_;

 public:
  int unlevelled_ = 0;  // faces a levelling bundle could not register, filtered as they sat
};

bool is_image(const std::string& path) {
  std::string ext = path.substr(path.find_last_of('.') + 1);
  std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
  return ext == "png" || ext == "jpg" || ext == "jpeg" || ext == "bmp";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4 || std::string(argv[1]) == "--help") {
    std::cerr << "usage: " << argv[0] << " BUNDLE_DIR INPUT OUTPUT [--full] [--cascade FILE] [--seed N]\n"
              << "Sanitize an image or video with a privsdk filter bundle (fused C++ kernel + OpenCV DNN).\n";
    return argc < 4 ? 2 : 0;
  }
  std::string bundle = argv[1], input = argv[2], output = argv[3];
  bool full = false;
  std::string cascade = PRIVSDK_DEFAULT_CASCADE;
  uint64_t seed = 0;
  bool seeded = false;
  for (int i = 4; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--full") full = true;
    else if (a == "--cascade" && i + 1 < argc) cascade = argv[++i];
    else if (a == "--seed" && i + 1 < argc) { seed = std::stoull(argv[++i]); seeded = true; }
    else { std::cerr << "unknown argument " << a << "\n"; return 2; }
  }
  try {
    Sanitizer sanitizer(bundle, full, cascade, seeded ? &seed : nullptr);
    if (is_image(input)) {
      cv::Mat frame = cv::imread(input, cv::IMREAD_COLOR);
      if (frame.empty()) throw std::runtime_error("cannot read the image " + input);
      int n = sanitizer.apply(frame);
      if (!cv::imwrite(output, frame)) throw std::runtime_error("cannot write " + output);
      std::cout << "1 frame, " << n << " regions filtered -> " << output << "\n";
      return 0;
    }
    cv::VideoCapture cap(input);
    if (!cap.isOpened()) throw std::runtime_error("cannot open the video " + input);
    double fps = cap.get(cv::CAP_PROP_FPS);
    cv::VideoWriter writer;
    cv::Mat frame;
    int frames = 0, regions = 0, blanked = 0;
    while (cap.read(frame)) {
      try {
        regions += sanitizer.apply(frame);
      } catch (const std::exception& e) {  // fail closed: never write raw pixels
        frame.setTo(cv::Scalar::all(0));
        ++blanked;
        std::cerr << "frame " << frames << " blanked: " << e.what() << "\n";
      }
      if (!writer.isOpened()) {
        writer.open(output, cv::VideoWriter::fourcc('m', 'p', '4', 'v'), fps > 0 ? fps : 30.0, frame.size());
        if (!writer.isOpened()) throw std::runtime_error("cannot write " + output);
      }
      writer.write(frame);
      ++frames;
    }
    std::cout << frames << " frames, " << regions << " regions filtered, " << blanked << " blanked -> " << output
              << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
