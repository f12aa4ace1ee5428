package main

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestFormatVersion(t *testing.T) {
	for _, tc := range []struct {
		info debug.BuildInfo
		want string
	}{
		{debug.BuildInfo{Main: debug.Module{Version: "v0.4.0"}}, "v0.4.0"},
		{debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "7f61bbd0123456789abcdef"}, {Key: "vcs.modified", Value: "true"}}},
			"devel (rev 7f61bbd01234, modified)"},
		{debug.BuildInfo{Main: debug.Module{Version: "v1.0.0"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "false"}}},
			"v1.0.0 (rev abc)"},
	} {
		if got := formatVersion(&tc.info); got != tc.want {
			t.Errorf("formatVersion(%+v) = %q, want %q", tc.info.Main, got, tc.want)
		}
	}
	out, err := runStrata(t, "--version")
	if err != nil || !strings.HasPrefix(out, "strata version "+version) {
		t.Errorf("strata --version: %q, %v", out, err)
	}
}
