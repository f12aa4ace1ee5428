package publish

import "testing"

func TestDiff(t *testing.T) {
	pub := []Record{{"a", "web", []byte{1}}, {"a", "api", []byte{2}}, {"a", "old", []byte{3}}}
	out := []Record{{"a", "api", []byte{2}}, {"a", "web", []byte{9}}, {"a", "new", []byte{4}}}
	p := Diff(pub, out)
	if len(p.Upserts) != 2 || p.Upserts[0].Key != "new" || p.Upserts[1].Key != "web" {
		t.Fatalf("upserts %+v", p.Upserts)
	}
	if len(p.Deletes) != 1 || p.Deletes[0].Key != "old" {
		t.Fatalf("deletes %+v", p.Deletes)
	}
	if !Diff(out, out).Empty() {
		t.Fatal("an unchanged projection must write nothing")
	}
}
