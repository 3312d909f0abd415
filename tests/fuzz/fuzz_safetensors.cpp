// Fuzz target: SafetensorsFile::open must refuse a malformed file with mmx::Error, and every
// tensor of an accepted file must lie inside the mapping (read in full here, so ASan sees it).
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/error.h"
#include "model/tensor_store.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // An anonymous in-memory file keeps the disk out of the loop.
  int fd = memfd_create("fuzz.safetensors", 0);
  if (fd < 0) std::abort();
  if (size && write(fd, data, size) != ssize_t(size)) std::abort();
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  try {
    auto file = mmx::SafetensorsFile::open(path, "fuzz.safetensors");
    uint64_t sum = 0;
    for (const auto& kv : file->tensors()) {
      if (kv.second.nbytes > size) std::abort();
      for (uint64_t i = 0; i < kv.second.nbytes; ++i) sum += kv.second.data[i];
    }
    volatile uint64_t sink = sum;
    (void)sink;
  } catch (const mmx::Error&) {
  }
  close(fd);
  return 0;
}
