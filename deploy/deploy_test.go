package deploy_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	dockerconfig "github.com/containerd/containerd/v2/core/remotes/docker/config"
	"github.com/pelletier/go-toml/v2"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/proxy/route"
)

const (
	namespace = "airlock"
	// airlockAddr is the node-reachable address of the registry Service that
	// the containerd config and signing.reference use.
	airlockAddr = "airlock.internal:5000"
	placeholder = "REPLACE-ME"
)

// loadManifests decodes the single-node install, deploy/kubernetes: one
// StatefulSet and no Deployment or PodDisruptionBudget (those are the HA
// install's).
func loadManifests(t *testing.T) *manifests {
	t.Helper()
	m := newManifests("the single-node install (deploy/kubernetes)",
		kindNamespace, kindStatefulSet, kindService, kindConfigMap, kindSecret)
	files, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		m.files = append(m.files, filepath.Base(f))
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m.decode(t, f, b)
	}
	m.complete(t, "kubernetes")
	return m
}

// loadAirlockConfig loads the ConfigMap's airlock.yaml with the real config
// loader (defaults, strict keys, validation). Files it names are not checked
// (CheckFiles): they exist only in the pod.
func loadAirlockConfig(t *testing.T, cm *corev1.ConfigMap) *config.Config {
	t.Helper()
	y, ok := cm.Data["airlock.yaml"]
	if !ok {
		t.Fatalf("ConfigMap %s has no airlock.yaml", cm.Name)
	}
	p := filepath.Join(t.TempDir(), "airlock.yaml")
	if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AIRLOCK_ADMIN_TOKEN", "")
	t.Setenv("AIRLOCK_STATE_DSN", "")
	cfg, err := config.Load(p)
	if err != nil {
		t.Fatalf("ConfigMap airlock.yaml: %v", err)
	}
	return cfg
}

func port(t *testing.T, addr string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return p
}

func TestKubernetesManifests(t *testing.T) {
	m := loadManifests(t)

	for _, ns := range m.namespaces {
		if ns.Name != namespace {
			t.Errorf("Namespace %q, want %q", ns.Name, namespace)
		}
		if got := ns.Labels["pod-security.kubernetes.io/enforce"]; got != "restricted" {
			t.Errorf("Namespace %s: pod-security enforce = %q, want restricted", ns.Name, got)
		}
	}
	sts := m.statefulSet
	objs := []struct{ kind, name, ns string }{{"StatefulSet", sts.Name, sts.Namespace}}
	for _, s := range m.services {
		objs = append(objs, struct{ kind, name, ns string }{"Service", s.Name, s.Namespace})
	}
	for _, c := range m.configMaps {
		objs = append(objs, struct{ kind, name, ns string }{"ConfigMap", c.Name, c.Namespace})
	}
	for _, s := range m.secrets {
		objs = append(objs, struct{ kind, name, ns string }{"Secret", s.Name, s.Namespace})
	}
	for _, o := range objs {
		if o.ns != namespace {
			t.Errorf("%s %s: namespace %q, want %q", o.kind, o.name, o.ns, namespace)
		}
	}

	// One replica: bbolt is single-writer.
	if sts.Spec.Replicas == nil || *sts.Spec.Replicas != 1 {
		t.Errorf("StatefulSet replicas = %v, want exactly 1", sts.Spec.Replicas)
	}
	if _, ok := m.services[sts.Spec.ServiceName]; !ok {
		t.Errorf("StatefulSet serviceName %q is not a Service of the manifests", sts.Spec.ServiceName)
	}
	podLabels := sts.Spec.Template.Labels
	for k, v := range sts.Spec.Selector.MatchLabels {
		if podLabels[k] != v {
			t.Errorf("StatefulSet selector %s=%s does not match the pod template labels %v", k, v, podLabels)
		}
	}
	for _, s := range m.services {
		if len(s.Spec.Selector) == 0 {
			t.Errorf("Service %s has no selector", s.Name)
		}
		for k, v := range s.Spec.Selector {
			if podLabels[k] != v {
				t.Errorf("Service %s selector %s=%s does not match the pod labels", s.Name, k, v)
			}
		}
	}

	pod := sts.Spec.Template.Spec
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("pod: automountServiceAccountToken should be false (Airlock does not talk to the API server)")
	}
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Error("pod securityContext: runAsNonRoot must be true")
	}
	if psc == nil || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Error("pod securityContext: runAsUser must be a non-zero uid")
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("pod securityContext: seccompProfile must be RuntimeDefault")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("pod has %d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Fatal("container has no securityContext")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("container: readOnlyRootFilesystem must be true")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("container: allowPrivilegeEscalation must be false")
	case sc.Privileged != nil && *sc.Privileged:
		t.Error("container: must not be privileged")
	case sc.RunAsNonRoot != nil && !*sc.RunAsNonRoot:
		t.Error("container: runAsNonRoot must not be overridden to false")
	case sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0:
		t.Error("container: capabilities must drop ALL and add none")
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[r]; !ok {
			t.Errorf("container: no %s request", r)
		}
	}
	if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
		t.Error("container: no memory limit")
	}

	// The config the pod runs with.
	if len(c.Args) != 2 || c.Args[0] != "--config" {
		t.Fatalf("container args %q, want [--config <file>] (the image's entrypoint is `airlock serve`)", c.Args)
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	claims := map[string]corev1.PersistentVolumeClaim{}
	for _, pvc := range sts.Spec.VolumeClaimTemplates {
		claims[pvc.Name] = pvc
	}
	mounts := map[string]corev1.VolumeMount{} // by mount path
	for _, vm := range c.VolumeMounts {
		_, isVol := volumes[vm.Name]
		_, isClaim := claims[vm.Name]
		if !isVol && !isClaim {
			t.Errorf("volumeMount %s: no volume or volumeClaimTemplate of that name", vm.Name)
		}
		mounts[vm.MountPath] = vm
	}
	cfgFile := c.Args[1]
	cfgMount, ok := mounts[path.Dir(cfgFile)]
	if !ok || volumes[cfgMount.Name].ConfigMap == nil {
		t.Fatalf("--config %s: its directory is not a ConfigMap mount", cfgFile)
	}
	cm, ok := m.configMaps[volumes[cfgMount.Name].ConfigMap.Name]
	if !ok {
		t.Fatalf("ConfigMap %q is not in the manifests", volumes[cfgMount.Name].ConfigMap.Name)
	}
	if _, ok := cm.Data[path.Base(cfgFile)]; !ok {
		t.Fatalf("ConfigMap %s has no key %s", cm.Name, path.Base(cfgFile))
	}
	cfg := loadAirlockConfig(t, cm)

	// data_dir is the PersistentVolumeClaim.
	dm, ok := mounts[cfg.DataDir]
	if !ok {
		t.Fatalf("data_dir %s is not a volume mount", cfg.DataDir)
	}
	pvc, ok := claims[dm.Name]
	if !ok {
		t.Fatalf("data_dir %s is mounted from %q, not from a volumeClaimTemplate", cfg.DataDir, dm.Name)
	}
	if !slices.Contains(pvc.Spec.AccessModes, corev1.ReadWriteOnce) {
		t.Errorf("volumeClaimTemplate %s: accessModes %v, want ReadWriteOnce", pvc.Name, pvc.Spec.AccessModes)
	}
	if _, ok := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; !ok {
		t.Errorf("volumeClaimTemplate %s: no storage request", pvc.Name)
	}
	if dm.ReadOnly {
		t.Errorf("data_dir mount is read-only")
	}
	if !strings.HasPrefix(cfg.ScanDBDir(), cfg.DataDir+"/") {
		t.Errorf("scan.db_dir %s is not on the data volume %s", cfg.ScanDBDir(), cfg.DataDir)
	}

	// A writable emptyDir on the temp dir the scanner unpacks layers into.
	tmpDir := "/tmp"
	for _, e := range c.Env {
		if e.Name == "TMPDIR" {
			tmpDir = e.Value
		}
	}
	tm, ok := mounts[tmpDir]
	if !ok || volumes[tm.Name].EmptyDir == nil || tm.ReadOnly {
		t.Errorf("temp dir %s must be a writable emptyDir mount", tmpDir)
	}
	for p, vm := range mounts {
		v, isVol := volumes[vm.Name]
		if isVol && (v.ConfigMap != nil || v.Secret != nil) && !vm.ReadOnly {
			t.Errorf("mount %s (%s) should be readOnly", p, vm.Name)
		}
	}

	// Listen addresses and probes.
	if cfg.DataDir != "/data" || cfg.Listen != ":5000" || cfg.Admin.Listen != ":5001" {
		t.Errorf("config: data_dir %q listen %q admin.listen %q, want /data :5000 :5001", cfg.DataDir, cfg.Listen, cfg.Admin.Listen)
	}
	checkProbes(t, c, cfg.Listen, cfg.Admin.Listen)
	resolve := portResolver(t, c)

	// The admin token comes from the Secret; the admin listener (and with it
	// /readyz) runs only with a token.
	var tokenRef *corev1.SecretKeySelector
	for _, e := range c.Env {
		if e.Name == "AIRLOCK_ADMIN_TOKEN" && e.ValueFrom != nil {
			tokenRef = e.ValueFrom.SecretKeyRef
		}
	}
	if tokenRef == nil {
		t.Fatal("AIRLOCK_ADMIN_TOKEN is not set from a Secret: without a token the admin API and /readyz do not run")
	}
	if cfg.Admin.Token != "" {
		t.Error("the ConfigMap must not hold admin.token: it comes from the Secret")
	}
	if s, ok := m.secrets[tokenRef.Name]; !ok || s.StringData[tokenRef.Key] == "" && len(s.Data[tokenRef.Key]) == 0 {
		t.Errorf("AIRLOCK_ADMIN_TOKEN: Secret %s has no key %s", tokenRef.Name, tokenRef.Key)
	}

	// Every file airlock.yaml names is provided by a mounted Secret item.
	if !cfg.Signing.Enabled() || cfg.Signing.Key == "" || cfg.Signing.PasswordFile == "" {
		t.Error("signing: key and password_file should be set (from the Secret)")
	}
	files := map[string]string{"signing.key": cfg.Signing.Key, "signing.password_file": cfg.Signing.PasswordFile}
	for i, r := range cfg.Signatures.Rules {
		for j, k := range r.Keys {
			files["signatures.rules["+strconv.Itoa(i)+"].keys["+strconv.Itoa(j)+"]"] = k
		}
		files["signatures.rules["+strconv.Itoa(i)+"].trusted_root"] = r.TrustedRoot
	}
	for i, u := range cfg.Upstreams {
		files["upstreams["+strconv.Itoa(i)+"].password_file"] = u.PasswordFile
	}
	for field, f := range files {
		if f == "" {
			continue
		}
		vm, ok := mounts[path.Dir(f)]
		if !ok {
			t.Errorf("%s %s: its directory is not a volume mount", field, f)
			continue
		}
		v := volumes[vm.Name]
		if v.Secret == nil {
			t.Errorf("%s %s: not mounted from a Secret", field, f)
			continue
		}
		s, ok := m.secrets[v.Secret.SecretName]
		if !ok {
			t.Errorf("%s: Secret %s is not in the manifests", field, v.Secret.SecretName)
			continue
		}
		key := path.Base(f)
		if len(v.Secret.Items) > 0 {
			key = ""
			for _, it := range v.Secret.Items {
				if it.Path == path.Base(f) {
					key = it.Key
				}
			}
		}
		if _, ok := s.StringData[key]; !ok {
			t.Errorf("%s %s: Secret %s provides no such file", field, f, s.Name)
		}
		if v.Secret.DefaultMode == nil || *v.Secret.DefaultMode&0o007 != 0 {
			t.Errorf("Secret volume %s: defaultMode must give others no access", vm.Name)
		}
	}

	// The Secret holds placeholders only: real keys never go into the repository.
	for name, s := range m.secrets {
		if len(s.Data) > 0 {
			t.Errorf("Secret %s: use stringData placeholders, not data", name)
		}
		for k, v := range s.StringData {
			if !strings.Contains(v, placeholder) {
				t.Errorf("Secret %s key %s: value is not a %s placeholder; never commit real secrets", name, k, placeholder)
			}
		}
	}

	// Upstreams and the aliases the containerd config relies on.
	for _, name := range []string{"docker.io", "ghcr.io", "quay.io"} {
		if !slices.ContainsFunc(cfg.Upstreams, func(u config.Upstream) bool { return u.Name == name }) {
			t.Errorf("config: no upstream %s", name)
		}
	}
	if cfg.Signing.Reference != airlockAddr {
		t.Errorf("signing.reference = %q, want the address nodes pull through, %q", cfg.Signing.Reference, airlockAddr)
	}

	// Services: the registry on 5000; the admin API never on the same Service.
	reg, ok := m.services["airlock"]
	if !ok {
		t.Fatal("no Service airlock")
	}
	var regPorts []string
	for _, p := range reg.Spec.Ports {
		regPorts = append(regPorts, resolve(p.TargetPort))
		if p.Port == 5000 && resolve(p.TargetPort) != port(t, cfg.Listen) {
			t.Errorf("Service airlock port 5000 targets %s, not the registry port", resolve(p.TargetPort))
		}
	}
	if !slices.Contains(regPorts, port(t, cfg.Listen)) {
		t.Errorf("Service airlock does not publish the registry port %s", port(t, cfg.Listen))
	}
	for name, s := range m.services {
		if s.Spec.Type != "" && s.Spec.Type != corev1.ServiceTypeClusterIP {
			t.Errorf("Service %s: type %s, want ClusterIP", name, s.Spec.Type)
		}
		for _, p := range s.Spec.Ports {
			if resolve(p.TargetPort) == port(t, cfg.Admin.Listen) && name == "airlock" {
				t.Errorf("Service airlock publishes the admin port; keep it on its own Service")
			}
		}
	}
}

// TestKustomization checks that kustomization.yaml lists every manifest and
// that `kubectl kustomize` builds it, when kubectl is installed.
func TestKustomization(t *testing.T) {
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Namespace  string   `json:"namespace"`
		Resources  []string `json:"resources"`
	}
	b, err := os.ReadFile("kubernetes/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" || k.Namespace != namespace {
		t.Errorf("kustomization.yaml: %s %s namespace %q", k.APIVersion, k.Kind, k.Namespace)
	}
	m := loadManifests(t)
	if got, want := slices.Sorted(slices.Values(k.Resources)), slices.Sorted(slices.Values(m.files)); !slices.Equal(got, want) {
		t.Errorf("kustomization resources %v, want every manifest %v", got, want)
	}
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not installed: skipping `kubectl kustomize`")
	}
	out, err := exec.Command(kubectl, "kustomize", "kubernetes").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize: %v\n%s", err, out)
	}
	docs := splitDocs(out)
	want := len(m.namespaces) + 1 + len(m.services) + len(m.configMaps) + len(m.secrets)
	if len(docs) != want {
		t.Errorf("kubectl kustomize built %d objects, want %d", len(docs), want)
	}
}

// hostsFile is containerd's hosts.toml schema (the fields containerd 1.6
// and 2.x both accept), decoded strictly.
type hostsFile struct {
	Server       string               `toml:"server"`
	Capabilities []string             `toml:"capabilities"`
	OverridePath bool                 `toml:"override_path"`
	Host         map[string]hostEntry `toml:"host"`
}

type hostEntry struct {
	Capabilities []string `toml:"capabilities"`
	OverridePath bool     `toml:"override_path"`
}

const certsDir = "containerd/certs.d"

func TestContainerdHostsFiles(t *testing.T) {
	cfg := loadAirlockConfig(t, loadManifests(t).configMaps["airlock-config"])
	alias := map[string]string{}
	for _, u := range cfg.Upstreams {
		alias[u.Name] = u.Alias
	}
	dirs := map[string]string{"docker.io": "", "ghcr.io": "ghcr", "quay.io": "quay", "_default": ""}
	entries, err := os.ReadDir(certsDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if _, ok := dirs[e.Name()]; !ok {
			t.Errorf("unexpected %s/%s", certsDir, e.Name())
		}
	}
	pullResolve := func(where string, caps []string) {
		t.Helper()
		if got := slices.Sorted(slices.Values(caps)); !slices.Equal(got, []string{"pull", "resolve"}) {
			t.Errorf("%s: capabilities %v, want [pull resolve] (no push; 1.6 knows no referrers)", where, caps)
		}
	}
	for dir, wantAlias := range dirs {
		f := filepath.Join(certsDir, dir, "hosts.toml")
		b, err := os.ReadFile(f)
		if err != nil {
			t.Error(err)
			continue
		}
		var h hostsFile
		dec := toml.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&h); err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		su, err := url.Parse(h.Server)
		if err != nil || su.Scheme != "http" || su.Host != airlockAddr || strings.Trim(su.Path, "/") != "" {
			t.Errorf("%s: server = %q, want http://%s: containerd falls back to `server`, so it must be Airlock", f, h.Server, airlockAddr)
		}
		pullResolve(f+" (server)", h.Capabilities)
		if len(h.Host) != 1 {
			t.Errorf("%s: %d [host] entries, want 1", f, len(h.Host))
		}
		if dir != "_default" && wantAlias != alias[dir] {
			t.Errorf("%s: upstream %s has alias %q in airlock.yaml, want %q", f, dir, alias[dir], wantAlias)
		}
		for hu, he := range h.Host {
			u, err := url.Parse(hu)
			if err != nil || u.Scheme != "http" || u.Host != airlockAddr {
				t.Errorf("%s: host %q is not Airlock (http://%s)", f, hu, airlockAddr)
				continue
			}
			pullResolve(f+" host "+hu, he.Capabilities)
			if wantAlias != "" {
				if u.Path != "/v2/"+wantAlias || !he.OverridePath {
					t.Errorf("%s: host %q override_path=%v, want /v2/%s with override_path = true", f, hu, he.OverridePath, wantAlias)
				}
			} else if u.Path != "" || he.OverridePath {
				t.Errorf("%s: host %q: want no path and no override_path", f, hu)
			}
		}
	}

	// containerd's own parser, as a node uses it: every endpoint of every
	// registry (including ones without a directory, through _default) is Airlock.
	hosts := dockerconfig.ConfigureHosts(context.Background(), dockerconfig.HostOptions{HostDir: dockerconfig.HostDirFromRoot(certsDir)})
	for _, reg := range []string{"docker.io", "ghcr.io", "quay.io", "registry.k8s.io", "gcr.io", "example.com:5000"} {
		rh, err := hosts(reg)
		if err != nil {
			t.Errorf("containerd hosts(%s): %v", reg, err)
			continue
		}
		if len(rh) != 2 {
			t.Errorf("containerd hosts(%s): %d endpoints, want 2 (mirror, server)", reg, len(rh))
		}
		for _, h := range rh {
			if h.Host != airlockAddr || h.Scheme != "http" {
				t.Errorf("containerd hosts(%s): endpoint %s://%s%s is not Airlock", reg, h.Scheme, h.Host, h.Path)
			}
			if h.Capabilities != docker.HostCapabilityPull|docker.HostCapabilityResolve {
				t.Errorf("containerd hosts(%s): endpoint %s%s capabilities %b, want pull|resolve", reg, h.Host, h.Path, h.Capabilities)
			}
		}
	}
}

// TestContainerdRoutesThroughAirlock runs containerd's resolver with the node
// config against a stand-in for Airlock that refuses everything (as it does
// for quarantined images), and routes every request it receives with
// Airlock's router and the ConfigMap's upstreams.
func TestContainerdRoutesThroughAirlock(t *testing.T) {
	cfg := loadAirlockConfig(t, loadManifests(t).configMaps["airlock-config"])
	router := route.NewRouter(cfg.Upstreams)

	type seen struct{ method, path, ns string }
	var mu sync.Mutex
	var reqs []seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		reqs = append(reqs, seen{r.Method, r.URL.Path, r.URL.Query().Get("ns")})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"errors":[{"code":"DENIED","message":"in quarantine (scanning); retry later"}]}`))
	}))
	defer srv.Close()

	// The node config with airlock.internal:5000 pointed at the stand-in.
	root := t.TempDir()
	entries, err := os.ReadDir(certsDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(certsDir, e.Name(), "hosts.toml"))
		if err != nil {
			t.Fatal(err)
		}
		b = bytes.ReplaceAll(b, []byte(airlockAddr), []byte(srv.Listener.Addr().String()))
		if err := os.MkdirAll(filepath.Join(root, e.Name()), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, e.Name(), "hosts.toml"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Any request to another host (a real upstream) fails the test and is
	// never sent.
	guard := func(c *http.Client) error {
		next := c.Transport
		c.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.URL.Host != srv.Listener.Addr().String() {
				t.Errorf("containerd bypassed Airlock: %s %s", r.Method, r.URL)
				return nil, errors.New("bypass refused by the test")
			}
			return next.RoundTrip(r)
		})
		return nil
	}
	resolver := docker.NewResolver(docker.ResolverOptions{
		Hosts: dockerconfig.ConfigureHosts(context.Background(), dockerconfig.HostOptions{HostDir: dockerconfig.HostDirFromRoot(root), UpdateClient: guard}),
	})

	for _, tc := range []struct {
		ref  string
		want route.Route // zero: Airlock has no such upstream
	}{
		{"docker.io/library/alpine:3.20", route.Route{Upstream: "docker.io", Repository: "library/alpine"}},
		{"ghcr.io/myorg/app:1.0", route.Route{Upstream: "ghcr.io", Repository: "myorg/app"}},
		{"quay.io/prometheus/node-exporter:v1.8.0", route.Route{Upstream: "quay.io", Repository: "prometheus/node-exporter"}},
		{"registry.k8s.io/pause:3.10", route.Route{Upstream: "registry.k8s.io", Repository: "pause"}},
		{"gcr.io/distroless/static:latest", route.Route{}},
	} {
		mu.Lock()
		reqs = nil
		mu.Unlock()
		_, _, err := resolver.Resolve(context.Background(), tc.ref)
		if err == nil {
			t.Errorf("%s: resolved although Airlock refused", tc.ref)
		}
		mu.Lock()
		got := reqs
		mu.Unlock()
		if len(got) == 0 {
			t.Errorf("%s: containerd sent nothing to Airlock", tc.ref)
			continue
		}
		host := strings.SplitN(tc.ref, "/", 2)[0]
		for _, r := range got {
			name, ok := strings.CutPrefix(r.path, "/v2/")
			if i := strings.LastIndex(name, "/manifests/"); ok && i > 0 {
				name = name[:i]
			} else {
				t.Errorf("%s: unexpected request %s %s", tc.ref, r.method, r.path)
				continue
			}
			if r.ns != host {
				t.Errorf("%s: %s %s sent ns=%q, want %q", tc.ref, r.method, r.path, r.ns, host)
			}
			routed, err := router.Route(name, r.ns)
			switch {
			case tc.want == (route.Route{}):
				if !errors.Is(err, route.ErrUnknownUpstream) {
					t.Errorf("%s: %s?ns=%s routed to %+v (%v), want unknown upstream", tc.ref, r.path, r.ns, routed, err)
				}
			case err != nil || routed != tc.want:
				t.Errorf("%s: %s?ns=%s routed to %+v (%v), want %+v", tc.ref, r.path, r.ns, routed, err, tc.want)
			}
		}
		if host == "ghcr.io" || host == "quay.io" {
			prefix := "/v2/" + map[string]string{"ghcr.io": "ghcr", "quay.io": "quay"}[host] + "/"
			if !slices.ContainsFunc(got, func(r seen) bool { return strings.HasPrefix(r.path, prefix) }) {
				t.Errorf("%s: no request used the %s prefix: %v", tc.ref, prefix, got)
			}
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// unit is a systemd unit file: section -> key -> values in order.
type unit map[string]map[string][]string

func parseUnit(t *testing.T, file string) unit {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	u := unit{}
	section := ""
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" || strings.HasSuffix(line, "\\") {
				t.Fatalf("%s:%d: not a key=value line in a section: %q", file, i+1, line)
			}
			u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return u
}

func TestSystemdUnit(t *testing.T) {
	const file = "systemd/airlock.service"
	u := parseUnit(t, file)
	want := map[string]map[string]string{
		"Unit": {"After": "network-online.target", "Wants": "network-online.target"},
		"Service": {
			"User":                    "airlock",
			"Group":                   "airlock",
			"ExecStart":               "/usr/local/bin/airlock serve --config /etc/airlock/airlock.yaml",
			"EnvironmentFile":         "/etc/airlock/airlock.env",
			"Restart":                 "on-failure",
			"StateDirectory":          "airlock",
			"ReadWritePaths":          "/var/lib/airlock",
			"NoNewPrivileges":         "true",
			"ProtectSystem":           "strict",
			"ProtectHome":             "true",
			"PrivateTmp":              "true",
			"PrivateDevices":          "true",
			"CapabilityBoundingSet":   "",
			"RestrictSUIDSGID":        "true",
			"SystemCallArchitectures": "native",
		},
		"Install": {"WantedBy": "multi-user.target"},
	}
	for section, keys := range want {
		if u[section] == nil {
			t.Errorf("%s: no [%s] section", file, section)
			continue
		}
		for k, v := range keys {
			got, ok := u[section][k]
			if !ok || got[len(got)-1] != v {
				t.Errorf("%s: [%s] %s = %q, want %q", file, section, k, got, v)
			}
		}
	}
	// The scanner's temp dir must be inside what the sandbox leaves writable.
	for _, env := range u["Service"]["Environment"] {
		if tmp, ok := strings.CutPrefix(env, "TMPDIR="); ok && tmp != "/tmp" && tmp != "/var/tmp" {
			t.Errorf("%s: TMPDIR=%s is not a PrivateTmp directory", file, tmp)
		}
	}

	// The example environment file names both variables, with placeholders.
	envs := parseEnvFile(t, "systemd/airlock.env.example")
	for _, k := range []string{"AIRLOCK_ADMIN_TOKEN", "AIRLOCK_KEY_PASSWORD"} {
		if v, ok := envs[k]; !ok || !strings.Contains(v, placeholder) {
			t.Errorf("airlock.env.example: %s missing or not a %s placeholder", k, placeholder)
		}
	}

	// systemd's own checker, when installed. ExecStart must name an existing
	// executable: substitute this test binary for /usr/local/bin/airlock.
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(t.TempDir(), "airlock.service")
	if err := os.WriteFile(tmp, bytes.ReplaceAll(b, []byte("/usr/local/bin/airlock"), []byte(self)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", "--man=no", tmp).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func parseEnvFile(t *testing.T, file string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: %q is not KEY=value", file, line)
		}
		env[k] = v
	}
	return env
}
