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

// RequestOption is a key of the request options (mmx_request_option).
type RequestOption int

const (
	// Integer options (SetInt).
	ReqMaxTokens      RequestOption = C.MMX_REQ_MAX_TOKENS // default 256; 0 = prefill/score only
	ReqSeed           RequestOption = C.MMX_REQ_SEED
	ReqTopK           RequestOption = C.MMX_REQ_TOP_K
	ReqTopLogprobs    RequestOption = C.MMX_REQ_TOP_LOGPROBS
	ReqPromptLogprobs RequestOption = C.MMX_REQ_PROMPT_LOGPROBS
	ReqMakePrefix     RequestOption = C.MMX_REQ_MAKE_PREFIX
	ReqIgnoreEOS      RequestOption = C.MMX_REQ_IGNORE_EOS
	ReqAddBOS         RequestOption = C.MMX_REQ_ADD_BOS
	ReqParseSpecial   RequestOption = C.MMX_REQ_PARSE_SPECIAL
	// Floating-point options (SetDouble).
	ReqTemperature       RequestOption = C.MMX_REQ_TEMPERATURE // 0 = greedy (default)
	ReqTopP              RequestOption = C.MMX_REQ_TOP_P
	ReqMinP              RequestOption = C.MMX_REQ_MIN_P
	ReqRepetitionPenalty RequestOption = C.MMX_REQ_REPETITION_PENALTY
	ReqFrequencyPenalty  RequestOption = C.MMX_REQ_FREQUENCY_PENALTY
	ReqPresencePenalty   RequestOption = C.MMX_REQ_PRESENCE_PENALTY
)

// Request describes a request: prompt pieces (text and tokens, in order), options and stop
// conditions. It is plain Go data; each submit builds the C request from it, so the library
// checks the settings then and the first it refuses is the submit's error. A built Request
// may be submitted many times, from several goroutines.
type Request struct {
	steps []func(*C.mmx_request) error
}

// NewRequest starts an empty request; chain the setters: NewRequest().Text(p).MaxTokens(16).
func NewRequest() *Request { return &Request{} }

func (r *Request) add(step func(*C.mmx_request) *C.mmx_status) *Request {
	r.steps = append(r.steps, func(p *C.mmx_request) error { return check(step(p)) })
	return r
}

func (r *Request) SetInt(key RequestOption, value int64) *Request {
	return r.add(func(p *C.mmx_request) *C.mmx_status {
		return C.mmx_request_set_int(p, C.mmx_request_option(key), C.int64_t(value))
	})
}

func (r *Request) SetDouble(key RequestOption, value float64) *Request {
	return r.add(func(p *C.mmx_request) *C.mmx_status {
		return C.mmx_request_set_double(p, C.mmx_request_option(key), C.double(value))
	})
}

func (r *Request) MaxTokens(n int) *Request       { return r.SetInt(ReqMaxTokens, int64(n)) }
func (r *Request) Seed(seed uint64) *Request      { return r.SetInt(ReqSeed, int64(seed)) }
func (r *Request) Temperature(t float64) *Request { return r.SetDouble(ReqTemperature, t) }
func (r *Request) IgnoreEOS(on bool) *Request     { return r.SetInt(ReqIgnoreEOS, boolInt(on)) }

// Text appends text to the prompt.
func (r *Request) Text(text string) *Request {
	return r.add(func(p *C.mmx_request) *C.mmx_status {
		ctext := C.CString(text)
		defer C.free(unsafe.Pointer(ctext))
		return C.mmx_request_append_text(p, ctext, C.size_t(len(text)))
	})
}

// Tokens appends token ids to the prompt.
func (r *Request) Tokens(tokens []int32) *Request {
	tokens = append([]int32(nil), tokens...) // the caller may reuse its slice
	return r.add(func(p *C.mmx_request) *C.mmx_status {
		return C.mmx_request_append_tokens(p, (*C.int32_t)(first(tokens)), C.size_t(len(tokens)))
	})
}

// Prefix starts the request from a prefix; each submitted request holds its own reference,
// and the prefix must stay open until the last submit of this Request.
func (r *Request) Prefix(prefix *Prefix) *Request {
	r.steps = append(r.steps, func(p *C.mmx_request) error {
		if prefix.p == nil { // NULL would silently mean "no prefix"
			return &Error{Code: CodeInvalidArgument, Message: "the prefix is closed"}
		}
		defer runtime.KeepAlive(prefix)
		return check(C.mmx_request_set_prefix(p, prefix.p))
	})
	return r
}

func (r *Request) StopString(stop string) *Request {
	return r.add(func(p *C.mmx_request) *C.mmx_status {
		cstop := C.CString(stop)
		defer C.free(unsafe.Pointer(cstop))
		return C.mmx_request_add_stop_string(p, cstop)
	})
}

func (r *Request) StopToken(token int32) *Request {
	return r.add(func(p *C.mmx_request) *C.mmx_status {
		return C.mmx_request_add_stop_token(p, C.int32_t(token))
	})
}

// LogitBias adds bias to token's logit before sampling; math.Inf(-1) bans the token.
func (r *Request) LogitBias(token int32, bias float32) *Request {
	return r.add(func(p *C.mmx_request) *C.mmx_status {
		return C.mmx_request_set_logit_bias(p, C.int32_t(token), C.float(bias))
	})
}

// LogitsPosition asks for the logits row at a prompt position (-1 = the last prompt token).
func (r *Request) LogitsPosition(position int64) *Request {
	return r.add(func(p *C.mmx_request) *C.mmx_status {
		return C.mmx_request_add_logits_position(p, C.int64_t(position))
	})
}

// build makes the C request; the caller frees it.
func (r *Request) build() (*C.mmx_request, error) {
	var p *C.mmx_request
	if err := check(C.mmx_request_create(&p)); err != nil {
		return nil, err
	}
	for _, step := range r.steps {
		if err := step(p); err != nil {
			C.mmx_request_free(p)
			return nil, err
		}
	}
	return p, nil
}

// with calls fn with the built C request, freed afterwards (the library copies at submit).
func (r *Request) with(fn func(*C.mmx_request) error) error {
	p, err := r.build()
	if err != nil {
		return err
	}
	defer C.mmx_request_free(p)
	return fn(p)
}
