package evidence

import (
	"runtime"
	"strconv"
	"testing"
)

func BenchmarkEntries(b *testing.B) {
	for _, n := range []int{1_000, 50_000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			prof, err := NewSynthetic(n, 0, 1000)
			if err != nil {
				b.Fatal(err)
			}
			log := prof.NewAgentLog()
			b.ReportAllocs()
			var size int
			for b.Loop() {
				text, _, err := log.Entries(0)
				if err != nil {
					b.Fatal(err)
				}
				size = len(text)
			}
			b.SetBytes(int64(size))
		})
	}
}

// BenchmarkAgentLogMemory reports the heap bytes one agent's log state costs, with a 50,000-entry log: it must not
// depend on the log length.
func BenchmarkAgentLogMemory(b *testing.B) {
	prof, err := NewSynthetic(50_000, 10, 1000)
	if err != nil {
		b.Fatal(err)
	}
	const agents = 10_000
	logs := make([]*AgentLog, agents)
	var perAgent float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i := range logs {
			logs[i] = prof.NewAgentLog()
			logs[i].Grow()
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perAgent = float64(after.HeapAlloc-before.HeapAlloc) / agents
		runtime.KeepAlive(logs)
		clear(logs)
	}
	b.ReportMetric(perAgent, "heap-bytes/agent")
}

func BenchmarkGrow(b *testing.B) {
	prof, err := NewSynthetic(1000, 10, 1000)
	if err != nil {
		b.Fatal(err)
	}
	log := prof.NewAgentLog()
	b.ReportAllocs()
	for b.Loop() {
		log.Grow()
	}
}
