// Package contracts compiles strata contracts and applies them to values.
//
// A contract is a set of .proto files. Messages annotated with the options of
// [OptionsFile] become:
//
//   - tables, option (strata.v1.table): regional row types, replicated
//     inside one region, keyed by one or more fields;
//   - records, option (strata.v1.record): global entries that each region
//     publishes about itself, bounded in count and size, and checked on
//     every write.
//
// A field marked (strata.v1.regional_only) must never reach the global tier.
// Field rules are protovalidate's (buf.validate options).
//
// [Compile] parses and links a contract at run time with protocompile, checks
// strata's rules (see Compile for the list; this includes the static half of
// the leak guard) and returns a [Contract], or a [*CompileError] listing every
// problem as file:line:col. A contract imports "strata/v1/options.proto" and
// "buf/validate/validate.proto" without having copies: both are provided.
// [Example] is the example contract, embedded.
//
// A [Schema] is one table or record, and carries what the agent does with
// its values, all on dynamic messages ([dynamicpb.Message]):
//
//   - decode from the API ([Schema.DecodeJSON]) and from peers and reducers
//     ([Schema.DecodeBinary], which rejects unknown fields at any depth);
//   - validate ([Schema.Validate], with typed [ValidationError] details);
//   - compute and check keys ([Schema.KeyOf], [Schema.CheckKey]);
//   - cut a row into per-field values for the CRDT store and back
//     ([Schema.Split], [Schema.Join], [Schema.JSONFieldNumbers] for PATCH);
//   - encode for the API ([Schema.EncodeJSON]).
//
// # Global writes
//
// [Contract.CheckWrite] is the one validation pipeline every global write
// passes, whether it comes from a reducer, from the API or from a peer: a
// [Write] in, nil or a [*RejectError] out, naming the record, key, rule
// (a stable id such as [RuleLeak]) and field. It is pure: the caller passes
// in the time, the region's record count and its rate [Budget], and, for a
// reducer's output, the [LeakSet] of regional_only values collected from
// the reducer's input rows with [LeakSet.Collect].
//
// # Checking a contract change
//
// [Compare] reports what changed between two versions of a contract that
// would break readers or writers of the old one (a field deleted without
// reserving it, a changed type, key or JSON name, …), and [Lint] the basics
// that protect readers; both return findings ([Finding]) with stable rule ids,
// positions and fix hints. Package check builds `strata contract check` on
// them.
//
// # Concurrency
//
// A Contract and its Schemas are immutable once Compile returns; all their
// methods are safe for concurrent use by multiple goroutines. The messages
// they return belong to the caller.
//
// # Errors
//
// Errors name the table or record and, where known, the field:
// [*DecodeError], [*ValidationError], [*KeyError], [*RejectError] and
// [*CompileError] carry the details for callers that show them;
// [ErrUnknownField], [ErrWrongType] and [ErrRejected] can be tested with
// errors.Is.
package contracts
