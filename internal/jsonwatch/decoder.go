// Package jsonwatch decodes the watch streams of the kinds the API server
// serves only as JSON (custom resources: kubemacpool's MAC blocks,
// KubeVirt's VMs and VMIs) in one pass over each event.
//
// Every replica lists and watches every MAC block, VM and VMI of the
// cluster before it serves, and at 100,000 objects the start-up was spent
// decoding them (issue 24's profiles): client-go's JSON watch decoder
// reads each event six times (the framer, the event's apiVersion/kind
// sniff, a validity scan and the decode of the envelope, then the sniff,
// scan and decode of the object again), with encoding/json's reflection.
// Here each event is read once, token by token, and its object decoded
// with encoding/json/v2's decoder (github.com/go-json-experiment/json, the
// module the standard library's v2 comes from), with v1's semantics and
// the API machinery's case-sensitive field names.
//
// An object the one-pass decoder refuses is decoded again by the API
// machinery's own decoder (Fallback): a difference of the two decoders can
// cost time, never an object.
package jsonwatch

import (
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	jsonv1 "github.com/go-json-experiment/json/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	kubevirtv1 "kubevirt.io/api/core/v1"
)

// options are encoding/json's semantics (what the API machinery's decoder,
// sigs.k8s.io/json, keeps), but with field names matched by case, as the
// API machinery matches them, and the unmarshalers below.
var options json.Options

func init() {
	options = json.JoinOptions(jsonv1.DefaultOptionsV1(), json.MatchCaseInsensitiveNames(false),
		json.WithUnmarshalers(json.JoinUnmarshalers(
			json.UnmarshalFromFunc(skipManagedFields),
			json.UnmarshalFromFunc(fromString[*metav1.Time]),
			json.UnmarshalFromFunc(fromString[*metav1.MicroTime]),
			json.UnmarshalFromFunc(vmiSpec),
		)))
}

// skipManagedFields reads over an object's managedFields without decoding
// them: nothing kubemacpool caches keeps them (the cache transform,
// carriers.Slim, drops them), and they are often the largest part of an
// object.
func skipManagedFields(in *jsontext.Decoder, _ *[]metav1.ManagedFieldsEntry) error {
	return in.SkipValue()
}

// fromString reads a time as its own UnmarshalJSON does (the same parse,
// through UnmarshalQueryParameter), without the detour through
// encoding/json that UnmarshalJSON takes for every timestamp.
func fromString[T interface{ UnmarshalQueryParameter(string) error }](in *jsontext.Decoder, t T) error {
	tok, err := in.ReadToken()
	if err != nil {
		return err
	}
	switch tok.Kind() {
	case 'n':
		return t.UnmarshalQueryParameter("")
	case '"':
		if s := tok.String(); s != "" {
			return t.UnmarshalQueryParameter(s)
		}
		return errors.New("a time cannot be an empty string")
	}
	return fmt.Errorf("a time must be a JSON string, not a JSON %s", tok.Kind())
}

// vmiSpec reads a VM's template or a VMI's spec. KubeVirt's UnmarshalJSON
// for it decodes with encoding/json and then tidies the DNS nameservers:
// here the spec is decoded in one pass, and handed to KubeVirt's own
// reading only when it has nameservers to tidy.
func vmiSpec(in *jsontext.Decoder, spec *kubevirtv1.VirtualMachineInstanceSpec) error {
	raw, err := in.ReadValue()
	if err != nil {
		return err
	}
	type plain kubevirtv1.VirtualMachineInstanceSpec // without the UnmarshalJSON method
	if err := json.Unmarshal(raw, (*plain)(spec), options); err != nil {
		return err
	}
	if spec.DNSConfig != nil && len(spec.DNSConfig.Nameservers) > 0 {
		*spec = kubevirtv1.VirtualMachineInstanceSpec{}
		return spec.UnmarshalJSON(raw)
	}
	return nil
}

// Decoder reads one watch stream: a sequence of JSON events
// {"type":"ADDED","object":{...}}. It is a watch.Decoder.
type Decoder struct {
	body io.ReadCloser
	in   *jsontext.Decoder
	// Kind is the watched kind: an object that names another (or none)
	// is read by Fallback, as client-go reads it.
	Kind schema.GroupVersionKind
	// New makes an empty object of the watched kind.
	New func() runtime.Object
	// Fallback decodes what the one-pass decoder refuses, and objects
	// naming another kind: the API machinery's decoder.
	Fallback runtime.Decoder
	// fallbacks counts the objects Fallback decoded (tests read it).
	fallbacks int
}

// NewDecoder reads the events of body, a watch of kind; newObj makes an
// empty object of it, and fallback is the API machinery's decoder.
func NewDecoder(body io.ReadCloser, kind schema.GroupVersionKind, newObj func() runtime.Object, fallback runtime.Decoder) *Decoder {
	return &Decoder{body: body, in: jsontext.NewDecoder(body, options), Kind: kind, New: newObj, Fallback: fallback}
}

// Decode reads the next event. It returns io.EOF at the end of a stream
// that ended between events.
func (d *Decoder) Decode() (watch.EventType, runtime.Object, error) {
	if err := d.expect('{'); err != nil {
		return "", nil, err
	}
	var (
		eventType watch.EventType
		obj       runtime.Object
		early     jsontext.Value // the object when it came before the type
	)
	for d.in.PeekKind() != '}' {
		name, err := d.in.ReadToken()
		if err != nil {
			return "", nil, unexpectedEOF(err)
		}
		switch name.String() {
		case "type":
			t, err := d.in.ReadToken()
			if err != nil {
				return "", nil, unexpectedEOF(err)
			}
			if t.Kind() != '"' {
				return "", nil, fmt.Errorf("watch event: type is a JSON %s, not a string", t.Kind())
			}
			eventType = watch.EventType(t.String())
		case "object":
			raw, err := d.in.ReadValue()
			if err != nil {
				return "", nil, unexpectedEOF(err)
			}
			if eventType == "" {
				// The API server writes the type first; a stream that
				// does not is read all the same. raw is only valid
				// until the next read.
				early = raw.Clone()
				continue
			}
			if obj, err = d.object(eventType, raw); err != nil {
				return "", nil, err
			}
		default:
			if err := d.in.SkipValue(); err != nil {
				return "", nil, unexpectedEOF(err)
			}
		}
	}
	if err := d.expect('}'); err != nil {
		return "", nil, unexpectedEOF(err)
	}
	if eventType == "" {
		return "", nil, errors.New("watch event without a type")
	}
	if early != nil {
		var err error
		if obj, err = d.object(eventType, early); err != nil {
			return "", nil, err
		}
	}
	if obj == nil {
		return "", nil, fmt.Errorf("watch event %s without an object", eventType)
	}
	return eventType, obj, nil
}

// object decodes one event's object: a Status for an error, else an object
// of the watched kind.
func (d *Decoder) object(eventType watch.EventType, raw jsontext.Value) (runtime.Object, error) {
	switch eventType {
	case watch.Added, watch.Modified, watch.Deleted, watch.Bookmark:
	case watch.Error:
		status := &metav1.Status{}
		if err := json.Unmarshal(raw, status, options); err != nil {
			return nil, fmt.Errorf("watch error event: %w", err)
		}
		status.TypeMeta = metav1.TypeMeta{}
		return status, nil
	default:
		return nil, fmt.Errorf("watch event of unknown type %q", eventType)
	}
	obj := d.New()
	err := json.Unmarshal(raw, obj, options)
	if err != nil || obj.GetObjectKind().GroupVersionKind() != d.Kind {
		// What the API machinery's decoder reads is read, as client-go
		// reads it: by the kind the object names (the reflector refuses
		// one of another kind; one naming none is an error).
		d.fallbacks++
		obj, _, err = d.Fallback.Decode(raw, nil, nil)
		if err != nil {
			return nil, err
		}
		// Without managedFields, as the one-pass decoder reads objects.
		if m, ok := obj.(metav1.Object); ok {
			m.SetManagedFields(nil)
		}
	}
	// As client-go's decoder leaves typed objects: without apiVersion and
	// kind (the type says them).
	obj.GetObjectKind().SetGroupVersionKind(schema.GroupVersionKind{})
	return obj, nil
}

// expect reads one delimiter token.
func (d *Decoder) expect(kind jsontext.Kind) error {
	t, err := d.in.ReadToken()
	if err != nil {
		return err
	}
	if t.Kind() != kind {
		return fmt.Errorf("watch stream: want %s, got a JSON %s", kind, t.Kind())
	}
	return nil
}

// Close closes the stream; a Decode blocked on it returns.
func (d *Decoder) Close() {
	_ = d.body.Close()
}

// unexpectedEOF is err, or io.ErrUnexpectedEOF for a stream that ended
// inside an event.
func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// NewStreamWatcher watches the events d reads as client-go's watches do:
// a decoding error becomes an error event.
func NewStreamWatcher(d *Decoder) watch.Interface {
	return watch.NewStreamWatcher(d, apierrors.NewClientErrorReporter(http.StatusInternalServerError, "GET", "ClientWatchDecoding"))
}
