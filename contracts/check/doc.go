// Package check is `strata contract check`, the contract gate for CI, as a
// library: it compiles a contract and reports every compile error, broken
// strata rule and lint warning; compares it with a previous version (a
// directory, a descriptor set file or a git revision) for breaking changes;
// and runs reducers' fixtures in the reducer host, sending every output
// record through the agent's own validation pipeline
// (contracts.Contract.CheckWrite), leak guard included.
//
// [Run] returns a [Report] of findings, each with a stable rule id, a
// severity, a position and a one-line fix hint, which [Report.Write] prints
// as text, JSON (schema in docs/CONTRACT_CHECK.md) or GitHub Actions
// annotations. The reducer host is an interface, [Host], so that this
// package does not depend on the agent.
package check
