package contracts

import (
	"context"
	"os"
	"sync"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// testdataDir is the repository's contract fixtures, relative to this package.
const testdataDir = "../testdata/contracts"

var (
	exampleOnce = sync.OnceValues(func() (*Contract, error) {
		return Compile(context.Background(), Example, ExampleFiles())
	})
	shopOnce = sync.OnceValues(func() (*Contract, error) {
		return CompileDir(context.Background(), testdataDir+"/good", []string{"shop/v1/shop.proto"})
	})
)

// example returns the compiled example contract, compiled once per test binary.
func example(tb testing.TB) *Contract {
	tb.Helper()
	c, err := exampleOnce()
	if err != nil {
		tb.Fatalf("compile example: %v", err)
	}
	return c
}

// shop returns the compiled test contract testdata/contracts/good.
func shop(tb testing.TB) *Contract {
	tb.Helper()
	c, err := shopOnce()
	if err != nil {
		tb.Fatalf("compile shop: %v", err)
	}
	return c
}

func table(tb testing.TB, c *Contract, name string) *Schema {
	tb.Helper()
	s, ok := c.Table(name)
	if !ok {
		tb.Fatalf("no table %q", name)
	}
	return s
}

func record(tb testing.TB, c *Contract, name string) *Schema {
	tb.Helper()
	s, ok := c.Record(name)
	if !ok {
		tb.Fatalf("no record %q", name)
	}
	return s
}

// set sets the top-level field name of m to v, which may be a Go value
// accepted by protoreflect.ValueOf or, for enums, a protoreflect.EnumNumber.
func set(tb testing.TB, m *dynamicpb.Message, name string, v any) {
	tb.Helper()
	fd := m.Descriptor().Fields().ByName(protoreflect.Name(name))
	if fd == nil {
		tb.Fatalf("%s has no field %q", m.Descriptor().FullName(), name)
	}
	m.Set(fd, protoreflect.ValueOf(v))
}

// machineJSON is a valid machines row.
const machineJSON = `{
  "id": "m-1",
  "app": "web",
  "state": "MACHINE_STATE_STARTED",
  "healthy": true,
  "host": "host-1.ord",
  "privateIp": "fdaa:0:1::2",
  "updatedAt": "2026-01-02T03:04:05Z"
}`

func readFile(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
