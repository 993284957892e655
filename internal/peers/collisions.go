package peers

import (
	"context"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/events"

	"github.com/kubemacpool/kubemacpool/internal/carriers"
	"github.com/kubemacpool/kubemacpool/internal/holders"
	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/metrics"
)

// Collisions reports the MACs that objects of this cluster carry while a
// peer cluster's ledger holds them for another object (from before the
// clusters were peers, or two explicit requests in the window before each
// saw the other's entry): a Warning event MACCollision on the object here,
// naming the peer's holder, and the gauge kmp_peer_mac_collisions{peer}.
// The peer's kubemacpool reports its side. It runs on the leader only, so
// each collision is reported once.
type Collisions struct {
	Peers    *Set
	Carried  *carriers.Index
	Recorder events.EventRecorder
	Log      logr.Logger
	// Every is how often the peers' ledgers are compared with what this
	// cluster's objects carry.
	Every time.Duration

	reported map[collisionKey]bool
	counted  map[string]bool // peers with a gauge
}

type collisionKey struct {
	peer   string
	mac    mac.MAC
	object carriers.Ref
}

// NeedLeaderElection is true: events and the gauge come from one replica.
func (c *Collisions) NeedLeaderElection() bool { return true }

// Start compares every Every until ctx ends.
func (c *Collisions) Start(ctx context.Context) error {
	c.reported, c.counted = map[collisionKey]bool{}, map[string]bool{}
	tick := time.NewTicker(c.Every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			c.scan()
		}
	}
}

// scan finds the collisions of now, reports the new ones and forgets the
// ended ones. The peers' entries are copied out first: no index is read
// under another's lock.
func (c *Collisions) scan() {
	found := map[collisionKey]holders.PeerEntry{}
	perPeer := map[string]map[mac.MAC]bool{}
	for cluster, entries := range c.Peers.Entries() {
		perPeer[cluster] = map[mac.MAC]bool{}
		for _, e := range entries {
			p := holders.PeerEntry{Cluster: cluster, Entry: e.MACBlockEntry}
			for _, carrier := range c.Carried.Of(e.MAC) {
				if holders.CollidesAcross(carrier, p) {
					found[collisionKey{cluster, e.MAC, carrier.Object}] = p
					perPeer[cluster][e.MAC] = true
				}
			}
		}
	}
	for k, p := range found {
		if c.reported[k] {
			continue
		}
		c.reported[k] = true
		holder := holders.Describe(&p.Entry)
		c.Log.Info("MAC collision across clusters", "mac", k.mac.String(), "object", k.object.String(), "peer", k.peer, "peerHolder", holder)
		c.Recorder.Eventf(k.object.Reference(), nil, corev1.EventTypeWarning, "MACCollision", "CollideAcrossClusters",
			"MAC %s is also held in peer cluster %s by %s; the clusters share L2 networks, and two interfaces with one MAC on a network break both: give one of them another MAC",
			k.mac, k.peer, holder)
	}
	for k := range c.reported {
		if _, still := found[k]; !still {
			delete(c.reported, k)
			c.Log.Info("MAC collision across clusters ended", "mac", k.mac.String(), "object", k.object.String(), "peer", k.peer)
		}
	}
	for cluster, macs := range perPeer {
		metrics.PeerCollisions.WithLabelValues(cluster).Set(float64(len(macs)))
		c.counted[cluster] = true
	}
	for cluster := range c.counted {
		if _, still := perPeer[cluster]; !still {
			metrics.PeerCollisions.DeleteLabelValues(cluster)
			delete(c.counted, cluster)
		}
	}
}
