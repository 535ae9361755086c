package e2e

// The real helm CLI (scripts/install-e2e-tools.sh installs it with
// `go install helm.sh/helm/v3/cmd/helm`) pushing a chart to the upstream
// as an OCI artifact and pulling it through airlock with
// `helm pull oci://…`. helm keeps its cache, config and data under a temp
// dir per test.

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/airlockproxy/airlock/internal/registrytest"
	"github.com/airlockproxy/airlock/internal/vulndbtest"
)

// helmConfigType is the config media type of a Helm chart pushed to an OCI
// registry: what policy.artifact_types keys a chart by.
const helmConfigType = "application/vnd.cncf.helm.config.v1+json"

// requireHelm finds the helm binary: the one the installer put in
// GOPATH/bin first (its version is pinned; `--plain-http` needs helm
// v3.13+), else helm on PATH; missing, it fails in CI and skips elsewhere.
func requireHelm(t testing.TB) string {
	t.Helper()
	return requireTool(t, gopathBin("helm"), "helm")
}

// helmCLI runs one helm binary with its own HOME and XDG/HELM dirs.
type helmCLI struct {
	bin  string
	home string
	env  []string
}

func newHelmCLI(t testing.TB) *helmCLI {
	t.Helper()
	h := &helmCLI{bin: requireHelm(t), home: t.TempDir()}
	h.env = []string{
		"HOME=" + h.home,
		"HELM_CACHE_HOME=" + filepath.Join(h.home, "cache"),
		"HELM_CONFIG_HOME=" + filepath.Join(h.home, "config"),
		"HELM_DATA_HOME=" + filepath.Join(h.home, "data"),
		"HELM_REGISTRY_CONFIG=" + filepath.Join(h.home, "config", "registry", "config.json"),
		"DOCKER_CONFIG=" + filepath.Join(h.home, ".docker"),
		"TMPDIR=" + h.home,
	}
	out, err := h.run(t, "version")
	mustSucceed(t, "helm version", out, err)
	return h
}

func (h *helmCLI) run(t testing.TB, args ...string) (string, error) {
	t.Helper()
	return runTool(t, h.env, h.bin, args...)
}

// packageChart writes a chart named name at version 0.1.0 whose values
// reference image, packages it with `helm package` and returns the .tgz.
func (h *helmCLI) packageChart(t testing.TB, name, image string) string {
	t.Helper()
	src := filepath.Join(h.home, "src", name)
	writeFile(t, filepath.Join(src, "Chart.yaml"), "apiVersion: v2\nname: "+name+
		"\ndescription: a chart for the airlock e2e tests\ntype: application\nversion: 0.1.0\nappVersion: \"1.0\"\n")
	repo, tag, _ := strings.Cut(image, ":")
	writeFile(t, filepath.Join(src, "values.yaml"), "image:\n  repository: "+repo+"\n  tag: \""+tag+"\"\n")
	writeFile(t, filepath.Join(src, "templates", "pod.yaml"), `apiVersion: v1
kind: Pod
metadata:
  name: {{ .Release.Name }}
spec:
  containers:
    - name: app
      image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"
`)
	dest := filepath.Join(h.home, "packaged")
	out, err := h.run(t, "package", src, "--destination", dest)
	mustSucceed(t, "helm package", out, err)
	tgz := filepath.Join(dest, name+"-0.1.0.tgz")
	if _, err := os.Stat(tgz); err != nil {
		t.Fatalf("helm package wrote no %s: %v", tgz, err)
	}
	return tgz
}

// pushDigest matches the manifest digest `helm push` prints.
var pushDigest = regexp.MustCompile(`Digest: (sha256:[0-9a-f]{64})`)

// push runs `helm push tgz oci://<up>/charts` and returns the manifest
// digest, checked against what the upstream serves for the tag.
func (h *helmCLI) push(t testing.TB, up *registrytest.Upstream, tgz, chart string) v1.Hash {
	t.Helper()
	out, err := h.run(t, "push", tgz, "oci://"+up.Host()+"/charts", "--plain-http")
	mustSucceed(t, "helm push", out, err)
	desc, err := remote.Head(up.Ref(t, "charts/"+chart+":0.1.0"))
	if err != nil {
		t.Fatalf("the upstream does not have the pushed chart: %v", err)
	}
	if m := pushDigest.FindStringSubmatch(out); m == nil || m[1] != desc.Digest.String() {
		t.Fatalf("helm push reported %v, the upstream has %s", m, desc.Digest)
	}
	return desc.Digest
}

// pull runs `helm pull oci://<airlock>/charts/<chart> --version 0.1.0
// --plain-http` into a new directory and returns the output and the path
// of the .tgz it should have written.
func (h *helmCLI) pull(t testing.TB, al *Airlock, chart, step string) (string, string, error) {
	t.Helper()
	dest := filepath.Join(h.home, "pulled-"+strings.ReplaceAll(t.Name(), "/", "_")+"-"+step)
	if err := os.MkdirAll(dest, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := h.run(t, "pull", "oci://"+al.Host+"/charts/"+chart, "--version", "0.1.0", "--plain-http", "--destination", dest)
	return out, filepath.Join(dest, chart+"-0.1.0.tgz"), err
}

// refused checks that a helm pull failed, showed every one of want and
// wrote no chart.
func refused(t testing.TB, what, out, tgz string, err error, want ...string) {
	t.Helper()
	mustFail(t, what, out, err, want...)
	if _, serr := os.Stat(tgz); serr == nil {
		t.Errorf("%s: helm wrote %s although the pull failed", what, tgz)
	}
}

// TestHelmChartThroughAirlock proves, with the real helm CLI over real
// HTTP, that a Helm chart (an OCI artifact, config type
// application/vnd.cncf.helm.config.v1+json) goes through the quarantine
// gate like an image, with the vulnerability-scan policy on:
//   - default policy.artifact_types (manual): `helm pull oci://airlock/…`
//     is refused while the chart is in quarantine; the record is
//     awaiting-approval because it is not a container image (not a scan
//     error), and helm shows that reason;
//   - after an admin approves it, helm pull succeeds and the .tgz is byte
//     for byte the one `helm package` made and `helm push` uploaded;
//   - the image the chart's values.yaml references is not pulled by
//     airlock (no record, no upstream request for it);
//   - after a revoke the next helm pull is refused again;
//   - under policy.artifact_types {helm config type: deny} the chart is
//     rejected and stays refused.
func TestHelmChartThroughAirlock(t *testing.T) {
	h := newHelmCLI(t)
	up := registrytest.NewUpstream(t)
	dbDir := t.TempDir()
	vulndbtest.Build(t, dbDir)
	scanCfg := "scan:\n  db_dir: " + dbDir + "\n  max_db_age: 0s\n"

	// The image the chart deploys exists upstream, so that an implicit
	// pull of it would succeed and leave a record.
	appRepo := "library/helm-app"
	up.PushImage(t, appRepo+":v1", registrytest.Image(t, 1, 1024, types.OCIManifestSchema1))
	appManifest := "/v2/" + appRepo + "/manifests/"
	appRequests := func() int {
		n := 0
		for _, r := range up.Requests() {
			if strings.HasPrefix(r.Path, appManifest) && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
				n++
			}
		}
		return n
	}
	appBefore := appRequests()

	t.Run("manual", func(t *testing.T) {
		al := startAirlock(t, up, options{Policy: "scan", Extra: scanCfg})
		const chart = "helm-demo"
		tgz := h.packageChart(t, chart, al.Host+"/"+appRepo+":v1")
		pushed, err := os.ReadFile(tgz)
		if err != nil {
			t.Fatal(err)
		}
		d := h.push(t, up, tgz, chart)
		key := "docker.io/charts/" + chart + "@" + d.String()

		out, got, err := h.pull(t, al, chart, "first")
		refused(t, "helm pull before approval", out, got, err, "quarantine", key)
		rec := al.waitState(t, key, stateTimeout, "awaiting-approval", "failed", "rejected", "approved")
		if rec.State != "awaiting-approval" || !strings.Contains(rec.Reason, helmConfigType+" is not a container image") ||
			!strings.Contains(rec.Reason, "policy.artifact_types: manual") {
			t.Fatalf("chart record: %s (%s); want awaiting-approval as %s is not a container image", rec.State, rec.Reason, helmConfigType)
		}
		out, got, err = h.pull(t, al, chart, "quarantined")
		refused(t, "helm pull awaiting approval", out, got, err, key, "awaiting-approval", "not a container image")

		approved := al.action(t, "approve", key, "e2e: helm chart reviewed")
		if approved.State != "approved" {
			t.Fatalf("approve: state %s (%s)", approved.State, approved.Reason)
		}
		out, got, err = h.pull(t, al, chart, "approved")
		mustSucceed(t, "helm pull after approval", out, err)
		b, err := os.ReadFile(got)
		if err != nil {
			t.Fatalf("helm pull after approval: %v", err)
		}
		if !bytes.Equal(b, pushed) {
			t.Errorf("pulled chart (%d bytes, %s) differs from the pushed one (%d bytes, %s)",
				len(b), digestOfFile(t, got), len(pushed), digestOfFile(t, tgz))
		}

		// Only the chart: the image its values reference was not fetched.
		imgs := al.images(t, "")
		if len(imgs) != 1 || imgs[0].Upstream+"/"+imgs[0].Repository+"@"+imgs[0].Digest != key {
			t.Errorf("airlock holds %+v; want only the chart %s", imgs, key)
		}
		if n := appRequests() - appBefore; n != 0 {
			t.Errorf("the upstream got %d manifest requests for %s, which the chart only references", n, appRepo)
		}

		al.action(t, "revoke", key, "e2e: helm chart withdrawn")
		out, got, err = h.pull(t, al, chart, "revoked")
		refused(t, "helm pull after revoke", out, got, err, key, "revoked", "e2e: helm chart withdrawn")
	})

	t.Run("deny", func(t *testing.T) {
		al := startAirlock(t, up, options{Policy: "scan", Extra: scanCfg +
			"policy:\n  artifact_types:\n    \"" + helmConfigType + "\": deny\n"})
		const chart = "helm-denied"
		tgz := h.packageChart(t, chart, al.Host+"/"+appRepo+":v1")
		d := h.push(t, up, tgz, chart)
		key := "docker.io/charts/" + chart + "@" + d.String()

		out, got, err := h.pull(t, al, chart, "first")
		refused(t, "helm pull of a denied chart", out, got, err, key)
		rec := al.waitState(t, key, stateTimeout, "rejected", "awaiting-approval", "failed", "approved")
		if rec.State != "rejected" || !strings.Contains(rec.Reason, "denied by policy.artifact_types") {
			t.Fatalf("denied chart: %s (%s); want rejected, denied by policy.artifact_types", rec.State, rec.Reason)
		}
		// Settled: a later pull is still refused, with the reason.
		time.Sleep(time.Second)
		out, got, err = h.pull(t, al, chart, "again")
		refused(t, "helm pull of a denied chart, again", out, got, err, key, "rejected", "denied by policy.artifact_types")
		if rec, _ := al.image(t, key); rec.Image.State != "rejected" {
			t.Errorf("denied chart is %s after the second pull (%s)", rec.Image.State, rec.Image.Reason)
		}
		if n := appRequests() - appBefore; n != 0 {
			t.Errorf("the upstream got %d manifest requests for %s, which the chart only references", n, appRepo)
		}
	})
}
