// Fuzz target: TensorStore::open_dir over a fuzzed model.safetensors.index.json beside two
// small valid shards. It must refuse bad input with mmx::Error and never open a file outside
// the directory (checked by the NotFound/Format codes and by ASan).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/error.h"
#include "model/random_model.h"
#include "model/tensor_store.h"

namespace {

std::string make_dir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "mmx_fuzz_index_XXXXXX").string();
  if (!mkdtemp(&tmpl[0])) std::abort();
  mmx::Model::OwnedTensor t{mmx::DType::F32, {2}, std::vector<uint8_t>(8, 1)};
  mmx::write_safetensors(tmpl + "/a.safetensors", {{"a", t}});
  mmx::write_safetensors(tmpl + "/b.safetensors", {{"b", t}, {"c", t}});
  return tmpl;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = make_dir();
  {
    std::ofstream f(dir + "/model.safetensors.index.json", std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(data), std::streamsize(size));
  }
  try {
    auto store = mmx::TensorStore::open_dir(dir);
    for (const std::string& name : store->names()) {
      const mmx::TensorInfo& t = store->get(name);
      if (t.file != "a.safetensors" && t.file != "b.safetensors") std::abort();
    }
  } catch (const mmx::Error&) {
  }
  return 0;
}
