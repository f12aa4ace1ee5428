// Package upgradetest runs strata agents of two builds side by side: the
// agent built from a pinned earlier commit (PreviousCommit) and the agent
// built from this checkout. It checks what docs/UPGRADING.md promises: a
// region of old and new agents converges, an old agent upgraded in place
// (same data_dir) keeps every acknowledged row, and a new agent's files can
// be opened again by the old build (rollback).
//
// The old binary, and a reducer module it builds with the old SDK (the
// old build publishes global records from reducers only), are built in a
// `git worktree` of PreviousCommit and cached under os.UserCacheDir by
// commit hash, so only the first run pays for the builds. Without git history (a source tarball, a shallow clone) the tests
// skip and say why.
package upgradetest
