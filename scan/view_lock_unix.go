//go:build unix

package scan

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

const viewLockName = "lock"

// lockView creates and exclusively locks the lock file of a database view.
// The lock is held, by the open file, until the returned Closer is closed.
func lockView(view string) (io.Closer, error) {
	f, err := os.OpenFile(filepath.Join(view, viewLockName), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return f, nil
}

// viewIsStale reports whether no Scanner (in any process) holds the view's
// lock. A view without a lock file is one being created or torn down right
// now, or a leftover from a crash before its lock was taken; only the
// latter is stale, and it is indistinguishable here, so it is kept.
func viewIsStale(view string) bool {
	f, err := os.OpenFile(filepath.Join(view, viewLockName), os.O_RDWR, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) || err != nil {
		return false
	}
	// Locked by us now: nobody else is using it. Our lock goes with f.
	return true
}
