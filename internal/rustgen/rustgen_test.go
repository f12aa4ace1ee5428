package rustgen_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/strata-state/strata/contracts"
	"github.com/strata-state/strata/internal/reducertest"
	"github.com/strata-state/strata/internal/rustgen"
)

// TestExampleUpToDate: the Rust example's types are what gen writes for
// the example contract today.
func TestExampleUpToDate(t *testing.T) {
	got, err := rustgen.Generate(context.Background(), os.DirFS("../../contracts"), []string{"fleet/v1/regional.proto", "fleet/v1/global.proto"})
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("../../plugins/app-regions-rust/src/fleet.rs")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("plugins/app-regions-rust/src/fleet.rs is stale: in plugins/app-regions-rust run\n" +
			"  strata reducer gen --lang rust --contract ../../contracts -o src/fleet.rs fleet/v1/regional.proto fleet/v1/global.proto")
	}
}

// TestUnsupported: what the Rust types do not support is refused, naming
// the field or type.
func TestUnsupported(t *testing.T) {
	const head = "syntax = \"proto3\";\npackage a.v1;\n"
	for name, tc := range map[string]struct {
		files map[string]string
		want  string
	}{
		"map":    {map[string]string{"a.proto": head + "message M { map<string, int32> counts = 1; }"}, "a.v1.M.counts: map fields are not supported"},
		"oneof":  {map[string]string{"a.proto": head + "message M { oneof o { int32 x = 1; string y = 2; } }"}, "a.v1.M.x: oneof fields are not supported"},
		"any":    {map[string]string{"a.proto": head + "import \"google/protobuf/any.proto\";\nmessage M { google.protobuf.Any x = 1; }"}, "a.v1.M.x: well-known type google.protobuf.Any is not supported"},
		"shadow": {map[string]string{"a.proto": head + "message Result {}"}, "a.v1.Result is named Result in Rust"},
		"proto2": {map[string]string{"a.proto": "syntax = \"proto2\";\npackage a.v1;\nmessage M { optional int32 x = 1; }"}, "a.proto: only proto3 files are supported"},
		"collision": {map[string]string{
			"a.proto": head + "message M {}",
			"b.proto": "syntax = \"proto3\";\npackage b.v1;\nmessage M {}",
		}, "a.v1.M and b.v1.M are both named M in Rust"},
	} {
		t.Run(name, func(t *testing.T) {
			fsys := fstest.MapFS{}
			var files []string
			for n, content := range tc.files {
				fsys[n] = &fstest.MapFile{Data: []byte(content)}
				files = append(files, n)
			}
			if len(files) == 2 {
				files = []string{"a.proto", "b.proto"}
			}
			_, err := rustgen.Generate(context.Background(), fsys, files)
			if !errors.Is(err, rustgen.ErrUnsupported) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want %q", err, tc.want)
			}
		})
	}
}

// roundTripMain decodes each input line's message with the generated
// type, checks the Message methods against each other, and prints the
// type's encoding and key.
const roundTripMain = `mod kinds;
use kinds::*;
use std::io::BufRead;
use strata_reducer::{Message, Record, Table};

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|c| format!("{:02x}", c)).collect()
}

fn check<M: Message + std::fmt::Debug + PartialEq>(b: &[u8], reused: &mut M) -> (M, Vec<u8>) {
    let m = M::decode(b).unwrap();
    let enc = m.to_bytes();
    assert_eq!(enc.len(), m.encoded_len(), "encoded_len of {:?}", m);
    assert_eq!(M::decode(&enc).unwrap(), m, "decode(encode(m)) != m");
    reused.clear();
    reused.merge(b).unwrap();
    assert_eq!(*reused, m, "clear and merge differ from decode");
    (m, enc)
}

fn main() {
    let (mut s, mut l, mut o, mut t) = (Scalars::default(), Lists::default(), Optionals::default(), Tree::default());
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap();
        let (name, h) = line.split_once(' ').unwrap();
        let b = unhex(h);
        let (enc, key) = match name {
            "Scalars" => { let (m, e) = check(&b, &mut s); (e, Record::key(&m)) }
            "Lists" => { let (_, e) = check(&b, &mut l); (e, String::new()) }
            "Optionals" => { let (_, e) = check(&b, &mut o); (e, String::new()) }
            "Tree" => { let (m, e) = check(&b, &mut t); (e, Table::key(&m)) }
            _ => panic!("unknown message {}", name),
        };
        println!("{} {}", hex(&enc), key);
    }
}
`

// TestRoundTrip compiles the generated types of testdata/kinds with rustc
// and the crate strata-reducer (natively), encodes random messages of
// every kind with protobuf-go, and checks that the Rust types decode them
// and encode them back to equal messages, and compute the key as the
// contract does.
func TestRoundTrip(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles Rust")
	}
	rustc, err := exec.LookPath("rustc")
	if err != nil {
		reducertest.SkipNoRust(t, err)
	}
	files := []string{"kinds/v1/kinds.proto"}
	src, err := rustgen.Generate(context.Background(), os.DirFS("testdata"), files)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, content := range map[string][]byte{"kinds.rs": src, "main.rs": []byte(roundTripMain)} {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sdk, err := filepath.Abs("../../sdk/rust/src/lib.rs")
	if err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(rustc, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
			t.Fatalf("rustc %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("--edition", "2021", "--crate-type", "rlib", "--crate-name", "strata_reducer", "-o", "libstrata_reducer.rlib", sdk)
	run("--edition", "2021", "--extern", "strata_reducer=libstrata_reducer.rlib", "-o", "roundtrip", "main.rs")

	c, err := contracts.Compile(context.Background(), os.DirFS("testdata"), files)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var msgs []*dynamicpb.Message
	var in bytes.Buffer
	for i := range 2000 {
		name := []string{"Scalars", "Lists", "Optionals", "Tree"}[i%4]
		d, err := c.Files().FindDescriptorByName(protoreflect.FullName("kinds.v1." + name))
		if err != nil {
			t.Fatal(err)
		}
		m := dynamicpb.NewMessage(d.(protoreflect.MessageDescriptor))
		fill(rng, m, 0)
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
		fmt.Fprintf(&in, "%s %x\n", name, b)
	}
	cmd := exec.Command(filepath.Join(dir, "roundtrip"))
	cmd.Stdin = &in
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("roundtrip: %v\n%s", err, stderr.Bytes())
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	keys := 0
	for i := 0; sc.Scan(); i++ {
		h, key, _ := strings.Cut(sc.Text(), " ")
		want := msgs[i]
		b, err := hex.DecodeString(h)
		if err != nil {
			t.Fatal(err)
		}
		got := dynamicpb.NewMessage(want.Descriptor())
		if err := proto.Unmarshal(b, got); err != nil {
			t.Fatalf("message %d: protobuf decode of the Rust encoding: %v", i, err)
		}
		if !proto.Equal(got, want) {
			t.Fatalf("message %d differs after the round trip:\n got %v\nwant %v", i, got, want)
		}
		for _, s := range append(c.Tables(), c.Records()...) {
			if s.Desc.FullName() != want.Descriptor().FullName() {
				continue
			}
			wantKey, err := s.KeyOf(want)
			if err != nil {
				continue // the contract refuses it (an empty part, a "/"): no key to compare
			}
			keys++
			if key != wantKey {
				t.Fatalf("message %d: Rust key %q, contract key %q\n%v", i, key, wantKey, want)
			}
		}
		if i == len(msgs)-1 && keys < 100 {
			t.Fatalf("only %d keys compared", keys)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
}

// fill sets random fields of m, recursing into messages up to depth 3.
func fill(rng *rand.Rand, m protoreflect.Message, depth int) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if rng.IntN(3) == 0 || (fd.Message() != nil && depth >= 3) {
			continue
		}
		switch {
		case fd.IsList():
			l := m.Mutable(fd).List()
			for range rng.IntN(4) {
				if fd.Message() != nil {
					e := l.NewElement()
					fill(rng, e.Message(), depth+1)
					l.Append(e)
				} else {
					l.Append(scalar(rng, fd))
				}
			}
		case fd.Message() != nil:
			fill(rng, m.Mutable(fd).Message(), depth+1)
		default:
			m.Set(fd, scalar(rng, fd))
		}
	}
}

// scalar returns a random value of fd's kind, extremes included.
func scalar(rng *rand.Rand, fd protoreflect.FieldDescriptor) protoreflect.Value {
	pick := func(vs ...int64) int64 { return vs[rng.IntN(len(vs))] }
	switch fd.Kind() {
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(pick(0, 1, -1, 300, math.MaxInt32, math.MinInt32, rng.Int64())))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(pick(0, 1, -1, math.MaxInt64, math.MinInt64, rng.Int64()))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(pick(0, 1, 127, 128, math.MaxUint32, rng.Int64())))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64([]uint64{0, 1, math.MaxUint64, rng.Uint64()}[rng.IntN(4)])
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32([]float32{0, -1.5, math.MaxFloat32, float32(math.Inf(-1)), rng.Float32()}[rng.IntN(5)])
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64([]float64{0, -0.25, math.SmallestNonzeroFloat64, math.Inf(1), rng.Float64()}[rng.IntN(5)])
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(rng.IntN(2) == 0)
	case protoreflect.StringKind:
		return protoreflect.ValueOfString([]string{"", "web", "né ☃", "a/b", strings.Repeat("x", 200)}[rng.IntN(5)])
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([][]byte{{}, {0}, {0xff, 0x80}, bytes.Repeat([]byte{7}, 130)}[rng.IntN(4)])
	case protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(protoreflect.EnumNumber(pick(0, 1, 2, 7, -3)))
	}
	panic(fmt.Sprintf("kind %s", fd.Kind()))
}
