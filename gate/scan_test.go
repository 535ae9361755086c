package gate_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/gate"
	"github.com/airlockproxy/airlock/internal/registrytest"
	"github.com/airlockproxy/airlock/internal/vulndbtest"
	"github.com/airlockproxy/airlock/scan"
	"github.com/airlockproxy/airlock/storage/state"
)

var opensslCVE = vulndbtest.Vuln{ID: "CVE-2026-3001", Severity: "Critical", Distro: "alpine:3.20", Package: "openssl", Ecosystem: "apk", Fix: "3.0.2-r0"}

// newScanner returns a scanner on a fresh DB holding vulns.
func newScanner(t *testing.T, vulns ...vulndbtest.Vuln) *scan.Scanner {
	t.Helper()
	root := t.TempDir()
	vulndbtest.Build(t, root, vulns...)
	sc, err := scan.New(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	return sc
}

func scanConfig(mode string) func(*config.Config) {
	return func(c *config.Config) {
		c.Gate.Policy = config.PolicyScan
		c.Scan.OnRescanFail = mode
	}
}

// TestScanIndexPlatforms: every platform of an index is scanned from the
// content store, and one vulnerable platform rejects the whole index.
func TestScanIndexPlatforms(t *testing.T) {
	up := registrytest.NewUpstream(t)
	amd := registrytest.AlpineImage(t, "3.20.3", registrytest.Pkg{Name: "openssl", Version: "3.0.1-r0"})
	arm := registrytest.AlpineImage(t, "3.20.3", registrytest.Pkg{Name: "openssl", Version: "3.0.2-r0"})
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
	)
	d := up.PushIndex(t, "library/multi:1", idx)
	p := buildPipeline(t, up, t.TempDir(), nil, newScanner(t, opensslCVE), scanConfig(config.RescanRevoke))
	ref := state.Ref{Upstream: "docker.io", Repository: "library/multi", Digest: digest.Digest(d.String())}
	if _, err := p.engine.Request(ref, "test"); err != nil {
		t.Fatal(err)
	}
	img := waitFor(t, p.store, ref, func(i state.Image) bool { return !i.State.InPipeline() && i.State != state.StateFailed })
	if img.State != state.StateRejected || !strings.Contains(img.Reason, "CVE-2026-3001") {
		t.Fatalf("index: %s (%s), want rejected naming CVE-2026-3001", img.State, img.Reason)
	}
	raw, err := p.content.Get(context.Background(), img.Scan.Report)
	if err != nil {
		t.Fatal(err)
	}
	var rep gate.Report
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Platforms) != 2 {
		t.Fatalf("report has %d platforms, want 2", len(rep.Platforms))
	}
	for _, pr := range rep.Platforms {
		vulnerable := pr.Platform == "linux/amd64"
		if got := len(pr.Matches) > 0; got != vulnerable || pr.SPDX == "" || !strings.HasPrefix(pr.Distro, "alpine") {
			t.Errorf("platform %s: %d matches, SPDX %q, distro %q", pr.Platform, len(pr.Matches), pr.SPDX, pr.Distro)
		}
	}
	hits, err := p.store.ImagesWithVuln("CVE-2026-3001")
	if err != nil || len(hits) != 1 || hits[0].Image != ref {
		t.Fatalf("where is CVE-2026-3001: %+v, %v", hits, err)
	}
}

// TestRescanAfterNewDB: an approved image that a new DB finds vulnerable
// is revoked, or only flagged when scan.on_rescan_fail is "flag".
func TestRescanAfterNewDB(t *testing.T) {
	for _, mode := range []string{config.RescanRevoke, config.RescanFlag} {
		t.Run(mode, func(t *testing.T) {
			up := registrytest.NewUpstream(t)
			d := up.PushImage(t, "library/app:1", registrytest.AlpineImage(t, "3.20.3", registrytest.Pkg{Name: "musl", Version: "1.2.5-r0"}))
			sc := newScanner(t, opensslCVE)
			p := buildPipeline(t, up, t.TempDir(), nil, sc, scanConfig(mode))
			ref := state.Ref{Upstream: "docker.io", Repository: "library/app", Digest: digest.Digest(d.String())}
			if _, err := p.engine.Request(ref, "test"); err != nil {
				t.Fatal(err)
			}
			first := waitFor(t, p.store, ref, func(i state.Image) bool { return i.State == state.StateApproved })

			musl := vulndbtest.Vuln{ID: "CVE-2026-3002", Severity: "Critical", Distro: "alpine:3.20", Package: "musl", Ecosystem: "apk", Fix: "1.2.6-r0"}
			if _, err := sc.Import(vulndbtest.Archive(t, opensslCVE, musl)); err != nil {
				t.Fatal(err)
			}
			if n, _, err := p.engine.RescanAll("test", "new DB", 0); err != nil || n != 1 {
				t.Fatalf("RescanAll = %d, %v; want 1 rescan", n, err)
			}
			img := waitFor(t, p.store, ref, func(i state.Image) bool {
				return i.Scan != nil && i.Scan.ScannedAt.After(first.Scan.ScannedAt) && i.Policy != nil && !i.Policy.Pass
			})
			waitFor(t, p.store, ref, func(state.Image) bool { _, err := p.store.Job(ref); return err != nil })
			img, _ = p.store.Image(ref)
			switch mode {
			case config.RescanRevoke:
				if img.State != state.StateRevoked || !strings.Contains(img.Reason, "CVE-2026-3002") {
					t.Fatalf("after rescan: %s (%s), want revoked naming the CVE", img.State, img.Reason)
				}
			case config.RescanFlag:
				if img.State != state.StateApproved || !strings.Contains(img.Flag, "CVE-2026-3002") {
					t.Fatalf("after rescan: %s, flag %q; want approved and flagged", img.State, img.Flag)
				}
			}
		})
	}
}

// TestScheduledRescan: RunRescans rescans approved images whose last scan
// is older than the interval, and leaves fresh ones alone.
func TestScheduledRescan(t *testing.T) {
	up := registrytest.NewUpstream(t)
	d := up.PushImage(t, "library/sched:1", registrytest.AlpineImage(t, "3.20.3", registrytest.Pkg{Name: "musl", Version: "1.2.5-r0"}))
	p := buildPipeline(t, up, t.TempDir(), nil, newScanner(t, opensslCVE), scanConfig(config.RescanRevoke))
	ref := state.Ref{Upstream: "docker.io", Repository: "library/sched", Digest: digest.Digest(d.String())}
	if _, err := p.engine.Request(ref, "test"); err != nil {
		t.Fatal(err)
	}
	first := waitFor(t, p.store, ref, func(i state.Image) bool { return i.State == state.StateApproved })
	if n, _, _ := p.engine.RescanAll("test", "fresh", time.Hour); n != 0 {
		t.Fatalf("an image scanned just now was rescanned (%d)", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); p.engine.RunRescans(ctx, 400*time.Millisecond) }()
	defer func() { cancel(); wg.Wait() }()
	waitFor(t, p.store, ref, func(i state.Image) bool { return i.Scan.ScannedAt.After(first.Scan.ScannedAt) })
	entries, _ := p.store.Audit(ref.String(), 0)
	found := false
	for _, e := range entries {
		found = found || (e.Actor == gate.ActorScheduler && e.Action == "rescan")
	}
	if !found {
		t.Fatal("no scheduled rescan in the audit log")
	}
	if img, _ := p.store.Image(ref); img.State != state.StateApproved {
		t.Fatalf("clean image after scheduled rescan: %s", img.State)
	}
}
