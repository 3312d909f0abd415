package minimax

/*
#include <minimax.h>
#include <stdlib.h>
*/
import "C"

import (
	"runtime"
	"unsafe"
)

// EventType is the kind of an event (mmx_event_type).
type EventType int

const (
	EventProgress       EventType = C.MMX_EVENT_PROGRESS
	EventToken          EventType = C.MMX_EVENT_TOKEN
	EventPromptLogprobs EventType = C.MMX_EVENT_PROMPT_LOGPROBS
	EventLogits         EventType = C.MMX_EVENT_LOGITS
	EventFinished       EventType = C.MMX_EVENT_FINISHED
)

// FinishReason tells why a request ended (mmx_finish_reason).
type FinishReason int

const (
	FinishNone        FinishReason = C.MMX_FINISH_NONE
	FinishEOS         FinishReason = C.MMX_FINISH_EOS
	FinishStopString  FinishReason = C.MMX_FINISH_STOP_STRING
	FinishStopToken   FinishReason = C.MMX_FINISH_STOP_TOKEN
	FinishLength      FinishReason = C.MMX_FINISH_LENGTH
	FinishCancelled   FinishReason = C.MMX_FINISH_CANCELLED
	FinishError       FinishReason = C.MMX_FINISH_ERROR
	FinishPrefixReady FinishReason = C.MMX_FINISH_PREFIX_READY
)

func (r FinishReason) String() string {
	names := [...]string{"none", "eos", "stop string", "stop token", "length", "cancelled", "error", "prefix ready"}
	if r >= 0 && int(r) < len(names) {
		return names[r]
	}
	return "unknown"
}

// TokenLogprob is a token with its natural-log probability.
type TokenLogprob struct {
	Token   int32
	Logprob float32
}

// Event is one event of a request, copied out of the library's event, so it stays valid.
// Fields that do not apply to its Type are zero.
type Event struct {
	Type      EventType
	RequestID RequestID

	Token   int32          // EventToken: the generated token (-1 otherwise)
	Text    string         // EventToken, EventFinished: text delta, whole UTF-8 characters
	Logprob float32        // EventToken
	Top     []TokenLogprob // EventToken: the most likely tokens (ReqTopLogprobs)

	Done, Total int64 // EventProgress: prompt tokens processed so far, and in all

	PromptFirst    int64     // EventPromptLogprobs: first prompt position covered
	PromptLogprobs []float32 // ... logprob of each (NaN for the very first prompt token)
	PromptTokens   []int32

	LogitsPosition int64     // EventLogits
	Logits         []float32 // EventLogits: one row of vocabulary size

	FinishReason                FinishReason // EventFinished
	PromptCount, GeneratedCount int64        // EventFinished: token counts
	Err                         error        // EventFinished with FinishError
	Prefix                      *Prefix      // EventFinished with FinishPrefixReady; Close it
}

// goSlice copies n C elements at p.
func goSlice[T any, C any](p *C, n int) []T {
	if n == 0 || p == nil {
		return nil
	}
	return append([]T(nil), unsafe.Slice((*T)(unsafe.Pointer(p)), n)...)
}

func copyEvent(e *C.mmx_event) Event {
	ev := Event{
		Type:         EventType(C.mmx_event_get_type(e)),
		RequestID:    RequestID(C.mmx_event_request_id(e)),
		Token:        int32(C.mmx_event_token(e)),
		FinishReason: FinishReason(C.mmx_event_finish_reason(e)),
	}
	var n C.size_t
	if text := C.mmx_event_text(e, &n); text != nil {
		ev.Text = C.GoStringN(text, C.int(n))
	}
	switch ev.Type {
	case EventToken:
		ev.Logprob = float32(C.mmx_event_logprob(e))
		for i := C.size_t(0); i < C.mmx_event_top_count(e); i++ {
			var t C.int32_t
			var lp C.float
			if check(C.mmx_event_top(e, i, &t, &lp)) == nil {
				ev.Top = append(ev.Top, TokenLogprob{int32(t), float32(lp)})
			}
		}
	case EventProgress:
		var done, total C.int64_t
		if check(C.mmx_event_progress(e, &done, &total)) == nil {
			ev.Done, ev.Total = int64(done), int64(total)
		}
	case EventPromptLogprobs:
		var first C.int64_t
		var lp *C.float
		var tokens *C.int32_t
		if check(C.mmx_event_prompt_logprobs(e, &first, &n, &lp, &tokens)) == nil {
			ev.PromptFirst = int64(first)
			ev.PromptLogprobs = goSlice[float32](lp, int(n))
			ev.PromptTokens = goSlice[int32](tokens, int(n))
		}
	case EventLogits:
		var pos C.int64_t
		var logits *C.float
		if check(C.mmx_event_logits(e, &pos, &logits, &n)) == nil {
			ev.LogitsPosition = int64(pos)
			ev.Logits = goSlice[float32](logits, int(n))
		}
	case EventFinished:
		var prompt, generated C.int64_t
		if check(C.mmx_event_counts(e, &prompt, &generated)) == nil {
			ev.PromptCount, ev.GeneratedCount = int64(prompt), int64(generated)
		}
		ev.Err = statusError(C.mmx_event_error(e))
		if ev.FinishReason == FinishPrefixReady {
			var p *C.mmx_prefix
			if check(C.mmx_event_prefix(e, &p)) == nil {
				ev.Prefix = newPrefix(p)
			}
		}
	}
	return ev
}

// Prefix is a processed prompt prefix ("ingest once, ask many"), reference-counted by the
// library: requests started from it hold their own reference, so it may be closed while
// they run. It arrives inside events, where it is easy to drop unseen, so a finalizer
// releases it if Close was never called.
type Prefix struct {
	p *C.mmx_prefix
}

func newPrefix(p *C.mmx_prefix) *Prefix {
	prefix := &Prefix{p}
	runtime.SetFinalizer(prefix, (*Prefix).Close)
	return prefix
}

func (p *Prefix) Close() {
	runtime.SetFinalizer(p, nil)
	C.mmx_prefix_free(p.p)
	p.p = nil
}

// TokenCount is the number of tokens the prefix holds.
func (p *Prefix) TokenCount() (int64, error) {
	var n C.int64_t
	err := check(C.mmx_prefix_token_count(p.p, &n))
	runtime.KeepAlive(p)
	return int64(n), err
}

// StateBytes is the memory the prefix's states take.
func (p *Prefix) StateBytes() (uint64, error) {
	var n C.uint64_t
	err := check(C.mmx_prefix_state_bytes(p.p, &n))
	runtime.KeepAlive(p)
	return uint64(n), err
}

// Save writes the prefix (tokens, states, model fingerprint) to a file.
func (p *Prefix) Save(path string) error {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	err := check(C.mmx_prefix_save(p.p, cpath))
	runtime.KeepAlive(p)
	return err
}
