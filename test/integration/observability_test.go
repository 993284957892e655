package integration

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/kubemacpool/kubemacpool/internal/manager"
	"github.com/kubemacpool/kubemacpool/internal/testenv"
)

// scrape reads the metrics endpoint as Prometheus would, keyed by
// name{label="value",...} (labels sorted), histograms by their count (and
// name_sum{...} by their sum).
func scrape(g Gomega, addr string) map[string]float64 {
	resp, err := http.Get("http://" + addr + "/metrics")
	g.Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	g.Expect(err).NotTo(HaveOccurred())
	out := map[string]float64{}
	for name, f := range families {
		for _, m := range f.Metric {
			var labels []string
			for _, l := range m.Label {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(labels)
			key := name
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[key] = m.Counter.GetValue()
			case dto.MetricType_GAUGE:
				out[key] = m.Gauge.GetValue()
			case dto.MetricType_HISTOGRAM:
				out[key] = float64(m.Histogram.GetSampleCount())
				out[strings.Replace(key, name, name+"_sum", 1)] = m.Histogram.GetSampleSum()
			}
		}
	}
	return out
}

func withMetrics(t testing.TB) (string, *running) { return withMetricsOn(t, env) }

// withMetricsOn starts a replica serving plain-HTTP metrics against e.
func withMetricsOn(t testing.TB, e *testenv.Env) (string, *running) {
	return withMetricsOpts(t, e, func(*manager.Options) {})
}

// withMetricsOpts is withMetricsOn with options changed by change.
func withMetricsOpts(t testing.TB, e *testenv.Env, change func(*manager.Options)) (string, *running) {
	o := optionsFor(t, e)
	change(&o)
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	o.MetricsAddr = fmt.Sprintf("127.0.0.1:%d", port)
	o.MetricsSecure = false
	return o.MetricsAddr, startManagerOn(t, e, o)
}

// The metrics move as allocations, refusals, releases and range errors happen.
func TestMetricsFollowAllocations(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	addr, _ := withMetrics(t)
	ns := newNamespace(t, nil)
	setRange(t, map[string]string{"START_POOL_RANGE": "02:a0:00:00:00:00", "END_POOL_RANGE": "02:a0:00:00:00:03"})
	g.Eventually(func(g Gomega) { g.Expect(scrape(g, addr)["kmp_pool_size"]).To(Equal(4.0)) }).WithTimeout(10 * time.Second).Should(Succeed())

	before := scrape(g, addr)
	delta := func(g Gomega, key string) float64 { return scrape(g, addr)[key] - before[key] }

	a := createPod(t, pod(ns, "a", `[{"name":"n"}]`))
	createPod(t, pod(ns, "b", `[{"name":"n","mac":"02:a1:00:00:00:01"}]`))
	g.Expect(env.Client.Create(ctx, pod(ns, "c", `[{"name":"n","mac":"02:a1:00:00:00:01"}]`))).NotTo(Succeed())
	g.Expect(env.Client.Create(ctx, pod(ns, "d", `[{"name":"n","mac":"03:00:00:00:00:01"}]`))).NotTo(Succeed())
	g.Expect(env.Client.Create(ctx, pod(ns, "e", `not json[`))).NotTo(Succeed())
	for i := 0; i < 3; i++ {
		createPod(t, pod(ns, fmt.Sprintf("fill-%d", i), `[{"name":"n"}]`))
	}
	g.Expect(env.Client.Create(ctx, pod(ns, "full", `[{"name":"n"}]`))).NotTo(Succeed())

	g.Expect(delta(g, `kmp_allocations_total{outcome="allocated"}`)).To(Equal(4.0))
	g.Expect(delta(g, `kmp_allocations_total{outcome="user-chosen"}`)).To(Equal(1.0))
	g.Expect(delta(g, `kmp_allocations_total{outcome="refused-held"}`)).To(Equal(1.0))
	g.Expect(delta(g, `kmp_allocations_total{outcome="refused-invalid"}`)).To(Equal(2.0))
	g.Expect(delta(g, `kmp_allocations_total{outcome="exhausted"}`)).To(Equal(1.0))
	g.Expect(delta(g, `kmp_admission_duration_seconds{resource="pods"}`)).To(BeNumerically(">=", 9))
	g.Expect(scrape(g, addr)["kmp_pool_held"]).To(Equal(4.0))
	g.Eventually(func(g Gomega) { g.Expect(scrape(g, addr)["kmp_reservations_pending"]).To(Equal(0.0)) }).WithTimeout(10 * time.Second).Should(Succeed())

	g.Expect(env.Client.Delete(ctx, a)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(delta(g, "kmp_releases_total")).To(Equal(1.0))
		g.Expect(scrape(g, addr)["kmp_pool_held"]).To(Equal(3.0))
	}).WithTimeout(15 * time.Second).Should(Succeed())

	setRange(t, map[string]string{"START_POOL_RANGE": "junk", "END_POOL_RANGE": "02:a0:00:00:00:03"})
	g.Eventually(func(g Gomega) { g.Expect(delta(g, "kmp_range_config_errors_total")).To(BeNumerically(">=", 1)) }).WithTimeout(10 * time.Second).Should(Succeed())
}

// docs/metrics.md lists exactly the kmp_ metrics the code registers.
func TestMetricsDocumented(t *testing.T) {
	g := NewWithT(t)
	addr, _ := withMetrics(t)
	registered := map[string]bool{}
	for key := range scrape(g, addr) {
		name, _, _ := strings.Cut(key, "{")
		if strings.HasPrefix(name, "kmp_") && !strings.HasSuffix(name, "_sum") {
			registered[name] = true
		}
	}
	// Vectors without samples are not gathered: name them from the source.
	for _, name := range []string{"kmp_mac_collisions", "kmp_allocations_total", "kmp_admission_duration_seconds"} {
		registered[name] = true
	}
	doc, err := os.ReadFile(filepath.Join(env.Root, "docs", "metrics.md"))
	g.Expect(err).NotTo(HaveOccurred())
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("`(kmp_[a-z_]+)`").FindAllStringSubmatch(string(doc), -1) {
		documented[m[1]] = true
	}
	source, err := os.ReadFile(filepath.Join(env.Root, "internal", "metrics", "metrics.go"))
	g.Expect(err).NotTo(HaveOccurred())
	for _, m := range regexp.MustCompile(`"(kmp_[a-z_]+)"`).FindAllStringSubmatch(string(source), -1) {
		registered[m[1]] = true
	}
	g.Expect(documented).To(Equal(registered), "docs/metrics.md and internal/metrics disagree")
}

// runningPod creates a pod asking for network ovs with the MAC, in a
// namespace kubemacpool ignores (so it keeps the MAC it asked for), and
// marks it Running with the Multus network-status that reports it.
func runningPod(t testing.TB, namespace, name, mac string) *corev1.Pod {
	t.Helper()
	return markRunning(t, createPod(t, pod(namespace, name, `[{"name":"ovs","mac":"`+mac+`"}]`)), mac)
}

// markRunning marks a pod on network ovs Running, reporting the MAC.
func markRunning(t testing.TB, p *corev1.Pod, mac string) *corev1.Pod {
	t.Helper()
	p.Status.Phase = corev1.PodRunning
	p.Annotations["k8s.v1.cni.cncf.io/network-status"] = `[{"name":"cbr0","mac":"0a:58:0a:f4:00:01","default":true},{"name":"` + p.Namespace + `/ovs","interface":"net1","mac":"` + strings.ToUpper(mac) + `"}]`
	if err := env.Client.Update(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	p.Status.Phase = corev1.PodRunning
	if err := env.Client.Status().Update(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	return p
}

// runningVMI creates a VMI with interface ovs on the Multus network ovs
// and reports it Running with the MAC there.
func runningVMI(t testing.TB, namespace, name, mac string) *kubevirtv1.VirtualMachineInstance {
	t.Helper()
	vmi := &kubevirtv1.VirtualMachineInstance{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: vmSpec(iface{"ovs", "bridge", "ovs", ""})}
	if err := env.Client.Create(context.Background(), vmi); err != nil {
		t.Fatal(err)
	}
	return reportRunning(t, vmi, "ovs", mac, "")
}

// reportRunning sets a VMI's status: Running, the MAC on the interface,
// and the migration it is part of, if any.
func reportRunning(t testing.TB, vmi *kubevirtv1.VirtualMachineInstance, iface, mac string, migration types.UID) *kubevirtv1.VirtualMachineInstance {
	t.Helper()
	vmi.Status.Phase = kubevirtv1.Running
	vmi.Status.Interfaces = []kubevirtv1.VirtualMachineInstanceNetworkInterface{{Name: iface, MAC: mac}}
	if migration != "" {
		vmi.Status.MigrationState = &kubevirtv1.VirtualMachineInstanceMigrationState{MigrationUID: migration}
	}
	if err := env.Client.Status().Update(context.Background(), vmi); err != nil {
		t.Fatal(err)
	}
	return vmi
}

// Pod-pod, pod-VMI and VMI-VMI collisions on running workloads raise a
// MACCollision event on each object and the kmp_mac_collisions gauge, both
// cleared when one is deleted; the two VMIs of a migration are not one.
func TestCollisionsOnRunningWorkloads(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	addr, _ := withMetrics(t)
	ns := newNamespace(t, map[string]string{"mutatepods.kubemacpool.io": "ignore", "mutatevirtualmachines.kubemacpool.io": "ignore"})
	gauge := func(g Gomega, m string) (float64, bool) {
		v, ok := scrape(g, addr)[`kmp_mac_collisions{mac="`+m+`"}`]
		return v, ok
	}
	expectCollision := func(m string, names ...string) {
		t.Helper()
		g.Eventually(func(g Gomega) {
			v, ok := gauge(g, m)
			g.Expect(ok).To(BeTrue(), "gauge for %s", m)
			g.Expect(v).To(Equal(float64(len(names))))
			for _, n := range names {
				events := eventsAbout(g, ns, n, "MACCollision")
				g.Expect(events).NotTo(BeEmpty(), "event on %s", n)
				g.Expect(events[0].Type).To(Equal(corev1.EventTypeWarning))
				g.Expect(events[0].Note).To(ContainSubstring(m))
			}
		}).WithTimeout(15 * time.Second).Should(Succeed())
	}
	expectCleared := func(m string) {
		t.Helper()
		g.Eventually(func(g Gomega) {
			_, ok := gauge(g, m)
			g.Expect(ok).To(BeFalse(), "gauge for %s must be cleared", m)
		}).WithTimeout(15 * time.Second).Should(Succeed())
	}

	// pod-pod, MACs spelled differently
	p1 := runningPod(t, ns, "pp-1", "02:b0:00:00:00:01")
	runningPod(t, ns, "pp-2", "02:B0:00:00:00:01")
	expectCollision("02:b0:00:00:00:01", "pp-1", "pp-2")
	g.Expect(env.Client.Delete(ctx, p1)).To(Succeed())
	expectCleared("02:b0:00:00:00:01")

	// pod-VMI
	runningPod(t, ns, "pv-pod", "02:b0:00:00:00:02")
	vmi := runningVMI(t, ns, "pv-vmi", "02-b0-00-00-00-02")
	expectCollision("02:b0:00:00:00:02", "pv-pod", "pv-vmi")
	g.Expect(env.Client.Delete(ctx, vmi)).To(Succeed())
	expectCleared("02:b0:00:00:00:02")

	// VMI-VMI
	v1 := runningVMI(t, ns, "vv-1", "02:b0:00:00:00:03")
	vv2 := runningVMI(t, ns, "vv-2", "02:b0:00:00:00:03")
	expectCollision("02:b0:00:00:00:03", "vv-1", "vv-2")
	g.Expect(env.Client.Delete(ctx, v1)).To(Succeed())
	expectCleared("02:b0:00:00:00:03")

	// A pod claiming to be the virt-launcher pod of a VMI is judged as that
	// VMI only if the VMI reports the same MAC: vv-2's real launcher pod is
	// no collision, a pod claiming vv-2 while carrying another's MAC is.
	// (The two VMIs of a live migration: TestMigrationReceiverTakesSourceMACs.)
	launcher := func(name, m string) *corev1.Pod {
		p := pod(ns, name, `[{"name":"ovs","mac":"`+m+`"}]`)
		p.Labels = map[string]string{"kubevirt.io": "virt-launcher"}
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachineInstance", Name: vv2.Name, UID: vv2.UID, Controller: ptr.To(true)}}
		return markRunning(t, createPod(t, p), m)
	}
	launcher("virt-launcher-vv-2-abcde", "02:b0:00:00:00:03")
	g.Consistently(func(g Gomega) {
		_, ok := gauge(g, "02:b0:00:00:00:03")
		g.Expect(ok).To(BeFalse(), "a VMI and its own launcher pod collide")
	}).WithTimeout(3 * time.Second).Should(Succeed())
	runningVMI(t, ns, "victim", "02:b0:00:00:00:05")
	launcher("virt-launcher-fake-abcde", "02:b0:00:00:00:05")
	expectCollision("02:b0:00:00:00:05", "victim", "virt-launcher-fake-abcde")

	// Interfaces kubemacpool does not manage are not compared: two VMIs on
	// a primary user-defined network report the MAC OVN gave both pods'
	// interfaces (bound by a plugin, not masquerade).
	for _, name := range []string{"udn-1", "udn-2"} {
		vmi := &kubevirtv1.VirtualMachineInstance{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: vmSpec(iface{"default", "plugin", "pod", ""})}
		vmi.Spec.Domain.Devices.Interfaces[0].Bridge = nil
		vmi.Spec.Domain.Devices.Interfaces[0].Binding = &kubevirtv1.PluginBinding{Name: "l2bridge"}
		g.Expect(env.Client.Create(ctx, vmi)).To(Succeed())
		reportRunning(t, vmi, "default", "0a:58:0a:80:00:05", "")
	}
	g.Consistently(func(g Gomega) {
		_, ok := gauge(g, "0a:58:0a:80:00:05")
		g.Expect(ok).To(BeFalse(), "OVN's pod-network MAC reported as a collision")
		g.Expect(eventsAbout(g, ns, "udn-1", "MACCollision")).To(BeEmpty())
	}).WithTimeout(3 * time.Second).Should(Succeed())
}
