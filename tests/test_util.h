// Small helpers shared by the tests: fixture paths, temporary directories, file I/O.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace mmx_test {

std::string data_path(const std::string& rel);    // tests/data/<rel>
std::string source_path(const std::string& rel);  // <repo>/<rel>
std::string shared_path(const std::string& rel);  // ../shared/<rel> beside the repo
bool file_exists(const std::string& path);
std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& bytes);

// A fresh directory under the system temp dir, removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// max_i |a_i - b_i| / max(max_i |b_i|, tiny): the relative error used by the golden tests.
double max_rel_error(const float* a, const float* b, size_t n);

// Logits rows of `vocab` values: the largest per-row error relative to that row's max |want|
// (infinite for sizes that differ, no rows, or a non-finite value in `got`).
double max_position_rel_error(const std::vector<float>& got, const std::vector<float>& want, int64_t vocab);

}  // namespace mmx_test
