package state

import (
	"errors"
	"testing"

	"github.com/airlockproxy/airlock/storage/kv"
	"github.com/opencontainers/go-digest"
)

// servingFixture is one repository holding: an index with two fetched
// platform manifests (p1, p2) and a third it lists but the pipeline did not
// fetch (p3); a single-manifest image m whose layer holds the bytes of
// image q's manifest (so q's digest is m's layer); and Airlock's signature
// artifact of m with one blob.
type servingFixture struct {
	s                             *Store
	repo                          string
	index, m, q                   Ref
	p1, p2, p3                    digest.Digest
	cfg1, layer1, cfg2, shared    digest.Digest
	mcfg, qcfg, qlayer            digest.Digest
	sig, sigBlob, oldSig, oldBlob digest.Digest
}

func newServingFixture(t *testing.T) *servingFixture {
	t.Helper()
	s, _ := openStore(t)
	f := &servingFixture{s: s, repo: "team/app"}
	f.index, f.m, f.q = ref(f.repo, "index"), ref(f.repo, "m"), ref(f.repo, "q")
	f.p1, f.p2, f.p3 = dgst("p1"), dgst("p2"), dgst("p3")
	f.cfg1, f.layer1, f.cfg2, f.shared = dgst("cfg1"), dgst("layer1"), dgst("cfg2"), dgst("shared")
	f.mcfg, f.qcfg, f.qlayer = dgst("mcfg"), dgst("qcfg"), dgst("qlayer")
	f.sig, f.sigBlob, f.oldSig, f.oldBlob = dgst("sig"), dgst("sigblob"), dgst("oldsig"), dgst("oldblob")
	const mt = "application/vnd.oci.image.manifest.v1+json"
	repo := Ref{Upstream: "docker.io", Repository: f.repo}
	links := []Link{
		{Digest: f.p1, Role: RoleChild, Parent: f.index.Digest, Image: f.index.Digest, MediaType: mt, Size: 10},
		{Digest: f.p2, Role: RoleChild, Parent: f.index.Digest, Image: f.index.Digest, MediaType: mt, Size: 10},
		{Digest: f.cfg1, Role: RoleConfig, Parent: f.p1, Image: f.index.Digest, Size: 1},
		{Digest: f.layer1, Role: RoleLayer, Parent: f.p1, Image: f.index.Digest, Size: 1},
		{Digest: f.cfg2, Role: RoleConfig, Parent: f.p2, Image: f.index.Digest, Size: 1},
		{Digest: f.shared, Role: RoleLayer, Parent: f.p2, Image: f.index.Digest, Size: 1},
		{Digest: f.mcfg, Role: RoleConfig, Parent: f.m.Digest, Image: f.m.Digest, Size: 1},
		// q's manifest bytes are a layer of m.
		{Digest: f.q.Digest, Role: RoleLayer, Parent: f.m.Digest, Image: f.m.Digest, Size: 1},
		{Digest: f.shared, Role: RoleLayer, Parent: f.m.Digest, Image: f.m.Digest, Size: 1},
		{Digest: f.qcfg, Role: RoleConfig, Parent: f.q.Digest, Image: f.q.Digest, Size: 1},
		{Digest: f.qlayer, Role: RoleLayer, Parent: f.q.Digest, Image: f.q.Digest, Size: 1},
		// Airlock's current and an earlier signing of m.
		{Digest: f.sig, Role: RoleArtifact, Parent: f.m.Digest, Image: f.m.Digest, MediaType: mt, Size: 5},
		{Digest: f.sigBlob, Role: RoleArtifactBlob, Parent: f.sig, Image: f.m.Digest, Size: 5},
		{Digest: f.oldSig, Role: RoleArtifact, Parent: f.m.Digest, Image: f.m.Digest, MediaType: mt, Size: 5},
		{Digest: f.oldBlob, Role: RoleArtifactBlob, Parent: f.oldSig, Image: f.m.Digest, Size: 5},
	}
	if err := s.AddLinks(repo, links); err != nil {
		t.Fatal(err)
	}
	// Recording the same links again changes nothing.
	if err := s.AddLinks(repo, links); err != nil {
		t.Fatal(err)
	}
	for _, r := range []Ref{f.index, f.m, f.q} {
		setState(t, s, r, StateAwaitingApproval)
	}
	f.mutate(t, f.index, func(i *Image) {
		i.Manifests = []digest.Digest{f.p1, f.p2}
		i.Blobs = []digest.Digest{f.cfg1, f.layer1, f.cfg2, f.shared}
	})
	f.mutate(t, f.m, func(i *Image) {
		i.Signed = &Signed{Sig: Descriptor{Digest: f.sig}, Att: Descriptor{Digest: dgst("att")}}
	})
	return f
}

func (f *servingFixture) mutate(t *testing.T, r Ref, fn func(*Image)) {
	t.Helper()
	if _, err := f.s.Transition(r, Change{Actor: "test", Action: "set", Mutate: func(i *Image) error { fn(i); return nil }}); err != nil {
		t.Fatal(err)
	}
}

func (f *servingFixture) check(t *testing.T, stage string, blob bool, d digest.Digest, known, serve bool) {
	t.Helper()
	var (
		dec Decision
		err error
	)
	if blob {
		dec, err = f.s.BlobDecision("docker.io", f.repo, d)
	} else {
		dec, err = f.s.ManifestDecision("docker.io", f.repo, d)
	}
	if err != nil {
		t.Fatalf("%s: %v", stage, err)
	}
	kind := "manifest"
	if blob {
		kind = "blob"
	}
	if dec.Known != known || dec.Serve != serve {
		t.Errorf("%s: %s %.19s = known %v serve %v (via %q), want known %v serve %v", stage, kind, d, dec.Known, dec.Serve, dec.Via, known, serve)
	}
}

func TestServingRuleByRole(t *testing.T) {
	f := newServingFixture(t)
	const manifest, blob = false, true

	// Nothing approved: everything known is refused.
	for _, d := range []digest.Digest{f.index.Digest, f.p1, f.m.Digest, f.q.Digest, f.sig} {
		f.check(t, "quarantine", manifest, d, true, false)
	}
	for _, d := range []digest.Digest{f.cfg1, f.shared, f.q.Digest, f.sigBlob} {
		f.check(t, "quarantine", blob, d, true, false)
	}
	f.check(t, "quarantine", manifest, f.p3, false, false) // listed, never fetched: no link
	f.check(t, "quarantine", blob, dgst("unknown"), false, false)

	// The index approved: it, its fetched platform manifests and their
	// configs and layers are served; nothing else.
	setState(t, f.s, f.index, StateApproved)
	f.check(t, "index approved", manifest, f.index.Digest, true, true)
	f.check(t, "index approved", manifest, f.p1, true, true)
	f.check(t, "index approved", manifest, f.p2, true, true)
	f.check(t, "index approved", manifest, f.p3, false, false)
	for _, d := range []digest.Digest{f.cfg1, f.layer1, f.cfg2, f.shared} {
		f.check(t, "index approved", blob, d, true, true)
	}
	// A manifest is never a blob because it is a manifest.
	f.check(t, "index approved", blob, f.p1, false, false)
	f.check(t, "index approved", blob, f.index.Digest, false, false)
	// A config or layer is never a manifest.
	f.check(t, "index approved", manifest, f.cfg1, false, false)

	// m approved: its layer is q's manifest bytes. They are served as a
	// blob of m, never as q's manifest (q's own record is not approved),
	// and q's own blobs stay refused.
	setState(t, f.s, f.m, StateApproved)
	f.check(t, "m approved", manifest, f.q.Digest, true, false)
	f.check(t, "m approved", blob, f.q.Digest, true, false) // q's own record wins on /blobs/ too
	f.check(t, "m approved", blob, f.qcfg, true, false)
	f.check(t, "m approved", blob, f.qlayer, true, false)
	f.check(t, "m approved", blob, f.mcfg, true, true)
	// Airlock's current signature of m and its blob are served; an
	// earlier signing's are not.
	f.check(t, "m approved", manifest, f.sig, true, true)
	f.check(t, "m approved", blob, f.sigBlob, true, true)
	f.check(t, "m approved", manifest, f.oldSig, true, false)
	f.check(t, "m approved", blob, f.oldBlob, true, false)
	f.check(t, "m approved", blob, f.sig, false, false)

	// The same digests in another repository or on another upstream.
	for _, up := range []struct{ upstream, repo string }{{"docker.io", "team/other"}, {"ghcr.io", f.repo}, {"docker.io", "team/ap"}} {
		for _, d := range []digest.Digest{f.index.Digest, f.p1, f.sig} {
			if dec, _ := f.s.ManifestDecision(up.upstream, up.repo, d); dec.Serve || dec.Known {
				t.Errorf("manifest %.19s served or known from %s/%s", d, up.upstream, up.repo)
			}
		}
		for _, d := range []digest.Digest{f.cfg1, f.shared, f.sigBlob} {
			if dec, _ := f.s.BlobDecision(up.upstream, up.repo, d); dec.Serve || dec.Known {
				t.Errorf("blob %.19s served or known from %s/%s", d, up.upstream, up.repo)
			}
		}
	}

	// An own record of a platform manifest in ANY state but approved wins
	// over the approved index, on /manifests/ and for its blobs.
	p1 := Ref{Upstream: "docker.io", Repository: f.repo, Digest: f.p1}
	for _, st := range States {
		if st == StateApproved {
			continue
		}
		setState(t, f.s, p1, st)
		f.check(t, "p1 "+string(st), manifest, f.p1, true, false)
		f.check(t, "p1 "+string(st), blob, f.cfg1, true, false)
		f.check(t, "p1 "+string(st), blob, f.layer1, true, false)
		f.check(t, "p1 "+string(st), manifest, f.p2, true, true)
	}
	setState(t, f.s, p1, StateApproved)
	f.check(t, "p1 approved", manifest, f.p1, true, true)
	f.check(t, "p1 approved", blob, f.layer1, true, true)

	// Revoking the index withdraws p2 and p2's blobs; the blob m shares
	// with p2 stays served through m.
	setState(t, f.s, f.index, StateRevoked)
	f.check(t, "index revoked", manifest, f.p2, true, false)
	f.check(t, "index revoked", blob, f.cfg2, true, false)
	f.check(t, "index revoked", blob, f.shared, true, true)
	setState(t, f.s, f.m, StateRevoked)
	f.check(t, "m revoked", blob, f.shared, true, false)
	f.check(t, "m revoked", manifest, f.sig, true, false)
	f.check(t, "m revoked", blob, f.sigBlob, true, false)

	// A refusal names what stands in the way.
	if dec, _ := f.s.BlobDecision("docker.io", f.repo, f.cfg2); dec.Blocked == nil || dec.Blocked.Digest != f.index.Digest {
		t.Errorf("cfg2 refused, blocked by %+v; want the revoked index", dec.Blocked)
	}
	if dec, _ := f.s.ManifestDecision("docker.io", f.repo, f.q.Digest); dec.Blocked == nil || dec.Blocked.Digest != f.q.Digest {
		t.Errorf("q refused, blocked by %+v; want its own record", dec.Blocked)
	}
}

func TestAdoptPlatformManifest(t *testing.T) {
	f := newServingFixture(t)
	setState(t, f.s, f.index, StateApproved)
	p2 := Ref{Upstream: "docker.io", Repository: f.repo, Digest: f.p2}
	idx, l, err := f.s.ChildOf(p2)
	if err != nil || idx.Digest != f.index.Digest || l.Role != RoleChild {
		t.Fatalf("ChildOf = %s, %+v, %v", idx.Digest, l, err)
	}
	img, err := f.s.Adopt(p2, Change{To: StateRevoked, Actor: "admin:test", Action: "revoke", Reason: "bad platform"})
	if err != nil {
		t.Fatal(err)
	}
	if img.State != StateRevoked || !img.Fetched() || len(img.Blobs) != 2 {
		t.Errorf("adopted record = %+v", img)
	}
	f.check(t, "p2 adopted revoked", false, f.p2, true, false)
	f.check(t, "p2 adopted revoked", true, f.cfg2, true, false)
	f.check(t, "p2 adopted revoked", false, f.p1, true, true)
	if _, err := f.s.Adopt(p2, Change{To: StateRevoked}); !errors.Is(err, ErrConflict) {
		t.Errorf("second Adopt = %v, want ErrConflict", err)
	}
	p3 := Ref{Upstream: "docker.io", Repository: f.repo, Digest: f.p3}
	if _, err := f.s.Adopt(p3, Change{To: StateRevoked}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Adopt of an unfetched child = %v, want ErrNotFound", err)
	}
	audit, err := f.s.Audit(p2.String(), 0)
	if err != nil || len(audit) != 1 || audit[0].Action != "revoke" || audit[0].To != StateRevoked {
		t.Errorf("audit of the adoption = %+v, %v", audit, err)
	}
}

func TestAddLinksRejectsBadInput(t *testing.T) {
	s, _ := openStore(t)
	repo := Ref{Upstream: "docker.io", Repository: "a/b"}
	for _, l := range []Link{
		{Digest: "sha256:nope", Role: RoleLayer, Parent: dgst("p")},
		{Digest: dgst("x"), Role: RoleLayer, Parent: ""},
		{Digest: dgst("x"), Role: "weird", Parent: dgst("p")},
	} {
		if err := s.AddLinks(repo, []Link{l}); err == nil {
			t.Errorf("AddLinks(%+v) accepted", l)
		}
	}
}

// TestLegacyContentIndex: a state file of an older version (role-less
// content owners) is detected and, once relinked, dropped.
func TestLegacyContentIndex(t *testing.T) {
	s, _ := openStore(t)
	if legacy, err := s.HasLegacyContent(); err != nil || legacy {
		t.Fatalf("new store: legacy %v, %v", legacy, err)
	}
	err := s.db.Update(func(tx kv.Tx) error {
		return tx.Bucket(bucketContent).Put([]byte("docker.io/a/b@"+string(dgst("x"))), []byte(`{"size":1,"owners":[]}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	if legacy, err := s.HasLegacyContent(); err != nil || !legacy {
		t.Fatalf("old index: legacy %v, %v", legacy, err)
	}
	if err := s.DropLegacyContent(); err != nil {
		t.Fatal(err)
	}
	if legacy, err := s.HasLegacyContent(); err != nil || legacy {
		t.Fatalf("after drop: legacy %v, %v", legacy, err)
	}
}
