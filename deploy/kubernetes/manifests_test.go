package kubernetes_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"flag"
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"

	"github.com/syncd/syncd/internal/config"
)

var update = flag.Bool("update", false, "rewrite prometheusrule.yaml from "+alertsFile)

const (
	// alertsFile is the Prometheus rule file prometheusrule.yaml mirrors.
	alertsFile = "../prometheus/alerts.yml"
	// ruleFile is the PrometheusRule manifest generated from alertsFile.
	ruleFile = "prometheusrule.yaml"
	// kustomizationFile lists the manifests of the base.
	kustomizationFile = "kustomization.yaml"
)

// notListed are manifests kept out of kustomization.yaml on purpose:
// secret.yaml holds placeholders, and applying it with the base would
// overwrite the real Secret.
var notListed = map[string]bool{"secret.yaml": true}

// doc is one YAML document of a manifest file.
type doc struct {
	file  string
	index int // 0-based position in the file
	data  []byte
	kind  string // "apiVersion kind", e.g. "apps/v1 Deployment"
}

func (d doc) String() string { return fmt.Sprintf("%s[%d] (%s)", d.file, d.index, d.kind) }

// docSep is a YAML document separator line.
var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

// manifestFiles returns the manifest files of the directory (every .yaml or
// .yml file but kustomization.yaml), sorted.
func manifestFiles(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range entries {
		name := e.Name()
		if e.Type().IsRegular() && (strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")) && name != kustomizationFile {
			files = append(files, name)
		}
	}
	if len(files) == 0 {
		t.Fatal("no manifest files")
	}
	return files
}

// documents splits every manifest file into its YAML documents, skipping
// empty ones (only comments or whitespace).
func documents(t *testing.T) []doc {
	t.Helper()
	var docs []doc
	for _, file := range manifestFiles(t) {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for i, part := range docSep.Split(string(raw), -1) {
			j, err := yaml.YAMLToJSON([]byte(part))
			if err != nil {
				t.Fatalf("%s[%d]: %v", file, i, err)
			}
			if string(bytes.TrimSpace(j)) == "null" {
				continue
			}
			var tm struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			if err := yaml.Unmarshal([]byte(part), &tm); err != nil {
				t.Fatalf("%s[%d]: %v", file, i, err)
			}
			docs = append(docs, doc{file: file, index: i, data: []byte(part), kind: tm.APIVersion + " " + tm.Kind})
			n++
		}
		if n == 0 {
			t.Errorf("%s: no documents", file)
		}
	}
	return docs
}

// Local types for the Prometheus Operator CRDs, with only the fields the
// manifests use: decoding rejects any other.
type (
	objectMeta struct {
		Name        string            `json:"name"`
		Namespace   string            `json:"namespace,omitempty"`
		Labels      map[string]string `json:"labels,omitempty"`
		Annotations map[string]string `json:"annotations,omitempty"`
	}
	serviceMonitor struct {
		APIVersion string     `json:"apiVersion"`
		Kind       string     `json:"kind"`
		Metadata   objectMeta `json:"metadata"`
		Spec       struct {
			JobLabel string `json:"jobLabel,omitempty"`
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
			Endpoints []struct {
				Port          string `json:"port"`
				Path          string `json:"path,omitempty"`
				Scheme        string `json:"scheme,omitempty"`
				Interval      string `json:"interval,omitempty"`
				ScrapeTimeout string `json:"scrapeTimeout,omitempty"`
				HonorLabels   bool   `json:"honorLabels,omitempty"`
			} `json:"endpoints"`
		} `json:"spec"`
	}
	prometheusRule struct {
		APIVersion string       `json:"apiVersion"`
		Kind       string       `json:"kind"`
		Metadata   objectMeta   `json:"metadata"`
		Spec       ruleFileSpec `json:"spec"`
	}
	// ruleFileSpec is a Prometheus rule file, which is also a
	// PrometheusRule's spec.
	ruleFileSpec struct {
		Groups []ruleGroup `json:"groups"`
	}
	ruleGroup struct {
		Name     string `json:"name"`
		Interval string `json:"interval,omitempty"`
		Rules    []rule `json:"rules"`
	}
	rule struct {
		Alert       string            `json:"alert,omitempty"`
		Record      string            `json:"record,omitempty"`
		Expr        string            `json:"expr"`
		For         string            `json:"for,omitempty"`
		Labels      map[string]string `json:"labels,omitempty"`
		Annotations map[string]string `json:"annotations,omitempty"`
	}
)

// objects are the decoded manifests, one of each kind.
type objects struct {
	deployment     *appsv1.Deployment
	configMap      *corev1.ConfigMap
	secret         *corev1.Secret
	service        *corev1.Service
	pdb            *policyv1.PodDisruptionBudget
	serviceMonitor *serviceMonitor
	prometheusRule *prometheusRule
	networkPolicy  *networkingv1.NetworkPolicy
}

// decodeStrict decodes one document into v, failing on unknown or
// duplicate fields.
func decodeStrict(data []byte, v any) error {
	return yaml.UnmarshalStrict(data, v)
}

// load decodes every document strictly into its type and returns the
// objects; each kind must appear exactly once.
func load(t *testing.T) objects {
	t.Helper()
	var o objects
	set := func(d doc, dst any, v any) {
		if err := decodeStrict(d.data, v); err != nil {
			t.Fatalf("%s: %v", d, err)
		}
		p := reflect.ValueOf(dst).Elem()
		if !p.IsNil() {
			t.Fatalf("%s: a second %s", d, d.kind)
		}
		p.Set(reflect.ValueOf(v))
	}
	for _, d := range documents(t) {
		switch d.kind {
		case "apps/v1 Deployment":
			set(d, &o.deployment, &appsv1.Deployment{})
		case "v1 ConfigMap":
			set(d, &o.configMap, &corev1.ConfigMap{})
		case "v1 Secret":
			set(d, &o.secret, &corev1.Secret{})
		case "v1 Service":
			set(d, &o.service, &corev1.Service{})
		case "policy/v1 PodDisruptionBudget":
			set(d, &o.pdb, &policyv1.PodDisruptionBudget{})
		case "monitoring.coreos.com/v1 ServiceMonitor":
			set(d, &o.serviceMonitor, &serviceMonitor{})
		case "monitoring.coreos.com/v1 PrometheusRule":
			set(d, &o.prometheusRule, &prometheusRule{})
		case "networking.k8s.io/v1 NetworkPolicy":
			set(d, &o.networkPolicy, &networkingv1.NetworkPolicy{})
		default:
			t.Fatalf("%s: unexpected kind (add it to load)", d)
		}
	}
	for name, v := range map[string]any{
		"Deployment": o.deployment, "ConfigMap": o.configMap, "Secret": o.secret, "Service": o.service,
		"PodDisruptionBudget": o.pdb, "ServiceMonitor": o.serviceMonitor, "PrometheusRule": o.prometheusRule,
		"NetworkPolicy": o.networkPolicy,
	} {
		if reflect.ValueOf(v).IsNil() {
			t.Fatalf("no %s manifest", name)
		}
	}
	return o
}

func TestManifestsDecodeStrictly(t *testing.T) {
	o := load(t)
	for _, name := range []string{o.deployment.Name, o.configMap.Name, o.secret.Name, o.service.Name,
		o.pdb.Name, o.serviceMonitor.Metadata.Name, o.prometheusRule.Metadata.Name, o.networkPolicy.Name} {
		if name == "" {
			t.Error("a manifest has no metadata.name")
		}
	}

	t.Run("a typo fails", func(t *testing.T) {
		// Guards the guard: strict decoding must reject a misspelt field
		// of the API types and of the local CRD types.
		bad := []struct {
			doc string
			v   any
		}{
			{"apiVersion: apps/v1\nkind: Deployment\nspec:\n  replica: 2\n", &appsv1.Deployment{}},
			{"apiVersion: v1\nkind: Service\nspec:\n  ports:\n    - name: admin\n      prot: 9464\n", &corev1.Service{}},
			{"apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nspec:\n  endpoint: []\n", &serviceMonitor{}},
			{"groups:\n  - name: x\n    rules:\n      - alert: A\n        expr: up\n        label: {}\n", &ruleFileSpec{}},
			{"a: 1\na: 2\n", &map[string]int{}},
		}
		for _, b := range bad {
			if err := decodeStrict([]byte(b.doc), b.v); err == nil {
				t.Errorf("decodeStrict(%q) succeeded, want an error", b.doc)
			}
		}
	})
}

func TestKustomizationListsEveryManifest(t *testing.T) {
	raw, err := os.ReadFile(kustomizationFile)
	if err != nil {
		t.Fatal(err)
	}
	// Only the fields the base uses; an overlay-style field added here
	// (images, labels, ...) needs adding to the struct.
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
	}
	if err := decodeStrict(raw, &k); err != nil {
		t.Fatalf("%s: %v", kustomizationFile, err)
	}
	if got, want := k.APIVersion+" "+k.Kind, "kustomize.config.k8s.io/v1beta1 Kustomization"; got != want {
		t.Errorf("%s: got %q, want %q", kustomizationFile, got, want)
	}
	listed := map[string]bool{}
	for _, r := range k.Resources {
		if listed[r] {
			t.Errorf("%s lists %s twice", kustomizationFile, r)
		}
		listed[r] = true
		if _, err := os.Stat(r); err != nil {
			t.Errorf("%s lists %s: %v", kustomizationFile, r, err)
		}
	}
	for _, f := range manifestFiles(t) {
		switch {
		case notListed[f] && listed[f]:
			t.Errorf("%s lists %s, an example that would overwrite the real one", kustomizationFile, f)
		case !notListed[f] && !listed[f]:
			t.Errorf("%s is not listed in %s", f, kustomizationFile)
		}
	}
}

func TestDeployment(t *testing.T) {
	o := load(t)
	d := o.deployment
	spec := d.Spec.Template.Spec

	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		t.Errorf("replicas: got %v, want at least 2", d.Spec.Replicas)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("got %d containers, want 1", len(spec.Containers))
	}
	c := spec.Containers[0]
	if got, want := c.Args, []string{"run", "--config", "/etc/syncd/syncd.yaml"}; !slices.Equal(got, want) {
		t.Errorf("args: got %q, want %q", got, want)
	}

	adminPort := int32(0)
	for _, p := range c.Ports {
		if p.Name == "admin" {
			adminPort = p.ContainerPort
		}
	}
	if adminPort != 9464 {
		t.Errorf("container port admin: got %d, want 9464", adminPort)
	}
	probe := func(name string, p *corev1.Probe, path string) {
		t.Helper()
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s: want an httpGet probe", name)
			return
		}
		if p.HTTPGet.Path != path {
			t.Errorf("%s: path %q, want %q", name, p.HTTPGet.Path, path)
		}
		if port := p.HTTPGet.Port; port.String() != "admin" && port.IntValue() != int(adminPort) {
			t.Errorf("%s: port %s, want admin", name, port.String())
		}
	}
	probe("livenessProbe", c.LivenessProbe, "/healthz")
	probe("readinessProbe", c.ReadinessProbe, "/readyz")

	grace := parseConfigMap(t, o).ShutdownGrace
	if g := spec.TerminationGracePeriodSeconds; g == nil {
		t.Errorf("terminationGracePeriodSeconds: unset, want at least 5s more than shutdown_grace %s", grace)
	} else if time.Duration(*g)*time.Second < grace+5*time.Second {
		t.Errorf("terminationGracePeriodSeconds: got %d, want at least 5s more than shutdown_grace %s", *g, grace)
	}

	// Security: the container's setting, else the pod's.
	psc, csc := spec.SecurityContext, c.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	if csc == nil {
		csc = &corev1.SecurityContext{}
	}
	firstBool := func(vs ...*bool) bool {
		for _, v := range vs {
			if v != nil {
				return *v
			}
		}
		return false
	}
	if !firstBool(csc.RunAsNonRoot, psc.RunAsNonRoot) {
		t.Error("runAsNonRoot is not true")
	}
	uid := psc.RunAsUser
	if csc.RunAsUser != nil {
		uid = csc.RunAsUser
	}
	if uid == nil || *uid == 0 {
		t.Errorf("runAsUser: got %v, want a non-root uid", uid)
	}
	if !firstBool(csc.ReadOnlyRootFilesystem) {
		t.Error("readOnlyRootFilesystem is not true")
	}
	if csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation is not false")
	}
	if csc.Capabilities == nil || !slices.Contains(csc.Capabilities.Drop, "ALL") {
		t.Error("capabilities: want drop [ALL]")
	}
	seccomp := psc.SeccompProfile
	if csc.SeccompProfile != nil {
		seccomp = csc.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("seccompProfile: got %v, want RuntimeDefault", seccomp)
	}
	if len(spec.TopologySpreadConstraints) == 0 && (spec.Affinity == nil || spec.Affinity.PodAntiAffinity == nil) {
		t.Error("replicas are not spread over nodes: want topologySpreadConstraints or podAntiAffinity")
	}

	memLimit, ok := c.Resources.Limits[corev1.ResourceMemory]
	if !ok {
		t.Fatal("no memory limit")
	}
	if _, ok := c.Resources.Requests[corev1.ResourceMemory]; !ok {
		t.Error("no memory request")
	}

	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	for _, name := range []string{"SYNCD_REDIS_URL", "SYNCD_ENCRYPTION_KEY"} {
		e, ok := env[name]
		switch {
		case !ok:
			t.Errorf("env %s is not set", name)
		case e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil:
			t.Errorf("env %s: want it from a Secret", name)
		default:
			ref := e.ValueFrom.SecretKeyRef
			if ref.Name != o.secret.Name {
				t.Errorf("env %s: Secret %q, want %q", name, ref.Name, o.secret.Name)
			}
			if _, ok := o.secret.StringData[ref.Key]; !ok {
				t.Errorf("env %s: key %q is not in secret.yaml", name, ref.Key)
			}
		}
	}
	if e, ok := env["GOMEMLIMIT"]; ok {
		n, err := parseBytes(e.Value)
		if err != nil {
			t.Errorf("GOMEMLIMIT: %v", err)
		} else if lim := memLimit.Value(); n >= lim || n < lim*3/4 {
			t.Errorf("GOMEMLIMIT %s: want 75-100%% of the memory limit %s", e.Value, memLimit.String())
		}
	}

	// Mounts: the config directory (no subPath, so edits propagate), the
	// secret files, a writable /tmp.
	vols := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		vols[v.Name] = v
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m
	}
	m, ok := mounts["/etc/syncd"]
	if !ok {
		t.Fatal("nothing mounted at /etc/syncd")
	}
	if m.SubPath != "" || m.SubPathExpr != "" {
		t.Error("/etc/syncd uses subPath: ConfigMap updates would not reach the pod")
	}
	if v := vols[m.Name]; v.ConfigMap == nil || v.ConfigMap.Name != o.configMap.Name {
		t.Errorf("/etc/syncd: want the ConfigMap %q", o.configMap.Name)
	} else if _, ok := o.configMap.Data[path.Base(c.Args[2])]; !ok {
		t.Errorf("ConfigMap has no %s", path.Base(c.Args[2]))
	}
	if m, ok := mounts["/tmp"]; !ok || vols[m.Name].EmptyDir == nil {
		t.Error("/tmp: want an emptyDir (the root filesystem is read-only)")
	}

	// The files syncd.yaml names must be items of the mounted Secret.
	var sy struct {
		Admin struct {
			Listen         string `json:"listen"`
			TokenFile      string `json:"token_file"`
			ReadTokenFile  string `json:"read_token_file"`
			WriteTokenFile string `json:"write_token_file"`
		} `json:"admin"`
		Providers []struct {
			Digime struct {
				PrivateKeyFile string `json:"private_key_file"`
			} `json:"digime"`
		} `json:"providers"`
	}
	if err := yaml.Unmarshal([]byte(o.configMap.Data["syncd.yaml"]), &sy); err != nil {
		t.Fatalf("syncd.yaml: %v", err)
	}
	_, port, err := net.SplitHostPort(sy.Admin.Listen)
	if err != nil || port != strconv.Itoa(int(adminPort)) {
		t.Errorf("syncd.yaml admin.listen %q: want the admin port %d on all interfaces", sy.Admin.Listen, adminPort)
	}
	if sy.Admin.ReadTokenFile == "" || sy.Admin.WriteTokenFile == "" {
		t.Error("syncd.yaml: want admin.read_token_file and admin.write_token_file")
	}
	var files []string
	for _, f := range []string{sy.Admin.TokenFile, sy.Admin.ReadTokenFile, sy.Admin.WriteTokenFile} {
		if f != "" {
			files = append(files, f)
		}
	}
	for _, p := range sy.Providers {
		if f := p.Digime.PrivateKeyFile; f != "" {
			files = append(files, f)
		}
	}
	for _, f := range files {
		m, ok := mounts[path.Dir(f)]
		if !ok {
			t.Errorf("syncd.yaml names %s, but nothing is mounted at %s", f, path.Dir(f))
			continue
		}
		v := vols[m.Name]
		if v.Secret == nil || v.Secret.SecretName != o.secret.Name {
			t.Errorf("%s: want the Secret %q mounted", path.Dir(f), o.secret.Name)
			continue
		}
		found := false
		for _, it := range v.Secret.Items {
			if it.Path == path.Base(f) {
				found = true
				if _, ok := o.secret.StringData[it.Key]; !ok {
					t.Errorf("secret item %q is not in secret.yaml", it.Key)
				}
			}
		}
		if !found {
			t.Errorf("syncd.yaml names %s, which the Secret volume does not provide", f)
		}
	}
}

// parseBytes parses a GOMEMLIMIT value: a number with an optional B, KiB,
// MiB, GiB or TiB suffix.
func parseBytes(s string) (int64, error) {
	mult := int64(1)
	for i, suf := range []string{"TiB", "GiB", "MiB", "KiB", "B"} {
		if strings.HasSuffix(s, suf) {
			s = strings.TrimSuffix(s, suf)
			mult = int64(1) << (10 * (4 - i))
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, err
	}
	return n * mult, nil
}

func TestSelectorsMatch(t *testing.T) {
	o := load(t)
	pod := o.deployment.Spec.Template.Labels
	matches := func(sel, labels map[string]string) bool {
		if len(sel) == 0 {
			return false
		}
		for k, v := range sel {
			if labels[k] != v {
				return false
			}
		}
		return true
	}
	if sel := o.deployment.Spec.Selector; sel == nil || !matches(sel.MatchLabels, pod) {
		t.Error("the Deployment's selector does not match its pod labels")
	}
	if !matches(o.service.Spec.Selector, pod) {
		t.Error("the Service's selector does not match the pods")
	}
	if sel := o.pdb.Spec.Selector; sel == nil || !matches(sel.MatchLabels, pod) {
		t.Error("the PodDisruptionBudget's selector does not match the pods")
	}
	if !matches(o.serviceMonitor.Spec.Selector.MatchLabels, o.service.Labels) {
		t.Error("the ServiceMonitor's selector does not match the Service")
	}

	var svcPort *corev1.ServicePort
	for i, p := range o.service.Spec.Ports {
		if p.Name == "admin" {
			svcPort = &o.service.Spec.Ports[i]
		}
	}
	if svcPort == nil {
		t.Fatal("the Service has no port named admin")
	}
	if svcPort.Port != 9464 || svcPort.TargetPort.String() != "admin" {
		t.Errorf("Service port admin: got %d -> %s, want 9464 -> admin", svcPort.Port, svcPort.TargetPort.String())
	}
	if len(o.serviceMonitor.Spec.Endpoints) != 1 {
		t.Fatalf("ServiceMonitor: got %d endpoints, want 1", len(o.serviceMonitor.Spec.Endpoints))
	}
	if ep := o.serviceMonitor.Spec.Endpoints[0]; ep.Port != "admin" || ep.Path != "/metrics" {
		t.Errorf("ServiceMonitor endpoint: got port %q path %q, want admin /metrics", ep.Port, ep.Path)
	}
	// alerts.yml's SyncdDown selects up{job="syncd"}; the operator names
	// the job after the Service unless jobLabel says otherwise.
	if o.serviceMonitor.Spec.JobLabel != "" || o.service.Name != "syncd" {
		t.Error(`the scrape job would not be "syncd", which SyncdDown expects`)
	}
}

// renderRule returns prometheusrule.yaml as generated from alerts: the
// current file up to its "spec:" line, then alerts.yml from its "groups:"
// line on, indented by two spaces.
func renderRule(current, alerts []byte) ([]byte, error) {
	head, _, ok := bytes.Cut(current, []byte("\nspec:\n"))
	if !ok {
		return nil, fmt.Errorf("%s: no spec: line", ruleFile)
	}
	i := bytes.Index(alerts, []byte("\ngroups:\n"))
	if i < 0 {
		return nil, fmt.Errorf("%s: no groups: line", alertsFile)
	}
	var b bytes.Buffer
	b.Write(head)
	b.WriteString("\nspec:\n")
	for _, line := range strings.SplitAfter(string(alerts[i+1:]), "\n") {
		if strings.TrimSpace(line) != "" {
			b.WriteString("  ")
		}
		b.WriteString(line)
	}
	return b.Bytes(), nil
}

func TestPrometheusRuleMatchesAlerts(t *testing.T) {
	current, err := os.ReadFile(ruleFile)
	if err != nil {
		t.Fatal(err)
	}
	alerts, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	want, err := renderRule(current, alerts)
	if err != nil {
		t.Fatal(err)
	}
	if *update && !bytes.Equal(current, want) {
		if err := os.WriteFile(ruleFile, want, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote %s", ruleFile)
		current = want
	}
	if !bytes.Equal(current, want) {
		t.Errorf("%s is not generated from %s: run go test ./deploy/kubernetes -update", ruleFile, alertsFile)
	}

	// The same rules, field by field, whatever the text.
	var file ruleFileSpec
	if err := decodeStrict(alerts, &file); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	var pr prometheusRule
	if err := decodeStrict(current, &pr); err != nil {
		t.Fatalf("%s: %v", ruleFile, err)
	}
	if !reflect.DeepEqual(pr.Spec.Groups, file.Groups) {
		t.Errorf("%s's groups differ from %s's", ruleFile, alertsFile)
	}
	if len(file.Groups) == 0 || len(file.Groups[0].Rules) == 0 {
		t.Errorf("%s has no rules", alertsFile)
	}
}

func TestConfigMapParses(t *testing.T) {
	cfg := parseConfigMap(t, load(t))
	if len(cfg.Providers) != 1 || cfg.Providers[0].Kind != config.ProviderDigime {
		t.Errorf("providers: got %+v, want one digime provider", cfg.Providers)
	}
	kinds := map[config.JobKind]bool{}
	for _, j := range cfg.Jobs {
		kinds[j.Kind] = true
		if j.Kind == config.JobPull && j.Spread == 0 {
			t.Errorf("job %s: a daily pull without spread starts every user at once", j.Name)
		}
	}
	if !kinds[config.JobPull] || !kinds[config.JobPush] {
		t.Errorf("jobs: want a pull and a push job, got %d jobs", len(cfg.Jobs))
	}
	if cfg.Admin.ReadToken == "" || cfg.Admin.WriteToken == "" {
		t.Error("admin: want the admin API's read and write tokens")
	}
	if len(cfg.Admin.AllowedHosts) == 0 {
		t.Error("admin.allowed_hosts: want the Service's name, which in-cluster clients use")
	}
}

// TestSecretPlaceholdersRefused: the example secret.yaml, applied
// unchanged, must not open the admin API: syncd refuses its token
// placeholders (and its encryption key placeholder).
func TestSecretPlaceholdersRefused(t *testing.T) {
	o := load(t)
	files := map[string][]byte{}
	for _, key := range []string{"admin-read-token", "admin-write-token"} {
		v, ok := o.secret.StringData[key]
		if !ok {
			t.Fatalf("secret.yaml has no %s", key)
		}
		files[key] = []byte(v)
	}
	_, err := loadConfigMap(t, o, files, o.secret.StringData["encryption-key"])
	if err == nil {
		t.Fatal("syncd accepts the example secret's placeholders")
	}
	for _, want := range []string{"admin.read_token_file: the token is the example placeholder", "admin.write_token_file: the token is the example placeholder", "encryption.keys[0]"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want it to contain %q", err, want)
		}
	}
}

// TestNetworkPolicy: the syncd pods take connections only on the admin
// port, only from the namespaces labelled for Prometheus and operators,
// and connect out only to DNS, Redis and HTTPS (the providers).
func TestNetworkPolicy(t *testing.T) {
	o := load(t)
	np := o.networkPolicy
	if sel := np.Spec.PodSelector.MatchLabels; len(sel) == 0 || sel["app.kubernetes.io/name"] != "syncd" {
		t.Errorf("podSelector %v: want the syncd pods", sel)
	}
	for k, v := range np.Spec.PodSelector.MatchLabels {
		if o.deployment.Spec.Template.Labels[k] != v {
			t.Errorf("podSelector %s=%s does not match the pods", k, v)
		}
	}
	types := map[networkingv1.PolicyType]bool{}
	for _, pt := range np.Spec.PolicyTypes {
		types[pt] = true
	}
	if !types[networkingv1.PolicyTypeIngress] || !types[networkingv1.PolicyTypeEgress] {
		t.Errorf("policyTypes %v: want Ingress and Egress", np.Spec.PolicyTypes)
	}
	if len(np.Spec.Ingress) == 0 {
		t.Fatal("no ingress rule: nothing (not even the kubelet's probes through the CNI, nor Prometheus) reaches the admin port")
	}
	for i, r := range np.Spec.Ingress {
		if len(r.Ports) != 1 || r.Ports[0].Port == nil || r.Ports[0].Port.String() != "admin" && r.Ports[0].Port.IntValue() != 9464 {
			t.Errorf("ingress[%d]: want the admin port only, got %v", i, r.Ports)
		}
		if len(r.From) == 0 {
			t.Errorf("ingress[%d]: from everywhere", i)
		}
		for j, f := range r.From {
			if f.NamespaceSelector == nil || len(f.NamespaceSelector.MatchLabels)+len(f.NamespaceSelector.MatchExpressions) == 0 || f.IPBlock != nil {
				t.Errorf("ingress[%d].from[%d]: want a namespaceSelector with labels", i, j)
			}
		}
	}
	egress := map[string]bool{}
	for _, r := range np.Spec.Egress {
		for _, p := range r.Ports {
			proto := corev1.ProtocolTCP
			if p.Protocol != nil {
				proto = *p.Protocol
			}
			egress[fmt.Sprintf("%s/%s", proto, p.Port.String())] = true
		}
		if len(r.Ports) == 0 {
			t.Errorf("an egress rule without ports: %v", r)
		}
	}
	for _, want := range []string{"UDP/53", "TCP/53", "TCP/6379", "TCP/443"} {
		if !egress[want] {
			t.Errorf("egress: %s is not allowed (got %v)", want, egress)
		}
	}
}

// parseConfigMap runs the ConfigMap's syncd.yaml through syncd's own config
// loader, with the files it names (real-looking secrets) and the
// environment the Deployment gives.
func parseConfigMap(t *testing.T, o objects) *config.Config {
	t.Helper()
	encKey := make([]byte, 32)
	if _, err := rand.Read(encKey); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfigMap(t, o, map[string][]byte{
		"admin-read-token":  []byte("test-admin-read-token-0123456789\n"),
		"admin-write-token": []byte("test-admin-write-token-0123456789\n"),
	}, base64.StdEncoding.EncodeToString(encKey))
	if err != nil {
		t.Fatalf("syncd.yaml: %v", err)
	}
	return cfg
}

// loadConfigMap loads the ConfigMap's syncd.yaml with these secret files
// (and a generated contract.pem) and encryption key.
func loadConfigMap(t *testing.T, o objects, secretFiles map[string][]byte, encryptionKey string) (*config.Config, error) {
	t.Helper()
	doc, ok := o.configMap.Data["syncd.yaml"]
	if !ok {
		t.Fatal("the ConfigMap has no syncd.yaml")
	}

	// The secret files the config names live where the Deployment mounts
	// the Secret; the loader checks they exist, so put them in a temp dir
	// and point the config there.
	const secretDir = "/etc/syncd-secrets/"
	dir := t.TempDir()
	doc = strings.ReplaceAll(doc, secretDir, filepath.ToSlash(dir)+"/")
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	secretFiles["contract.pem"] = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	for name, data := range secretFiles {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	getenv := func(name string) string {
		if name == "SYNCD_ENCRYPTION_KEY" {
			return encryptionKey
		}
		return ""
	}
	return config.Parse(strings.NewReader(doc), dir, getenv)
}
