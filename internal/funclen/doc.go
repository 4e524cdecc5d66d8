// Package funclen holds the test that keeps functions short: no function in the module's non-test Go files may
// run over MaxLines lines, except those on an explicit allow-list that only ever shrinks. It has no code of its
// own.
package funclen

// MaxLines is the longest a function may be, counted from its func line to its closing brace.
const MaxLines = 80
