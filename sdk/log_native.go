//go:build !wasip1

package sdk

import (
	"context"
	"log/slog"
)

func hostLog(level int, msg string) {
	slog.Default().Log(context.Background(), slog.Level(level), msg, "reducer", "sdk")
}
