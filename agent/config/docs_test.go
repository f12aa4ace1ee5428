package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestDocsCoverEveryKey checks that docs/CONFIG.md has a row for every key
// of the schema, in the section of its table.
func TestDocsCoverEveryKey(t *testing.T) {
	doc, err := os.ReadFile("../../docs/CONFIG.md")
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]string{} // heading → text
	var heading string
	for _, line := range strings.Split(string(doc), "\n") {
		if strings.HasPrefix(line, "## ") {
			heading = strings.TrimPrefix(line, "## ")
			continue
		}
		sections[heading] += line + "\n"
	}

	var check func(rt reflect.Type, heading string)
	check = func(rt reflect.Type, heading string) {
		text, ok := sections[heading]
		if !ok {
			t.Errorf("docs/CONFIG.md has no section %q", heading)
			return
		}
		for key, i := range tomlFields(rt) {
			ft := rt.Field(i).Type
			for ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && ft != durationType {
				sub := "`[" + key + "]`"
				if rt.Field(i).Type.Kind() == reflect.Slice {
					sub = "`[[" + key + "]]`"
				}
				check(ft, sub)
				continue
			}
			if !strings.Contains(text, "| `"+key+"` |") {
				t.Errorf("docs/CONFIG.md section %q has no row for key %q", heading, key)
			}
		}
	}
	check(reflect.TypeFor[Config](), "Top-level keys")
}
