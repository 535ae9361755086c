package gate_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/gate"
	"github.com/airlockproxy/airlock/internal/registrytest"
	"github.com/airlockproxy/airlock/internal/vulndbtest"
	"github.com/airlockproxy/airlock/lifecycle"
	"github.com/airlockproxy/airlock/scan"
	"github.com/airlockproxy/airlock/sign"
	"github.com/airlockproxy/airlock/storage/state"
)

// TestEOLBaseOS: the scan detects alpine 3.17 (end of life 2024-11-22 in
// the shipped table); with policy.deny_eol_os the image is rejected naming
// the release and the date, without it approved with a note, and either
// way the record carries the base OS and its end of life.
func TestEOLBaseOS(t *testing.T) {
	up := registrytest.NewUpstream(t)
	sc := newScanner(t)
	on, off := true, false
	for i, deny := range []*bool{&on, &off} {
		repo := "library/old" + string(rune('a'+i))
		d := up.PushImage(t, repo+":1", registrytest.AlpineImage(t, "3.17.2", registrytest.Pkg{Name: "musl", Version: "1.2.3-r4"}))
		p := buildPipeline(t, up, t.TempDir(), nil, sc, func(c *config.Config) {
			scanConfig(config.RescanRevoke)(c)
			c.Policy.DenyEOLOS = deny
		})
		ref := state.Ref{Upstream: "docker.io", Repository: repo, Digest: digest.Digest(d.String())}
		if _, err := p.engine.Request(ref, "test"); err != nil {
			t.Fatal(err)
		}
		img := waitFor(t, p.store, ref, func(i state.Image) bool { return !i.State.InPipeline() })
		if img.Policy == nil || len(img.Policy.BaseOS) != 1 {
			t.Fatalf("record without the base OS: %+v", img.Policy)
		}
		if b := img.Policy.BaseOS[0]; b.Name != "alpine" || b.Release != "3.17" || b.EOL.Format(time.DateOnly) != "2024-11-22" || b.EOLSource != lifecycle.SourceTable {
			t.Errorf("base OS %+v", b)
		}
		if *deny {
			if img.State != state.StateRejected || !strings.Contains(img.Reason, "alpine 3.17 reached its end of life on 2024-11-22") {
				t.Errorf("deny_eol_os: %s (%s)", img.State, img.Reason)
			}
			continue
		}
		if img.State != state.StateApproved || !strings.Contains(strings.Join(img.Policy.Notes, ";"), "reached its end of life") {
			t.Errorf("without deny_eol_os: %s (%s), notes %v", img.State, img.Reason, img.Policy.Notes)
		}
	}
}

// clock is the settable clock of the policy and lifecycle steps.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.set(t)
	return c
}

func (c *clock) now() time.Time  { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) set(t time.Time) { c.ns.Store(t.UnixNano()) }

func date(s string) time.Time {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return t
}

// eolScanner returns a scanner whose vulnerability DB records eol as the
// end of life of alpine 3.17 (the shipped table says 2024-11-22).
func eolScanner(t *testing.T, eol time.Time) *scan.Scanner {
	t.Helper()
	root := t.TempDir()
	vulndbtest.BuildDB(t, root, vulndbtest.DB{
		Vulns: []vulndbtest.Vuln{opensslCVE, {ID: "CVE-2026-4001", Severity: "Low", Distro: "alpine:3.17", Package: "zlib", Ecosystem: "apk", Fix: "1.3-r0"}},
		EOL:   []vulndbtest.OSEOL{{Distro: "alpine:3.17", EOL: eol}},
	})
	sc, err := scan.New(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	return sc
}

var musl = registrytest.Pkg{Name: "musl", Version: "1.2.3-r4"}

// eolConfig denies end-of-life images and warns 90 days ahead.
func eolConfig(mode string, more ...func(*config.Config)) func(*config.Config) {
	return func(c *config.Config) {
		scanConfig(mode)(c)
		on := true
		c.Policy.DenyEOLOS = &on
		c.Policy.WarnEOLWithin = 90 * 24 * time.Hour
		for _, f := range more {
			f(c)
		}
	}
}

// TestEOLFromGrypeDB: the vulnerability DB's end-of-life date for the
// detected release is preferred to the shipped table's, and says so;
// policy.eol_table, the operator's word, beats both.
func TestEOLFromGrypeDB(t *testing.T) {
	up := registrytest.NewUpstream(t)
	sc := eolScanner(t, date("2031-01-01"))
	d := up.PushImage(t, "library/old:1", registrytest.AlpineImage(t, "3.17.2", musl))
	ref := state.Ref{Upstream: "docker.io", Repository: "library/old", Digest: digest.Digest(d.String())}

	t.Run("grype DB", func(t *testing.T) {
		p := buildPipeline(t, up, t.TempDir(), nil, sc, eolConfig(config.RescanRevoke))
		p.engine.SetClock(newClock(date("2027-01-01")).now)
		if _, err := p.engine.Request(ref, "test"); err != nil {
			t.Fatal(err)
		}
		img := waitFor(t, p.store, ref, func(i state.Image) bool { return !i.State.InPipeline() })
		if img.State != state.StateApproved {
			t.Fatalf("%s (%s): the shipped table decided, not the DB", img.State, img.Reason)
		}
		want := state.BaseOS{Name: "alpine", Version: "3.17.2", Release: "3.17", EOL: date("2031-01-01"), EOLSource: lifecycle.SourceGrypeDB}
		if len(img.Policy.BaseOS) != 1 || img.Policy.BaseOS[0] != want {
			t.Errorf("policy base OS %+v, want %+v", img.Policy.BaseOS, want)
		}
		if img.Lifecycle == nil || len(img.Lifecycle.BaseOS) != 1 || img.Lifecycle.BaseOS[0] != want || img.Lifecycle.Report != img.Scan.Report {
			t.Errorf("lifecycle record %+v", img.Lifecycle)
		}
		if img.Policy.ImageEOL != nil {
			t.Errorf("publisher end of life out of nothing: %+v", img.Policy.ImageEOL)
		}
		if s := stepDetail(img, "lifecycle"); !strings.Contains(s, "base OS alpine 3.17: end of life 2031-01-01 (grype-db)") {
			t.Errorf("lifecycle step detail %q", s)
		}
	})
	t.Run("policy.eol_table", func(t *testing.T) {
		table := t.TempDir() + "/eol.json"
		writeFile(t, table, `{"alpine":{"3.17":"2026-12-31"}}`)
		p := buildPipeline(t, up, t.TempDir(), nil, sc, eolConfig(config.RescanRevoke, func(c *config.Config) { c.Policy.EOLTable = table }))
		p.engine.SetClock(newClock(date("2027-01-01")).now)
		if _, err := p.engine.Request(ref, "test"); err != nil {
			t.Fatal(err)
		}
		img := waitFor(t, p.store, ref, func(i state.Image) bool { return !i.State.InPipeline() })
		if img.State != state.StateRejected || !strings.Contains(img.Reason, "base OS alpine 3.17 reached its end of life on 2026-12-31 (date from policy.eol_table; deny_eol_os)") {
			t.Errorf("%s (%s), want rejected by the operator's date", img.State, img.Reason)
		}
	})
}

// TestEOLReachedAtRescan: an approved image whose end of life (the base
// OS's, or the one its publisher declared) comes closer is warned about
// at a rescan within warn_eol_within, and revoked or flagged
// (scan.on_rescan_fail) at the first rescan after it; the clock moves,
// nothing else does. With the upstream down at that rescan, the
// publisher's date read before still holds.
func TestEOLReachedAtRescan(t *testing.T) {
	eol := date("2027-06-01")
	cases := []struct {
		name, mode   string
		publisher    bool // the date is the publisher's, not the base OS's
		upstreamDown bool
		reason, warn string
	}{
		{"base OS, revoke", config.RescanRevoke, false, false,
			"base OS alpine 3.17 reached its end of life on 2027-06-01 (date from grype-db; deny_eol_os)",
			"base OS alpine 3.17 reaches its end of life on 2027-06-01, within warn_eol_within"},
		{"base OS, flag", config.RescanFlag, false, false,
			"base OS alpine 3.17 reached its end of life on 2027-06-01", "within warn_eol_within"},
		{"publisher, revoke", config.RescanRevoke, true, false,
			"the publisher marked this image end-of-life on 2027-06-01 (declared by referrer sha256:",
			"the publisher marks this image end-of-life on 2027-06-01, within warn_eol_within"},
		{"publisher, flag", config.RescanFlag, true, false,
			"the publisher marked this image end-of-life on 2027-06-01", "within warn_eol_within"},
		{"publisher, upstream down", config.RescanRevoke, true, true,
			"the publisher marked this image end-of-life on 2027-06-01 (declared by referrer sha256:", "within warn_eol_within"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			up := registrytest.NewUpstream(t)
			osEOL := eol
			if c.publisher {
				osEOL = date("2031-01-01")
			}
			sc := eolScanner(t, osEOL)
			img := registrytest.AlpineImage(t, "3.17.2", musl)
			d := up.PushImage(t, "library/app:1", img)
			if c.publisher {
				repo := repository(t, up, "library/app")
				ld := putManifest(t, repo, lifecycleArtifact(t, subjectOf(t, img), lifecycle.ArtifactType, "2027-06-01"))
				setReferrers(t, repo, d, ld)
			}
			clk := newClock(eol.AddDate(0, 0, -120))
			p := buildPipeline(t, up, t.TempDir(), nil, sc, eolConfig(c.mode))
			p.engine.SetClock(clk.now)
			ref := state.Ref{Upstream: "docker.io", Repository: "library/app", Digest: digest.Digest(d.String())}
			if _, err := p.engine.Request(ref, "test"); err != nil {
				t.Fatal(err)
			}
			first := waitFor(t, p.store, ref, func(i state.Image) bool { return !i.State.InPipeline() })
			if first.State != state.StateApproved || len(first.Policy.Notes) != 0 {
				t.Fatalf("120 days before: %s (%s), notes %q; want approved without a note", first.State, first.Reason, first.Policy.Notes)
			}
			if c.publisher && (first.Policy.ImageEOL == nil || !first.Policy.ImageEOL.EOL.Equal(eol) || !strings.HasPrefix(first.Policy.ImageEOL.Source, "referrer sha256:")) {
				t.Fatalf("publisher end of life on the record: %+v", first.Policy.ImageEOL)
			}

			rescan := func(at time.Time) state.Image {
				t.Helper()
				clk.set(at)
				if n, _, err := p.engine.RescanAll("test", "clock moved", 0); err != nil || n != 1 {
					t.Fatalf("RescanAll = %d, %v", n, err)
				}
				waitFor(t, p.store, ref, func(i state.Image) bool { return i.Policy != nil && i.Policy.Decided.Equal(at) })
				waitFor(t, p.store, ref, func(state.Image) bool { _, err := p.store.Job(ref); return err != nil })
				img, err := p.store.Image(ref)
				if err != nil {
					t.Fatal(err)
				}
				return img
			}
			warned := rescan(eol.AddDate(0, 0, -30))
			if warned.State != state.StateApproved || warned.Flag != "" || !strings.Contains(strings.Join(warned.Policy.Notes, "; "), c.warn) {
				t.Fatalf("30 days before: %s, flag %q, notes %q; want approved with %q", warned.State, warned.Flag, warned.Policy.Notes, c.warn)
			}

			if c.upstreamDown {
				up.Stop()
			}
			after := rescan(eol.Add(time.Second))
			switch c.mode {
			case config.RescanRevoke:
				if after.State != state.StateRevoked || !strings.Contains(after.Reason, c.reason) {
					t.Fatalf("after the end of life: %s (%s); want revoked: %q", after.State, after.Reason, c.reason)
				}
			case config.RescanFlag:
				if after.State != state.StateApproved || !strings.Contains(after.Flag, c.reason) {
					t.Fatalf("after the end of life: %s, flag %q; want approved and flagged: %q", after.State, after.Flag, c.reason)
				}
			}
			if c.upstreamDown {
				e := after.Policy.ImageEOL
				if e == nil || !e.EOL.Equal(eol) || !strings.HasSuffix(e.Source, "(as read before)") || !strings.Contains(e.Error, "referrers of "+d.String()) {
					t.Errorf("upstream down: publisher end of life %+v; want the date read before, and why", e)
				}
			}
		})
	}
}

// TestPublisherLifecycleHostile: what an upstream can attach or annotate
// around an image. Good declarations are read wherever the publisher put
// them (referrer, index, manifest); garbage dates, referrers about another
// image, lists over the size limit, floods and dangling entries are
// recorded and decide nothing; nothing fails the pipeline.
func TestPublisherLifecycleHostile(t *testing.T) {
	up := registrytest.NewUpstream(t)
	sc := eolScanner(t, date("2031-01-01"))
	now := date("2027-01-01")
	type result struct {
		state  state.State
		reason string // part of the reason, for a rejection
		eol    string // the publisher's end of life on the record
		source string // part of its source
		errs   []string
	}
	type fixture struct {
		repo string
		d    v1.Hash
		want result
	}
	var fixtures []fixture
	add := func(repo string, d v1.Hash, want result) { fixtures = append(fixtures, fixture{repo, d, want}) }
	base := func(tag string) v1.Image {
		// A distinct image per case: the tag goes into a package version.
		return registrytest.AlpineImage(t, "3.17.2", registrytest.Pkg{Name: "musl", Version: "1.2.3-r" + tag})
	}
	lc := func(repo name.Repository, subject v1.Descriptor, artifactType, day string) v1.Descriptor {
		return putManifest(t, repo, lifecycleArtifact(t, subject, artifactType, day))
	}

	{ // A good declaration in the past, from a referrer: rejected.
		img := base("1")
		d := up.PushImage(t, "pub/past:1", img)
		r := repository(t, up, "pub/past")
		setReferrers(t, r, d, lc(r, subjectOf(t, img), lifecycle.ArtifactType, "2026-12-31T00:00:00Z"))
		add("pub/past", d, result{state: state.StateRejected, reason: "the publisher marked this image end-of-life on 2026-12-31 (declared by referrer sha256:", eol: "2026-12-31", source: "referrer sha256:"})
	}
	{ // A garbage date: noted, approved.
		img := base("2")
		d := up.PushImage(t, "pub/garbage:1", img)
		r := repository(t, up, "pub/garbage")
		setReferrers(t, r, d, lc(r, subjectOf(t, img), lifecycle.ArtifactType, "05/14/2025"))
		add("pub/garbage", d, result{state: state.StateApproved, errs: []string{`"05/14/2025" is not an RFC 3339 date`}})
	}
	{ // A declaration about another image, listed among this one's
		// referrers: not used, though its date has passed.
		img, other := base("3"), base("3b")
		d := up.PushImage(t, "pub/wrong:1", img)
		up.PushImage(t, "pub/wrong:2", other)
		r := repository(t, up, "pub/wrong")
		setReferrers(t, r, d, lc(r, subjectOf(t, other), lifecycle.ArtifactType, "2020-01-01"))
		add("pub/wrong", d, result{state: state.StateApproved, errs: []string{"is about"}})
	}
	{ // Another artifact type with the annotation: not fetched, not used.
		img := base("4")
		d := up.PushImage(t, "pub/othertype:1", img)
		r := repository(t, up, "pub/othertype")
		setReferrers(t, r, d, lc(r, subjectOf(t, img), "application/vnd.example.sbom", "2020-01-01"))
		add("pub/othertype", d, result{state: state.StateApproved})
	}
	{ // A flood of declarations: the first maxLifecycleReferrers are read,
		// the earliest of those counts, the rest are reported.
		img := base("5")
		d := up.PushImage(t, "pub/flood:1", img)
		r := repository(t, up, "pub/flood")
		var descs []v1.Descriptor
		for i := range 10 {
			descs = append(descs, lc(r, subjectOf(t, img), lifecycle.ArtifactType, fmt.Sprintf("2030-01-%02d", 20-i)))
		}
		descs = append(descs, lc(r, subjectOf(t, img), lifecycle.ArtifactType, "2020-01-01")) // past, but 11th
		setReferrers(t, r, d, descs...)
		add("pub/flood", d, result{state: state.StateApproved, eol: "2030-01-17", source: "referrer", errs: []string{"7 more lifecycle referrers not read (at most 4 are)"}})
	}
	// A registry with the referrers API answers what it likes (distribution,
	// the test upstream, refuses lists of manifests it does not hold).
	api := &referrersAPI{lists: map[string][]byte{}, next: http.DefaultTransport}
	{ // A referrers list over limits.max_manifest_bytes: not read.
		img := base("6")
		d := up.PushImage(t, "pub/huge:1", img)
		r := repository(t, up, "pub/huge")
		good := lc(r, subjectOf(t, img), lifecycle.ArtifactType, "2020-01-01")
		descs := []v1.Descriptor{good}
		for i := range 400 {
			descs = append(descs, v1.Descriptor{MediaType: types.OCIManifestSchema1, Size: 100, ArtifactType: "application/vnd.example.junk",
				Digest: v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%064x", i)}})
		}
		api.set(t, "pub/huge", d, descs...)
		add("pub/huge", d, result{state: state.StateApproved, errs: []string{"over limits.max_manifest_bytes"}})
	}
	{ // Dangling and malformed entries: reported, the good one still read.
		img := base("7")
		d := up.PushImage(t, "pub/dangling:1", img)
		r := repository(t, up, "pub/dangling")
		good := lc(r, subjectOf(t, img), lifecycle.ArtifactType, "2029-02-03")
		missing := v1.Descriptor{MediaType: types.OCIManifestSchema1, Size: 300, ArtifactType: lifecycle.ArtifactType, Digest: v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}}
		bad := v1.Descriptor{MediaType: types.OCIManifestSchema1, Size: 300, ArtifactType: lifecycle.ArtifactType, Digest: v1.Hash{Algorithm: "md5", Hex: "00"}}
		api.set(t, "pub/dangling", d, good, missing, bad)
		add("pub/dangling", d, result{state: state.StateApproved, eol: "2029-02-03", source: "referrer", errs: []string{"referrer sha256:abab", "digest \"md5:00\""}})
	}
	{ // Not JSON at all.
		img := base("11")
		d := up.PushImage(t, "pub/notjson:1", img)
		api.lists["/v2/pub/notjson/referrers/"+d.String()] = []byte("\x00\xffnot json")
		add("pub/notjson", d, result{state: state.StateApproved, errs: []string{"referrers list of " + d.String()}})
	}
	{ // The annotation on the index itself, and on a platform manifest.
		amd := mutate.Annotations(base("8"), map[string]string{lifecycle.EOLAnnotation: "2028-03-04"}).(v1.Image)
		idx := mutate.Annotations(mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
			mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}}),
			map[string]string{lifecycle.EOLAnnotation: "2028-05-06T10:00:00+02:00"}).(v1.ImageIndex)
		d := up.PushIndex(t, "pub/index:1", idx)
		add("pub/index", d, result{state: state.StateApproved, eol: "2028-03-04", source: "platform manifest sha256:"})
	}
	{ // The annotation on the manifest: past, rejected.
		img := mutate.Annotations(base("9"), map[string]string{lifecycle.EOLAnnotation: "2026-06-30"}).(v1.Image)
		d := up.PushImage(t, "pub/annotated:1", img)
		add("pub/annotated", d, result{state: state.StateRejected, reason: "the publisher marked this image end-of-life on 2026-06-30 (declared by manifest annotation; deny_eol_os)", eol: "2026-06-30", source: "manifest annotation"})
	}
	{ // A garbage annotation on the manifest.
		img := mutate.Annotations(base("10"), map[string]string{lifecycle.EOLAnnotation: strings.Repeat("x", 5000)}).(v1.Image)
		d := up.PushImage(t, "pub/annotated-garbage:1", img)
		add("pub/annotated-garbage", d, result{state: state.StateApproved, errs: []string{"manifest annotation: vnd.microsoft.artifact.lifecycle.end-of-life.date: value of 5000 bytes is not a date"}})
	}

	p := buildPipeline(t, up, t.TempDir(), api, sc, eolConfig(config.RescanRevoke, func(c *config.Config) { c.Limits.MaxManifestBytes = 16 << 10 }))
	p.engine.SetClock(newClock(now).now)
	for _, f := range fixtures {
		ref := state.Ref{Upstream: "docker.io", Repository: f.repo, Digest: digest.Digest(f.d.String())}
		if _, err := p.engine.Request(ref, "test"); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range fixtures {
		t.Run(f.repo, func(t *testing.T) {
			ref := state.Ref{Upstream: "docker.io", Repository: f.repo, Digest: digest.Digest(f.d.String())}
			img := waitFor(t, p.store, ref, func(i state.Image) bool { return !i.State.InPipeline() })
			t.Logf("%s (%s); publisher %+v; notes %q", img.State, img.Reason, img.Policy.ImageEOL, img.Policy.Notes)
			w := f.want
			if img.State != w.state || !strings.Contains(img.Reason, w.reason) {
				t.Fatalf("%s (%s); want %s %q", img.State, img.Reason, w.state, w.reason)
			}
			e := img.Policy.ImageEOL
			if w.eol == "" && len(w.errs) == 0 {
				if e != nil {
					t.Fatalf("publisher end of life %+v, want none", e)
				}
				return
			}
			if e == nil {
				t.Fatalf("no publisher end of life on the record, want %+v", w)
			}
			got := ""
			if !e.EOL.IsZero() {
				got = e.EOL.Format(time.DateOnly)
			}
			if got != w.eol || !strings.Contains(e.Source, w.source) {
				t.Errorf("publisher end of life %s from %q, want %s from %q", got, e.Source, w.eol, w.source)
			}
			for _, want := range w.errs {
				if !strings.Contains(e.Error, want) {
					t.Errorf("error %q, want it to say %q", e.Error, want)
				}
				if !strings.Contains(strings.Join(img.Policy.Notes, "; "), "publisher lifecycle metadata: ") {
					t.Errorf("no policy note of the problem: %q", img.Policy.Notes)
				}
			}
			if len(w.errs) == 0 && e.Error != "" {
				t.Errorf("unexpected error %q", e.Error)
			}
			if len(e.Error) > 2000 {
				t.Errorf("error of %d bytes on the record", len(e.Error))
			}
		})
	}
}

// TestEOLInApprovalAttestation: the approval attestation carries the base
// OS with where its end of life came from, and the publisher's declared
// end of life.
func TestEOLInApprovalAttestation(t *testing.T) {
	priv, _, err := sign.GenerateKeyPair([]byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := sign.LoadSigner(priv, []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	up := registrytest.NewUpstream(t)
	img := registrytest.AlpineImage(t, "3.17.2", musl)
	d := up.PushImage(t, "library/signed:1", img)
	r := repository(t, up, "library/signed")
	setReferrers(t, r, d, putManifest(t, r, lifecycleArtifact(t, subjectOf(t, img), lifecycle.ArtifactType, "2030-02-28")))
	p := assemble(t, up, t.TempDir(), nil, eolScanner(t, date("2031-01-01")), signer, eolConfig(config.RescanRevoke))
	p.engine.SetClock(newClock(date("2027-01-01")).now)
	ref := state.Ref{Upstream: "docker.io", Repository: "library/signed", Digest: digest.Digest(d.String())}
	if _, err := p.engine.Request(ref, "test"); err != nil {
		t.Fatal(err)
	}
	rec := waitFor(t, p.store, ref, func(i state.Image) bool { return !i.State.InPipeline() })
	if rec.State != state.StateApproved || rec.Signed == nil {
		t.Fatalf("%s (%s), signed %v", rec.State, rec.Reason, rec.Signed != nil)
	}
	var pred struct {
		Policy struct {
			ImageEOL *state.ImageEOL `json:"image_eol"`
		} `json:"policy"`
		Lifecycle struct {
			BaseOS []state.BaseOS `json:"baseOS"`
		} `json:"lifecycle"`
	}
	if !approvalPredicate(t, p, rec, &pred) {
		t.Fatal("no approval attestation")
	}
	if len(pred.Lifecycle.BaseOS) != 1 || pred.Lifecycle.BaseOS[0].EOLSource != lifecycle.SourceGrypeDB || !pred.Lifecycle.BaseOS[0].EOL.Equal(date("2031-01-01")) {
		t.Errorf("lifecycle.baseOS %+v", pred.Lifecycle.BaseOS)
	}
	if e := pred.Policy.ImageEOL; e == nil || !e.EOL.Equal(date("2030-02-28")) || !strings.HasPrefix(e.Source, "referrer sha256:") {
		t.Errorf("policy.image_eol %+v", e)
	}
}

// approvalPredicate decodes the approval predicate of rec's attestation
// manifest (DSSE envelopes, one per layer) into v.
func approvalPredicate(t *testing.T, p *pipeline, rec state.Image, v any) bool {
	t.Helper()
	raw, err := p.content.Get(t.Context(), rec.Signed.Att.Digest)
	if err != nil {
		t.Fatal(err)
	}
	var m v1.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	for _, l := range m.Layers {
		b, err := p.content.Get(t.Context(), digest.Digest(l.Digest.String()))
		if err != nil {
			t.Fatal(err)
		}
		var env struct {
			Payload []byte `json:"payload"`
		}
		var st struct {
			PredicateType string          `json:"predicateType"`
			Predicate     json.RawMessage `json:"predicate"`
		}
		if json.Unmarshal(b, &env) != nil || json.Unmarshal(env.Payload, &st) != nil || st.PredicateType != gate.PredicateApproval {
			continue
		}
		if err := json.Unmarshal(st.Predicate, v); err != nil {
			t.Fatal(err)
		}
		return true
	}
	return false
}

func stepDetail(img state.Image, step string) string {
	for _, s := range img.Steps {
		if s.Step == step {
			return s.Detail
		}
	}
	return ""
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func repository(t *testing.T, up *registrytest.Upstream, repo string) name.Repository {
	t.Helper()
	r, err := name.NewRepository(up.Host()+"/"+repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// subjectOf is the descriptor of img, as a referrer names its subject.
func subjectOf(t *testing.T, img v1.Image) v1.Descriptor {
	t.Helper()
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	mt, err := img.MediaType()
	if err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return v1.Descriptor{MediaType: mt, Digest: d, Size: int64(len(raw))}
}

const emptyJSON = "application/vnd.oci.empty.v1+json"

// lifecycleArtifact is the manifest `oras attach --artifact-type
// <artifactType> --annotation vnd.microsoft.artifact.lifecycle.end-of-life.date=<day>`
// writes for subject.
func lifecycleArtifact(t *testing.T, subject v1.Descriptor, artifactType, day string) []byte {
	t.Helper()
	m := map[string]any{
		"schemaVersion": 2,
		"mediaType":     types.OCIManifestSchema1,
		"artifactType":  artifactType,
		"config":        map[string]any{"mediaType": emptyJSON, "digest": digest.FromBytes([]byte("{}")), "size": 2, "data": "e30="},
		"layers":        []any{map[string]any{"mediaType": emptyJSON, "digest": digest.FromBytes([]byte("{}")), "size": 2, "data": "e30="}},
		"subject":       subject,
		"annotations":   map[string]string{lifecycle.EOLAnnotation: day, "org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rawManifest lets remote.Put push exact manifest bytes.
type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mt, nil }

// putManifest pushes an OCI manifest by digest (with the empty config it
// refers to) and returns its descriptor as a referrers list gives it.
func putManifest(t *testing.T, repo name.Repository, raw []byte) v1.Descriptor {
	t.Helper()
	if err := remote.WriteLayer(repo, static.NewLayer([]byte("{}"), emptyJSON), remote.WithContext(t.Context())); err != nil {
		t.Fatal(err)
	}
	d := digest.FromBytes(raw)
	if err := remote.Put(repo.Digest(d.String()), rawManifest{raw, types.OCIManifestSchema1}, remote.WithContext(t.Context())); err != nil {
		t.Fatalf("push %s: %v", d, err)
	}
	var m struct {
		ArtifactType string            `json:"artifactType"`
		Annotations  map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	h, _ := v1.NewHash(d.String())
	return v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: h, Size: int64(len(raw)), ArtifactType: m.ArtifactType, Annotations: m.Annotations}
}

// setReferrers makes descs the referrers list of subject: the referrers
// tag fallback (distribution has no referrers API), as the publisher's
// client would maintain it, or forge it.
func setReferrers(t *testing.T, repo name.Repository, subject v1.Hash, descs ...v1.Descriptor) {
	t.Helper()
	idx := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: descs}
	raw, err := json.Marshal(idx)
	if err != nil {
		t.Fatal(err)
	}
	tag := repo.Tag(subject.Algorithm + "-" + subject.Hex)
	if err := remote.Put(tag, rawManifest{raw, types.OCIImageIndex}, remote.WithContext(t.Context())); err != nil {
		t.Fatalf("push referrers list of %s: %v", subject, err)
	}
}

// referrersAPI answers the referrers API for the lists set, as a registry
// that has it would; everything else goes to next.
type referrersAPI struct {
	lists map[string][]byte // by path: /v2/<repo>/referrers/<digest>
	next  http.RoundTripper
}

func (a *referrersAPI) set(t *testing.T, repo string, subject v1.Hash, descs ...v1.Descriptor) {
	t.Helper()
	raw, err := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: descs})
	if err != nil {
		t.Fatal(err)
	}
	a.lists["/v2/"+repo+"/referrers/"+subject.String()] = raw
}

func (a *referrersAPI) RoundTrip(r *http.Request) (*http.Response, error) {
	if body, ok := a.lists[r.URL.Path]; ok && r.Method == http.MethodGet {
		return &http.Response{
			StatusCode: http.StatusOK, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header:        http.Header{"Content-Type": {string(types.OCIImageIndex)}},
			Body:          io.NopCloser(bytes.NewReader(body)),
			ContentLength: int64(len(body)),
			Request:       r,
		}, nil
	}
	return a.next.RoundTrip(r)
}
