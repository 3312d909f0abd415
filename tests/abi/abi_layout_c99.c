/* Compiled as strict C99 (-std=c99 -pedantic -Werror): the public header must be plain C99.
 * Checks the pinned struct layout as a C compiler sees it. */
#include "abi_layout.h"

int main(void) {
  int mismatches = mmx_check_abi_layout();
  if (mismatches == 0) printf("public struct layout as pinned (C99)\n");
  return mismatches == 0 ? 0 : 1;
}
