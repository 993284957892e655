package main

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
)

// bareSync is the floor under kubemacpool's ready, taken on this machine
// just before kubemacpool starts: how long a stock controller-runtime
// cache (client-go's decoders, managedFields stripped, gzip off as
// kubemacpool has it, nothing else) takes from its start until it has
// listed every pod and VM, and with blocks every MAC block, as
// kubemacpool must before it serves. kubemacpool's ready beside it says
// what kubemacpool adds to reading the cluster, a figure that survives a
// slow machine where a time alone does not.
func (b *bench) bareSync(blocks bool) (time.Duration, error) {
	ctx, cancel := context.WithCancel(b.ctx)
	defer cancel()
	cfg := rest.CopyConfig(b.cfg)
	cfg.DisableCompression = true
	bare, err := cache.New(cfg, cache.Options{Scheme: b.c.Scheme(), DefaultTransform: cache.TransformStripManagedFields()})
	if err != nil {
		return 0, err
	}
	kinds := []client.Object{&corev1.Pod{}, &kubevirtv1.VirtualMachine{}}
	if blocks {
		kinds = append(kinds, &v1alpha1.MACBlock{})
	}
	start := time.Now()
	for _, obj := range kinds {
		if _, err := bare.GetInformer(ctx, obj, cache.BlockUntilSynced(false)); err != nil {
			return 0, err
		}
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		_ = bare.Start(ctx)
	}()
	if !bare.WaitForCacheSync(ctx) {
		return 0, errors.New("a bare cache of the start-up objects did not sync")
	}
	took := time.Since(start)
	// Once the cache has stopped, what it read is garbage: collect it here,
	// not while kubemacpool starts on the same two cores.
	cancel()
	<-stopped
	debug.FreeOSMemory()
	return took, nil
}

// againstFloor is a ready time beside the same run's bare cache sync.
func againstFloor(ready, floor time.Duration) string {
	return fmt.Sprintf("%s = %.1fx a bare cache's sync of the same objects (%s)", seconds(ready), ready.Seconds()/floor.Seconds(), seconds(floor))
}
