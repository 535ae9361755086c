package state

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/storage/kv"
)

// State is where an image is in the quarantine pipeline.
type State string

// The image states. Only StateApproved is ever served.
const (
	StatePending   State = "pending"
	StateFetching  State = "fetching"
	StateVerifying State = "verifying"
	StateScanning  State = "scanning"
	StateSigning   State = "signing"
	// StateAwaitingApproval holds a fully fetched image that passed every
	// configured step until an admin approves it (the manual policy).
	StateAwaitingApproval State = "awaiting-approval"
	StateApproved         State = "approved"
	StateRejected         State = "rejected"
	StateFailed           State = "failed"
	StateRevoked          State = "revoked"
	// StatePurged is an image whose content retention released (see
	// retention in the package doc): never served; a pull queues it
	// through the whole pipeline again, like a new image.
	StatePurged State = "purged"
)

// States lists every state, in pipeline order.
var States = []State{
	StatePending, StateFetching, StateVerifying, StateScanning, StateSigning,
	StateAwaitingApproval, StateApproved, StateRejected, StateFailed, StateRevoked,
	StatePurged,
}

// Valid reports whether s is a known state.
func (s State) Valid() bool {
	for _, k := range States {
		if s == k {
			return true
		}
	}
	return false
}

// InPipeline reports whether an image in state s is being worked on by the
// pipeline (as opposed to waiting for a decision or done).
func (s State) InPipeline() bool {
	switch s {
	case StatePending, StateFetching, StateVerifying, StateScanning, StateSigning:
		return true
	}
	return false
}

// Ref names one image: an upstream, a repository on it and a manifest digest.
type Ref struct {
	// Upstream is the configured upstream name, e.g. "docker.io".
	Upstream string `json:"upstream"`
	// Repository is the repository on that upstream, e.g. "library/alpine".
	Repository string `json:"repository"`
	// Digest is the manifest digest.
	Digest digest.Digest `json:"digest"`
}

// String returns "<upstream>/<repository>@<digest>", the key used everywhere.
func (r Ref) String() string {
	return r.Upstream + "/" + r.Repository + "@" + string(r.Digest)
}

// Repo returns "<upstream>/<repository>".
func (r Ref) Repo() string { return r.Upstream + "/" + r.Repository }

// ParseRef parses "<upstream>/<repository>@<digest>".
func ParseRef(s string) (Ref, error) {
	name, dgst, ok := strings.Cut(s, "@")
	if !ok {
		return Ref{}, fmt.Errorf("image %q: want <upstream>/<repository>@<digest>", s)
	}
	up, repo, ok := strings.Cut(name, "/")
	if !ok || up == "" || repo == "" {
		return Ref{}, fmt.Errorf("image %q: want <upstream>/<repository>@<digest>", s)
	}
	d, err := digest.Parse(dgst)
	if err != nil {
		return Ref{}, fmt.Errorf("image %q: %w", s, err)
	}
	return Ref{Upstream: up, Repository: repo, Digest: d}, nil
}

// StepResult records one pipeline step's outcome on an image.
type StepResult struct {
	Step     string    `json:"step"`
	Status   string    `json:"status"` // passed, failed, rejected, held, skipped
	Detail   string    `json:"detail,omitempty"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
}

// Image is the record of one image (manifest or index) Airlock knows.
type Image struct {
	Ref
	State     State  `json:"state"`
	Reason    string `json:"reason,omitempty"`
	MediaType string `json:"media_type,omitempty"`
	Size      int64  `json:"size,omitempty"`
	// Manifests lists the platform manifests of an index that were fetched.
	Manifests []digest.Digest `json:"manifests,omitempty"`
	// Blobs lists every config and layer blob the image references
	// (for an index: those of its fetched platform manifests).
	Blobs []digest.Digest `json:"blobs,omitempty"`
	// ContentSize is the total size of the manifests and blobs.
	ContentSize int64        `json:"content_size,omitempty"`
	Tags        []string     `json:"tags,omitempty"`
	Steps       []StepResult `json:"steps,omitempty"`
	Attempts    int          `json:"attempts,omitempty"`
	Created     time.Time    `json:"created"`
	Updated     time.Time    `json:"updated"`
	ApprovedAt  time.Time    `json:"approved_at,omitzero"`
	ApprovedBy  string       `json:"approved_by,omitempty"`
	// Scan summarises the last vulnerability scan.
	Scan *ScanSummary `json:"scan,omitempty"`
	// Policy is the last policy decision.
	Policy *PolicySummary `json:"policy,omitempty"`
	// Malware summarises the last malware scan.
	Malware *MalwareSummary `json:"malware,omitempty"`
	// Flag is set when a rescan failed policy but scan.on_rescan_fail is
	// "flag": the image stays approved and an admin should look.
	Flag string `json:"flag,omitempty"`
	// Verification is the result of checking the upstream's signatures.
	Verification *Verification `json:"verification,omitempty"`
	// Signed lists the signature and attestations Airlock made for the image.
	Signed *Signed `json:"signed,omitempty"`
	// Permanent is set when the image's last failure was one retrying
	// cannot fix (the upstream says the manifest does not exist, an index
	// with no usable platform manifest, a manifest over the size limit). A
	// pull never queues such an image again, so anonymous clients cannot
	// turn it into a loop of jobs and audit entries; an admin's rescan does.
	Permanent bool `json:"permanent,omitempty"`
	// RetryAt is, for a failed image, the earliest time a pull may queue it
	// again: a transient failure is retried by pulls at most once per
	// backoff window. Zero means a pull may queue it now.
	RetryAt time.Time `json:"retry_at,omitzero"`
	// Lifecycle is what the last lifecycle step read of the image's end
	// of life (base OS and publisher), for the policy decision.
	Lifecycle *Lifecycle `json:"lifecycle,omitempty"`
	// LastPulled is when a client last pulled the image's manifest through
	// Airlock, and PullCount how many times (pull records, flushed in
	// batches: they may lag by a few seconds).
	LastPulled time.Time `json:"last_pulled,omitzero"`
	PullCount  int64     `json:"pull_count,omitempty"`
	// Pinned exempts the image from retention (airlock pin).
	Pinned bool `json:"pinned,omitempty"`
	// Approvals are the pending approvals of an admin approval that needs
	// more than one approver (gate.approvals_required), oldest first. They
	// belong to the image's current state: every transition that sets a
	// state clears them (see Store.Approve).
	Approvals []Approval `json:"approvals,omitempty"`
}

// Descriptor points at a manifest Airlock stores.
type Descriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       digest.Digest     `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

// Verification is the outcome of checking an image's upstream signatures.
type Verification struct {
	Mode       string `json:"mode"`
	Verified   bool   `json:"verified"`
	Signatures int    `json:"signatures"`
	// Signer says who signed: a key fingerprint or a keyless identity.
	Signer string `json:"signer,omitempty"`
	// Layout is where the signature was found: "sig-tag" or "referrers".
	Layout string `json:"layout,omitempty"`
	Detail string `json:"detail,omitempty"`
	// Require is which formats counted: either, cosign, notation or both.
	Require string `json:"require,omitempty"`
	// Format is the format of the signature that verified: "cosign",
	// "notation", or "cosign+notation" when both did.
	Format string `json:"format,omitempty"`
	// Checks is each format's own result.
	Checks []SignatureCheck `json:"checks,omitempty"`
}

// SignatureCheck is the verification of one signature format.
type SignatureCheck struct {
	// Format is "cosign" or "notation".
	Format     string `json:"format"`
	Signatures int    `json:"signatures"`
	Verified   bool   `json:"verified"`
	// Signer is who signed the verified signature.
	Signer string `json:"signer,omitempty"`
	// Layout is where a cosign signature was found; Envelope is a Notation
	// signature's envelope media type.
	Layout   string `json:"layout,omitempty"`
	Envelope string `json:"envelope,omitempty"`
	Detail   string `json:"detail,omitempty"`
}

// Signed lists what Airlock signed for an image.
type Signed struct {
	SignedAt time.Time `json:"signed_at"`
	// Key identifies the enterprise key (its public key fingerprint).
	Key string `json:"key"`
	// Sig and Att are the classic cosign manifests served as the tags
	// sha256-<hex>.sig and sha256-<hex>.att of the image's repository.
	Sig Descriptor `json:"sig"`
	Att Descriptor `json:"att"`
	// Referrers are the OCI 1.1 referrer manifests (subject = the image).
	Referrers []Descriptor `json:"referrers,omitempty"`
}

// ScanSummary is the short form of a scan, kept on the image record; the
// full report and SBOMs are content-store blobs.
type ScanSummary struct {
	ScannedAt time.Time `json:"scanned_at"`
	// Report is the digest of the JSON vulnerability report blob.
	Report digest.Digest `json:"report"`
	// DBBuilt is the build time of the vulnerability DB used.
	DBBuilt time.Time `json:"db_built"`
	// Packages is the number of packages found (all platforms).
	Packages int `json:"packages"`
	// Severities counts vulnerabilities by severity.
	Severities map[string]int `json:"severities,omitempty"`
}

// MalwareSummary is the result of the last malware scan of an image.
// Findings and Unscanned list at most MaxMalwareListed entries each (a
// hostile image must not grow the record without bound); the counts are
// complete.
type MalwareSummary struct {
	ScannedAt time.Time `json:"scanned_at"`
	// Engine is clamd's version line, naming its signature database.
	Engine         string             `json:"engine"`
	Layers         int                `json:"layers"`
	Files          int                `json:"files"`
	Bytes          int64              `json:"bytes"`
	FindingCount   int                `json:"finding_count"`
	Findings       []MalwareFinding   `json:"findings,omitempty"`
	UnscannedCount int                `json:"unscanned_count"`
	Unscanned      []MalwareUnscanned `json:"unscanned,omitempty"`
}

// MaxMalwareListed bounds the findings and unscanned files kept on a record.
const MaxMalwareListed = 50

// MalwareFinding is malware found in a file of a layer.
type MalwareFinding struct {
	Layer     digest.Digest `json:"layer"`
	Path      string        `json:"path"`
	Signature string        `json:"signature"`
}

// MalwareUnscanned is a file (or a whole layer) that was not scanned.
type MalwareUnscanned struct {
	Layer  digest.Digest `json:"layer"`
	Path   string        `json:"path,omitempty"`
	Size   int64         `json:"size,omitempty"`
	Reason string        `json:"reason"`
}

// PolicySummary is the short form of a policy decision.
type PolicySummary struct {
	Pass    bool      `json:"pass"`
	Version string    `json:"policy_version"`
	Decided time.Time `json:"decided"`
	// Violations lists the first failed rules (Total says how many there were).
	Violations []string `json:"violations,omitempty"`
	Total      int      `json:"total_violations,omitempty"`
	Accepted   []string `json:"accepted,omitempty"`
	// Suppressed lists matches a VEX statement removed from the decision.
	Suppressed []string `json:"suppressed,omitempty"`
	// BaseOS is the base OS of each platform and its end of life (when
	// known: policy.eol_table, the grype DB or the shipped table).
	BaseOS []BaseOS `json:"base_os,omitempty"`
	// ImageEOL is the end of life the image's publisher declared
	// (Microsoft's lifecycle metadata), when it declared one or tried to.
	ImageEOL *ImageEOL `json:"image_eol,omitempty"`
	Notes    []string  `json:"notes,omitempty"`
}

// BaseOS is an image's base OS release and its end of life.
type BaseOS struct {
	Name    string    `json:"name"`
	Version string    `json:"version"`
	Release string    `json:"release,omitempty"`
	EOL     time.Time `json:"eol,omitzero"`
	// EOLSource says where EOL came from: "policy.eol_table", "grype-db"
	// (the vulnerability DB the image was scanned with) or
	// "airlock-table" (the table shipped with Airlock).
	EOLSource string `json:"eol_source,omitempty"`
}

// ImageEOL is the end of life an image's publisher declared for it: the
// vnd.microsoft.artifact.lifecycle.end-of-life.date annotation of a
// lifecycle referrer, or of the image manifest or index itself.
type ImageEOL struct {
	// EOL is the declared end of life; zero when none could be read.
	EOL time.Time `json:"eol,omitzero"`
	// Source says where: "referrer sha256:…", "manifest annotation",
	// "index annotation", "platform manifest sha256:… annotation".
	Source string `json:"source,omitempty"`
	// Error says what could not be read (an unparseable date, a referrer
	// about another image, an unreachable upstream); the declaration is
	// then not used, or the last one read is kept.
	Error string `json:"error,omitempty"`
}

// Lifecycle is what the lifecycle step read of an image's end of life,
// for the policy decision that follows it in the same run.
type Lifecycle struct {
	// Report is the scan report it was read for.
	Report  digest.Digest `json:"report,omitempty"`
	Checked time.Time     `json:"checked"`
	// BaseOS is each platform's base OS with its end of life from the
	// best source (see BaseOS.EOLSource).
	BaseOS []BaseOS `json:"base_os,omitempty"`
	// ImageEOL is the publisher's declaration, if any.
	ImageEOL *ImageEOL `json:"image_eol,omitempty"`
}

// VulnHit is one image affected by a vulnerability (the "where is CVE-X?" index).
type VulnHit struct {
	Image    Ref      `json:"image"`
	State    State    `json:"state"`
	Severity string   `json:"severity"`
	Packages []string `json:"packages"`
}

// Fetched reports whether the image's content is complete in the content store.
func (i *Image) Fetched() bool { return i.MediaType != "" && i.Size > 0 && i.ContentSize > 0 }

// SetStep records the result of a step, replacing an earlier result of the same step.
func (i *Image) SetStep(r StepResult) {
	for k := range i.Steps {
		if i.Steps[k].Step == r.Step {
			i.Steps[k] = r
			return
		}
	}
	i.Steps = append(i.Steps, r)
}

// TagEntry is one digest a tag pointed to upstream.
type TagEntry struct {
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"media_type,omitempty"`
	FirstSeen time.Time     `json:"first_seen"`
}

// Tag is the history of one upstream tag, newest last.
type Tag struct {
	Upstream   string     `json:"upstream"`
	Repository string     `json:"repository"`
	Name       string     `json:"tag"`
	ResolvedAt time.Time  `json:"resolved_at"`
	History    []TagEntry `json:"history"`
	// Refusal is set when an admin revoked the tag's digest by tag without
	// allowing a fallback: the tag must not silently roll back to an older
	// approved digest, which may carry the same vulnerability.
	Refusal *TagRefusal `json:"refusal,omitempty"`
}

// TagRefusal keeps a tag from falling back past a digest an admin revoked
// by tag. The digests in Through (the revoked one and every digest the
// tag's history held before it at that moment) serve the tag again only if
// they are approved after At; a digest the tag moves to later is not in
// Through, so approving it lifts the refusal. Serving by digest is not
// affected: this is about what a tag resolves to.
type TagRefusal struct {
	// Digest is the digest that was revoked by tag.
	Digest digest.Digest `json:"digest"`
	// Through lists Digest and the digests before it in the tag's history.
	Through []digest.Digest `json:"through"`
	// At is when the refusal was made.
	At time.Time `json:"at"`
	// By is the admin who made it.
	By string `json:"by"`
}

// Refuses reports whether the refusal keeps img from serving the tag.
func (r *TagRefusal) Refuses(img Image) bool {
	return r != nil && slices.Contains(r.Through, img.Digest) && !img.ApprovedAt.After(r.At)
}

// Current returns the digest the tag pointed to at the last resolution.
func (t *Tag) Current() (TagEntry, bool) {
	if len(t.History) == 0 {
		return TagEntry{}, false
	}
	return t.History[len(t.History)-1], true
}

// JobKind says what a queued job does.
type JobKind string

const (
	// JobPull runs the whole pipeline, fetch first.
	JobPull JobKind = "pull"
	// JobRescan re-runs the checks on an approved image without taking it
	// out of service unless it now fails.
	JobRescan JobKind = "rescan"
	// JobSign signs an image an admin approved; it is approved once signed.
	JobSign JobKind = "sign"
)

// Job is one queued unit of pipeline work. It stays in the queue until it
// finishes, so a restart resumes it.
type Job struct {
	ID        uint64    `json:"id"`
	Kind      JobKind   `json:"kind"`
	Image     Ref       `json:"image"`
	Attempts  int       `json:"attempts"`
	NotBefore time.Time `json:"not_before"`
	Created   time.Time `json:"created"`
	Actor     string    `json:"actor"`
	// Reason is the admin's reason, for jobs an admin started.
	Reason string `json:"reason,omitempty"`
	// Owner is the process that runs the job, until LeaseUntil: no other
	// process claims it before then (see Store.NextJob).
	Owner      string    `json:"owner,omitempty"`
	LeaseUntil time.Time `json:"lease_until,omitzero"`
}

// Entry is one audit-log record.
type Entry struct {
	Seq    uint64    `json:"seq"`
	Time   time.Time `json:"time"`
	Actor  string    `json:"actor"`
	Image  string    `json:"image"`
	From   State     `json:"from,omitempty"`
	To     State     `json:"to,omitempty"`
	Action string    `json:"action"`
	Reason string    `json:"reason,omitempty"`
	// Repeats counts the later occurrences of the same automatic
	// transition that were folded into this entry instead of being
	// appended (see appendAudit); Reason is then the latest one's.
	Repeats int `json:"repeats,omitempty"`
	// Last is when the latest folded occurrence happened.
	Last time.Time `json:"last,omitzero"`
}

// Errors returned by the store.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("state conflict")
	// ErrLeaseLost is returned to a worker whose job lease expired and
	// was taken by another process: its result must not be applied.
	ErrLeaseLost = errors.New("job lease lost to another process")
	// ErrUnavailable marks errors of a state database that cannot be
	// reached (the proxy answers 503, fail-static may still serve).
	ErrUnavailable = kv.ErrUnavailable
)
