package broker

import (
	"hash/fnv"
	"strings"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// retainedIndex holds the topic of every retained message in mochi's
// index, with its expiry (Unix seconds, 0 for none), so that ListRetained
// walks topic names only: mochi's own scans (Topics.Messages,
// Retained.GetAll) copy every message they match, some 800 bytes each
// before the payload. $SYS/ topics (mochi's own broker statistics) are left
// out, as Levels leaves them out of the count.
//
// The index follows mochi: each place that retains or clears a message
// (the hook's OnRetainMessage and OnRetainedExpired, PutRetained,
// DeleteRetained, restoreRetained) calls sync afterwards, which reads the
// topic's message from mochi under the topic's shard lock. Whichever sync
// of a topic runs last reads mochi's last change, so the index agrees with
// mochi once the calls in flight are done, however they interleave. The
// zero value is ready; safe for concurrent use.
type retainedIndex struct {
	shards [64]retainedShard
}

// retainedShard is one part of the index, chosen by a hash of the topic.
type retainedShard struct {
	mu     sync.Mutex
	topics map[string]int64 // topic -> expiry
}

// sync makes the index hold topic as mochi's index does now. Cost: one
// lookup (and packet copy) in mochi's map, under one shard lock.
func (x *retainedIndex) sync(topics *mqtt.TopicsIndex, topic string) {
	if strings.HasPrefix(topic, mqtt.SysPrefix+"/") {
		return
	}
	f := fnv.New32a()
	_, _ = f.Write([]byte(topic))
	sh := &x.shards[f.Sum32()%uint32(len(x.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if pk, ok := topics.Retained.Get(topic); ok && len(pk.Payload) > 0 {
		if sh.topics == nil {
			sh.topics = make(map[string]int64)
		}
		sh.topics[topic] = pk.Expiry
		return
	}
	delete(sh.topics, topic)
}

// each calls f with every topic and expiry held, one shard at a time
// (holding its lock: f must be quick and must not call the index).
func (x *retainedIndex) each(f func(topic string, expiry int64)) {
	for i := range x.shards {
		sh := &x.shards[i]
		sh.mu.Lock()
		for t, exp := range sh.topics {
			f(t, exp)
		}
		sh.mu.Unlock()
	}
}
