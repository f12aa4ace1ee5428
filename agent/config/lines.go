package config

import (
	"bytes"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Key paths name a key for people and for keyLines: the TOML key names joined
// by dots, with array elements as "[i]" counting from 0, such as
// "regional.sync_interval" or "reducers[1].timeout". A name that is not a
// bare TOML key is quoted: `regional."a b"`.

// child is the path of key in the table at path ("" is the top level).
func child(path, key string) string {
	k := quoteKey(key)
	if path == "" {
		return k
	}
	return path + "." + k
}

// index is the path of element i of the array at path.
func index(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

// quoteKey writes key as TOML would need it: bare if it can be, else quoted.
func quoteKey(key string) string {
	if key == "" {
		return `""`
	}
	for i := 0; i < len(key); i++ {
		if !isBareKeyByte(key[i]) {
			return strconv.Quote(key)
		}
	}
	return key
}

func isBareKeyByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-'
}

// parentPath strips the last element from a path of bare keys, such as
// "reducers[1].timeout" → "reducers[1]" → "reducers" → "".
func parentPath(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

// keyLines maps a key path to the line where the key, table or array element
// is first written.
//
// # Why scan the source
//
// BurntSushi/toml records key positions but does not export them (MetaData
// gives keys and types only), so the lines come from a small scanner of our
// own. It runs only on files the TOML parser has accepted, which keeps it
// simple: it tracks [table] and [[array]] headers, bare, quoted and dotted
// keys, strings of every kind, and arrays and inline tables over several
// lines. Should it ever lose its way, the cost is a missing or wrong line
// number, never a wrong decision about the configuration.
type keyLines map[string]int

// lineOf returns the line of path, or else of its nearest written parent
// (the table of a missing key), or 0. path must be made of bare keys.
func (l keyLines) lineOf(path string) int {
	for p := path; p != ""; p = parentPath(p) {
		if n, ok := l[p]; ok {
			return n
		}
	}
	return 0
}

// scanLines finds the line of every key, table and array element in src,
// which must be valid TOML.
func scanLines(src []byte) keyLines {
	// The TOML parser drops a byte-order mark the same way.
	switch {
	case bytes.HasPrefix(src, []byte("\xff\xfe")), bytes.HasPrefix(src, []byte("\xfe\xff")):
		src = src[2:]
	case bytes.HasPrefix(src, []byte("\xef\xbb\xbf")):
		src = src[3:]
	}
	s := &lineScanner{src: src, line: 1, lines: keyLines{}, arrays: map[string]int{}}
	table := ""
	for {
		s.skipBlank()
		if s.i >= len(s.src) {
			return s.lines
		}
		start := s.i
		ok := false
		if s.peek() == '[' {
			var t string
			if t, ok = s.header(); ok {
				table = t
			}
		} else {
			ok = s.keyValue(table)
		}
		if !ok {
			s.skipToEOL()
		}
		if s.i == start {
			s.i++ // always make progress
		}
	}
}

// lineScanner is the state of scanLines.
type lineScanner struct {
	src    []byte
	i      int // next byte
	line   int // line of src[i]
	lines  keyLines
	arrays map[string]int // array-of-tables path → elements so far
}

func (s *lineScanner) peek() byte {
	if s.i < len(s.src) {
		return s.src[s.i]
	}
	return 0
}

func (s *lineScanner) hasPrefix(p string) bool {
	return s.i <= len(s.src) && bytes.HasPrefix(s.src[s.i:], []byte(p))
}

func (s *lineScanner) record(path string, line int) {
	if _, ok := s.lines[path]; !ok {
		s.lines[path] = line
	}
}

// skipSpace skips spaces and tabs.
func (s *lineScanner) skipSpace() {
	for s.peek() == ' ' || s.peek() == '\t' {
		s.i++
	}
}

// skipBlank skips white space, newlines and comments.
func (s *lineScanner) skipBlank() {
	for s.i < len(s.src) {
		switch s.src[s.i] {
		case ' ', '\t', '\r':
			s.i++
		case '\n':
			s.i++
			s.line++
		case '#':
			s.skipToEOL()
		default:
			return
		}
	}
}

// skipToEOL moves to the next newline, leaving it to skipBlank.
func (s *lineScanner) skipToEOL() {
	for s.i < len(s.src) && s.src[s.i] != '\n' {
		s.i++
	}
}

// header reads a [table] or [[array]] header and returns the path of the
// table it opens.
func (s *lineScanner) header() (string, bool) {
	line := s.line
	s.i++
	array := s.peek() == '['
	if array {
		s.i++
	}
	keys, ok := s.key()
	if !ok {
		return "", false
	}
	s.skipSpace()
	if !s.hasPrefix("]") || array && !s.hasPrefix("]]") {
		return "", false
	}
	s.i++
	if array {
		s.i++
	}
	path := ""
	for j, k := range keys {
		path = child(path, k)
		if array && j == len(keys)-1 {
			n := s.arrays[path]
			s.arrays[path] = n + 1
			s.record(path, line)
			path = index(path, n)
		} else if n, ok := s.arrays[path]; ok {
			path = index(path, n-1) // a sub-table of the latest element
		}
		s.record(path, line)
	}
	return path, true
}

// keyValue reads `key = value` in the table at path.
func (s *lineScanner) keyValue(table string) bool {
	line := s.line
	keys, ok := s.key()
	if !ok {
		return false
	}
	s.skipSpace()
	if s.peek() != '=' {
		return false
	}
	s.i++
	path := table
	for _, k := range keys {
		path = child(path, k)
		s.record(path, line)
	}
	s.skipSpace()
	return s.value(path)
}

// key reads a bare, quoted or dotted key.
func (s *lineScanner) key() ([]string, bool) {
	var keys []string
	for {
		s.skipSpace()
		var (
			k  string
			ok bool
		)
		switch s.peek() {
		case '"':
			k, ok = s.basicString()
		case '\'':
			k, ok = s.literalString()
		default:
			start := s.i
			for s.i < len(s.src) && !strings.ContainsRune(" \t\r\n=.[]#\"',{}", rune(s.src[s.i])) {
				s.i++
			}
			k, ok = string(s.src[start:s.i]), s.i > start
		}
		if !ok {
			return nil, false
		}
		keys = append(keys, k)
		s.skipSpace()
		if s.peek() != '.' {
			return keys, true
		}
		s.i++
	}
}

// value skips a value, recording the elements of arrays and the keys of
// inline tables under path.
func (s *lineScanner) value(path string) bool {
	switch {
	case s.hasPrefix(`"""`):
		return s.multilineString('"')
	case s.hasPrefix(`'''`):
		return s.multilineString('\'')
	case s.peek() == '"':
		_, ok := s.basicString()
		return ok
	case s.peek() == '\'':
		_, ok := s.literalString()
		return ok
	case s.peek() == '[':
		return s.array(path)
	case s.peek() == '{':
		return s.inlineTable(path)
	}
	// A number, boolean or date-time (which may hold a space).
	start := s.i
	for s.i < len(s.src) && !strings.ContainsRune(",]}#\r\n", rune(s.src[s.i])) {
		s.i++
	}
	return s.i > start
}

func (s *lineScanner) array(path string) bool {
	s.i++
	for n := 0; ; {
		s.skipBlank()
		switch s.peek() {
		case 0:
			return false
		case ']':
			s.i++
			return true
		case ',':
			s.i++
			n++
			continue
		}
		p := index(path, n)
		s.record(p, s.line)
		if !s.value(p) {
			return false
		}
	}
}

func (s *lineScanner) inlineTable(path string) bool {
	s.i++
	for {
		s.skipBlank() // TOML 1.1 allows newlines and comments here
		switch s.peek() {
		case 0:
			return false
		case '}':
			s.i++
			return true
		case ',':
			s.i++
			continue
		}
		line := s.line
		keys, ok := s.key()
		if !ok {
			return false
		}
		s.skipSpace()
		if s.peek() != '=' {
			return false
		}
		s.i++
		p := path
		for _, k := range keys {
			p = child(p, k)
			s.record(p, line)
		}
		s.skipSpace()
		if !s.value(p) {
			return false
		}
	}
}

// basicString reads a one-line "string" and returns its value.
func (s *lineScanner) basicString() (string, bool) {
	s.i++
	var b strings.Builder
	for s.i < len(s.src) {
		c := s.src[s.i]
		switch c {
		case '"':
			s.i++
			return b.String(), true
		case '\n':
			return "", false
		case '\\':
			if !s.escape(&b) {
				return "", false
			}
			continue
		}
		b.WriteByte(c)
		s.i++
	}
	return "", false
}

// escape reads the escape sequence at s.i into b.
func (s *lineScanner) escape(b *strings.Builder) bool {
	if s.i+1 >= len(s.src) {
		return false
	}
	c := s.src[s.i+1]
	s.i += 2
	if r, ok := simpleEscapes[c]; ok {
		b.WriteByte(r)
		return true
	}
	digits := hexEscapes[c]
	if digits == 0 || s.i+digits > len(s.src) {
		return false
	}
	n, err := strconv.ParseUint(string(s.src[s.i:s.i+digits]), 16, 32)
	if err != nil {
		return false
	}
	s.i += digits
	if c == 'x' {
		b.WriteRune(rune(n)) // \xHH is a code point in TOML 1.1
	} else if utf8.ValidRune(rune(n)) {
		b.WriteRune(rune(n))
	}
	return true
}

var (
	simpleEscapes = map[byte]byte{'b': '\b', 't': '\t', 'n': '\n', 'f': '\f', 'r': '\r', 'e': 0x1b, '"': '"', '\\': '\\'}
	hexEscapes    = map[byte]int{'x': 2, 'u': 4, 'U': 8} // escape → hex digits
)

// literalString reads a one-line 'string' and returns its value.
func (s *lineScanner) literalString() (string, bool) {
	s.i++
	start := s.i
	for s.i < len(s.src) {
		switch s.src[s.i] {
		case '\'':
			v := string(s.src[start:s.i])
			s.i++
			return v, true
		case '\n':
			return "", false
		}
		s.i++
	}
	return "", false
}

// multilineString skips a multi-line string, delimited by three q quotes,
// which may end in up to two more quotes belonging to its value.
func (s *lineScanner) multilineString(q byte) bool {
	s.i += 3
	delim := strings.Repeat(string(q), 3)
	for s.i < len(s.src) {
		switch c := s.src[s.i]; {
		case c == '\\' && q == '"':
			if s.i+1 < len(s.src) && s.src[s.i+1] == '\n' {
				s.line++
			}
			s.i += 2
			continue
		case c == '\n':
			s.line++
		case s.hasPrefix(delim):
			s.i += 3
			for k := 0; k < 2 && s.peek() == q; k++ {
				s.i++
			}
			return true
		}
		s.i++
	}
	return false
}
