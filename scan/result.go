package scan

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/anchore/grype/grype/match"
	"github.com/anchore/grype/grype/vulnerability"
	"github.com/anchore/syft/syft/sbom"
)

// Result is the outcome of scanning one image.
type Result struct {
	// SPDX is the SBOM as SPDX 2.3 JSON (syft's spdxjson encoder).
	SPDX []byte
	// SyftJSON is the SBOM in syft's native JSON format.
	SyftJSON []byte
	// Distro is the detected distribution, e.g. "alpine 3.20.3" or
	// "debian 12"; "" when none was detected.
	Distro string
	// Packages lists every package in the SBOM, sorted by name, version
	// and type.
	Packages []Package
	// Matches lists the vulnerabilities found, most severe first, then by
	// vulnerability ID and package.
	Matches []Match
	// DB is the database the matches came from.
	DB DBStatus
	// SBOMDuration is the time spent reading the image and building and
	// encoding the SBOM; MatchDuration the time spent matching.
	SBOMDuration, MatchDuration time.Duration
}

// Package is one package found in an image.
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// Type is syft's package type, e.g. "apk", "deb", "go-module".
	Type string `json:"type"`
	// Licenses are the declared licenses, as SPDX expressions where syft
	// could normalize them and as found otherwise.
	Licenses []string `json:"licenses,omitempty"`
	// PURL is the package URL, e.g. "pkg:apk/alpine/musl@1.2.5-r0?arch=x86_64&distro=alpine-3.20.3".
	PURL string `json:"purl,omitempty"`
}

// Match is one vulnerability affecting one package.
type Match struct {
	// VulnID is the vulnerability identifier, e.g. "CVE-2024-0001".
	VulnID string `json:"id"`
	// Severity is "Critical", "High", "Medium", "Low", "Negligible" or
	// "Unknown".
	Severity string `json:"severity"`
	// Package, Version and Type identify the affected package.
	Package string `json:"package"`
	Version string `json:"version"`
	Type    string `json:"type"`
	// FixedIn lists the versions that fix the vulnerability, if any.
	FixedIn []string `json:"fixed_in,omitempty"`
	// FixState is "fixed", "not-fixed", "wont-fix" or "unknown".
	FixState string `json:"fix_state"`
	// Namespace is the vulnerability data source, e.g.
	// "alpine:distro:alpine:3.20".
	Namespace string `json:"namespace,omitempty"`
	// Description is the start of the vulnerability's description (at
	// most descriptionMax bytes, cut at a word boundary), if any.
	Description string `json:"description,omitempty"`
}

// descriptionMax bounds Match.Description.
const descriptionMax = 240

func packagesOf(bom *sbom.SBOM) []Package {
	var out []Package
	for _, p := range bom.Artifacts.Packages.Sorted() {
		var lics []string
		for _, l := range p.Licenses.ToSlice() {
			v := l.SPDXExpression
			if v == "" {
				v = l.Value
			}
			if v != "" && !slices.Contains(lics, v) {
				lics = append(lics, v)
			}
		}
		out = append(out, Package{
			Name:     p.Name,
			Version:  p.Version,
			Type:     string(p.Type),
			Licenses: lics,
			PURL:     p.PURL,
		})
	}
	return out
}

func matchesOf(d *loadedDB, ms *match.Matches) []Match {
	if ms == nil {
		return nil
	}
	var out []Match
	for _, m := range ms.Sorted() {
		v := m.Vulnerability
		meta := v.Metadata
		if meta == nil {
			// Older providers only answer through the (deprecated)
			// metadata lookup.
			meta, _ = d.provider.VulnerabilityMetadata(v.Reference) //nolint:staticcheck
		}
		sev, desc := vulnerability.UnknownSeverity.String(), ""
		if meta != nil {
			sev, desc = meta.Severity, meta.Description
		}
		state := string(v.Fix.State)
		if state == "" {
			state = string(vulnerability.FixStateUnknown)
		}
		out = append(out, Match{
			VulnID:      v.ID,
			Severity:    normalizeSeverity(sev),
			Package:     m.Package.Name,
			Version:     m.Package.Version,
			Type:        string(m.Package.Type),
			FixedIn:     slices.Clone(v.Fix.Versions),
			FixState:    state,
			Namespace:   v.Namespace,
			Description: shorten(desc, descriptionMax),
		})
	}
	slices.SortStableFunc(out, func(a, b Match) int {
		return cmp.Or(
			cmp.Compare(severityRank(b.Severity), severityRank(a.Severity)),
			cmp.Compare(a.VulnID, b.VulnID),
			cmp.Compare(a.Package, b.Package),
			cmp.Compare(a.Version, b.Version),
		)
	})
	return out
}

// normalizeSeverity spells s as grype's severity names ("Critical", ...).
func normalizeSeverity(s string) string {
	switch sev := vulnerability.ParseSeverity(s); sev {
	case vulnerability.UnknownSeverity:
		return "Unknown"
	default:
		str := sev.String()
		return strings.ToUpper(str[:1]) + str[1:]
	}
}

func severityRank(s string) int {
	return int(vulnerability.ParseSeverity(s))
}

// shorten returns the first line-folded max bytes of s, cut at a word
// boundary with "…" appended when anything was cut.
func shorten(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= max {
		return s
	}
	cut := s[:max]
	for !utf8.ValidString(cut) {
		cut = cut[:len(cut)-1]
	}
	if i := strings.LastIndexByte(cut, ' '); i > max/2 {
		cut = cut[:i]
	}
	return cut + "…"
}

// valuesCtx is a context whose values come from ctx, then from values;
// deadline, cancellation and errors come from ctx alone. It lets every scan
// see the license scanner built once in New without giving up the
// caller's cancellation.
type valuesCtx struct {
	context.Context
	values context.Context
}

func (c valuesCtx) Value(key any) any {
	if v := c.Context.Value(key); v != nil {
		return v
	}
	return c.values.Value(key)
}

func withValues(ctx, values context.Context) context.Context {
	return valuesCtx{Context: ctx, values: values}
}
