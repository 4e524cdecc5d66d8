package engine

import (
	"log/slog"
	"sync"
	"time"

	"github.com/attestload/attestload/attestation/record"
)

// outageAfter is how many cycles in a row must fail to reach the verifier before it counts as unreachable, so that
// one timeout among answered requests on a loaded verifier is not an outage.
const outageAfter = 3

// outageTracker follows verifier reachability from finished records and logs the changes, once each.
type outageTracker struct {
	mu       sync.Mutex
	log      *slog.Logger
	obs      Observer
	detail   func() string // the last transport error's text; may be nil
	need     int           // unreachable cycles in a row that make an outage
	down     bool
	streak   int
	first    float64 // start time of the first cycle of the current streak
	firstErr record.ErrorClass
	lastUp   float64 // latest start time of a cycle that got an answer
	seenUp   bool
	outages  []record.OutageInfo
}

func newOutageTracker(log *slog.Logger, obs Observer, detail func() string, agents int) *outageTracker {
	if obs == nil {
		obs = nopObserver{}
	}
	return &outageTracker{log: log, obs: obs, detail: detail, need: max(1, min(outageAfter, agents))}
}

// transportClasses are the error classes of a request that got no HTTP answer because the verifier could not be
// reached or spoken to.
var transportClasses = map[record.ErrorClass]bool{
	record.ClassConnRefused: true, record.ClassConnReset: true, record.ClassTLS: true, record.ClassDNS: true,
	record.ClassNetwork: true, record.ClassTimeout: true,
}

// reachability says what a record tells of the verifier: +1 it answered, -1 it could not be reached, 0 nothing.
func reachability(r *record.Record) (int, record.ErrorClass) {
	var last *record.Attempt
	for _, list := range [][]record.Attempt{r.SessionAttempts, r.CreateAttempts, r.UpdateAttempts} {
		for i := range list {
			if list[i].Status != nil {
				return 1, ""
			}
			if list[i].EndTime >= 0 && (last == nil || list[i].EndTime >= last.EndTime) {
				last = &list[i]
			}
		}
	}
	if r.Outcome != record.OutcomeFail || last == nil || last.Error == nil || !transportClasses[*last.Error] {
		return 0, ""
	}
	return -1, *last.Error
}

func (t *outageTracker) observe(r *record.Record) {
	state, class := reachability(r)
	if state == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if state > 0 {
		t.streak = 0
		if !t.seenUp {
			t.seenUp = true
			if !t.down {
				t.obs.SetVerifierUp(true)
			}
		}
		if r.StartTime > t.lastUp {
			t.lastUp = r.StartTime
		}
		if t.down && r.StartTime >= t.first {
			t.down = false
			o := &t.outages[len(t.outages)-1]
			o.End = r.StartTime
			length := time.Duration((o.End - o.Start) * float64(time.Second)).Round(time.Millisecond)
			t.log.Warn("verifier reachable again", "outage", length.String(), "from", unixTime(o.Start), "to", unixTime(o.End))
			t.obs.SetVerifierUp(true)
		}
		return
	}
	if t.down || r.StartTime < t.lastUp {
		return
	}
	if t.streak == 0 {
		t.first, t.firstErr = r.StartTime, class
	}
	t.streak++
	if t.streak < t.need {
		return
	}
	t.down = true
	t.outages = append(t.outages, record.OutageInfo{Start: t.first, Error: t.firstErr})
	detail := ""
	if t.detail != nil {
		detail = t.detail()
	}
	t.log.Warn("verifier unreachable; agents back off until it answers again", "error", t.firstErr,
		"detail", detail, "hint", outageHint(t.firstErr))
	t.obs.SetVerifierUp(false)
	t.obs.OutageStarted()
}

// finish closes an outage the run ended in and returns every outage.
func (t *outageTracker) finish(end time.Time) []record.OutageInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.down {
		o := &t.outages[len(t.outages)-1]
		o.End, o.Ongoing = unixSeconds(end), true
		length := time.Duration((o.End - o.Start) * float64(time.Second)).Round(time.Millisecond)
		t.log.Warn("run ended with the verifier unreachable", "outage", length.String(), "from", unixTime(o.Start))
	}
	return append([]record.OutageInfo(nil), t.outages...)
}

func unixTime(s float64) string {
	return time.Unix(0, int64(s*1e9)).UTC().Format(time.RFC3339Nano)
}

func outageHint(class record.ErrorClass) string {
	switch class {
	case record.ClassTLS:
		return "the TLS handshake failed: give the verifier's CA with --verifier-ca (verifier.ca_file), and the client " +
			"certificate with verifier.cert_file and verifier.key_file if the verifier asks for one"
	case record.ClassConnRefused:
		return "nothing listens at verifier.url: is the verifier running, and on that host and port?"
	case record.ClassDNS:
		return "the host name in verifier.url does not resolve"
	case record.ClassTimeout:
		return "requests time out: is the host reachable (firewall, route), or the verifier stuck? see verifier.connect_timeout and verifier.request_timeout"
	default:
		return "check verifier.url and the network path to the verifier"
	}
}
