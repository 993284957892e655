package main

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/multus"
	"github.com/kubemacpool/kubemacpool/internal/scope"
)

// workload is one kind of object kubemacpool gives MACs to, with what the
// benchmark needs to create it with and without kubemacpool in the path.
type workload struct {
	name     string // in the table: "pod", "VM"
	shape    string // in the table: what each object asks for
	ignore   string // namespace label that makes the API server skip the webhook
	resource string // in the API server's request counts, for its own creates
	// object is a new object asking for MACs on two secondary networks.
	object  func(namespace, name string) client.Object
	targets targets
}

// targets are what the design aims for, shown next to the figures (empty:
// none set). The program only prints them; nothing fails for a miss.
type targets struct {
	added      string // added sequential latency
	seqWrites  string // API writes per object besides its own, sequential
	throughput string // concurrent throughput against the no-webhook rate
	conWrites  string // API writes per object besides its own, concurrent
}

var (
	pods = workload{
		name: "pod", shape: "2 networks", ignore: scope.PodsLabel, resource: "pods", object: twoNetworkPod,
		targets: stockTargets,
	}
	vms = workload{name: "VM", shape: "2 interfaces", ignore: scope.VirtualMachinesLabel, resource: "virtualmachines", object: twoInterfaceVM,
		targets: stockTargets}
	// stockTargets: the admission writes nothing; refills of the stock and
	// re-owns to the objects, batched per block, are all it costs.
	stockTargets = targets{
		added:      "p50 ≤ 2.5 ms, p99 ≤ 6 ms",
		seqWrites:  "≤ 0.1",
		throughput: "≥ 75% of the no-webhook rate",
		conWrites:  "≤ 0.1",
	}
)

// series names the i-th object of a series, so no two series collide.
func (w workload) series(namespace, prefix string) build {
	return func(i int) client.Object { return w.object(namespace, fmt.Sprintf("%s-%d", prefix, i)) }
}

func newPod(namespace, name, networks string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:   namespace,
			Name:        name,
			Annotations: map[string]string{multus.NetworksAnnotation: networks},
		},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name:  "samplepod",
			Image: "quay.io/schseba/kubemacpool-test:latest",
		}}},
	}
}

func twoNetworkPod(namespace, name string) client.Object {
	return newPod(namespace, name, `[{"name":"net-a"},{"name":"net-b"}]`)
}

// carriesMACs reports whether a pod came back from a create with a MAC on
// every network: it went through kubemacpool's webhook.
func carriesMACs(pod client.Object) bool {
	macs := podMACs(pod.GetNamespace(), pod.GetAnnotations())
	for _, m := range macs {
		if m == "" {
			return false
		}
	}
	return len(macs) > 0
}

// podWithMACs is a pod as it would be if created before kubemacpool ran:
// a network for each MAC, the MAC already written.
func podWithMACs(namespace, name string, macs []mac.MAC) client.Object {
	networks := make([]string, len(macs))
	for k, m := range macs {
		networks[k] = fmt.Sprintf(`{"name":"net-%d","mac":%q}`, k, m)
	}
	return newPod(namespace, name, "["+strings.Join(networks, ",")+"]")
}

// bridge is a VM interface on a Multus network with bridge binding, the
// kind kubemacpool gives a MAC whatever the binding.
type bridge struct{ name, network, mac string }

func newVM(namespace, name string, interfaces ...bridge) *kubevirtv1.VirtualMachine {
	var spec kubevirtv1.VirtualMachineInstanceSpec
	for _, b := range interfaces {
		spec.Domain.Devices.Interfaces = append(spec.Domain.Devices.Interfaces, kubevirtv1.Interface{
			Name:                   b.name,
			MacAddress:             b.mac,
			InterfaceBindingMethod: kubevirtv1.InterfaceBindingMethod{Bridge: &kubevirtv1.InterfaceBridge{}},
		})
		spec.Networks = append(spec.Networks, kubevirtv1.Network{
			Name:          b.name,
			NetworkSource: kubevirtv1.NetworkSource{Multus: &kubevirtv1.MultusNetwork{NetworkName: b.network}},
		})
	}
	return &kubevirtv1.VirtualMachine{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: kubevirtv1.VirtualMachineSpec{
			// Halted: nothing would run it here anyway, and a real cluster
			// would not start a VMI for it either.
			RunStrategy: ptr.To(kubevirtv1.RunStrategyHalted),
			Template:    &kubevirtv1.VirtualMachineInstanceTemplateSpec{Spec: spec},
		},
	}
}

func twoInterfaceVM(namespace, name string) client.Object {
	return newVM(namespace, name, bridge{"a", "net-a", ""}, bridge{"b", "net-b", ""})
}

// vmWithMAC is a VM as it would be if created before kubemacpool ran.
func vmWithMAC(namespace, name string, m mac.MAC) client.Object {
	return newVM(namespace, name, bridge{"a", "net-a", m.String()})
}
