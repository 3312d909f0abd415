package minimax

/*
#include <minimax.h>
#include <stdlib.h>
*/
import "C"

import (
	"sync"
	"time"
	"unsafe"
)

// ContextOption is a key of the context options (mmx_context_option).
type ContextOption int

const (
	ContextMaxSequences    ContextOption = C.MMX_CTX_OPT_MAX_SEQUENCES
	ContextStepTokenBudget ContextOption = C.MMX_CTX_OPT_STEP_TOKEN_BUDGET
	ContextKVMemoryBytes   ContextOption = C.MMX_CTX_OPT_KV_MEMORY_BYTES
	ContextPrefillChunk    ContextOption = C.MMX_CTX_OPT_PREFILL_CHUNK
	ContextMaxContext      ContextOption = C.MMX_CTX_OPT_MAX_CONTEXT
	ContextMaxQueued       ContextOption = C.MMX_CTX_OPT_MAX_QUEUED
)

// ContextOptions records option settings, applied when a context is created (or estimated).
type ContextOptions struct {
	settings []func(*C.mmx_context_options) *C.mmx_status
}

func (o *ContextOptions) SetInt(key ContextOption, value int64) *ContextOptions {
	o.settings = append(o.settings, func(p *C.mmx_context_options) *C.mmx_status {
		return C.mmx_context_options_set_int(p, C.mmx_context_option(key), C.int64_t(value))
	})
	return o
}

// with calls fn with the C options object (NULL for nil options), freed afterwards.
func (o *ContextOptions) with(fn func(*C.mmx_context_options) error) error {
	if o == nil {
		return fn(nil)
	}
	var p *C.mmx_context_options
	if err := check(C.mmx_context_options_create(&p)); err != nil {
		return err
	}
	defer C.mmx_context_options_free(p)
	for _, set := range o.settings {
		if err := check(set(p)); err != nil {
			return err
		}
	}
	return fn(p)
}

// RequestID identifies a submitted request within its context.
type RequestID uint64

// Context is a running engine serving one model. All its methods may be called from any
// goroutine at once, except Close.
type Context struct {
	p       *C.mmx_context
	mu      sync.Mutex
	streams map[*Stream]struct{} // open streams, closed by Close before the engine goes
}

// NewContext creates an engine for model (which it keeps alive); options may be nil.
func NewContext(model *Model, options *ContextOptions) (*Context, error) {
	c := &Context{streams: map[*Stream]struct{}{}}
	err := options.with(func(opts *C.mmx_context_options) error {
		return check(C.mmx_context_create(model.p, opts, &c.p))
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Close closes the context's open streams (cancelling their requests), then cancels
// everything else and frees the engine. Events not yet read are discarded.
func (c *Context) Close() {
	c.mu.Lock()
	streams := make([]*Stream, 0, len(c.streams))
	for s := range c.streams {
		streams = append(streams, s)
	}
	c.mu.Unlock()
	for _, s := range streams {
		s.Close()
	}
	C.mmx_context_free(c.p)
	c.p = nil
}

// Submit submits a request and returns its id; read its events with NextEvent.
func (c *Context) Submit(r *Request) (RequestID, error) {
	var id C.mmx_request_id
	err := r.with(func(p *C.mmx_request) error {
		return check(C.mmx_context_submit(c.p, p, &id))
	})
	return RequestID(id), err
}

// SubmitBatch submits all of requests or, on error, none of them.
func (c *Context) SubmitBatch(requests []*Request) ([]RequestID, error) {
	if len(requests) == 0 {
		return nil, nil
	}
	// A Go slice of C pointers may be passed to C: it holds no Go pointers.
	raw := make([]*C.mmx_request, len(requests))
	for i, r := range requests {
		p, err := r.build()
		if err != nil {
			for _, q := range raw[:i] {
				C.mmx_request_free(q)
			}
			return nil, err
		}
		raw[i] = p
	}
	defer func() {
		for _, p := range raw {
			C.mmx_request_free(p)
		}
	}()
	ids := make([]C.mmx_request_id, len(requests))
	if err := check(C.mmx_context_submit_batch(c.p, &raw[0], C.size_t(len(raw)), &ids[0])); err != nil {
		return nil, err
	}
	out := make([]RequestID, len(ids))
	for i, id := range ids {
		out[i] = RequestID(id)
	}
	return out, nil
}

// Cancel cancels a request; its final event (reason FinishCancelled unless it finished
// first) follows. Unknown or finished ids give CodeNotFound.
func (c *Context) Cancel(id RequestID) error {
	return check(C.mmx_context_cancel(c.p, C.mmx_request_id(id)))
}

// NextEvent waits up to timeout (negative: forever, 0: poll) for the next event of id (0: of
// any request). CodeTimeout when none came; CodeNotFound once the final event was taken.
func (c *Context) NextEvent(id RequestID, timeout time.Duration) (Event, error) {
	ms := C.int32_t(-1)
	if timeout >= 0 {
		ms = C.int32_t(min64(timeout.Milliseconds(), 1<<31-1))
	}
	var e *C.mmx_event
	if err := check(C.mmx_context_next_event(c.p, C.mmx_request_id(id), ms, &e)); err != nil {
		return Event{}, err
	}
	defer C.mmx_event_free(e)
	return copyEvent(e), nil
}

// ContextStats is a snapshot of a context's counters.
type ContextStats struct {
	RunningSequences, QueuedRequests     uint32
	SubmittedRequests, FinishedRequests  uint64
	PromptTokens, GeneratedTokens, Steps uint64
	StateBytesInUse, StateBytesLimit     uint64
	BusySeconds                          float64
}

func (c *Context) Stats() (ContextStats, error) {
	var s C.mmx_context_stats
	s.struct_size = C.uint32_t(C.sizeof_mmx_context_stats)
	if err := check(C.mmx_context_stats_get(c.p, &s)); err != nil {
		return ContextStats{}, err
	}
	return ContextStats{
		RunningSequences: uint32(s.running_sequences), QueuedRequests: uint32(s.queued_requests),
		SubmittedRequests: uint64(s.submitted_requests), FinishedRequests: uint64(s.finished_requests),
		PromptTokens: uint64(s.prompt_tokens), GeneratedTokens: uint64(s.generated_tokens),
		Steps: uint64(s.steps), StateBytesInUse: uint64(s.state_bytes_in_use),
		StateBytesLimit: uint64(s.state_bytes_limit), BusySeconds: float64(s.busy_seconds),
	}, nil
}

// LoadPrefix reads a prefix written by Prefix.Save for use in this context.
func (c *Context) LoadPrefix(path string) (*Prefix, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var p *C.mmx_prefix
	if err := check(C.mmx_prefix_load(c.p, cpath, &p)); err != nil {
		return nil, err
	}
	return newPrefix(p), nil
}

func min64(a, b int64) int64 {
	if a < b {
		return a
	}
	return b
}
