package lifecycle

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Microsoft's lifecycle metadata: an image's publisher declares when the
// image reaches its end of life with an OCI artifact of ArtifactType,
// attached to the image as a referrer (`oras attach --artifact-type
// application/vnd.microsoft.artifact.lifecycle --annotation
// vnd.microsoft.artifact.lifecycle.end-of-life.date=2025-05-14 <image>`),
// whose manifest carries EOLAnnotation. Airlock also accepts the
// annotation placed directly on the image manifest or index.
const (
	ArtifactType  = "application/vnd.microsoft.artifact.lifecycle"
	EOLAnnotation = "vnd.microsoft.artifact.lifecycle.end-of-life.date"
)

// Publisher is the end of life an image's publisher declared for it.
type Publisher struct {
	// EOL is the declared end of life; zero when none was found.
	EOL time.Time `json:"eol,omitzero"`
	// Source says where it was declared: "referrer sha256:…", "manifest
	// annotation", "index annotation".
	Source string `json:"source,omitempty"`
	// Error says why a declaration that was there could not be used
	// (unparseable date, wrong subject, upstream unreachable).
	Error string `json:"error,omitempty"`
}

// maxDateLen bounds an annotation value: the longest RFC 3339 date-time
// ("2006-01-02T15:04:05.999999999+07:00") is 35 bytes.
const maxDateLen = 64

// ParseDate reads an end-of-life annotation value strictly: an RFC 3339
// date-time ("2025-05-14T00:00:00Z") or an RFC 3339 full date
// ("2025-05-14", midnight UTC), the two forms Microsoft's tools write.
// Anything else (a locale's date, prose, a date before 1970) is an error
// quoting a bounded part of the value.
func ParseDate(v string) (time.Time, error) {
	if len(v) > maxDateLen {
		return time.Time{}, fmt.Errorf("%s: value of %d bytes is not a date", EOLAnnotation, len(v))
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		if t, err = time.Parse(time.DateOnly, v); err != nil {
			return time.Time{}, fmt.Errorf("%s: %s is not an RFC 3339 date (want 2006-01-02 or 2006-01-02T15:04:05Z)", EOLAnnotation, strconv.Quote(v))
		}
	}
	if t.Year() < 1970 {
		return time.Time{}, fmt.Errorf("%s: %s is not a plausible date", EOLAnnotation, strconv.Quote(v))
	}
	return t.UTC(), nil
}

// ErrNoDeclaration means a manifest carries no end-of-life annotation.
var ErrNoDeclaration = errors.New("no end-of-life annotation")

// manifest is what is read of an image manifest, an index or a
// lifecycle artifact's manifest.
type manifest struct {
	MediaType    string `json:"mediaType"`
	ArtifactType string `json:"artifactType"`
	Config       *struct {
		MediaType string `json:"mediaType"`
	} `json:"config"`
	Subject *struct {
		Digest string `json:"digest"`
	} `json:"subject"`
	Annotations map[string]string `json:"annotations"`
}

// FromManifest reads the end of life declared by the annotation on an
// image manifest or index (raw, its JSON). It returns ErrNoDeclaration
// when there is none.
func FromManifest(raw []byte) (time.Time, error) {
	var m manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return time.Time{}, fmt.Errorf("manifest: %w", err)
	}
	v, ok := m.Annotations[EOLAnnotation]
	if !ok {
		return time.Time{}, ErrNoDeclaration
	}
	return ParseDate(v)
}

// ParseReferrer reads a lifecycle artifact's manifest (raw, as fetched
// by digest) listed among the referrers of subject ("sha256:…"). The
// manifest must be of ArtifactType (its artifactType, or its config's
// media type as older clients write), must name subject as its subject
// (a referrers list cannot attach another image's declaration), and
// must carry EOLAnnotation with a date ParseDate reads.
func ParseReferrer(raw []byte, subject string) (time.Time, error) {
	var m manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return time.Time{}, fmt.Errorf("lifecycle manifest: %w", err)
	}
	at := m.ArtifactType
	if at == "" && m.Config != nil {
		at = m.Config.MediaType
	}
	if at != ArtifactType {
		return time.Time{}, fmt.Errorf("lifecycle manifest has artifact type %s, not %s", strconv.Quote(bounded(at)), ArtifactType)
	}
	if m.Subject == nil {
		return time.Time{}, errors.New("lifecycle manifest has no subject")
	}
	if m.Subject.Digest != subject {
		return time.Time{}, fmt.Errorf("lifecycle manifest is about %s, not %s", strconv.Quote(bounded(m.Subject.Digest)), subject)
	}
	v, ok := m.Annotations[EOLAnnotation]
	if !ok {
		return time.Time{}, fmt.Errorf("lifecycle manifest lacks the %s annotation", EOLAnnotation)
	}
	return ParseDate(v)
}

// bounded cuts s for an error message.
func bounded(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
