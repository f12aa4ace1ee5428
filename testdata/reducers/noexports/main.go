// Command noexports is a WASI reactor with none of strata's exports.
package main

func main() {}
