// Package pgtest gives tests a throwaway PostgreSQL database of their own.
//
// Tests find the server through ATTESTLOAD_TEST_DATABASE_URL, a URL to a database on which the user may create
// databases (scripts/pg-start.sh starts the local cluster and prints one). Each NewDatabase call creates a
// uniquely named database and drops it when the test ends, so packages and parallel tests never see each
// other's rows. Without the variable the test is skipped, except under CI (CI set), where a skipped database
// test would hide a broken pipeline, so it fails instead.
//
// pgtest knows how to create and drop databases and, through enroll.InitSchema, the verifier schema; it must not
// know what any test stores in them.
package pgtest
