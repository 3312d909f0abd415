/* A small host program in C99, linked against the SHARED libminimax: load a model, generate
 * with pull and callback delivery, score, make/save/load a prefix, hit an error, free.
 * usage: abi_scenario MODEL_DIR WORK_DIR   (exit 77 = skipped: no model there) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "minimax.h"

#define CHECK(cond)                                                              \
  do {                                                                           \
    if (!(cond)) {                                                               \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
      return 1;                                                                  \
    }                                                                            \
  } while (0)

#define OK(call)                                                                 \
  do {                                                                           \
    mmx_status *st_ = (call);                                                    \
    if (st_) {                                                                   \
      fprintf(stderr, "%s:%d: %s failed: %s: %s\n", __FILE__, __LINE__, #call,   \
              mmx_code_name(mmx_status_code(st_)), mmx_status_message(st_));     \
      mmx_status_free(st_);                                                      \
      return 1;                                                                  \
    }                                                                            \
  } while (0)

typedef struct {
  int finals;
  int tokens;
  int after_final;
} callback_counts;

static void on_event(const mmx_event *event, void *user_data) {
  callback_counts *c = (callback_counts *)user_data;
  if (c->finals > 0) ++c->after_final;
  if (mmx_event_get_type(event) == MMX_EVENT_TOKEN) ++c->tokens;
  if (mmx_event_get_type(event) == MMX_EVENT_FINISHED) ++c->finals;
}

/* Pulls request `id` to its end; returns the finish reason (or -1) and the text. */
static int pull_to_end(mmx_context *ctx, mmx_request_id id, char *text, size_t cap, int *n_tokens,
                       mmx_prefix **prefix) {
  size_t used = 0;
  *n_tokens = 0;
  text[0] = '\0';
  for (;;) {
    mmx_event *e = NULL;
    mmx_status *st = mmx_context_next_event(ctx, id, 60000, &e);
    if (st) {
      fprintf(stderr, "next_event: %s\n", mmx_status_message(st));
      mmx_status_free(st);
      return -1;
    }
    {
      size_t len = 0;
      const char *delta = mmx_event_text(e, &len);
      mmx_event_type type = mmx_event_get_type(e);
      if (used + len < cap) {
        memcpy(text + used, delta, len);
        used += len;
        text[used] = '\0';
      }
      if (type == MMX_EVENT_TOKEN) ++*n_tokens;
      if (type == MMX_EVENT_FINISHED) {
        int reason = (int)mmx_event_finish_reason(e);
        if (reason == MMX_FINISH_ERROR) fprintf(stderr, "error: %s\n", mmx_status_message(mmx_event_error(e)));
        if (prefix && reason == MMX_FINISH_PREFIX_READY) {
          mmx_status *ps = mmx_event_prefix(e, prefix);
          if (ps) reason = -1;
          mmx_status_free(ps);
        }
        mmx_event_free(e);
        return reason;
      }
    }
    mmx_event_free(e);
  }
}

int main(int argc, char **argv) {
  mmx_model *model = NULL;
  mmx_context *ctx = NULL;
  mmx_context_options *copts = NULL;
  mmx_model_info info;
  char path[4096], text[4096];
  FILE *probe;

  if (argc != 3) {
    fprintf(stderr, "usage: abi_scenario MODEL_DIR WORK_DIR\n");
    return 2;
  }
  snprintf(path, sizeof path, "%s/config.json", argv[1]);
  probe = fopen(path, "r");
  if (!probe) {
    printf("no model at %s: skipped\n", argv[1]);
    return 77;
  }
  fclose(probe);

  CHECK(mmx_abi_version() == MMX_ABI_VERSION);
  CHECK(strlen(mmx_version_string()) > 0);
  OK(mmx_model_load(argv[1], NULL, NULL, NULL, &model));
  memset(&info, 0, sizeof info);
  info.struct_size = sizeof info;
  OK(mmx_model_get_info(model, &info));
  CHECK(info.vocab_size > 0 && info.num_layers > 0);
  printf("model: %d layers, vocab %d, backend %s, %s\n", info.num_layers, info.vocab_size, info.backend,
         mmx_version_string());

  { /* text round trip */
    const char *hello = "Hello, world";
    int32_t tokens[64];
    size_t n = 0, needed = 0;
    char back[128];
    OK(mmx_tokenize(model, hello, strlen(hello), MMX_TOKENIZE_DEFAULT, tokens, 64, &n));
    CHECK(n > 0);
    OK(mmx_detokenize(model, tokens, n, back, sizeof back, &needed));
    CHECK(strcmp(back, hello) == 0);
  }

  OK(mmx_context_options_create(&copts));
  OK(mmx_context_options_set_int(copts, MMX_CTX_OPT_MAX_SEQUENCES, 4));
  OK(mmx_context_options_set_int(copts, MMX_CTX_OPT_PREFILL_CHUNK, 32));
  OK(mmx_context_create(model, copts, &ctx));
  mmx_context_options_free(copts);
  mmx_model_free(model); /* the context keeps the model alive */
  model = NULL;

  { /* a batch: one pulled, one delivered to a callback */
    mmx_request *pulled = NULL, *pushed = NULL;
    const mmx_request *batch[2];
    mmx_request_id ids[2];
    callback_counts counts = {0, 0, 0};
    int n_tokens = 0, reason;
    const char *prompt = "Once upon a time";
    OK(mmx_request_create(&pulled));
    OK(mmx_request_append_text(pulled, prompt, strlen(prompt)));
    OK(mmx_request_set_int(pulled, MMX_REQ_MAX_TOKENS, 8));
    OK(mmx_request_set_int(pulled, MMX_REQ_IGNORE_EOS, 1));
    OK(mmx_request_create(&pushed));
    OK(mmx_request_append_text(pushed, prompt, strlen(prompt)));
    OK(mmx_request_set_int(pushed, MMX_REQ_MAX_TOKENS, 5));
    OK(mmx_request_set_int(pushed, MMX_REQ_IGNORE_EOS, 1));
    OK(mmx_request_set_double(pushed, MMX_REQ_TEMPERATURE, 0.7));
    OK(mmx_request_set_callback(pushed, on_event, &counts));
    batch[0] = pulled;
    batch[1] = pushed;
    OK(mmx_context_submit_batch(ctx, batch, 2, ids));
    mmx_request_free(pulled);
    mmx_request_free(pushed);
    reason = pull_to_end(ctx, ids[0], text, sizeof text, &n_tokens, NULL);
    CHECK(reason == MMX_FINISH_LENGTH);
    CHECK(n_tokens == 8);
    printf("generated: \"%s\"\n", text);
    mmx_context_free(ctx); /* joins the scheduler: the callback request is over by now */
    ctx = NULL;
    CHECK(counts.finals == 1);
    CHECK(counts.after_final == 0);
  }

  OK(mmx_model_load(argv[1], NULL, NULL, NULL, &model));
  OK(mmx_context_create(model, NULL, &ctx));

  { /* scoring, then a prefix saved and loaded back */
    mmx_request *r = NULL;
    mmx_prefix *prefix = NULL, *loaded = NULL;
    mmx_event *e = NULL;
    mmx_request_id id;
    int64_t count = 0, first = 0;
    size_t n = 0;
    const float *lps = NULL;
    const int32_t *toks = NULL;
    int n_tokens, reason;
    const char *doc = "A document to ask questions about.";
    OK(mmx_request_create(&r));
    OK(mmx_request_append_text(r, doc, strlen(doc)));
    OK(mmx_request_set_int(r, MMX_REQ_MAX_TOKENS, 0));
    OK(mmx_request_set_int(r, MMX_REQ_PROMPT_LOGPROBS, 1));
    OK(mmx_context_submit(ctx, r, &id));
    OK(mmx_context_next_event(ctx, id, 60000, &e));
    CHECK(mmx_event_get_type(e) == MMX_EVENT_PROMPT_LOGPROBS);
    OK(mmx_event_prompt_logprobs(e, &first, &n, &lps, &toks));
    CHECK(first == 0 && n > 1 && isnan(lps[0]) && lps[1] <= 0.0f);
    mmx_event_free(e);
    CHECK(pull_to_end(ctx, id, text, sizeof text, &n_tokens, NULL) == MMX_FINISH_LENGTH);

    OK(mmx_request_set_int(r, MMX_REQ_PROMPT_LOGPROBS, 0));
    OK(mmx_request_set_int(r, MMX_REQ_MAKE_PREFIX, 1));
    OK(mmx_context_submit(ctx, r, &id));
    CHECK(pull_to_end(ctx, id, text, sizeof text, &n_tokens, &prefix) == MMX_FINISH_PREFIX_READY);
    OK(mmx_prefix_token_count(prefix, &count));
    CHECK(count > 0);
    snprintf(path, sizeof path, "%s/scenario.mmxprefix", argv[2]);
    OK(mmx_prefix_save(prefix, path));
    mmx_prefix_free(prefix);
    OK(mmx_prefix_load(ctx, path, &loaded));
    mmx_request_free(r);

    OK(mmx_request_create(&r));
    OK(mmx_request_append_text(r, " What is it?", 12));
    OK(mmx_request_set_prefix(r, loaded));
    mmx_prefix_free(loaded); /* the request holds its own reference */
    OK(mmx_request_set_int(r, MMX_REQ_MAX_TOKENS, 4));
    OK(mmx_request_set_int(r, MMX_REQ_IGNORE_EOS, 1));
    OK(mmx_context_submit(ctx, r, &id));
    mmx_request_free(r);
    reason = pull_to_end(ctx, id, text, sizeof text, &n_tokens, NULL);
    CHECK(reason == MMX_FINISH_LENGTH && n_tokens == 4);
  }

  { /* an error is a status, not a crash */
    mmx_request *empty = NULL;
    mmx_request_id id = 0;
    mmx_status *st;
    OK(mmx_request_create(&empty));
    st = mmx_context_submit(ctx, empty, &id);
    CHECK(mmx_status_code(st) == MMX_INVALID_ARGUMENT);
    CHECK(strstr(mmx_status_message(st), "empty") != NULL);
    mmx_status_free(st);
    mmx_request_free(empty);
  }

  mmx_context_free(ctx);
  mmx_model_free(model);
  printf("scenario passed\n");
  return 0;
}
