package e2e

// Reproductions of issue 9's findings: the upstream publisher is the
// adversary and controls every byte Airlock fetches. Each test runs the
// real binary against a real distribution registry as the upstream and
// checks the serving rule of storage/state (see its package doc):
//
//   - a manifest digest is served from a repository only if its own record
//     is approved, or it has no record of its own in a non-approved state
//     and is a fetched platform manifest of an approved index, or it is an
//     artifact Airlock itself produced for an approved image (current
//     signing only);
//   - a blob digest is served only as the config or a layer of a manifest
//     served by that rule, or as a blob of Airlock's own artifacts;
//   - an own record in any non-approved state wins, on /manifests/ and
//     /blobs/ alike; manifests are never served from /blobs/ for being
//     manifests;
//   - upstream signatures are evidence: only valid simple-signing layers
//     naming the image and verified by the configured keys are merged;
//   - revoking an image cuts its transfers in flight.

import (
	"bytes"
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/airlockproxy/airlock/internal/registrytest"
	"github.com/airlockproxy/airlock/internal/vulndbtest"
	"github.com/airlockproxy/airlock/sign"
)

// ---- hostile content ----

// hostileLayer is one layer a publisher puts into a manifest: any bytes,
// any media type, any annotations.
type hostileLayer struct {
	Data        []byte
	MediaType   string
	Annotations map[string]string
}

// hostileContent is an image as the publisher pushed it, with every byte
// of it: manifest, config and layers.
type hostileContent struct {
	Img       v1.Image
	Digest    v1.Hash
	MediaType string
	Manifest  []byte
	Config    v1.Hash
	ConfigRaw []byte
	Layers    []v1.Hash
	LayerRaw  [][]byte
}

// describe reads every byte of img.
func describe(t testing.TB, img v1.Image) hostileContent {
	t.Helper()
	c := hostileContent{Img: img}
	var err error
	if c.Manifest, err = img.RawManifest(); err != nil {
		t.Fatal(err)
	}
	if c.Digest, err = img.Digest(); err != nil {
		t.Fatal(err)
	}
	mt, err := img.MediaType()
	if err != nil {
		t.Fatal(err)
	}
	c.MediaType = string(mt)
	if c.Config, err = img.ConfigName(); err != nil {
		t.Fatal(err)
	}
	if c.ConfigRaw, err = img.RawConfigFile(); err != nil {
		t.Fatal(err)
	}
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		c.Layers = append(c.Layers, d)
		c.LayerRaw = append(c.LayerRaw, b)
	}
	return c
}

// key is the admin API's name of the image in repo.
func (c hostileContent) key(repo string) string { return "docker.io/" + repo + "@" + c.Digest.String() }

// smuggled returns the image's manifest, config and layers as layers of
// media type mt, with a junk cosign signature annotation: what a publisher
// puts into another image's .sig to have Airlock serve this one.
func (c hostileContent) smuggled(mt string) []hostileLayer {
	junk := map[string]string{sign.SignatureAnnotation: base64.StdEncoding.EncodeToString([]byte("not a signature"))}
	out := []hostileLayer{{Data: c.Manifest, MediaType: mt, Annotations: junk}, {Data: c.ConfigRaw, MediaType: mt, Annotations: junk}}
	for _, b := range c.LayerRaw {
		out = append(out, hostileLayer{Data: b, MediaType: mt, Annotations: junk})
	}
	return out
}

// artifactImage builds a cosign-style classic artifact image (an OCI
// manifest with a minimal image config) carrying layers as they are.
func artifactImage(t testing.TB, layers []hostileLayer) v1.Image {
	t.Helper()
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	adds := make([]mutate.Addendum, 0, len(layers))
	for _, l := range layers {
		adds = append(adds, mutate.Addendum{Layer: static.NewLayer(l.Data, types.MediaType(l.MediaType)), Annotations: l.Annotations})
	}
	img, err := mutate.Append(img, adds...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// signatureLayers returns the layers of a classic cosign .sig artifact.
func signatureLayers(t testing.TB, a sign.Artifact) []hostileLayer {
	t.Helper()
	var m v1.Manifest
	if err := json.Unmarshal(a.Manifest, &m); err != nil {
		t.Fatal(err)
	}
	var out []hostileLayer
	for _, l := range m.Layers {
		b, ok := a.Blobs[digest.Digest(l.Digest.String())]
		if !ok {
			t.Fatalf("signature artifact lacks layer %s", l.Digest)
		}
		out = append(out, hostileLayer{Data: b, MediaType: string(l.MediaType), Annotations: l.Annotations})
	}
	return out
}

// publisherSignature is a valid cosign signature layer by s of image c as
// it is reachable on up in repo.
func publisherSignature(t testing.TB, up *registrytest.Upstream, repo string, s *sign.Signer, c hostileContent) hostileLayer {
	t.Helper()
	sig, _, err := s.SignImage(digest.Digest(c.Digest.String()), int64(len(c.Manifest)), c.MediaType, up.Host()+"/"+repo, nil)
	if err != nil {
		t.Fatal(err)
	}
	ls := signatureLayers(t, sig)
	if len(ls) != 1 {
		t.Fatalf("a fresh signature has %d layers", len(ls))
	}
	return ls[0]
}

// pushSig pushes a classic artifact with layers as repo:sha256-<subject>.<suffix>
// ("sig" or "att") and returns the artifact's digest.
func pushSig(t testing.TB, up *registrytest.Upstream, repo string, subject v1.Hash, suffix string, layers []hostileLayer) v1.Hash {
	t.Helper()
	return up.PushImage(t, repo+":"+subject.Algorithm+"-"+subject.Hex+"."+suffix, artifactImage(t, layers))
}

// hostileKeyPair writes a password-protected cosign key pair and its
// password file into dir.
func hostileKeyPair(t testing.TB, dir, name string) (s *sign.Signer, privPath, pubPath, pwPath string) {
	t.Helper()
	pw := []byte("hostile-" + name)
	priv, pub, err := sign.GenerateKeyPair(pw)
	if err != nil {
		t.Fatal(err)
	}
	if s, err = sign.LoadSigner(priv, pw); err != nil {
		t.Fatal(err)
	}
	privPath, pubPath, pwPath = filepath.Join(dir, name+".key"), filepath.Join(dir, name+".pub"), filepath.Join(dir, name+".password")
	for p, b := range map[string][]byte{privPath: priv, pubPath: pub, pwPath: append(pw, '\n')} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return s, privPath, pubPath, pwPath
}

// ---- checking what a signature layer is ----

// sigVerifiers maps a label to a public key's verifier.
type sigVerifiers map[string]signature.Verifier

func loadVerifiers(t testing.TB, keys map[string][]byte) sigVerifiers {
	t.Helper()
	out := sigVerifiers{}
	for label, pemBytes := range keys {
		pk, err := cryptoutils.UnmarshalPEMToPublicKey(pemBytes)
		if err != nil {
			t.Fatalf("public key %s: %v", label, err)
		}
		v, err := signature.LoadVerifier(pk, crypto.SHA256)
		if err != nil {
			t.Fatalf("verifier %s: %v", label, err)
		}
		out[label] = v
	}
	return out
}

// sigLayerSigner says which of keys signed layer (descriptor desc, bytes
// b) of a .sig for subject. It returns "" and why when the layer is not a
// simple-signing payload naming exactly subject with a signature that one
// of keys verifies.
func sigLayerSigner(desc v1.Descriptor, b []byte, subject string, keys sigVerifiers) (string, string) {
	if string(desc.MediaType) != sign.SimpleSigningMediaType {
		return "", fmt.Sprintf("media type %s is not simple signing", desc.MediaType)
	}
	var p struct {
		Critical struct {
			Image struct {
				Digest string `json:"docker-manifest-digest"`
			} `json:"image"`
			Type string `json:"type"`
		} `json:"critical"`
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return "", "payload is not a simple-signing JSON document: " + err.Error()
	}
	if p.Critical.Type != "cosign container image signature" {
		return "", fmt.Sprintf("payload type %q", p.Critical.Type)
	}
	if p.Critical.Image.Digest != subject {
		return "", fmt.Sprintf("payload names %s, not %s", p.Critical.Image.Digest, subject)
	}
	raw, err := base64.StdEncoding.DecodeString(desc.Annotations[sign.SignatureAnnotation])
	if err != nil {
		return "", "signature annotation is not base64"
	}
	for label, v := range keys {
		if v.VerifySignature(bytes.NewReader(raw), bytes.NewReader(b)) == nil {
			return label, ""
		}
	}
	return "", "signature verifies with no trusted key"
}

// ownSig fetches the .sig of subject through airlock and returns, for each
// layer, the key that signed it, failing the test for a layer that is not
// a valid signature of subject by one of keys (a smuggled layer).
func ownSig(t *testing.T, al *Airlock, repo string, subject v1.Hash, keys sigVerifiers) (signers []string, layerDigests []v1.Hash) {
	t.Helper()
	tag := subject.Algorithm + "-" + subject.Hex + ".sig"
	r := al.getManifest(t, repo, tag)
	if r.Status != http.StatusOK {
		t.Fatalf("%s:%s (airlock's signature of an approved image) = %d %s", repo, tag, r.Status, r.Body)
	}
	var m v1.Manifest
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("%s:%s: %v", repo, tag, err)
	}
	for i, l := range m.Layers {
		layerDigests = append(layerDigests, l.Digest)
		b := al.getBlob(t, repo, l.Digest.String())
		if b.Status != http.StatusOK || sha256Hash(b.Body) != l.Digest {
			t.Errorf("layer %d (%s) of airlock's %s: GET = %d, %d bytes hashing to %s", i, l.Digest, tag, b.Status, len(b.Body), sha256Hash(b.Body))
			continue
		}
		who, why := sigLayerSigner(l, b.Body, subject.String(), keys)
		if who == "" {
			t.Errorf("SMUGGLED: layer %d (%s, %s, %d bytes) of airlock's %s is not a valid signature of %s: %s; starts %.80q",
				i, l.Digest, l.MediaType, len(b.Body), tag, subject, why, b.Body)
		}
		signers = append(signers, who)
	}
	return signers, layerDigests
}

// ---- probing ----

// served reports whether a request answered with content (2xx), and the
// answer.
func served(t testing.TB, method, u string, hdr map[string]string) (bool, httpResult) {
	t.Helper()
	r := doHTTP(t, method, u, nil, hdr)
	return r.Status >= 200 && r.Status < 300, r
}

// assertNotServed checks that GET, HEAD and a ranged GET of
// /v2/<repo>/<kind>/<ref> (kind "manifests" or "blobs") all refuse.
func assertNotServed(t testing.TB, al *Airlock, what, repo, kind, ref string) {
	t.Helper()
	u := al.URL + "/v2/" + repo + "/" + kind + "/" + ref
	var leaks []string
	var body int
	var dcd string
	for _, p := range []struct {
		method string
		hdr    map[string]string
	}{
		{http.MethodGet, map[string]string{"Accept": manifestAccept}},
		{http.MethodHead, map[string]string{"Accept": manifestAccept}},
		{http.MethodGet, map[string]string{"Accept": manifestAccept, "Range": "bytes=0-"}},
	} {
		if ok, r := served(t, p.method, u, p.hdr); ok {
			v := p.method
			if p.hdr["Range"] != "" {
				v += " with Range " + p.hdr["Range"]
			}
			leaks = append(leaks, fmt.Sprintf("%s=%d", v, r.Status))
			body, dcd = max(body, len(r.Body)), r.Header.Get("Docker-Content-Digest")
		}
	}
	if len(leaks) > 0 {
		t.Errorf("LEAK: %s: /v2/%s/%s/%s served: %s (%d bytes, Docker-Content-Digest %s)", what, repo, kind, ref, strings.Join(leaks, ", "), body, dcd)
	}
}

// assertServed checks that GET and HEAD of /v2/<repo>/<kind>/<ref> serve
// exactly want (and, for blobs, that a ranged GET serves its slice).
func assertServed(t testing.TB, al *Airlock, what, repo, kind, ref string, want []byte) {
	t.Helper()
	u := al.URL + "/v2/" + repo + "/" + kind + "/" + ref
	hdr := map[string]string{"Accept": manifestAccept}
	if ok, r := served(t, http.MethodGet, u, hdr); !ok || !bytes.Equal(r.Body, want) {
		t.Errorf("%s: GET /v2/%s/%s/%s = %d with %d bytes, want 200 with the %d bytes it has upstream: %.200s", what, repo, kind, ref, r.Status, len(r.Body), len(want), r.Body)
	}
	if ok, r := served(t, http.MethodHead, u, hdr); !ok {
		t.Errorf("%s: HEAD /v2/%s/%s/%s = %d, want 200", what, repo, kind, ref, r.Status)
	}
	if kind == "blobs" && len(want) > 3 {
		ok, r := served(t, http.MethodGet, u, map[string]string{"Range": "bytes=1-3"})
		if !ok || !bytes.Equal(r.Body, want[1:4]) {
			t.Errorf("%s: GET /v2/%s/blobs/%s with Range bytes=1-3 = %d with %q, want %q", what, repo, ref, r.Status, r.Body, want[1:4])
		}
	}
}

// imageJob reads whether image has a job queued, and its state.
func imageJob(t testing.TB, al *Airlock, image string) (state string, signedAt string, hasJob bool) {
	t.Helper()
	r := al.admin(t, http.MethodGet, "/api/v1/images/"+image, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("image %s: %d %s", image, r.Status, r.Body)
	}
	var d struct {
		Image struct {
			State  string `json:"state"`
			Signed *struct {
				SignedAt string `json:"signed_at"`
			} `json:"signed"`
		} `json:"image"`
		Job json.RawMessage `json:"job"`
	}
	if err := json.Unmarshal(r.Body, &d); err != nil {
		t.Fatal(err)
	}
	if d.Image.Signed != nil {
		signedAt = d.Image.Signed.SignedAt
	}
	return d.Image.State, signedAt, len(d.Job) > 0 && string(d.Job) != "null"
}

// rescanAndWait asks for a rescan of an approved image, waits until its
// job is done, and checks that it is still approved and was signed again.
func rescanAndWait(t *testing.T, al *Airlock, image string) {
	t.Helper()
	_, before, _ := imageJob(t, al, image)
	al.action(t, "rescan", image, "hostile test: the publisher replaced the upstream .sig")
	// The admin API queued the job before it answered: once it is gone,
	// the rescan is over.
	waitFor(t, 90*time.Second, "the rescan of "+image+" to finish", func() bool {
		_, _, job := imageJob(t, al, image)
		return !job
	})
	st, after, _ := imageJob(t, al, image)
	if st != "approved" {
		t.Fatalf("%s after its rescan: %s, want approved", image, st)
	}
	if after == before {
		last := ""
		if es := al.audit(t, image); len(es) > 0 {
			last = es[0].Action + ": " + es[0].Reason
		}
		t.Errorf("the rescan of %s did not sign it again (signed_at still %s; last audit entry %q)", image, before, last)
	}
}

// ---- finding 1: upstream .sig smuggling ----

// smuggleSetup is the shared part of the .sig smuggling tests: a clean
// image X and a vulnerable image Q (rejected by the scan policy if it is
// ever scanned) in one repository, a vuln DB, Airlock's key pair and a
// publisher's key pair.
type smuggleSetup struct {
	up            *registrytest.Upstream
	repo          string
	x, q, q2      hostileContent
	dbDir         string
	airlockPriv   string
	airlockPW     string
	keys          sigVerifiers // "airlock" and "publisher"
	publisher     *sign.Signer
	publisherPub  string
	airlockPubPEM []byte
}

func newSmuggleSetup(t *testing.T, repo string) *smuggleSetup {
	t.Helper()
	dir := t.TempDir()
	s := &smuggleSetup{up: registrytest.NewUpstream(t), repo: repo, dbDir: filepath.Join(dir, "vulndb")}
	vulndbtest.Build(t, s.dbDir, baseVulns...)
	var airlockPub string
	_, s.airlockPriv, airlockPub, s.airlockPW = hostileKeyPair(t, dir, "airlock")
	s.publisher, _, s.publisherPub, _ = hostileKeyPair(t, dir, "publisher")
	s.airlockPubPEM, _ = os.ReadFile(airlockPub)
	publisherPEM, _ := os.ReadFile(s.publisherPub)
	s.keys = loadVerifiers(t, map[string][]byte{"airlock": s.airlockPubPEM, "publisher": publisherPEM})

	clean := []registrytest.Pkg{{Name: "musl", Version: "1.2.5-r0"}, {Name: "openssl", Version: "3.0.2-r0"}}
	s.x = describe(t, registrytest.AlpineImage(t, "3.20.3", append(clean, registrytest.Pkg{Name: "smuggle-x", Version: "1.0-r0"})...))
	s.q = describe(t, registrytest.AlpineImage(t, "3.20.3", registrytest.Pkg{Name: "openssl", Version: "3.0.1-r0"}, registrytest.Pkg{Name: "smuggle-q", Version: "1.0-r0"}))
	s.q2 = describe(t, registrytest.AlpineImage(t, "3.20.3", registrytest.Pkg{Name: "openssl", Version: "3.0.1-r0"}, registrytest.Pkg{Name: "smuggle-q2", Version: "1.0-r0"}))
	s.up.PushImage(t, repo+":1", s.x.Img)
	s.up.PushImage(t, repo+":q", s.q.Img)
	s.up.PushImage(t, repo+":q2", s.q2.Img)
	return s
}

func (s *smuggleSetup) start(t *testing.T, signatures string) *Airlock {
	t.Helper()
	return startAirlock(t, s.up, options{Policy: "scan", NoHold: true, Extra: `
scan:
  db_dir: ` + s.dbDir + `
  max_db_age: 0s
  rescan_interval: 0s
signatures:
` + signatures + `
signing:
  key: ` + s.airlockPriv + `
  password_file: ` + s.airlockPW + `
`})
}

// assertSmuggledNotServed checks that nothing of q is served from the
// repository: not its manifest by digest or by tag, not its config or
// layers as blobs, not its manifest as a blob.
func (s *smuggleSetup) assertSmuggledNotServed(t *testing.T, al *Airlock, q hostileContent, tag string) {
	t.Helper()
	assertNotServed(t, al, "smuggled image by digest", s.repo, "manifests", q.Digest.String())
	assertNotServed(t, al, "smuggled image by tag", s.repo, "manifests", tag)
	assertNotServed(t, al, "smuggled image's manifest as a blob", s.repo, "blobs", q.Digest.String())
	assertNotServed(t, al, "smuggled image's config", s.repo, "blobs", q.Config.String())
	for _, l := range q.Layers {
		assertNotServed(t, al, "smuggled image's layer", s.repo, "blobs", l.String())
	}
}

// assertOwnRecord checks that q, once asked for, has a record of its own
// and that its pipeline rejects it (it is vulnerable) with an audit trail.
func (s *smuggleSetup) assertOwnRecord(t *testing.T, al *Airlock, q hostileContent, wantReason string) {
	t.Helper()
	img := al.waitState(t, q.key(s.repo), 90*time.Second, "rejected")
	if !strings.Contains(img.Reason, wantReason) {
		t.Errorf("%s rejected with %q, want it to mention %q", q.key(s.repo), img.Reason, wantReason)
	}
	if len(al.audit(t, q.key(s.repo))) == 0 {
		t.Errorf("%s has no audit entries: it was never queued", q.key(s.repo))
	}
}

// TestHostileSigSmugglingNoVerifyRule: gate.policy scan, signing on, no
// signature verification. The publisher puts the manifest, config and
// layer of a vulnerable image Q into the layers of X's upstream
// sha256-<X>.sig (simple-signing media type) and tags Q upstream. After X
// is approved, Q is served neither by digest nor by tag, nor are its
// blobs; Q gets a record of its own, is scanned and rejected; Airlock's
// own .sig of X holds only Airlock's signature (with no verify rule,
// nothing upstream is merged). A rescan after the publisher replaced the
// upstream .sig with Q2's content merges nothing either.
func TestHostileSigSmugglingNoVerifyRule(t *testing.T) {
	t.Parallel()
	s := newSmuggleSetup(t, "smuggle/app")
	pushSig(t, s.up, s.repo, s.x.Digest, "sig", s.q.smuggled(sign.SimpleSigningMediaType))
	al := s.start(t, "  mode: none\n")

	_ = al.getManifest(t, s.repo, "1") // starts X's pipeline
	al.waitState(t, s.x.key(s.repo), 90*time.Second, "approved")
	assertServed(t, al, "approved image X", s.repo, "manifests", s.x.Digest.String(), s.x.Manifest)

	s.assertSmuggledNotServed(t, al, s.q, "q")
	signers, _ := ownSig(t, al, s.repo, s.x.Digest, s.keys)
	if len(signers) != 1 || signers[0] != "airlock" {
		t.Errorf("airlock's .sig of X has layers signed by %q; with no verify rule it must hold exactly airlock's own signature", signers)
	}
	s.assertOwnRecord(t, al, s.q, "CVE-2026-1001")
	s.assertSmuggledNotServed(t, al, s.q, "q")

	// After approval: the publisher swaps the upstream .sig for Q2's content; a rescan re-signs X.
	pushSig(t, s.up, s.repo, s.x.Digest, "sig", s.q2.smuggled(sign.SimpleSigningMediaType))
	rescanAndWait(t, al, s.x.key(s.repo))
	s.assertSmuggledNotServed(t, al, s.q2, "q2")
	signers, _ = ownSig(t, al, s.repo, s.x.Digest, s.keys)
	if len(signers) != 1 || signers[0] != "airlock" {
		t.Errorf("after the rescan airlock's .sig of X has layers signed by %q; want exactly airlock's own", signers)
	}
	s.assertOwnRecord(t, al, s.q2, "CVE-2026-1001")
}

// TestHostileSigSmugglingVerifyRule: as above, with a signature rule that
// requires the publisher's key. X's upstream .sig holds a valid publisher
// signature of X next to Q's manifest, config and layer, a valid publisher
// signature of another image (naming Q) and a payload naming X with a
// forged signature. X verifies and is approved; Airlock's .sig keeps the
// publisher's valid signature of X (cosign verify --key publisher.pub
// through Airlock works) and drops everything else; Q is not served. A
// rescan after the .sig was replaced (still with the valid signature, now
// next to Q2's content) merges nothing new.
func TestHostileSigSmugglingVerifyRule(t *testing.T) {
	t.Parallel()
	s := newSmuggleSetup(t, "smuggle/signed")
	valid := publisherSignature(t, s.up, s.repo, s.publisher, s.x)
	replayed := publisherSignature(t, s.up, s.repo, s.publisher, s.q) // valid, but for Q
	// A payload naming X exactly, with a signature no trusted key made.
	forged := hostileLayer{
		Data: []byte(`{"critical":{"identity":{"docker-reference":"` + s.up.Host() + "/" + s.repo + `"},"image":{"docker-manifest-digest":"` +
			s.x.Digest.String() + `"},"type":"cosign container image signature"},"optional":{"by":"mallory"}}`),
		MediaType:   sign.SimpleSigningMediaType,
		Annotations: map[string]string{sign.SignatureAnnotation: base64.StdEncoding.EncodeToString([]byte("forged"))},
	}
	layers := append([]hostileLayer{valid}, s.q.smuggled(sign.SimpleSigningMediaType)...)
	layers = append(layers, replayed, forged)
	pushSig(t, s.up, s.repo, s.x.Digest, "sig", layers)
	al := s.start(t, `  mode: none
  rules:
    - repository: "smuggle/**"
      mode: required
      keys: [`+s.publisherPub+`]
`)

	_ = al.getManifest(t, s.repo, "1")
	img := al.waitState(t, s.x.key(s.repo), 90*time.Second, "approved", "rejected", "failed")
	if img.State != "approved" {
		t.Fatalf("X (validly signed by the publisher, clean) is %s: %s", img.State, img.Reason)
	}
	s.assertSmuggledNotServed(t, al, s.q, "q")
	validDigest := sha256Hash(valid.Data)
	checkSig := func(when string) {
		t.Helper()
		signers, ds := ownSig(t, al, s.repo, s.x.Digest, s.keys)
		kept := false
		for i, d := range ds {
			kept = kept || (d == validDigest && signers[i] == "publisher")
		}
		if !kept {
			t.Errorf("%s: the publisher's valid signature of X (%s) was dropped from airlock's .sig (layers %v)", when, validDigest, ds)
		}
		if len(ds) != 2 {
			t.Errorf("%s: airlock's .sig of X has %d layers %v signed by %q; want the publisher's valid one and airlock's", when, len(ds), ds, signers)
		}
		ref := al.Host + "/" + s.repo + "@" + s.x.Digest.String()
		verify := []string{"--insecure-ignore-tlog", "--allow-insecure-registry"}
		if out, err := cosign(t, append(append([]string{"verify", "--key", s.publisherPub}, verify...), ref)...); err != nil {
			t.Errorf("%s: cosign verify --key publisher.pub through airlock: %v\n%s", when, err, out)
		}
	}
	checkSig("after approval")
	s.assertOwnRecord(t, al, s.q, "")
	s.assertSmuggledNotServed(t, al, s.q, "q")

	layers = append([]hostileLayer{valid}, s.q2.smuggled(sign.SimpleSigningMediaType)...)
	pushSig(t, s.up, s.repo, s.x.Digest, "sig", layers)
	rescanAndWait(t, al, s.x.key(s.repo))
	s.assertSmuggledNotServed(t, al, s.q2, "q2")
	checkSig("after the rescan")
	s.assertOwnRecord(t, al, s.q2, "")
}

// ---- finding 2: a manifest served because an approved image holds its bytes as a layer ----

// TestHostileManifestAsLayer: gate.policy manual. Q waits for an admin
// (awaiting-approval); Q2 was never pulled. The publisher pushes X whose
// layers are Q's and Q2's manifest bytes; an admin approves X. Q and Q2
// are served neither by digest nor by tag (GET or HEAD); Q stays
// awaiting-approval, Q2 gets a record of its own. Q2's bytes are served
// from /blobs/ while Q2 has no record (a layer of X: the role X was
// approved in), never once it has one, and Q's never (an own record in a
// non-approved state wins on /blobs/ too). X itself is served.
func TestHostileManifestAsLayer(t *testing.T) {
	t.Parallel()
	up := registrytest.NewUpstream(t)
	const repo = "layer/app"
	q := describe(t, registrytest.Image(t, 1, 512, types.OCIManifestSchema1))
	q2 := describe(t, registrytest.Image(t, 1, 512, types.DockerManifestSchema2))
	up.PushImage(t, repo+":q", q.Img)
	up.PushImage(t, repo+":q2", q2.Img)
	xImg, err := mutate.Append(mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON),
		mutate.Addendum{Layer: static.NewLayer(q.Manifest, types.OCILayer), MediaType: types.OCILayer},
		mutate.Addendum{Layer: static.NewLayer(q2.Manifest, types.OCILayer), MediaType: types.OCILayer})
	if err != nil {
		t.Fatal(err)
	}
	x := describe(t, xImg)
	up.PushImage(t, repo+":1", x.Img)

	al := startAirlock(t, up, options{NoHold: true})
	_ = al.getManifest(t, repo, "q")
	al.waitState(t, q.key(repo), stateTimeout, "awaiting-approval")
	_ = al.getManifest(t, repo, "1")
	al.waitState(t, x.key(repo), stateTimeout, "awaiting-approval")
	al.action(t, "approve", x.key(repo), "hostile test")
	al.waitState(t, x.key(repo), stateTimeout, "approved")

	assertServed(t, al, "approved X by digest", repo, "manifests", x.Digest.String(), x.Manifest)
	assertServed(t, al, "approved X by tag", repo, "manifests", "1", x.Manifest)
	assertServed(t, al, "a layer of approved X (the manifest bytes of Q2, which has no record)", repo, "blobs", q2.Digest.String(), q2.Manifest)
	assertNotServed(t, al, "a layer of approved X that is Q's manifest (Q is awaiting-approval)", repo, "blobs", q.Digest.String())
	assertNotServed(t, al, "Q (awaiting-approval) by digest", repo, "manifests", q.Digest.String())
	assertNotServed(t, al, "Q (awaiting-approval) by tag", repo, "manifests", "q")
	if d, _ := al.image(t, q.key(repo)); d.Image.State != "awaiting-approval" {
		t.Errorf("Q is %s, want it still awaiting-approval", d.Image.State)
	}
	assertNotServed(t, al, "Q2 (never pulled) by digest", repo, "manifests", q2.Digest.String())
	assertNotServed(t, al, "Q2 (never pulled) by tag", repo, "manifests", "q2")
	al.waitState(t, q2.key(repo), stateTimeout, "pending", "fetching", "awaiting-approval")
	assertNotServed(t, al, "Q2 (queued) by digest", repo, "manifests", q2.Digest.String())
	for _, c := range []hostileContent{q, q2} {
		assertNotServed(t, al, "a layer of approved X that is the manifest of an image in quarantine", repo, "blobs", c.Digest.String())
		assertNotServed(t, al, "config of an image in quarantine", repo, "blobs", c.Config.String())
		assertNotServed(t, al, "layer of an image in quarantine", repo, "blobs", c.Layers[0].String())
	}
}

// ---- finding 3: a revoked platform manifest of an approved index ----

// TestHostileRevokedPlatformManifest: gate.policy manual, an index with
// three platform manifests. C1 is pulled by digest first (a record of its
// own) and revoked; the index is approved; C2 (no record of its own) is
// served through the index until `airlock revoke <upstream>/<repo>@<C2>`.
// Neither revoked child is served from /manifests/ or /blobs/, nor are
// their configs and layers; the index stays approved and served, C3 stays
// served as a manifest (but not from /blobs/: a manifest is never a blob
// for being a manifest), and C3's blobs are served.
func TestHostileRevokedPlatformManifest(t *testing.T) {
	t.Parallel()
	up := registrytest.NewUpstream(t)
	const repo = "platform/app"
	idx := registrytest.Index(t, types.OCIImageIndex, "linux/amd64", "linux/arm64", "linux/arm/v7")
	id := up.PushIndex(t, repo+":1", idx)
	rawIdx, _ := idx.RawManifest()
	im, _ := idx.IndexManifest()
	var kids []hostileContent
	for _, d := range im.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		kids = append(kids, describe(t, img))
	}
	indexKey := "docker.io/" + repo + "@" + id.String()
	al := startAirlock(t, up, options{NoHold: true})

	// C1 first gets a record of its own, and is revoked before the index is approved.
	c1, c2, c3 := kids[0], kids[1], kids[2]
	_ = al.getManifest(t, repo, c1.Digest.String())
	al.waitState(t, c1.key(repo), stateTimeout, "awaiting-approval")
	if out, err := al.cli(t, "revoke", c1.key(repo), "--reason", "hostile test: C1 withdrawn"); err != nil {
		t.Fatalf("airlock revoke %s: %v\n%s", c1.key(repo), err, out)
	}
	_ = al.getManifest(t, repo, "1")
	al.waitState(t, indexKey, stateTimeout, "awaiting-approval")
	al.action(t, "approve", indexKey, "hostile test")
	al.waitState(t, indexKey, stateTimeout, "approved")

	assertServed(t, al, "C2 through its approved index", repo, "manifests", c2.Digest.String(), c2.Manifest)
	out, err := al.cli(t, "revoke", c2.key(repo), "--reason", "hostile test: C2 withdrawn")
	if err != nil {
		t.Errorf("airlock revoke %s (a platform manifest of an approved index): %v\n%s", c2.key(repo), err, out)
	} else if d, _ := al.image(t, c2.key(repo)); d.Image.State != "revoked" {
		t.Errorf("after `airlock revoke` C2's record is %q, want revoked", d.Image.State)
	}
	for i, c := range []hostileContent{c1, c2} {
		what := fmt.Sprintf("revoked platform manifest C%d", i+1)
		assertNotServed(t, al, what, repo, "manifests", c.Digest.String())
		assertNotServed(t, al, what+" via /blobs/", repo, "blobs", c.Digest.String())
		assertNotServed(t, al, what+": its config", repo, "blobs", c.Config.String())
		for _, l := range c.Layers {
			assertNotServed(t, al, what+": its layer", repo, "blobs", l.String())
		}
	}
	if d, _ := al.image(t, indexKey); d.Image.State != "approved" {
		t.Errorf("the index is %s after revoking platform manifests, want approved", d.Image.State)
	}
	assertServed(t, al, "the approved index by tag", repo, "manifests", "1", rawIdx)
	assertServed(t, al, "the approved index by digest", repo, "manifests", id.String(), rawIdx)
	assertServed(t, al, "C3 through its approved index", repo, "manifests", c3.Digest.String(), c3.Manifest)
	assertNotServed(t, al, "C3's manifest bytes via /blobs/", repo, "blobs", c3.Digest.String())
	assertNotServed(t, al, "the index's bytes via /blobs/", repo, "blobs", id.String())
	assertServed(t, al, "C3's config", repo, "blobs", c3.Config.String(), c3.ConfigRaw)
	for i, l := range c3.Layers {
		assertServed(t, al, "C3's layer", repo, "blobs", l.String(), c3.LayerRaw[i])
	}
}

// ---- finding 4: revoke cuts in-flight responses ----

// smallRcvBufClient is an HTTP client whose sockets have a small receive
// buffer, so a reader that pauses stops the server within a few hundred KiB.
func smallRcvBufClient() *http.Client {
	d := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 64<<10)
		})
		return errors.Join(err, serr)
	}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, ReadBufferSize: 16 << 10, DisableCompression: true}}
}

// TestHostileRevokeCutsInFlightBlob: a 64 MiB layer of an approved image
// is being downloaded slowly (1 MiB read, then the reader pauses); an
// admin revokes the image; reading on at 4 MiB/s, the download ends with
// an error (not a clean EOF) before half the blob arrived and within 10 s,
// and the next request is refused.
func TestHostileRevokeCutsInFlightBlob(t *testing.T) {
	t.Parallel()
	up := registrytest.NewUpstream(t)
	const repo = "inflight/big"
	d, layer, data := pushBigLayerImage(t, up, repo)
	key := "docker.io/" + repo + "@" + d.String()
	al := startAirlock(t, up, options{NoHold: true})
	_ = al.getManifest(t, repo, "1")
	al.waitState(t, key, 2*time.Minute, "awaiting-approval")
	al.action(t, "approve", key, "hostile test")
	al.waitState(t, key, stateTimeout, "approved")
	assertRevokeCutsDownload(t, al, al, repo, key, layer, data)
}

// pushBigLayerImage pushes repo:1, an image with one random 64 MiB layer,
// and returns its digest, the layer's digest and bytes.
func pushBigLayerImage(t *testing.T, up *registrytest.Upstream, repo string) (v1.Hash, v1.Hash, []byte) {
	t.Helper()
	data := make([]byte, 64<<20)
	rand.New(rand.NewSource(9)).Read(data)
	img, err := mutate.Append(mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON),
		mutate.Addendum{Layer: static.NewLayer(data, types.OCILayer), MediaType: types.OCILayer})
	if err != nil {
		t.Fatal(err)
	}
	return up.PushImage(t, repo+":1", img), sha256Hash(data), data
}

// assertRevokeCutsDownload downloads the approved layer (data) slowly from
// dl, revokes image key through admin (the same airlock, or another
// replica), reads on at 4 MiB/s and checks that the download is cut: an
// error (not a clean EOF) before half the blob arrived and within 10 s,
// and the next request is refused.
func assertRevokeCutsDownload(t *testing.T, dl, admin *Airlock, repo, key string, layer v1.Hash, data []byte) {
	t.Helper()
	size := int64(len(data))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, dl.URL+"/v2/"+repo+"/blobs/"+layer.String(), nil)
	resp, err := smallRcvBufClient().Do(req)
	if err != nil {
		t.Fatalf("GET the approved layer: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET the approved layer = %d", resp.StatusCode)
	}
	head := make([]byte, 1<<20)
	if _, err := io.ReadFull(resp.Body, head); err != nil {
		t.Fatalf("read the first MiB: %v", err)
	}
	if !bytes.Equal(head, data[:len(head)]) {
		t.Fatal("the first MiB is not the layer's")
	}
	// The reader pauses: the server's writes block on full socket buffers.
	// After the revoke it reads on at 4 MiB/s, so the whole blob would take
	// 16 s: a cut made within a few seconds, however the server notices the
	// revoke, ends the download well short of its end.
	admin.action(t, "revoke", key, "hostile test: revoked mid-download")
	revoked := time.Now()
	const rate = 4 << 20
	buf := make([]byte, 64<<10)
	var n int64
	var rerr error
	for {
		k, err := resp.Body.Read(buf)
		n += int64(k)
		if err != nil {
			rerr = err
			break
		}
		if due := time.Duration(float64(n) / rate * float64(time.Second)); time.Since(revoked) < due {
			time.Sleep(due - time.Since(revoked))
		}
	}
	total := int64(len(head)) + n
	elapsed := time.Since(revoked)
	t.Logf("after the revoke through %s the client of %s read %d more bytes in %s (%d of %d in all), ending with %v", admin.Host, dl.Host, n, elapsed.Round(time.Millisecond), total, size, rerr)
	switch {
	case total >= size:
		t.Errorf("LEAK: the whole %d-byte blob of the revoked image arrived (%d bytes after the revoke, %s)", size, n, elapsed.Round(time.Millisecond))
	case rerr == io.EOF:
		t.Errorf("the cut download ended with a clean EOF after %d of %d bytes: a client cannot tell it from a complete one", total, size)
	case total > size/2:
		t.Errorf("the download went on for %d of %d bytes (%s) after the revoke", total, size, elapsed.Round(time.Millisecond))
	}
	if elapsed > 10*time.Second {
		t.Errorf("the download was cut only %s after the revoke", elapsed)
	}
	assertNotServed(t, dl, "layer of the revoked image", repo, "blobs", layer.String())
}
