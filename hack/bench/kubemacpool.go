package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// kubemacpool is bin/kubemacpool running as its own process, as in a
// cluster: its CPU and memory are its own, not mixed with the load's.
type kubemacpool struct {
	binary   string
	args     []string
	logPath  string
	readyURL string

	cmd     *exec.Cmd
	started time.Time
	exited  chan error
}

// start launches the process and returns at once; waitReady measures from
// the moment the process was started.
func (k *kubemacpool) start() error {
	logFile, err := os.OpenFile(k.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	k.cmd = exec.Command(k.binary, k.args...)
	k.cmd.Stdout, k.cmd.Stderr = logFile, logFile
	k.started = time.Now()
	if err := k.cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("starting %s: %w", k.binary, err)
	}
	exited := make(chan error, 1)
	k.exited = exited
	go func() {
		exited <- k.cmd.Wait()
		close(exited)
		logFile.Close()
	}()
	return nil
}

// waitReady polls /readyz often (every 20 ms) so the start-up time it
// returns, counted from process start, is not rounded up by the polling.
func (k *kubemacpool) waitReady(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	httpClient := &http.Client{Timeout: time.Second}
	deadline := time.After(timeout)
	for {
		if k.ready(ctx, httpClient) {
			return time.Since(k.started), nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case err := <-k.exited:
			return 0, fmt.Errorf("kubemacpool exited before it was ready (%v); see %s", err, k.logPath)
		case <-deadline:
			return 0, fmt.Errorf("kubemacpool not ready after %s; see %s", timeout, k.logPath)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (k *kubemacpool) ready(ctx context.Context, httpClient *http.Client) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.readyURL, nil)
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

// alive reports an error once the process has exited, so a long wait on
// its work fails at once instead of at its deadline.
func (k *kubemacpool) alive() error {
	select {
	case err := <-k.exited:
		return fmt.Errorf("kubemacpool exited (%v); see %s", err, k.logPath)
	default:
		return nil
	}
}

// residentMemory is VmRSS of the process, in bytes: what it really holds,
// unlike the Go heap figures, which leave out stacks, binary and runtime.
func (k *kubemacpool) residentMemory() (uint64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", k.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		// The line reads "VmRSS:	  183456 kB".
		fields := strings.Fields(scanner.Text())
		if len(fields) == 3 && fields[0] == "VmRSS:" && fields[2] == "kB" {
			kb, err := strconv.ParseUint(fields[1], 10, 64)
			return kb * 1024, err
		}
	}
	if err := scanner.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no VmRSS line in /proc/PID/status")
}

// stop sends SIGTERM (kubemacpool drains, with --shutdown-delay 0s at once)
// and kills it if it has not exited after 30 s. Safe to call twice.
func (k *kubemacpool) stop() {
	if k.cmd == nil || k.cmd.Process == nil {
		return
	}
	_ = k.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-k.exited:
	case <-time.After(30 * time.Second):
		_ = k.cmd.Process.Kill()
		<-k.exited
	}
	k.cmd = nil
}
