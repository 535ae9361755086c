package deploy_test

import (
	"bufio"
	"bytes"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// The object kinds the manifests may hold, as "apiVersion Kind".
const (
	kindNamespace   = "v1 Namespace"
	kindStatefulSet = "apps/v1 StatefulSet"
	kindDeployment  = "apps/v1 Deployment"
	kindPDB         = "policy/v1 PodDisruptionBudget"
	kindService     = "v1 Service"
	kindConfigMap   = "v1 ConfigMap"
	kindSecret      = "v1 Secret"
)

// manifests holds every Kubernetes object of one install (deploy/kubernetes
// or deploy/kubernetes/ha), decoded strictly into its API type.
type manifests struct {
	install string          // for failure messages: "the single-node install"
	kinds   []string        // the kinds the install holds, in order
	allowed map[string]bool // the same, as a set

	files       []string
	namespaces  []*corev1.Namespace
	statefulSet *appsv1.StatefulSet
	deployment  *appsv1.Deployment
	pdb         *policyv1.PodDisruptionBudget
	services    map[string]*corev1.Service
	configMaps  map[string]*corev1.ConfigMap
	secrets     map[string]*corev1.Secret
}

// newManifests returns an empty manifests for an install that holds exactly
// the given kinds: decode rejects any other kind, and complete requires at
// least one object of each.
func newManifests(install string, kinds ...string) *manifests {
	m := &manifests{
		install:    install,
		kinds:      kinds,
		allowed:    map[string]bool{},
		services:   map[string]*corev1.Service{},
		configMaps: map[string]*corev1.ConfigMap{},
		secrets:    map[string]*corev1.Secret{},
	}
	for _, k := range kinds {
		m.allowed[k] = true
	}
	return m
}

// decode decodes the objects of the multi-document YAML b (from file f)
// into m; UnmarshalStrict makes unknown or duplicate fields errors.
func (m *manifests) decode(t *testing.T, f string, b []byte) {
	t.Helper()
	for i, doc := range splitDocs(b) {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			t.Fatalf("%s doc %d: %v", f, i, err)
		}
		kind := tm.APIVersion + " " + tm.Kind
		if !m.allowed[kind] {
			// E.g. a Deployment in the single-node install, or a
			// StatefulSet in the HA one.
			t.Fatalf("%s doc %d: unexpected object %q %q: %s holds only %s",
				f, i, tm.APIVersion, tm.Kind, m.install, strings.Join(m.kinds, ", "))
		}
		strict := func(into any) {
			t.Helper()
			if err := yaml.UnmarshalStrict(doc, into); err != nil {
				t.Fatalf("%s doc %d (%s): %v", f, i, tm.Kind, err)
			}
		}
		switch kind {
		case kindNamespace:
			var o corev1.Namespace
			strict(&o)
			m.namespaces = append(m.namespaces, &o)
		case kindStatefulSet:
			var o appsv1.StatefulSet
			strict(&o)
			if m.statefulSet != nil {
				t.Fatalf("%s: a second StatefulSet", f)
			}
			m.statefulSet = &o
		case kindDeployment:
			var o appsv1.Deployment
			strict(&o)
			if m.deployment != nil {
				t.Fatalf("%s: a second Deployment", f)
			}
			m.deployment = &o
		case kindPDB:
			var o policyv1.PodDisruptionBudget
			strict(&o)
			if m.pdb != nil {
				t.Fatalf("%s: a second PodDisruptionBudget", f)
			}
			m.pdb = &o
		case kindService:
			var o corev1.Service
			strict(&o)
			m.services[o.Name] = &o
		case kindConfigMap:
			var o corev1.ConfigMap
			strict(&o)
			m.configMaps[o.Name] = &o
		case kindSecret:
			var o corev1.Secret
			strict(&o)
			m.secrets[o.Name] = &o
		default:
			t.Fatalf("%s doc %d: %s is allowed but not decoded", f, i, kind)
		}
	}
}

// complete fails unless m holds at least one object of every kind of its
// install; where names what was decoded.
func (m *manifests) complete(t *testing.T, where string) {
	t.Helper()
	count := map[string]int{
		kindNamespace:   len(m.namespaces),
		kindStatefulSet: btoi(m.statefulSet != nil),
		kindDeployment:  btoi(m.deployment != nil),
		kindPDB:         btoi(m.pdb != nil),
		kindService:     len(m.services),
		kindConfigMap:   len(m.configMaps),
		kindSecret:      len(m.secrets),
	}
	var missing, have []string
	for _, k := range m.kinds {
		if count[k] == 0 {
			missing = append(missing, k)
		}
		have = append(have, k+"="+strconv.Itoa(count[k]))
	}
	if len(missing) > 0 {
		t.Fatalf("%s: missing objects: %s (have %s)", where, strings.Join(missing, ", "), strings.Join(have, " "))
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// splitDocs splits a multi-document YAML file on "---" lines.
func splitDocs(b []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	flush := func() {
		if strings.TrimSpace(stripComments(cur.String())) != "" {
			docs = append(docs, bytes.Clone(cur.Bytes()))
		}
		cur.Reset()
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if strings.TrimRight(sc.Text(), " \t") == "---" {
			flush()
			continue
		}
		cur.WriteString(sc.Text())
		cur.WriteByte('\n')
	}
	flush()
	return docs
}

func stripComments(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// portResolver returns a function that maps a (named) port of container
// c to its number.
func portResolver(t *testing.T, c corev1.Container) func(intstr.IntOrString) string {
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	return func(p intstr.IntOrString) string {
		if p.Type == intstr.String {
			if n, ok := ports[p.StrVal]; ok {
				return strconv.Itoa(int(n))
			}
			t.Errorf("port name %q is not a container port", p.StrVal)
		}
		return p.String()
	}
}

// checkProbes checks a container's probes against the config: liveness
// (and startup, if any) on the registry's /healthz, which does not depend
// on the state database, so an outage does not restart every replica;
// readiness on the admin listener's /readyz.
func checkProbes(t *testing.T, c corev1.Container, listen, adminListen string) {
	t.Helper()
	resolve := portResolver(t, c)
	checkProbe := func(name string, pr *corev1.Probe, wantPath, wantPort string) {
		t.Helper()
		if pr == nil || pr.HTTPGet == nil {
			t.Errorf("%s probe: missing or not httpGet", name)
			return
		}
		if pr.HTTPGet.Path != wantPath || resolve(pr.HTTPGet.Port) != wantPort {
			t.Errorf("%s probe: %s on port %s, want %s on %s", name, pr.HTTPGet.Path, resolve(pr.HTTPGet.Port), wantPath, wantPort)
		}
	}
	checkProbe("liveness", c.LivenessProbe, "/healthz", port(t, listen))
	checkProbe("readiness", c.ReadinessProbe, "/readyz", port(t, adminListen))
	if c.StartupProbe != nil {
		checkProbe("startup", c.StartupProbe, "/healthz", port(t, listen))
	}
}
