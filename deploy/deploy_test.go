package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/attestload/attestload/daemon/shard"
)

// The parts of the rendered Kubernetes objects the checks read.
type object struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec struct {
		Replicas *int `yaml:"replicas"`
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		ClusterIP string `yaml:"clusterIP"` // Service
		Template  struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec struct {
				Containers []container `yaml:"containers"`
				Volumes    []struct {
					Name      string `yaml:"name"`
					ConfigMap *struct {
						Name string `yaml:"name"`
					} `yaml:"configMap"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
		PodMetricsEndpoints []struct {
			Port string `yaml:"port"`
			Path string `yaml:"path"`
		} `yaml:"podMetricsEndpoints"`
	} `yaml:"spec"`
	// serviceSelector is a Service's spec.selector, a plain map where workloads have matchLabels.
	serviceSelector map[string]string
}

type container struct {
	Name  string   `yaml:"name"`
	Args  []string `yaml:"args"`
	Env   []envVar `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
}

type envVar struct {
	Name      string  `yaml:"name"`
	Value     *string `yaml:"value"`
	ValueFrom *struct {
		FieldRef *struct {
			FieldPath string `yaml:"fieldPath"`
		} `yaml:"fieldRef"`
		SecretKeyRef *struct {
			Name string `yaml:"name"`
			Key  string `yaml:"key"`
		} `yaml:"secretKeyRef"`
	} `yaml:"valueFrom"`
}

// kustomize renders deploy/kubernetes with the real kubectl. Without kubectl the test is skipped on a developer
// machine and fails in CI, where a skipped check would pass silently.
func kustomize(t *testing.T) []object {
	t.Helper()
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("kubectl not found, and CI=true: install kubectl")
		}
		t.Skip("kubectl not found; skipping the Kubernetes manifest check")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, kubectl, "kustomize", "kubernetes")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl kustomize kubernetes: %v\n%s", err, stderr.String())
	}
	var objs []object
	dec := yaml.NewDecoder(&stdout)
	for {
		var node yaml.Node
		if err := dec.Decode(&node); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode kustomize output: %v", err)
		}
		var o object
		if err := node.Decode(&o); err != nil {
			t.Fatalf("decode kustomize output: %v", err)
		}
		if o.Kind == "Service" {
			var svc struct {
				Spec struct {
					Selector map[string]string `yaml:"selector"`
				} `yaml:"spec"`
			}
			if err := node.Decode(&svc); err != nil {
				t.Fatalf("decode Service %s: %v", o.Metadata.Name, err)
			}
			o.serviceSelector = svc.Spec.Selector
		}
		objs = append(objs, o)
	}
	return objs
}

func find(t *testing.T, objs []object, kind, name string) object {
	t.Helper()
	for _, o := range objs {
		if o.Kind == kind && o.Metadata.Name == name {
			return o
		}
	}
	t.Fatalf("kustomize output has no %s %q", kind, name)
	return object{}
}

func findPrefix(t *testing.T, objs []object, kind, prefix string) object {
	t.Helper()
	for _, o := range objs {
		if o.Kind == kind && strings.HasPrefix(o.Metadata.Name, prefix) {
			return o
		}
	}
	t.Fatalf("kustomize output has no %s named %s*", kind, prefix)
	return object{}
}

// kubeletExpand expands $(VAR) references in a container argument the way the kubelet does: defined variables
// are replaced, $$ escapes a dollar, and references to undefined variables are left as they are.
func kubeletExpand(s string, env map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+end]
			if v, ok := env[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+end+1])
			}
			i += end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

var podIndexLabel = regexp.MustCompile(`^metadata\.labels\['apps\.kubernetes\.io/pod-index'\]$`)

// podArgs is the command line the kubelet gives the container of the StatefulSet's pod with this ordinal.
func podArgs(t *testing.T, ss object, c container, ordinal int) []string {
	t.Helper()
	podName := fmt.Sprintf("%s-%d", ss.Metadata.Name, ordinal)
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.Value != nil:
			env[e.Name] = kubeletExpand(*e.Value, env)
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
			switch fp := e.ValueFrom.FieldRef.FieldPath; {
			case podIndexLabel.MatchString(fp):
				env[e.Name] = strconv.Itoa(ordinal)
			case fp == "metadata.name":
				env[e.Name] = podName
			default:
				t.Fatalf("env %s: fieldRef %q is not simulated by this test", e.Name, fp)
			}
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			env[e.Name] = "secret-" + e.ValueFrom.SecretKeyRef.Key
		default:
			t.Fatalf("env %s has neither value nor valueFrom", e.Name)
		}
	}
	args := make([]string, len(c.Args))
	for i, a := range c.Args {
		args[i] = kubeletExpand(a, env)
	}
	return args
}

func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v, true
		}
		if a == name && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

// TestStatefulSetShardsByOrdinal renders the StatefulSet and checks that its pods, given their ordinals as the
// kubelet would, pass --shard values that split the configured fleet into disjoint slices covering all of it.
func TestStatefulSetShardsByOrdinal(t *testing.T) {
	objs := kustomize(t)
	ss := find(t, objs, "StatefulSet", "attestload")
	if ss.Spec.Replicas == nil || *ss.Spec.Replicas < 2 {
		t.Fatalf("StatefulSet replicas = %v, want at least 2 so that the base shows sharding", ss.Spec.Replicas)
	}
	replicas := *ss.Spec.Replicas
	i := slices.IndexFunc(ss.Spec.Template.Spec.Containers, func(c container) bool { return c.Name == "attestload" })
	if i < 0 {
		t.Fatal("StatefulSet has no attestload container")
	}
	c := ss.Spec.Template.Spec.Containers[i]

	agents := fleetSize(t, objs, ss)
	covered := make([]int, agents)
	for ordinal := range replicas {
		args := podArgs(t, ss, c, ordinal)
		v, ok := flagValue(args, "--shard")
		if !ok {
			t.Fatalf("pod %d: no --shard in %q", ordinal, args)
		}
		sh, err := shard.Parse(v)
		if err != nil {
			t.Fatalf("pod %d: %v (args %q)", ordinal, err, args)
		}
		if want, err := shard.FromOrdinal(fmt.Sprintf("attestload-%d", ordinal), replicas); err != nil || sh != want {
			t.Errorf("pod %d passes --shard %v, its ordinal says %v (%v)", ordinal, sh, want, err)
		}
		first, count := sh.Range(agents)
		if count == 0 {
			t.Errorf("pod %d (shard %v) drives no agents of %d", ordinal, sh, agents)
		}
		for a := first; a < first+count; a++ {
			covered[a]++
		}
		t.Logf("pod attestload-%d: --shard %v, agents [%d, %d)", ordinal, sh, first, first+count)
	}
	for a, n := range covered {
		if n != 1 {
			t.Fatalf("agent %d is driven by %d pods, want exactly 1", a, n)
		}
	}

	// The two first ordinals, spelled out: what the acceptance criterion asks.
	s0, _ := shard.Parse(must(flagValue(podArgs(t, ss, c, 0), "--shard")))
	s1, _ := shard.Parse(must(flagValue(podArgs(t, ss, c, 1), "--shard")))
	f0, n0 := s0.Range(agents)
	f1, n1 := s1.Range(agents)
	if f0+n0 > f1 && f1+n1 > f0 {
		t.Errorf("ordinals 0 and 1 overlap: [%d,%d) and [%d,%d)", f0, f0+n0, f1, f1+n1)
	}
}

func must(v string, ok bool) string {
	if !ok {
		return ""
	}
	return v
}

// fleetSize reads run.agents from the ConfigMap the StatefulSet mounts.
func fleetSize(t *testing.T, objs []object, ss object) int {
	t.Helper()
	var cmName string
	for _, v := range ss.Spec.Template.Spec.Volumes {
		if v.ConfigMap != nil {
			cmName = v.ConfigMap.Name
		}
	}
	if cmName == "" {
		t.Fatal("StatefulSet mounts no ConfigMap")
	}
	cm := find(t, objs, "ConfigMap", cmName) // the generated name, with its hash suffix
	var cfg struct {
		Run struct {
			Agents int `yaml:"agents"`
		} `yaml:"run"`
	}
	if err := yaml.Unmarshal([]byte(cm.Data["config.yaml"]), &cfg); err != nil {
		t.Fatalf("ConfigMap %s config.yaml: %v", cmName, err)
	}
	if cfg.Run.Agents < 2 {
		t.Fatalf("ConfigMap %s: run.agents = %d, want a fleet to split", cmName, cfg.Run.Agents)
	}
	return cfg.Run.Agents
}

// TestKubernetesWiring checks that the Service and PodMonitor find the pods and the metrics port.
func TestKubernetesWiring(t *testing.T) {
	objs := kustomize(t)
	ss := find(t, objs, "StatefulSet", "attestload")
	podLabels := ss.Spec.Template.Metadata.Labels
	matches := func(sel map[string]string) bool {
		for k, v := range sel {
			if podLabels[k] != v {
				return false
			}
		}
		return len(sel) > 0
	}
	if !matches(ss.Spec.Selector.MatchLabels) {
		t.Errorf("StatefulSet selector %v does not match its pod labels %v", ss.Spec.Selector.MatchLabels, podLabels)
	}
	pm := find(t, objs, "PodMonitor", "attestload")
	if !matches(pm.Spec.Selector.MatchLabels) {
		t.Errorf("PodMonitor selector %v does not match the pod labels %v", pm.Spec.Selector.MatchLabels, podLabels)
	}
	c := ss.Spec.Template.Spec.Containers[0]
	listen, ok := flagValue(c.Args, "--metrics-listen")
	if !ok {
		t.Fatal("the container does not set --metrics-listen: nothing to scrape")
	}
	for _, ep := range pm.Spec.PodMetricsEndpoints {
		i := slices.IndexFunc(c.Ports, func(p struct {
			Name          string `yaml:"name"`
			ContainerPort int    `yaml:"containerPort"`
		}) bool {
			return p.Name == ep.Port
		})
		if i < 0 {
			t.Errorf("PodMonitor scrapes port %q, which the container does not declare", ep.Port)
			continue
		}
		if !strings.HasSuffix(listen, ":"+strconv.Itoa(c.Ports[i].ContainerPort)) {
			t.Errorf("PodMonitor scrapes port %d, the daemon listens on %s", c.Ports[i].ContainerPort, listen)
		}
	}
	_ = findPrefix(t, objs, "ConfigMap", "attestload-config")
	svc := find(t, objs, "Service", "attestload")
	if !matches(svc.serviceSelector) {
		t.Errorf("Service selector %v does not match the pod labels %v", svc.serviceSelector, podLabels)
	}
	if svc.Spec.ClusterIP != "None" {
		t.Errorf("Service clusterIP = %q, want None (headless, for the StatefulSet's pod names)", svc.Spec.ClusterIP)
	}
}
