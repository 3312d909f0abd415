/* The pinned layout of the public structs (LP64: Linux x86-64 / aarch64). A change here is an
 * ABI break: bump MMX_ABI_VERSION (and the SONAME) instead of editing the numbers.
 * Shared by the C99 and the C++ layout checks; returns the number of mismatches. */
#ifndef MMX_TEST_ABI_LAYOUT_H
#define MMX_TEST_ABI_LAYOUT_H

#include <stddef.h>
#include <stdio.h>

#include "minimax.h"

#define MMX_PIN(expr, expected)                                                         \
  do {                                                                                  \
    if ((size_t)(expr) != (size_t)(expected)) {                                         \
      fprintf(stderr, "ABI layout changed: %s is %lu, pinned %lu\n", #expr,             \
              (unsigned long)(expr), (unsigned long)(expected));                        \
      ++mismatches;                                                                     \
    }                                                                                   \
  } while (0)

static int mmx_check_abi_layout(void) {
  int mismatches = 0;
  MMX_PIN(sizeof(mmx_code), 4);
  MMX_PIN(sizeof(mmx_request_id), 8);

  MMX_PIN(sizeof(mmx_device_info), 168);
  MMX_PIN(offsetof(mmx_device_info, struct_size), 0);
  MMX_PIN(offsetof(mmx_device_info, index), 4);
  MMX_PIN(offsetof(mmx_device_info, compute_major), 8);
  MMX_PIN(offsetof(mmx_device_info, compute_minor), 12);
  MMX_PIN(offsetof(mmx_device_info, multiprocessors), 16);
  MMX_PIN(offsetof(mmx_device_info, total_memory_bytes), 24);
  MMX_PIN(offsetof(mmx_device_info, free_memory_bytes), 32);
  MMX_PIN(offsetof(mmx_device_info, name), 40);

  MMX_PIN(sizeof(mmx_model_info), 160);
  MMX_PIN(offsetof(mmx_model_info, vocab_size), 4);
  MMX_PIN(offsetof(mmx_model_info, num_layers), 8);
  MMX_PIN(offsetof(mmx_model_info, num_softmax_layers), 12);
  MMX_PIN(offsetof(mmx_model_info, hidden_size), 16);
  MMX_PIN(offsetof(mmx_model_info, num_heads), 20);
  MMX_PIN(offsetof(mmx_model_info, num_kv_heads), 24);
  MMX_PIN(offsetof(mmx_model_info, head_dim), 28);
  MMX_PIN(offsetof(mmx_model_info, num_experts), 32);
  MMX_PIN(offsetof(mmx_model_info, experts_per_token), 36);
  MMX_PIN(offsetof(mmx_model_info, bos_token), 40);
  MMX_PIN(offsetof(mmx_model_info, eos_token), 44);
  MMX_PIN(offsetof(mmx_model_info, context_limit), 48);
  MMX_PIN(offsetof(mmx_model_info, parameter_count), 56);
  MMX_PIN(offsetof(mmx_model_info, weight_bytes), 64);
  MMX_PIN(offsetof(mmx_model_info, backend), 72);
  MMX_PIN(offsetof(mmx_model_info, fingerprint), 88);

  MMX_PIN(sizeof(mmx_memory_estimate), 48);
  MMX_PIN(offsetof(mmx_memory_estimate, weight_bytes), 8);
  MMX_PIN(offsetof(mmx_memory_estimate, state_bytes_per_sequence), 16);
  MMX_PIN(offsetof(mmx_memory_estimate, kv_bytes_per_token), 24);
  MMX_PIN(offsetof(mmx_memory_estimate, workspace_bytes), 32);
  MMX_PIN(offsetof(mmx_memory_estimate, total_bytes), 40);

  MMX_PIN(sizeof(mmx_context_stats), 80);
  MMX_PIN(offsetof(mmx_context_stats, running_sequences), 4);
  MMX_PIN(offsetof(mmx_context_stats, queued_requests), 8);
  MMX_PIN(offsetof(mmx_context_stats, submitted_requests), 16);
  MMX_PIN(offsetof(mmx_context_stats, finished_requests), 24);
  MMX_PIN(offsetof(mmx_context_stats, prompt_tokens), 32);
  MMX_PIN(offsetof(mmx_context_stats, generated_tokens), 40);
  MMX_PIN(offsetof(mmx_context_stats, steps), 48);
  MMX_PIN(offsetof(mmx_context_stats, state_bytes_in_use), 56);
  MMX_PIN(offsetof(mmx_context_stats, state_bytes_limit), 64);
  MMX_PIN(offsetof(mmx_context_stats, busy_seconds), 72);

  /* Enumerator values are ABI too. */
  MMX_PIN(MMX_BUFFER_TOO_SMALL, 13);
  MMX_PIN(MMX_LOG_OFF, 4);
  MMX_PIN(MMX_MODEL_OPT_MEMORY_LIMIT, 5);
  MMX_PIN(MMX_CTX_OPT_MAX_QUEUED, 6);
  MMX_PIN(MMX_REQ_PARSE_SPECIAL, 9);
  MMX_PIN(MMX_REQ_TEMPERATURE, 20);
  MMX_PIN(MMX_REQ_PRESENCE_PENALTY, 25);
  MMX_PIN(MMX_EVENT_FINISHED, 5);
  MMX_PIN(MMX_FINISH_PREFIX_READY, 7);
  MMX_PIN(MMX_TOKENIZE_PARSE_SPECIAL, 2);
  MMX_PIN(MMX_LAYER_SOFTMAX, 1);
  return mismatches;
}

#endif /* MMX_TEST_ABI_LAYOUT_H */
