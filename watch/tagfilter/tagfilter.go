// Package tagfilter matches upstream tag names against the patterns of a
// watched repository (config watch[].tags): globs, anchored regular
// expressions and semantic-version ranges.
//
// Pattern syntax:
//
//   - "regex:<re>" matches tags that Go's regexp <re> matches as a whole
//     (it is anchored: "regex:1\.2[0-9]" does not match "11.21-alpine").
//     Go's regexp runs in time linear in the tag, so a hostile tag cannot
//     make matching slow.
//   - "semver:<range>" matches tags that parse as a version (a leading
//     "v" and missing minor or patch are accepted: "v1.27", "1.27.3") and
//     satisfy <range>, e.g. ">=1.27 <2" (space or comma: and; "||": or;
//     "~1.27", "^1", "1.27.x" as in github.com/Masterminds/semver/v3).
//     A tag with a suffix ("1.27-alpine", "1.28.0-rc.1") is a pre-release
//     in semver terms and is matched only by a range that names a
//     pre-release itself (">=1.27.0-0"); watch such variants with a glob
//     ("1.27*-alpine") or a regex instead.
//   - "glob:<pattern>" or any other pattern: path.Match syntax ("*" any
//     run of characters, "?" one character, "[a-z]" a class); a pattern
//     without metacharacters ("latest") matches that tag only.
//
// Every pattern first requires the tag to satisfy the distribution spec's
// tag grammar; anything else an upstream lists is never matched.
package tagfilter

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"

	"github.com/Masterminds/semver/v3"
)

// MaxPatternLength bounds one pattern.
const MaxPatternLength = 256

// tagGrammar is the distribution spec's tag grammar.
var tagGrammar = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)

// Kind names a pattern's syntax.
type Kind string

// Pattern kinds.
const (
	KindGlob   Kind = "glob"
	KindRegex  Kind = "regex"
	KindSemver Kind = "semver"
)

// Pattern is one compiled tag pattern.
type Pattern struct {
	raw    string
	kind   Kind
	glob   string
	re     *regexp.Regexp
	semver *semver.Constraints
}

// Parse compiles one pattern.
func Parse(raw string) (Pattern, error) {
	p := Pattern{raw: raw}
	if strings.TrimSpace(raw) == "" {
		return p, errors.New("empty tag pattern")
	}
	if len(raw) > MaxPatternLength {
		return p, fmt.Errorf("tag pattern of %d bytes (at most %d)", len(raw), MaxPatternLength)
	}
	switch {
	case strings.HasPrefix(raw, "regex:"):
		expr := strings.TrimPrefix(raw, "regex:")
		re, err := regexp.Compile(`^(?:` + expr + `)$`)
		if err != nil {
			return p, fmt.Errorf("tag pattern %q: %w", raw, err)
		}
		p.kind, p.re = KindRegex, re
	case strings.HasPrefix(raw, "semver:"):
		c, err := semver.NewConstraint(strings.TrimPrefix(raw, "semver:"))
		if err != nil {
			return p, fmt.Errorf("tag pattern %q: semver range: %w", raw, err)
		}
		p.kind, p.semver = KindSemver, c
	default:
		g := strings.TrimPrefix(raw, "glob:")
		if g == "" {
			return p, fmt.Errorf("tag pattern %q: empty glob", raw)
		}
		if _, err := path.Match(g, ""); err != nil {
			return p, fmt.Errorf("tag pattern %q: %w", raw, err)
		}
		p.kind, p.glob = KindGlob, g
	}
	return p, nil
}

// String returns the pattern as written.
func (p Pattern) String() string { return p.raw }

// Kind returns the pattern's syntax.
func (p Pattern) Kind() Kind { return p.kind }

// Match reports whether tag matches the pattern.
func (p Pattern) Match(tag string) bool {
	if !tagGrammar.MatchString(tag) {
		return false
	}
	switch p.kind {
	case KindRegex:
		return p.re.MatchString(tag)
	case KindSemver:
		v, err := semver.NewVersion(tag)
		return err == nil && p.semver.Check(v)
	case KindGlob:
		ok, _ := path.Match(p.glob, tag)
		return ok
	}
	return false
}

// Set is a list of patterns; a tag matches the set if it matches any of them.
type Set []Pattern

// ParseSet compiles patterns; at least one is required.
func ParseSet(patterns []string) (Set, error) {
	if len(patterns) == 0 {
		return nil, errors.New("no tag patterns")
	}
	out := make(Set, 0, len(patterns))
	for i, raw := range patterns {
		p, err := Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("[%d]: %w", i, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// Match reports whether tag matches any pattern of the set.
func (s Set) Match(tag string) bool {
	for _, p := range s {
		if p.Match(tag) {
			return true
		}
	}
	return false
}

// Version returns tag as a semantic version, if it is one (as a semver
// pattern would read it); ok is false otherwise. Watches use it to handle
// the newest versions first.
func Version(tag string) (v *semver.Version, ok bool) {
	if !tagGrammar.MatchString(tag) {
		return nil, false
	}
	v, err := semver.NewVersion(tag)
	return v, err == nil
}
