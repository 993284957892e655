package testenv

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is kubemacpool (or any binary with a readiness URL) running as
// its own process, as in a cluster: its CPU and memory are its own. The
// integration tests, the local runner and the load program all start
// kubemacpool this way. Start may be called again once it has exited (a
// restart, as the kubelet does); the log is appended to.
type Process struct {
	Binary   string
	Args     []string
	LogPath  string
	ReadyURL string

	mu      sync.Mutex
	cmd     *exec.Cmd
	started time.Time
	exited  chan error
}

// Start launches the process and returns at once; WaitReady measures from
// the moment the process was started.
func (k *Process) Start() error {
	logFile, err := os.OpenFile(k.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(k.Binary, k.Args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	k.mu.Lock()
	defer k.mu.Unlock()
	k.started = time.Now()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("starting %s: %w", k.Binary, err)
	}
	exited := make(chan error, 1)
	k.cmd, k.exited = cmd, exited
	go func() {
		exited <- cmd.Wait()
		close(exited)
		logFile.Close()
	}()
	return nil
}

// WaitReady polls /readyz often (every 20 ms) so the start-up time it
// returns, counted from process start, is not rounded up by the polling.
func (k *Process) WaitReady(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	httpClient := &http.Client{Timeout: time.Second}
	deadline := time.After(timeout)
	for {
		if k.ready(ctx, httpClient) {
			return time.Since(k.Started()), nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case err := <-k.Exited():
			return 0, fmt.Errorf("%s exited before it was ready (%v); see %s", k.Binary, err, k.LogPath)
		case <-deadline:
			return 0, fmt.Errorf("%s not ready after %s; see %s", k.Binary, timeout, k.LogPath)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (k *Process) ready(ctx context.Context, httpClient *http.Client) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.ReadyURL, nil)
	if err != nil {
		return false
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Ready reports whether the readiness URL answers 200 now.
func (k *Process) Ready() bool {
	return k.ready(context.Background(), &http.Client{Timeout: time.Second})
}

// Exited is closed once the process that was last started has exited.
func (k *Process) Exited() <-chan error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.exited
}

// Signal sends sig to the process, if it runs.
func (k *Process) Signal(sig syscall.Signal) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cmd != nil && k.cmd.Process != nil {
		_ = k.cmd.Process.Signal(sig)
	}
}

// Wait waits until the process that was last started has exited.
func (k *Process) Wait() {
	if exited := k.Exited(); exited != nil {
		for range exited {
		}
	}
}

// Alive reports an error once the process has exited, so a long wait on
// its work fails at once instead of at its deadline.
func (k *Process) Alive() error {
	select {
	case err := <-k.Exited():
		return fmt.Errorf("%s exited (%v); see %s", k.Binary, err, k.LogPath)
	default:
		return nil
	}
}

// ResidentMemory is VmRSS of the process, in bytes: what it really holds,
// unlike the Go heap figures, which leave out stacks, binary and runtime.
func (k *Process) ResidentMemory() (uint64, error) { return k.status("VmRSS:") }

// PeakResidentMemory is VmHWM, the most the process has held at once: what
// a memory limit must leave room for.
func (k *Process) PeakResidentMemory() (uint64, error) { return k.status("VmHWM:") }

// AnonymousMemory is RssAnon, the part of VmRSS that is the process's own
// (heap, stacks, runtime). The rest is mostly the binary's pages, read from
// the page cache and shared; the kernel maps pages around each one touched
// (fault-around), so it depends on what else read the file.
func (k *Process) AnonymousMemory() (uint64, error) { return k.status("RssAnon:") }

// status reads a size field of /proc/PID/status, in bytes.
func (k *Process) status(field string) (uint64, error) {
	k.mu.Lock()
	pid := k.cmd.Process.Pid
	k.mu.Unlock()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		// The line reads "VmRSS:	  183456 kB".
		fields := strings.Fields(scanner.Text())
		if len(fields) == 3 && fields[0] == field && fields[2] == "kB" {
			kb, err := strconv.ParseUint(fields[1], 10, 64)
			return kb * 1024, err
		}
	}
	if err := scanner.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no %s line in /proc/%d/status", field, pid)
}

// Stop sends SIGTERM (kubemacpool drains, with --shutdown-delay 0s at once)
// and kills it if it has not exited after 30 s. Safe to call twice.
func (k *Process) Stop() {
	if k.Exited() == nil {
		return
	}
	k.Signal(syscall.SIGTERM)
	select {
	case <-k.Exited():
	case <-time.After(30 * time.Second):
		k.Signal(syscall.SIGKILL)
	}
	k.Wait()
}

// Started is when the process was last started.
func (k *Process) Started() time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.started
}
