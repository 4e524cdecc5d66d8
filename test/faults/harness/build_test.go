package harness

import (
	"fmt"
	"runtime"
	"testing"
)

// fakeTB records how a helper ended the test.
type fakeTB struct {
	testing.TB
	how, msg string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.how, f.msg = "fatal", fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (f *fakeTB) Skipf(format string, args ...any) {
	f.how, f.msg = "skip", fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func endOf(f func(tb testing.TB)) *fakeTB {
	tb := &fakeTB{}
	done := make(chan struct{})
	go func() { defer close(done); f(tb) }()
	<-done
	return tb
}

func TestSkipOutsideCI(t *testing.T) {
	t.Setenv("CI", "")
	if tb := endOf(func(tb testing.TB) { SkipOutsideCI(tb, "no %s", "tmpfs") }); tb.how != "skip" || tb.msg != "no tmpfs" {
		t.Fatalf("outside CI: %s %q, want a skip", tb.how, tb.msg)
	}
	t.Setenv("CI", "true")
	if tb := endOf(func(tb testing.TB) { SkipOutsideCI(tb, "no %s", "tmpfs") }); tb.how != "fatal" ||
		tb.msg != "must not be skipped in CI: no tmpfs" {
		t.Fatalf("under CI: %s %q, want a failure", tb.how, tb.msg)
	}
}
