package testenv

import (
	"net"
	"strconv"
	"testing"
)

// The ports handed out are free, each handed out once, and below the
// kernel's ephemeral range, where no outgoing connection takes them.
func TestFreePortIsFreeOnceAndBelowTheEphemeralRange(t *testing.T) {
	first := ephemeralFirst()
	seen := map[int]bool{}
	for range 50 {
		port, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if port < lowestFreePort || port >= first {
			t.Errorf("port %d is outside %d-%d", port, lowestFreePort, first-1)
		}
		if seen[port] {
			t.Errorf("port %d was handed out twice", port)
		}
		seen[port] = true
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			t.Errorf("port %d is not free: %v", port, err)
			continue
		}
		l.Close()
	}
}
