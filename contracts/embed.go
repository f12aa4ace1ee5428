package contracts

import (
	"embed"
	"io/fs"
)

// OptionsFile is the import path of the strata annotations. Every contract
// can import it without having a copy in its own directory: Compile falls
// back to the copy embedded in this package.
const OptionsFile = "strata/v1/options.proto"

// validateFile is the import path of protovalidate's rules. Compile serves it
// from protovalidate's generated Go package, so contracts need no copy.
const validateFile = "buf/validate/validate.proto"

//go:embed strata/v1/options.proto
var optionsProto []byte

//go:embed strata/v1/options.proto fleet/v1/regional.proto fleet/v1/global.proto
var exampleFS embed.FS

// Example is the example contract as an import root: fleet/v1/regional.proto
// (table "machines"), fleet/v1/global.proto (record "app_placements") and
// strata/v1/options.proto. It lets the binary run its default configuration
// from any working directory:
//
//	c, err := contracts.Compile(ctx, contracts.Example, contracts.ExampleFiles())
var Example fs.FS = exampleFS

// ExampleFiles returns the files of the Example contract to compile, in a new
// slice each call.
func ExampleFiles() []string {
	return []string{"fleet/v1/regional.proto", "fleet/v1/global.proto"}
}
