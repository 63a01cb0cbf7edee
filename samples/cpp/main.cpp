// privsdk C++ sample: sanitize an image or a video with a filter bundle, without Python.
//
// It links the fused-kernel core of privsdk (cpp_ext/: crop + resize + BGR->RGB +
// per-location normalization + fresh noise in one pass, and the inverse) and runs
// the bundle's filter.onnx through OpenCV DNN. Faces come from OpenCV's Haar cascade
// (or the whole frame with --full). Bundle hashes are not verified here: verify
// bundles with the Python runtime (privsdk.bundle.load_bundle) before deploying them.
//
//   privsdk_sample BUNDLE_DIR INPUT OUTPUT [--full] [--cascade FILE] [--seed N]
//
// INPUT/OUTPUT: an image (.png, .jpg) or a video (.mp4, .avi). Example:
//   ./privsdk_sample ../sdk/privsdk/filters/emotion face.jpg face_filtered.png
#include <privsdk/fused.hpp>

#include <opencv2/core.hpp>
#include <opencv2/dnn.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/objdetect.hpp>
#include <opencv2/videoio.hpp>

#include <algorithm>
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

// OpenCV's JSON reader does not accept `null`: turn bare nulls (outside strings) into "".
std::string nulls_to_empty_strings(const std::string& json) {
  std::string out;
  out.reserve(json.size());
  bool in_string = false;
  for (size_t i = 0; i < json.size(); ++i) {
    char c = json[i];
    if (in_string) {
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

// norm.npz is written by numpy.savez: a zip of uncompressed (stored) .npy files.
std::map<std::string, std::vector<float>> read_npz(const std::string& path, size_t expected_size) {
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
    if (bytes != expected_size * sizeof(float))
      throw std::runtime_error(path + ": " + name + " has " + std::to_string(bytes / 4) + " values; expected " +
                               std::to_string(expected_size));
    std::vector<float> v(expected_size);
    std::memcpy(v.data(), npy.data() + hstart + hlen, bytes);
    maps[name.substr(0, name.size() - 4)] = std::move(v);
    pos = data + size;
  }
  for (const char* key : {"scale", "shift", "sigma"})
    if (!maps.count(key)) throw std::runtime_error(path + " lacks the map '" + std::string(key) + "'");
  return maps;
}

struct NoiseInput {
  std::string name;
  std::vector<int> shape;  // C, h, w
};

class Sanitizer {
 public:
  Sanitizer(const std::string& bundle, bool full, const std::string& cascade, const uint64_t* seed)
      : full_(full), rng_(seed ? std::make_unique<privsdk::NoiseSource>(*seed) : std::make_unique<privsdk::NoiseSource>()) {
    std::string manifest = nulls_to_empty_strings(read_file(bundle + "/filter.json"));
    cv::FileStorage fs(manifest, cv::FileStorage::READ | cv::FileStorage::MEMORY | cv::FileStorage::FORMAT_JSON);
    if ((std::string)fs["format"] != "privsdk-filter/1")
      throw std::runtime_error(bundle + ": filter.json format is not privsdk-filter/1");
    h_ = (int)fs["input"]["height"];
    w_ = (int)fs["input"]["width"];
    kind_ = (std::string)fs["kind"];
    swap_rb_ = fs["input"]["colour_order"].empty() || (std::string)fs["input"]["colour_order"] == "RGB";
    // Fail closed on what this sample does not implement: a levelling bundle was evaluated on faces cut out
    // level (privsdk.regions.level); running its maps on unlevelled faces would ship an unmeasured filter.
    if (!fs["input"]["level_head"].empty())
      throw std::runtime_error(bundle + ": input.level_head (head levelling) is not implemented in this sample; "
                               "run this bundle with the Python runtime (privsdk.Filter)");
    // Likewise an erasing bundle: without its eraser (erase.npz, privsdk.erase) the secret's linear trace stays.
    if (fs["erase"].isMap())
      throw std::runtime_error(bundle + ": erase (the linear eraser of the secret) is not implemented in this "
                               "sample; run this bundle with the Python runtime (privsdk.Filter)");
    // Frame faces as the training faces were (input.face_crop, measured with this same Haar cascade).
    cv::FileNode crop = fs["input"]["face_crop"];
    if (!crop.empty() && (std::string)crop["detector"] == "haar" && crop["box"].size() == 4) {
      for (int i = 0; i < 4; ++i) crop_[i] = (double)crop["box"][i];
      if (!(crop_[0] < crop_[2] && crop_[1] < crop_[3]))
        throw std::runtime_error(bundle + ": input.face_crop.box must be [left, top, right, bottom] with left < right");
    }
    maps_ = read_npz(bundle + "/norm.npz", size_t(3) * h_ * w_);
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
              << (full_ ? "full" : "faces") << "\n";
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
      privsdk::pre(view, {r.x, r.y, r.width, r.height}, maps, {x.data(), privsdk::DType::Float32, plane},
                   noise_tensors, rng_.get(), swap_rb_);
      const float* y = x.data();
      cv::Mat out;
      if (kind_ == "unet") {
        std::vector<int> shape{1, 3, h_, w_};
        cv::Mat blob(4, shape.data(), CV_32F, x.data());
        net_.setInput(blob, image_input_);
        for (size_t k = 0; k < noise_.size(); ++k) net_.setInput(noise_mats[k], noise_[k].name);
        out = net_.forward(output_);
        if (out.total() != plane) throw std::runtime_error("the network returned an output of the wrong size");
        y = out.ptr<float>();
      }
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
