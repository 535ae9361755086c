//go:build !unix

package scan

import (
	"io"
)

type noLock struct{}

func (noLock) Close() error { return nil }

// lockView is a no-op where flock is unavailable.
func lockView(string) (io.Closer, error) { return noLock{}, nil }

// viewIsStale never reports a view stale where views cannot be locked, so
// views of live Scanners are never removed; leftovers need manual cleanup.
func viewIsStale(string) bool { return false }
