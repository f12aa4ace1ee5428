// Package publish turns a region's rows into its global records: on the
// region's publisher (the lowest-named alive gateway), it runs each reducer
// on its input tables, decides what differs from the records the region
// has published, and writes only those upserts and deletes through the
// global tier's one write path (package global), which checks, signs and
// applies them. It also writes the region's heartbeat.
//
// The decisions are pure and take time as input: Decide (a run's output
// and the published records → the writes) and Schedule (input changes,
// run results and time → which reducers run when). Publisher.Run only
// feeds them events (a regional commit, a timer, the publisher role
// changing) and carries out what they decide.
package publish
