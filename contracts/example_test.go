package contracts_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/strata-state/strata/contracts"
)

// A row as the API handles it: decode, validate, check the URL key, and cut
// it into fields for the store.
func Example_row() {
	c, err := contracts.Compile(context.Background(), contracts.Example, contracts.ExampleFiles())
	if err != nil {
		panic(err)
	}
	machines, _ := c.Table("machines")

	m, err := machines.DecodeJSON([]byte(`{"id": "m-1", "app": "web", "state": "MACHINE_STATE_STARTED", "privateIp": "10.0.0.300"}`))
	if err != nil {
		panic(err)
	}
	var ve *contracts.ValidationError
	if errors.As(machines.Validate(m), &ve) {
		for _, v := range ve.Violations {
			fmt.Printf("%s: %s (%s)\n", v.Field, v.Message, v.Rule)
		}
	}
	fmt.Println(machines.CheckKey(m, "m-2"))

	fields, _ := machines.Split(m)
	for _, f := range fields {
		fmt.Printf("field %d: %d bytes\n", f.Num, len(f.Value))
	}
	// Output:
	// private_ip: must be a valid IP address (string.ip)
	// contracts: machines: key field "id": message has "m-1", key is "m-2"
	// field 1: 5 bytes
	// field 2: 5 bytes
	// field 3: 2 bytes
	// field 6: 12 bytes
}

// A contract with mistakes reports all of them, with positions.
func ExampleCompileError() {
	_, err := contracts.CompileDir(context.Background(), "../testdata/contracts/rules", []string{"record_regional_only.proto"})
	var ce *contracts.CompileError
	if errors.As(err, &ce) {
		for _, d := range ce.Errors {
			fmt.Printf("%s:%d:%d\n", d.File, d.Line, d.Col)
		}
	}
	// Output:
	// record_regional_only.proto:10:3
	// record_regional_only.proto:11:3
}
