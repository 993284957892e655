package carriers

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/internal/controller/collision"
	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/multus"
)

// Cached is what every replica's cache holds of a pod, VM or VMI: the
// object's identity, and what kubemacpool reads of it, derived once by the
// cache transform (Slim) when the object arrives. Every replica caches
// every pod, VM and VMI of the cluster; a typed object is over a kilobyte
// before any field is set, and re-parsing annotations on each event costs
// again, so the cache keeps the results instead of the objects.
//
// The informers hand Cached to their event handlers. Nothing reads these
// kinds through the cache's Get or List (they would ask for the typed
// object and fail): the repair reads what an owner carries from the Index,
// and live from the API server.
type Cached struct {
	cachedKind
	// cachedMeta keeps identity and lifecycle, and a VM's finalizers (upstream
	// kubemacpool's is removed).
	cachedMeta
	// Carries is what the object carries (Of; nil: nothing), which the
	// index keeps too, and Uncounted how many more MACs it lists beyond
	// MaxCarried.
	Carries   *Carries
	Uncounted int
	// Reporter is what a running pod or VMI reports (collision.FromPod,
	// FromVMI); nil when it reports nothing.
	Reporter *collision.Reporter
	// Applied pairs each network of a pod's annotation that names a MAC
	// with what Multus reports for it (NetworkMACs); nil until Multus
	// reports.
	Applied []NetworkMAC
}

// Cached is what the informers hold and controller-runtime hands on.
var _ client.Object = (*Cached)(nil)

// GetObjectKind makes Cached a runtime.Object: its kind is one of three.
func (c *Cached) GetObjectKind() schema.ObjectKind { return &c.cachedKind }

// Reports is what the collision detector reads of a cached object.
func (c *Cached) Reports() (collision.Reporter, bool) {
	if c.Reporter == nil {
		return collision.Reporter{}, false
	}
	return *c.Reporter, true
}

// DeepCopyObject makes Cached a runtime.Object, as informers require.
func (c *Cached) DeepCopyObject() runtime.Object {
	out := &Cached{cachedKind: c.cachedKind, cachedMeta: c.cachedMeta.deepCopy(), Uncounted: c.Uncounted}
	out.Carries = c.Carries.deepCopy()
	out.Applied = append([]NetworkMAC(nil), c.Applied...)
	if c.Reporter != nil {
		r := *c.Reporter
		r.MACs = append([]mac.MAC(nil), r.MACs...)
		r.Peers = append(r.Peers[:0:0], r.Peers...)
		if r.LauncherOf != nil {
			l := *r.LauncherOf
			r.LauncherOf = &l
		}
		out.Reporter = &r
	}
	return out
}

var (
	podKind = schema.GroupVersionKind{Version: "v1", Kind: "Pod"}
	vmKind  = kubevirtv1.VirtualMachineGroupVersionKind
	vmiKind = kubevirtv1.VirtualMachineInstanceGroupVersionKind
)

// newCached is what the cache keeps of any of the kinds: identity, kind,
// and what the object carries, capped.
func newCached(m *metav1.ObjectMeta, kind schema.GroupVersionKind, carries *Carries) *Cached {
	c := &Cached{cachedMeta: metaOf(m)}
	c.SetGroupVersionKind(kind)
	c.Carries, c.Uncounted = capped(carries)
	return c
}

// reported is a collision report to keep: nil when there is none.
func reported(r collision.Reporter, ok bool) *collision.Reporter {
	if !ok {
		return nil
	}
	return &r
}

// cachedPod is what the cache keeps of a pod.
func cachedPod(pod *corev1.Pod) *Cached {
	c := newCached(&pod.ObjectMeta, podKind, ofPod(pod))
	c.Reporter = reported(collision.FromPod(pod))
	c.Applied = NetworkMACs(pod)
	return c
}

// cachedVM is what the cache keeps of a VM, and its finalizers (upstream
// kubemacpool's is removed).
func cachedVM(vm *kubevirtv1.VirtualMachine) *Cached {
	c := newCached(&vm.ObjectMeta, vmKind, ofVM(vm))
	c.SetFinalizers(vm.Finalizers)
	return c
}

// cachedVMI is what the cache keeps of a VMI.
func cachedVMI(vmi *kubevirtv1.VirtualMachineInstance) *Cached {
	c := newCached(&vmi.ObjectMeta, vmiKind, ofVMI(vmi))
	c.Reporter = reported(collision.FromVMI(vmi))
	return c
}

// NetworkMAC is one network of a pod's annotation that names a MAC, with
// the MAC Multus reports for that network's interface.
type NetworkMAC struct {
	Network   string
	Interface string
	Given     mac.MAC
	// Seen is zero when Multus reports no MAC, or no interface, for it.
	Seen mac.MAC
}

// NetworkMACs pairs the networks of a pod's annotation (the first
// collision.MaxReported, as the collision detector reads them) that name a
// MAC with what Multus reports for them. It is nil when Multus has reported
// nothing yet (no network-status: the pod's sandbox is not set up), and
// when the annotation does not parse.
func NetworkMACs(pod *corev1.Pod) []NetworkMAC {
	reported, ok := collision.NetworkStatus(pod)
	if !ok {
		return nil
	}
	elems, err := multus.Parse(pod.Annotations[multus.NetworksAnnotation], pod.Namespace)
	if err != nil {
		return nil
	}
	// A network listed twice has two status entries, in order; an element
	// naming its interface is matched by it.
	var out []NetworkMAC
	for i, j := range collision.MatchStatus(elems, reported) {
		e := &elems[i]
		given, err := mac.Parse(e.MAC())
		if err != nil {
			continue
		}
		var seen mac.MAC
		if j >= 0 {
			seen, _ = mac.Parse(reported[j].Mac) // unparsable: reported as no MAC
		}
		out = append(out, NetworkMAC{Network: e.NetworkKey(), Interface: e.Interface(), Given: given, Seen: seen})
	}
	return out
}
