//go:build unix

package results

import "golang.org/x/sys/unix"

// freeBytes is the space available to unprivileged users on dir's file system; ok is false when it cannot be
// read (the guard then stays quiet rather than stop a run on a guess).
func freeBytes(dir string) (int64, bool) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, false
	}
	return int64(st.Bavail) * int64(st.Bsize), true //nolint:unconvert // field types differ between systems
}
