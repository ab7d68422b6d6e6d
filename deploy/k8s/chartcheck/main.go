// Command chartcheck validates the manifests `helm template` renders for the eventchat chart, read
// from standard input, without a cluster:
//
//   - every document is decoded strictly into its k8s.io/api type (unknown, misspelled or
//     duplicate fields fail, as they would on a server with strict field validation), and names
//     and labels must be valid;
//   - every Deployment's pods run hardened (non-root, read-only root, no privilege escalation, all
//     capabilities dropped, seccomp RuntimeDefault, no service-account token) with readiness
//     (/readyz), liveness (/healthz) and, for unread and archiver, startup probes on a declared
//     port; the ops address variable (CHAT_*ADDR) binds 0.0.0.0 on that port; every file path a
//     CHAT_* variable names lies on a mounted volume; the grace period exceeds the shutdown
//     timeout;
//   - Services, Ingresses, HorizontalPodAutoscalers, PodDisruptionBudgets and ServiceMonitors
//     point at objects and ports that exist in the same output.
//
// It prints one line per object ("Kind name component") and exits 1 listing every problem found.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// ServiceMonitor is the part of the Prometheus Operator's type (monitoring.coreos.com/v1) the chart
// renders; decoding is strict against it.
type ServiceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector struct {
			Any        bool     `json:"any,omitempty"`
			MatchNames []string `json:"matchNames,omitempty"`
		} `json:"namespaceSelector"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path,omitempty"`
			Interval      string `json:"interval,omitempty"`
			ScrapeTimeout string `json:"scrapeTimeout,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// objects of the rendered output, by kind.
type objects struct {
	deployments     []*appsv1.Deployment
	services        []*corev1.Service
	ingresses       []*networkingv1.Ingress
	hpas            []*autoscalingv2.HorizontalPodAutoscaler
	pdbs            []*policyv1.PodDisruptionBudget
	serviceMonitors []*ServiceMonitor
	secrets         []*corev1.Secret
	serviceAccounts []*corev1.ServiceAccount
}

type checker struct {
	errs []string
}

func (c *checker) errorf(format string, a ...any) {
	c.errs = append(c.errs, fmt.Sprintf(format, a...))
}

func main() {
	var c checker
	objs, lines := c.decodeAll(os.Stdin)
	c.checkAll(objs)
	sort.Strings(lines)
	for _, l := range lines {
		fmt.Println(l)
	}
	if len(c.errs) > 0 {
		for _, e := range c.errs {
			fmt.Fprintln(os.Stderr, "chartcheck:", e)
		}
		os.Exit(1)
	}
}

// decodeAll reads every YAML document and decodes it strictly by apiVersion and kind.
func (c *checker) decodeAll(r io.Reader) (*objects, []string) {
	objs := &objects{}
	var lines []string
	seen := map[string]bool{}
	rd := utilyaml.NewYAMLReader(bufio.NewReader(r))
	for n := 1; ; n++ {
		doc, err := rd.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			c.errorf("document %d: %v", n, err)
			break
		}
		if isEmpty(doc) {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			c.errorf("document %d: %v", n, err)
			continue
		}
		var obj any
		switch tm.APIVersion + "/" + tm.Kind {
		case "apps/v1/Deployment":
			o := &appsv1.Deployment{}
			objs.deployments, obj = append(objs.deployments, o), o
		case "v1/Service":
			o := &corev1.Service{}
			objs.services, obj = append(objs.services, o), o
		case "v1/Secret":
			o := &corev1.Secret{}
			objs.secrets, obj = append(objs.secrets, o), o
		case "v1/ServiceAccount":
			o := &corev1.ServiceAccount{}
			objs.serviceAccounts, obj = append(objs.serviceAccounts, o), o
		case "networking.k8s.io/v1/Ingress":
			o := &networkingv1.Ingress{}
			objs.ingresses, obj = append(objs.ingresses, o), o
		case "autoscaling/v2/HorizontalPodAutoscaler":
			o := &autoscalingv2.HorizontalPodAutoscaler{}
			objs.hpas, obj = append(objs.hpas, o), o
		case "policy/v1/PodDisruptionBudget":
			o := &policyv1.PodDisruptionBudget{}
			objs.pdbs, obj = append(objs.pdbs, o), o
		case "monitoring.coreos.com/v1/ServiceMonitor":
			o := &ServiceMonitor{}
			objs.serviceMonitors, obj = append(objs.serviceMonitors, o), o
		default:
			c.errorf("document %d: unexpected apiVersion %q kind %q", n, tm.APIVersion, tm.Kind)
			continue
		}
		js, err := yaml.YAMLToJSONStrict(doc)
		if err != nil {
			c.errorf("%s document %d: %v", tm.Kind, n, err)
			continue
		}
		strict, err := kjson.UnmarshalStrict(js, obj)
		if err != nil {
			c.errorf("%s document %d: %v", tm.Kind, n, err)
			continue
		}
		for _, e := range strict {
			c.errorf("%s document %d: strict decoding: %v", tm.Kind, n, e)
		}
		meta := obj.(metav1.Object)
		id := tm.Kind + " " + meta.GetName()
		if seen[id] {
			c.errorf("%s: rendered twice", id)
		}
		seen[id] = true
		c.checkMeta(tm.Kind, meta)
		lines = append(lines, strings.TrimSpace(id+" "+meta.GetLabels()["app.kubernetes.io/component"]))
	}
	return objs, lines
}

func isEmpty(doc []byte) bool {
	for _, l := range bytes.Split(doc, []byte("\n")) {
		l = bytes.TrimSpace(l)
		if len(l) > 0 && l[0] != '#' && string(l) != "---" {
			return false
		}
	}
	return true
}

func (c *checker) checkMeta(kind string, m metav1.Object) {
	id := kind + " " + m.GetName()
	var errs []string
	if kind == "Service" {
		errs = validation.IsDNS1035Label(m.GetName())
	} else {
		errs = validation.IsDNS1123Subdomain(m.GetName())
	}
	for _, e := range errs {
		c.errorf("%s: name: %s", id, e)
	}
	if m.GetNamespace() == "" {
		c.errorf("%s: no namespace", id)
	}
	c.checkLabels(id, m.GetLabels())
	for _, k := range []string{"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by", "helm.sh/chart"} {
		if m.GetLabels()[k] == "" {
			c.errorf("%s: label %s missing", id, k)
		}
	}
}

func (c *checker) checkLabels(id string, l map[string]string) {
	for k, v := range l {
		for _, e := range validation.IsQualifiedName(k) {
			c.errorf("%s: label key %q: %s", id, k, e)
		}
		for _, e := range validation.IsValidLabelValue(v) {
			c.errorf("%s: label %s=%q: %s", id, k, v, e)
		}
	}
}

func (c *checker) checkAll(o *objects) {
	if len(o.deployments) == 0 {
		c.errorf("no Deployment rendered")
	}
	for _, d := range o.deployments {
		c.checkDeployment(d, o)
	}
	for _, s := range o.services {
		c.checkService(s, o)
	}
	for _, ing := range o.ingresses {
		c.checkIngress(ing, o)
	}
	for _, h := range o.hpas {
		c.checkHPA(h, o)
	}
	for _, p := range o.pdbs {
		c.checkPDB(p, o)
	}
	for _, sm := range o.serviceMonitors {
		c.checkServiceMonitor(sm, o)
	}
}

func (c *checker) checkDeployment(d *appsv1.Deployment, o *objects) {
	id := "Deployment " + d.Name
	component := d.Labels["app.kubernetes.io/component"]
	if component == "" {
		c.errorf("%s: label app.kubernetes.io/component missing", id)
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || d.Spec.Selector == nil || sel.Empty() {
		c.errorf("%s: bad or empty selector: %v", id, err)
	} else if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		c.errorf("%s: selector %s does not match its pod labels", id, sel)
	}
	c.checkLabels(id+" pod", d.Spec.Template.Labels)

	pod := d.Spec.Template.Spec
	psc := pod.SecurityContext
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		c.errorf("%s: automountServiceAccountToken must be false (the services never call the API)", id)
	}
	if pod.TerminationGracePeriodSeconds == nil {
		c.errorf("%s: terminationGracePeriodSeconds not set", id)
	}
	if pod.ServiceAccountName != "" && pod.ServiceAccountName != "default" && len(o.serviceAccounts) > 0 {
		found := false
		for _, sa := range o.serviceAccounts {
			found = found || sa.Name == pod.ServiceAccountName
		}
		if !found {
			c.errorf("%s: serviceAccountName %q is not the rendered ServiceAccount", id, pod.ServiceAccountName)
		}
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
		if v.Secret != nil {
			if v.Secret.SecretName == "" {
				c.errorf("%s: volume %s: empty secretName", id, v.Name)
			}
			for _, it := range v.Secret.Items {
				if it.Key == "" || it.Path == "" {
					c.errorf("%s: volume %s: an item without key or path", id, v.Name)
				}
			}
		}
	}
	if len(pod.Containers) == 0 {
		c.errorf("%s: no containers", id)
	}
	for _, ct := range pod.Containers {
		cid := fmt.Sprintf("%s container %s", id, ct.Name)
		if ct.Image == "" || strings.HasSuffix(ct.Image, ":") {
			c.errorf("%s: no image tag", cid)
		}
		if len(ct.Command) == 0 {
			c.errorf("%s: no command (the image has no entrypoint)", cid)
		}
		// Security.
		sc := ct.SecurityContext
		nonRoot := (sc != nil && sc.RunAsNonRoot != nil && *sc.RunAsNonRoot) ||
			((sc == nil || sc.RunAsNonRoot == nil) && psc != nil && psc.RunAsNonRoot != nil && *psc.RunAsNonRoot)
		if !nonRoot {
			c.errorf("%s: securityContext runAsNonRoot is not true", cid)
		}
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			c.errorf("%s: securityContext readOnlyRootFilesystem is not true", cid)
		}
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			c.errorf("%s: securityContext allowPrivilegeEscalation is not false", cid)
		}
		if sc == nil || sc.Capabilities == nil || !hasCap(sc.Capabilities.Drop, "ALL") {
			c.errorf("%s: securityContext does not drop ALL capabilities", cid)
		}
		if sc != nil && sc.Capabilities != nil && len(sc.Capabilities.Add) > 0 {
			c.errorf("%s: securityContext adds capabilities %v", cid, sc.Capabilities.Add)
		}
		seccomp := (sc != nil && sc.SeccompProfile != nil && sc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault) ||
			((sc == nil || sc.SeccompProfile == nil) && psc != nil && psc.SeccompProfile != nil && psc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault)
		if !seccomp {
			c.errorf("%s: seccompProfile is not RuntimeDefault", cid)
		}
		if ct.Resources.Requests.Cpu().IsZero() || ct.Resources.Requests.Memory().IsZero() {
			c.errorf("%s: no cpu/memory requests", cid)
		}
		// Probes.
		c.checkProbe(cid, "readinessProbe", ct.ReadinessProbe, "/readyz", ct.Ports)
		c.checkProbe(cid, "livenessProbe", ct.LivenessProbe, "/healthz", ct.Ports)
		if component == "unread" || component == "archiver" || ct.StartupProbe != nil {
			c.checkProbe(cid, "startupProbe", ct.StartupProbe, "/healthz", ct.Ports)
		}
		// Environment.
		env := map[string]string{}
		for _, e := range ct.Env {
			if _, dup := env[e.Name]; dup {
				c.errorf("%s: env %s set twice", cid, e.Name)
			}
			env[e.Name] = e.Value
		}
		if env["CHAT_NATS_URL"] == "" {
			c.errorf("%s: CHAT_NATS_URL not set", cid)
		}
		addrVar := map[string]string{"gateway": "CHAT_ADDR", "presence": "CHAT_PRESENCE_ADDR",
			"unread": "CHAT_UNREAD_ADDR", "archiver": "CHAT_ARCHIVER_ADDR"}[component]
		if addrVar == "" {
			c.errorf("%s: unknown component %q", cid, component)
		} else {
			want := ""
			if len(ct.Ports) > 0 {
				want = fmt.Sprintf("0.0.0.0:%d", ct.Ports[0].ContainerPort)
			}
			if env[addrVar] != want || want == "" {
				c.errorf("%s: %s=%q, want %q (bound on all interfaces, on the declared port)", cid, addrVar, env[addrVar], want)
			}
		}
		if component == "archiver" && env["CHAT_CLICKHOUSE_ADDR"] == "" {
			c.errorf("%s: archiver without CHAT_CLICKHOUSE_ADDR", cid)
		}
		if st, ok := env["CHAT_SHUTDOWN_TIMEOUT"]; ok {
			dur, err := time.ParseDuration(st)
			grace := int64(30)
			if pod.TerminationGracePeriodSeconds != nil {
				grace = *pod.TerminationGracePeriodSeconds
			}
			var sleep int64
			if ct.Lifecycle != nil && ct.Lifecycle.PreStop != nil && ct.Lifecycle.PreStop.Sleep != nil {
				sleep = ct.Lifecycle.PreStop.Sleep.Seconds
			}
			if err != nil {
				c.errorf("%s: CHAT_SHUTDOWN_TIMEOUT=%q: %v", cid, st, err)
			} else if time.Duration(grace-sleep)*time.Second <= dur {
				c.errorf("%s: terminationGracePeriodSeconds %d (less a %ds preStop sleep) does not exceed CHAT_SHUTDOWN_TIMEOUT %s", cid, grace, sleep, st)
			}
		}
		// Mounts, and the files the CHAT_* variables name.
		var mounts []string
		for _, m := range ct.VolumeMounts {
			if _, ok := volumes[m.Name]; !ok {
				c.errorf("%s: volumeMount %s has no volume", cid, m.Name)
			}
			mounts = append(mounts, m.MountPath)
		}
		if !hasPrefixDir("/tmp", mounts) {
			c.errorf("%s: no writable /tmp (the root filesystem is read-only)", cid)
		}
		for name, val := range env {
			if !strings.HasPrefix(name, "CHAT_") || !strings.HasPrefix(val, "/") {
				continue
			}
			if !hasPrefixDir(val, mounts) {
				c.errorf("%s: %s=%s is not on a mounted volume", cid, name, val)
			}
		}
	}
}

func (c *checker) checkProbe(cid, which string, p *corev1.Probe, path string, ports []corev1.ContainerPort) {
	if p == nil {
		c.errorf("%s: no %s", cid, which)
		return
	}
	if p.HTTPGet == nil {
		c.errorf("%s: %s is not an httpGet", cid, which)
		return
	}
	if p.HTTPGet.Path != path {
		c.errorf("%s: %s path %q, want %q", cid, which, p.HTTPGet.Path, path)
	}
	if !portDeclared(p.HTTPGet.Port, ports) {
		c.errorf("%s: %s port %s is not a declared container port", cid, which, p.HTTPGet.Port.String())
	}
}

func portDeclared(p intstr.IntOrString, ports []corev1.ContainerPort) bool {
	for _, cp := range ports {
		if (p.Type == intstr.String && p.StrVal == cp.Name) || (p.Type == intstr.Int && p.IntVal == cp.ContainerPort) {
			return true
		}
	}
	return false
}

func hasCap(caps []corev1.Capability, want corev1.Capability) bool {
	for _, c := range caps {
		if c == want {
			return true
		}
	}
	return false
}

func hasPrefixDir(path string, dirs []string) bool {
	for _, d := range dirs {
		if path == d || strings.HasPrefix(path, strings.TrimSuffix(d, "/")+"/") {
			return true
		}
	}
	return false
}

// podsSelected returns the Deployments whose pods a label set selects.
func podsSelected(sel labels.Selector, o *objects) []*appsv1.Deployment {
	var out []*appsv1.Deployment
	for _, d := range o.deployments {
		if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			out = append(out, d)
		}
	}
	return out
}

func (c *checker) checkService(s *corev1.Service, o *objects) {
	id := "Service " + s.Name
	if len(s.Spec.Selector) == 0 {
		c.errorf("%s: no selector", id)
		return
	}
	ds := podsSelected(labels.SelectorFromSet(s.Spec.Selector), o)
	if len(ds) != 1 {
		c.errorf("%s: selects the pods of %d Deployments, want 1", id, len(ds))
		return
	}
	for _, p := range s.Spec.Ports {
		found := false
		for _, ct := range ds[0].Spec.Template.Spec.Containers {
			found = found || portDeclared(p.TargetPort, ct.Ports)
		}
		if !found {
			c.errorf("%s: targetPort %s is not a port of Deployment %s", id, p.TargetPort.String(), ds[0].Name)
		}
	}
}

func (c *checker) checkIngress(ing *networkingv1.Ingress, o *objects) {
	id := "Ingress " + ing.Name
	if len(ing.Spec.Rules) == 0 {
		c.errorf("%s: no rules", id)
	}
	for _, r := range ing.Spec.Rules {
		if r.HTTP == nil || len(r.HTTP.Paths) == 0 {
			c.errorf("%s: rule %q without paths", id, r.Host)
			continue
		}
		for _, p := range r.HTTP.Paths {
			if p.PathType == nil {
				c.errorf("%s: path %s without pathType", id, p.Path)
			}
			b := p.Backend.Service
			if b == nil {
				c.errorf("%s: path %s without a service backend", id, p.Path)
				continue
			}
			var svc *corev1.Service
			for _, s := range o.services {
				if s.Name == b.Name {
					svc = s
				}
			}
			if svc == nil {
				c.errorf("%s: backend Service %s is not rendered", id, b.Name)
				continue
			}
			found := false
			for _, sp := range svc.Spec.Ports {
				found = found || (b.Port.Name != "" && sp.Name == b.Port.Name) || (b.Port.Number != 0 && sp.Port == b.Port.Number)
			}
			if !found {
				c.errorf("%s: backend port %+v is not a port of Service %s", id, b.Port, svc.Name)
			}
		}
	}
}

func (c *checker) checkHPA(h *autoscalingv2.HorizontalPodAutoscaler, o *objects) {
	id := "HorizontalPodAutoscaler " + h.Name
	ref := h.Spec.ScaleTargetRef
	var target *appsv1.Deployment
	for _, d := range o.deployments {
		if ref.Kind == "Deployment" && ref.APIVersion == "apps/v1" && d.Name == ref.Name {
			target = d
		}
	}
	if target == nil {
		c.errorf("%s: scaleTargetRef %s/%s %s is not a rendered Deployment", id, ref.APIVersion, ref.Kind, ref.Name)
		return
	}
	if target.Spec.Replicas != nil {
		c.errorf("%s: Deployment %s sets replicas, which fights the autoscaler", id, target.Name)
	}
	if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 1 || h.Spec.MaxReplicas < *h.Spec.MinReplicas {
		c.errorf("%s: bad min/max replicas", id)
	}
	for _, ct := range target.Spec.Template.Spec.Containers {
		if ct.Resources.Requests.Cpu().IsZero() {
			c.errorf("%s: container %s has no cpu request to scale on", id, ct.Name)
		}
	}
}

func (c *checker) checkPDB(p *policyv1.PodDisruptionBudget, o *objects) {
	id := "PodDisruptionBudget " + p.Name
	sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
	if err != nil || p.Spec.Selector == nil || sel.Empty() {
		c.errorf("%s: bad or empty selector", id)
		return
	}
	ds := podsSelected(sel, o)
	if len(ds) != 1 {
		c.errorf("%s: selects the pods of %d Deployments, want 1", id, len(ds))
		return
	}
	replicas := int32(1)
	if ds[0].Spec.Replicas != nil {
		replicas = *ds[0].Spec.Replicas
	} else {
		for _, h := range o.hpas {
			if h.Spec.ScaleTargetRef.Name == ds[0].Name && h.Spec.MinReplicas != nil {
				replicas = *h.Spec.MinReplicas
			}
		}
	}
	if replicas < 2 {
		c.errorf("%s: Deployment %s runs %d replica(s): a budget would block evictions", id, ds[0].Name, replicas)
	}
	if p.Spec.MinAvailable != nil && p.Spec.MinAvailable.Type == intstr.Int && p.Spec.MinAvailable.IntVal >= replicas {
		c.errorf("%s: minAvailable %d >= %d replicas blocks every eviction", id, p.Spec.MinAvailable.IntVal, replicas)
	}
}

func (c *checker) checkServiceMonitor(sm *ServiceMonitor, o *objects) {
	id := "ServiceMonitor " + sm.Name
	sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
	if err != nil || sel.Empty() {
		c.errorf("%s: bad or empty selector", id)
		return
	}
	var svcs []*corev1.Service
	for _, s := range o.services {
		if sel.Matches(labels.Set(s.Labels)) {
			svcs = append(svcs, s)
		}
	}
	if len(svcs) != 1 {
		c.errorf("%s: selects %d Services, want 1", id, len(svcs))
		return
	}
	if len(sm.Spec.Endpoints) == 0 {
		c.errorf("%s: no endpoints", id)
	}
	for _, ep := range sm.Spec.Endpoints {
		found := false
		for _, p := range svcs[0].Spec.Ports {
			found = found || p.Name == ep.Port
		}
		if !found {
			c.errorf("%s: endpoint port %q is not a port of Service %s", id, ep.Port, svcs[0].Name)
		}
		if ep.Path != "/metrics" {
			c.errorf("%s: endpoint path %q, want /metrics", id, ep.Path)
		}
	}
}
