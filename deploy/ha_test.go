package deploy_test

import (
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/airlockproxy/airlock/config"
)

const haDir = "kubernetes/ha"

// newHAManifests returns an empty manifests for the HA install,
// deploy/kubernetes/ha: a Deployment and a PodDisruptionBudget, and no
// StatefulSet (that is the single-node install's).
func newHAManifests() *manifests {
	return newManifests("the HA install (deploy/"+haDir+")",
		kindNamespace, kindDeployment, kindPDB, kindService, kindConfigMap, kindSecret)
}

// haKustomization is deploy/kubernetes/ha/kustomization.yaml, decoded
// strictly: only plain resources (no patches or generators), so the files
// it lists are exactly what `kubectl apply -k` applies.
type haKustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace"`
	Resources  []string `json:"resources"`
}

func loadHAKustomization(t *testing.T) haKustomization {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(haDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k haKustomization
	if err := yaml.UnmarshalStrict(b, &k); err != nil {
		t.Fatalf("ha/kustomization.yaml: %v", err)
	}
	return k
}

// loadHAManifests decodes the files ha/kustomization.yaml lists.
func loadHAManifests(t *testing.T) *manifests {
	t.Helper()
	m := newHAManifests()
	for _, r := range loadHAKustomization(t).Resources {
		f := filepath.Join(haDir, r)
		if filepath.Dir(f) != haDir {
			t.Fatalf("ha/kustomization.yaml: resource %q is not a file of %s (kustomize refuses files outside the kustomization's directory)", r, haDir)
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m.files = append(m.files, r)
		m.decode(t, f, b)
	}
	m.complete(t, haDir)
	return m
}

// haAirlockYAML is the part of the ConfigMap's airlock.yaml the manifest
// checks need, decoded without the config package, so that these checks do
// not depend on which keys the loader knows (TestHAConfig loads it with the
// real loader).
type haAirlockYAML struct {
	Listen  string `json:"listen"`
	DataDir string `json:"data_dir"`
	State   struct {
		Driver     string `json:"driver"`
		DSN        string `json:"dsn"`
		FailStatic string `json:"fail_static"`
	} `json:"state"`
	Storage struct {
		Driver     string         `json:"driver"`
		Parameters map[string]any `json:"parameters"`
		Redirect   *bool          `json:"redirect"`
	} `json:"storage"`
	Admin struct {
		Listen string `json:"listen"`
		Token  string `json:"token"`
	} `json:"admin"`
	Gate struct {
		Lease string `json:"lease"`
	} `json:"gate"`
	Scan struct {
		DBDir string `json:"db_dir"`
	} `json:"scan"`
	Signing struct {
		Key          string `json:"key"`
		PasswordFile string `json:"password_file"`
	} `json:"signing"`
}

// haPodEnv returns the environment the Deployment's container gets: plain
// values, and values from the manifests' Secrets.
func haPodEnv(t *testing.T, m *manifests, c corev1.Container) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			s, ok := m.secrets[ref.Name]
			if !ok {
				t.Errorf("env %s: Secret %s is not in the manifests", e.Name, ref.Name)
				continue
			}
			v, ok := s.StringData[ref.Key]
			if !ok {
				t.Errorf("env %s: Secret %s has no key %s", e.Name, ref.Name, ref.Key)
				continue
			}
			env[e.Name] = v
		default:
			t.Errorf("env %s: only values and secretKeyRefs are expected", e.Name)
		}
	}
	return env
}

// TestHAKustomization: ha/kustomization.yaml lists every manifest of the
// directory, and `kubectl kustomize` (when kubectl is installed) builds
// exactly the objects the files hold.
func TestHAKustomization(t *testing.T) {
	k := loadHAKustomization(t)
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" || k.Namespace != namespace {
		t.Errorf("ha/kustomization.yaml: %s %s namespace %q", k.APIVersion, k.Kind, k.Namespace)
	}
	files, err := filepath.Glob(filepath.Join(haDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, f := range files {
		if filepath.Base(f) != "kustomization.yaml" {
			want = append(want, filepath.Base(f))
		}
	}
	if got := slices.Sorted(slices.Values(k.Resources)); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Errorf("ha/kustomization.yaml resources %v, want every manifest of %s %v", got, haDir, want)
	}
	m := loadHAManifests(t)

	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not installed: skipping `kubectl kustomize`")
	}
	out, err := exec.Command(kubectl, "kustomize", haDir).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", haDir, err, out)
	}
	built := newHAManifests()
	built.decode(t, "kubectl kustomize "+haDir, out)
	built.complete(t, "kubectl kustomize "+haDir)
	same := func(what string, got, want any) {
		t.Helper()
		if !equality.Semantic.DeepEqual(got, want) {
			t.Errorf("kubectl kustomize: %s differs from the manifest files", what)
		}
	}
	same("Namespaces", built.namespaces, m.namespaces)
	same("Deployment", built.deployment, m.deployment)
	same("PodDisruptionBudget", built.pdb, m.pdb)
	same("Services", built.services, m.services)
	same("ConfigMaps", built.configMaps, m.configMaps)
	same("Secrets", built.secrets, m.secrets)
}

// TestHAManifests checks the HA install: three replicas of a Deployment
// spread over nodes, a PodDisruptionBudget, rolling updates that never
// lower capacity, the base's pod security, probes and Services, and every
// secret from the Secret.
func TestHAManifests(t *testing.T) {
	m := loadHAManifests(t)
	base := loadManifests(t)

	// Namespace and Services: the base's objects (the overlay cannot refer
	// to the base's files, so it holds copies).
	if !equality.Semantic.DeepEqual(m.namespaces, base.namespaces) {
		t.Error("ha/namespace.yaml is not the base's Namespace (deploy/kubernetes/namespace.yaml)")
	}
	if !equality.Semantic.DeepEqual(m.services, base.services) {
		t.Error("ha/service.yaml is not the base's Services (deploy/kubernetes/service.yaml)")
	}
	// The same names as the base's ConfigMap and Secret: applying the HA
	// install over a single-node one replaces them rather than leaving a
	// second, unused copy of the secrets.
	for name := range base.configMaps {
		if _, ok := m.configMaps[name]; !ok {
			t.Errorf("no ConfigMap %s (the base's name)", name)
		}
	}
	for name, s := range base.secrets {
		hs, ok := m.secrets[name]
		if !ok {
			t.Errorf("no Secret %s (the base's name)", name)
			continue
		}
		for k := range s.StringData {
			if _, ok := hs.StringData[k]; !ok {
				t.Errorf("Secret %s: no key %s, which the base's Secret has", name, k)
			}
		}
	}

	d := m.deployment
	type obj struct{ kind, name, ns string }
	objs := []obj{{"Deployment", d.Name, d.Namespace}, {"PodDisruptionBudget", m.pdb.Name, m.pdb.Namespace}}
	for _, c := range m.configMaps {
		objs = append(objs, obj{"ConfigMap", c.Name, c.Namespace})
	}
	for _, s := range m.secrets {
		objs = append(objs, obj{"Secret", s.Name, s.Namespace})
	}
	for _, o := range objs {
		if o.ns != namespace {
			t.Errorf("%s %s: namespace %q, want %q", o.kind, o.name, o.ns, namespace)
		}
	}

	// Three replicas; a rollout adds one before it removes one.
	const replicas = 3
	if d.Spec.Replicas == nil || *d.Spec.Replicas != replicas {
		got := "unset (1)"
		if d.Spec.Replicas != nil {
			got = strconv.Itoa(int(*d.Spec.Replicas))
		}
		t.Errorf("Deployment replicas = %s, want %d", got, replicas)
	}
	ru := d.Spec.Strategy.RollingUpdate
	if d.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType || ru == nil ||
		ru.MaxUnavailable == nil || *ru.MaxUnavailable != intstr.FromInt32(0) ||
		ru.MaxSurge == nil || *ru.MaxSurge != intstr.FromInt32(1) {
		t.Errorf("Deployment strategy %+v, want RollingUpdate with maxUnavailable 0, maxSurge 1", d.Spec.Strategy)
	}
	podLabels := d.Spec.Template.Labels
	selects := func(what string, sel map[string]string) {
		t.Helper()
		if len(sel) == 0 {
			t.Errorf("%s: empty selector", what)
		}
		for k, v := range sel {
			if podLabels[k] != v {
				t.Errorf("%s: selector %s=%s does not match the pod labels %v", what, k, v, podLabels)
			}
		}
	}
	if d.Spec.Selector == nil || len(d.Spec.Selector.MatchExpressions) > 0 {
		t.Fatal("Deployment: want a matchLabels selector")
	}
	selects("Deployment", d.Spec.Selector.MatchLabels)
	for name, s := range m.services {
		selects("Service "+name, s.Spec.Selector)
	}

	// The PodDisruptionBudget selects the replicas and allows draining one
	// node at a time, never all of them.
	pdb := m.pdb
	if pdb.Spec.Selector == nil || len(pdb.Spec.Selector.MatchExpressions) > 0 {
		t.Fatal("PodDisruptionBudget: want a matchLabels selector")
	}
	selects("PodDisruptionBudget", pdb.Spec.Selector.MatchLabels)
	if !equality.Semantic.DeepEqual(pdb.Spec.Selector.MatchLabels, d.Spec.Selector.MatchLabels) {
		t.Errorf("PodDisruptionBudget selector %v is not the Deployment's %v", pdb.Spec.Selector.MatchLabels, d.Spec.Selector.MatchLabels)
	}
	var disruptions int
	switch {
	case pdb.Spec.MaxUnavailable != nil && pdb.Spec.MinAvailable == nil && pdb.Spec.MaxUnavailable.Type == intstr.Int:
		disruptions = pdb.Spec.MaxUnavailable.IntValue()
	case pdb.Spec.MinAvailable != nil && pdb.Spec.MaxUnavailable == nil && pdb.Spec.MinAvailable.Type == intstr.Int:
		disruptions = replicas - pdb.Spec.MinAvailable.IntValue()
	default:
		t.Errorf("PodDisruptionBudget: want an integer maxUnavailable or minAvailable (one of them)")
	}
	if disruptions < 1 || disruptions >= replicas {
		t.Errorf("PodDisruptionBudget allows %d of %d replicas down, want 1..%d (0 blocks every node drain)", disruptions, replicas, replicas-1)
	}

	pod := d.Spec.Template.Spec
	// Spread over nodes, preferred only: a one-node cluster still schedules
	// all replicas (and the surge pod of a rollout).
	aff := pod.Affinity
	if aff == nil || aff.PodAntiAffinity == nil {
		t.Fatal("pod: no podAntiAffinity")
	}
	if len(aff.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) > 0 {
		t.Error("podAntiAffinity: required terms leave replicas Pending on small clusters; use preferred")
	}
	byHost := false
	for _, w := range aff.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
		term := w.PodAffinityTerm
		if term.TopologyKey != corev1.LabelHostname || term.LabelSelector == nil || w.Weight <= 0 {
			continue
		}
		ok := len(term.LabelSelector.MatchLabels) > 0 && len(term.LabelSelector.MatchExpressions) == 0
		for k, v := range term.LabelSelector.MatchLabels {
			ok = ok && podLabels[k] == v
		}
		byHost = byHost || ok
	}
	if !byHost {
		t.Errorf("podAntiAffinity: no preferred term on %s selecting the replicas' labels", corev1.LabelHostname)
	}

	// Pod security and the container's settings are the base's.
	bpod := base.statefulSet.Spec.Template.Spec
	if !equality.Semantic.DeepEqual(pod.SecurityContext, bpod.SecurityContext) {
		t.Errorf("pod securityContext %+v differs from the base's %+v", pod.SecurityContext, bpod.SecurityContext)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("pod: automountServiceAccountToken should be false (Airlock does not talk to the API server)")
	}
	if len(pod.Containers) != 1 || len(bpod.Containers) != 1 {
		t.Fatalf("pod has %d containers, want 1", len(pod.Containers))
	}
	c, bc := pod.Containers[0], bpod.Containers[0]
	if !equality.Semantic.DeepEqual(c.SecurityContext, bc.SecurityContext) {
		t.Errorf("container securityContext %+v differs from the base's %+v", c.SecurityContext, bc.SecurityContext)
	}
	if c.Image != bc.Image || !slices.Equal(c.Args, bc.Args) || !equality.Semantic.DeepEqual(c.Ports, bc.Ports) {
		t.Errorf("container image/args/ports differ from the base's: %s %q %v", c.Image, c.Args, c.Ports)
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage} {
		if _, ok := c.Resources.Requests[r]; !ok {
			t.Errorf("container: no %s request", r)
		}
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceMemory, corev1.ResourceEphemeralStorage} {
		if _, ok := c.Resources.Limits[r]; !ok {
			t.Errorf("container: no %s limit", r)
		}
	}

	// The config file is the ConfigMap's airlock.yaml.
	if len(c.Args) != 2 || c.Args[0] != "--config" {
		t.Fatalf("container args %q, want [--config <file>]", c.Args)
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	mounts := map[string]corev1.VolumeMount{} // by mount path
	for _, vm := range c.VolumeMounts {
		if _, ok := volumes[vm.Name]; !ok {
			t.Errorf("volumeMount %s: no volume of that name", vm.Name)
		}
		mounts[vm.MountPath] = vm
	}
	cfgMount, ok := mounts[path.Dir(c.Args[1])]
	if !ok || volumes[cfgMount.Name].ConfigMap == nil {
		t.Fatalf("--config %s: its directory is not a ConfigMap mount", c.Args[1])
	}
	cm, ok := m.configMaps[volumes[cfgMount.Name].ConfigMap.Name]
	if !ok {
		t.Fatalf("ConfigMap %q is not in the manifests", volumes[cfgMount.Name].ConfigMap.Name)
	}
	y, ok := cm.Data[path.Base(c.Args[1])]
	if !ok {
		t.Fatalf("ConfigMap %s has no key %s", cm.Name, path.Base(c.Args[1]))
	}
	var cfg haAirlockYAML
	if err := yaml.Unmarshal([]byte(y), &cfg); err != nil {
		t.Fatalf("ConfigMap %s %s: %v", cm.Name, path.Base(c.Args[1]), err)
	}

	// Shared state and content; nothing on the replica that must survive it.
	if cfg.State.Driver != "postgres" {
		t.Errorf("state.driver %q, want postgres: replicas must share their state", cfg.State.Driver)
	}
	if cfg.Storage.Driver != "s3" {
		t.Errorf("storage.driver %q, want s3: replicas must share their content", cfg.Storage.Driver)
	}
	for _, k := range []string{"bucket", "rootdirectory"} {
		if s, _ := cfg.Storage.Parameters[k].(string); s == "" {
			t.Errorf("storage.parameters.%s: not set", k)
		}
	}
	if lease, err := time.ParseDuration(cfg.Gate.Lease); err != nil || lease <= 0 {
		t.Errorf("gate.lease %q: want a positive duration, so a killed replica's job is taken over", cfg.Gate.Lease)
	} else if grace := pod.TerminationGracePeriodSeconds; grace == nil || time.Duration(*grace)*time.Second < 15*time.Second {
		t.Errorf("terminationGracePeriodSeconds %v: serve drains for up to 15s", grace)
	}
	dm, ok := mounts[cfg.DataDir]
	if !ok || volumes[dm.Name].EmptyDir == nil || dm.ReadOnly {
		t.Errorf("data_dir %s: want a writable emptyDir mount (caches only)", cfg.DataDir)
	}
	if cfg.Scan.DBDir != "" && !strings.HasPrefix(cfg.Scan.DBDir, cfg.DataDir+"/") {
		t.Errorf("scan.db_dir %s is not on the data_dir volume %s", cfg.Scan.DBDir, cfg.DataDir)
	}
	tmpDir := "/tmp"
	for _, e := range c.Env {
		if e.Name == "TMPDIR" {
			tmpDir = e.Value
		}
	}
	if tm, ok := mounts[tmpDir]; !ok || volumes[tm.Name].EmptyDir == nil || tm.ReadOnly {
		t.Errorf("temp dir %s must be a writable emptyDir mount", tmpDir)
	}
	// The ephemeral-storage limit covers the emptyDirs, so the kubelet
	// enforces their sizeLimits before it evicts the pod for the total.
	var emptyDirs resource.Quantity
	for _, v := range pod.Volumes {
		if v.EmptyDir != nil {
			if v.EmptyDir.SizeLimit == nil {
				t.Errorf("emptyDir %s: no sizeLimit", v.Name)
				continue
			}
			emptyDirs.Add(*v.EmptyDir.SizeLimit)
		}
	}
	if lim, ok := c.Resources.Limits[corev1.ResourceEphemeralStorage]; ok && lim.Cmp(emptyDirs) < 0 {
		t.Errorf("ephemeral-storage limit %s is below the emptyDirs' sizeLimits (%s)", lim.String(), emptyDirs.String())
	}
	for p, vm := range mounts {
		if v := volumes[vm.Name]; (v.ConfigMap != nil || v.Secret != nil) && !vm.ReadOnly {
			t.Errorf("mount %s (%s) should be readOnly", p, vm.Name)
		}
	}

	// Probes: liveness on the registry's /healthz (it does not depend on
	// PostgreSQL, so a database outage does not restart every replica),
	// readiness on the admin listener's /readyz.
	checkProbes(t, c, cfg.Listen, cfg.Admin.Listen)
	resolve := portResolver(t, c)
	for _, s := range m.services {
		for _, p := range s.Spec.Ports {
			if r := resolve(p.TargetPort); r != port(t, cfg.Listen) && r != port(t, cfg.Admin.Listen) {
				t.Errorf("Service %s targets port %s, which Airlock does not listen on", s.Name, r)
			}
		}
	}

	// Secrets: only from the Secret, never in the ConfigMap.
	if cfg.Admin.Token != "" || cfg.State.DSN != "" {
		t.Error("the ConfigMap must hold neither admin.token nor state.dsn: they come from the Secret")
	}
	for _, k := range []string{"accesskey", "secretkey", "sessiontoken"} {
		if _, ok := cfg.Storage.Parameters[k]; ok {
			t.Errorf("storage.parameters.%s: S3 credentials come from the Secret (env), never the ConfigMap", k)
		}
	}
	fromSecret := map[string]*corev1.SecretKeySelector{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			fromSecret[e.Name] = e.ValueFrom.SecretKeyRef
		}
	}
	for _, name := range []string{"AIRLOCK_ADMIN_TOKEN", "AIRLOCK_STATE_DSN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
		if fromSecret[name] == nil {
			t.Errorf("env %s: not set from a Secret", name)
		}
	}
	env := haPodEnv(t, m, c) // every secretKeyRef names an existing key
	if dsn, err := url.Parse(env["AIRLOCK_STATE_DSN"]); err != nil || (dsn.Scheme != "postgres" && dsn.Scheme != "postgresql") || dsn.Host == "" {
		t.Errorf("the Secret's AIRLOCK_STATE_DSN is not a postgres:// URL (%v)", err)
	}
	used := map[string]map[string]bool{} // Secret -> keys the pod uses
	use := func(secret, key string) {
		if used[secret] == nil {
			used[secret] = map[string]bool{}
		}
		used[secret][key] = true
	}
	for _, ref := range fromSecret {
		use(ref.Name, ref.Key)
	}

	// The signing key and its password: files of the mounted Secret.
	if cfg.Signing.Key == "" || cfg.Signing.PasswordFile == "" {
		t.Error("signing: key and password_file should be set (from the Secret): every replica signs with the same key")
	}
	for field, f := range map[string]string{"signing.key": cfg.Signing.Key, "signing.password_file": cfg.Signing.PasswordFile} {
		if f == "" {
			continue
		}
		vm, ok := mounts[path.Dir(f)]
		if !ok || volumes[vm.Name].Secret == nil {
			t.Errorf("%s %s: not a file of a mounted Secret", field, f)
			continue
		}
		v := volumes[vm.Name].Secret
		s, ok := m.secrets[v.SecretName]
		if !ok {
			t.Errorf("%s: Secret %s is not in the manifests", field, v.SecretName)
			continue
		}
		key := path.Base(f)
		if len(v.Items) > 0 {
			key = ""
			for _, it := range v.Items {
				if it.Path == path.Base(f) {
					key = it.Key
				}
			}
		}
		if _, ok := s.StringData[key]; !ok {
			t.Errorf("%s %s: Secret %s provides no such file", field, f, s.Name)
		}
		use(s.Name, key)
		if v.DefaultMode == nil || *v.DefaultMode&0o007 != 0 {
			t.Errorf("Secret volume %s: defaultMode must give others no access", vm.Name)
		}
	}

	// Placeholders only, every one of them used by the pod.
	for name, s := range m.secrets {
		if len(s.Data) > 0 {
			t.Errorf("Secret %s: use stringData placeholders, not data", name)
		}
		for k, v := range s.StringData {
			if !strings.Contains(v, placeholder) {
				t.Errorf("Secret %s key %s: value is not a %s placeholder; never commit real secrets", name, k, placeholder)
			}
			if !used[name][k] {
				t.Errorf("Secret %s key %s: not used by the Deployment", name, k)
			}
		}
	}
}

// TestHAConfig loads the HA ConfigMap's airlock.yaml with Airlock's real
// config loader (strict keys, validation) in the environment the pod gets
// from the Secret. It needs the config keys of the HA work: state.driver,
// state.fail_static, gate.lease and storage.redirect.
func TestHAConfig(t *testing.T) {
	base := loadAirlockConfig(t, loadManifests(t).configMaps["airlock-config"])
	m := loadHAManifests(t)
	c := m.deployment.Spec.Template.Spec.Containers[0]
	y, ok := m.configMaps["airlock-config"].Data["airlock.yaml"]
	if !ok {
		t.Fatal("ConfigMap airlock-config has no airlock.yaml")
	}
	// Exactly the pod's environment for the variables it sets.
	for k, v := range haPodEnv(t, m, c) {
		t.Setenv(k, v)
	}
	p := filepath.Join(t.TempDir(), "airlock.yaml")
	if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p)
	if err != nil {
		t.Fatalf("the HA ConfigMap's airlock.yaml does not load: %v", err)
	}
	if cfg.Storage.Driver != "s3" {
		t.Errorf("storage.driver = %q after loading, want s3", cfg.Storage.Driver)
	}
	if cfg.Admin.Token == "" {
		t.Error("admin token empty after loading with AIRLOCK_ADMIN_TOKEN from the Secret: the admin API and /readyz would not run")
	}
	if cfg.DataDir != "/data" || cfg.Listen != ":5000" || cfg.Admin.Listen != ":5001" {
		t.Errorf("config: data_dir %q listen %q admin.listen %q, want /data :5000 :5001", cfg.DataDir, cfg.Listen, cfg.Admin.Listen)
	}
	if !strings.HasPrefix(cfg.ScanDBDir(), cfg.DataDir+"/") {
		t.Errorf("scan.db_dir %s is not under data_dir %s", cfg.ScanDBDir(), cfg.DataDir)
	}
	if !cfg.Signing.Enabled() || cfg.Signing.Reference != airlockAddr {
		t.Errorf("signing: enabled=%v reference %q, want enabled with %q", cfg.Signing.Enabled(), cfg.Signing.Reference, airlockAddr)
	}
	// The upstreams and aliases the node config (deploy/containerd) relies
	// on are the single-node install's.
	if !equality.Semantic.DeepEqual(cfg.Upstreams, base.Upstreams) {
		t.Errorf("upstreams differ from the single-node ConfigMap's, which deploy/containerd is tested against")
	}
}
