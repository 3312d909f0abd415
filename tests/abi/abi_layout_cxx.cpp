// The public header compiled as C++ (-pedantic -Werror), seeing the same layout as C.
#include "abi_layout.h"

int main() {
  static_assert(sizeof(mmx_model_info) % 8 == 0, "mmx_model_info keeps 8-byte alignment");
  int mismatches = mmx_check_abi_layout();
  if (mismatches == 0) printf("public struct layout as pinned (C++)\n");
  return mismatches == 0 ? 0 : 1;
}
