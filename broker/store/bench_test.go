package store

import (
	"strconv"
	"sync/atomic"
	"testing"
)

// benchMessage is a typical QoS 1 publish: a short topic, a 64-byte
// payload and no properties.
func benchMessage(client string, pid uint16) Message {
	return Message{
		ClientID: client, PacketID: pid, Type: 3, QoS: 1,
		Topic: "devices/sensor-17/telemetry", Payload: make([]byte, 64),
		Origin: "sensor-17", Created: int64(pid),
	}
}

// BenchmarkPutInflight measures one durable in-flight write per operation
// in each durability mode; "sync-parallel" runs many writers at once to
// show pebble's group commit sharing fsyncs between them.
func BenchmarkPutInflight(b *testing.B) {
	for _, mode := range []Durability{DurabilitySync, DurabilityPeriodic, DurabilityNone} {
		b.Run(mode.String(), func(b *testing.B) {
			s := openTest(b, b.TempDir(), mode)
			m := benchMessage("bench", 0)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				m.PacketID = uint16(i)
				m.Created = int64(i)
				if err := s.PutInflight(&m, true); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
		})
	}
	b.Run("sync-parallel", func(b *testing.B) {
		s := openTest(b, b.TempDir(), DurabilitySync)
		var client atomic.Int64
		b.SetParallelism(16)
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			m := benchMessage("bench-"+strconv.FormatInt(client.Add(1), 10), 0)
			for pb.Next() {
				m.PacketID++
				m.Created++
				if err := s.PutInflight(&m, true); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
	})
}

// BenchmarkEncodeMessage measures the record encoding alone.
func BenchmarkEncodeMessage(b *testing.B) {
	m := benchMessage("bench", 1)
	m.Properties = fullProps()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		sc := getScratch()
		sc.key = appendInflightKey(sc.key, m.ClientID, m.PacketID)
		sc.val = encodeMessage(sc.val, &m)
		putScratch(sc)
	}
}
