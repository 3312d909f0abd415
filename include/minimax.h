/*
 * minimax.h — the C ABI of libminimax, an embeddable inference library for the MiniMax-01
 * model family (MiniMax-Text-01, MiniMax-M1 and smaller models of the same architecture).
 *
 * The four verbs:
 *   1. create a context       mmx_context_create()    (one running engine serving one model)
 *   2. load a model           mmx_model_load()
 *   3. submit a batch          mmx_context_submit_batch() / mmx_context_submit()
 *   4. stream tokens           mmx_context_next_event() (pull) or a request callback (push)
 * plus cancel (mmx_context_cancel), score (prompt logprobs, logits rows) and prefixes
 * ("ingest a document once, ask many questions": mmx_prefix_*).
 *
 * Conventions (every function follows them):
 *   - Every symbol starts with mmx_. Handles are opaque; each create or load function has a
 *     matching free function, and freeing NULL is a no-op.
 *   - A fallible function returns mmx_status*: NULL means success; otherwise the caller owns the
 *     returned status and releases it with mmx_status_free(). Read it with mmx_status_code() and
 *     mmx_status_message(). No C++ exception, abort() or exit() ever crosses this boundary.
 *   - No struct is passed by value. Options are opaque objects with typed setters keyed by enums;
 *     an unknown key returns MMX_UNSUPPORTED, so hosts can probe features. Output structs start
 *     with uint32_t struct_size, which the caller sets to sizeof(the struct) before the call;
 *     the library fills only the fields that fit, so old hosts keep working with new libraries.
 *   - Sizes are size_t, counts and ids are fixed-width integers; there is no C bool in structs.
 *   - Caller buffers: functions that produce variable-length output take (buffer, capacity,
 *     size_t *needed). They always store the needed size (elements, or bytes including the
 *     terminating NUL for text) in *needed; if capacity is too small they return
 *     MMX_BUFFER_TOO_SMALL and write nothing else. Passing buffer NULL, capacity 0 is the way
 *     to ask for the size (the call then returns MMX_BUFFER_TOO_SMALL with *needed set,
 *     unless nothing is needed).
 *   - Strings are UTF-8. Borrowed pointers say in their documentation how long they stay valid.
 *
 * Threading: a model may be shared by any number of contexts and threads. A context owns one
 * internal scheduler thread that runs the devices; mmx_context_submit*, mmx_context_cancel,
 * mmx_context_next_event, mmx_context_stats and the mmx_event_* accessors may be called from any
 * thread concurrently. Option objects are not thread-safe: use one from one thread at a time.
 * Callbacks run on the context's scheduler thread, must return quickly, must not call
 * mmx_context_free on their own context, and never fire after the request's final event.
 */
#ifndef MINIMAX_H
#define MINIMAX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define MMX_API __declspec(dllimport)
#elif defined(__GNUC__)
#define MMX_API __attribute__((visibility("default")))
#else
#define MMX_API
#endif

/* ==== version ============================================================================ */

/* Incremented on every incompatible ABI change; equals the SONAME major version
 * (libminimax.so.1). */
#define MMX_ABI_VERSION 1

/* The ABI version the loaded library implements. A host compares it with MMX_ABI_VERSION. */
MMX_API uint32_t mmx_abi_version(void);
/* "major.minor.patch" plus build details (backends compiled in). Static storage. */
MMX_API const char *mmx_version_string(void);

/* ==== status ============================================================================= */

typedef enum mmx_code {
  MMX_OK = 0,
  MMX_INVALID_ARGUMENT = 1, /* NULL handle, out-of-range value, invalid UTF-8, bad token id */
  MMX_UNSUPPORTED = 2,      /* unknown option key, backend not compiled in, unsupported model */
  MMX_NOT_FOUND = 3,        /* file, tensor, token or request id that does not exist */
  MMX_IO = 4,               /* the OS failed to read, write or map a file */
  MMX_FORMAT = 5,           /* malformed file content (config, safetensors, tokenizer, JSON) */
  MMX_CAPACITY = 6,         /* admission control: the request does not fit the configured budget */
  MMX_OUT_OF_MEMORY = 7,    /* a host or device allocation failed */
  MMX_CANCELLED = 8,        /* cancelled (load aborted by its progress callback, request cancel) */
  MMX_TIMEOUT = 9,          /* a wait ran out of time (mmx_context_next_event) */
  MMX_DEVICE = 10,          /* accelerator failure; the context is unusable afterwards */
  MMX_STATE = 11,           /* wrong call order, or an object in the wrong state */
  MMX_INTERNAL = 12,        /* a bug in libminimax; please report it */
  MMX_BUFFER_TOO_SMALL = 13, /* caller buffer too small; *needed holds the size required */
  MMX_CODE_MAX_ENUM = 0x7FFFFFFF /* not a code: makes the enum 32-bit */
} mmx_code;

typedef struct mmx_status mmx_status;

/* Code of a status; MMX_OK for NULL. */
MMX_API mmx_code mmx_status_code(const mmx_status *status);
/* Message of a status ("" for NULL). Valid until mmx_status_free(status). */
MMX_API const char *mmx_status_message(const mmx_status *status);
MMX_API void mmx_status_free(mmx_status *status);
/* Short English name of a code ("invalid argument", ...). Static storage. */
MMX_API const char *mmx_code_name(mmx_code code);

/* ==== logging ============================================================================ */

typedef enum mmx_log_level {
  MMX_LOG_DEBUG = 0,
  MMX_LOG_INFO = 1,
  MMX_LOG_WARN = 2,
  MMX_LOG_ERROR = 3,
  MMX_LOG_OFF = 4,
  MMX_LOG_LEVEL_MAX_ENUM = 0x7FFFFFFF /* not a level: makes the enum 32-bit */
} mmx_log_level;

/* `message` is valid only during the call. May be called from any library thread,
 * concurrently; the callback must be thread-safe. */
typedef void (*mmx_log_fn)(mmx_log_level level, const char *message, void *user_data);

/* Installs a process-wide log sink (NULL restores the default: stderr, level WARN or the
 * MMX_LOG_LEVEL environment variable). Messages below min_level are dropped. Thread-safe. */
MMX_API mmx_status *mmx_set_log_callback(mmx_log_fn fn, void *user_data, mmx_log_level min_level);

/* ==== devices ============================================================================ */

typedef struct mmx_device_info {
  uint32_t struct_size;       /* set by the caller: sizeof(mmx_device_info) */
  int32_t index;              /* CUDA ordinal */
  int32_t compute_major;      /* compute capability, e.g. 9 */
  int32_t compute_minor;      /* e.g. 0 */
  int32_t multiprocessors;
  uint64_t total_memory_bytes;
  uint64_t free_memory_bytes;
  char name[128];             /* NUL-terminated */
} mmx_device_info;

/* Number of CUDA devices this build can use (0 in a CPU-only build or without a GPU). */
MMX_API mmx_status *mmx_device_count(int32_t *out_count);
MMX_API mmx_status *mmx_device_info_get(int32_t index, mmx_device_info *out_info);

/* ==== model ============================================================================== */

typedef struct mmx_model mmx_model;
typedef struct mmx_model_options mmx_model_options;

typedef enum mmx_model_option {
  MMX_MODEL_OPT_BACKEND = 1,        /* string: "auto" (default: cuda if a GPU, else cpu), "cpu", "cuda" */
  MMX_MODEL_OPT_DEVICES = 2,        /* string: comma-separated CUDA ordinals, e.g. "0" or "0,1,2,3" */
  MMX_MODEL_OPT_WEIGHT_DTYPE = 3,   /* string: "auto" (default), "int8" (W8A16), "bf16"; CPU: fp32 */
  MMX_MODEL_OPT_THREADS = 4,        /* int: CPU threads, 0 = all cores (default) */
  MMX_MODEL_OPT_MEMORY_LIMIT = 5,   /* int: bytes of device memory the model may use, 0 = all */
  MMX_MODEL_OPT_MAX_ENUM = 0x7FFFFFFF /* not a key: makes the enum 32-bit */
} mmx_model_option;

MMX_API mmx_status *mmx_model_options_create(mmx_model_options **out_options);
MMX_API void mmx_model_options_free(mmx_model_options *options);
MMX_API mmx_status *mmx_model_options_set_int(mmx_model_options *options, mmx_model_option key,
                                              int64_t value);
MMX_API mmx_status *mmx_model_options_set_string(mmx_model_options *options,
                                                 mmx_model_option key, const char *value);

/* Load progress: fraction in [0, 1] and a stage name (valid during the call). Return 0 to go
 * on, nonzero to abort the load (mmx_model_load then returns MMX_CANCELLED). Runs on the
 * thread that called mmx_model_load. */
typedef int32_t (*mmx_progress_fn)(double fraction, const char *stage, void *user_data);

/* Loads a model directory: config.json (official MiniMax or transformers spelling), safetensors
 * weights (single file, or shards with model.safetensors.index.json; bf16/fp16/fp32, or int8
 * written by minimax-quantize), and tokenizer files (tokenizer.json, vocab.json + merges.txt,
 * or tokenizer.model). `options` and `progress` may be NULL. On success *out_model owns the
 * model; free it with mmx_model_free (contexts created from it keep it alive until they are
 * freed too). */
MMX_API mmx_status *mmx_model_load(const char *path, const mmx_model_options *options,
                                   mmx_progress_fn progress, void *user_data,
                                   mmx_model **out_model);
MMX_API void mmx_model_free(mmx_model *model);

typedef enum mmx_layer_kind { MMX_LAYER_LIGHTNING = 0, MMX_LAYER_SOFTMAX = 1 } mmx_layer_kind;

typedef struct mmx_model_info {
  uint32_t struct_size;     /* set by the caller: sizeof(mmx_model_info) */
  int32_t vocab_size;
  int32_t num_layers;
  int32_t num_softmax_layers;
  int32_t hidden_size;
  int32_t num_heads;
  int32_t num_kv_heads;
  int32_t head_dim;
  int32_t num_experts;
  int32_t experts_per_token;
  int32_t bos_token;        /* -1 when the model has none */
  int32_t eos_token;        /* -1 when the model has none */
  int64_t context_limit;    /* max tokens per sequence */
  uint64_t parameter_count;
  uint64_t weight_bytes;    /* as held by the backend */
  char backend[16];         /* "cpu" or "cuda", NUL-terminated */
  char fingerprint[68];     /* hex digest identifying the weights, NUL-terminated */
} mmx_model_info;

MMX_API mmx_status *mmx_model_get_info(const mmx_model *model, mmx_model_info *out_info);
/* Kind of layer `layer` (0-based). */
MMX_API mmx_status *mmx_model_layer_kind(const mmx_model *model, int32_t layer,
                                         mmx_layer_kind *out_kind);
/* Id of a token given its exact text, e.g. "<end_of_sentence>". MMX_NOT_FOUND if none. */
MMX_API mmx_status *mmx_model_token_id(const mmx_model *model, const char *token_text,
                                       int32_t *out_id);

/* ==== text =============================================================================== */

typedef enum mmx_tokenize_flags {
  MMX_TOKENIZE_DEFAULT = 0,
  MMX_TOKENIZE_ADD_BOS = 1,       /* prepend the model's BOS token, if it has one */
  MMX_TOKENIZE_PARSE_SPECIAL = 2  /* special tokens written in the text become their ids */
} mmx_tokenize_flags;

/* Text (len bytes of UTF-8; need not be NUL-terminated) -> token ids into tokens[capacity].
 * *n_needed receives the token count. Invalid UTF-8 is MMX_INVALID_ARGUMENT. */
MMX_API mmx_status *mmx_tokenize(const mmx_model *model, const char *text, size_t len,
                                 uint32_t flags, int32_t *tokens, size_t capacity,
                                 size_t *n_needed);
/* Token ids -> UTF-8 text into buf[capacity] (NUL-terminated); *n_needed receives the byte
 * count including the NUL. An id out of range is MMX_INVALID_ARGUMENT. */
MMX_API mmx_status *mmx_detokenize(const mmx_model *model, const int32_t *tokens, size_t n_tokens,
                                   char *buf, size_t capacity, size_t *n_needed);
/* Renders a conversation in the model's chat format (MiniMax-Text-01 or M1).
 * messages_json: [{"role": "system"|"user"|"assistant", "content": "..." or
 * [{"type": "text", "text": "..."}]}, ...]. Output as mmx_detokenize. */
MMX_API mmx_status *mmx_apply_chat_format(const mmx_model *model, const char *messages_json,
                                          int32_t add_generation_prompt, char *buf,
                                          size_t capacity, size_t *n_needed);

/* ==== context ============================================================================ */

typedef struct mmx_context mmx_context;
typedef struct mmx_context_options mmx_context_options;

typedef enum mmx_context_option {
  MMX_CTX_OPT_MAX_SEQUENCES = 1,     /* int: sequences running at once (default 16) */
  MMX_CTX_OPT_STEP_TOKEN_BUDGET = 2, /* int: tokens per scheduler step, decode + prefill (default 2048) */
  MMX_CTX_OPT_KV_MEMORY_BYTES = 3,   /* int: bytes for sequence states (KV + lightning) and live
                                        prefixes; 0 = default: room for MAX_SEQUENCES sequences
                                        of min(8192, context limit) tokens. Each running request
                                        reserves the state of prefix + prompt + max_tokens
                                        tokens; requests wait until their reservation fits */
  MMX_CTX_OPT_PREFILL_CHUNK = 4,     /* int: max prefill tokens of one sequence per step (default 512) */
  MMX_CTX_OPT_MAX_CONTEXT = 5,       /* int: max tokens per sequence, 0 = the model's limit */
  MMX_CTX_OPT_MAX_QUEUED = 6,        /* int: requests waiting to start, beyond which submit says
                                        MMX_CAPACITY (default 1024) */
  MMX_CTX_OPT_MAX_ENUM = 0x7FFFFFFF /* not a key: makes the enum 32-bit */
} mmx_context_option;

MMX_API mmx_status *mmx_context_options_create(mmx_context_options **out_options);
MMX_API void mmx_context_options_free(mmx_context_options *options);
MMX_API mmx_status *mmx_context_options_set_int(mmx_context_options *options,
                                                mmx_context_option key, int64_t value);

typedef struct mmx_memory_estimate {
  uint32_t struct_size;              /* set by the caller */
  uint64_t weight_bytes;             /* model weights as the backend holds them */
  uint64_t state_bytes_per_sequence; /* fixed part: lightning states of one sequence */
  uint64_t kv_bytes_per_token;       /* growing part: softmax KV of one token */
  uint64_t workspace_bytes;          /* activations and scratch for one step */
  uint64_t total_bytes;              /* weights + workspace + states at the configured budget */
} mmx_memory_estimate;

/* What a context with these options (NULL = defaults) would need, before allocating it. */
MMX_API mmx_status *mmx_model_estimate_memory(const mmx_model *model,
                                              const mmx_context_options *options,
                                              mmx_memory_estimate *out_estimate);

/* Creates a running engine for `model` (which it keeps alive). options may be NULL. */
MMX_API mmx_status *mmx_context_create(mmx_model *model, const mmx_context_options *options,
                                       mmx_context **out_context);
/* Cancels every request, delivers their final events, joins the scheduler thread and frees.
 * Events not yet read are discarded. Must not be called from a callback of this context (such
 * a call is logged and ignored) nor while another thread uses the context. */
MMX_API void mmx_context_free(mmx_context *context);

typedef struct mmx_context_stats {
  uint32_t struct_size;          /* set by the caller */
  uint32_t running_sequences;
  uint32_t queued_requests;
  uint32_t _reserved;
  uint64_t submitted_requests;
  uint64_t finished_requests;
  uint64_t prompt_tokens;        /* prefilled so far */
  uint64_t generated_tokens;
  uint64_t steps;
  uint64_t state_bytes_in_use;   /* sequence states + prefixes */
  uint64_t state_bytes_limit;
  double busy_seconds;           /* time the scheduler spent computing */
} mmx_context_stats;

MMX_API mmx_status *mmx_context_stats_get(mmx_context *context, mmx_context_stats *out_stats);

/* ==== requests =========================================================================== */

typedef struct mmx_request mmx_request;   /* a request description (an option object) */
typedef struct mmx_event mmx_event;       /* one event of a running request */
typedef struct mmx_prefix mmx_prefix;     /* a reusable processed prefix (reference-counted) */
typedef uint64_t mmx_request_id;          /* nonzero; unique within a context */

typedef enum mmx_request_option {
  /* int */
  MMX_REQ_MAX_TOKENS = 1,        /* tokens to generate (default 256); 0 = prefill/score only */
  MMX_REQ_SEED = 2,              /* sampling seed (default 0); same seed + same input = same tokens */
  MMX_REQ_TOP_K = 3,             /* 0 = off (default) */
  MMX_REQ_TOP_LOGPROBS = 4,      /* n most likely tokens reported with each generated token (0-20) */
  MMX_REQ_PROMPT_LOGPROBS = 5,   /* 1: report the logprob of every prompt token (scoring) */
  MMX_REQ_MAKE_PREFIX = 6,       /* 1: prefill only, then yield an mmx_prefix (see mmx_event_prefix) */
  MMX_REQ_IGNORE_EOS = 7,        /* 1: do not stop at the model's EOS token */
  MMX_REQ_ADD_BOS = 8,           /* 1: prepend BOS to the prompt (default 0) */
  MMX_REQ_PARSE_SPECIAL = 9,     /* 1 (default): special tokens in prompt text become their ids */
  /* double */
  MMX_REQ_TEMPERATURE = 20,      /* 0 = greedy (default) */
  MMX_REQ_TOP_P = 21,            /* 1.0 = off (default) */
  MMX_REQ_MIN_P = 22,            /* 0.0 = off (default) */
  MMX_REQ_REPETITION_PENALTY = 23, /* 1.0 = off (default); CTRL-style, over prompt + output */
  MMX_REQ_FREQUENCY_PENALTY = 24,  /* 0.0 = off (default); over generated tokens */
  MMX_REQ_PRESENCE_PENALTY = 25,   /* 0.0 = off (default); over generated tokens */
  MMX_REQ_MAX_ENUM = 0x7FFFFFFF    /* not a key: makes the enum 32-bit */
} mmx_request_option;

MMX_API mmx_status *mmx_request_create(mmx_request **out_request);
MMX_API void mmx_request_free(mmx_request *request);
MMX_API mmx_status *mmx_request_set_int(mmx_request *request, mmx_request_option key,
                                        int64_t value);
MMX_API mmx_status *mmx_request_set_double(mmx_request *request, mmx_request_option key,
                                           double value);
/* Appends text (len bytes of UTF-8) to the prompt; may be called repeatedly to feed a long
 * document in pieces. Text and tokens may be mixed; they are tokenized piece by piece. */
MMX_API mmx_status *mmx_request_append_text(mmx_request *request, const char *text, size_t len);
/* Appends token ids to the prompt (checked against the vocabulary at submit). */
MMX_API mmx_status *mmx_request_append_tokens(mmx_request *request, const int32_t *tokens,
                                              size_t n_tokens);
/* Starts the request from a prefix instead of an empty sequence: the prompt continues it.
 * The request holds its own reference; the caller keeps (and still frees) its own. NULL
 * removes a prefix set before. The prefix must come from a context of the same loaded model
 * (else submit says MMX_INVALID_ARGUMENT). */
MMX_API mmx_status *mmx_request_set_prefix(mmx_request *request, mmx_prefix *prefix);
/* Generation stops when the output text contains `stop` (the stop string is not emitted). */
MMX_API mmx_status *mmx_request_add_stop_string(mmx_request *request, const char *stop);
/* Generation stops when this token is sampled: its TOKEN event (with empty text) comes, then
 * the final event. The model's EOS token ends generation the same way unless
 * MMX_REQ_IGNORE_EOS. */
MMX_API mmx_status *mmx_request_add_stop_token(mmx_request *request, int32_t token);
/* Adds `bias` to the logit of `token` before sampling (-INFINITY bans it). */
MMX_API mmx_status *mmx_request_set_logit_bias(mmx_request *request, int32_t token, float bias);
/* Asks for the full fp32 logits row at prompt position `position` (0-based; -1 = the last
 * prompt token), delivered as an MMX_EVENT_LOGITS event. */
MMX_API mmx_status *mmx_request_add_logits_position(mmx_request *request, int64_t position);
/* Opaque value returned by mmx_event_user_data for this request's events. */
MMX_API mmx_status *mmx_request_set_user_data(mmx_request *request, void *user_data);

/* Push delivery: when set, the request's events go to `fn` instead of the pull queue. Runs on
 * the scheduler thread; `event` is borrowed for the duration of the call (do not free it).
 * Never called after the request's final (MMX_EVENT_FINISHED) event. fn NULL restores pull
 * delivery. mmx_context_next_event on a request that uses a callback says MMX_STATE. */
typedef void (*mmx_event_fn)(const mmx_event *event, void *user_data);
MMX_API mmx_status *mmx_request_set_callback(mmx_request *request, mmx_event_fn fn,
                                             void *user_data);

/* Submits one request; the request object is copied and may be freed or reused at once.
 * Fails with MMX_CAPACITY when the request cannot fit the context's budgets (prefix + prompt +
 * max_tokens beyond the context limit, a state reservation larger than the state budget, too
 * many queued requests), MMX_INVALID_ARGUMENT for an empty prompt or a token out of range,
 * MMX_UNSUPPORTED for text or stop strings with a model that has no tokenizer, and
 * MMX_DEVICE once a device error made the context unusable. */
MMX_API mmx_status *mmx_context_submit(mmx_context *context, const mmx_request *request,
                                       mmx_request_id *out_id);
/* Submits a batch: all or nothing (on failure no request of the batch was submitted, and the
 * status names the index of the first bad request). out_ids receives n_requests ids. */
MMX_API mmx_status *mmx_context_submit_batch(mmx_context *context,
                                             const mmx_request *const *requests,
                                             size_t n_requests, mmx_request_id *out_ids);
/* Cancels a request; effective between prefill chunks and decode steps. Its final event
 * (reason MMX_FINISH_CANCELLED, unless it finished first) follows. Unknown or finished ids
 * return MMX_NOT_FOUND. */
MMX_API mmx_status *mmx_context_cancel(mmx_context *context, mmx_request_id id);

/* ==== events ============================================================================= */

/* Per prompt chunk a request gets PROMPT_LOGPROBS (if asked), LOGITS (requested positions in
 * the chunk), then PROGRESS; then a TOKEN per generated token; FINISHED always comes last. */
typedef enum mmx_event_type {
  MMX_EVENT_PROGRESS = 1,        /* prefill progress: mmx_event_progress */
  MMX_EVENT_TOKEN = 2,           /* a generated token: mmx_event_token, mmx_event_text, logprobs */
  MMX_EVENT_PROMPT_LOGPROBS = 3, /* logprobs of a run of prompt tokens (scoring) */
  MMX_EVENT_LOGITS = 4,          /* a full fp32 logits row: mmx_event_logits */
  MMX_EVENT_FINISHED = 5         /* final event of the request: mmx_event_finish_reason */
} mmx_event_type;

typedef enum mmx_finish_reason {
  MMX_FINISH_NONE = 0,          /* not a finished event */
  MMX_FINISH_EOS = 1,           /* the model's end-of-sequence token */
  MMX_FINISH_STOP_STRING = 2,
  MMX_FINISH_STOP_TOKEN = 3,
  MMX_FINISH_LENGTH = 4,        /* max tokens reached (also: a score-only request, max_tokens 0) */
  MMX_FINISH_CANCELLED = 5,
  MMX_FINISH_ERROR = 6,         /* mmx_event_error tells what went wrong */
  MMX_FINISH_PREFIX_READY = 7   /* MMX_REQ_MAKE_PREFIX: the prefix is ready (mmx_event_prefix) */
} mmx_finish_reason;

/* Waits up to timeout_ms (0 = poll, -1 = forever) for the next event of request `id`
 * (0 = of any request of this context that uses pull delivery). On success the caller owns
 * *out_event (free with mmx_event_free). MMX_TIMEOUT when none arrived in time; MMX_NOT_FOUND
 * for an unknown id or one whose final event was already taken; MMX_STATE for a request that
 * delivers to a callback. Thread-safe; one event goes to exactly one caller. Do not free the
 * context while a thread waits here. */
MMX_API mmx_status *mmx_context_next_event(mmx_context *context, mmx_request_id id,
                                           int32_t timeout_ms, mmx_event **out_event);
MMX_API void mmx_event_free(mmx_event *event);

/* Accessors: total functions (NULL event gives 0 / NULL). Pointers they return are borrowed
 * and valid until mmx_event_free (or the end of the callback). */
MMX_API mmx_event_type mmx_event_get_type(const mmx_event *event);
MMX_API mmx_request_id mmx_event_request_id(const mmx_event *event);
MMX_API void *mmx_event_user_data(const mmx_event *event);
/* TOKEN: the token id; -1 for other types. */
MMX_API int32_t mmx_event_token(const mmx_event *event);
/* TOKEN / FINISHED: the text delta, always whole UTF-8 characters (may be empty: bytes of an
 * incomplete character, and text that may begin a stop string, are held back until decided;
 * FINISHED carries what was held). Other types: "". *out_len receives its byte length (may be
 * NULL); the text is also NUL-terminated. */
MMX_API const char *mmx_event_text(const mmx_event *event, size_t *out_len);
/* TOKEN: natural-log probability of the token under the unmodified model distribution (before
 * temperature, penalties and bias); 0 for other types. */
MMX_API float mmx_event_logprob(const mmx_event *event);
/* TOKEN: the i-th most likely token and its logprob (i < mmx_event_top_count). */
MMX_API size_t mmx_event_top_count(const mmx_event *event);
MMX_API mmx_status *mmx_event_top(const mmx_event *event, size_t i, int32_t *out_token,
                                  float *out_logprob);
/* PROGRESS: prompt tokens processed so far and in all. */
MMX_API mmx_status *mmx_event_progress(const mmx_event *event, int64_t *out_done,
                                       int64_t *out_total);
/* PROMPT_LOGPROBS: positions [first, first + count) of the prompt; logprobs[i] is the logprob
 * of prompt token first + i given what precedes it (the first prompt token has none: NaN). */
MMX_API mmx_status *mmx_event_prompt_logprobs(const mmx_event *event, int64_t *out_first,
                                              size_t *out_count, const float **out_logprobs,
                                              const int32_t **out_tokens);
/* LOGITS: the prompt position and its fp32 logits row of vocab_size values. */
MMX_API mmx_status *mmx_event_logits(const mmx_event *event, int64_t *out_position,
                                     const float **out_logits, size_t *out_count);
/* FINISHED: why the request ended, and counts (prompt tokens of this request, not counting a
 * prefix's tokens). */
MMX_API mmx_finish_reason mmx_event_finish_reason(const mmx_event *event);
MMX_API mmx_status *mmx_event_counts(const mmx_event *event, int64_t *out_prompt_tokens,
                                     int64_t *out_generated_tokens);
/* FINISHED with MMX_FINISH_ERROR: the error (code and message); NULL otherwise. The returned
 * status is borrowed (do not free it). */
MMX_API const mmx_status *mmx_event_error(const mmx_event *event);
/* FINISHED with MMX_FINISH_PREFIX_READY: a new reference to the prefix (caller frees it with
 * mmx_prefix_free). Each call returns another reference. */
MMX_API mmx_status *mmx_event_prefix(const mmx_event *event, mmx_prefix **out_prefix);

/* ==== prefixes =========================================================================== */

/* Releases one reference; the prefix's memory goes when the last reference (requests using it
 * hold their own) is gone. */
MMX_API void mmx_prefix_free(mmx_prefix *prefix);
/* Number of tokens the prefix holds. */
MMX_API mmx_status *mmx_prefix_token_count(const mmx_prefix *prefix, int64_t *out_tokens);
/* Bytes of state the prefix holds (lightning states + KV). */
MMX_API mmx_status *mmx_prefix_state_bytes(const mmx_prefix *prefix, uint64_t *out_bytes);
/* Writes the prefix to a file (its tokens, states and the model fingerprint). */
MMX_API mmx_status *mmx_prefix_save(const mmx_prefix *prefix, const char *path);
/* Reads a prefix saved with mmx_prefix_save for use in `context`. MMX_FORMAT for a damaged
 * file, MMX_INVALID_ARGUMENT when it was made with another model (fingerprint mismatch). */
MMX_API mmx_status *mmx_prefix_load(mmx_context *context, const char *path,
                                    mmx_prefix **out_prefix);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MINIMAX_H */
