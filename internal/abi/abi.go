// Package abi encodes and decodes the envelopes of strata's reducer ABI
// (sdk/abi/v1/abi.proto, described in sdk/ABI.md), by hand on top of
// sdk/wire: the host and the Go SDK share this code, and the guest pays for
// neither protobuf reflection nor fmt. Decoders do not copy: the rows of a
// decoded Request and the values of a decoded Response alias the input.
package abi

import (
	"errors"
	"strconv"
	"unicode/utf8"

	"github.com/strata-state/strata/sdk/wire"
)

// Version is the ABI version this package speaks.
const Version = 1

// Names of the exports and imports of ABI v1.
const (
	// ExportMarker is exported by every ABI v1 module, as a function
	// without parameters or results; the host checks it before it
	// instantiates the module.
	ExportMarker = "strata_abi_v1"
	// MarkerPrefix starts the marker export of every ABI version.
	MarkerPrefix = "strata_abi_v"
	// ExportAlloc is strata_alloc(size i32) -> i32.
	ExportAlloc = "strata_alloc"
	// ExportReduce is strata_reduce(ptr i32, len i32) -> i64.
	ExportReduce = "strata_reduce"
	// ExportMemory is the module's linear memory.
	ExportMemory = "memory"
	// ExportInitialize is the WASI reactor initializer.
	ExportInitialize = "_initialize"
	// ImportModule is the module name of strata's host functions.
	ImportModule = "strata"
	// ImportLog is log(level i32, ptr i32, len i32).
	ImportLog = "log"
)

// Field numbers of the envelopes.
const (
	reqVersion, reqReducer, reqRegion, reqTables int32 = 1, 2, 3, 4
	tableName, tableRows                         int32 = 1, 2
	respRecords, respError, respPanic            int32 = 1, 2, 3
	recName, recKey, recValue                    int32 = 1, 2, 3
)

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("abi: malformed message")

// Table is the rows of one input table.
type Table struct {
	// Name is the table name, e.g. "machines".
	Name string
	// Rows are binary-encoded messages of the table's type.
	Rows [][]byte
}

// Request is the input of one reduce call.
type Request struct {
	// Version is the ABI version.
	Version uint32
	// Reducer is the reducer's configured name.
	Reducer string
	// Region is the region of the rows.
	Region string
	// Tables holds one entry per input table.
	Tables []Table
}

// Record is one output record.
type Record struct {
	// Name is the record type, e.g. "app_placements".
	Name string
	// Key is the record key as text.
	Key string
	// Value is the binary-encoded message.
	Value []byte
}

// Response is the output of one reduce call.
type Response struct {
	// Records are the region's records; ignored when Error is set.
	Records []Record
	// Error, when not empty, is the reducer's failure.
	Error string
	// Panic is true when Error reports a recovered panic.
	Panic bool
}

// RequestSize returns the length of r's encoding.
func RequestSize(r *Request) int {
	n := 0
	if r.Version != 0 {
		n += 1 + wire.SizeVarint(uint64(r.Version))
	}
	n += sizeString(r.Reducer) + sizeString(r.Region)
	for i := range r.Tables {
		n += 1 + wire.SizeBytes(tableSize(&r.Tables[i]))
	}
	return n
}

func sizeString(s string) int {
	if s == "" {
		return 0
	}
	return 1 + wire.SizeBytes(len(s))
}

func tableSize(t *Table) int {
	n := sizeString(t.Name)
	for _, row := range t.Rows {
		n += 1 + wire.SizeBytes(len(row))
	}
	return n
}

// AppendRequest appends the encoding of r to b.
func AppendRequest(b []byte, r *Request) []byte {
	if r.Version != 0 {
		b = wire.AppendTag(b, reqVersion, wire.VarintType)
		b = wire.AppendVarint(b, uint64(r.Version))
	}
	b = appendString(b, reqReducer, r.Reducer)
	b = appendString(b, reqRegion, r.Region)
	for i := range r.Tables {
		t := &r.Tables[i]
		b = wire.AppendTag(b, reqTables, wire.BytesType)
		b = wire.AppendVarint(b, uint64(tableSize(t)))
		b = appendString(b, tableName, t.Name)
		for _, row := range t.Rows {
			b = append(b, byte(tableRows<<3|int32(wire.BytesType)))
			b = wire.AppendBytes(b, row)
		}
	}
	return b
}

func appendString(b []byte, num int32, s string) []byte {
	if s == "" {
		return b
	}
	b = wire.AppendTag(b, num, wire.BytesType)
	return wire.AppendString(b, s)
}

// DecodeRequest decodes a Request. Row bytes alias b. Unknown fields are
// skipped, so that a newer host may add fields within version 1.
func DecodeRequest(b []byte) (*Request, error) {
	r := &Request{}
	err := fields(b, func(num int32, typ wire.Type, v uint64, data []byte) error {
		switch {
		case num == reqVersion && typ == wire.VarintType:
			r.Version = uint32(v)
		case num == reqReducer && typ == wire.BytesType:
			r.Reducer = string(data)
		case num == reqRegion && typ == wire.BytesType:
			r.Region = string(data)
		case num == reqTables && typ == wire.BytesType:
			t, err := decodeTable(data)
			if err != nil {
				return err
			}
			r.Tables = append(r.Tables, t)
		}
		return nil
	})
	if err != nil {
		return nil, malformed("request", err)
	}
	return r, nil
}

// RawTable is a table of a request whose rows are not split yet: Data is
// the encoded Table message; NextRow walks its rows.
type RawTable struct {
	Name string
	Data []byte
}

// DecodeRequestRaw is DecodeRequest without splitting the tables' rows,
// which the guest then walks with NextRow once, without allocating. Its
// strings alias b, and tables are appended to the tables given (the guest
// reuses one slice from call to call).
func DecodeRequestRaw(b []byte, r *Request, tables []RawTable) ([]RawTable, error) {
	*r = Request{}
	err := fields(b, func(num int32, typ wire.Type, v uint64, data []byte) error {
		switch {
		case num == reqVersion && typ == wire.VarintType:
			r.Version = uint32(v)
		case num == reqReducer && typ == wire.BytesType:
			r.Reducer = wire.String(data)
		case num == reqRegion && typ == wire.BytesType:
			r.Region = wire.String(data)
		case num == reqTables && typ == wire.BytesType:
			t := RawTable{Data: data}
			err := fields(data, func(num int32, typ wire.Type, _ uint64, data []byte) error {
				if num == tableName && typ == wire.BytesType {
					t.Name = wire.String(data)
					return errStop
				}
				return nil
			})
			if err != nil && err != errStop {
				return err
			}
			tables = append(tables, t)
		}
		return nil
	})
	if err != nil {
		return tables, malformed("request", err)
	}
	return tables, nil
}

var errStop = errors.New("stop")

// NextRow returns the first row in b, the rest of an encoded Table message,
// and the bytes after it; ok is false when b holds no more rows. Other
// fields are skipped. It has no loop for consecutive rows: see sdk/wire.
func NextRow(b []byte) (row, rest []byte, ok bool, err error) {
	for len(b) > 0 {
		if b[0] == byte(tableRows<<3|int32(wire.BytesType)) && len(b) > 1 {
			n := int(b[1])
			if n < 0x80 {
				if len(b) < n+2 {
					return nil, nil, false, malformed("request", wire.ErrTruncated)
				}
				return b[2 : n+2 : n+2], b[n+2:], true, nil
			}
			data, n, err := wire.ConsumeBytes(b[1:])
			if err != nil {
				return nil, nil, false, malformed("request", err)
			}
			return data, b[1+n:], true, nil
		}
		_, typ, n, err := wire.ConsumeTag(b)
		if err != nil {
			return nil, nil, false, malformed("request", err)
		}
		m, err := wire.Skip(b[n:], typ)
		if err != nil {
			return nil, nil, false, malformed("request", err)
		}
		b = b[n+m:]
	}
	return nil, nil, false, nil
}

func decodeTable(b []byte) (Table, error) {
	var t Table
	// Count rows first so that Rows is allocated once: tables hold up to
	// hundreds of thousands of rows.
	n := 0
	err := fields(b, func(num int32, typ wire.Type, _ uint64, _ []byte) error {
		if num == tableRows && typ == wire.BytesType {
			n++
		}
		return nil
	})
	if err != nil {
		return t, err
	}
	t.Rows = make([][]byte, 0, n)
	err = fields(b, func(num int32, typ wire.Type, _ uint64, data []byte) error {
		switch {
		case num == tableName && typ == wire.BytesType:
			t.Name = string(data)
		case num == tableRows && typ == wire.BytesType:
			t.Rows = append(t.Rows, data)
		}
		return nil
	})
	return t, err
}

// AppendResponse appends the encoding of r to b.
func AppendResponse(b []byte, r *Response) []byte {
	for i := range r.Records {
		b = AppendRecord(b, &r.Records[i])
	}
	b = appendString(b, respError, r.Error)
	if r.Panic {
		b = wire.AppendTag(b, respPanic, wire.VarintType)
		b = wire.AppendVarint(b, 1)
	}
	return b
}

func recordBody(rec *Record) int {
	n := sizeString(rec.Name) + sizeString(rec.Key)
	if len(rec.Value) > 0 {
		n += 1 + wire.SizeBytes(len(rec.Value))
	}
	return n
}

// RecordSize returns the length of AppendRecord's output for rec.
func RecordSize(rec *Record) int { return 1 + wire.SizeBytes(recordBody(rec)) }

// AppendRecord appends rec as one `records` field of a Response, so that
// a Response can be built one record at a time.
func AppendRecord(b []byte, rec *Record) []byte {
	n := recordBody(rec)
	b = wire.AppendTag(b, respRecords, wire.BytesType)
	b = wire.AppendVarint(b, uint64(n))
	b = appendString(b, recName, rec.Name)
	b = appendString(b, recKey, rec.Key)
	if len(rec.Value) > 0 {
		b = wire.AppendTag(b, recValue, wire.BytesType)
		b = wire.AppendBytes(b, rec.Value)
	}
	return b
}

// DecodeResponse decodes a Response, strictly: a field number or wire type
// that ABI v1 does not declare is an error, as is an invalid encoding.
// Values alias b.
func DecodeResponse(b []byte) (*Response, error) {
	r := &Response{}
	err := fields(b, func(num int32, typ wire.Type, v uint64, data []byte) error {
		switch {
		case num == respRecords && typ == wire.BytesType:
			rec, err := decodeRecord(data)
			if err != nil {
				return errors.New("record " + strconv.Itoa(len(r.Records)) + ": " + err.Error())
			}
			r.Records = append(r.Records, rec)
		case num == respError && typ == wire.BytesType:
			if !utf8.Valid(data) {
				return errors.New("error: not valid UTF-8 (abi.proto declares it a string)")
			}
			r.Error = string(data)
		case num == respPanic && typ == wire.VarintType:
			r.Panic = v != 0
		default:
			return unexpected(num, typ)
		}
		return nil
	})
	if err != nil {
		return nil, malformed("response", err)
	}
	return r, nil
}

func decodeRecord(b []byte) (Record, error) {
	var rec Record
	err := fields(b, func(num int32, typ wire.Type, _ uint64, data []byte) error {
		switch {
		case num == recName && typ == wire.BytesType:
			if !utf8.Valid(data) {
				return errors.New("name: not valid UTF-8 (abi.proto declares it a string)")
			}
			rec.Name = string(data)
		case num == recKey && typ == wire.BytesType:
			if !utf8.Valid(data) {
				return errors.New("key: not valid UTF-8 (abi.proto declares it a string)")
			}
			rec.Key = string(data)
		case num == recValue && typ == wire.BytesType:
			rec.Value = data
		default:
			return unexpected(num, typ)
		}
		return nil
	})
	return rec, err
}

func unexpected(num int32, typ wire.Type) error {
	return errors.New("unexpected field " + strconv.Itoa(int(num)) + " (wire type " + strconv.Itoa(int(typ)) + ")")
}

// MalformedError is a decoding error; it wraps ErrMalformed.
type MalformedError struct {
	// What is "request" or "response".
	What string
	// Err is the cause.
	Err error
}

// Error returns e.g. "abi: malformed response: record 2: wire: truncated input".
func (e *MalformedError) Error() string { return "abi: malformed " + e.What + ": " + e.Err.Error() }

// Unwrap returns ErrMalformed and the cause.
func (e *MalformedError) Unwrap() []error { return []error{ErrMalformed, e.Err} }

func malformed(what string, err error) error { return &MalformedError{What: what, Err: err} }

// fields calls fn for each field of the message b: varints with v set,
// length-delimited fields with data set (aliasing b). Fixed-size fields
// are skipped over and passed with neither, so that callers can reject
// them.
func fields(b []byte, fn func(num int32, typ wire.Type, v uint64, data []byte) error) error {
	for len(b) > 0 {
		num, typ, n, err := wire.ConsumeTag(b)
		if err != nil {
			return err
		}
		b = b[n:]
		var (
			v    uint64
			data []byte
		)
		switch typ {
		case wire.VarintType:
			v, n, err = wire.ConsumeVarint(b)
		case wire.BytesType:
			data, n, err = wire.ConsumeBytes(b)
		default:
			n, err = wire.Skip(b, typ)
		}
		if err != nil {
			return errors.New("field " + strconv.Itoa(int(num)) + ": " + err.Error())
		}
		b = b[n:]
		if err := fn(num, typ, v, data); err != nil {
			return err
		}
	}
	return nil
}
