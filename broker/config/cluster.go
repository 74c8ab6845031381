package config

import (
	"regexp"
	"strconv"
	"time"
)

// Cluster is the cluster section: present, this broker is one node of a
// cluster built on embedded NATS JetStream (package cluster, docs/cluster.md);
// absent (nil), the broker runs alone and no cluster code runs. Every key is
// read when the node starts, so a reload changing any of them is refused.
type Cluster struct {
	// Name is this node's name, unique in the cluster: 1 to 64 of
	// [A-Za-z0-9_-]. Required, no default.
	Name string `yaml:"name"`
	// Listen is host:port of this node's cluster route listener, which the
	// other nodes' seeds name; port 0 picks a free port (used by tests).
	// Routes are neither encrypted nor authenticated: keep it on a private
	// network. Required, no default.
	Listen string `yaml:"listen"`
	// Seeds are host:port of other nodes' route listeners, port 1-65535;
	// this node's own address may be among them (one list for every node).
	// Default none: the node waits for others to connect to it.
	Seeds []string `yaml:"seeds"`
	// Replicas is the replication factor of the cluster's streams and
	// buckets, 1 to 5 (JetStream's most); the factor in force is capped by
	// the number of nodes. Default 3.
	Replicas int `yaml:"replicas"`
	// TopicLevelDistribution is how many leading topic levels choose the
	// routing subject of a message, 1 to 8. Default 1.
	TopicLevelDistribution int `yaml:"topic_level_distribution"`
	// ClusterName names the cluster; nodes with different names do not
	// join. 1 to 64 of [A-Za-z0-9_-]. Default "propolis".
	ClusterName string `yaml:"cluster_name"`
	// StreamMaxAge is how long the message stream keeps a message, 1s to
	// 8760h. Default 1h.
	StreamMaxAge Duration `yaml:"stream_max_age"`
	// StreamMaxBytes caps the message stream's size, oldest messages
	// discarded first, 1MiB to 1024GiB. Default 1GiB.
	StreamMaxBytes ByteSize `yaml:"stream_max_bytes"`
}

// Defaults and limits of the cluster section.
const (
	DefaultClusterReplicas               = 3
	DefaultClusterTopicLevelDistribution = 1
	DefaultClusterName                   = "propolis"
	DefaultClusterStreamMaxAge           = Duration(time.Hour)
	DefaultClusterStreamMaxBytes         = 1 << 30
	maxClusterReplicas                   = 5 // JetStream's largest replication factor
	maxTopicLevelDistribution            = 8
	minClusterStreamMaxAge               = Duration(time.Second)
	maxClusterStreamMaxAge               = Duration(8760 * time.Hour)
	minClusterStreamMaxBytes             = 1 << 20
	maxClusterStreamMaxBytes             = 1 << 40
	// ClusterHeaderRoom is what a routed message may need beyond the MQTT
	// packet it carries (its NATS headers: node, topic and client id,
	// escaped).
	ClusterHeaderRoom = 64 << 10
	// MaxClusterPacketSize is the largest mqtt.max_packet_size with a
	// cluster section: NATS's largest payload (64 MiB) less
	// ClusterHeaderRoom.
	MaxClusterPacketSize = 64<<20 - ClusterHeaderRoom
)

// clusterName is the syntax of Cluster.Name and Cluster.ClusterName.
var clusterName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// fillDefaults sets the keys the file left out (has says whether key,
// relative to the section, is in the file); Parse calls it.
func (cl *Cluster) fillDefaults(has func(key string) bool) {
	if !has("replicas") {
		cl.Replicas = DefaultClusterReplicas
	}
	if !has("topic_level_distribution") {
		cl.TopicLevelDistribution = DefaultClusterTopicLevelDistribution
	}
	if !has("cluster_name") {
		cl.ClusterName = DefaultClusterName
	}
	if !has("stream_max_age") {
		cl.StreamMaxAge = DefaultClusterStreamMaxAge
	}
	if !has("stream_max_bytes") {
		cl.StreamMaxBytes = DefaultClusterStreamMaxBytes
	}
}

// validateCluster checks the cluster section, if any.
func (c *Config) validateCluster(ch *checker) {
	cl := c.Cluster
	if cl == nil {
		return
	}
	checkName := func(key, v string) {
		switch {
		case v == "":
			ch.addf(key, "required")
		case !clusterName.MatchString(v):
			ch.addf(key, "invalid name %q (1 to 64 letters, digits, _ and -)", v)
		}
	}
	checkName("cluster.name", cl.Name)
	if port, ok := checkAddress(ch, "cluster.listen", cl.Listen); ok && port != 0 {
		if addr, i := overlapping(cl.Listen, c.Listeners); i >= 0 {
			ch.addf("cluster.listen", "%q overlaps %q of listeners[%d]", cl.Listen, addr, i)
		} else if _, i := overlapping(cl.Listen, []Listener{{Address: c.HTTP.Address}}); c.HTTP.Address != "" && i >= 0 {
			ch.addf("cluster.listen", "%q overlaps http.address %q", cl.Listen, c.HTTP.Address)
		}
	}
	seen := map[string]string{}
	for i, s := range cl.Seeds {
		key := "cluster.seeds[" + strconv.Itoa(i) + "]"
		port, ok := checkAddress(ch, key, s)
		switch {
		case !ok:
		case port == 0:
			ch.addf(key, "port 0 in %q: a seed names another node's listener, port 1-65535", s)
		case seen[s] != "":
			ch.addf(key, "%q is also %s", s, seen[s])
		default:
			seen[s] = key
		}
	}
	if c.MQTT.MaxPacketSize > MaxClusterPacketSize {
		ch.addf("mqtt.max_packet_size", "%s is more than a cluster carries: at most %s (NATS's largest payload, 64MiB, less 64KiB for the routing headers)",
			c.MQTT.MaxPacketSize, ByteSize(MaxClusterPacketSize))
	}
	ch.intRange("cluster.replicas", cl.Replicas, 1, maxClusterReplicas)
	ch.intRange("cluster.topic_level_distribution", cl.TopicLevelDistribution, 1, maxTopicLevelDistribution)
	checkName("cluster.cluster_name", cl.ClusterName)
	ch.durationRange("cluster.stream_max_age", cl.StreamMaxAge, minClusterStreamMaxAge, maxClusterStreamMaxAge)
	if cl.StreamMaxBytes < minClusterStreamMaxBytes || cl.StreamMaxBytes > maxClusterStreamMaxBytes {
		ch.addf("cluster.stream_max_bytes", "%s out of range %s-%s", cl.StreamMaxBytes,
			ByteSize(minClusterStreamMaxBytes), ByteSize(maxClusterStreamMaxBytes))
	}
}
