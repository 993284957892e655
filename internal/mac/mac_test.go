package mac

import (
	"strings"
	"testing"
)

func TestParseAccepts(t *testing.T) {
	tests := []struct {
		in   string
		want MAC
	}{
		{"02:00:00:00:00:1a", 0x02000000001a},
		{"02:00:00:00:00:1A", 0x02000000001a},
		{"02-00-00-00-00-1a", 0x02000000001a},
		{"02-00-00-00-00-1A", 0x02000000001a},
		{"0200.0000.001a", 0x02000000001a},
		{"0200.0000.001A", 0x02000000001a},
		{"00:00:5e:00:53:01", 0x00005e005301},
		{"00-00-5E-00-53-01", 0x00005e005301},
		{"0000.5e00.5301", 0x00005e005301},
		{"0000.5E00.5301", 0x00005e005301},
		{"Ab:cD:eF:01:23:45", 0xabcdef012345},
		// Go's net.ParseMAC also takes twelve bare hex digits, so we do too.
		{"02000000001a", 0x02000000001a},
		{"  02:00:00:00:00:1a  ", 0x02000000001a},
		{"\t02:00:00:00:00:1a\n", 0x02000000001a},
		{"00:00:00:00:00:00", 0},
		{"ff:ff:ff:ff:ff:ff", Max},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if err != nil {
			t.Errorf("Parse(%q): unexpected error %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("Parse(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestParseRejects(t *testing.T) {
	long := strings.Repeat("x", 100)
	tests := []struct {
		name, in string
		want     []string // substrings the error must contain
	}{
		{"empty", "", []string{`"" is not a MAC address`}},
		{"only spaces", "   ", []string{`"   " is not a MAC address`}},
		{"garbage", "hello", []string{`"hello" is not a MAC address`}},
		{"bad hex digit", "02:00:00:00:00:1g", []string{`"02:00:00:00:00:1g" is not a MAC address: expected six hex octets such as 02:00:00:00:00:1a`}},
		{"five octets", "02:00:00:00:00", []string{`"02:00:00:00:00" is not a MAC address`}},
		{"seven octets", "02:00:00:00:00:00:01", []string{`"02:00:00:00:00:00:01" is not a MAC address`}},
		{"EUI-64", "02:00:00:00:00:00:00:01", []string{`"02:00:00:00:00:00:00:01" is not a MAC address`, "EUI-64"}},
		{"EUI-64 dot form", "0200.0000.0000.0001", []string{"EUI-64"}},
		{"InfiniBand", "00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01", []string{"is not a MAC address", "InfiniBand"}},
		{"mixed separators", "02:00-00:00:00:1a", []string{"is not a MAC address"}},
		{"trailing separator", "02:00:00:00:00:1a:", []string{"is not a MAC address"}},
		{"one-digit octets", "2:0:0:0:0:1a", []string{"is not a MAC address"}},
		{"inner space", "02:00:00:00:00: 1a", []string{"is not a MAC address"}},
		{"sign", "+2:00:00:00:00:1a", []string{"is not a MAC address"}},
		{"long input is cut", long, []string{`"` + long[:64] + `"... is not a MAC address`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse(tt.in)
			if err == nil {
				t.Fatalf("Parse(%q) = %s, want error", tt.in, m)
			}
			msg := err.Error()
			for _, w := range append(tt.want, "expected six hex octets such as 02:00:00:00:00:1a") {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			if len(msg) > 200 {
				t.Errorf("error is %d bytes long, want short: %q", len(msg), msg)
			}
		})
	}
}

func TestStringAndObjectName(t *testing.T) {
	tests := []struct {
		m          MAC
		str, oname string
	}{
		{0, "00:00:00:00:00:00", "00-00-00-00-00-00"},
		{0x02000000001a, "02:00:00:00:00:1a", "02-00-00-00-00-1a"},
		{0xabcdef012345, "ab:cd:ef:01:23:45", "ab-cd-ef-01-23-45"},
		{Max, "ff:ff:ff:ff:ff:ff", "ff-ff-ff-ff-ff-ff"},
	}
	for _, tt := range tests {
		if got := tt.m.String(); got != tt.str {
			t.Errorf("%#x.String() = %q, want %q", uint64(tt.m), got, tt.str)
		}
		if got := tt.m.ObjectName(); got != tt.oname {
			t.Errorf("%#x.ObjectName() = %q, want %q", uint64(tt.m), got, tt.oname)
		}
		if got, err := ParseObjectName(tt.oname); err != nil || got != tt.m {
			t.Errorf("ParseObjectName(%q) = %s, %v; want %s", tt.oname, got, err, tt.m)
		}
	}
}

func TestParseObjectNameIsStrict(t *testing.T) {
	for _, in := range []string{
		"",
		"02-00-00-00-00-1A",    // uppercase
		"02:00:00:00:00:1a",    // colon form
		"0200.0000.001a",       // dot form
		"02000000001a",         // bare hex
		" 02-00-00-00-00-1a",   // surrounding space
		"02-00-00-00-00-1a ",   // surrounding space
		"02-00-00-00-00-1",     // short
		"02-00-00-00-00-1a0",   // long
		"02-00-00-00-00-1a-",   // trailing dash
		"02-00-00-00-00-1g",    // not hex
		"02-00-00-00-00--a",    // dash in place of a digit
		"02-00-00-00-0001a",    // digit in place of a dash
		"02-00-00-00-00-00-01", // EUI-64
	} {
		m, err := ParseObjectName(in)
		if err == nil {
			t.Errorf("ParseObjectName(%q) = %s, want error", in, m)
			continue
		}
		if !strings.Contains(err.Error(), quote(in)+" is not a MAC object name") ||
			!strings.Contains(err.Error(), "02-00-00-00-00-1a") {
			t.Errorf("ParseObjectName(%q) error %q should quote the input and show the expected form", in, err)
		}
	}
}

func TestBits(t *testing.T) {
	tests := []struct {
		in                   string
		first                byte
		multicast, universal bool
	}{
		{"02:00:00:00:00:00", 0x02, false, false},
		{"00:00:5e:00:53:01", 0x00, false, true},
		{"01:00:5e:00:00:01", 0x01, true, true},
		{"03:00:00:00:00:00", 0x03, true, false},
		{"fa:ff:ff:ff:ff:ff", 0xfa, false, false},
		{"fc:00:00:00:00:00", 0xfc, false, true},
		{"fd:ff:ff:ff:ff:ff", 0xfd, true, true},
		{"ff:ff:ff:ff:ff:ff", 0xff, true, false}, // broadcast
	}
	for _, tt := range tests {
		m, err := Parse(tt.in)
		if err != nil {
			t.Fatal(err)
		}
		if m.FirstOctet() != tt.first || m.IsMulticast() != tt.multicast || m.IsUniversal() != tt.universal {
			t.Errorf("%s: FirstOctet=%#02x IsMulticast=%v IsUniversal=%v, want %#02x %v %v",
				tt.in, m.FirstOctet(), m.IsMulticast(), m.IsUniversal(), tt.first, tt.multicast, tt.universal)
		}
	}
}

func TestParseRange(t *testing.T) {
	r, err := ParseRange("02:00:00:00:00:00", " FD-FF-FF-FF-FF-FF ")
	if err != nil || r != DefaultRange {
		t.Fatalf("ParseRange(default bounds) = %v, %v; want %v", r, err, DefaultRange)
	}
	if got, want := DefaultRange.String(), "02:00:00:00:00:00-fd:ff:ff:ff:ff:ff"; got != want {
		t.Errorf("DefaultRange.String() = %q, want %q", got, want)
	}
	r, err = ParseRange("02:00:00:00:00:05", "02:00:00:00:00:05")
	if err != nil || r.Start != r.End || !r.Contains(0x020000000005) || r.Contains(0x020000000004) || r.Contains(0x020000000006) {
		t.Errorf("single-address range: %v, %v", r, err)
	}

	bad := []struct {
		name, start, end string
		want             []string
	}{
		{"bad start", "02:00:00:00:00:1g", "02:00:00:00:00:ff",
			[]string{`range start: "02:00:00:00:00:1g" is not a MAC address: expected six hex octets`}},
		{"empty start", "", "02:00:00:00:00:ff", []string{`range start: "" is not a MAC address`}},
		{"bad end", "02:00:00:00:00:00", "02:00:00:00:00:00:00:01",
			[]string{`range end: "02:00:00:00:00:00:00:01" is not a MAC address`, "EUI-64"}},
		{"both bad names start first", "x", "y", []string{`range start: "x"`}},
		{"start after end", "02:00:00:00:00:10", "02-00-00-00-00-01",
			[]string{"range start 02:00:00:00:00:10 is after range end 02:00:00:00:00:01"}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseRange(tt.start, tt.end)
			if err == nil {
				t.Fatalf("ParseRange(%q, %q) = %v, want error", tt.start, tt.end, r)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}
