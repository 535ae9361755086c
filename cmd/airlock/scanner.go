package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/airlockproxy/airlock/scan"
)

// asyncScanner is the vulnerability scanner while it is built in the
// background. Building it costs seconds (syft's license scanner), which
// used to delay the listeners; now serve listens at once, /readyz says
// what it waits for, and every use of the scanner waits until it is built.
// It implements gate.Scanner and admin.VulnDB.
type asyncScanner struct {
	ready chan struct{} // closed when s or err is set
	s     *scan.Scanner
	err   error
}

// startScanner builds a scan.Scanner on dbRoot in the background and logs
// the vulnerability DB it found.
func startScanner(log *slog.Logger, dbRoot string, opts ...scan.Option) *asyncScanner {
	a := &asyncScanner{ready: make(chan struct{})}
	go func() {
		defer close(a.ready)
		s, err := scan.New(dbRoot, opts...)
		if err != nil {
			a.err = fmt.Errorf("vulnerability scanner: %w", err)
			log.Error("vulnerability scanner could not be built", "err", err)
			return
		}
		a.s = s
		if st, err := s.Status(); err != nil {
			log.Warn("no usable vulnerability DB: images fail the scan step until one is imported (airlock db import)", "db_dir", dbRoot, "err", err)
		} else {
			log.Info("vulnerability DB", "built", st.Built, "schema", st.SchemaVersion, "path", st.Path)
		}
		log.Info("vulnerability scanner ready")
	}()
	return a
}

// wait returns the scanner once it is built, or why it could not be.
func (a *asyncScanner) wait(ctx context.Context) (*scan.Scanner, error) {
	select {
	case <-a.ready:
		return a.s, a.err
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for the vulnerability scanner: %w", ctx.Err())
	}
}

// Ready is nil once the scanner is built; otherwise it says what serve
// is waiting for (the reason /readyz gives with its 503).
func (a *asyncScanner) Ready() error {
	select {
	case <-a.ready:
		return a.err
	default:
		return errors.New("starting: the vulnerability scanner is being built (syft's license scanner); scans wait for it")
	}
}

// Scan implements gate.Scanner, waiting for the scanner first.
func (a *asyncScanner) Scan(ctx context.Context, img v1.Image, name string) (*scan.Result, error) {
	s, err := a.wait(ctx)
	if err != nil {
		return nil, err
	}
	return s.Scan(ctx, img, name)
}

// Status implements admin.VulnDB, waiting for the scanner first.
func (a *asyncScanner) Status() (scan.DBStatus, error) {
	s, err := a.wait(context.Background())
	if err != nil {
		return scan.DBStatus{}, err
	}
	return s.Status()
}

// Import implements admin.VulnDB, waiting for the scanner first.
func (a *asyncScanner) Import(path string) (scan.DBStatus, error) {
	s, err := a.wait(context.Background())
	if err != nil {
		return scan.DBStatus{}, err
	}
	return s.Import(path)
}

// Update checks listingURL for a newer DB once the scanner is built.
func (a *asyncScanner) Update(ctx context.Context, listingURL string) (bool, error) {
	s, err := a.wait(ctx)
	if err != nil {
		return false, err
	}
	return s.Update(ctx, listingURL)
}

// adminTokenFile is the token file under data_dir; `make run` writes the
// same file, so both ways of starting share one token.
const adminTokenFile = "admin.token"

// adminToken returns the admin token kept in <dataDir>/admin.token,
// generating it (32 random bytes, hex, mode 0600) when the file is missing
// or empty. It reports whether it generated the token.
func adminToken(dataDir string) (token, path string, created bool, err error) {
	path = filepath.Join(dataDir, adminTokenFile)
	for range 2 {
		b, err := os.ReadFile(path)
		if err == nil {
			if tok := strings.TrimSpace(string(b)); tok != "" {
				return tok, path, false, checkTokenMode(path)
			}
			// Empty (e.g. an interrupted write): replace it.
			if err := os.Remove(path); err != nil {
				return "", path, false, fmt.Errorf("admin token: %w", err)
			}
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", path, false, fmt.Errorf("admin token: %w", err)
		}
		raw := make([]byte, 32)
		if _, err := rand.Read(raw); err != nil {
			return "", path, false, fmt.Errorf("admin token: %w", err)
		}
		tok := hex.EncodeToString(raw)
		// O_EXCL: if another process created the file meanwhile, read
		// its token rather than replace one that may be in use.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return "", path, false, fmt.Errorf("admin token: %w", err)
		}
		_, err = f.WriteString(tok + "\n")
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			_ = os.Remove(path)
			return "", path, false, fmt.Errorf("admin token: write %s: %w", path, err)
		}
		return tok, path, true, nil
	}
	return "", path, false, fmt.Errorf("admin token: %s keeps changing; is another airlock starting on this data_dir?", path)
}

// checkTokenMode refuses a token file others can read: anyone who can
// read it can approve images.
func checkTokenMode(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("admin token: %s is readable by others (mode %04o); chmod 600 it", path, fi.Mode().Perm())
	}
	return nil
}
