package config

import (
	"testing"
	"time"
)

func TestDuration(t *testing.T) {
	tests := []struct {
		name string
		text string
		want Duration
		str  string
	}{
		{"milliseconds", "250ms", Duration{250 * time.Millisecond}, "250ms"},
		{"minutes and seconds", "1m30s", Duration{90 * time.Second}, "1m30s"},
		{"whole minutes", "1m", Duration{time.Minute}, "1m"},
		{"whole hours", "24h", Duration{24 * time.Hour}, "24h"},
		{"hours and seconds", "1h0m5s", Duration{time.Hour + 5*time.Second}, "1h0m5s"},
		{"hours and minutes", "90m", Duration{90 * time.Minute}, "1h30m"},
		{"zero", "0", Duration{}, "0s"},
		{"negative", "-2s", Duration{-2 * time.Second}, "-2s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d Duration
			if err := d.UnmarshalText([]byte(tt.text)); err != nil {
				t.Fatalf("UnmarshalText(%q): %v", tt.text, err)
			}
			if d != tt.want {
				t.Errorf("UnmarshalText(%q) = %v, want %v", tt.text, d.Duration, tt.want.Duration)
			}
			text, _ := d.MarshalText()
			if string(text) != tt.str {
				t.Errorf("MarshalText = %q, want %q", text, tt.str)
			}
			var back Duration
			if err := back.UnmarshalText(text); err != nil || back != d {
				t.Errorf("MarshalText does not round-trip: %q → %v, %v", text, back, err)
			}
		})
	}
	for _, bad := range []string{"", "10 s", "10", "1d", "ten", "1.5.s"} {
		var d Duration
		if err := d.UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("UnmarshalText(%q) = %v, want an error", bad, d)
		}
	}
}

func TestSize(t *testing.T) {
	tests := []struct {
		name string
		text string
		want Size
		str  string
	}{
		{"mebibytes", "64MiB", 64 << 20, "64MiB"},
		{"megabytes", "4MB", 4_000_000, "4MB"},
		{"kibibytes", "512KiB", 512 << 10, "512KiB"},
		{"gibibytes", "1GiB", 1 << 30, "1GiB"},
		{"tebibytes", "2TiB", 2 << 40, "2TiB"},
		{"terabytes", "3TB", 3e12, "3TB"},
		{"bytes", "100B", 100, "100B"},
		{"bare integer", "4096", 4096, "4KiB"},
		{"binary preferred", "1024KB", 1_024_000, "1000KiB"},
		{"zero", "0B", 0, "0B"},
		{"largest", "18446744073709551615", 1<<64 - 1, "18446744073709551615B"},
		{"largest in units", "16777215TiB", 16777215 << 40, "16777215TiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s Size
			if err := s.UnmarshalText([]byte(tt.text)); err != nil {
				t.Fatalf("UnmarshalText(%q): %v", tt.text, err)
			}
			if s != tt.want {
				t.Errorf("UnmarshalText(%q) = %d, want %d", tt.text, s, tt.want)
			}
			text, _ := s.MarshalText()
			if string(text) != tt.str {
				t.Errorf("MarshalText = %q, want %q", text, tt.str)
			}
			var back Size
			if err := back.UnmarshalText(text); err != nil || back != s {
				t.Errorf("MarshalText does not round-trip: %q → %d, %v", text, back, err)
			}
		})
	}
	for _, bad := range []string{"", "MiB", "4 MiB", "4mib", "1.5GiB", "-1", "4K", "18446744073709551616", "16777216TiB", "4MiBs"} {
		var s Size
		if err := s.UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("UnmarshalText(%q) = %d, want an error", bad, s)
		}
	}
}
