// Package vex reads OpenVEX documents and says which vulnerability
// matches they suppress: a statement with status not_affected or fixed
// for a product that names the image's digest (and, when it lists
// subcomponents, one that names the package) removes the match from the
// policy decision. A statement for another image, another package, or
// with another status suppresses nothing.
package vex

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
)

// maxDocument bounds one VEX document.
const maxDocument = 4 << 20

// Statuses that suppress a match.
const (
	StatusNotAffected = "not_affected"
	StatusFixed       = "fixed"
)

var statuses = map[string]bool{StatusNotAffected: true, StatusFixed: true, "affected": true, "under_investigation": true}

// Document is the part of an OpenVEX document Airlock reads.
type Document struct {
	Context    string      `json:"@context"`
	ID         string      `json:"@id"`
	Author     string      `json:"author"`
	Statements []Statement `json:"statements"`
}

// Statement is one VEX statement.
type Statement struct {
	Vulnerability struct {
		Name    string   `json:"name"`
		Aliases []string `json:"aliases"`
	} `json:"vulnerability"`
	Products        []Product `json:"products"`
	Status          string    `json:"status"`
	Justification   string    `json:"justification"`
	ImpactStatement string    `json:"impact_statement"`
}

// Product names an image (by a purl or reference carrying its digest)
// and, optionally, packages inside it.
type Product struct {
	ID            string            `json:"@id"`
	Identifiers   map[string]string `json:"identifiers"`
	Subcomponents []struct {
		ID string `json:"@id"`
	} `json:"subcomponents"`
}

// Set is the statements of several documents.
type Set struct {
	stmts []sourced
}

type sourced struct {
	Statement
	source string
}

// Load reads OpenVEX documents from files. A file that is not an OpenVEX
// document, or a statement with an unknown status, is an error naming it.
func Load(files []string) (*Set, error) {
	s := &Set{}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return nil, fmt.Errorf("vex %s: %w", f, err)
		}
		raw, err := io.ReadAll(io.LimitReader(fh, maxDocument+1))
		fh.Close()
		if err != nil {
			return nil, fmt.Errorf("vex %s: %w", f, err)
		}
		if len(raw) > maxDocument {
			return nil, fmt.Errorf("vex %s: larger than %d bytes", f, maxDocument)
		}
		if err := s.Add(f, raw); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Add parses one document (source names it in messages). A document that
// is larger than 4 MiB, not OpenVEX, or has a statement with an unknown
// status or no vulnerability is an error, and none of its statements is
// added.
func (s *Set) Add(source string, raw []byte) error {
	if len(raw) > maxDocument {
		return fmt.Errorf("vex %s: larger than %d bytes", source, maxDocument)
	}
	var d Document
	if err := json.Unmarshal(raw, &d); err != nil {
		return fmt.Errorf("vex %s: %w", source, err)
	}
	if !strings.HasPrefix(d.Context, "https://openvex.dev/ns") {
		return fmt.Errorf("vex %s: @context %q is not OpenVEX (https://openvex.dev/ns/…)", source, d.Context)
	}
	for i, st := range d.Statements {
		if !statuses[st.Status] {
			return fmt.Errorf("vex %s: statement %d: status %q is not not_affected, affected, fixed or under_investigation", source, i, st.Status)
		}
		if st.Vulnerability.Name == "" {
			return fmt.Errorf("vex %s: statement %d: no vulnerability name", source, i)
		}
	}
	for _, st := range d.Statements {
		s.stmts = append(s.stmts, sourced{st, source})
	}
	return nil
}

// Merge appends o's statements after s's: where both speak about the same
// match, o's have the last word.
func (s *Set) Merge(o *Set) {
	if o != nil {
		s.stmts = append(s.stmts, o.stmts...)
	}
}

// Len is the number of statements.
func (s *Set) Len() int { return len(s.stmts) }

// Match is a statement that suppresses a vulnerability match.
type Match struct {
	Source        string
	Status        string
	Justification string
}

// String describes the suppression for reports and records.
func (m Match) String() string {
	s := m.Status
	if m.Justification != "" {
		s += ": " + m.Justification
	}
	return s + " (VEX " + m.Source + ")"
}

// Suppresses returns the statement that suppresses vulnerability id in
// package pkg at version of the image with digest imageDigest
// ("sha256:…"). The last matching statement wins, as in OpenVEX, so a
// later "affected" takes a suppression back.
func (s *Set) Suppresses(imageDigest, id, pkg, version string) (Match, bool) {
	if s == nil {
		return Match{}, false
	}
	var m Match
	found := false
	for _, st := range s.stmts {
		if !names(st.Statement, id) {
			continue
		}
		for _, p := range st.Products {
			if !namesImage(p, imageDigest) || !namesPackage(p, pkg, version) {
				continue
			}
			found = st.Status == StatusNotAffected || st.Status == StatusFixed
			m = Match{Source: st.source, Status: st.Status, Justification: st.Justification}
		}
	}
	return m, found
}

func names(st Statement, id string) bool {
	if strings.EqualFold(st.Vulnerability.Name, id) {
		return true
	}
	for _, a := range st.Vulnerability.Aliases {
		if strings.EqualFold(a, id) {
			return true
		}
	}
	return false
}

// namesImage: the product's @id or one of its identifiers carries the
// image digest (a purl "pkg:oci/name@sha256%3A…", or "repo@sha256:…").
func namesImage(p Product, digest string) bool {
	if digest == "" {
		return false
	}
	ids := []string{p.ID}
	for _, v := range p.Identifiers {
		ids = append(ids, v)
	}
	for _, id := range ids {
		if u, err := url.PathUnescape(id); err == nil {
			id = u
		}
		if i := strings.Index(id, digest); i >= 0 {
			end := i + len(digest)
			// The whole digest, not a prefix of a longer string.
			if end == len(id) || strings.ContainsRune("?#/", rune(id[end])) {
				return true
			}
		}
	}
	return false
}

// namesPackage: no subcomponents means every package of the image;
// otherwise one subcomponent purl names pkg (and its version, if any).
func namesPackage(p Product, pkg, version string) bool {
	if len(p.Subcomponents) == 0 {
		return true
	}
	for _, c := range p.Subcomponents {
		name, ver := purlNameVersion(c.ID)
		if name == pkg && (ver == "" || ver == version) {
			return true
		}
	}
	return false
}

// purlNameVersion reads name and version from "pkg:type/ns/name@version?q#s".
func purlNameVersion(purl string) (string, string) {
	s := strings.TrimPrefix(purl, "pkg:")
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i]
	}
	var ver string
	if i := strings.LastIndex(s, "@"); i >= 0 {
		s, ver = s[:i], s[i+1:]
	}
	if i := strings.LastIndex(s, "/"); i >= 0 {
		s = s[i+1:]
	}
	if u, err := url.PathUnescape(s); err == nil {
		s = u
	}
	if u, err := url.PathUnescape(ver); err == nil {
		ver = u
	}
	return s, ver
}
