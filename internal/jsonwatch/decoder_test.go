package jsonwatch

import (
	"bytes"
	stdjson "encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/runtime/serializer/streaming"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	restclientwatch "k8s.io/client-go/rest/watch"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
)

func testScheme(t testing.TB) *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1alpha1.AddToScheme, kubevirtv1.AddToScheme} {
		if err := add(s); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

var when = metav1.NewTime(time.Date(2026, 12, 7, 10, 11, 12, 0, time.UTC))

func meta(name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name: name, Namespace: "ns", UID: types.UID("uid-" + name), ResourceVersion: "42", Generation: 3,
		CreationTimestamp: when, DeletionTimestamp: &when,
		Labels:      map[string]string{"app": "x", "kubevirt.io/created-by": "abc"},
		Annotations: map[string]string{"k8s.v1.cni.cncf.io/networks": `[{"name":"a","mac":"02:00:00:00:00:01"}]`, "é": "ü\u2028"},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachine", Name: "vm",
			UID: "vm-uid", Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}},
		Finalizers: []string{"kubevirt.io/virtualMachineControllerFinalize", "k8s.v1.cni.cncf.io/kubeMacPoolFinalizer"},
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationUpdate,
			APIVersion: "kubevirt.io/v1", Time: &when, FieldsType: "FieldsV1",
			FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{"f:labels":{".":{},"f:app":{}}}}`)}}},
	}
}

func spec() kubevirtv1.VirtualMachineInstanceSpec {
	return kubevirtv1.VirtualMachineInstanceSpec{
		Domain: kubevirtv1.DomainSpec{
			Resources: kubevirtv1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")}},
			Devices: kubevirtv1.Devices{
				Interfaces: []kubevirtv1.Interface{
					{Name: "default", InterfaceBindingMethod: kubevirtv1.InterfaceBindingMethod{Masquerade: &kubevirtv1.InterfaceMasquerade{}},
						MacAddress: "02:00:00:00:00:0a"},
					{Name: "red", InterfaceBindingMethod: kubevirtv1.InterfaceBindingMethod{Bridge: &kubevirtv1.InterfaceBridge{}},
						MacAddress: "02:00:00:00:00:0b", Model: "virtio", PciAddress: "0000:81:00.1"},
					{Name: "blue", Binding: &kubevirtv1.PluginBinding{Name: "passt"}, MacAddress: "02:00:00:00:00:0c"},
					{Name: "green", InterfaceBindingMethod: kubevirtv1.InterfaceBindingMethod{SRIOV: &kubevirtv1.InterfaceSRIOV{}}},
				},
				Disks: []kubevirtv1.Disk{{Name: "root", DiskDevice: kubevirtv1.DiskDevice{Disk: &kubevirtv1.DiskTarget{Bus: "virtio"}}}},
			},
		},
		Networks: []kubevirtv1.Network{
			{Name: "default", NetworkSource: kubevirtv1.NetworkSource{Pod: &kubevirtv1.PodNetwork{}}},
			{Name: "red", NetworkSource: kubevirtv1.NetworkSource{Multus: &kubevirtv1.MultusNetwork{NetworkName: "other/red"}}},
			{Name: "blue", NetworkSource: kubevirtv1.NetworkSource{Multus: &kubevirtv1.MultusNetwork{NetworkName: "blue", Default: true}}},
			{Name: "green", NetworkSource: kubevirtv1.NetworkSource{Multus: &kubevirtv1.MultusNetwork{NetworkName: "green"}}},
		},
		Volumes: []kubevirtv1.Volume{{Name: "root", VolumeSource: kubevirtv1.VolumeSource{
			CloudInitNoCloud: &kubevirtv1.CloudInitNoCloudSource{UserData: "#cloud-config\npassword: \"x\"\n"}}}},
	}
}

// fixtures are one object of each watched kind with every field
// kubemacpool reads, and more.
func fixtures() []runtime.Object {
	tmpl := spec()
	vmi := &kubevirtv1.VirtualMachineInstance{ObjectMeta: meta("vmi"), Spec: spec()}
	// KubeVirt's own decoding tidies nameservers (to 10.0.0.1).
	vmi.Spec.DNSConfig = &corev1.PodDNSConfig{Nameservers: []string{"010.000.000.001"}}
	vmi.Status = kubevirtv1.VirtualMachineInstanceStatus{
		Phase:      kubevirtv1.Running,
		Interfaces: []kubevirtv1.VirtualMachineInstanceNetworkInterface{{Name: "red", MAC: "02:00:00:00:00:0b", IP: "10.0.0.1", IPs: []string{"10.0.0.1"}}},
		MigrationState: &kubevirtv1.VirtualMachineInstanceMigrationState{
			MigrationUID: "mig",
			SourceState: &kubevirtv1.VirtualMachineInstanceMigrationSourceState{VirtualMachineInstanceCommonMigrationState: kubevirtv1.VirtualMachineInstanceCommonMigrationState{
				VirtualMachineInstanceUID: ptr.To(types.UID("src"))}},
		},
	}
	return []runtime.Object{
		&v1alpha1.MACBlock{ObjectMeta: metav1.ObjectMeta{Name: "02-00-00-00-00-40", ResourceVersion: "7", CreationTimestamp: when},
			Spec: v1alpha1.MACBlockSpec{First: "02:00:00:00:00:40", Last: "02:00:00:00:00:7f", Held: 2, Entries: []v1alpha1.MACBlockEntry{
				{Offset: 0, MAC: "02:00:00:00:00:40", Owner: v1alpha1.Owner{Kind: "Pod", Namespace: "ns", GenerateName: "web-"},
					Network: "ns/red", Interface: "net1", Reserved: metav1.NewMicroTime(time.Date(2026, 12, 7, 1, 2, 3, 456789000, time.UTC))},
				{Offset: 63, MAC: "02:00:00:00:00:7f", Owner: v1alpha1.Owner{Kind: "StatefulSet", Namespace: "ns", Name: "db", UID: "u", Ordinal: 4},
					Reserved: metav1.NewMicroTime(when.Time), Adopted: true},
			}}},
		&kubevirtv1.VirtualMachine{ObjectMeta: meta("vm"), Spec: kubevirtv1.VirtualMachineSpec{
			RunStrategy: ptr.To(kubevirtv1.RunStrategyWaitAsReceiver),
			Template:    &kubevirtv1.VirtualMachineInstanceTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"a": "b"}}, Spec: tmpl},
		}, Status: kubevirtv1.VirtualMachineStatus{Ready: true, PrintableStatus: kubevirtv1.VirtualMachineStatusRunning}},
		vmi,
	}
}

func gvkOf(t testing.TB, scheme *runtime.Scheme, obj runtime.Object) schema.GroupVersionKind {
	gvks, _, err := scheme.ObjectKinds(obj)
	if err != nil {
		t.Fatal(err)
	}
	return gvks[0]
}

// stream writes events as the API server does: {"type":...,"object":...}.
func stream(t testing.TB, scheme *runtime.Scheme, events ...watch.Event) []byte {
	var buf bytes.Buffer
	for _, e := range events {
		o := e.Object.DeepCopyObject()
		gvks, _, err := scheme.ObjectKinds(o)
		if err != nil {
			t.Fatal(err)
		}
		o.GetObjectKind().SetGroupVersionKind(gvks[0])
		obj, err := stdjson.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		b, err := stdjson.Marshal(metav1.WatchEvent{Type: string(e.Type), Object: runtime.RawExtension{Raw: obj}})
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	return buf.Bytes()
}

// clientGo reads a stream as client-go's JSON watch does.
func clientGo(t testing.TB, scheme *runtime.Scheme, body []byte) watch.Decoder {
	codecs := serializer.NewCodecFactory(scheme).WithoutConversion()
	info, ok := runtime.SerializerInfoForMediaType(codecs.SupportedMediaTypes(), runtime.ContentTypeJSON)
	if !ok {
		t.Fatal("no JSON serializer")
	}
	frames := info.StreamSerializer.Framer.NewFrameReader(io.NopCloser(bytes.NewReader(body)))
	return restclientwatch.NewDecoder(streaming.NewDecoder(frames, info.StreamSerializer.Serializer),
		codecs.DecoderToVersion(info.Serializer, nil))
}

// withoutManagedFields is what the one-pass decoder keeps of client-go's
// objects: it reads over managedFields.
func withoutManagedFields(events []watch.Event) []watch.Event {
	for _, e := range events {
		if m, ok := e.Object.(metav1.Object); ok {
			m.SetManagedFields(nil)
		}
	}
	return events
}

func readAll(t testing.TB, d watch.Decoder) []watch.Event {
	var out []watch.Event
	for {
		typ, obj, err := d.Decode()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("decoding event %d: %v", len(out), err)
		}
		out = append(out, watch.Event{Type: typ, Object: obj})
	}
}

// TestDecodesAsClientGo: every event of every watched kind comes out of the
// one-pass decoder exactly as client-go's decoder makes it but for
// managedFields, without the fallback.
func TestDecodesAsClientGo(t *testing.T) {
	scheme := testScheme(t)
	for _, obj := range fixtures() {
		bookmark := obj.DeepCopyObject().(metav1.Object)
		bookmark.SetAnnotations(map[string]string{metav1.InitialEventsAnnotationKey: "true"})
		body := stream(t, scheme,
			watch.Event{Type: watch.Added, Object: obj},
			watch.Event{Type: watch.Modified, Object: obj},
			watch.Event{Type: watch.Bookmark, Object: bookmark.(runtime.Object)},
			watch.Event{Type: watch.Deleted, Object: obj},
			watch.Event{Type: watch.Error, Object: &metav1.Status{Status: metav1.StatusFailure, Code: 410,
				Reason: metav1.StatusReasonExpired, Message: "too old resource version: 1 (42)"}},
		)
		want := withoutManagedFields(readAll(t, clientGo(t, scheme, body)))
		fast := NewDecoder(io.NopCloser(bytes.NewReader(body)), gvkOf(t, scheme, obj), newOf(obj), serializer.NewCodecFactory(scheme).UniversalDeserializer())
		got := readAll(t, fast)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%T: one-pass decoding differs from client-go's (-client-go +one-pass):\n%s", obj, diff)
		}
		if fast.fallbacks != 0 {
			t.Errorf("%T: %d objects needed the fallback decoder", obj, fast.fallbacks)
		}
		if len(got) != 5 {
			t.Errorf("%T: %d events, want 5", obj, len(got))
		}
	}
}

// conflicted is a kind whose objects encoding/json/v2 refuses (its own
// v2 method says so) and encoding/json reads: what a divergence of the two
// decoders would look like.
type conflicted struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	A                 string `json:"a"`
}

func (c *conflicted) DeepCopyObject() runtime.Object { out := *c; return &out }

func (c *conflicted) UnmarshalJSONFrom(*jsontext.Decoder) error { return errors.New("refused by v2") }

// TestFallback: an object the one-pass decoder refuses is decoded by the
// API machinery's decoder, and counted.
func TestFallback(t *testing.T) {
	scheme := runtime.NewScheme()
	gv := schema.GroupVersion{Group: "test.kubemacpool.io", Version: "v1"}
	scheme.AddKnownTypes(gv, &conflicted{})
	body := `{"type":"ADDED","object":{"apiVersion":"test.kubemacpool.io/v1","kind":"conflicted","metadata":{"name":"x","uid":"u"},"a":"kept"}}`
	d := NewDecoder(io.NopCloser(strings.NewReader(body)), gv.WithKind("conflicted"), newOf(&conflicted{}), serializer.NewCodecFactory(scheme).UniversalDeserializer())
	typ, obj, err := d.Decode()
	if err != nil {
		t.Fatal(err)
	}
	want := &conflicted{ObjectMeta: metav1.ObjectMeta{Name: "x", UID: "u"}, A: "kept"}
	if diff := cmp.Diff(want, obj); typ != watch.Added || diff != "" {
		t.Errorf("event %s, object (-want +got):\n%s", typ, diff)
	}
	if d.fallbacks != 1 {
		t.Errorf("%d objects decoded by the fallback, want 1", d.fallbacks)
	}
}

// TestStreamErrors: a stream cut inside an event is an unexpected EOF, a
// stream that ends between events is io.EOF, and what is not a watch
// event is an error, never a panic.
func TestStreamErrors(t *testing.T) {
	scheme := testScheme(t)
	full := stream(t, scheme, watch.Event{Type: watch.Added, Object: fixtures()[0]})
	block := gvkOf(t, scheme, &v1alpha1.MACBlock{})
	for name, tc := range map[string]struct {
		body string
		want string
	}{
		"cut inside an event": {string(full[:len(full)/2]), io.ErrUnexpectedEOF.Error()},
		"not an object":       {`["ADDED"]`, "want {"},
		"no type":             {`{"object":{}}`, "without a type"},
		"no object":           {`{"type":"ADDED"}`, "without an object"},
		"unknown type":        {`{"type":"RENAMED","object":{}}`, `unknown type "RENAMED"`},
		"type not a string":   {`{"type":1,"object":{}}`, "not a string"},
		"object not decoded":  {`{"type":"ADDED","object":{"apiVersion":"` + block.GroupVersion().String() + `","kind":"MACBlock","spec":{"held":"many"}}}`, "held"},
		"object of no kind":   {`{"type":"ADDED","object":{"spec":{"held":2}}}`, "'Kind' is missing"},
	} {
		d := NewDecoder(io.NopCloser(strings.NewReader(tc.body)), block, (&v1alpha1.MACBlock{}).DeepCopyObject,
			serializer.NewCodecFactory(scheme).UniversalDeserializer())
		_, _, err := d.Decode()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", name, err, tc.want)
		}
	}
	d := NewDecoder(io.NopCloser(bytes.NewReader(full)), block, (&v1alpha1.MACBlock{}).DeepCopyObject,
		serializer.NewCodecFactory(scheme).UniversalDeserializer())
	if _, _, err := d.Decode(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.Decode(); !errors.Is(err, io.EOF) {
		t.Errorf("after the last event: %v, want io.EOF", err)
	}
}

// FuzzDecodesAsClientGo: for any object in an ADDED event of any watched
// kind (a VM's content is what its user wrote; an object naming another
// kind, or none, included), the one-pass decoder never panics, and
// whenever client-go's decoder reads the object, the one-pass decoder
// reads the same, but for managedFields.
func FuzzDecodesAsClientGo(f *testing.F) {
	scheme := testScheme(f)
	kinds := fixtures()
	for i, obj := range kinds {
		events := stream(f, scheme, watch.Event{Type: watch.Added, Object: obj})
		var e metav1.WatchEvent
		if err := stdjson.Unmarshal(events, &e); err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(i), []byte(e.Object.Raw))
	}
	f.Add(uint8(0), []byte(`{"spec":{"entries":[{"offset":1,"owner":{"uid":"\u00e9\ud800"}}]},"Spec":{"held":2}}`))
	f.Add(uint8(1), []byte(`{"metadata":{"name":"x","annotations":null},"spec":{"template":{"spec":{"domain":{"devices":{"interfaces":[{"name":"a","macAddress":1}]}}}}}}`))
	fallback := serializer.NewCodecFactory(scheme).UniversalDeserializer()
	f.Fuzz(func(t *testing.T, kind uint8, object []byte) {
		obj := kinds[int(kind)%len(kinds)]
		body := append(append([]byte(`{"type":"ADDED","object":`), object...), '}')
		_, want, wantErr := clientGo(t, scheme, body).Decode()
		d := NewDecoder(io.NopCloser(bytes.NewReader(body)), gvkOf(t, scheme, obj), newOf(obj), fallback)
		_, got, err := d.Decode()
		if wantErr != nil {
			return // what client-go refuses may be refused or read
		}
		withoutManagedFields([]watch.Event{{Object: want}})
		if err != nil {
			t.Fatalf("client-go reads %s; the one-pass decoder refuses it: %v", object, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: (-client-go +one-pass):\n%s", object, diff)
		}
	})
}
