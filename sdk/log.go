package sdk

// Log levels, as log/slog numbers them.
const (
	LevelDebug = -4
	LevelInfo  = 0
	LevelWarn  = 4
	LevelError = 8
)

// Log sends msg to the host's log at level (LevelDebug, LevelInfo,
// LevelWarn or LevelError), tagged with the reducer's name. The host
// truncates long messages and drops messages past a per-run budget: logging
// is for diagnosis, not for data. Natively (in tests) it writes to
// log/slog's default logger.
func Log(level int, msg string) { hostLog(level, msg) }
