#include "test_util.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace fs = std::filesystem;

namespace mmx_test {

std::string data_path(const std::string& rel) { return std::string(MMX_TEST_DATA_DIR) + "/" + rel; }
std::string source_path(const std::string& rel) { return std::string(MMX_SOURCE_DIR) + "/" + rel; }
std::string shared_path(const std::string& rel) { return std::string(MMX_SHARED_DIR) + "/" + rel; }

bool file_exists(const std::string& path) { return fs::exists(path); }

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) throw std::runtime_error("cannot write " + path);
  f.write(bytes.data(), std::streamsize(bytes.size()));
}

TempDir::TempDir() {
  std::string tmpl = (fs::temp_directory_path() / "mmx_test_XXXXXX").string();
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed");
  path_ = buf.data();
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

double max_rel_error(const float* a, const float* b, size_t n) {
  double maxdiff = 0, maxref = 1e-30;
  for (size_t i = 0; i < n; ++i) {
    double d = std::fabs(double(a[i]) - double(b[i]));
    if (std::isnan(a[i]) || std::isnan(b[i])) return INFINITY;
    if (d > maxdiff) maxdiff = d;
    if (std::fabs(double(b[i])) > maxref) maxref = std::fabs(double(b[i]));
  }
  return maxdiff / maxref;
}

double max_position_rel_error(const std::vector<float>& got, const std::vector<float>& want, int64_t vocab) {
  if (got.size() != want.size() || got.empty() || vocab <= 0) return INFINITY;
  const size_t V = static_cast<size_t>(vocab);
  double worst = 0;
  for (size_t p = 0; p * V < want.size(); ++p) {
    double diff = 0, ref = 1e-30;
    for (size_t v = p * V; v < (p + 1) * V && v < want.size(); ++v) {
      if (!std::isfinite(got[v])) return INFINITY;
      diff = std::max(diff, double(std::fabs(got[v] - want[v])));
      ref = std::max(ref, double(std::fabs(want[v])));
    }
    worst = std::max(worst, diff / ref);
  }
  return worst;
}

}  // namespace mmx_test
