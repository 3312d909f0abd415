package minimax

/*
#include <minimax.h>
#include <stdlib.h>

// Defined in progress.go (exported from Go).
extern int32_t minimaxGoProgress(double fraction, char *stage, uintptr_t handle);

static int32_t mmx_go_progress(double fraction, const char *stage, void *user_data) {
	return minimaxGoProgress(fraction, (char *)stage, (uintptr_t)user_data);
}

// The progress callback's user data is a cgo.Handle, an integer, never a Go pointer.
static mmx_status *mmx_go_model_load(const char *path, const mmx_model_options *options,
                                     uintptr_t handle, mmx_model **out) {
	return mmx_model_load(path, options, handle ? mmx_go_progress : NULL, (void *)handle, out);
}
*/
import "C"

import (
	"runtime/cgo"
	"unsafe"
)

// ModelOption is a key of the model options (mmx_model_option). Keys the loaded library does
// not know fail with CodeUnsupported, so hosts can probe features.
type ModelOption int

const (
	ModelBackend     ModelOption = C.MMX_MODEL_OPT_BACKEND      // string: "auto", "cpu", "cuda"
	ModelDevices     ModelOption = C.MMX_MODEL_OPT_DEVICES      // string: CUDA ordinals, "0,1"
	ModelWeightDtype ModelOption = C.MMX_MODEL_OPT_WEIGHT_DTYPE // string: "auto", "int8", "bf16"
	ModelThreads     ModelOption = C.MMX_MODEL_OPT_THREADS      // int: CPU threads, 0 = all cores
	ModelMemoryLimit ModelOption = C.MMX_MODEL_OPT_MEMORY_LIMIT // int: device bytes, 0 = all
)

// ModelOptions records option settings; LoadModel applies them in order and reports the
// first the library refuses. The zero value (or nil) means defaults.
type ModelOptions struct {
	settings []func(*C.mmx_model_options) *C.mmx_status
	progress func(fraction float64, stage string) bool
}

func (o *ModelOptions) SetInt(key ModelOption, value int64) *ModelOptions {
	o.settings = append(o.settings, func(p *C.mmx_model_options) *C.mmx_status {
		return C.mmx_model_options_set_int(p, C.mmx_model_option(key), C.int64_t(value))
	})
	return o
}

func (o *ModelOptions) SetString(key ModelOption, value string) *ModelOptions {
	o.settings = append(o.settings, func(p *C.mmx_model_options) *C.mmx_status {
		v := C.CString(value)
		defer C.free(unsafe.Pointer(v))
		return C.mmx_model_options_set_string(p, C.mmx_model_option(key), v)
	})
	return o
}

// Progress sets a function called as the load proceeds (on the loading goroutine);
// returning false aborts the load with CodeCancelled.
func (o *ModelOptions) Progress(fn func(fraction float64, stage string) bool) *ModelOptions {
	o.progress = fn
	return o
}

// Model is a loaded model. It may be shared by any number of goroutines and contexts; a
// context keeps the C model alive, so a Model may be closed while its contexts run on.
type Model struct {
	p *C.mmx_model
}

// LoadModel loads a model directory (config.json, safetensors weights, tokenizer files).
func LoadModel(path string, options *ModelOptions) (*Model, error) {
	var opts *C.mmx_model_options
	var handle cgo.Handle
	var progress *progressState
	if options != nil {
		if err := check(C.mmx_model_options_create(&opts)); err != nil {
			return nil, err
		}
		defer C.mmx_model_options_free(opts)
		for _, set := range options.settings {
			if err := check(set(opts)); err != nil {
				return nil, err
			}
		}
		if options.progress != nil {
			progress = &progressState{fn: options.progress}
			handle = cgo.NewHandle(progress)
			defer handle.Delete()
		}
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	m := &Model{}
	err := check(C.mmx_go_model_load(cpath, opts, C.uintptr_t(handle), &m.p))
	if progress != nil && progress.panic != nil {
		C.mmx_model_free(m.p)
		panic(progress.panic)
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}

// Close frees the model (contexts created from it keep it alive until they are closed).
func (m *Model) Close() {
	C.mmx_model_free(m.p)
	m.p = nil
}

// ModelInfo is what Model.Info reports. BOSToken and EOSToken are -1 when the model has none.
type ModelInfo struct {
	VocabSize, NumLayers, NumSoftmaxLayers, HiddenSize int
	NumHeads, NumKVHeads, HeadDim                      int
	NumExperts, ExpertsPerToken                        int
	BOSToken, EOSToken                                 int32
	ContextLimit                                       int64
	ParameterCount, WeightBytes                        uint64
	Backend, Fingerprint                               string
}

func (m *Model) Info() (ModelInfo, error) {
	var i C.mmx_model_info
	i.struct_size = C.uint32_t(C.sizeof_mmx_model_info)
	if err := check(C.mmx_model_get_info(m.p, &i)); err != nil {
		return ModelInfo{}, err
	}
	return ModelInfo{
		VocabSize: int(i.vocab_size), NumLayers: int(i.num_layers),
		NumSoftmaxLayers: int(i.num_softmax_layers), HiddenSize: int(i.hidden_size),
		NumHeads: int(i.num_heads), NumKVHeads: int(i.num_kv_heads), HeadDim: int(i.head_dim),
		NumExperts: int(i.num_experts), ExpertsPerToken: int(i.experts_per_token),
		BOSToken: int32(i.bos_token), EOSToken: int32(i.eos_token),
		ContextLimit: int64(i.context_limit), ParameterCount: uint64(i.parameter_count),
		WeightBytes: uint64(i.weight_bytes), Backend: C.GoString(&i.backend[0]),
		Fingerprint: C.GoString(&i.fingerprint[0]),
	}, nil
}

// LayerKind tells lightning (linear) attention layers from softmax ones.
type LayerKind int

const (
	LayerLightning LayerKind = C.MMX_LAYER_LIGHTNING
	LayerSoftmax   LayerKind = C.MMX_LAYER_SOFTMAX
)

func (m *Model) LayerKind(layer int) (LayerKind, error) {
	var k C.mmx_layer_kind
	err := check(C.mmx_model_layer_kind(m.p, C.int32_t(layer), &k))
	return LayerKind(k), err
}

// TokenID is the id of a token given its exact text, e.g. "<end_of_sentence>".
func (m *Model) TokenID(text string) (int32, error) {
	ctext := C.CString(text)
	defer C.free(unsafe.Pointer(ctext))
	var id C.int32_t
	err := check(C.mmx_model_token_id(m.p, ctext, &id))
	return int32(id), err
}

// TokenizeFlags of Model.Tokenize, combined with |.
type TokenizeFlags uint32

const (
	TokenizeAddBOS       TokenizeFlags = C.MMX_TOKENIZE_ADD_BOS
	TokenizeParseSpecial TokenizeFlags = C.MMX_TOKENIZE_PARSE_SPECIAL
)

func (m *Model) Tokenize(text string, flags TokenizeFlags) ([]int32, error) {
	ctext := C.CString(text)
	defer C.free(unsafe.Pointer(ctext))
	return fill(len(text)+4, func(buf []int32, needed *C.size_t) *C.mmx_status {
		return C.mmx_tokenize(m.p, ctext, C.size_t(len(text)), C.uint32_t(flags),
			(*C.int32_t)(first(buf)), C.size_t(len(buf)), needed)
	})
}

func (m *Model) Detokenize(tokens []int32) (string, error) {
	text, err := fill(len(tokens)*8+1, func(buf []byte, needed *C.size_t) *C.mmx_status {
		return C.mmx_detokenize(m.p, (*C.int32_t)(first(tokens)), C.size_t(len(tokens)),
			(*C.char)(first(buf)), C.size_t(len(buf)), needed)
	})
	return cText(text), err
}

// ApplyChatFormat renders messagesJSON ([{"role": ..., "content": ...}, ...]) in the model's
// chat format.
func (m *Model) ApplyChatFormat(messagesJSON string, addGenerationPrompt bool) (string, error) {
	cjson := C.CString(messagesJSON)
	defer C.free(unsafe.Pointer(cjson))
	text, err := fill(len(messagesJSON)*2+256, func(buf []byte, needed *C.size_t) *C.mmx_status {
		return C.mmx_apply_chat_format(m.p, cjson, C.int32_t(boolInt(addGenerationPrompt)),
			(*C.char)(first(buf)), C.size_t(len(buf)), needed)
	})
	return cText(text), err
}

// MemoryEstimate is what a context would need (Model.EstimateMemory).
type MemoryEstimate struct {
	WeightBytes, StateBytesPerSequence, KVBytesPerToken, WorkspaceBytes, TotalBytes uint64
}

// EstimateMemory tells what a context with these options (nil = defaults) would need.
func (m *Model) EstimateMemory(options *ContextOptions) (MemoryEstimate, error) {
	var e C.mmx_memory_estimate
	e.struct_size = C.uint32_t(C.sizeof_mmx_memory_estimate)
	err := options.with(func(opts *C.mmx_context_options) error {
		return check(C.mmx_model_estimate_memory(m.p, opts, &e))
	})
	return MemoryEstimate{
		WeightBytes: uint64(e.weight_bytes), StateBytesPerSequence: uint64(e.state_bytes_per_sequence),
		KVBytesPerToken: uint64(e.kv_bytes_per_token), WorkspaceBytes: uint64(e.workspace_bytes),
		TotalBytes: uint64(e.total_bytes),
	}, err
}

// fill runs the header's caller-buffer protocol: try a buffer of guess elements; when the
// library answers CodeBufferTooSmall it has stored the size it needs, so retry with that.
// The buffer is Go memory that C only writes during the call.
func fill[T any](guess int, call func(buf []T, needed *C.size_t) *C.mmx_status) ([]T, error) {
	buf := make([]T, guess)
	var needed C.size_t
	status := call(buf, &needed)
	if Code(C.mmx_status_code(status)) == CodeBufferTooSmall {
		C.mmx_status_free(status)
		buf = make([]T, int(needed))
		status = call(buf, &needed)
	}
	if err := check(status); err != nil {
		return nil, err
	}
	return buf[:int(needed)], nil
}

// first points at a slice's first element, or is nil for an empty slice.
func first[T any](s []T) unsafe.Pointer {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Pointer(&s[0])
}

// cText drops the terminating NUL the library counts in its sizes.
func cText(b []byte) string {
	if len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	return string(b)
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
