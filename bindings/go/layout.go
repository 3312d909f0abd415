package minimax

// #include <minimax.h>
import "C"

import "reflect"

// cStructTypes are the header's output structs as cgo lays them out. The package reads and
// writes these structs only through cgo's types, so layout_test.go checks that cgo's view
// matches the C compiler's, field for field.
func cStructTypes() map[string]reflect.Type {
	return map[string]reflect.Type{
		"mmx_device_info":     reflect.TypeOf(C.mmx_device_info{}),
		"mmx_model_info":      reflect.TypeOf(C.mmx_model_info{}),
		"mmx_memory_estimate": reflect.TypeOf(C.mmx_memory_estimate{}),
		"mmx_context_stats":   reflect.TypeOf(C.mmx_context_stats{}),
	}
}
