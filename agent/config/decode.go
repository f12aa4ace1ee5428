package config

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/strata-state/strata/internal/levenshtein"
)

// decodeTOML parses data into its generic form: tables as map[string]any,
// arrays as []any or, for [[arrays]] of tables, []map[string]any.
func decodeTOML(data []byte) (raw map[string]any, err error) {
	defer func() {
		// The parser recovers its own ParseError panics and re-panics
		// anything else; bad input must not crash the agent.
		if r := recover(); r != nil {
			raw, err = nil, fmt.Errorf("toml parser failed: %v", r)
		}
	}()
	_, err = toml.Decode(string(data), &raw)
	return raw, err
}

// decoder copies the generic TOML tree into a Config by the toml tags of its
// fields, matching key names exactly, and collects a Problem for every key
// it cannot place and every value of the wrong type or form.
//
// # Why not toml.Decode into the Config
//
// BurntSushi/toml stops at the first bad value (and which one is first
// depends on map order), and it matches keys to fields case-insensitively,
// so `Region = "x"` would be accepted and never show up in
// MetaData.Undecoded. Walking the tree ourselves reports every problem at
// once and keeps keys case-sensitive, as TOML is.
type decoder struct {
	lines    keyLines
	problems []Problem
	bad      map[string]bool // paths with a decoding problem
}

func (d *decoder) invalid(path, format string, args ...any) {
	d.bad[path] = true
	d.problems = append(d.problems, Problem{
		Line: d.lines.lineOf(path),
		Key:  path,
		Msg:  fmt.Sprintf(format, args...),
		Kind: ErrInvalid,
	})
}

var (
	durationType = reflect.TypeFor[Duration]()
	sizeType     = reflect.TypeFor[Size]()
)

// table decodes the table raw, at path, into the struct rv.
func (d *decoder) table(raw map[string]any, rv reflect.Value, path string) {
	fields := tomlFields(rv.Type())
	for _, k := range slices.Sorted(maps.Keys(raw)) {
		i, ok := fields[k]
		if !ok {
			d.unknown(raw[k], path, k, fields)
			continue
		}
		d.value(raw[k], rv.Field(i), child(path, k))
	}
}

// unknown records a key that the table at path does not have.
func (d *decoder) unknown(v any, path, key string, fields map[string]int) {
	p := child(path, key)
	var msg string
	switch v.(type) {
	case map[string]any:
		msg = fmt.Sprintf("unknown table [%s]", p)
	case []map[string]any:
		msg = fmt.Sprintf("unknown table [[%s]]", p)
	default:
		switch {
		case path == "":
			msg = fmt.Sprintf("unknown key %q", key)
		case strings.HasSuffix(path, "]"):
			msg = fmt.Sprintf("unknown key %q in %s", key, path)
		default:
			msg = fmt.Sprintf("unknown key %q in [%s]", key, path)
		}
	}
	msg += suggest(key, fields)
	line, ok := d.lines[p]
	if !ok {
		line = d.lines.lineOf(path)
	}
	d.problems = append(d.problems, Problem{Line: line, Key: p, Msg: msg, Kind: ErrUnknownKey})
}

// suggest offers the known key closest to a mistyped one, if any is close.
func suggest(key string, fields map[string]int) string {
	best, bestDist := "", 3 // offer nothing two or more edits away
	for _, name := range slices.Sorted(maps.Keys(fields)) {
		if strings.EqualFold(name, key) {
			return fmt.Sprintf("; keys are case-sensitive: did you mean %q?", name)
		}
		if d := levenshtein.Distance(key, name); d < bestDist && d < len(name)/2 {
			best, bestDist = name, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf("; did you mean %q?", best)
}

// value decodes v, at path, into the field fv.
func (d *decoder) value(v any, fv reflect.Value, path string) {
	switch fv.Type() {
	case durationType:
		s, ok := v.(string)
		if !ok {
			d.invalid(path, "want %s, got %s", durationForm, describe(v))
			return
		}
		dur, err := parseDuration(s)
		if err != nil {
			d.invalid(path, "%v", err)
			return
		}
		fv.Set(reflect.ValueOf(dur))
		return
	case sizeType:
		switch v := v.(type) {
		case string:
			n, err := parseSize(v)
			if err != nil {
				d.invalid(path, "%v", err)
				return
			}
			fv.SetUint(uint64(n))
		case int64:
			if v < 0 {
				d.invalid(path, "invalid size %d (want %s)", v, sizeForm)
				return
			}
			fv.SetUint(uint64(v))
		default:
			d.invalid(path, "want %s, got %s", sizeForm, describe(v))
		}
		return
	}

	switch fv.Kind() {
	case reflect.String:
		s, ok := v.(string)
		if !ok {
			d.invalid(path, "want a string, got %s", describe(v))
			return
		}
		fv.SetString(s)
	case reflect.Int:
		n, ok := v.(int64)
		if !ok {
			d.invalid(path, "want an integer, got %s", describe(v))
			return
		}
		if fv.OverflowInt(n) {
			d.invalid(path, "%d is out of range", n)
			return
		}
		fv.SetInt(n)
	case reflect.Bool:
		b, ok := v.(bool)
		if !ok {
			d.invalid(path, "want true or false, got %s", describe(v))
			return
		}
		fv.SetBool(b)
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			d.invalid(path, "want a table [%s], got %s", path, describe(v))
			return
		}
		d.table(m, fv, path)
	case reflect.Pointer:
		m, ok := v.(map[string]any)
		if !ok {
			d.invalid(path, "want a table [%s], got %s", path, describe(v))
			return
		}
		nv := reflect.New(fv.Type().Elem())
		if df, ok := nv.Interface().(defaulter); ok {
			df.setDefaults()
		}
		d.table(m, nv.Elem(), path)
		fv.Set(nv)
	case reflect.Slice:
		d.slice(v, fv, path)
	default:
		panic(fmt.Sprintf("config: field %s has unsupported type %s", path, fv.Type()))
	}
}

// slice decodes an array, of strings or of tables, into the slice fv. An
// empty array decodes to nil, as does a missing key.
func (d *decoder) slice(v any, fv reflect.Value, path string) {
	elem := fv.Type().Elem()
	var items []any
	switch v := v.(type) {
	case []any:
		items = v
	case []map[string]any:
		for _, m := range v {
			items = append(items, m)
		}
	default:
		if elem.Kind() == reflect.Struct {
			d.invalid(path, "want an array of tables [[%s]], got %s", path, describe(v))
		} else {
			d.invalid(path, "want an array of strings, got %s", describe(v))
		}
		return
	}
	if len(items) == 0 {
		fv.SetZero()
		return
	}
	out := reflect.MakeSlice(fv.Type(), len(items), len(items))
	for i, item := range items {
		ev := out.Index(i)
		if elem.Kind() == reflect.Struct {
			m, ok := item.(map[string]any)
			if !ok {
				d.invalid(index(path, i), "want a table, got %s", describe(item))
				continue
			}
			if df, ok := ev.Addr().Interface().(defaulter); ok {
				df.setDefaults()
			}
			d.table(m, ev, index(path, i))
			continue
		}
		d.value(item, ev, index(path, i))
	}
	fv.Set(out)
}

// describe names a TOML value's type, with the value when it is short.
func describe(v any) string {
	switch v := v.(type) {
	case string:
		if len(v) > 40 {
			return "a long string"
		}
		return fmt.Sprintf("string %q", v)
	case int64:
		return fmt.Sprintf("integer %d", v)
	case float64:
		return fmt.Sprintf("float %v", v)
	case bool:
		return fmt.Sprintf("boolean %v", v)
	case time.Time:
		return "a date-time"
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// tomlFields maps the toml key names of struct type t to field indices.
func tomlFields(t reflect.Type) map[string]int {
	fields := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ",")
		if name != "" && name != "-" {
			fields[name] = i
		}
	}
	return fields
}
