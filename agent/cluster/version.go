package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Strata protocol versions, per tier, advertised in node meta as the range
// a node speaks. A sender uses the highest version both ends speak.
const (
	// protoGossip: changes ride memberlist's gossip broadcast; sync
	// messages over memberlist streams. What nodes without a range speak.
	protoGossip = 1
	// protoPush: committed changes are pushed over streams on a plumtree
	// overlay (msgPlum), gossip only to peers that do not speak it.
	protoPush = 2
)

// ProtocolMin and ProtocolMax are the range of strata protocol versions
// this build speaks.
const (
	ProtocolMin = protoGossip
	ProtocolMax = protoPush
)

// protocolRange is the range a meta advertises; a meta without one is from
// a node older than versioning, which speaks protoGossip only.
func (m Meta) protocolRange() (lo, hi int) {
	if len(m.Proto) != 2 || m.Proto[0] < 1 || m.Proto[1] < m.Proto[0] {
		return protoGossip, protoGossip
	}
	return m.Proto[0], m.Proto[1]
}

// highestCommon is the highest protocol version two metas both speak.
func highestCommon(a, b Meta) (int, bool) {
	alo, ahi := a.protocolRange()
	blo, bhi := b.protocolRange()
	v := min(ahi, bhi)
	return v, v >= max(alo, blo)
}

func rangeString(m Meta) string {
	lo, hi := m.protocolRange()
	return fmt.Sprintf("%d-%d", lo, hi)
}

// Build names this binary: the main module's version and VCS revision,
// from the build info ("dev" when built without it).
func Build() string {
	buildOnce.Do(func() {
		build = "dev"
		bi, ok := debug.ReadBuildInfo()
		if !ok {
			return
		}
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			build = v
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				build += "+" + s.Value[:12]
			}
		}
	})
	return build
}

var (
	buildOnce sync.Once
	build     string
)

// versionCheck is the tier's memberlist AliveDelegate and MergeDelegate:
// it refuses a member that shares no protocol version with this node, at
// join (push/pull merge) and whenever an alive message announces one.
type versionCheck Tier

var (
	_ memberlist.AliveDelegate = (*versionCheck)(nil)
	_ memberlist.MergeDelegate = (*versionCheck)(nil)
)

func (v *versionCheck) NotifyAlive(n *memberlist.Node) error { return (*Tier)(v).checkVersion(n) }

func (v *versionCheck) NotifyMerge(peers []*memberlist.Node) error {
	for _, n := range peers {
		if err := (*Tier)(v).checkVersion(n); err != nil {
			return err
		}
	}
	return nil
}

// checkVersion refuses a member with no protocol version in common,
// logging once per member and ranges.
func (t *Tier) checkVersion(n *memberlist.Node) error {
	if n.Name == t.cfg.Node {
		return nil
	}
	var meta Meta
	if len(n.Meta) > 0 {
		if err := json.Unmarshal(n.Meta, &meta); err != nil {
			return fmt.Errorf("cluster: member %s: unreadable meta: %w", n.Name, err)
		}
	}
	if _, ok := highestCommon(t.cfg.Meta, meta); ok {
		return nil
	}
	err := fmt.Errorf("%w: member %s speaks strata protocol %s, this node %s", ErrIncompatible, n.Name, rangeString(meta), rangeString(t.cfg.Meta))
	if t.logged.first("version/"+n.Name+"/"+rangeString(meta), time.Now()) {
		t.log.Error("refusing member: no protocol version in common", "member", n.Name, "member_protocol", rangeString(meta),
			"protocol", rangeString(t.cfg.Meta), "member_build", meta.Build)
	}
	t.m.rejected.WithLabelValues(t.cfg.Tier, "protocol_version").Inc()
	return err
}

// ErrIncompatible is returned (and logged) when a member shares no strata
// protocol version with this node; memberlist then ignores the member.
var ErrIncompatible = errors.New("cluster: no protocol version in common")
