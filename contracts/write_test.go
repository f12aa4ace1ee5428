package contracts

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// pipeProto is a contract for the pipeline's tests: a table with
// regional_only fields at every depth and through lists and maps, and a
// record with a composite key, limits, nesting, lists, maps and bytes.
const pipeProto = `syntax = "proto3";
package pipe.v1;
import "buf/validate/validate.proto";
import "strata/v1/options.proto";

message Host {
  option (strata.v1.table) = {name: "hosts", key: ["id"]};
  string id = 1;
  string name = 2 [(strata.v1.regional_only) = true];
  Net net = 3;
  repeated Net nets = 4;
  map<string, Net> by_if = 5;
  Secret secret = 6 [(strata.v1.regional_only) = true];
  repeated string tags = 7 [(strata.v1.regional_only) = true];
  bytes token = 8 [(strata.v1.regional_only) = true];
  int64 port = 9 [(strata.v1.regional_only) = true];
  string zone = 10;
}

message Net {
  string ip = 1 [(strata.v1.regional_only) = true];
  string zone = 2;
  Net via = 3;
}

message Secret {
  string a = 1;
  map<string, string> kv = 2;
}

message Summary {
  option (strata.v1.record) = {name: "summaries", key: ["app", "zone"], max_per_region: 3, max_bytes: 64};
  string app = 1 [(buf.validate.field).string = {min_len: 1, pattern: "^[a-z]+$"}];
  string zone = 2;
  Detail detail = 3;
  repeated Detail details = 4;
  map<string, Detail> by = 5;
  bytes blob = 6;
  repeated int32 counts = 7;
}

message Detail {
  string note = 1;
  Detail next = 2;
}
`

var pipeOnce = sync.OnceValues(func() (*Contract, error) {
	fsys := fstest.MapFS{"pipe/v1/pipe.proto": {Data: []byte(pipeProto)}}
	return Compile(context.Background(), fsys, []string{"pipe/v1/pipe.proto"})
})

func pipe(tb testing.TB) *Contract {
	tb.Helper()
	c, err := pipeOnce()
	if err != nil {
		tb.Fatalf("compile pipe contract: %v", err)
	}
	return c
}

// encode decodes JSON into a message of s and returns its wire form.
func encode(tb testing.TB, s *Schema, js string) []byte {
	tb.Helper()
	m, err := s.DecodeJSON([]byte(js))
	if err != nil {
		tb.Fatalf("%s: %v", js, err)
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// rowOf decodes JSON into a row of table s.
func rowOf(tb testing.TB, s *Schema, js string) *dynamicpb.Message {
	tb.Helper()
	m, err := s.DecodeJSON([]byte(js))
	if err != nil {
		tb.Fatalf("%s: %v", js, err)
	}
	return m
}

func appendField(b []byte, num protowire.Number, typ protowire.Type, v uint64) []byte {
	b = protowire.AppendTag(b, num, typ)
	switch typ {
	case protowire.VarintType:
		return protowire.AppendVarint(b, v)
	case protowire.Fixed32Type:
		return protowire.AppendFixed32(b, uint32(v))
	case protowire.Fixed64Type:
		return protowire.AppendFixed64(b, v)
	}
	return protowire.AppendBytes(b, nil)
}

func TestCheckWrite(t *testing.T) {
	c := pipe(t)
	sum := record(t, c, "summaries")
	hosts := table(t, c, "hosts")
	valid := encode(t, sum, `{"app": "web", "zone": "z1", "detail": {"note": "ok"}}`)

	leaks := NewLeakSet()
	if err := leaks.Collect(hosts, rowOf(t, hosts, `{"id": "h1", "name": "host-1.ord", "zone": "z1",
		"net": {"ip": "10.0.0.1", "via": {"ip": "10.9.9.9"}},
		"byIf": {"eth0": {"ip": "fd00::1", "zone": "z2"}}}`)); err != nil {
		t.Fatal(err)
	}
	// Values of fields that are not regional_only are not collected.
	if got := leaks.Len(); got != 4 {
		t.Fatalf("collected %d values, want 4: %v", got, leaks.values)
	}

	base := Write{Record: "summaries", Key: "web/z1", Region: "ord", Writer: "ord", Value: valid, Count: 1}
	unknownTop := appendField(slices.Clone(valid), 9, protowire.VarintType, 1)
	unknownDeep := encode(t, sum, `{"app": "web", "zone": "z1"}`)
	inner := appendField(protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "n"), 7, protowire.VarintType, 1)
	unknownDeep = protowire.AppendBytes(protowire.AppendTag(unknownDeep, 4, protowire.BytesType), inner)
	wrongWire := appendField(encode(t, sum, `{"app": "web", "zone": "z1"}`), 2, protowire.VarintType, 5)
	big := encode(t, sum, `{"app": "web", "zone": "z1", "blob": "`+strings.Repeat("QUFB", 20)+`"}`)

	for _, tc := range []struct {
		name  string
		edit  func(w *Write)
		rule  string
		field string
		text  string // in Error()
	}{
		{"valid", func(w *Write) {}, "", "", ""},
		{"unknown record", func(w *Write) { w.Record = "nope" }, RuleUnknownRecord, "", `the contract has no record type "nope"`},
		{"garbage", func(w *Write) { w.Value = []byte{0xff} }, RuleDecode, "", "not protobuf wire format"},
		{"truncated nested", func(w *Write) { w.Value = valid[:len(valid)-1] }, RuleDecode, "", "not protobuf wire format"},
		{"bad utf-8", func(w *Write) {
			w.Value = protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "\xff")
		}, RuleDecode, "", "invalid UTF-8"},
		{"unknown top-level field", func(w *Write) { w.Value = unknownTop }, RuleUnknownField, "#9", "unknown field number 9 in pipe.v1.Summary"},
		{"unknown nested field", func(w *Write) { w.Value = unknownDeep }, RuleUnknownField, "details.#7", "unknown field number 7 in pipe.v1.Detail"},
		{"wrong wire type", func(w *Write) { w.Value = wrongWire }, RuleUnknownField, "#2", "does not match field zone (string)"},
		{"validate", func(w *Write) {
			w.Value = encode(t, sum, `{"app": "Web", "zone": "z1"}`)
			w.Key = "Web/z1"
		}, "validate:string.pattern", "app", "does not match regex pattern"},
		{"key mismatch", func(w *Write) { w.Key = "web/z2" }, RuleKeyMismatch, "zone", `message has "z1", key is "z2"`},
		{"key parts", func(w *Write) { w.Key = "web" }, RuleKeyMismatch, "", `"web" has 1 parts, want 2 (app/zone)`},
		{"empty key field", func(w *Write) {
			w.Value = encode(t, sum, `{"app": "web"}`)
			w.Key = "web/"
		}, RuleKeyMismatch, "zone", "is empty"},
		{"wrong region", func(w *Write) { w.Writer = "ams" }, RuleWrongRegion, "", `written by region "ams", but the record belongs to region "ord"`},
		{"no region", func(w *Write) { w.Region, w.Writer = "", "" }, RuleWrongRegion, "", "names no owning region"},
		{"too large", func(w *Write) { w.Value = big }, RuleTooLarge, "", "max_bytes is 64"},
		{"too many", func(w *Write) { w.Count = 4 }, RuleTooMany, "", "region ord would hold 4 records, max_per_region is 3"},
		{"at the limit", func(w *Write) { w.Count = 3 }, "", "", ""},
		{"rate", func(w *Write) { w.Budget = NewBudget(0, 1); w.Budget.Allow(time.Time{}) }, RuleRate, "", "spent its write budget"},
		{"leak top level", func(w *Write) {
			w.Value = encode(t, sum, `{"app": "web", "zone": "z1", "blob": "`+b64("10.0.0.1")+`"}`)
			w.Leaks = leaks
		}, RuleLeak, "blob", "equals the value of regional_only field hosts.net.ip of an input row"},
		{"leak nested in a list", func(w *Write) {
			w.Value = encode(t, sum, `{"app": "web", "zone": "z1", "details": [{"note": "a"}, {"next": {"note": "host-1.ord"}}]}`)
			w.Leaks = leaks
		}, RuleLeak, "details.next.note", "regional_only field hosts.name"},
		{"leak in a map key", func(w *Write) {
			w.Value = encode(t, sum, `{"app": "web", "zone": "z1", "by": {"fd00::1": {}}}`)
			w.Leaks = leaks
		}, RuleLeak, "by", "regional_only field hosts.by_if.ip"},
		{"leak in a map value", func(w *Write) {
			w.Value = encode(t, sum, `{"app": "web", "zone": "z1", "by": {"k": {"note": "10.9.9.9"}}}`)
			w.Leaks = leaks
		}, RuleLeak, "by.note", "regional_only field hosts.net.ip"},
		{"no leak: only regional_only values count", func(w *Write) { w.Leaks = leaks }, "", "", ""},
		{"leak guard runs last", func(w *Write) {
			w.Value = encode(t, sum, `{"app": "web", "zone": "z1", "blob": "`+b64("10.0.0.1")+`"}`)
			w.Leaks = leaks
			w.Writer = "ams"
		}, RuleWrongRegion, "", ""},
		{"delete", func(w *Write) { w.Delete, w.Value = true, nil }, "", "", ""},
		{"delete of a bad key", func(w *Write) { w.Delete, w.Key = true, "web" }, RuleKeyMismatch, "", "has 1 parts"},
		{"delete from another region", func(w *Write) { w.Delete, w.Writer = true, "ams" }, RuleWrongRegion, "", ""},
		{"delete is rate limited", func(w *Write) {
			w.Delete, w.Budget = true, NewBudget(0, 1)
			w.Budget.Allow(time.Time{})
		}, RuleRate, "", ""},
		{"delete of an unknown record", func(w *Write) { w.Delete, w.Record = true, "nope" }, RuleUnknownRecord, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := base
			tc.edit(&w)
			err := c.CheckWrite(w)
			if tc.rule == "" {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			var re *RejectError
			if !errors.As(err, &re) {
				t.Fatalf("error = %v (%T), want *RejectError", err, err)
			}
			if !errors.Is(err, ErrRejected) {
				t.Errorf("errors.Is(err, ErrRejected) = false")
			}
			if re.Rule != tc.rule || re.Field != tc.field {
				t.Errorf("rule, field = %q, %q; want %q, %q (%v)", re.Rule, re.Field, tc.rule, tc.field, err)
			}
			if re.Record != w.Record || re.Key != w.Key || re.Region != w.Region {
				t.Errorf("record, key, region = %q, %q, %q", re.Record, re.Key, re.Region)
			}
			if !strings.Contains(err.Error(), tc.text) || !strings.Contains(err.Error(), "["+tc.rule+"]") {
				t.Errorf("Error() = %q, want it to contain %q and the rule", err, tc.text)
			}
			if got, want := re.Reason(), strings.SplitN(tc.rule, ":", 2)[0]; got != want {
				t.Errorf("Reason() = %q, want %q", got, want)
			}
		})
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestCheckWriteValidationDetails checks that a rejection by protovalidate
// carries every violation.
func TestCheckWriteValidationDetails(t *testing.T) {
	c := shop(t)
	tallies := record(t, c, "tallies")
	b := encode(t, tallies, `{"shop": "s", "low": 5, "high": 1}`)
	err := c.CheckWrite(Write{Record: "tallies", Key: "s", Region: "r", Writer: "r", Value: b})
	var re *RejectError
	if !errors.As(err, &re) || re.Rule != "validate:tally.bounds" || re.Field != "" {
		t.Fatalf("error = %v, want validate:tally.bounds on the message", err)
	}
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Violations) != 1 || ve.Violations[0].Message != "low must not exceed high" {
		t.Errorf("violations = %+v", ve)
	}
}

// TestCheckWriteReusesMessages checks that a message returned to the pool
// carries nothing into the next write.
func TestCheckWriteReusesMessages(t *testing.T) {
	c := pipe(t)
	sum := record(t, c, "summaries")
	full := encode(t, sum, `{"app": "web", "zone": "z1", "details": [{"note": "a"}], "counts": [1, 2]}`)
	empty := encode(t, sum, `{"app": "web"}`)
	for range 3 {
		if err := c.CheckWrite(Write{Record: "summaries", Key: "web/z1", Region: "r", Writer: "r", Value: full}); err != nil {
			t.Fatal(err)
		}
		// Were zone kept from the previous write, the key would match.
		err := c.CheckWrite(Write{Record: "summaries", Key: "web/z1", Region: "r", Writer: "r", Value: empty})
		var re *RejectError
		if !errors.As(err, &re) || re.Rule != RuleKeyMismatch {
			t.Fatalf("error = %v, want key_mismatch", err)
		}
	}
}

func TestLeakSetCollect(t *testing.T) {
	c := pipe(t)
	hosts := table(t, c, "hosts")
	l := NewLeakSet()
	row := rowOf(t, hosts, `{"id": "h1", "name": "n", "zone": "z",
		"net": {"ip": "ip-net", "zone": "z-net", "via": {"ip": "ip-via", "via": {"ip": "ip-via2"}}},
		"nets": [{"ip": "ip-list"}, {"ip": ""}],
		"byIf": {"eth0": {"ip": "ip-map"}},
		"secret": {"a": "sa", "kv": {"sk": "sv"}},
		"tags": ["t1", "t2"], "token": "`+b64("tok")+`", "port": 22}`)
	if err := l.Collect(hosts, row); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"n":       "hosts.name",
		"ip-net":  "hosts.net.ip",
		"ip-via":  "hosts.net.ip", // through a recursive type: its first path
		"ip-via2": "hosts.net.ip",
		"ip-list": "hosts.nets.ip",
		"ip-map":  "hosts.by_if.ip",
		"sa":      "hosts.secret",
		"sk":      "hosts.secret",
		"sv":      "hosts.secret",
		"t1":      "hosts.tags",
		"t2":      "hosts.tags",
		"tok":     "hosts.token",
	}
	if fmt.Sprint(l.values) != fmt.Sprint(want) {
		t.Errorf("collected\n%v\nwant\n%v", l.values, want)
	}

	if err := l.Collect(record(t, c, "summaries"), dynamicpb.NewMessage(record(t, c, "summaries").Desc)); err == nil {
		t.Error("Collect accepted a record")
	}
	if err := l.Collect(hosts, dynamicpb.NewMessage(record(t, c, "summaries").Desc)); !errors.Is(err, ErrWrongType) {
		t.Errorf("Collect of a wrong type = %v, want ErrWrongType", err)
	}

	// A table without regional_only fields collects nothing.
	machines := table(t, shop(t), "stock")
	l2 := NewLeakSet()
	if err := l2.Collect(machines, rowOf(t, machines, `{"shop": "s", "tags": ["a"]}`)); err != nil || l2.Len() != 0 {
		t.Errorf("Collect = %v, %d values; want none", err, l2.Len())
	}
}

func TestBudget(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := NewBudget(2, 3) // 2 per second, burst 3
	for i := range 3 {
		if !b.Allow(t0) {
			t.Fatalf("write %d of the burst refused", i)
		}
	}
	if b.Allow(t0) {
		t.Fatal("a fourth write at once allowed")
	}
	if b.Allow(t0.Add(400 * time.Millisecond)) {
		t.Fatal("allowed after 0.4s (0.8 tokens)")
	}
	if !b.Allow(t0.Add(500 * time.Millisecond)) {
		t.Fatal("refused after 0.5s (1 token)")
	}
	// Time going backwards adds nothing.
	if b.Allow(t0) {
		t.Fatal("allowed after the clock went back")
	}
	// The bucket never holds more than the burst.
	if got := b.Tokens(t0.Add(time.Hour)); got != 3 {
		t.Errorf("tokens after an hour = %v, want 3", got)
	}
	z := NewBudget(0, 0)
	if !z.Allow(t0) || z.Allow(t0.Add(time.Hour)) {
		t.Error("a zero-rate budget of burst 0 must allow exactly one write")
	}
}

// TestCheckWriteConcurrent runs the pipeline from several goroutines, with
// the pool and a shared budget; run it with -race.
func TestCheckWriteConcurrent(t *testing.T) {
	c := pipe(t)
	sum := record(t, c, "summaries")
	good := encode(t, sum, `{"app": "web", "zone": "z1", "details": [{"note": "a"}]}`)
	bad := encode(t, sum, `{"app": "web", "zone": "z2"}`)
	budget := NewBudget(0, 100)
	leaks := NewLeakSet()
	leaks.Add("secret", "hosts.name")
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for range 4 {
		wg.Go(func() {
			for i := range 50 {
				w := Write{Record: "summaries", Key: "web/z1", Region: "r", Writer: "r", Value: good, Budget: budget, Leaks: leaks}
				if i%2 == 1 {
					w.Value = bad
				}
				err := c.CheckWrite(w)
				switch {
				case err == nil:
					mu.Lock()
					allowed++
					mu.Unlock()
				case i%2 == 0 && !errors.Is(err, ErrRejected):
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if allowed != 100 {
		t.Errorf("%d writes allowed, want the budget's 100", allowed)
	}
}

// FuzzCheckWrite feeds outside bytes, as a peer could send them, to the
// pipeline of a record with nesting, lists, maps and bytes. It must never
// panic; a rejection is a *RejectError; an accepted value decodes with
// DecodeBinary to a message that holds no unknown field at any depth (the
// wire walk and the decoder agree).
func FuzzCheckWrite(f *testing.F) {
	c := pipe(f)
	sum := record(f, c, "summaries")
	f.Add(encode(f, sum, `{"app": "web", "zone": "z1", "details": [{"next": {"note": "x"}}], "by": {"k": {}}, "counts": [1, 2]}`))
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x03, 'w', 'e', 'b', 0x12, 0x02, 'z', '1', 0x48, 0x01})
	f.Add([]byte{0x0a, 0x03, 'w', 'e', 'b', 0x12, 0x02, 'z', '1', 0x3a, 0x02, 0x01, 0x02}) // packed counts
	f.Add([]byte{0x0a, 0x03, 'w', 'e', 'b', 0x12, 0x02, 'z', '1', 0x23, 0x24})             // a group
	leaks := NewLeakSet()
	leaks.Add("x", "hosts.name")
	f.Fuzz(func(t *testing.T, b []byte) {
		err := c.CheckWrite(Write{Record: "summaries", Key: "web/z1", Region: "r", Writer: "r", Value: b, Leaks: leaks})
		var re *RejectError
		if err != nil && !errors.As(err, &re) {
			t.Fatalf("error %v is %T, want *RejectError", err, err)
		}
		if err != nil && re.Rule != RuleUnknownField && re.Rule != RuleDecode {
			return
		}
		m, derr := sum.DecodeBinary(b)
		if (derr == nil) != (err == nil || re.Rule != RuleUnknownField && re.Rule != RuleDecode) {
			t.Fatalf("CheckWrite: %v; DecodeBinary: %v", err, derr)
		}
		if derr == nil && hasUnknown(m) {
			t.Fatalf("accepted a value with unknown fields: %x", b)
		}
	})
}

// hasUnknown reports whether m holds unknown fields at any depth.
func hasUnknown(m protoreflect.Message) bool {
	if len(m.GetUnknown()) > 0 {
		return true
	}
	found := false
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
			if fd.MapValue().Message() != nil {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					found = found || hasUnknown(mv.Message())
					return !found
				})
			}
		case fd.Message() == nil:
		case fd.IsList():
			for i := range v.List().Len() {
				found = found || hasUnknown(v.List().Get(i).Message())
			}
		default:
			found = hasUnknown(v.Message())
		}
		return !found
	})
	return found
}
