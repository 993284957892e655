package manager

import (
	"flag"
	"reflect"
	"testing"
	"time"

	"github.com/kubemacpool/kubemacpool/internal/scope"
)

// Args and BindFlags are inverses: a process started with o.Args() runs
// with o, which is how the tests start kubemacpool as a process.
func TestArgsRoundTrip(t *testing.T) {
	o := Defaults()
	o.Namespace, o.WebhookHost, o.WebhookPort = "ns", "127.0.0.1", 12345
	o.ReservationGrace, o.RepairInterval, o.MinReservationGrace = 4*time.Second, time.Minute, time.Second
	o.PodNamespaces, o.VMNamespaces = scope.OptIn, scope.OptOut
	o.MetricsSecure, o.LeaderElection = false, false
	o.CertMode, o.CertHosts = CertModeFiles, []string{"a.example", "10.0.0.1"}
	o.ControllersQPS, o.ControllersBurst, o.MaxPendingPerNamespace = 7.5, 9, 11
	o.TLSMinVersion, o.TLSCipherSuites, o.MaxInterfaces = "1.3", []string{"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"}, 8

	got := Defaults()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	complete := got.BindFlags(fs)
	if err := fs.Parse(o.Args()); err != nil {
		t.Fatal(err)
	}
	if err := complete(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, o) {
		t.Fatalf("parsed %+v\nwant   %+v", got, o)
	}
}

// A mode that is neither opt-in nor opt-out is refused, naming the flag.
func TestBindFlagsRefusesBadMode(t *testing.T) {
	o := Defaults()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	complete := o.BindFlags(fs)
	if err := fs.Parse([]string{"--pod-namespaces=sometimes"}); err != nil {
		t.Fatal(err)
	}
	if err := complete(); err == nil || err.Error()[:16] != "--pod-namespaces" {
		t.Fatalf("error = %v", err)
	}
}

// Without --cert-hosts the certificate names the Service in the namespace
// kubemacpool runs in, so a release in another namespace needs no flag.
func TestCertHostsFollowTheNamespace(t *testing.T) {
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"--cert-hosts="}, []string{"kubemacpool-service.kubemacpool-system.svc", "kubemacpool-service.kubemacpool-system.svc.cluster.local"}},
		{nil, []string{"kubemacpool-service.kubemacpool-system.svc", "kubemacpool-service.kubemacpool-system.svc.cluster.local"}},
		{[]string{"--namespace=macs"}, []string{"kubemacpool-service.macs.svc", "kubemacpool-service.macs.svc.cluster.local"}},
		{[]string{"--namespace=macs", "--cert-hosts=a.example"}, []string{"a.example"}},
	} {
		o := Defaults()
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		complete := o.BindFlags(fs)
		if err := fs.Parse(c.args); err != nil {
			t.Fatal(err)
		}
		if err := complete(); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(o.ServingHosts(), c.want) {
			t.Errorf("%v: serving hosts %v, want %v", c.args, o.ServingHosts(), c.want)
		}
	}
}
