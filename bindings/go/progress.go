package minimax

// #include <stdint.h>
import "C"

import "runtime/cgo"

// progressState is what the load progress callback's cgo.Handle refers to: C holds only the
// handle (an integer), never a Go pointer.
type progressState struct {
	fn    func(fraction float64, stage string) bool
	panic interface{} // a panic of fn, re-raised by LoadModel once the C call returned
}

// minimaxGoProgress runs on the goroutine that called LoadModel. A panic must not unwind
// through the C frames of the load, so it stops the load and LoadModel re-raises it.
//
//export minimaxGoProgress
func minimaxGoProgress(fraction C.double, stage *C.char, handle C.uintptr_t) (abort C.int32_t) {
	state := cgo.Handle(handle).Value().(*progressState)
	defer func() {
		if p := recover(); p != nil {
			state.panic = p
			abort = 1
		}
	}()
	if state.fn(float64(fraction), C.GoString(stage)) {
		return 0
	}
	return 1
}
