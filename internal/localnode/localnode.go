// Package localnode brings up a one-node Kubernetes cluster on this
// machine, with no Docker and no registry: the control plane of testenv
// (kube-apiserver and etcd), kube-controller-manager and kube-scheduler,
// containerd with runc, and a kubelet whose pods get their networks from
// Multus's thin plugin and the CNI bridge and tuning plugins. Everything it
// makes (processes, files, network namespaces, links, mounts, cgroups) is
// removed by Stop. `make run` and the e2e tests use it.
//
// Pods reach the API server without kube-proxy: the API server listens on
// the `kubernetes` Service's own ClusterIP (the first address of the
// Service range), port 443, an address of the host's loopback device, so the
// address kubelet gives pods in KUBERNETES_SERVICE_HOST is the API server
// itself. The API server reaches webhooks served by pods through their
// endpoints (--enable-aggregator-routing), over the pod bridge.
package localnode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/kubemacpool/kubemacpool/internal/testenv"
)

const (
	// NodeName is the one node's name.
	NodeName = "kmp-node"
	// serviceCIDR is the Service range; apiServerIP is its first address,
	// the ClusterIP of the `kubernetes` Service.
	serviceCIDR = "10.97.0.0/24"
	apiServerIP = "10.97.0.1"
	// PodCIDR is the pods' primary network, a bridge whose gateway is the
	// host.
	PodCIDR = "10.244.0.0/24"
	// LinkPrefix starts the name of every link the node makes; Stop deletes
	// the links so named. Bridges of test networks must use it too.
	LinkPrefix = "kmp-"
	podBridge  = LinkPrefix + "pods0"
	// PauseImage is containerd's sandbox image, imported from hack/pause.
	PauseImage = "kubemacpool.local/pause:1"
	// containerd's namespace for CRI.
	criNamespace = "k8s.io"
)

// Options say what the node's control plane installs and where its state
// lives.
type Options struct {
	// Dir holds everything the node writes; Stop removes it.
	Dir string
	// ExtraCRDDirs and WithoutWebhooks are passed to testenv.
	ExtraCRDDirs    []string
	WithoutWebhooks bool
	// Log reports progress; nil is silent.
	Log func(format string, args ...any)
}

// Node is a running one-node cluster.
type Node struct {
	Env *testenv.Env
	// Kubeconfig is the path of an administrator's kubeconfig.
	Kubeconfig string
	Dir        string

	bin          string
	log          func(string, ...any)
	containerd   *testenv.Process
	kubelet      *testenv.Process
	controlPlane []*testenv.Process // kube-controller-manager, kube-scheduler
	socket       string
	pauseArchive string
	// prepared: the host was checked free of another node and snapshotted;
	// until then Stop must not touch the host's links, namespaces or Dir,
	// which may be another running node's.
	prepared      bool
	addedAddress  bool
	netnsBefore   map[string]bool
	cgroupsBefore map[string]bool
}

// Unsupported says why this machine cannot run a node (nil when it can):
// the node needs Linux, root, and containerd and runc on the PATH
// (`make node` installs them with apt-get where it can).
func Unsupported() error {
	if runtime.GOOS != "linux" {
		return fmt.Errorf("a local node needs Linux, this is %s", runtime.GOOS)
	}
	if os.Geteuid() != 0 {
		return errors.New("a local node needs root (containerd, network namespaces, mounts)")
	}
	for _, tool := range []string{"containerd", "ctr", "runc", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("a local node needs %s on the PATH (make node installs containerd and runc with apt-get): %w", tool, err)
		}
	}
	return nil
}

// BinDir returns bin/node (kubelet, kube-controller-manager,
// kube-scheduler, and the CNI plugins in cni/), building it first when
// missing.
func BinDir() (string, error) {
	root := testenv.RepoRoot()
	dir := filepath.Join(root, "bin", "node")
	if _, err := os.Stat(filepath.Join(dir, "cni", "ptp")); err == nil {
		return dir, nil
	}
	cmd := exec.Command("bash", filepath.Join(root, "hack", "control-plane.sh"), "node")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building the node with hack/control-plane.sh node: %w", err)
	}
	return dir, nil
}

// Start brings the node up and returns once it is Ready. On error,
// whatever was started is stopped again.
func Start(o Options) (n *Node, err error) {
	if err := Unsupported(); err != nil {
		return nil, err
	}
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	n = &Node{Dir: dir, bin: bin, log: o.Log, socket: filepath.Join(dir, "containerd", "containerd.sock")}
	if n.log == nil {
		n.log = func(string, ...any) {}
	}
	defer func() {
		if err != nil {
			_ = n.Stop()
		}
	}()
	if err := n.prepareHost(); err != nil {
		return n, err
	}
	n.log("starting kube-apiserver and etcd on %s:443", apiServerIP)
	n.Env, err = testenv.Start(testenv.Options{
		ExtraCRDDirs:    o.ExtraCRDDirs,
		WithoutWebhooks: o.WithoutWebhooks,
		APIServer: func(s *envtest.APIServer) {
			s.SecureServing.Address, s.SecureServing.Port, s.SecurePort = apiServerIP, "443", 443
			args := s.Configure()
			args.Set("service-cluster-ip-range", serviceCIDR)
			// Webhooks and aggregated APIs are called at their endpoints:
			// no kube-proxy runs to route a ClusterIP.
			args.Set("enable-aggregator-routing", "true")
			// Pods get their service account token (envtest turns the
			// plugin off, having no controller-manager).
			args.Disable("disable-admission-plugins")
		},
	})
	if err != nil {
		return n, err
	}
	if err := n.writeFiles(); err != nil {
		return n, err
	}
	if err := n.startControllers(); err != nil {
		return n, err
	}
	if err := n.startContainerd(); err != nil {
		return n, err
	}
	if err := n.startKubelet(); err != nil {
		return n, err
	}
	return n, nil
}

func (n *Node) path(parts ...string) string {
	return filepath.Join(append([]string{n.Dir}, parts...)...)
}

// prepareHost removes what an earlier node that was killed left behind,
// then gives the host the API server's address.
func (n *Node) prepareHost() error {
	if listening(apiServerIP, 443) {
		return fmt.Errorf("another local node is running here (something serves %s:443): stop it first (make cluster-down, or Ctrl-C make run)", apiServerIP)
	}
	for _, link := range ourLinks() {
		_ = run("ip", "link", "delete", link)
	}
	_ = run("ip", "address", "delete", apiServerIP+"/32", "dev", "lo")
	if err := os.MkdirAll(n.Dir, 0o755); err != nil {
		return err
	}
	n.netnsBefore = listDir("/var/run/netns")
	n.cgroupsBefore = cgroupDirs()
	n.prepared, n.addedAddress = true, true
	return run("ip", "address", "add", apiServerIP+"/32", "dev", "lo")
}

func (n *Node) writeFiles() error {
	kubeconfig, err := n.Env.Kubeconfig()
	if err != nil {
		return err
	}
	n.Kubeconfig = n.path("kubeconfig")
	files := map[string]string{
		"kubeconfig":               string(kubeconfig),
		"ca.crt":                   string(n.Env.Config.CAData),
		"containerd/config.toml":   n.containerdConfig(),
		"cni/net.d/00-multus.conf": n.multusConfig(),
	}
	for _, d := range []string{"pod-logs", "kubelet/volume-plugins"} {
		if err := os.MkdirAll(n.path(d), 0o755); err != nil {
			return err
		}
	}
	for name, content := range files {
		path := n.path(name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// containerdConfig: overlayfs and cgroupfs, and restrict_oom_score_adj,
// since root here may lack CAP_SYS_RESOURCE (without it runc fails every
// sandbox lowering its oom_score_adj).
func (n *Node) containerdConfig() string {
	return fmt.Sprintf(`version = 2
root = %q
state = %q
[grpc]
  address = %q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  restrict_oom_score_adj = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
    max_conf_num = 1
`, n.path("containerd", "root"), n.path("containerd", "state"), n.socket, PauseImage,
		filepath.Join(n.bin, "cni"), n.path("cni", "net.d"))
}

// multusConfig is the node's CNI configuration: Multus's thin plugin, which
// gives every pod the primary bridge network and adds the networks its
// k8s.v1.cni.cncf.io/networks annotation asks for, with the MACs written
// there.
func (n *Node) multusConfig() string {
	return fmt.Sprintf(`{
  "cniVersion": "0.3.1",
  "name": "multus-cni-network",
  "type": "multus",
  "kubeconfig": %q,
  "cniDir": %q,
  "binDir": %q,
  "logFile": %q,
  "logLevel": "verbose",
  "delegates": [{
    "cniVersion": "0.3.1",
    "name": "pods",
    "plugins": [{
      "type": "bridge",
      "bridge": %q,
      "isGateway": true,
      "ipam": {"type": "host-local", "subnet": %q, "dataDir": %q, "routes": [{"dst": "0.0.0.0/0"}]}
    }]
  }]
}
`, n.path("kubeconfig"), n.path("cni", "multus"), filepath.Join(n.bin, "cni"), n.path("multus.log"),
		podBridge, PodCIDR, n.path("cni", "ipam"))
}

func (n *Node) process(name string, args ...string) *testenv.Process {
	return &testenv.Process{Binary: name, Args: args, LogPath: n.path(filepath.Base(name) + ".log")}
}

// startControllers runs kube-controller-manager (Deployments, Services'
// endpoints, service accounts, the root CA every pod trusts) and
// kube-scheduler.
func (n *Node) startControllers() error {
	for _, name := range []string{"kube-controller-manager", "kube-scheduler"} {
		port, err := testenv.FreePort()
		if err != nil {
			return err
		}
		args := []string{"--kubeconfig=" + n.Kubeconfig, "--leader-elect=false",
			"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", port), "--cert-dir=" + n.path(name)}
		if name == "kube-controller-manager" {
			args = append(args, "--root-ca-file="+n.path("ca.crt"), "--use-service-account-credentials=false")
		}
		p := n.process(filepath.Join(n.bin, name), args...)
		n.log("starting %s", name)
		if err := p.Start(); err != nil {
			return err
		}
		n.controlPlane = append(n.controlPlane, p)
	}
	return nil
}

func (n *Node) startContainerd() error {
	n.log("starting containerd (%s)", n.path("containerd.log"))
	n.containerd = n.process("containerd", "--config", n.path("containerd", "config.toml"))
	if err := n.containerd.Start(); err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := n.ctr("version"); err == nil {
			break
		} else if time.Now().After(deadline) || n.containerd.Alive() != nil {
			return fmt.Errorf("containerd did not come up: %v\n%s", err, tail(n.containerd.LogPath))
		}
		time.Sleep(200 * time.Millisecond)
	}
	pause, err := buildPause(n.path("pause"))
	if err != nil {
		return err
	}
	n.pauseArchive = n.path("pause-image.tar")
	if err := WriteImage(n.pauseArchive, pause, "/pause", PauseImage); err != nil {
		return err
	}
	return n.ImportImage(n.pauseArchive)
}

// PauseArchive is the docker archive of the pause image, for pods that
// only need to run (ImportImage it under their image's name).
func (n *Node) PauseArchive() string { return n.pauseArchive }

// buildPause builds hack/pause, static, into dir.
func buildPause(dir string) (string, error) {
	out := filepath.Join(dir, "pause")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./hack/pause")
	cmd.Dir = testenv.RepoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building hack/pause: %v: %s", err, msg)
	}
	return out, nil
}

// ImportImage loads a docker archive into containerd's CRI namespace, and
// tags what it holds also as each of the extra references.
func (n *Node) ImportImage(archive string, extraRefs ...string) error {
	if err := n.ctr("images", "import", archive); err != nil {
		return err
	}
	if len(extraRefs) == 0 {
		return nil
	}
	refs, err := ImageRefs(archive)
	if err != nil {
		return err
	}
	for _, ref := range extraRefs {
		if err := n.ctr("images", "tag", "--force", refs[0], normalize(ref)); err != nil {
			return err
		}
	}
	return nil
}

func (n *Node) ctr(args ...string) error {
	return run("ctr", append([]string{"--address", n.socket, "--namespace", criNamespace}, args...)...)
}

func (n *Node) ctrOutput(args ...string) (string, error) {
	cmd := exec.Command("ctr", append([]string{"--address", n.socket, "--namespace", criNamespace}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("ctr %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// kubeletConfig: cgroupfs (containerd 1.6 does not answer the kubelet's
// RuntimeConfig call), cgroup v1 allowed (1.35+ refuses it otherwise), no
// per-QoS cgroups (nothing to enforce on a test node, and nothing left
// behind), no oom_score_adj the kubelet cannot apply, and eviction and
// image GC thresholds that never remove the images no registry could give
// back.
func (n *Node) kubeletConfig(port int) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://%s
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: ["none"]
failSwapOn: false
oomScoreAdj: 0
address: %s
port: %d
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization:
  mode: AlwaysAllow
podLogsDir: %s
volumePluginDir: %s
evictionHard: {"memory.available": "50Mi", "nodefs.available": "1%%", "nodefs.inodesFree": "1%%", "imagefs.available": "1%%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
`, n.socket, apiServerIP, port, n.path("pod-logs"), n.path("kubelet", "volume-plugins"))
}

func (n *Node) startKubelet() error {
	port, err := testenv.FreePort()
	if err != nil {
		return err
	}
	if err := os.WriteFile(n.path("kubelet", "config.yaml"), []byte(n.kubeletConfig(port)), 0o600); err != nil {
		return err
	}
	n.log("starting kubelet (%s)", n.path("kubelet.log"))
	n.kubelet = n.process(filepath.Join(n.bin, "kubelet"),
		"--config="+n.path("kubelet", "config.yaml"),
		"--kubeconfig="+n.Kubeconfig,
		"--root-dir="+n.path("kubelet", "root"),
		"--hostname-override="+NodeName,
		"--node-ip="+apiServerIP,
	)
	if err := n.kubelet.Start(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for {
		var node corev1.Node
		if err := n.Env.Client.Get(ctx, client.ObjectKey{Name: NodeName}, &node); err == nil && nodeReady(&node) {
			n.log("node %s is Ready", NodeName)
			return nil
		}
		if err := n.kubelet.Alive(); err != nil {
			return fmt.Errorf("kubelet exited: %v\n%s", err, tail(n.kubelet.LogPath))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s not Ready after 2m; kubelet's log ends:\n%s", NodeName, tail(n.kubelet.LogPath))
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func nodeReady(node *corev1.Node) bool {
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// InterfaceMAC reads the MAC of the interface ifname inside a running pod,
// from the host: its first container's init process sees the pod's network
// namespace in its own /sys.
func (n *Node) InterfaceMAC(pod *corev1.Pod, ifname string) (string, error) {
	if len(pod.Status.ContainerStatuses) == 0 || pod.Status.ContainerStatuses[0].ContainerID == "" {
		return "", fmt.Errorf("pod %s/%s has no running container", pod.Namespace, pod.Name)
	}
	id := strings.TrimPrefix(pod.Status.ContainerStatuses[0].ContainerID, "containerd://")
	pid, err := os.ReadFile(n.path("containerd", "state", "io.containerd.runtime.v2.task", criNamespace, id, "init.pid"))
	if err != nil {
		return "", fmt.Errorf("pod %s/%s: its container's process: %w", pod.Namespace, pod.Name, err)
	}
	mac, err := os.ReadFile(filepath.Join("/proc", strings.TrimSpace(string(pid)), "root", "sys", "class", "net", ifname, "address"))
	if err != nil {
		return "", fmt.Errorf("pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return strings.TrimSpace(string(mac)), nil
}

// Stop removes everything the node made: its pods first (so their
// sandboxes' networks are torn down by the CNI plugins), then its
// processes, mounts, network namespaces, links and cgroups, then its
// directory. It goes on past errors and returns them joined.
func (n *Node) Stop() error {
	var errs []error
	for _, p := range n.controlPlane { // no Deployment recreates a pod now
		p.Stop()
	}
	if n.kubelet != nil && n.kubelet.Alive() == nil {
		errs = append(errs, n.deletePods())
		n.kubelet.Stop()
	}
	if n.containerd != nil && n.containerd.Alive() == nil {
		errs = append(errs, n.removeContainers())
		n.containerd.Stop()
	}
	killShims(n.socket)
	if n.Env != nil {
		errs = append(errs, n.Env.Stop())
	}
	if !n.prepared {
		return errors.Join(errs...)
	}
	errs = append(errs, unmountUnder(n.Dir))
	for name := range listDir("/var/run/netns") {
		if !n.netnsBefore[name] && strings.HasPrefix(name, "cni-") {
			path := filepath.Join("/var/run/netns", name)
			_ = run("umount", path)
			errs = append(errs, os.Remove(path))
		}
	}
	for _, link := range ourLinks() {
		errs = append(errs, run("ip", "link", "delete", link))
	}
	if n.addedAddress {
		errs = append(errs, run("ip", "address", "delete", apiServerIP+"/32", "dev", "lo"))
	}
	removeNewCgroups(n.cgroupsBefore)
	errs = append(errs, os.RemoveAll(n.Dir))
	return errors.Join(errs...)
}

// Leftovers lists what a stopped node left on the host, which Stop should
// have removed: its directory, mounts, processes, pod network namespaces,
// links and the API server's address.
func (n *Node) Leftovers() []string {
	var left []string
	if _, err := os.Stat(n.Dir); err == nil {
		left = append(left, "directory "+n.Dir)
	}
	if raw, err := os.ReadFile("/proc/self/mountinfo"); err == nil && strings.Contains(string(raw), " "+n.Dir) {
		left = append(left, "mounts under "+n.Dir)
	}
	for name := range listDir("/var/run/netns") {
		if !n.netnsBefore[name] && strings.HasPrefix(name, "cni-") {
			left = append(left, "network namespace "+name)
		}
	}
	for _, link := range ourLinks() {
		left = append(left, "link "+link)
	}
	if out, err := exec.Command("ip", "-brief", "address", "show", "dev", "lo").Output(); err == nil && strings.Contains(string(out), apiServerIP+"/32") {
		left = append(left, "address "+apiServerIP+" on lo")
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil && strings.Contains(string(raw), n.Dir) {
			left = append(left, "process "+e.Name()+": "+strings.ReplaceAll(string(raw), "\x00", " "))
		}
	}
	return left
}

// deletePods deletes every pod at once and waits (a minute at most) until
// containerd runs no task: the kubelet has stopped every pod's containers
// and sandbox, and the CNI plugins have torn the sandboxes' networks down.
// The stopped containers themselves the kubelet removes only at its next
// garbage collection; removeContainers does.
func (n *Node) deletePods() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var pods corev1.PodList
	if err := n.Env.Client.List(ctx, &pods); err != nil {
		return err
	}
	zero := int64(0)
	for i := range pods.Items {
		_ = n.Env.Client.Delete(ctx, &pods.Items[i], &client.DeleteOptions{GracePeriodSeconds: &zero})
	}
	for {
		out, err := n.ctrOutput("tasks", "list", "--quiet")
		if err == nil && strings.TrimSpace(out) == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pods' containers still running after a minute: %s", strings.Join(strings.Fields(out), ", "))
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// removeContainers kills and removes what the kubelet did not.
func (n *Node) removeContainers() error {
	out, err := n.ctrOutput("containers", "list", "--quiet")
	if err != nil {
		return err
	}
	for _, id := range strings.Fields(out) {
		_ = n.ctr("tasks", "kill", "--signal", "SIGKILL", id)
		_ = n.ctr("tasks", "delete", "--force", id)
		_ = n.ctr("containers", "delete", id)
	}
	return nil
}

// killShims kills the runc shims started for this containerd, which
// outlive it by design.
func killShims(socket string) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(raw), "\x00")
		if strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") && strings.Contains(string(raw), socket) {
			var pid int
			if _, err := fmt.Sscan(e.Name(), &pid); err == nil {
				if p, err := os.FindProcess(pid); err == nil {
					_ = p.Kill()
				}
			}
		}
	}
}

// unmountUnder unmounts every mount point under dir, deepest first.
func unmountUnder(dir string) error {
	raw, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var points []string
	for _, line := range strings.Split(string(raw), "\n") {
		fields := strings.Fields(line)
		if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			points = append(points, fields[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(points)))
	var errs []error
	for _, p := range points {
		if err := run("umount", "--lazy", p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// listening says whether a TCP socket of this host listens on ip:port
// (/proc/net/tcp; dialing would not tell, where a proxy answers any
// address).
func listening(ip string, port int) bool {
	raw, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return false
	}
	v4 := net.ParseIP(ip).To4()
	want := fmt.Sprintf("%02X%02X%02X%02X:%04X", v4[3], v4[2], v4[1], v4[0], port)
	for _, line := range strings.Split(string(raw), "\n") {
		fields := strings.Fields(line)
		if len(fields) > 3 && fields[1] == want && fields[3] == "0A" { // 0A: LISTEN
			return true
		}
	}
	return false
}

// ourLinks lists the host's links whose names start with LinkPrefix.
func ourLinks() []string {
	var links []string
	for name := range listDir("/sys/class/net") {
		if strings.HasPrefix(name, LinkPrefix) {
			links = append(links, name)
		}
	}
	return links
}

// cgroupDirs lists the directories directly under each cgroup hierarchy.
func cgroupDirs() map[string]bool {
	dirs := map[string]bool{}
	hierarchies, _ := filepath.Glob("/sys/fs/cgroup/*")
	hierarchies = append(hierarchies, "/sys/fs/cgroup")
	for _, h := range hierarchies {
		entries, _ := os.ReadDir(h)
		for _, e := range entries {
			if e.IsDir() {
				dirs[filepath.Join(h, e.Name())] = true
			}
		}
	}
	return dirs
}

// removeNewCgroups removes the (now empty) cgroups made under the
// hierarchies' roots since before was taken, deepest first.
func removeNewCgroups(before map[string]bool) {
	if before == nil {
		return
	}
	for dir := range cgroupDirs() {
		if before[dir] {
			continue
		}
		var tree []string
		_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				tree = append(tree, path)
			}
			return nil
		})
		sort.Sort(sort.Reverse(sort.StringSlice(tree)))
		for _, d := range tree {
			_ = os.Remove(d)
		}
	}
}

func listDir(dir string) map[string]bool {
	names := map[string]bool{}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		names[e.Name()] = true
	}
	return names
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// tail returns the last lines of a log, for errors that name a component's
// own words.
func tail(path string) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if len(lines) > 25 {
		lines = lines[len(lines)-25:]
	}
	return strings.Join(lines, "\n")
}
