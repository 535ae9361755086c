package admin

import (
	"errors"
	"fmt"
	"net/http"
	"path"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/storage/state"
)

// WithUpstreams names the configured upstreams, so that an IMAGE naming
// none of them (e.g. "library/alpine:3.20", the upstream left out) is
// answered "unknown upstream" with the list, not "never pulled".
func WithUpstreams(ups []config.Upstream) Option {
	return func(s *Server) {
		if len(ups) == 0 {
			return
		}
		s.upstreams = map[string]string{}
		for _, u := range ups {
			s.upstreams[u.Name] = u.Name
			s.upstreamNames = append(s.upstreamNames, u.Name)
			if u.Alias != "" {
				s.upstreams[u.Alias] = u.Name
			}
		}
		slices.Sort(s.upstreamNames)
	}
}

// WithDBMaxSize bounds an uploaded vulnerability DB (scan.db_max_size); the
// importer applies the same bound to what the archive decompresses to.
func WithDBMaxSize(n int64) Option { return func(s *Server) { s.dbMaxSize = n } }

// checkText rejects what must never reach the audit log or a terminal
// through it: C0 control characters (newline, tab, escape …), DEL, C1
// controls, Unicode line separators and bidirectional overrides, and
// invalid UTF-8. A reason with a newline could otherwise forge a row of
// `airlock audit`, and an escape sequence could rewrite the admin's
// terminal. Refusing beats cleaning: the audit log records exactly what
// the admin sent.
func checkText(field, s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s: not valid UTF-8", field)
	}
	for i, r := range s {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || isBidiControl(r) {
			return fmt.Errorf("%s: control character %U at byte %d is not allowed (write it on one line, without tabs or escape sequences)", field, r, i)
		}
	}
	return nil
}

// isBidiControl reports the Unicode bidirectional embedding, override and
// isolate controls, which reorder how the rest of a line is displayed.
func isBidiControl(r rune) bool {
	return r >= '\u202a' && r <= '\u202e' || r >= '\u2066' && r <= '\u2069' || r == '\u200e' || r == '\u200f' || r == '\u061c'
}

// checkAction validates an action request before anything is looked up:
// the free-text fields and the image's upstream.
func (s *Server) checkAction(req ActionRequest) error {
	if err := checkText("actor", req.Actor); err != nil {
		return err
	}
	if err := checkText("reason", req.Reason); err != nil {
		return err
	}
	return s.checkUpstream(req.Image)
}

// checkUpstream answers an IMAGE whose first component is not a configured
// upstream with the configured ones. Without it "library/alpine:3.20" is
// looked up as upstream "library" and reported as never pulled.
func (s *Server) checkUpstream(image string) error {
	if s.upstreams == nil {
		return nil
	}
	up, rest, ok := strings.Cut(image, "/")
	if !ok || rest == "" {
		return nil // ParseImage says what an IMAGE looks like
	}
	name, known := s.upstreams[up]
	switch {
	case known && name == up:
		return nil
	case known:
		return fmt.Errorf("image %q: %q is the path alias of upstream %s; admin commands name the upstream: %s/%s", image, up, name, name, rest)
	}
	return fmt.Errorf("image %q: unknown upstream %q; configured upstreams: %s (an IMAGE is <upstream>/<repository>:<tag> or @<digest>, e.g. %s/library/alpine:3.20)",
		image, up, strings.Join(s.upstreamNames, ", "), s.upstreamNames[0])
}

// phrasedError keeps a sentinel for statusOf while saying what happened
// in words.
type phrasedError struct {
	msg string
	err error
}

func (e phrasedError) Error() string { return e.msg }
func (e phrasedError) Unwrap() error { return e.err }

// describeConflict turns the state store's "X is revoked, not [pending
// fetching …]" into what happened, e.g. "X is already revoked", for the
// action named by the request path (approve, revoke, rescan).
func (s *Server) describeConflict(r *http.Request, ref state.Ref, err error) error {
	if !errors.Is(err, state.ErrConflict) {
		return err
	}
	img, ierr := s.store.Image(ref)
	if ierr != nil {
		return err
	}
	verb := path.Base(r.URL.Path)
	var msg string
	switch {
	case verb == "revoke" && img.State == state.StateRevoked:
		msg = fmt.Sprintf("%s is already revoked", ref)
	case verb == "approve" && img.State == state.StateApproved:
		msg = fmt.Sprintf("%s is already approved", ref)
	case verb == "approve" && img.State == state.StateSigning:
		msg = fmt.Sprintf("%s is already being approved: it is being signed", ref)
	case verb == "approve":
		msg = fmt.Sprintf("%s is still in the pipeline (%s): an admin decides once it is awaiting-approval, rejected or failed", ref, img.State)
	default:
		msg = fmt.Sprintf("%s is %s: it cannot be %s in that state", ref, img.State, pastTense(verb))
	}
	return phrasedError{msg: msg, err: state.ErrConflict}
}

func pastTense(verb string) string {
	switch verb {
	case "approve":
		return "approved"
	case "revoke":
		return "revoked"
	case "rescan":
		return "rescanned"
	}
	return verb + "ed"
}
