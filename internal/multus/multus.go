// Package multus reads and rewrites the Multus network selection annotation
// (k8s.v1.cni.cncf.io/networks) so that a MAC address can be put into each
// secondary interface's element without disturbing anything else the user
// wrote there.
package multus

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/util/validation"
)

// NetworksAnnotation is the pod annotation that lists a pod's secondary networks.
const NetworksAnnotation = "k8s.v1.cni.cncf.io/networks"

// maxValueSize bounds the input Parse accepts. Kubernetes caps all annotations
// of an object together at 256 KiB, so a larger value can never be legitimate;
// refusing it up front bounds memory and CPU on hostile input.
const maxValueSize = 256 << 10

// The keys this package interprets. Format writes them first, in this order,
// so the output is stable whatever order the user chose.
const (
	keyName      = "name"
	keyNamespace = "namespace"
	keyInterface = "interface"
	keyMAC       = "mac"
)

var knownKeys = [...]string{keyName, keyNamespace, keyInterface, keyMAC}

// validForms is appended to errors about the value as a whole, so the user
// sees what a correct value looks like.
const validForms = `expected a JSON list such as [{"name":"net1","namespace":"ns1","interface":"eth1"}] ` +
	`or a comma-separated list such as "net1,ns1/net2@eth1"`

// Element is one network selection element. It keeps every key of the
// original JSON object exactly (unknown keys included, their raw JSON values
// byte-for-byte), so rewriting only changes what we set.
type Element struct {
	name, namespace, iface, mac string

	// raw holds every key of the element with its JSON value. Values we did
	// not change are the user's original bytes, so Format reproduces them.
	raw map[string]json.RawMessage
	// others lists the keys we do not interpret, in input order, because
	// Format must write them back in that order.
	others []string
}

// Name returns the name of the NetworkAttachmentDefinition.
func (e *Element) Name() string { return e.name }

// Namespace returns the namespace of the NetworkAttachmentDefinition. After
// Parse it is never empty: the pod's namespace is filled in when absent.
func (e *Element) Namespace() string { return e.namespace }

// Interface returns the requested interface name, "" when not given.
func (e *Element) Interface() string { return e.iface }

// MAC returns the requested MAC address as the user wrote it, "" when not
// given. Validating it is the caller's job.
func (e *Element) MAC() string { return e.mac }

// NetworkKey returns "namespace/name", which identifies the network.
func (e *Element) NetworkKey() string { return e.namespace + "/" + e.name }

// SetMAC sets the "mac" key. An empty mac removes the key, which Multus
// treats the same as no MAC request.
func (e *Element) SetMAC(mac string) {
	// Copies of an Element share the map; clone it so that setting the MAC on
	// one copy never changes another.
	raw := maps.Clone(e.raw)
	if raw == nil {
		raw = make(map[string]json.RawMessage, 1)
	}
	if mac == "" {
		delete(raw, keyMAC)
	} else {
		raw[keyMAC] = jsonString(mac)
	}
	e.raw = raw
	e.mac = mac
}

// Parse parses the annotation value in either form. podNamespace fills in
// elements without a namespace (the namespace key is then written into the
// element). An empty or whitespace-only value yields no elements.
func Parse(value, podNamespace string) ([]Element, error) {
	if len(value) > maxValueSize {
		return nil, errorf("value is %d bytes, more than the %d bytes allowed (Kubernetes limits all annotations of a pod together to 256 KiB)",
			len(value), maxValueSize)
	}
	if strings.TrimSpace(value) == "" {
		return nil, nil
	}
	// Multus picks the form by this same test. Using its rule means we never
	// rewrite a value that Multus would have read in the other form.
	if strings.ContainsAny(value, `[{"`) {
		return parseJSON(value, podNamespace)
	}
	return parseShort(value, podNamespace)
}

// parseShort parses the comma-separated "[namespace/]name[@interface]" form.
func parseShort(value, podNamespace string) ([]Element, error) {
	items := strings.Split(value, ",")
	elems := make([]Element, 0, len(items))
	for i, item := range items {
		pos := i + 1
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, elemErrorf(pos, `empty item; remove the extra comma, e.g. "net1,net2"`)
		}
		// Our output is JSON, which cannot carry invalid UTF-8; refuse it
		// rather than silently change the interface name.
		if !utf8.ValidString(item) {
			return nil, elemErrorf(pos, "%s is not valid UTF-8", quote(item))
		}
		if strings.Count(item, "/") > 1 || strings.Count(item, "@") > 1 {
			return nil, elemErrorf(pos, `%s has more than one "/" or "@"; expected [namespace/]name[@interface], e.g. "ns1/net1@eth1"`,
				quote(item))
		}
		e := Element{raw: make(map[string]json.RawMessage, 3)}
		rest := item
		if ns, after, ok := strings.Cut(rest, "/"); ok {
			if ns == "" {
				return nil, elemErrorf(pos, `%s has an empty namespace before "/"; write "ns1/net1" or just "net1"`, quote(item))
			}
			e.namespace, rest = ns, after
			e.raw[keyNamespace] = jsonString(ns)
		}
		if name, iface, ok := strings.Cut(rest, "@"); ok {
			if iface == "" {
				return nil, elemErrorf(pos, `%s has an empty interface after "@"; write "net1@eth1" or just "net1"`, quote(item))
			}
			e.iface, rest = iface, name
			e.raw[keyInterface] = jsonString(iface)
		}
		e.name = rest
		e.raw[keyName] = jsonString(rest)
		if err := e.complete(pos, podNamespace); err != nil {
			return nil, err
		}
		elems = append(elems, e)
	}
	return elems, nil
}

// parseJSON parses the JSON list form.
func parseJSON(value, podNamespace string) ([]Element, error) {
	// Check the whole value first so a syntax error is reported as such,
	// with the position json found it at.
	var top json.RawMessage
	if err := json.Unmarshal([]byte(value), &top); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			return nil, errorf("invalid JSON at byte %d: %w; %s", syn.Offset, err, validForms)
		}
		return nil, errorf("invalid JSON: %w; %s", err, validForms)
	}
	top = bytes.TrimLeft(top, " \t\r\n")
	switch top[0] {
	case '[':
	case '{':
		return nil, errorf(`a single JSON object is not accepted, it must be inside a list: write [{"name":"net1"}] instead of {"name":"net1"}`)
	default:
		return nil, errorf("the JSON value is %s, not a list; %s", describe(top), validForms)
	}
	var items []json.RawMessage
	if err := json.Unmarshal(top, &items); err != nil {
		return nil, errorf("invalid JSON list: %w; %s", err, validForms)
	}
	elems := make([]Element, 0, len(items))
	for i, item := range items {
		e, err := parseObject(i+1, item, podNamespace)
		if err != nil {
			return nil, err
		}
		elems = append(elems, e)
	}
	return elems, nil
}

// parseObject parses one element of the JSON list. It walks the object with
// Decoder.Token rather than unmarshalling into a map, because a map would
// lose the key order that Format has to keep.
func parseObject(pos int, item json.RawMessage, podNamespace string) (Element, error) {
	item = bytes.TrimLeft(item, " \t\r\n")
	if len(item) == 0 || item[0] != '{' {
		return Element{}, elemErrorf(pos, `got %s, not an object; each element must look like {"name":"net1"}`, describe(item))
	}
	e := Element{raw: make(map[string]json.RawMessage)}
	dec := json.NewDecoder(bytes.NewReader(item))
	if _, err := dec.Token(); err != nil { // the opening '{'
		return Element{}, elemErrorf(pos, "invalid JSON object: %w", err)
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return Element{}, elemErrorf(pos, "invalid JSON object: %w", err)
		}
		key, ok := tok.(string)
		if !ok { // cannot happen: the value was already validated as JSON
			return Element{}, elemErrorf(pos, "invalid JSON object: key %v is not a string", tok)
		}
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return Element{}, elemErrorf(pos, "invalid value for key %s: %w", quote(key), err)
		}
		if _, dup := e.raw[key]; dup {
			return Element{}, elemErrorf(pos, "key %s appears more than once; keep only one", quote(key))
		}
		if err := checkKeyCase(pos, key); err != nil {
			return Element{}, err
		}
		e.raw[key] = val
		if !isKnownKey(key) {
			e.others = append(e.others, key)
		}
	}

	if _, ok := e.raw[keyName]; !ok {
		return Element{}, elemErrorf(pos, `"name" is missing; each element names a NetworkAttachmentDefinition, e.g. {"name":"net1"}`)
	}
	for _, f := range []struct {
		key string
		dst *string
	}{{keyName, &e.name}, {keyNamespace, &e.namespace}, {keyInterface, &e.iface}, {keyMAC, &e.mac}} {
		if err := stringField(pos, e.raw, f.key, f.dst); err != nil {
			return Element{}, err
		}
	}
	if err := e.complete(pos, podNamespace); err != nil {
		return Element{}, err
	}
	return e, nil
}

// checkKeyCase refuses keys such as "Name" or "MAC". Multus decodes with
// encoding/json, which matches keys case-insensitively and lets the later key
// win, so such a key would silently override the value we write.
func checkKeyCase(pos int, key string) error {
	for _, k := range knownKeys {
		if key != k && strings.EqualFold(key, k) {
			return elemErrorf(pos, "key %s differs from %q only in letter case; write %q", quote(key), k, k)
		}
	}
	return nil
}

func isKnownKey(key string) bool {
	for _, k := range knownKeys {
		if key == k {
			return true
		}
	}
	return false
}

// stringField decodes raw[key] into *dst when the key is present, refusing
// anything but a JSON string (null included: it is not a usable value).
func stringField(pos int, raw map[string]json.RawMessage, key string, dst *string) error {
	v, ok := raw[key]
	if !ok {
		return nil
	}
	if len(v) == 0 || v[0] != '"' {
		return elemErrorf(pos, `%q must be a string, got %s, e.g. {"%s":"value"}`, key, describe(v), key)
	}
	if err := json.Unmarshal(v, dst); err != nil {
		return elemErrorf(pos, "invalid value for %q: %w", key, err)
	}
	return nil
}

// complete validates name and namespace, filling in the pod's namespace when
// the element has none (an empty namespace means the same to Multus).
func (e *Element) complete(pos int, podNamespace string) error {
	if e.name == "" {
		return elemErrorf(pos, `"name" is empty; it must name a NetworkAttachmentDefinition, e.g. "net1"`)
	}
	if errs := validation.IsDNS1123Subdomain(e.name); len(errs) > 0 {
		return elemErrorf(pos, "name %s is not a valid DNS-1123 subdomain: %s", quote(e.name), strings.Join(errs, "; "))
	}
	if e.namespace == "" {
		if podNamespace == "" {
			return elemErrorf(pos, `no namespace given and the pod's namespace is unknown; write it as "ns1/net1" or {"name":"net1","namespace":"ns1"}`)
		}
		e.namespace = podNamespace
		e.raw[keyNamespace] = jsonString(podNamespace)
	}
	if errs := validation.IsDNS1123Label(e.namespace); len(errs) > 0 {
		return elemErrorf(pos, "namespace %s is not a valid DNS-1123 label: %s", quote(e.namespace), strings.Join(errs, "; "))
	}
	return nil
}

// Format renders elements as a compact JSON list. Each element starts with
// "name", "namespace", "interface" and "mac" (those present, in that order),
// followed by its other keys in input order. Values we did not change are
// written as the original raw bytes.
func Format(elems []Element) (string, error) {
	var b bytes.Buffer
	b.WriteByte('[')
	for i := range elems {
		e := &elems[i]
		// Only a zero Element, not one from Parse, can lack a name; writing
		// it would produce a value Multus refuses.
		if e.name == "" || e.raw[keyName] == nil {
			return "", fmt.Errorf("cannot format %s annotation: element %d has no name", NetworksAnnotation, i+1)
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('{')
		first := true
		write := func(key string) {
			if !first {
				b.WriteByte(',')
			}
			first = false
			b.Write(jsonString(key))
			b.WriteByte(':')
			b.Write(e.raw[key])
		}
		for _, k := range knownKeys {
			if _, ok := e.raw[k]; ok {
				write(k)
			}
		}
		for _, k := range e.others {
			write(k)
		}
		b.WriteByte('}')
	}
	b.WriteByte(']')
	return b.String(), nil
}

// jsonString encodes s as a JSON string. Marshalling a string cannot fail.
func jsonString(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}

// describe names the kind of a JSON value for error messages.
func describe(v json.RawMessage) string {
	if len(v) == 0 {
		return "empty"
	}
	switch v[0] {
	case '{':
		return "an object"
	case '[':
		return "a list"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}

// quote quotes s for an error message, shortened so that a huge hostile value
// cannot blow up the message.
func quote(s string) string {
	const limit = 64
	if len(s) > limit {
		return fmt.Sprintf("%q...", s[:limit])
	}
	return fmt.Sprintf("%q", s)
}

func errorf(format string, args ...any) error {
	return fmt.Errorf("invalid "+NetworksAnnotation+" annotation: "+format, args...)
}

func elemErrorf(pos int, format string, args ...any) error {
	return errorf("element %d: "+format, append([]any{pos}, args...)...)
}
