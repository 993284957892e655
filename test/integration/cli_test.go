package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// The operator CLI, run as the real binary with a kubeconfig, answers
// correctly on a populated cluster.
func TestCLI(t *testing.T) {
	g := NewWithT(t)
	replica := startManager(t, testOptions(t))
	kubeconfig, err := env.Kubeconfig()
	g.Expect(err).NotTo(HaveOccurred())
	path := filepath.Join(t.TempDir(), "kubeconfig")
	g.Expect(os.WriteFile(path, kubeconfig, 0o600)).To(Succeed())
	run := func(args ...string) string {
		out, err := exec.Command(kubemacpoolBinary(t), append(args, "--kubeconfig", path)...).CombinedOutput()
		g.Expect(err).NotTo(HaveOccurred(), "%s", out)
		return string(out)
	}

	setRange(t, map[string]string{"START_POOL_RANGE": "02:c0:00:00:00:00", "END_POOL_RANGE": "02:c0:00:00:00:ff"})
	ns := newNamespace(t, nil)
	a := createPod(t, pod(ns, "a", `[{"name":"n"},{"name":"m"}]`))
	vm := newVM(ns, "vm", iface{"x", "bridge", "net-x", ""})
	g.Expect(env.Client.Create(t.Context(), vm)).To(Succeed())
	m := macsOf(t, a)[0]
	expectBound(t, m, a)
	expectHeldBy(t, vmMACs(vm)["x"], "VirtualMachine", vm)

	status := run("status")
	g.Expect(status).To(ContainSubstring("02:c0:00:00:00:00-02:c0:00:00:00:ff"))
	g.Expect(status).To(MatchRegexp(`Allocatable:\s+256\n`))
	g.Expect(status).To(MatchRegexp(`(?m)^` + ns + `\s+2\s+1\s+0\s+0\s*$`))

	// Any spelling of the MAC.
	who := run("who", strings.ToUpper(strings.ReplaceAll(m.String(), ":", "-")))
	g.Expect(who).To(MatchRegexp(`Holder:\s+Pod ` + ns + `/a\n`))
	g.Expect(who).To(MatchRegexp(`Phase:\s+Bound`))
	g.Expect(run("who", "02:ff:ff:ff:ff:01")).To(ContainSubstring("is not held"))

	ignored := newNamespace(t, map[string]string{"mutatepods.kubemacpool.io": "ignore"})
	// A MAC that a pod kubemacpool ignores carries is held all the same:
	// adopted into the ledger for that pod, and who names it and the carrier.
	createPod(t, pod(ignored, "by-hand", `[{"name":"n","mac":"02:c2:00:00:00:07"}]`))
	g.Eventually(func(g Gomega) {
		who := run("who", "02:c2:00:00:00:07")
		g.Expect(who).To(MatchRegexp(`Carried by:\s+Pod ` + ignored + `/by-hand \(network ` + ignored + `/n\)\n`))
		g.Expect(who).To(MatchRegexp(`Holder:\s+Pod ` + ignored + `/by-hand\n`))
		g.Expect(who).To(MatchRegexp(`Phase:\s+Bound, adopted`))
	}).WithTimeout(20 * time.Second).Should(Succeed())
	g.Expect(run("collisions")).NotTo(ContainSubstring(ignored))
	runningPod(t, ignored, "c1", "02:c1:00:00:00:01")
	runningPod(t, ignored, "c2", "02:c1:00:00:00:01")
	g.Expect(run("collisions")).To(MatchRegexp(`02:c1:00:00:00:01\s+2\s+Pod ` + ignored + `/c1, Pod ` + ignored + `/c2`))

	// A replica's stock, once the range is wide enough to keep one.
	setRange(t, map[string]string{"START_POOL_RANGE": "02:c3:00:00:00:00", "END_POOL_RANGE": "02:c3:00:00:ff:ff"})
	stock := waitForStock(t, mustMAC("02:c3:00:00:00:00"), mustMAC("02:c3:00:00:ff:ff"), 64)
	name := replica.opts.ReplicaName
	g.Eventually(func() string { return run("status") }).WithTimeout(20 * time.Second).Should(
		MatchRegexp(`In stock:\s+\d+ held by replica ` + name + ` \(incarnation `))
	g.Expect(run("who", stock[0].MAC.String())).To(MatchRegexp(`Holder:\s+the stock of kubemacpool replica ` + name + ` `))

	// As a kubectl plugin, through the real kubectl.
	plugins := t.TempDir()
	g.Expect(os.Symlink(kubemacpoolBinary(t), filepath.Join(plugins, "kubectl-macpool"))).To(Succeed())
	cmd := exec.Command("kubectl", "macpool", "who", m.String(), "--kubeconfig", path)
	cmd.Env = append(os.Environ(), "PATH="+plugins+":"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), "%s", out)
	g.Expect(string(out)).To(ContainSubstring("Pod " + ns + "/a"))
}
