package multus

import (
	"strings"
	"testing"
)

// want is the parsed view of one element that tests compare against.
type want struct{ name, namespace, iface, mac string }

func view(elems []Element) []want {
	out := make([]want, len(elems))
	for i := range elems {
		e := &elems[i]
		out[i] = want{e.Name(), e.Namespace(), e.Interface(), e.MAC()}
	}
	return out
}

func TestParse(t *testing.T) {
	tests := []struct {
		name      string
		value     string
		namespace string
		want      []want
		format    string // expected Format output, checked when not empty
	}{
		{name: "empty", value: "", namespace: "default", format: "[]"},
		{name: "whitespace only", value: " \t\n ", namespace: "default", format: "[]"},
		{name: "empty JSON list", value: "[]", namespace: "default", format: "[]"},
		{
			name: "short form single", value: "net1", namespace: "default",
			want:   []want{{"net1", "default", "", ""}},
			format: `[{"name":"net1","namespace":"default"}]`,
		},
		{
			name: "short form with namespace and interface", value: "net1,other-ns/net2@eth1", namespace: "default",
			want:   []want{{"net1", "default", "", ""}, {"net2", "other-ns", "eth1", ""}},
			format: `[{"name":"net1","namespace":"default"},{"name":"net2","namespace":"other-ns","interface":"eth1"}]`,
		},
		{
			name: "short form interface without namespace", value: "net1@net-a", namespace: "ns",
			want:   []want{{"net1", "ns", "net-a", ""}},
			format: `[{"name":"net1","namespace":"ns","interface":"net-a"}]`,
		},
		{
			name: "short form whitespace trimmed", value: "  net1 ,\tother-ns/net2@eth1 \n", namespace: "default",
			want: []want{{"net1", "default", "", ""}, {"net2", "other-ns", "eth1", ""}},
		},
		{
			name: "short form same network twice", value: "net1,net1", namespace: "default",
			want:   []want{{"net1", "default", "", ""}, {"net1", "default", "", ""}},
			format: `[{"name":"net1","namespace":"default"},{"name":"net1","namespace":"default"}]`,
		},
		{
			name: "JSON same network twice", value: `[{"name":"net1"},{"name":"net1","interface":"eth2"}]`, namespace: "default",
			want: []want{{"net1", "default", "", ""}, {"net1", "default", "eth2", ""}},
		},
		{
			name: "JSON namespace filled in", value: `[{"name":"ovs-conf"}]`, namespace: "default",
			want:   []want{{"ovs-conf", "default", "", ""}},
			format: `[{"name":"ovs-conf","namespace":"default"}]`,
		},
		{
			name: "JSON empty namespace filled in", value: `[{"name":"ovs-conf","namespace":""}]`, namespace: "default",
			want:   []want{{"ovs-conf", "default", "", ""}},
			format: `[{"name":"ovs-conf","namespace":"default"}]`,
		},
		{
			name: "JSON explicit namespace kept", value: `[{"namespace":"other","name":"ovs-conf"}]`, namespace: "default",
			want:   []want{{"ovs-conf", "other", "", ""}},
			format: `[{"name":"ovs-conf","namespace":"other"}]`,
		},
		{
			name: "JSON mac kept when given", value: `[{"mac":"02:00:00:00:00:aa","name":"net1","interface":"eth1"}]`, namespace: "default",
			want:   []want{{"net1", "default", "eth1", "02:00:00:00:00:aa"}},
			format: `[{"name":"net1","namespace":"default","interface":"eth1","mac":"02:00:00:00:00:aa"}]`,
		},
		{
			name: "JSON with whitespace around", value: " \n[ { \"name\" : \"net1\" } ]\n", namespace: "default",
			want:   []want{{"net1", "default", "", ""}},
			format: `[{"name":"net1","namespace":"default"}]`,
		},
		{
			name: "JSON escaped name", value: `[{"name":"ovs\u002dconf"}]`, namespace: "default",
			want:   []want{{"ovs-conf", "default", "", ""}},
			format: `[{"name":"ovs\u002dconf","namespace":"default"}]`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			elems, err := Parse(tt.value, tt.namespace)
			if err != nil {
				t.Fatalf("Parse(%q) error: %v", tt.value, err)
			}
			got := view(elems)
			if len(got) != len(tt.want) {
				t.Fatalf("Parse(%q) = %+v, want %+v", tt.value, got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("element %d = %+v, want %+v", i+1, got[i], tt.want[i])
				}
				if key := elems[i].NetworkKey(); key != tt.want[i].namespace+"/"+tt.want[i].name {
					t.Errorf("element %d NetworkKey() = %q", i+1, key)
				}
			}
			if tt.format == "" {
				return
			}
			out, err := Format(elems)
			if err != nil {
				t.Fatalf("Format error: %v", err)
			}
			if out != tt.format {
				t.Errorf("Format = %s\nwant     %s", out, tt.format)
			}
		})
	}
}

// TestGolden pins the output shown in the product documentation.
func TestGolden(t *testing.T) {
	elems, err := Parse(`[{ "name": "ovs-conf"}]`, "default")
	if err != nil {
		t.Fatal(err)
	}
	elems[0].SetMAC("02:00:00:00:00:02")
	out, err := Format(elems)
	if err != nil {
		t.Fatal(err)
	}
	const golden = `[{"name":"ovs-conf","namespace":"default","mac":"02:00:00:00:00:02"}]`
	if out != golden {
		t.Errorf("got  %s\nwant %s", out, golden)
	}
}

// TestPreserve checks that keys we do not touch come back byte for byte, in
// their input order, after the known keys.
func TestPreserve(t *testing.T) {
	tests := []struct {
		name, value, want string
	}{
		{
			name: "ips cni-args interface default-route and unknown keys",
			value: `[{"ips": [ "10.1.1.1/24" ], "name":"net1", "cni-args": {"a" : 1, "b":[true,null]},` +
				` "interface":"eth1", "default-route":["10.1.1.254"], "x-unknown": 1.50e3 , "namespace":"ns1",` +
				` "note":"caf\u00e9"}]`,
			want: `[{"name":"net1","namespace":"ns1","interface":"eth1","mac":"02:00:00:00:00:02",` +
				`"ips":[ "10.1.1.1/24" ],"cni-args":{"a" : 1, "b":[true,null]},"default-route":["10.1.1.254"],` +
				`"x-unknown":1.50e3,"note":"caf\u00e9"}]`,
		},
		{
			name:  "existing mac replaced in place",
			value: `[{"z":null,"mac":"02:00:00:00:00:ff","name":"net1","a":{}}]`,
			want:  `[{"name":"net1","namespace":"default","mac":"02:00:00:00:00:02","z":null,"a":{}}]`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			elems, err := Parse(tt.value, "default")
			if err != nil {
				t.Fatal(err)
			}
			elems[0].SetMAC("02:00:00:00:00:02")
			out, err := Format(elems)
			if err != nil {
				t.Fatal(err)
			}
			if out != tt.want {
				t.Errorf("got  %s\nwant %s", out, tt.want)
			}
		})
	}
}

func TestSetMAC(t *testing.T) {
	elems, err := Parse(`[{"name":"net1","mac":"02:00:00:00:00:01"}]`, "default")
	if err != nil {
		t.Fatal(err)
	}
	orig := elems[0]
	elems[0].SetMAC("02:00:00:00:00:02")
	if got := orig.MAC(); got != "02:00:00:00:00:01" {
		t.Errorf("copy MAC() = %q after SetMAC on the original", got)
	}
	if out, _ := Format([]Element{orig}); out != `[{"name":"net1","namespace":"default","mac":"02:00:00:00:00:01"}]` {
		t.Errorf("copy changed by SetMAC on the original: %s", out)
	}

	elems[0].SetMAC("")
	out, err := Format(elems)
	if err != nil {
		t.Fatal(err)
	}
	if want := `[{"name":"net1","namespace":"default"}]`; out != want {
		t.Errorf("SetMAC(\"\"): got %s, want %s", out, want)
	}

	var zero Element
	zero.SetMAC("02:00:00:00:00:03") // must not panic on a nil map
	if _, err := Format([]Element{zero}); err == nil || !strings.Contains(err.Error(), "no name") {
		t.Errorf("Format of an element without a name: err = %v, want a \"no name\" error", err)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name      string
		value     string
		namespace string
		want      []string // substrings the error must contain
	}{
		{"too large", strings.Repeat("a", maxValueSize+1), "default", []string{"more than the 262144 bytes"}},
		{"invalid JSON truncated", `[{"name":"a"`, "default", []string{"invalid JSON", "unexpected end of JSON input", "expected a JSON list"}},
		{"invalid JSON trailing comma", `[{"name":"a"},]`, "default", []string{"invalid JSON at byte", "invalid character ']'"}},
		{"invalid JSON in short form", `net1,{x}`, "default", []string{"invalid JSON"}},
		{"single object", `{"name":"a"}`, "default", []string{"single JSON object", "inside a list"}},
		{"JSON string", `"net1"`, "default", []string{"a string, not a list", "expected a JSON list"}},
		{"element not object", `[{"name":"a"},"b"]`, "default", []string{"element 2:", "a string, not an object"}},
		{"element null", `[null]`, "default", []string{"element 1:", "null, not an object"}},
		{"name missing", `[{"name":"a"},{"namespace":"x"}]`, "default", []string{"element 2:", `"name" is missing`}},
		{"name empty", `[{"name":""}]`, "default", []string{"element 1:", `"name" is empty`}},
		{"name number", `[{"name":5}]`, "default", []string{"element 1:", `"name" must be a string, got a number`}},
		{"name null", `[{"name":null}]`, "default", []string{"element 1:", `"name" must be a string, got null`}},
		{"namespace not string", `[{"name":"a","namespace":1}]`, "default", []string{"element 1:", `"namespace" must be a string`}},
		{"interface not string", `[{"name":"a"},{"name":"b","interface":["eth1"]}]`, "default", []string{"element 2:", `"interface" must be a string, got a list`}},
		{"mac not string", `[{"name":"a","mac":{}}]`, "default", []string{"element 1:", `"mac" must be a string, got an object`}},
		{"name not DNS subdomain", `[{"name":"Net_1"}]`, "default", []string{"element 1:", `name "Net_1"`, "DNS-1123 subdomain"}},
		{"namespace not DNS label", `[{"name":"a","namespace":"a.b"}]`, "default", []string{"element 1:", `namespace "a.b"`, "DNS-1123 label"}},
		{"duplicate key", `[{"name":"a","mac":"x","mac":"y"}]`, "default", []string{"element 1:", `key "mac" appears more than once`}},
		{"duplicate key via escape", `[{"name":"a","n\u0061me":"b"}]`, "default", []string{`key "name" appears more than once`}},
		{"key differs in case", `[{"name":"a","MAC":"x"}]`, "default", []string{"element 1:", `key "MAC" differs from "mac" only in letter case`}},
		{"short empty item", "a,,b", "default", []string{"element 2:", "empty item"}},
		{"short trailing comma", "a,b,", "default", []string{"element 3:", "empty item"}},
		{"short two slashes", "a,ns/b/c", "default", []string{"element 2:", `"ns/b/c" has more than one "/" or "@"`}},
		{"short two ats", "a@b@c", "default", []string{"element 1:", `more than one "/" or "@"`}},
		{"short empty namespace", "/a", "default", []string{"element 1:", "empty namespace"}},
		{"short empty interface", "a@", "default", []string{"element 1:", "empty interface"}},
		{"short empty name", "ns/@eth1", "default", []string{"element 1:", `"name" is empty`}},
		{"short bad name", "net1,Bad", "default", []string{"element 2:", `name "Bad"`, "DNS-1123 subdomain"}},
		{"short bad namespace", "my.ns/net1", "default", []string{"element 1:", `namespace "my.ns"`, "DNS-1123 label"}},
		{"short invalid UTF-8", "net1@\xff", "default", []string{"element 1:", "not valid UTF-8"}},
		{"pod namespace unknown", "net1", "", []string{"element 1:", "pod's namespace is unknown"}},
		{"pod namespace invalid", "net1", "Default", []string{"element 1:", `namespace "Default"`, "DNS-1123 label"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			elems, err := Parse(tt.value, tt.namespace)
			if err == nil {
				t.Fatalf("Parse(%.80q) = %+v, want an error", tt.value, view(elems))
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "invalid "+NetworksAnnotation+" annotation: ") {
				t.Errorf("error %q does not name the annotation", msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			if len(msg) > 1000 {
				t.Errorf("error message is %d bytes long", len(msg))
			}
		})
	}
}
