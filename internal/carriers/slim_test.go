package carriers_test

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/carriers"
	"github.com/kubemacpool/kubemacpool/internal/controller/applied"
	"github.com/kubemacpool/kubemacpool/internal/controller/collision"
	"github.com/kubemacpool/kubemacpool/internal/controller/legacy"
	"github.com/kubemacpool/kubemacpool/internal/kubevirt"
	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/sticky"
)

// meta is the metadata of a whole object, with everything the slimming
// drops: managedFields, other annotations and labels, finalizers.
func meta(name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Namespace: "ns", Name: name, UID: types.UID("uid-" + name), ResourceVersion: "42",
		CreationTimestamp: metav1.NewTime(time.Unix(1_700_000_000, 0)),
		Labels:            map[string]string{"app": "x", "pod-template-hash": "abc"},
		Annotations:       map[string]string{"kubectl.kubernetes.io/last-applied-configuration": `{"big":"json"}`},
		ManagedFields:     []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply}},
	}
}

func slim[T any](t *testing.T, obj T) T {
	t.Helper()
	out, err := carriers.Slim(obj)
	if err != nil {
		t.Fatal(err)
	}
	return out.(T)
}

// cached is what the cache keeps of obj.
func cached(t *testing.T, obj any) *carriers.Cached {
	t.Helper()
	out, err := carriers.Slim(obj)
	if err != nil {
		t.Fatal(err)
	}
	c, ok := out.(*carriers.Cached)
	if !ok {
		t.Fatalf("the cache keeps a %T", out)
	}
	return c
}

// sameIdentity checks what the informers and event recorder read of a
// cached object: its kind, identity and lifecycle, and no managedFields.
func sameIdentity(t *testing.T, whole metav1.Object, c *carriers.Cached, kind string) {
	t.Helper()
	if c.GetObjectKind().GroupVersionKind().Kind != kind {
		t.Errorf("%s cached as kind %q", whole.GetName(), c.GetObjectKind().GroupVersionKind().Kind)
	}
	same(t, "identity of "+whole.GetName(),
		[]any{whole.GetNamespace(), whole.GetName(), whole.GetUID(), whole.GetResourceVersion(), whole.GetCreationTimestamp(), whole.GetDeletionTimestamp()},
		[]any{c.GetNamespace(), c.GetName(), c.GetUID(), c.GetResourceVersion(), c.GetCreationTimestamp(), c.GetDeletionTimestamp()})
	if c.GetManagedFields() != nil || c.GetAnnotations() != nil || c.GetLabels() != nil {
		t.Errorf("%s keeps managedFields, annotations or labels", whole.GetName())
	}
}

func same(t *testing.T, what string, whole, slimmed any) {
	t.Helper()
	if !reflect.DeepEqual(whole, slimmed) {
		t.Errorf("%s differs after slimming:\nwhole %+v\nslim  %+v", what, whole, slimmed)
	}
}

// What the code derives from a cached object is what it would derive from
// the whole one, for each kind kubemacpool caches.
func TestSlimKeepsWhatIsRead(t *testing.T) {
	vmi := &kubevirtv1.VirtualMachineInstance{ObjectMeta: meta("vm")}
	vmi.OwnerReferences = []metav1.OwnerReference{{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachine", Name: "vm", UID: "uid-vm", Controller: ptr.To(true)}}
	vmi.Spec.Domain.Devices.Interfaces = []kubevirtv1.Interface{
		{Name: "default", MacAddress: "02:00:00:00:00:10", InterfaceBindingMethod: kubevirtv1.InterfaceBindingMethod{Masquerade: &kubevirtv1.InterfaceMasquerade{}}},
		{Name: "ovs", MacAddress: "02:00:00:00:00:11", InterfaceBindingMethod: kubevirtv1.InterfaceBindingMethod{Bridge: &kubevirtv1.InterfaceBridge{}}},
		{Name: "udn", Binding: &kubevirtv1.PluginBinding{Name: "l2bridge"}},
	}
	vmi.Spec.Networks = []kubevirtv1.Network{
		{Name: "default", NetworkSource: kubevirtv1.NetworkSource{Pod: &kubevirtv1.PodNetwork{}}},
		{Name: "ovs", NetworkSource: kubevirtv1.NetworkSource{Multus: &kubevirtv1.MultusNetwork{NetworkName: "ns/ovs"}}},
		{Name: "udn", NetworkSource: kubevirtv1.NetworkSource{Pod: &kubevirtv1.PodNetwork{}}},
	}
	vmi.Spec.Domain.Resources.Requests = corev1.ResourceList{}
	vmi.Status.Phase = kubevirtv1.Running
	vmi.Status.Interfaces = []kubevirtv1.VirtualMachineInstanceNetworkInterface{{Name: "ovs", MAC: "02:00:00:00:00:12"}, {Name: "udn", MAC: "0a:58:00:00:00:01"}}
	vmi.Status.MigrationState = &kubevirtv1.VirtualMachineInstanceMigrationState{MigrationUID: "m"}
	vmi.Status.NodeName = "node-1"

	vm := &kubevirtv1.VirtualMachine{ObjectMeta: meta("vm")}
	vm.Finalizers = []string{legacy.Finalizer, "example.com/keep"}
	vm.Spec.RunStrategy = ptr.To(kubevirtv1.RunStrategyWaitAsReceiver)
	vm.Spec.Template = &kubevirtv1.VirtualMachineInstanceTemplateSpec{Spec: *vmi.Spec.DeepCopy()}

	launcher := &corev1.Pod{ObjectMeta: meta("virt-launcher-vm-x")}
	launcher.Labels["kubevirt.io"] = "virt-launcher"
	launcher.OwnerReferences = []metav1.OwnerReference{{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachineInstance", Name: "vm", UID: vmi.UID, Controller: ptr.To(true)}}
	pod := &corev1.Pod{ObjectMeta: meta("p")}
	for _, p := range []*corev1.Pod{launcher, pod} {
		p.Annotations["k8s.v1.cni.cncf.io/networks"] = `[{"name":"ovs","interface":"net1","mac":"02:00:00:00:00:11"},{"name":"other","mac":"02:00:00:00:00:13"}]`
		p.Annotations["k8s.v1.cni.cncf.io/network-status"] = `[{"name":"cbr0","mac":"0a:58:00:00:00:09","default":true},{"name":"ns/ovs","interface":"net1","mac":"02:00:00:00:00:11"},{"name":"ns/other","interface":"net2","mac":"0a:58:00:00:00:0a"}]`
		p.Spec.Containers = []corev1.Container{{Name: "c", Image: "i"}}
		p.Spec.NodeName = "node-1"
		p.Status.Phase = corev1.PodRunning
	}

	// A pod padding both annotations: 40 networks (some twice, some by
	// interface), 300 status entries.
	padded := &corev1.Pod{ObjectMeta: meta("padded")}
	padded.Status.Phase = corev1.PodRunning
	var networks, status []string
	for i := range 40 {
		iface := ""
		if i%3 == 0 {
			iface = fmt.Sprintf(`,"interface":"net%d"`, i)
		}
		networks = append(networks, fmt.Sprintf(`{"name":"n%d"%s,"mac":"02:00:00:00:01:%02x","ips":["10.0.0.%d/24"]}`, i%25, iface, i, i))
	}
	for j := range 300 {
		status = append(status, fmt.Sprintf(`{"name":"ns/n%d","interface":"net%d","mac":"02:00:00:00:%02x:%02x","default":%v,"ips":["10.0.0.1"]}`, j%30, j%45, j/256, j%256, j%50 == 0))
	}
	padded.Annotations["k8s.v1.cni.cncf.io/networks"] = "[" + strings.Join(networks, ",") + "]"
	padded.Annotations["k8s.v1.cni.cncf.io/networks-status"] = "[" + strings.Join(status, ",") + "]" // the older spelling
	if r, _ := collision.FromPod(padded); len(r.MACs) == 0 || r.Ignored == 0 {
		t.Fatalf("the padded pod reports nothing: %+v", r)
	}

	for _, p := range []*corev1.Pod{launcher, pod, padded} {
		c := cached(t, p)
		same(t, "carriers of "+p.Name, carriers.Of(p), carriers.Of(c))
		r1, ok1 := collision.FromPod(p)
		r2, ok2 := c.Reports()
		same(t, "collision report of "+p.Name, []any{r1, ok1}, []any{r2, ok2})
		gave := func(m mac.MAC) bool { return true }
		same(t, "MACs not applied of "+p.Name, applied.Check(carriers.NetworkMACs(p), gave), applied.Check(c.Applied, gave))
		sameIdentity(t, p, c, "Pod")
	}

	c := cached(t, vm)
	same(t, "carriers of the VM", carriers.Of(vm), carriers.Of(c))
	if !kubevirt.IsMigrationReceiver(vm) || !carriers.Of(c)[0].ForReceiver {
		t.Error("the VM's carriers do not say it waits as a migration receiver")
	}
	same(t, "upstream's finalizer", controllerutil.ContainsFinalizer(vm, legacy.Finalizer), controllerutil.ContainsFinalizer(c, legacy.Finalizer))
	sameIdentity(t, vm, c, "VirtualMachine")

	c = cached(t, vmi)
	same(t, "carriers of the VMI", carriers.Of(vmi), carriers.Of(c))
	r1, ok1 := collision.FromVMI(vmi)
	r2, ok2 := c.Reports()
	same(t, "collision report of the VMI", []any{r1, ok1}, []any{r2, ok2})
	if vm, ok := kubevirt.ControllingVM(vmi); !ok || carriers.Of(c)[0].For.UID != vm.UID {
		t.Error("the VMI's carriers are not on behalf of its VM")
	}
	sameIdentity(t, vmi, c, "VirtualMachineInstance")

	// A copy is the same and shares nothing that could be written.
	copied := c.DeepCopyObject().(*carriers.Cached)
	same(t, "a deep copy", c, copied)
	copied.Carries.MACs[0].Network, copied.Reporter.MACs[0] = "changed", 1
	copied.Carries.For.Name = "changed"
	if c.Carries.MACs[0].Network == "changed" || c.Carries.For.Name == "changed" || c.Reporter.MACs[0] == 1 {
		t.Error("a deep copy shares its carriers or its report with the original")
	}
	// The transform is idempotent (client-go may apply it to an object it
	// already transformed).
	again, err := carriers.Slim(c)
	if err != nil || again != any(c) {
		t.Errorf("Slim of a Cached = %v, %v", again, err)
	}

	set := &appsv1.StatefulSet{ObjectMeta: meta("web")}
	set.Annotations[sticky.OptOutAnnotation] = "true"
	set.Spec.Replicas = ptr.To(int32(3))
	set.Spec.Ordinals = &appsv1.StatefulSetOrdinals{Start: 1}
	set.Spec.Template.Spec.Containers = []corev1.Container{{Name: "c", Image: "i"}}
	ss := slim(t, set)
	for ordinal := int32(0); ordinal < 5; ordinal++ {
		o := v1alpha1.Owner{Kind: sticky.Kind, Namespace: "ns", Name: "web", UID: set.UID, Ordinal: ordinal}
		same(t, "StatefulSet keeps its ordinal", sticky.Keeps(set, o), sticky.Keeps(ss, o))
	}
	same(t, "StatefulSet opt-out", sticky.OptedOut(set), sticky.OptedOut(ss))
	if len(ss.Spec.Template.Spec.Containers) != 0 || ss.ManagedFields != nil {
		t.Error("the StatefulSet's pod template or managedFields are cached")
	}

	ns := &corev1.Namespace{ObjectMeta: meta("team")}
	sn := slim(t, ns.DeepCopy())
	same(t, "namespace labels", ns.Labels, sn.Labels)
	if sn.ManagedFields != nil {
		t.Error("a namespace keeps managedFields")
	}
}

// An object listing more than MaxCarried MACs is taken to carry the first
// MaxCarried, the same whether read whole or from the cache, and the rest
// is counted.
func TestCarriedIsCapped(t *testing.T) {
	p := &corev1.Pod{ObjectMeta: meta("many")}
	var networks []string
	for i := range carriers.MaxCarried + 44 {
		networks = append(networks, fmt.Sprintf(`{"name":"n","mac":"02:00:00:00:%02x:%02x"}`, i/256, i%256))
	}
	p.Annotations["k8s.v1.cni.cncf.io/networks"] = "[" + strings.Join(networks, ",") + "]"
	c := cached(t, p)
	if c.Carries.Len() != carriers.MaxCarried || c.Uncounted != 44 {
		t.Fatalf("cached %d carried, %d uncounted; want %d, 44", c.Carries.Len(), c.Uncounted, carriers.MaxCarried)
	}
	if cap(c.Carries.MACs) != carriers.MaxCarried {
		t.Errorf("the cached list keeps room for %d MACs: the whole list stays in memory", cap(c.Carries.MACs))
	}
	same(t, "carriers of a pod listing too many", carriers.Of(p), carriers.Of(c))
	if last := c.Carries.MACs[carriers.MaxCarried-1].MAC; last != mac.MAC(0x0200000000ff) {
		t.Errorf("the last MAC counted is %s, want the 256th listed", last)
	}
}

// The kinds whose informers go without a namespace index are exactly the
// kinds the cache keeps as Cached, which nothing can list.
func TestBecomesCachedIsWhatSlimMakes(t *testing.T) {
	for _, obj := range []runtime.Object{
		&corev1.Pod{}, &kubevirtv1.VirtualMachine{}, &kubevirtv1.VirtualMachineInstance{},
		&appsv1.StatefulSet{}, &corev1.Namespace{}, &corev1.ConfigMap{}, &v1alpha1.MACBlock{},
	} {
		out, err := carriers.Slim(obj)
		if err != nil {
			t.Fatal(err)
		}
		_, cached := out.(*carriers.Cached)
		if got := carriers.BecomesCached(obj); got != cached {
			t.Errorf("%T: BecomesCached says %v, Slim makes a %T", obj, got, out)
		}
	}
}
