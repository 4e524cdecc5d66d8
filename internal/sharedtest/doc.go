// Package sharedtest locates the repository root and the reference material in its testdata folder (the Keylime
// vectors, schema, report goldens and captured evidence, copied in with their provenance; see testdata/README.md),
// for tests in any package.
//
// Tests run with the package directory as working directory, so every package used to walk up to go.mod on its
// own; this package is that walk, once. It only finds and reads files: it must not know the layout of a vector
// or what a test checks in it, so each package keeps decoding into its own types.
package sharedtest
