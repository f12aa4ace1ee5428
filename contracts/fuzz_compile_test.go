package contracts_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"testing"
	"testing/fstest"

	"google.golang.org/protobuf/proto"

	"github.com/strata-state/strata/contracts"
)

// FuzzCompile compiles the example contract with its regional file
// replaced by outside bytes, as an agent does with the files its
// agent.toml names. Compile must not panic; a refusal is a *CompileError
// whose every diagnostic names a file and says what is wrong; an accepted
// contract compiles again to the same descriptors, and its tables have
// names and keys.
func FuzzCompile(f *testing.F) {
	regional, err := fs.ReadFile(contracts.Example, "fleet/v1/regional.proto")
	if err != nil {
		f.Fatal(err)
	}
	global, err := fs.ReadFile(contracts.Example, "fleet/v1/global.proto")
	if err != nil {
		f.Fatal(err)
	}
	options, err := fs.ReadFile(contracts.Example, contracts.OptionsFile)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(regional)
	f.Add([]byte(`syntax = "proto3"; package fleet.v1;`))
	f.Add(bytes.Replace(regional, []byte(`key: ["id"]`), []byte(`key: ["nope"]`), 1))
	f.Add(bytes.Replace(regional, []byte(`string app = 2`), []byte(`string app = 1`), 1))
	f.Add(bytes.Replace(regional, []byte("syntax"), []byte("syntax syntax"), 1))
	f.Add([]byte("syntax = \"proto3\";\nimport \"fleet/v1/regional.proto\";\n"))
	f.Add([]byte("\xff\xfe"))
	compile := func(src []byte) (*contracts.Contract, error) {
		fsys := fstest.MapFS{
			"fleet/v1/regional.proto": {Data: src},
			"fleet/v1/global.proto":   {Data: global},
			contracts.OptionsFile:     {Data: options},
		}
		return contracts.Compile(context.Background(), fsys, contracts.ExampleFiles())
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		c, err := compile(src)
		if err != nil {
			var ce *contracts.CompileError
			if !errors.As(err, &ce) {
				return // not a contract error: the global file no longer links, say; it must still not panic
			}
			if len(ce.Errors) == 0 {
				t.Fatal("a CompileError without diagnostics")
			}
			for _, d := range ce.Errors {
				if d.Msg == "" {
					t.Fatalf("a diagnostic that says nothing: %+v", d)
				}
			}
			return
		}
		again, err := compile(src)
		if err != nil {
			t.Fatalf("the same source compiled once and then failed: %v", err)
		}
		det := proto.MarshalOptions{Deterministic: true}
		a, errA := det.Marshal(c.FileDescriptorSet())
		b, errB := det.Marshal(again.FileDescriptorSet())
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Fatal("the same source compiled to different descriptors")
		}
		for _, s := range c.Tables() {
			if s.Name == "" {
				t.Fatalf("a table without a name: %v", s.Desc.FullName())
			}
		}
	})
}
