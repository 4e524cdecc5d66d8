package faults

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/attestload/attestload/attestation/record"
	"github.com/attestload/attestload/test/faults/harness"
)

// smallFS mounts a tmpfs of the given size (e.g. "64k") on a fresh directory, or skips when mounting is not
// permitted (not root, no CAP_SYS_ADMIN); under CI, which runs as root, that is a failure.
func smallFS(t *testing.T, size string, readOnly bool) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "results")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := "size=" + size
	if readOnly {
		opts += ",ro"
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "tmpfs", dir).CombinedOutput(); err != nil {
		harness.SkipOutsideCI(t, "cannot mount a tmpfs for the results directory (needs root): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

// The results directory fills up mid-run. With results.on_error stop (the default) the run
// says so on stderr and stops with a non-zero exit; with continue it keeps attesting and says how many lines
// were lost. Either way every line already written stays readable and the database is cleaned.
func TestResultsDirectoryFails(t *testing.T) {
	for _, c := range []struct {
		name    string
		onError string
		message string
	}{
		// (A read-only remount mid-run is refused by the kernel while the results file is open for writing;
		// TestResultsDirectoryUnwritableAtStart covers a read-only directory.)
		{"disk full, stop", "stop", "no space left"},
		{"disk full, continue", "continue", "no space left"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t, harness.SimOptions{})
			dir := smallFS(t, "48k", false)
			args := w.runArgs(8, 500*time.Millisecond, "--results-dir", dir)
			// The free-disk guard would stop the run before the disk fills; this is the failure it guards against.
			d := w.start(w.baseEnv("ATTESTLOAD_RESULTS_ON_ERROR="+c.onError, "ATTESTLOAD_RESULTS_MIN_FREE_DISK=0"), args...)
			d.waitCycles(t, record.OutcomeSuccess, 8, time.Minute)
			d.WaitLog(t, c.message, time.Minute)
			if c.onError == "stop" {
				code := d.Wait(t, time.Minute)
				if code == 0 {
					t.Error("exit code 0 after the results file failed with results.on_error stop")
				}
			} else {
				// The run goes on: more cycles succeed after the failure.
				m := harness.Scrape(t, d.addr)
				d.waitCycles(t, record.OutcomeSuccess, int(m.Sum("attestload_cycles_total", "outcome=success"))+16, time.Minute)
				d.Signal(t, syscall.SIGINT)
				d.Wait(t, time.Minute)
			}
			stderr := d.Stderr.String()
			harness.NoCrash(t, "stderr", stderr)
			if !strings.Contains(strings.ToLower(stderr), "results") {
				t.Errorf("stderr does not say the results file failed:\n%s", stderr)
			}
			recs, _ := harness.ReadRecords(t, d.results) // fails the test on any complete line that is not a record
			harness.CheckRecords(t, recs)
			if len(recs) == 0 {
				t.Error("nothing readable is left in the results file")
			}
			w.checkClean()
		})
	}
}

// A results directory that cannot be written at start stops the run before any load, naming results.dir, and
// leaves nothing in the database.
func TestResultsDirectoryUnwritableAtStart(t *testing.T) {
	w := newWorld(t, harness.SimOptions{})
	dir := smallFS(t, "1m", true)
	p, code := harness.Run(t, w.dir, w.baseEnv("ATTESTLOAD_RESULTS_MIN_FREE_DISK=0"), time.Minute,
		w.runArgs(2, time.Second, "--results-dir", dir)...)
	stderr := p.Stderr.String()
	harness.NoCrash(t, "stderr", stderr)
	if code == 0 {
		t.Error("exit code 0 with a read-only results directory")
	}
	if !strings.Contains(stderr, dir) || !strings.Contains(stderr, "read-only") {
		t.Errorf("stderr does not name the directory and the cause:\n%s", stderr)
	}
	w.checkClean()
}

// The free-disk guard stops the run cleanly before the disk fills: it refuses to start below results.min_free_disk,
// and a run that brings free space below it stops, drains, writes every record of its cycles and says why.
func TestDiskGuardStopsBeforeTheDiskFills(t *testing.T) {
	w := newWorld(t, harness.SimOptions{})
	dir := smallFS(t, "2m", false)
	env := w.baseEnv("ATTESTLOAD_RESULTS_MIN_FREE_DISK=1700KiB")
	d := w.start(env, w.runArgs(16, 250*time.Millisecond, "--results-dir", dir)...)
	d.WaitLog(t, "results.min_free_disk", 2*time.Minute)
	code := d.Wait(t, time.Minute)
	stderr := d.Stderr.String()
	harness.NoCrash(t, "stderr", stderr)
	if code == 0 {
		t.Error("exit code 0 after the disk guard stopped the run early")
	}
	if strings.Contains(stderr, "no space left") || !strings.Contains(stderr, "stopping the run") {
		t.Errorf("want the guard's message, not a full disk:\n%s", stderr)
	}
	recs, partial := harness.ReadRecords(t, d.results)
	harness.CheckRecords(t, recs)
	if partial || len(recs) == 0 {
		t.Errorf("%d records, partial %v: want every record whole", len(recs), partial)
	}
	w.checkClean()

	// Below the bound at start: refused before any load, naming the setting.
	p, code := harness.Run(t, w.dir, w.baseEnv("ATTESTLOAD_RESULTS_MIN_FREE_DISK=1GiB"), time.Minute,
		w.runArgs(2, time.Second, "--results-dir", dir)...)
	if code == 0 || !strings.Contains(p.Stderr.String(), "results.min_free_disk") {
		t.Errorf("exit %d with 1 GiB required on a 2 MiB disk:\n%s", code, p.Stderr.String())
	}
	w.checkClean()
}
