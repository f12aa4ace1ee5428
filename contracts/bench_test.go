package contracts

import "testing"

func BenchmarkDecodeJSONValidate(b *testing.B) {
	s := table(b, example(b), "machines")
	body := []byte(machineJSON)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		m, err := s.DecodeJSON(body)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Validate(m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeBinary(b *testing.B) {
	s := table(b, example(b), "machines")
	m, _ := s.DecodeJSON([]byte(machineJSON))
	fields, _ := s.Split(m)
	var wire []byte
	for _, fv := range fields {
		wire = append(wire, fv.Value...)
	}
	b.SetBytes(int64(len(wire)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.DecodeBinary(wire); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSplit(b *testing.B) {
	s := table(b, example(b), "machines")
	m, err := s.DecodeJSON([]byte(machineJSON))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Split(m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkJoin(b *testing.B) {
	s := table(b, example(b), "machines")
	m, _ := s.DecodeJSON([]byte(machineJSON))
	fields, err := s.Split(m)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Join(fields); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkKeyOf(b *testing.B) {
	s := table(b, example(b), "machines")
	m, _ := s.DecodeJSON([]byte(machineJSON))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.KeyOf(m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCompileExample(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(b.Context(), Example, ExampleFiles()); err != nil {
			b.Fatal(err)
		}
	}
}
