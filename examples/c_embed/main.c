/*
 * c_embed: the smallest complete libminimax host program. It loads a model, submits one
 * prompt, streams the continuation to stdout as it is generated, and frees everything.
 *
 *   c_embed MODEL_DIR ["prompt"]
 *
 * Build it against an installed libminimax with the Makefile beside it (pkg-config), or in
 * the libminimax tree with CMake.
 */
#include <minimax.h>
#include <stdio.h>
#include <string.h>

/* Reports a failed call and releases its status; every mmx_status* is owned by the caller. */
static int report(mmx_status *status, const char *what) {
  fprintf(stderr, "c_embed: %s: %s: %s\n", what, mmx_code_name(mmx_status_code(status)),
          mmx_status_message(status));
  mmx_status_free(status);
  return 1;
}

int main(int argc, char **argv) {
  const char *prompt = argc > 2 ? argv[2] : "Once upon a time";
  mmx_model *model = NULL;
  mmx_context *context = NULL;
  mmx_request *request = NULL;
  mmx_request_id id = 0;
  mmx_status *st = NULL;
  int rc = 1, done = 0;

  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: c_embed MODEL_DIR [\"prompt\"]\n");
    return 2;
  }
  /* 1. load the model (NULL options: backend auto, i.e. a GPU when there is one) */
  if ((st = mmx_model_load(argv[1], NULL, NULL, NULL, &model))) return report(st, "load");
  /* 2. create a context: the running engine that serves requests for this model */
  if ((st = mmx_context_create(model, NULL, &context))) {
    rc = report(st, "context");
    goto out;
  }
  /* 3. describe a request and submit it (the context copies it, so free it right away) */
  if ((st = mmx_request_create(&request)) ||
      (st = mmx_request_set_int(request, MMX_REQ_MAX_TOKENS, 48)) ||
      (st = mmx_request_append_text(request, prompt, strlen(prompt))) ||
      (st = mmx_context_submit(context, request, &id))) {
    rc = report(st, "request");
    goto out;
  }
  /* 4. stream: every event carries whole UTF-8 characters; FINISHED is the last one */
  fputs(prompt, stdout);
  while (!done) {
    mmx_event *ev = NULL;
    if ((st = mmx_context_next_event(context, id, -1, &ev))) {
      rc = report(st, "event");
      goto out;
    }
    const char *text = mmx_event_text(ev, NULL); /* NULL for progress events */
    if (text) fputs(text, stdout);
    fflush(stdout);
    if (mmx_event_get_type(ev) == MMX_EVENT_FINISHED) {
      done = 1;
      if (mmx_event_finish_reason(ev) == MMX_FINISH_ERROR) {
        fprintf(stderr, "\nc_embed: %s\n", mmx_status_message(mmx_event_error(ev)));
      } else {
        rc = 0;
      }
    }
    mmx_event_free(ev);
  }
  putchar('\n');
out:
  mmx_request_free(request); /* freeing NULL is a no-op, so one exit path serves all */
  mmx_context_free(context);
  mmx_model_free(model);
  return rc;
}
