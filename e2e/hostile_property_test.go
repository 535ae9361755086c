package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/airlockproxy/airlock/internal/registrytest"
	"github.com/airlockproxy/airlock/sign"
)

// The hostile-upstream property test.
//
// A publisher controls every byte of an upstream: images whose layers are
// other images' manifests and configs, indexes sharing platform manifests
// (and listing a nested index, which the pipeline does not process),
// upstream .sig/.att manifests and OCI 1.1 referrers (tag fallback) with
// arbitrary layers, tags that answer HEAD with one digest and GET with
// another, and the same digests pushed to several repositories. A seeded
// random sequence of pulls (tag and digest, GET and HEAD), admin approvals
// and revocations (images, indexes and single platform manifests),
// rescans, .sig replacements and tag moves runs against the real binary.
//
// After every step every manifest, tag and blob the model knows is
// requested from every repository (GET; HEAD and a GET with a random
// Range for everything servable and a sample of the rest; platform
// manifests by digest only once they have a record or are servable, so
// that a probe does not give each one a record before its index can serve
// it; artifacts of earlier signings a quarter at a time), the referrers of
// every image are listed, and every 2xx is checked against a model of the
// serving rule computed from what was pushed and what the admin approved
// and revoked (records are read from the admin API only to learn which
// digests have a record of their own in a non-approved state, and which
// artifacts the current signing of an approved image lists):
//
//   - manifests: an image the admin approved in that repository; a
//     platform manifest an approved index lists (and the pipeline fetched)
//     with no record of its own in a non-approved state; Airlock's own .sig,
//     .att and referrer manifests of an approved image, current signing
//     only (read from the image record, then validated: every layer of
//     Airlock's .sig is a simple-signing payload naming exactly that image
//     and signed by Airlock's key, or by the publisher's key where a verify
//     rule names it; attestation layers are DSSE envelopes about that image);
//   - blobs: the config and layers of those manifests, never a manifest for
//     being a manifest;
//   - a 2xx body is exactly the bytes of that digest (the requested slice
//     for a Range), and a tag serves a digest the tag pointed to;
//   - liveness: what the model says is served is served.
//
// Set AIRLOCK_PROP_SEED to replay a run and AIRLOCK_PROP_STEPS for a
// longer one (then there is no time budget unless AIRLOCK_PROP_BUDGET,
// a Go duration, sets one).

const (
	hpDefaultSeed  = 20261123
	hpDefaultSteps = 60
	hpDefaultTime  = 75 * time.Second
	hpReplicaTime  = 60 * time.Second
)

// hpNode is one manifest the publisher pushed.
type hpNode struct {
	name     string
	kind     string // "image", "index", "artifact"
	digest   string
	mt       string
	raw      []byte
	blobs    []string // config and layers (images, artifacts)
	children []string // platform manifests an index lists (nested indexes left out)
	nested   []string // index children that are indexes
	img      v1.Image
	idx      v1.ImageIndex
	// approvable manifests are what the admin approves and revokes;
	// platform ones are only ever listed by indexes.
	approvable bool
	platform   bool // only ever an index child
}

// hpTag is one tag of one repository.
type hpTag struct {
	head, get string          // current HEAD and GET digests (equal unless split)
	history   map[string]bool // every digest it ever pointed to
}

// hpRecord is the part of an admin API image record the model reads.
type hpRecord struct {
	Repository string   `json:"repository"`
	Digest     string   `json:"digest"`
	State      string   `json:"state"`
	Manifests  []string `json:"manifests"`
	Signed     *struct {
		Sig struct {
			Digest string `json:"digest"`
		} `json:"sig"`
		Att struct {
			Digest string `json:"digest"`
		} `json:"att"`
		Referrers []struct {
			Digest string `json:"digest"`
		} `json:"referrers"`
	} `json:"signed"`
}

// hpOwn is one of Airlock's own artifacts seen in a repository.
type hpOwn struct {
	subject string
	kind    string // "sig", "att", "referrer"
	blobs   []string
}

type hpWorld struct {
	t     *testing.T
	seed  int64
	rng   *rand.Rand // the operations
	probe *rand.Rand // sampling within a check
	up    *registrytest.Upstream
	front *registrytest.Front
	// cluster is the airlock replicas (one unless the test runs several);
	// each request goes to a random live one (route).
	cluster []*Airlock
	route   *rand.Rand
	// kills, if set, makes some steps SIGKILL a replica and start a new
	// one in its place (opts) on the same shared state and storage.
	kills    bool
	opts     options
	c        *http.Client
	repos    []string
	ruleRepo string

	nodes  map[string]*hpNode
	order  []string          // node digests in creation order
	bytes  map[string][]byte // every digest the model knows -> its bytes
	pubSig map[string]bool   // valid publisher signature layers (legitimately merged where a rule names the key)
	// hostileBlob marks every digest the publisher pushed as content
	// (manifests, configs, layers, artifact layers): none of it may turn up
	// inside Airlock's own artifacts.
	hostileBlob map[string]bool

	pushed     map[string]map[string]bool // repo -> manifest digests pushed there
	uploaded   map[string]bool            // "<repo>@<blob digest>" uploaded
	tags       map[string]map[string]*hpTag
	tagOrder   map[string][]string
	sigSubj    map[string][]string // repo -> subjects with an upstream .sig
	approved   map[string]map[string]bool
	revokedOwn map[string]map[string]bool

	publisher *sign.Signer
	keys      sigVerifiers
	ownSeen   map[string]map[string]*hpOwn // repo -> own artifact digest
	ownOrder  map[string][]string
	ownBlob   map[string]string // blob digest -> "blob of airlock's <kind> of <subject> in <repo>"

	// per check
	records map[string]map[string]hpRecord
	allowM  map[string]map[string]string // repo -> manifest digest -> why
	allowB  map[string]map[string]string // repo -> blob digest -> why
	viol    []string

	stats map[string]int
	once  map[string]bool
}

// TestPropertyHostileUpstream runs the hostile-upstream model above with
// a fixed seed (AIRLOCK_PROP_SEED replays another, AIRLOCK_PROP_STEPS runs
// longer): gate.policy manual, signing on, a verify rule with the
// publisher's key on hp/a only.
func TestPropertyHostileUpstream(t *testing.T) {
	t.Parallel()
	runHostileProperty(t, 1, hpDefaultTime)
}

// TestPropertyHostileUpstreamReplicas runs the same model across three
// replicas on one PostgreSQL state and one S3 store, every request to a
// random replica, and now and then a replica SIGKILLed (mid-pipeline,
// mid-signing, wherever it is) and replaced by a new one: what one
// replica serves, or refuses, must hold on all of them at every step.
func TestPropertyHostileUpstreamReplicas(t *testing.T) {
	t.Parallel()
	runHostileProperty(t, 3, hpReplicaTime)
}

func runHostileProperty(t *testing.T, replicas int, defaultBudget time.Duration) {
	seed := int64(hpDefaultSeed)
	if s := os.Getenv("AIRLOCK_PROP_SEED"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("AIRLOCK_PROP_SEED: %v", err)
		}
		seed = v
	}
	steps, budget := hpDefaultSteps, defaultBudget
	if s := os.Getenv("AIRLOCK_PROP_STEPS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			t.Fatalf("AIRLOCK_PROP_STEPS %q: want a positive number", s)
		}
		steps, budget = v, 0
	}
	if s := os.Getenv("AIRLOCK_PROP_BUDGET"); s != "" {
		v, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("AIRLOCK_PROP_BUDGET: %v", err)
		}
		budget = v
	}
	t.Logf("seed %d, %d steps, budget %v (replay with AIRLOCK_PROP_SEED=%d)", seed, steps, budget, seed)
	begin := time.Now()

	w := &hpWorld{
		t: t, seed: seed, rng: rand.New(rand.NewSource(seed)),
		repos: []string{"hp/a", "hp/b", "hp/c"}, ruleRepo: "hp/a",
		nodes: map[string]*hpNode{}, bytes: map[string][]byte{}, pubSig: map[string]bool{}, hostileBlob: map[string]bool{},
		pushed: map[string]map[string]bool{}, uploaded: map[string]bool{}, tags: map[string]map[string]*hpTag{}, tagOrder: map[string][]string{},
		sigSubj: map[string][]string{}, approved: map[string]map[string]bool{}, revokedOwn: map[string]map[string]bool{},
		ownSeen: map[string]map[string]*hpOwn{}, ownOrder: map[string][]string{}, ownBlob: map[string]string{},
		stats: map[string]int{}, once: map[string]bool{},
		c:     &http.Client{Timeout: 20 * time.Second},
		route: rand.New(rand.NewSource(seed + 1)), kills: replicas > 1,
	}
	for _, r := range w.repos {
		w.pushed[r], w.tags[r], w.approved[r], w.revokedOwn[r], w.ownSeen[r] = map[string]bool{}, map[string]*hpTag{}, map[string]bool{}, map[string]bool{}, map[string]*hpOwn{}
	}
	w.up = registrytest.NewUpstream(t)
	w.front = registrytest.NewFront(t, w.up)
	dir := t.TempDir()
	_, airlockPriv, airlockPub, airlockPW := hostileKeyPair(t, dir, "airlock")
	var publisherPub string
	w.publisher, _, publisherPub, _ = hostileKeyPair(t, dir, "publisher")
	apem, _ := os.ReadFile(airlockPub)
	ppem, _ := os.ReadFile(publisherPub)
	w.keys = loadVerifiers(t, map[string][]byte{"airlock": apem, "publisher": ppem})

	w.build()
	t.Logf("upstream holds %d manifests (%d approvable) and %d blobs across %v, built in %s",
		len(w.nodes), w.countApprovable(), len(w.bytes)-len(w.nodes), w.repos, time.Since(begin).Round(time.Millisecond))

	w.opts = options{UpstreamURL: w.front.URL(), NoHold: true, Extra: `
signatures:
  mode: none
  rules:
    - repository: "` + w.ruleRepo + `"
      mode: if-present
      keys: [` + publisherPub + `]
signing:
  key: ` + airlockPriv + `
  password_file: ` + airlockPW + `
`}
	if replicas > 1 {
		w.opts.Shared = newShared(t)
	}
	for range replicas {
		w.cluster = append(w.cluster, startAirlock(t, nil, w.opts))
	}

	w.check(0, "start")
	done := 0
	for step := 1; step <= steps; step++ {
		if budget > 0 && time.Since(begin) > budget {
			t.Logf("time budget %v spent after %d steps", budget, step-1)
			break
		}
		what := w.step()
		w.stats[strings.Fields(what)[0]]++
		w.check(step, what)
		done = step
		t.Logf("step %2d: %s", step, what)
	}
	t.Logf("seed %d: %d steps in %s; operations %v; checks %v", seed, done, time.Since(begin).Round(time.Millisecond), w.opStats(), w.checkStats())
	if w.stats["served:manifest"] == 0 || w.stats["served:blob"] == 0 {
		t.Errorf("nothing approved was ever served: the run proves nothing (stats %v)", w.stats)
	}
}

// ---- building the hostile upstream ----

func (w *hpWorld) countApprovable() int {
	n := 0
	for _, d := range w.order {
		if w.nodes[d].approvable {
			n++
		}
	}
	return n
}

// src is a random source derived from the seed, for content.
func (w *hpWorld) src() random.Option { return random.WithSource(rand.NewSource(w.rng.Int63())) }

func (w *hpWorld) add(n *hpNode) *hpNode {
	if old, ok := w.nodes[n.digest]; ok {
		return old
	}
	w.nodes[n.digest] = n
	w.order = append(w.order, n.digest)
	w.bytes[n.digest] = n.raw
	w.hostileBlob[n.digest] = true
	return n
}

func (w *hpWorld) addBlob(b []byte) string {
	d := sha256Hash(b).String()
	w.bytes[d] = b
	if !w.pubSig[d] {
		// A valid publisher signature is evidence wherever the
		// publisher also put its bytes, not smuggled content.
		w.hostileBlob[d] = true
	}
	return d
}

// image builds an image of family mt with the given layers.
func (w *hpWorld) image(nm string, mt types.MediaType, layers ...v1.Layer) *hpNode {
	t := w.t
	t.Helper()
	cmt, lmt := types.OCIConfigJSON, types.OCILayer
	if mt == types.DockerManifestSchema2 {
		cmt, lmt = types.DockerConfigJSON, types.DockerLayer
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, mt), cmt)
	adds := make([]mutate.Addendum, 0, len(layers))
	for _, l := range layers {
		adds = append(adds, mutate.Addendum{Layer: l, MediaType: lmt})
	}
	img, err := mutate.Append(img, adds...)
	if err != nil {
		t.Fatal(err)
	}
	c := describe(t, img)
	n := &hpNode{name: nm, kind: "image", digest: c.Digest.String(), mt: c.MediaType, raw: c.Manifest, img: img}
	n.blobs = append(n.blobs, w.addBlob(c.ConfigRaw))
	for _, b := range c.LayerRaw {
		n.blobs = append(n.blobs, w.addBlob(b))
	}
	return w.add(n)
}

func (w *hpWorld) randomLayer(mt types.MediaType) v1.Layer {
	l, err := random.Layer(int64(200+w.rng.Intn(1500)), mt, w.src())
	if err != nil {
		w.t.Fatal(err)
	}
	return l
}

// index builds an index listing kids (images or indexes).
func (w *hpWorld) index(nm string, mt types.MediaType, kids ...*hpNode) *hpNode {
	t := w.t
	t.Helper()
	idx := mutate.IndexMediaType(empty.Index, mt)
	archs := []string{"amd64", "arm64", "s390x", "ppc64le", "riscv64", "386"}
	n := &hpNode{name: nm, kind: "index", mt: string(mt)}
	for i, k := range kids {
		var add mutate.Appendable = k.img
		if k.kind == "index" {
			add = k.idx
			n.nested = append(n.nested, k.digest)
		} else {
			n.children = append(n.children, k.digest)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: add, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: archs[i%len(archs)]}}})
	}
	raw, err := idx.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	d, _ := idx.Digest()
	n.digest, n.raw, n.idx = d.String(), raw, idx
	return w.add(n)
}

// smuggle returns layers of media type mt holding bytes of other content:
// manifests of any node, configs and layers of images.
func (w *hpWorld) smuggle(mt string, n int) []hostileLayer {
	junk := map[string]string{sign.SignatureAnnotation: base64.StdEncoding.EncodeToString([]byte("junk"))}
	var out []hostileLayer
	for range n {
		nd := w.nodes[w.order[w.rng.Intn(len(w.order))]]
		b := nd.raw
		if len(nd.blobs) > 0 && w.rng.Intn(2) == 0 {
			b = w.bytes[nd.blobs[w.rng.Intn(len(nd.blobs))]]
		}
		out = append(out, hostileLayer{Data: b, MediaType: mt, Annotations: junk})
	}
	return out
}

// pushNode pushes n to repo (its children and blobs with it) under tag "n-<name>".
func (w *hpWorld) pushNode(repo string, n *hpNode) {
	tag := "n-" + n.name
	w.pushRaw(repo, tag, n)
	if n.kind == "index" {
		w.markIndexPushed(repo, n)
	} else {
		w.pushed[repo][n.digest] = true
	}
	w.setTag(repo, tag, n.digest, n.digest)
}

// pushRaw uploads n with plain registry API requests: every blob (always
// uploaded, never skipped because a HEAD says the registry has it), the
// children of an index by digest, then the manifest as repo:ref.
func (w *hpWorld) pushRaw(repo, ref string, n *hpNode) {
	t := w.t
	for _, b := range n.blobs {
		if w.uploaded[repo+"@"+b] {
			continue
		}
		pushRawBlob(t, w.up, repo, w.bytes[b])
		w.uploaded[repo+"@"+b] = true
	}
	for _, c := range append(append([]string(nil), n.children...), n.nested...) {
		w.pushRaw(repo, c, w.nodes[c])
	}
	pushRawManifest(t, w.up, repo, ref, n.mt, n.raw)
}

func (w *hpWorld) markIndexPushed(repo string, n *hpNode) {
	w.pushed[repo][n.digest] = true
	for _, c := range append(append([]string(nil), n.children...), n.nested...) {
		if k := w.nodes[c]; k.kind == "index" {
			w.markIndexPushed(repo, k)
		} else {
			w.pushed[repo][c] = true
		}
	}
}

func (w *hpWorld) setTag(repo, tag, head, get string) {
	tg, ok := w.tags[repo][tag]
	if !ok {
		tg = &hpTag{history: map[string]bool{}}
		w.tags[repo][tag] = tg
		w.tagOrder[repo] = append(w.tagOrder[repo], tag)
	}
	tg.head, tg.get = head, get
	tg.history[head], tg.history[get] = true, true
}

// pushArtifact pushes a classic artifact (cosign .sig/.att layout) with
// layers as repo:tag.
func (w *hpWorld) pushArtifact(repo, tag, nm string, layers []hostileLayer) *hpNode {
	t := w.t
	img := artifactImage(t, layers)
	c := describe(t, img)
	n := &hpNode{name: nm, kind: "artifact", digest: c.Digest.String(), mt: c.MediaType, raw: c.Manifest, img: img}
	n.blobs = append(n.blobs, w.addBlob(c.ConfigRaw))
	for _, b := range c.LayerRaw {
		n.blobs = append(n.blobs, w.addBlob(b))
	}
	w.pushRaw(repo, tag, n)
	n = w.add(n)
	w.pushed[repo][n.digest] = true
	return n
}

// pushSigFor pushes (or replaces) subject's upstream .sig in repo.
func (w *hpWorld) pushSigFor(repo string, subject *hpNode) {
	var layers []hostileLayer
	if repo == w.ruleRepo && w.rng.Intn(10) < 7 || w.rng.Intn(3) == 0 {
		c := hostileContent{Digest: mustHash(w.t, subject.digest), MediaType: subject.mt, Manifest: subject.raw}
		l := publisherSignature(w.t, w.up, repo, w.publisher, c)
		w.pubSig[sha256Hash(l.Data).String()] = true
		delete(w.hostileBlob, sha256Hash(l.Data).String())
		layers = append(layers, l)
	}
	if w.rng.Intn(3) == 0 {
		// A valid signature of some other image: replayed.
		o := w.nodes[w.order[w.rng.Intn(len(w.order))]]
		l := publisherSignature(w.t, w.up, repo, w.publisher, hostileContent{Digest: mustHash(w.t, o.digest), MediaType: o.mt, Manifest: o.raw})
		layers = append(layers, l)
	}
	layers = append(layers, w.smuggle(sign.SimpleSigningMediaType, 1+w.rng.Intn(3))...)
	w.rng.Shuffle(len(layers), func(i, j int) { layers[i], layers[j] = layers[j], layers[i] })
	h := mustHash(w.t, subject.digest)
	w.pushArtifact(repo, h.Algorithm+"-"+h.Hex+".sig", "sig("+subject.name+")", layers)
	if !slices.Contains(w.sigSubj[repo], subject.digest) {
		w.sigSubj[repo] = append(w.sigSubj[repo], subject.digest)
	}
}

// pushReferrer pushes an OCI 1.1 referrer of subject with smuggled layers,
// listed in the referrers tag fallback "sha256-<hex>".
func (w *hpWorld) pushReferrer(repo string, subject *hpNode) {
	t := w.t
	cfg := []byte(`{"hostile":"referrer config"}`)
	layers := w.smuggle("application/vnd.dev.cosign.simplesigning.v1+json", 1+w.rng.Intn(2))
	var descs []v1.Descriptor
	pushRawBlob(t, w.up, repo, cfg)
	for _, l := range layers {
		pushRawBlob(t, w.up, repo, l.Data)
	}
	for _, l := range layers {
		descs = append(descs, v1.Descriptor{MediaType: types.MediaType(l.MediaType), Digest: sha256Hash(l.Data), Size: int64(len(l.Data)), Annotations: l.Annotations})
	}
	subj := v1.Descriptor{MediaType: types.MediaType(subject.mt), Digest: mustHash(t, subject.digest), Size: int64(len(subject.raw))}
	m := map[string]any{
		"schemaVersion": 2, "mediaType": types.OCIManifestSchema1, "artifactType": sign.SignatureArtifactType,
		"config":  v1.Descriptor{MediaType: "application/vnd.dev.cosign.artifact.sig.v1+json", Digest: sha256Hash(cfg), Size: int64(len(cfg))},
		"layers":  descs,
		"subject": subj,
	}
	raw, _ := json.Marshal(m)
	rd := sha256Hash(raw)
	pushRawManifest(t, w.up, repo, rd.String(), string(types.OCIManifestSchema1), raw)
	n := &hpNode{name: "referrer(" + subject.name + ")", kind: "artifact", digest: rd.String(), mt: string(types.OCIManifestSchema1), raw: raw}
	n.blobs = append(n.blobs, w.addBlob(cfg))
	for _, l := range layers {
		n.blobs = append(n.blobs, w.addBlob(l.Data))
	}
	w.add(n)
	w.pushed[repo][n.digest] = true

	fb := map[string]any{"schemaVersion": 2, "mediaType": types.OCIImageIndex, "manifests": []map[string]any{{
		"mediaType": types.OCIManifestSchema1, "digest": rd.String(), "size": len(raw), "artifactType": sign.SignatureArtifactType,
	}}}
	fraw, _ := json.Marshal(fb)
	h := mustHash(t, subject.digest)
	tag := h.Algorithm + "-" + h.Hex
	fd := pushRawManifest(t, w.up, repo, tag, string(types.OCIImageIndex), fraw)
	w.add(&hpNode{name: "fallback(" + subject.name + ")", kind: "artifact", digest: fd, mt: string(types.OCIImageIndex), raw: fraw})
	w.pushed[repo][fd] = true
	w.setTag(repo, tag, fd, fd)
}

func mustHash(t testing.TB, s string) v1.Hash {
	h, err := v1.NewHash(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// build creates and pushes the hostile upstream.
func (w *hpWorld) build() {
	t := w.t
	mts := []types.MediaType{types.OCIManifestSchema1, types.DockerManifestSchema2}
	shared := w.randomLayer(types.OCILayer)
	var base, plat, hostile []*hpNode
	for i := range 4 {
		mt := mts[i%2]
		lmt := types.OCILayer
		if mt == types.DockerManifestSchema2 {
			lmt = types.DockerLayer
		}
		ls := []v1.Layer{w.randomLayer(lmt)}
		if i < 2 && mt == types.OCIManifestSchema1 || i == 0 {
			ls = append([]v1.Layer{shared}, ls...)
		}
		n := w.image(fmt.Sprintf("b%d", i), mt, ls...)
		n.approvable = true
		base = append(base, n)
	}
	for i := range 3 {
		n := w.image(fmt.Sprintf("p%d", i), types.OCIManifestSchema1, w.randomLayer(types.OCILayer))
		n.platform = true
		plat = append(plat, n)
	}
	// Indexes share platform manifests; i2 also lists i0 (nested: not
	// processed) and a standalone image.
	i0 := w.index("i0", types.OCIImageIndex, plat[0], plat[1], base[0])
	i1 := w.index("i1", types.OCIImageIndex, plat[1], plat[2])
	i2 := w.index("i2", types.OCIImageIndex, i0, plat[2], base[2])
	for _, n := range []*hpNode{i0, i1, i2} {
		n.approvable = true
	}
	// Images whose layers are other content's bytes.
	for i := range 3 {
		var ls []v1.Layer
		for range 1 + w.rng.Intn(3) {
			nd := w.nodes[w.order[w.rng.Intn(len(w.order))]]
			b := nd.raw
			if len(nd.blobs) > 0 && w.rng.Intn(3) == 0 {
				b = w.bytes[nd.blobs[0]] // a config
			}
			ls = append(ls, static.NewLayer(b, types.OCILayer))
		}
		ls = append(ls, w.randomLayer(types.OCILayer))
		n := w.image(fmt.Sprintf("h%d", i), types.OCIManifestSchema1, ls...)
		n.approvable = true
		hostile = append(hostile, n)
	}
	i3 := w.index("i3", types.OCIImageIndex, hostile[0], plat[0])
	i3.approvable = true

	approvable := []*hpNode{}
	for _, d := range w.order {
		if w.nodes[d].approvable {
			approvable = append(approvable, w.nodes[d])
		}
	}
	// Each approvable manifest goes to one to three repositories.
	for _, n := range approvable {
		perm := w.rng.Perm(len(w.repos))
		for _, k := range perm[:1+w.rng.Intn(len(w.repos))] {
			w.pushNode(w.repos[k], n)
		}
	}
	for _, repo := range w.repos {
		in := w.approvableIn(repo)
		if len(in) == 0 {
			w.pushNode(repo, base[0])
			in = w.approvableIn(repo)
		}
		for _, tag := range []string{"t0", "t1"} {
			n := in[w.rng.Intn(len(in))]
			pushRawManifest(t, w.up, repo, tag, n.mt, n.raw)
			w.setTag(repo, tag, n.digest, n.digest)
		}
		a, b := in[w.rng.Intn(len(in))], in[w.rng.Intn(len(in))]
		w.front.SplitTag(repo, "s0", mustHash(t, a.digest), mustHash(t, b.digest))
		w.setTag(repo, "s0", a.digest, b.digest)
		// Upstream signatures, attestations and referrers with arbitrary layers.
		for _, k := range w.rng.Perm(len(in))[:min(len(in), 3)] {
			w.pushSigFor(repo, in[k])
			h := mustHash(t, in[k].digest)
			w.pushArtifact(repo, h.Algorithm+"-"+h.Hex+".att", "att("+in[k].name+")", w.smuggle("application/vnd.dsse.envelope.v1+json", 1+w.rng.Intn(2)))
			if repo != w.ruleRepo && w.rng.Intn(2) == 0 {
				w.pushReferrer(repo, in[k])
			}
		}
	}
}

// approvableIn lists the approvable manifests pushed to repo, in creation order.
func (w *hpWorld) approvableIn(repo string) []*hpNode {
	var out []*hpNode
	for _, d := range w.order {
		if n := w.nodes[d]; n.approvable && w.pushed[repo][d] {
			out = append(out, n)
		}
	}
	return out
}

// ---- operations ----

func (w *hpWorld) key(repo, d string) string { return "docker.io/" + repo + "@" + d }

// adminImage reads a record; ok is false when there is none.
func (w *hpWorld) adminImage(repo, d string) (hpRecord, bool) {
	r := w.node().admin(w.t, http.MethodGet, "/api/v1/images/"+w.key(repo, d), nil)
	if r.Status != http.StatusOK {
		return hpRecord{}, false
	}
	var out struct {
		Image hpRecord        `json:"image"`
		Job   json.RawMessage `json:"job"`
	}
	if err := json.Unmarshal(r.Body, &out); err != nil {
		w.t.Fatalf("decode record: %v", err)
	}
	return out.Image, true
}

func (w *hpWorld) adminPost(verb, repo, d string) (int, hpRecord, string) {
	r := w.node().admin(w.t, http.MethodPost, "/api/v1/"+verb, map[string]string{"image": w.key(repo, d), "reason": "hostile property test"})
	var rec hpRecord
	if r.Status == http.StatusOK {
		_ = json.Unmarshal(r.Body, &rec)
	}
	return r.Status, rec, strings.TrimSpace(string(r.Body))
}

// settled waits until d has a record outside the pipeline, pulling it by
// digest first if it has none. ok is false if it has no record after the
// pull (it was served instead) or stayed in the pipeline.
func (w *hpWorld) settled(repo, d string) (hpRecord, bool) {
	if _, ok := w.adminImage(repo, d); !ok {
		_, _, _, _ = w.do(http.MethodGet, "/v2/"+repo+"/manifests/"+d, map[string]string{"Accept": manifestAccept})
	}
	deadline := time.Now().Add(45 * time.Second)
	for {
		rec, ok := w.adminImage(repo, d)
		if !ok {
			return rec, false
		}
		switch rec.State {
		case "awaiting-approval", "rejected", "failed", "revoked", "approved":
			return rec, true
		}
		if time.Now().After(deadline) {
			return rec, false
		}
		time.Sleep(30 * time.Millisecond)
	}
}

func (w *hpWorld) pick(n int) int { return w.rng.Intn(n) }

// ppick draws from the probe sampler, which is seeded per check so that
// how many draws a check makes never shifts the sequence of operations.
func (w *hpWorld) ppick(n int) int { return w.probe.Intn(n) }

// node returns the replica the next request goes to.
func (w *hpWorld) node() *Airlock { return w.cluster[w.route.Intn(len(w.cluster))] }

// kill SIGKILLs a random replica and starts a new one in its place.
func (w *hpWorld) kill() string {
	i := w.pick(len(w.cluster))
	old := w.cluster[i]
	old.Kill(w.t)
	w.cluster[i] = startAirlock(w.t, nil, w.opts)
	return fmt.Sprintf("kill replica %d (pid %d), start pid %d", i, old.cmd.Process.Pid, w.cluster[i].cmd.Process.Pid)
}

func (w *hpWorld) step() string {
	if w.kills && w.pick(8) == 0 {
		return w.kill()
	}
	repo := w.repos[w.pick(len(w.repos))]
	in := w.approvableIn(repo)
	switch p := w.pick(100); {
	case p < 14:
		tags := w.tagOrder[repo]
		tag := tags[w.pick(len(tags))]
		if w.pick(4) == 0 && len(w.sigSubj[repo]) > 0 {
			h := mustHash(w.t, w.sigSubj[repo][w.pick(len(w.sigSubj[repo]))])
			tag = h.Algorithm + "-" + h.Hex + [...]string{".sig", ".att"}[w.pick(2)]
		}
		method := [...]string{http.MethodGet, http.MethodHead}[w.pick(2)]
		st, _, _, _ := w.do(method, "/v2/"+repo+"/manifests/"+tag, map[string]string{"Accept": manifestAccept})
		return fmt.Sprintf("pull %s %s:%s -> %d", method, repo, tag, st)
	case p < 26:
		var cands []string
		for _, d := range w.order {
			if w.pushed[repo][d] {
				cands = append(cands, d)
			}
		}
		d := cands[w.pick(len(cands))]
		method := [...]string{http.MethodGet, http.MethodHead}[w.pick(2)]
		st, _, _, _ := w.do(method, "/v2/"+repo+"/manifests/"+d, map[string]string{"Accept": manifestAccept})
		return fmt.Sprintf("pull %s %s@%s (%s) -> %d", method, repo, d[:19], w.nodes[d].name, st)
	case p < 52:
		// Approve an image or index, or a platform manifest with a record of its own.
		var cands []string
		for _, n := range in {
			if !w.approved[repo][n.digest] {
				cands = append(cands, n.digest)
			}
		}
		if w.pick(4) == 0 {
			for _, d := range w.order {
				if n := w.nodes[d]; n.platform && w.pushed[repo][d] && !w.approved[repo][d] {
					cands = append(cands, d)
				}
			}
		}
		if len(cands) == 0 {
			return "approve (nothing to approve in " + repo + ")"
		}
		d := cands[w.pick(len(cands))]
		if w.pick(5) < 2 {
			// Indexes more often: their platform manifests are served
			// through them, and can then be revoked one by one.
			var idx []string
			for _, c := range cands {
				if w.nodes[c].kind == "index" {
					idx = append(idx, c)
				}
			}
			if len(idx) > 0 {
				d = idx[w.pick(len(idx))]
			}
		}
		nm := w.nodes[d].name
		rec, ok := w.settled(repo, d)
		if !ok {
			return fmt.Sprintf("approve %s@%s (%s): no settled record (state %q)", repo, d[:19], nm, rec.State)
		}
		if rec.State == "approved" {
			w.violate("approve: %s@%s (%s) is approved but no admin approved it", repo, d, nm)
			return "approve (already approved?)"
		}
		st, _, body := w.adminPost("approve", repo, d)
		if st != http.StatusOK {
			return fmt.Sprintf("approve %s@%s (%s) from %s -> %d %.120s", repo, d[:19], nm, rec.State, st, body)
		}
		final := w.waitSettled(repo, d)
		if final == "approved" {
			w.approved[repo][d], w.revokedOwn[repo][d] = true, false
		}
		return fmt.Sprintf("approve %s@%s (%s) from %s -> %s", repo, d[:19], nm, rec.State, final)
	case p < 70:
		var cands []string
		for _, d := range w.order {
			if w.approved[repo][d] {
				cands = append(cands, d)
			}
		}
		kids := w.servedChildren(repo)
		if w.pick(2) == 0 && len(kids) > 0 || len(cands) == 0 {
			cands = kids
		}
		if len(cands) == 0 {
			return "revoke (nothing approved in " + repo + ")"
		}
		d := cands[w.pick(len(cands))]
		nm := w.nodes[d].name
		st, rec, body := w.adminPost("revoke", repo, d)
		if st != http.StatusOK {
			if !w.approved[repo][d] {
				if !w.once["child-revoke"] {
					w.once["child-revoke"] = true
					w.t.Errorf("revoking platform manifest %s@%s (%s) of an approved index was refused: %d %s", repo, d, nm, st, body)
				}
				return fmt.Sprintf("revoke child %s@%s (%s) -> refused %d", repo, d[:19], nm, st)
			}
			w.violate("revoke of approved %s@%s (%s) refused: %d %s", repo, d, nm, st, body)
			return "revoke refused"
		}
		if rec.State != "revoked" {
			w.violate("revoke of %s@%s (%s) answered state %q", repo, d, nm, rec.State)
		}
		w.approved[repo][d], w.revokedOwn[repo][d] = false, true
		return fmt.Sprintf("revoke %s@%s (%s)", repo, d[:19], nm)
	case p < 80:
		var cands []string
		for _, d := range w.order {
			if w.approved[repo][d] {
				cands = append(cands, d)
			}
		}
		if len(cands) == 0 {
			return "rescan (nothing approved in " + repo + ")"
		}
		d := cands[w.pick(len(cands))]
		if st, _, body := w.adminPost("rescan", repo, d); st != http.StatusOK {
			w.violate("rescan of approved %s@%s refused: %d %s", repo, d, st, body)
			return "rescan refused"
		}
		deadline := time.Now().Add(60 * time.Second)
		for {
			_, _, job := imageJob(w.t, w.node(), w.key(repo, d))
			if !job {
				break
			}
			if time.Now().After(deadline) {
				w.violate("rescan of %s@%s still queued after 60s", repo, d)
				break
			}
			time.Sleep(30 * time.Millisecond)
		}
		rec, _ := w.adminImage(repo, d)
		if rec.State != "approved" {
			// A rescan may withdraw approval (e.g. the upstream signature
			// no longer verifies); it never grants one.
			w.approved[repo][d] = false
		}
		return fmt.Sprintf("rescan %s@%s (%s) -> %s", repo, d[:19], w.nodes[d].name, rec.State)
	case p < 88:
		if len(in) == 0 {
			return "replace .sig (nothing in " + repo + ")"
		}
		n := in[w.pick(len(in))]
		w.pushSigFor(repo, n)
		return fmt.Sprintf("replace upstream .sig of %s@%s (%s)", repo, n.digest[:19], n.name)
	default:
		if len(in) == 0 {
			return "move (nothing in " + repo + ")"
		}
		a := in[w.pick(len(in))]
		if w.pick(2) == 0 {
			tag := [...]string{"t0", "t1"}[w.pick(2)]
			pushRawManifest(w.t, w.up, repo, tag, a.mt, a.raw)
			w.setTag(repo, tag, a.digest, a.digest)
			return fmt.Sprintf("move %s:%s to %s (%s)", repo, tag, a.digest[:19], a.name)
		}
		b := in[w.pick(len(in))]
		w.front.SplitTag(repo, "s0", mustHash(w.t, a.digest), mustHash(w.t, b.digest))
		w.setTag(repo, "s0", a.digest, b.digest)
		return fmt.Sprintf("move %s:s0 to HEAD %s (%s) / GET %s (%s)", repo, a.digest[:19], a.name, b.digest[:19], b.name)
	}
}

// waitSettled waits for an approval to finish signing.
func (w *hpWorld) waitSettled(repo, d string) string {
	deadline := time.Now().Add(60 * time.Second)
	for {
		rec, _ := w.adminImage(repo, d)
		if rec.State != "signing" && rec.State != "pending" {
			return rec.State
		}
		if time.Now().After(deadline) {
			return rec.State
		}
		time.Sleep(30 * time.Millisecond)
	}
}

// servedChildren lists the platform manifests the model serves through an
// approved index of repo (as of the last check).
func (w *hpWorld) servedChildren(repo string) []string {
	var out []string
	for _, d := range w.order {
		if why := w.allowM[repo][d]; strings.HasPrefix(why, "child of ") && !w.approved[repo][d] {
			out = append(out, d)
		}
	}
	return out
}

// ---- checking ----

func (w *hpWorld) violate(format string, args ...any) {
	w.viol = append(w.viol, fmt.Sprintf(format, args...))
}

func (w *hpWorld) do(method, path string, hdr map[string]string) (int, http.Header, []byte, error) {
	req, err := http.NewRequest(method, w.node().URL+path, nil)
	if err != nil {
		return 0, nil, nil, err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := w.c.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, err
}

// snapshot reads every image record.
func (w *hpWorld) snapshot() {
	r := w.node().admin(w.t, http.MethodGet, "/api/v1/images", nil)
	if r.Status != http.StatusOK {
		w.t.Fatalf("list images: %d %s", r.Status, r.Body)
	}
	var out struct {
		Images []hpRecord `json:"images"`
	}
	if err := json.Unmarshal(r.Body, &out); err != nil {
		w.t.Fatalf("decode images: %v", err)
	}
	w.records = map[string]map[string]hpRecord{}
	for _, rec := range out.Images {
		if w.records[rec.Repository] == nil {
			w.records[rec.Repository] = map[string]hpRecord{}
		}
		w.records[rec.Repository][rec.Digest] = rec
	}
}

// computeAllowed derives what each repository may serve right now.
func (w *hpWorld) computeAllowed() {
	w.allowM, w.allowB = map[string]map[string]string{}, map[string]map[string]string{}
	for _, repo := range w.repos {
		am, ab := map[string]string{}, map[string]string{}
		w.allowM[repo], w.allowB[repo] = am, ab
		recs := w.records[repo]
		allowNode := func(d, why string) {
			am[d] = why
			for _, b := range w.nodes[d].blobs {
				if _, ok := ab[b]; !ok {
					ab[b] = "blob of " + w.nodes[d].name
				}
			}
		}
		for _, d := range w.order {
			if !w.approved[repo][d] {
				continue
			}
			rec, ok := recs[d]
			if !ok || rec.State != "approved" {
				w.violate("%s@%s (%s) was approved by the admin but its record says %q", repo, d, w.nodes[d].name, rec.State)
				continue
			}
			allowNode(d, "approved")
		}
		for _, d := range w.order {
			n := w.nodes[d]
			if n.kind != "index" || !w.approved[repo][d] {
				continue
			}
			rec := recs[d]
			for _, c := range n.children {
				if len(rec.Manifests) > 0 && !slices.Contains(rec.Manifests, c) {
					w.violate("approved index %s@%s (%s) record does not list its platform manifest %s as fetched", repo, d, n.name, c)
				}
				own, has := recs[c]
				if w.revokedOwn[repo][c] && (!has || own.State != "revoked") && !w.approved[repo][c] {
					w.violate("platform manifest %s@%s (%s) was revoked by the admin but its record says %q (has one: %v)", repo, c, w.nodes[c].name, own.State, has)
				}
				if has && own.State != "approved" || w.revokedOwn[repo][c] {
					continue
				}
				if _, ok := am[c]; !ok {
					allowNode(c, "child of "+n.name)
				}
			}
		}
		// Airlock's own artifacts of approved images, current signing only.
		for _, d := range w.order {
			if !w.approved[repo][d] {
				continue
			}
			rec := recs[d]
			if rec.Signed == nil {
				w.violate("approved %s@%s (%s) has no signature although signing is on", repo, d, w.nodes[d].name)
				continue
			}
			arts := map[string]string{rec.Signed.Sig.Digest: "sig", rec.Signed.Att.Digest: "att"}
			for _, r := range rec.Signed.Referrers {
				arts[r.Digest] = "referrer"
			}
			for a, kind := range arts {
				o := w.ownArtifact(repo, a, d, kind)
				if o == nil {
					continue
				}
				am[a] = "airlock's " + kind + " of " + w.nodes[d].name
				for _, b := range o.blobs {
					if _, ok := ab[b]; !ok {
						ab[b] = "blob of airlock's " + kind + " of " + w.nodes[d].name
					}
				}
			}
		}
		// An own record in any state but approved wins over every other
		// path, on /manifests/ and /blobs/ alike.
		for _, set := range []map[string]string{am, ab} {
			for d := range set {
				if rec, has := recs[d]; has && rec.State != "approved" {
					delete(set, d)
				}
			}
		}
	}
}

// ownArtifact fetches, validates and remembers one of Airlock's artifacts.
func (w *hpWorld) ownArtifact(repo, a, subject, kind string) *hpOwn {
	if o, ok := w.ownSeen[repo][a]; ok {
		return o
	}
	st, _, body, err := w.do(http.MethodGet, "/v2/"+repo+"/manifests/"+a, map[string]string{"Accept": manifestAccept + ", application/vnd.oci.image.manifest.v1+json"})
	if err != nil || st != http.StatusOK || sha256Hash(body).String() != a {
		w.violate("airlock's %s %s of approved %s@%s: GET = %d (%v), %d bytes", kind, a, repo, subject, st, err, len(body))
		return nil
	}
	var m struct {
		ArtifactType string          `json:"artifactType"`
		Config       v1.Descriptor   `json:"config"`
		Layers       []v1.Descriptor `json:"layers"`
		Subject      *v1.Descriptor  `json:"subject"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		w.violate("airlock's %s %s: %v", kind, a, err)
		return nil
	}
	w.bytes[a] = body
	o := &hpOwn{subject: subject, kind: kind}
	sname := w.nodes[subject].name
	bad := func(format string, args ...any) {
		w.violate("SMUGGLED into airlock's %s %s of %s@%s (%s): %s", kind, a, repo, subject, sname, fmt.Sprintf(format, args...))
	}
	if w.hostileBlob[a] {
		bad("the manifest itself is upstream content")
	}
	if kind == "referrer" && (m.Subject == nil || m.Subject.Digest.String() != subject) {
		bad("subject %v is not the image", m.Subject)
	}
	keys := sigVerifiers{"airlock": w.keys["airlock"]}
	if repo == w.ruleRepo && kind == "sig" {
		keys["publisher"] = w.keys["publisher"]
	}
	for i, desc := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		bd := desc.Digest.String()
		o.blobs = append(o.blobs, bd)
		if _, ok := w.ownBlob[bd]; !ok {
			w.ownBlob[bd] = fmt.Sprintf("blob of airlock's %s of %s in %s", kind, sname, repo)
		}
		st, _, b, err := w.do(http.MethodGet, "/v2/"+repo+"/blobs/"+bd, nil)
		if err != nil || st != http.StatusOK || sha256Hash(b).String() != bd {
			w.violate("blob %s of airlock's %s %s of approved %s@%s: GET = %d (%v), %d bytes", bd, kind, a, repo, subject, st, err, len(b))
			continue
		}
		w.bytes[bd] = b
		if w.hostileBlob[bd] {
			bad("blob %d (%s, %s) holds upstream content (%d bytes, starts %.60q)", i, bd, desc.MediaType, len(b), b)
			continue
		}
		if i == 0 {
			if !json.Valid(b) {
				bad("config %s is not JSON", bd)
			}
			continue
		}
		switch {
		case kind == "sig" || kind == "referrer" && m.ArtifactType == sign.SignatureArtifactType:
			if who, why := sigLayerSigner(desc, b, subject, keys); who == "" {
				bad("layer %d (%s) is not a valid signature of the image: %s", i, bd, why)
			}
		default:
			if why := dsseProblem(desc, b, subject, w.keys["airlock"]); why != "" {
				bad("layer %d (%s) is not airlock's attestation of the image: %s", i, bd, why)
			}
		}
	}
	w.ownSeen[repo][a] = o
	w.ownOrder[repo] = append(w.ownOrder[repo], a)
	return o
}

// dsseProblem says why layer b is not a DSSE envelope of an in-toto
// statement about subject signed by key ("" when it is).
func dsseProblem(desc v1.Descriptor, b []byte, subject string, key signature.Verifier) string {
	if string(desc.MediaType) != sign.DSSEMediaType {
		return "media type " + string(desc.MediaType)
	}
	var env struct {
		PayloadType string `json:"payloadType"`
		Payload     string `json:"payload"`
		Signatures  []struct {
			Sig string `json:"sig"`
		} `json:"signatures"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		return "not a DSSE envelope: " + err.Error()
	}
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return "payload is not base64"
	}
	var st struct {
		Subject []struct {
			Digest map[string]string `json:"digest"`
		} `json:"subject"`
	}
	if err := json.Unmarshal(payload, &st); err != nil || len(st.Subject) != 1 || "sha256:"+st.Subject[0].Digest["sha256"] != subject {
		return fmt.Sprintf("statement subject %+v is not the image (%v)", st.Subject, err)
	}
	pae := []byte(fmt.Sprintf("DSSEv1 %d %s %d ", len(env.PayloadType), env.PayloadType, len(payload)))
	pae = append(pae, payload...)
	for _, s := range env.Signatures {
		sig, err := base64.StdEncoding.DecodeString(s.Sig)
		if err == nil && key.VerifySignature(bytes.NewReader(sig), bytes.NewReader(pae)) == nil {
			return ""
		}
	}
	return "no signature by airlock's key"
}

// check probes everything and compares every answer with the model.
func (w *hpWorld) check(step int, what string) {
	t := w.t
	t.Helper()
	w.viol = nil
	w.probe = rand.New(rand.NewSource(w.seed*1000003 + int64(step)))
	w.snapshot()
	w.computeAllowed()
	for _, repo := range w.repos {
		w.checkRepo(repo)
	}
	if len(w.viol) > 0 {
		msg := w.viol
		if len(msg) > 30 {
			msg = append(msg[:30:30], fmt.Sprintf("... and %d more", len(w.viol)-30))
		}
		t.Fatalf("step %d (%s): %d violations of the serving rule:\n  %s", step, what, len(w.viol), strings.Join(msg, "\n  "))
	}
}

func (w *hpWorld) name(d string) string {
	if n, ok := w.nodes[d]; ok {
		return n.name
	}
	if w.isOwnManifest(d) {
		for _, repo := range w.repos {
			if o, ok := w.ownSeen[repo][d]; ok {
				return "airlock's " + o.kind + " manifest of " + w.nodes[o.subject].name + " in " + repo
			}
		}
	}
	if nm, ok := w.ownBlob[d]; ok {
		return nm
	}
	return "?"
}

// isOwn reports whether d is one of Airlock's artifact manifests or blobs.
func (w *hpWorld) isOwn(d string) bool {
	_, blob := w.ownBlob[d]
	return blob || w.isOwnManifest(d)
}

// isOwnManifest reports whether d is one of Airlock's artifact manifests
// (in any repository).
func (w *hpWorld) isOwnManifest(d string) bool {
	for _, repo := range w.repos {
		if _, ok := w.ownSeen[repo][d]; ok {
			return true
		}
	}
	return false
}

func (w *hpWorld) checkRepo(repo string) {
	am, ab := w.allowM[repo], w.allowB[repo]
	acceptM := map[string]string{"Accept": manifestAccept}

	// Blobs first: a manifest request below may give a digest a record of
	// its own, which then (rightly) stops it being served as a blob.
	// Every digest the model knows (manifests included), and every blob of
	// Airlock's artifacts ever seen.
	var bcands []string
	for d := range w.bytes {
		bcands = append(bcands, d)
	}
	slices.Sort(bcands) // map order must not steer the random choices below
	for _, d := range bcands {
		allowed := ab[d] != ""
		if !allowed && w.isOwn(d) && w.ppick(4) != 0 {
			// Artifacts of earlier signings pile up over a long run: a
			// quarter of them per check keeps checks fast.
			continue
		}
		st, h, body, err := w.do(http.MethodGet, "/v2/"+repo+"/blobs/"+d, nil)
		w.judgeBlob(repo, http.MethodGet, d, "", st, h, body, err, allowed)
		if allowed || w.ppick(3) == 0 {
			st, h, body, err = w.do(http.MethodHead, "/v2/"+repo+"/blobs/"+d, nil)
			w.judgeBlob(repo, http.MethodHead, d, "", st, h, body, err, allowed)
		}
		if allowed || w.ppick(3) == 0 {
			rng := w.randomRange(len(w.bytes[d]))
			st, h, body, err = w.do(http.MethodGet, "/v2/"+repo+"/blobs/"+d, map[string]string{"Range": rng})
			w.judgeBlob(repo, http.MethodGet, d, rng, st, h, body, err, allowed)
		}
	}

	// Manifests by digest: every node (platform manifests without a record
	// only once they are allowed, so that indexes get to serve them) and
	// every artifact of Airlock's ever seen in any repository.
	var mcands []string
	for _, d := range w.order {
		n := w.nodes[d]
		if n.platform && w.pushed[repo][d] {
			if _, has := w.records[repo][d]; !has && am[d] == "" {
				continue
			}
		}
		mcands = append(mcands, d)
	}
	for _, r := range w.repos {
		mcands = append(mcands, w.ownOrder[r]...)
	}
	seen := map[string]bool{}
	for _, d := range mcands {
		if seen[d] {
			continue
		}
		seen[d] = true
		if am[d] == "" && w.isOwn(d) && w.ppick(4) != 0 {
			continue
		}
		methods := []string{http.MethodGet}
		if am[d] != "" || w.ppick(2) == 0 {
			methods = append(methods, http.MethodHead)
		}
		for _, m := range methods {
			st, h, body, err := w.do(m, "/v2/"+repo+"/manifests/"+d, acceptM)
			w.judgeManifest(repo, m, d, d, "", st, h, body, err, am[d] != "")
		}
		if w.ppick(3) == 0 {
			rng := w.randomRange(len(w.bytes[d]))
			st, h, body, err := w.do(http.MethodGet, "/v2/"+repo+"/manifests/"+d, map[string]string{"Accept": manifestAccept, "Range": rng})
			w.judgeManifest(repo, http.MethodGet, d, d, rng, st, h, body, err, am[d] != "")
		}
	}

	// Tags: the model's, the .sig/.att tags of every approvable image and
	// of every subject with an upstream .sig.
	tags := append([]string(nil), w.tagOrder[repo]...)
	subjects := map[string]bool{}
	for _, n := range w.approvableIn(repo) {
		subjects[n.digest] = true
	}
	for _, d := range w.order {
		if !subjects[d] {
			continue
		}
		h := mustHash(w.t, d)
		tags = append(tags, h.Algorithm+"-"+h.Hex+".sig", h.Algorithm+"-"+h.Hex+".att")
	}
	for _, tag := range tags {
		for _, m := range []string{http.MethodGet, http.MethodHead} {
			if m == http.MethodHead && w.ppick(2) == 0 {
				continue
			}
			st, h, body, err := w.do(m, "/v2/"+repo+"/manifests/"+tag, acceptM)
			w.judgeTag(repo, m, tag, st, h, body, err)
		}
	}

	// Referrers of every approvable image.
	for _, d := range w.order {
		if !subjects[d] {
			continue
		}
		st, _, body, err := w.do(http.MethodGet, "/v2/"+repo+"/referrers/"+d, nil)
		var idx struct {
			Manifests []struct {
				Digest string `json:"digest"`
			} `json:"manifests"`
		}
		if err != nil || st != http.StatusOK || json.Unmarshal(body, &idx) != nil {
			w.violate("GET /v2/%s/referrers/%s = %d (%v) %.100s", repo, d, st, err, body)
			continue
		}
		var got, want []string
		for _, m := range idx.Manifests {
			got = append(got, m.Digest)
		}
		if rec := w.records[repo][d]; w.approved[repo][d] && rec.Signed != nil {
			for _, r := range rec.Signed.Referrers {
				want = append(want, r.Digest)
			}
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			w.violate("referrers of %s@%s (%s, approved %v) = %v, want %v", repo, d, w.nodes[d].name, w.approved[repo][d], got, want)
		}
	}
}

// randomRange is a Range header for some bytes of a size-byte body.
func (w *hpWorld) randomRange(size int) string {
	first := w.ppick(max(size, 1))
	last := first + w.ppick(max(size-first, 1))
	if w.ppick(4) == 0 {
		return fmt.Sprintf("bytes=-%d", 1+w.ppick(max(size, 1)))
	}
	return fmt.Sprintf("bytes=%d-%d", first, last)
}

// checkBody checks a 2xx GET answer against full: all of it for a 200,
// the slice its Content-Range names for a 206.
func (w *hpWorld) checkBody(what string, st int, h http.Header, body, full []byte) {
	switch st {
	case http.StatusOK:
		if !bytes.Equal(body, full) {
			w.violate("%s: body (%d bytes, sha256 %s) is not the %d bytes of that digest", what, len(body), sha256Hash(body), len(full))
		}
	case http.StatusPartialContent:
		var first, last, size int
		if _, err := fmt.Sscanf(h.Get("Content-Range"), "bytes %d-%d/%d", &first, &last, &size); err != nil || size != len(full) || first < 0 || last >= size || first > last {
			w.violate("%s = %d: Content-Range %q for a %d-byte body", what, st, h.Get("Content-Range"), len(full))
			return
		}
		if !bytes.Equal(body, full[first:last+1]) {
			w.violate("%s = %d: body is not bytes %d-%d of that digest", what, st, first, last)
		}
		w.stats["served:range"]++
	default:
		w.violate("%s = %d: a success that is neither 200 nor 206", what, st)
	}
}

func ok2xx(st int) bool { return st >= 200 && st < 300 }

func (w *hpWorld) transport(what string, st int, err error) bool {
	if err != nil || st == 0 || st >= 500 {
		w.violate("%s: status %d, error %v", what, st, err)
		return true
	}
	return false
}

func (w *hpWorld) judgeManifest(repo, method, ref, d, rng string, st int, h http.Header, body []byte, err error, allowed bool) {
	what := fmt.Sprintf("%s /v2/%s/manifests/%s (%s)", method, repo, ref, w.name(d))
	if rng != "" {
		what += " Range " + rng
	}
	if w.transport(what, st, err) {
		return
	}
	switch {
	case ok2xx(st) && !allowed:
		w.violate("LEAK: %s = %d: not servable by the rule (states: %s)", what, st, w.stateSummary(repo, d))
	case !ok2xx(st) && allowed:
		w.violate("REFUSED: %s = %d, but it is servable (%s): %.160s", what, st, w.allowM[repo][d], body)
	case ok2xx(st):
		w.stats["served:manifest"]++
		if strings.HasPrefix(w.allowM[repo][d], "child of ") {
			w.stats["served:child"]++
		}
		if strings.HasPrefix(w.allowM[repo][d], "airlock's ") {
			w.stats["served:own"]++
		}
		if got := h.Get("Docker-Content-Digest"); got != d {
			w.violate("%s: Docker-Content-Digest %q, want %s", what, got, d)
		}
		if method == http.MethodGet {
			w.checkBody(what, st, h, body, w.bytes[d])
		}
	}
}

func (w *hpWorld) stateSummary(repo, d string) string {
	rec, has := w.records[repo][d]
	var parents []string
	for _, p := range w.order {
		if n := w.nodes[p]; n.kind == "index" && slices.Contains(n.children, d) && w.pushed[repo][p] {
			parents = append(parents, fmt.Sprintf("%s approved=%v", n.name, w.approved[repo][p]))
		}
	}
	return fmt.Sprintf("own record %v %q, model approved %v, revoked by admin %v, listed by %v", has, rec.State, w.approved[repo][d], w.revokedOwn[repo][d], parents)
}

func (w *hpWorld) judgeTag(repo, method, tag string, st int, h http.Header, body []byte, err error) {
	what := fmt.Sprintf("%s /v2/%s/manifests/%s", method, repo, tag)
	if w.transport(what, st, err) {
		return
	}
	got := h.Get("Docker-Content-Digest")
	if strings.HasSuffix(tag, ".sig") || strings.HasSuffix(tag, ".att") {
		subject := strings.Replace(strings.TrimSuffix(strings.TrimSuffix(tag, ".sig"), ".att"), "-", ":", 1)
		var want string
		if rec := w.records[repo][subject]; w.approved[repo][subject] && rec.Signed != nil {
			want = rec.Signed.Sig.Digest
			if strings.HasSuffix(tag, ".att") {
				want = rec.Signed.Att.Digest
			}
		}
		switch {
		case ok2xx(st) && want == "":
			w.violate("LEAK: %s = %d (%s): the image is not approved in %s, so it has no signature to serve", what, st, got, repo)
		case !ok2xx(st) && want != "":
			w.violate("REFUSED: %s = %d: airlock's %s of an approved image: %.160s", what, st, want, body)
		case ok2xx(st) && got != want:
			w.violate("%s served %s, but the current signing is %s", what, got, want)
		case ok2xx(st) && method == http.MethodGet && sha256Hash(body).String() != got:
			w.violate("%s: body hashes to %s, header says %s", what, sha256Hash(body), got)
		}
		return
	}
	tg := w.tags[repo][tag]
	if !ok2xx(st) {
		if tg != nil && w.allowM[repo][tg.head] != "" && w.allowM[repo][tg.get] != "" {
			w.violate("REFUSED: %s = %d, but it points to servable %s / %s: %.160s", what, st, tg.head, tg.get, body)
		}
		return
	}
	w.stats["served:tag"]++
	switch {
	case w.allowM[repo][got] == "":
		w.violate("LEAK: %s = %d served %s (%s), not servable by the rule (%s)", what, st, got, w.name(got), w.stateSummary(repo, got))
	case tg == nil || !tg.history[got]:
		w.violate("%s served %s (%s), a digest the tag never pointed to", what, got, w.name(got))
	case method == http.MethodGet && !bytes.Equal(body, w.bytes[got]):
		w.violate("%s: body (%d bytes, sha256 %s) is not the bytes of %s", what, len(body), sha256Hash(body), got)
	case w.allowM[repo][tg.head] != "" && w.allowM[repo][tg.get] != "" && got != tg.head && got != tg.get:
		w.violate("%s served %s, not its current (servable) %s / %s", what, got, tg.head, tg.get)
	}
}

func (w *hpWorld) judgeBlob(repo, method, d, rng string, st int, h http.Header, body []byte, err error, allowed bool) {
	what := fmt.Sprintf("%s /v2/%s/blobs/%s (%s)", method, repo, d, w.name(d))
	if rng != "" {
		what += " Range " + rng
	}
	if w.transport(what, st, err) {
		return
	}
	full := w.bytes[d]
	switch {
	case ok2xx(st) && !allowed:
		role := "a blob no servable manifest references"
		if _, isManifest := w.nodes[d]; isManifest || w.isOwnManifest(d) {
			role = "a manifest's bytes, which is no config or layer of a servable manifest"
		}
		w.violate("LEAK: %s = %d with %d bytes: %s (%s)", what, st, len(body), role, w.stateSummary(repo, d))
		return
	case !ok2xx(st) && allowed:
		if st == http.StatusRequestedRangeNotSatisfiable {
			return
		}
		w.violate("REFUSED: %s = %d, but it is servable (%s): %.160s", what, st, w.allowB[repo][d], body)
		return
	case !ok2xx(st):
		return
	}
	w.stats["served:blob"]++
	if method == http.MethodHead {
		if cl := h.Get("Content-Length"); cl != strconv.Itoa(len(full)) {
			w.violate("%s: Content-Length %s, want %d", what, cl, len(full))
		}
		return
	}
	w.checkBody(what, st, h, body, full)
}

func (w *hpWorld) opStats() map[string]int {
	out := map[string]int{}
	for k, v := range w.stats {
		if !strings.HasPrefix(k, "served:") {
			out[k] = v
		}
	}
	return out
}

func (w *hpWorld) checkStats() map[string]int {
	out := map[string]int{}
	for k, v := range w.stats {
		if strings.HasPrefix(k, "served:") {
			out[strings.TrimPrefix(k, "served:")] = v
		}
	}
	return out
}
