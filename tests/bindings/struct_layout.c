/* Prints the layout of every struct in minimax.h as the C compiler sees it: one line per
 * struct ("mmx_model_info 240": its size) and one per field ("mmx_model_info.vocab_size 4 4":
 * offset and size). Each binding's layout test compiles this against the real header and
 * compares the output with its own mirror of the structs, so a field added to the header
 * but not to a binding, or a mistyped one, fails the test. */
#include <minimax.h>
#include <stddef.h>
#include <stdio.h>

#define S(T) printf("%s %zu\n", #T, sizeof(T));
#define F(T, f) printf("%s.%s %zu %zu\n", #T, #f, offsetof(T, f), sizeof(((T *)0)->f));

int main(void) {
  S(mmx_device_info)
  F(mmx_device_info, struct_size) F(mmx_device_info, index) F(mmx_device_info, compute_major)
  F(mmx_device_info, compute_minor) F(mmx_device_info, multiprocessors)
  F(mmx_device_info, total_memory_bytes) F(mmx_device_info, free_memory_bytes)
  F(mmx_device_info, name)

  S(mmx_model_info)
  F(mmx_model_info, struct_size) F(mmx_model_info, vocab_size) F(mmx_model_info, num_layers)
  F(mmx_model_info, num_softmax_layers) F(mmx_model_info, hidden_size)
  F(mmx_model_info, num_heads) F(mmx_model_info, num_kv_heads) F(mmx_model_info, head_dim)
  F(mmx_model_info, num_experts) F(mmx_model_info, experts_per_token)
  F(mmx_model_info, bos_token) F(mmx_model_info, eos_token) F(mmx_model_info, context_limit)
  F(mmx_model_info, parameter_count) F(mmx_model_info, weight_bytes)
  F(mmx_model_info, backend) F(mmx_model_info, fingerprint)

  S(mmx_memory_estimate)
  F(mmx_memory_estimate, struct_size) F(mmx_memory_estimate, weight_bytes)
  F(mmx_memory_estimate, state_bytes_per_sequence) F(mmx_memory_estimate, kv_bytes_per_token)
  F(mmx_memory_estimate, workspace_bytes) F(mmx_memory_estimate, total_bytes)

  S(mmx_context_stats)
  F(mmx_context_stats, struct_size) F(mmx_context_stats, running_sequences)
  F(mmx_context_stats, queued_requests) F(mmx_context_stats, _reserved)
  F(mmx_context_stats, submitted_requests) F(mmx_context_stats, finished_requests)
  F(mmx_context_stats, prompt_tokens) F(mmx_context_stats, generated_tokens)
  F(mmx_context_stats, steps) F(mmx_context_stats, state_bytes_in_use)
  F(mmx_context_stats, state_bytes_limit) F(mmx_context_stats, busy_seconds)
  return 0;
}
