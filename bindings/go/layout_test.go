package minimax

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// cLayout compiles tests/bindings/struct_layout.c against the header pkg-config names and
// returns its output: "struct" -> "size", "struct.field" -> "offset size".
func cLayout(t *testing.T) map[string]string {
	cflags, err := exec.Command("pkg-config", "--cflags", "minimax").Output()
	if err != nil {
		t.Fatalf("pkg-config --cflags minimax: %v", err)
	}
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "cc"
	}
	exe := filepath.Join(t.TempDir(), "struct_layout")
	args := append(strings.Fields(string(cflags)), "../../tests/bindings/struct_layout.c", "-o", exe)
	if out, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", cc, args, err, out)
	}
	out, err := exec.Command(exe).Output()
	if err != nil {
		t.Fatal(err)
	}
	layout := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		key, numbers, _ := strings.Cut(line, " ")
		layout[key] = numbers
	}
	return layout
}

func TestStructLayoutMatchesTheHeader(t *testing.T) {
	want := cLayout(t)
	got := map[string]string{}
	for name, typ := range cStructTypes() {
		got[name] = fmt.Sprint(typ.Size())
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			if f.Name == "_" { // padding cgo makes explicit
				continue
			}
			got[name+"."+f.Name] = fmt.Sprint(f.Offset, f.Type.Size())
		}
	}
	if len(want) < 40 {
		t.Fatalf("the layout program printed too little: %v", want)
	}
	if !reflect.DeepEqual(got, want) {
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: C says %q, cgo %q", k, v, got[k])
			}
		}
		for k := range got {
			if _, ok := want[k]; !ok {
				t.Errorf("%s: only in cgo's view", k)
			}
		}
	}
}
