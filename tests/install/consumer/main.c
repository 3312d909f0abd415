/* Links the installed libminimax through find_package(minimax) and checks the ABI it loads. */
#include <minimax.h>
#include <stdio.h>

int main(void) {
  mmx_model_options *options = NULL;
  mmx_status *st = mmx_model_options_create(&options);
  if (st) {
    fprintf(stderr, "consumer: %s\n", mmx_status_message(st));
    mmx_status_free(st);
    return 1;
  }
  mmx_model_options_free(options);
  if (mmx_abi_version() != MMX_ABI_VERSION) {
    fprintf(stderr, "consumer: header ABI %d, library ABI %u\n", MMX_ABI_VERSION,
            (unsigned)mmx_abi_version());
    return 1;
  }
  printf("consumer: libminimax %s, ABI %u\n", mmx_version_string(), (unsigned)mmx_abi_version());
  return 0;
}
