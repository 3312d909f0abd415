// Package minimax binds libminimax, the embeddable inference library for the MiniMax-01
// model family, through its C ABI (include/minimax.h) with cgo.
//
// The binding is thin: a Model, a Context (a running engine), Requests built in Go and
// submitted to a context, and their events, either pulled one by one (Context.NextEvent) or
// streamed on a channel (Context.Stream) with context.Context cancellation. Every failed call
// returns an *Error carrying the library's code and message; errors.Is(err, CodeNotFound)
// and friends test the code.
//
// Model, Context and Request are safe for concurrent use, as the C ABI allows: a context
// accepts submissions, cancellations and event reads from any goroutine. Close what you open
// (Model, Context, Prefix); the C library holds their memory.
//
// The package finds the library with pkg-config (package minimax); set PKG_CONFIG_PATH to use
// a build tree or a non-standard prefix.
package minimax

/*
#cgo pkg-config: minimax
#include <minimax.h>
#include <stdlib.h>
*/
import "C"

// ABIVersion is the ABI version this package was written against (MMX_ABI_VERSION).
const ABIVersion = 1

// LibraryABIVersion is the ABI version of the loaded library.
func LibraryABIVersion() uint32 { return uint32(C.mmx_abi_version()) }

// Version is the loaded library's "major.minor.patch" plus build details.
func Version() string { return C.GoString(C.mmx_version_string()) }

// Code is a status code of the C ABI (mmx_code). Like syscall.Errno it is itself an error,
// so errors.Is(err, CodeNotFound) tests the code of any error this package returns.
type Code int

const (
	CodeOK              Code = C.MMX_OK
	CodeInvalidArgument Code = C.MMX_INVALID_ARGUMENT
	CodeUnsupported     Code = C.MMX_UNSUPPORTED
	CodeNotFound        Code = C.MMX_NOT_FOUND
	CodeIO              Code = C.MMX_IO
	CodeFormat          Code = C.MMX_FORMAT
	CodeCapacity        Code = C.MMX_CAPACITY
	CodeOutOfMemory     Code = C.MMX_OUT_OF_MEMORY
	CodeCancelled       Code = C.MMX_CANCELLED
	CodeTimeout         Code = C.MMX_TIMEOUT
	CodeDevice          Code = C.MMX_DEVICE
	CodeState           Code = C.MMX_STATE
	CodeInternal        Code = C.MMX_INTERNAL
	CodeBufferTooSmall  Code = C.MMX_BUFFER_TOO_SMALL
)

// String is the library's short name of the code ("not found", ...).
func (c Code) String() string { return C.GoString(C.mmx_code_name(C.mmx_code(c))) }

func (c Code) Error() string { return "minimax: " + c.String() }

// Error is a failed call: the code and the library's message.
type Error struct {
	Code    Code
	Message string
}

func (e *Error) Error() string { return "minimax: " + e.Code.String() + ": " + e.Message }

// Unwrap returns the code, so that errors.Is matches it.
func (e *Error) Unwrap() error { return e.Code }

// statusError reads a status without taking ownership (events lend theirs).
func statusError(s *C.mmx_status) error {
	if s == nil {
		return nil
	}
	return &Error{Code: Code(C.mmx_status_code(s)), Message: C.GoString(C.mmx_status_message(s))}
}

// check takes ownership of a returned status: nil is success, anything else an *Error.
func check(s *C.mmx_status) error {
	if s == nil {
		return nil
	}
	defer C.mmx_status_free(s)
	return statusError(s)
}

// DeviceInfo describes a CUDA device the library can use.
type DeviceInfo struct {
	Index, ComputeMajor, ComputeMinor, Multiprocessors int
	TotalMemoryBytes, FreeMemoryBytes                  uint64
	Name                                               string
}

// DeviceCount is the number of CUDA devices (0 in a CPU-only build).
func DeviceCount() (int, error) {
	var n C.int32_t
	if err := check(C.mmx_device_count(&n)); err != nil {
		return 0, err
	}
	return int(n), nil
}

// Device describes CUDA device index.
func Device(index int) (DeviceInfo, error) {
	var d C.mmx_device_info
	d.struct_size = C.uint32_t(C.sizeof_mmx_device_info)
	if err := check(C.mmx_device_info_get(C.int32_t(index), &d)); err != nil {
		return DeviceInfo{}, err
	}
	return DeviceInfo{
		Index: int(d.index), ComputeMajor: int(d.compute_major), ComputeMinor: int(d.compute_minor),
		Multiprocessors: int(d.multiprocessors), TotalMemoryBytes: uint64(d.total_memory_bytes),
		FreeMemoryBytes: uint64(d.free_memory_bytes), Name: C.GoString(&d.name[0]),
	}, nil
}
