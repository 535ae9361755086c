// Package listener opens Airlock's TCP listeners: the registry API's
// (listen, tls) and the admin API's (admin.listen, admin.tls). A listener
// without a tls: section serves plain HTTP. With one:
//
//   - TLS 1.2 is the minimum; a client offering only older versions is
//     refused at the handshake.
//   - The certificate and key are re-read when their files change, with no
//     restart. At a handshake, at most once per CheckInterval, the files'
//     size, modification time and identity (inode: a rename over them
//     counts) are compared with those of the pair in use; on a change the
//     pair is loaded again and serves the following handshakes. A pair
//     that does not load (a file half-written, a key that does not match
//     the certificate, a file missing in the middle of a rename) is logged
//     and the pair in use keeps serving; the files are tried again at the
//     next interval, so a rotation that finishes later is still picked up.
//     Connections already open keep the certificate they shook hands with.
//   - client_ca_file set is mutual TLS: tls.RequireAndVerifyClientCert
//     against the CA certificates in that file. A client with no
//     certificate, or one no CA in the file issued, is refused at the
//     handshake, before any HTTP. The file reloads like the pair.
//   - The registry listener speaks HTTP/1.1 only, as it does in plain
//     HTTP, so that limits.max_connections keeps bounding concurrent
//     requests (HTTP/2 would multiply each connection by up to 250
//     streams). The admin listener also offers HTTP/2: a browser keeps the
//     console's live-update streams on one connection.
//
// The connection limit (limits.max_connections) applies below TLS: a
// connection counts from accept, handshake included, until it closes.
package listener

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/netutil"

	"github.com/airlockproxy/airlock/config"
)

// CheckInterval is how often, at most, a TLS listener looks at its
// certificate files: a stat of each per interval, on a handshake.
const CheckInterval = 2 * time.Second

// Options configures one listener.
type Options struct {
	// TLS names the certificate files; without a cert_file the listener
	// serves plain HTTP.
	TLS config.TLS
	// Field is the config key of TLS, for messages: "tls" or "admin.tls".
	Field string
	// MaxConnections bounds open connections; further clients wait in
	// the accept queue. 0 means no bound.
	MaxConnections int
	// HTTP2 offers HTTP/2 by ALPN besides HTTP/1.1 (TLS only).
	HTTP2 bool
	// CheckInterval replaces the package's CheckInterval (tests).
	CheckInterval time.Duration
	// Logger receives reloads and refused reloads; nil is slog.Default().
	Logger *slog.Logger
}

// Listen opens a TCP listener on addr as o says. The certificate files
// are loaded before the port is bound, so a wrong file fails the start
// without holding the port.
func Listen(addr string, o Options) (net.Listener, error) {
	var r *Reloader
	if o.TLS.Enabled() {
		var err error
		if r, err = NewReloader(o); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if o.MaxConnections > 0 {
		// Bounded connections keep a flood of (idle) clients from
		// exhausting file descriptors and memory; others queue.
		ln = netutil.LimitListener(ln, o.MaxConnections)
	}
	if r != nil {
		ln = tls.NewListener(ln, r.Config())
	}
	return ln, nil
}

// Reloader holds a listener's certificate and client CAs, loaded from
// files and loaded again when the files change (see the package doc).
type Reloader struct {
	files    config.TLS
	field    string
	interval time.Duration
	http2    bool
	log      *slog.Logger

	// cur is the configuration handshakes get: certificate, client CAs.
	cur atomic.Pointer[tls.Config]

	// mu is held by the handshake that checks the files; the others go
	// on with cur rather than wait on a slow disk.
	mu      sync.Mutex
	checked time.Time
	stamps  []os.FileInfo // of the files cur was loaded from
	failed  string        // the last refused reload, logged once
}

// NewReloader loads o.TLS's files. An error names the config key.
func NewReloader(o Options) (*Reloader, error) {
	if o.Field == "" {
		o.Field = "tls"
	}
	if o.CheckInterval <= 0 {
		o.CheckInterval = CheckInterval
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	r := &Reloader{files: o.TLS, field: o.Field, interval: o.CheckInterval, http2: o.HTTP2, log: o.Logger}
	stamps, err := r.stat()
	if err != nil {
		return nil, err
	}
	c, leaf, err := r.load()
	if err != nil {
		return nil, err
	}
	r.cur.Store(c)
	r.stamps, r.checked = stamps, time.Now()
	attrs := []any{"listener", r.field, "subject", leaf.Subject.String(), "serial", leaf.SerialNumber.String(), "not_after", leaf.NotAfter}
	if r.files.ClientCAFile != "" {
		attrs = append(attrs, "client_certificates", "required", "client_ca_file", r.files.ClientCAFile)
	}
	r.log.Info("TLS certificate loaded", attrs...)
	r.warnValidity(leaf)
	return r, nil
}

// Config returns the tls.Config to serve with: every handshake takes the
// current certificate and client CAs through GetConfigForClient.
func (r *Reloader) Config() *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		NextProtos:         r.nextProtos(),
		GetConfigForClient: r.configForClient,
	}
}

func (r *Reloader) nextProtos() []string {
	if r.http2 {
		return []string{"h2", "http/1.1"}
	}
	return []string{"http/1.1"}
}

func (r *Reloader) configForClient(*tls.ClientHelloInfo) (*tls.Config, error) {
	r.check()
	return r.cur.Load(), nil
}

// check reloads the files if they changed, at most once per interval.
func (r *Reloader) check() {
	if !r.mu.TryLock() {
		return
	}
	defer r.mu.Unlock()
	now := time.Now()
	if now.Sub(r.checked) < r.interval {
		return
	}
	r.checked = now
	stamps, err := r.stat()
	if err != nil {
		r.refused(err)
		return
	}
	if sameFiles(stamps, r.stamps) {
		return
	}
	// Stat before read: a file changed between the two is seen as
	// changed again at the next check and read again, never missed.
	c, leaf, err := r.load()
	if err != nil {
		r.refused(err)
		return
	}
	r.cur.Store(c)
	r.stamps, r.failed = stamps, ""
	r.log.Info("TLS certificate reloaded", "listener", r.field, "subject", leaf.Subject.String(), "serial", leaf.SerialNumber.String(), "not_after", leaf.NotAfter)
	r.warnValidity(leaf)
}

// refused logs a reload that did not happen, once per distinct reason:
// a broken file is looked at every interval and would flood the log.
func (r *Reloader) refused(err error) {
	if msg := err.Error(); msg != r.failed {
		r.failed = msg
		r.log.Error("TLS certificate files changed but do not load; still serving the previous certificate", "listener", r.field, "err", err)
	}
}

func (r *Reloader) warnValidity(leaf *x509.Certificate) {
	if now := time.Now(); now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
		r.log.Warn("TLS certificate is outside its validity period; clients will refuse it", "listener", r.field, "not_before", leaf.NotBefore, "not_after", leaf.NotAfter)
	}
}

// paths are the files the listener reads, in stamp order.
func (r *Reloader) paths() []string {
	p := []string{r.files.CertFile, r.files.KeyFile}
	if r.files.ClientCAFile != "" {
		p = append(p, r.files.ClientCAFile)
	}
	return p
}

func (r *Reloader) stat() ([]os.FileInfo, error) {
	var out []os.FileInfo
	for _, p := range r.paths() {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.field, err)
		}
		out = append(out, fi)
	}
	return out, nil
}

// sameFiles reports whether every file is the one stamped: same inode,
// size and modification time.
func sameFiles(a, b []os.FileInfo) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !os.SameFile(a[i], b[i]) || a[i].Size() != b[i].Size() || !a[i].ModTime().Equal(b[i].ModTime()) {
			return false
		}
	}
	return true
}

// load reads the pair and the client CAs into a new server config.
func (r *Reloader) load() (*tls.Config, *x509.Certificate, error) {
	pair, err := tls.LoadX509KeyPair(r.files.CertFile, r.files.KeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: cert_file %s with key_file %s: %w", r.field, r.files.CertFile, r.files.KeyFile, err)
	}
	if pair.Leaf == nil {
		return nil, nil, errors.New(r.field + ": cert_file: no leaf certificate")
	}
	c := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{pair},
		NextProtos:   r.nextProtos(),
	}
	if r.files.ClientCAFile != "" {
		pool, err := config.ClientCAPool(r.files.ClientCAFile)
		if err != nil {
			return nil, nil, fmt.Errorf("%s.client_ca_file: %w", r.field, err)
		}
		c.ClientAuth = tls.RequireAndVerifyClientCert
		c.ClientCAs = pool
	}
	return c, pair.Leaf, nil
}
