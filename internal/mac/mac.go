// Package mac is the MAC address arithmetic behind kubemacpool: parsing and
// printing addresses, inclusive ranges of them, and the subset of a range a
// pool may hand out (see Allocatable).
//
// Addresses are plain integers so that ranges and indexes are simple
// arithmetic instead of byte-slice juggling.
package mac

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// MAC is a 48-bit MAC address held in the low 48 bits of a uint64.
// The first octet on the wire is bits 47..40.
type MAC uint64

// Max is the largest 48-bit MAC address, ff:ff:ff:ff:ff:ff.
const Max MAC = 1<<48 - 1

// validExample is appended to every parse error so the user sees at once
// what we wanted instead of having to look it up.
const validExample = "expected six hex octets such as 02:00:00:00:00:1a"

// maxQuotedInput bounds how much of a bad input is echoed in an error:
// inputs can come from user-controlled annotations and must not blow up
// log lines or Kubernetes events.
const maxQuotedInput = 64

// quote renders s for an error message, cut to maxQuotedInput bytes.
func quote(s string) string {
	if len(s) > maxQuotedInput {
		return strconv.Quote(s[:maxQuotedInput]) + "..."
	}
	return strconv.Quote(s)
}

// Parse accepts every 48-bit form net.ParseMAC accepts (00:00:5e:00:53:01,
// 00-00-5E-00-53-01, 0000.5e00.5301, any case), after trimming surrounding
// spaces. 64-bit EUI-64 and 20-octet InfiniBand addresses are refused: they
// do not fit a MAC and a pool must never store them.
func Parse(s string) (MAC, error) {
	// Delegating to net.ParseMAC makes "accepts what net.ParseMAC accepts"
	// true by construction rather than by a second, hand-written grammar.
	hw, err := net.ParseMAC(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%s is not a MAC address: %s", quote(s), validExample)
	}
	switch len(hw) {
	case 6:
	case 8:
		return 0, fmt.Errorf("%s is not a MAC address: it is a 64-bit EUI-64 address, %s", quote(s), validExample)
	default: // net.ParseMAC only returns 6, 8 or 20 octets
		return 0, fmt.Errorf("%s is not a MAC address: it is a %d-octet InfiniBand address, %s", quote(s), len(hw), validExample)
	}
	var m MAC
	for _, b := range hw {
		m = m<<8 | MAC(b)
	}
	return m, nil
}

const hexDigits = "0123456789abcdef"

// format prints the six octets in lowercase hex joined by sep. Bits above
// the low 48 are ignored: such a value is not a MAC and has no spelling.
func (m MAC) format(sep byte) string {
	var b [17]byte
	for i := range 6 {
		o := byte(m >> (40 - 8*i))
		b[3*i] = hexDigits[o>>4]
		b[3*i+1] = hexDigits[o&0x0f]
		if i < 5 {
			b[3*i+2] = sep
		}
	}
	return string(b[:])
}

// String returns the canonical lowercase colon form, e.g. "02:00:00:00:00:1a".
func (m MAC) String() string { return m.format(':') }

// ObjectName returns the form used in Kubernetes object names, e.g.
// "02-00-00-00-00-1a": colons are not allowed in names, and lowercase is
// required, so every MAC has exactly one object name.
func (m MAC) ObjectName() string { return m.format('-') }

// ParseObjectName is the strict inverse of ObjectName: it accepts only the
// exact lowercase dash form. Being strict keeps the name<->MAC mapping
// one-to-one, so two objects can never claim the same address under
// different spellings.
func ParseObjectName(name string) (MAC, error) {
	bad := func() (MAC, error) {
		return 0, fmt.Errorf("%s is not a MAC object name: expected six lowercase hex octets joined by dashes such as 02-00-00-00-00-1a", quote(name))
	}
	if len(name) != 17 {
		return bad()
	}
	var m MAC
	for i := range len(name) {
		c := name[i]
		if i%3 == 2 {
			if c != '-' {
				return bad()
			}
			continue
		}
		d := strings.IndexByte(hexDigits, c) // lowercase only, by design
		if d < 0 {
			return bad()
		}
		m = m<<4 | MAC(d)
	}
	return m, nil
}

// IsMulticast reports whether the I/G bit (lowest bit of the first octet)
// is set. The broadcast address ff:ff:ff:ff:ff:ff is multicast too.
func (m MAC) IsMulticast() bool { return m.FirstOctet()&0x01 != 0 }

// IsUniversal reports whether the address is universally administered,
// i.e. the U/L bit (0x02 of the first octet) is clear. Such addresses
// belong to vendor OUIs and may be carried by real NICs.
func (m MAC) IsUniversal() bool { return m.FirstOctet()&0x02 == 0 }

// FirstOctet returns the first octet as transmitted, which carries the
// multicast and universal/local bits.
func (m MAC) FirstOctet() byte { return byte(m >> 40) }

// Range is an inclusive range of MACs.
type Range struct{ Start, End MAC }

// DefaultRange is the default pool range from the product contract.
var DefaultRange = Range{Start: 0x020000000000, End: 0xFDFFFFFFFFFF}

// ParseRange parses both bounds of an inclusive range. Errors name the
// bound at fault, so a user editing a config knows which field to fix.
func ParseRange(start, end string) (Range, error) {
	s, err := Parse(start)
	if err != nil {
		return Range{}, fmt.Errorf("range start: %w", err)
	}
	e, err := Parse(end)
	if err != nil {
		return Range{}, fmt.Errorf("range end: %w", err)
	}
	if s > e {
		return Range{}, fmt.Errorf("range start %s is after range end %s", s, e)
	}
	return Range{Start: s, End: e}, nil
}

// Contains reports whether m lies in the range, bounds included.
func (r Range) Contains(m MAC) bool { return r.Start <= m && m <= r.End }

// String returns "start-end" in colon form, e.g. "02:00:00:00:00:00-fd:ff:ff:ff:ff:ff".
func (r Range) String() string { return r.Start.String() + "-" + r.End.String() }

// validate refuses ranges built by hand (not by ParseRange) that are
// inverted or reach past 48 bits; Allocatable relies on both.
func (r Range) validate() error {
	if r.End > Max {
		return fmt.Errorf("range end %#x is not a 48-bit MAC address", uint64(r.End))
	}
	if r.Start > r.End {
		return fmt.Errorf("range start %s is after range end %s", r.Start, r.End)
	}
	return nil
}
