package sdk

import (
	"errors"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"

	"github.com/strata-state/strata/internal/abi"
)

// Reducer computes a region's complete set of records from its input rows.
// It reads in and adds every record to out; records it does not add are
// deleted from the global tier. Returning an error fails the run: the host
// keeps the region's last good records and reports the error.
type Reducer func(in *Input, out *Output) error

// Message is a protobuf message of generated reducer types (`strata
// reducer gen`): the methods encode and decode it without reflection.
type Message interface {
	// StrataUnmarshal replaces the message with the decoding of b;
	// strings and bytes fields alias b.
	StrataUnmarshal(b []byte) error
	// StrataAppend appends the message's encoding to b.
	StrataAppend(b []byte) []byte
	// StrataSize returns the length of the encoding.
	StrataSize() int
}

// Record is a message of a record type of the contract. Generated types
// of messages declared with option (strata.v1.record) implement it.
type Record interface {
	Message
	// StrataRecord returns the record name, e.g. "app_placements".
	StrataRecord() string
	// StrataKey returns the record's key, computed from its key fields.
	StrataKey() string
}

// registered is the module's reducer, set by Register in init.
var registered Reducer

// Register makes r the reducer of this module. Call it once, from init: the
// host runs init when it instantiates the module, before the first call.
// Register panics if r is nil or a reducer is already registered.
func Register(r Reducer) {
	if r == nil {
		panic("sdk: Register(nil)")
	}
	if registered != nil {
		panic("sdk: Register called twice: a module has one reducer")
	}
	registered = r
}

// Input is the input of one run: the region and the rows of each input
// table, still encoded. Decode them with Rows or Each. Decoded strings and
// bytes alias the host's buffer, which stays valid and unchanged for as
// long as they are referenced.
type Input struct {
	// Region is the region whose rows these are, e.g. "ord".
	Region string
	// Reducer is the reducer's name in the agent's configuration. For
	// logs; the records must not depend on it.
	Reducer string

	tables []abi.RawTable
}

// NewInput returns an Input over already encoded rows, for tests that call
// a Reducer directly; sdktest builds one from typed rows.
func NewInput(region string, tables map[string][][]byte) *Input {
	in := &Input{Region: region}
	names := make([]string, 0, len(tables))
	for name := range tables {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		req := abi.Request{Tables: []abi.Table{{Rows: tables[name]}}}
		enc := abi.AppendRequest(nil, &req)
		raw, _ := abi.DecodeRequestRaw(enc, new(abi.Request), nil)
		in.tables = append(in.tables, abi.RawTable{Name: name, Data: raw[0].Data})
	}
	return in
}

// Tables returns the names of the input tables, in configuration order.
func (in *Input) Tables() []string {
	names := make([]string, len(in.tables))
	for i, t := range in.tables {
		names[i] = t.Name
	}
	return names
}

// Raw returns the rows of table as binary protobuf messages, in key order.
// Do not modify them. The error names the configured inputs when table is
// not one of them.
func (in *Input) Raw(table string) ([][]byte, error) {
	data, err := in.data(table)
	if err != nil {
		return nil, err
	}
	n := 0
	for b := data; ; n++ {
		_, rest, ok, err := abi.NextRow(b)
		if err != nil {
			return nil, rowError(table, n, err)
		}
		if !ok {
			break
		}
		b = rest
	}
	rows := make([][]byte, 0, n)
	for b := data; ; {
		row, rest, ok, _ := abi.NextRow(b)
		if !ok {
			break
		}
		rows = append(rows, row)
		b = rest
	}
	return rows, nil
}

// data returns the encoded Table message of table.
func (in *Input) data(table string) ([]byte, error) {
	for _, t := range in.tables {
		if t.Name == table {
			return t.Data, nil
		}
	}
	return nil, errors.New("sdk: table " + strconv.Quote(table) + " is not an input of reducer " +
		strconv.Quote(in.Reducer) + " (inputs: " + strings.Join(in.Tables(), ", ") + "); add it to the reducer's inputs in agent.toml")
}

// Len returns the number of rows of table, or 0 when it is not an input.
func (in *Input) Len(table string) int {
	rows, _ := in.Raw(table)
	return len(rows)
}

// Rows decodes every row of table into a slice of messages of type M, the
// generated type of the table's message:
//
//	machines, err := sdk.Rows[fleetv1.Machine](in, "machines")
//
// All rows are decoded into one allocation.
func Rows[M any, P interface {
	*M
	Message
}](in *Input, table string) ([]M, error) {
	raw, err := in.Raw(table)
	if err != nil {
		return nil, err
	}
	out := make([]M, len(raw))
	for i, b := range raw {
		if err := P(&out[i]).StrataUnmarshal(b); err != nil {
			return nil, rowError(table, i, err)
		}
		if i&(yieldRows-1) == yieldRows-1 {
			Yield()
		}
	}
	return out, nil
}

// Each decodes the rows of table one at a time into one message and calls
// fn with it, in key order:
//
//	err := sdk.Each(in, "machines", func(m *fleetv1.Machine) error { ... })
//
// The message is reused: fn must not keep the pointer (or a message, list
// or map inside it) after it returns; strings and bytes are safe to keep.
// An error from fn stops Each and is returned.
func Each[M any, P interface {
	*M
	Message
}](in *Input, table string, fn func(P) error) error {
	data, err := in.data(table)
	if err != nil {
		return err
	}
	m := P(new(M))
	for i := 0; ; i++ {
		var b []byte
		if len(data) > 1 && data[0] == rowTag && data[1] < 0x80 && int(data[1])+2 <= len(data) {
			// The common case, inline: a row shorter than 128 bytes.
			n := int(data[1])
			b, data = data[2:n+2:n+2], data[n+2:]
		} else {
			row, rest, ok, err := abi.NextRow(data)
			if err != nil {
				return rowError(table, i, err)
			}
			if !ok {
				return nil
			}
			b, data = row, rest
		}
		if err := m.StrataUnmarshal(b); err != nil {
			return rowError(table, i, err)
		}
		if err := fn(m); err != nil {
			return err
		}
		if i&(yieldRows-1) == yieldRows-1 {
			Yield()
		}
	}
}

// rowTag is the tag of Table.rows (field 2, length-delimited).
const rowTag = 2<<3 | 2

// How often Rows, Each and Output yield, in rows and records.
const (
	yieldRows    = 4096
	yieldRecords = 1024
)

// Yield lets the Go runtime's other goroutines run, the garbage
// collector's among them. A Go reactor collects garbage only when it
// yields, so memory that a run allocates and drops would otherwise add up
// until the run ends. Rows, Each and Output.Add yield every few thousand
// rows or records; call Yield in other long loops that allocate.
func Yield() { runtime.Gosched() }

func rowError(table string, i int, err error) error {
	return errors.New("sdk: table " + table + ", row " + strconv.Itoa(i) + ": " + err.Error())
}

// Output collects the records of one run. Add each record once; the order
// does not matter (the SDK sorts them by record name and key).
type Output struct {
	records []abi.Record
	buf     []byte // backs the records' values
}

// Add adds the record r under its record name and key (r.StrataRecord,
// r.StrataKey). Add encodes r at once; r may be reused afterwards.
func (o *Output) Add(r Record) {
	o.AddAs(r.StrataRecord(), r.StrataKey(), r)
}

// AddAs adds m as the record called name with key, for messages whose
// types are not generated from the contract. The host checks name, key and
// message against the contract.
func (o *Output) AddAs(name, key string, m Message) {
	start := len(o.buf)
	o.buf = m.StrataAppend(o.buf)
	o.records = append(o.records, abi.Record{Name: name, Key: key, Value: o.buf[start:len(o.buf):len(o.buf)]})
	if len(o.records)&(yieldRecords-1) == 0 {
		Yield()
	}
}

// Len returns the number of records added so far.
func (o *Output) Len() int { return len(o.records) }

// encode appends the response of the records, sorted by name and key, to
// b, or reports a record added twice.
func (o *Output) encode(b []byte) ([]byte, error) {
	// Values added before o.buf grew point into older arrays, which the
	// records keep alive: they are still correct.
	recs := o.records
	slices.SortFunc(recs, func(a, b abi.Record) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	size := 0
	for i := range recs {
		if i > 0 && recs[i].Name == recs[i-1].Name && recs[i].Key == recs[i-1].Key {
			return nil, errors.New("sdk: record " + recs[i].Name + "/" + recs[i].Key + " added twice")
		}
		size += abi.RecordSize(&recs[i])
	}
	b = slices.Grow(b[:0], size)
	for i := range recs {
		b = abi.AppendRecord(b, &recs[i])
	}
	return b, nil
}

// Handle runs reducer r (nil: the registered one) on an encoded ABI request
// and returns the encoded response (sdk/abi/v1/abi.proto). The
// strata_reduce export calls it, and package sdktest calls it natively, so
// both run the same code. Plugin code does not call it. A panic of the
// reducer is recovered and reported as a response with panic set.
func Handle(r Reducer, request []byte) []byte {
	return handle(nil, r, request)
}

func handle(b []byte, reducer Reducer, request []byte) (resp []byte) {
	fail := func(msg string) []byte { return errorResponse(b, msg) }
	// One run at a time: the request, the input and the output are reused
	// from run to run, because every allocation costs (see Yield).
	req, in, out := runState()
	tables, err := abi.DecodeRequestRaw(request, req, in.tables[:0])
	if err != nil {
		return fail("sdk: " + err.Error())
	}
	if req.Version != abi.Version {
		return fail("sdk: request has ABI version " + strconv.Itoa(int(req.Version)) + ", this SDK speaks version " + strconv.Itoa(abi.Version))
	}
	if reducer == nil {
		reducer = registered
	}
	if reducer == nil {
		return fail("sdk: no reducer registered: call sdk.Register(yourReducer) in an init function of package main")
	}
	*in = Input{Region: req.Region, Reducer: req.Reducer, tables: tables}
	out.buf, out.records = out.buf[:0], out.records[:0]
	defer func() {
		if cap(out.buf) > keepBytes {
			out.buf = nil
		}
		if cap(out.records) > keepBytes/64 {
			out.records = nil
		}
	}()
	defer func() {
		if r := recover(); r != nil {
			resp = abi.AppendResponse(b[:0], &abi.Response{Error: "panic: " + panicText(r) + "\n\n" + string(debug.Stack()), Panic: true})
		}
	}()
	if err := reducer(in, out); err != nil {
		return fail(err.Error())
	}
	resp, err = out.encode(b[:0])
	if err != nil {
		return fail(err.Error())
	}
	return resp
}

// keepBytes bounds what a reused Output keeps between runs.
const keepBytes = 1 << 20

// errorResponse returns the response reporting msg, in b's array.
func errorResponse(b []byte, msg string) []byte {
	return abi.AppendResponse(b[:0], &abi.Response{Error: msg})
}

// panicText formats a recovered value without fmt.
func panicText(r any) string {
	switch v := r.(type) {
	case error:
		return v.Error()
	case string:
		return v
	case interface{ String() string }:
		return v.String()
	}
	return "(non-string panic value)"
}
