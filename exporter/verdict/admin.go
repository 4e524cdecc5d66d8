package verdict

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/attestload/attestload/attestation/record"
)

// AdminOptions tune an AdminAPISource.
type AdminOptions struct {
	APIVersion     string        // path prefix version, default "v3"
	RequestTimeout time.Duration // per GET; 0 means 5 s
	Concurrency    int           // GETs in flight at once; 0 means 8
}

// AdminAPISource reads verdicts from the verifier's admin API, GET /v3/agents/{id}/attestations/latest, with the
// verifier's client certificate. Only the latest attestation of an agent is readable there and it carries no
// failure reason, so the watcher must ask promptly: once an agent's next attestation exists, the verdict of the
// previous one is lost and resolves as unknown.
type AdminAPISource struct {
	base    *url.URL
	version string
	client  *http.Client
	timeout time.Duration
	conc    int
}

// NewAdminAPISource checks baseURL (https://host:port of the verifier) and builds the source. tlsConfig must hold
// the verifier's client certificate and key (the admin GET is refused without them) and the CA that signed the
// verifier's server certificate.
func NewAdminAPISource(baseURL string, tlsConfig *tls.Config, opts AdminOptions) (*AdminAPISource, error) {
	u, err := url.Parse(baseURL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("verdict: admin API URL %q must be https://host:port", baseURL)
	}
	if u.Scheme == "https" && (tlsConfig == nil || (len(tlsConfig.Certificates) == 0 && tlsConfig.GetClientCertificate == nil)) {
		return nil, errors.New("verdict: the admin API needs the verifier's client certificate and key")
	}
	if opts.APIVersion == "" {
		opts.APIVersion = "v3"
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 5 * time.Second
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 8
	}
	tr := &http.Transport{TLSClientConfig: tlsConfig, MaxIdleConnsPerHost: opts.Concurrency,
		IdleConnTimeout: time.Minute, ForceAttemptHTTP2: false}
	return &AdminAPISource{base: u, version: strings.Trim(opts.APIVersion, "/"),
		client: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
		timeout: opts.RequestTimeout, conc: opts.Concurrency}, nil
}

type latest struct {
	index      int
	evaluation string
	found      bool
}

// Resolve implements Source: one GET per agent, whatever the number of its pending attestations.
func (s *AdminAPISource) Resolve(ctx context.Context, keys []Key) (map[Key]Result, error) {
	byAgent := make(map[string][]int)
	for _, k := range keys {
		byAgent[k.AgentID] = append(byAgent[k.AgentID], k.Index)
	}
	var (
		mu   sync.Mutex
		out  = make(map[Key]Result, len(keys))
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, s.conc)
	)
	for agent, idxs := range byAgent {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			l, err := s.get(ctx, agent)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			for _, idx := range idxs {
				if res, ok := settleLatest(l, idx); ok {
					out[Key{AgentID: agent, Index: idx}] = res
				}
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		// One error stands for all: the watcher logs once per failing streak, not per agent.
		return out, fmt.Errorf("verdict: admin API: %d of %d lookups failed, first: %w", len(errs), len(byAgent), errs[0])
	}
	return out, nil
}

func settleLatest(l latest, index int) (Result, bool) {
	switch {
	case !l.found:
		return Result{Evaluation: record.EvaluationUnknown}, true
	case l.index == index:
		if l.evaluation == "pending" || l.evaluation == "" {
			return Result{}, false
		}
		return result(l.evaluation, ""), true
	case l.index > index:
		// Superseded before we read it: the admin API cannot show older attestations.
		return Result{Evaluation: record.EvaluationUnknown}, true
	default:
		// The verifier does not show ours yet (another worker wrote it); ask again.
		return Result{}, false
	}
}

func (s *AdminAPISource) get(ctx context.Context, agent string) (latest, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	u := s.base.JoinPath(s.version, "agents", agent, "attestations", "latest")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return latest{}, err
	}
	req.Header.Set("Accept", "application/vnd.api+json")
	resp, err := s.client.Do(req)
	if err != nil {
		return latest{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return latest{}, fmt.Errorf("read %s: %w", u.Path, err)
	}
	switch resp.StatusCode {
	case http.StatusOK, http.StatusCreated: // the verifier answers this GET with 201
	case http.StatusNotFound:
		return latest{}, nil
	default:
		return latest{}, fmt.Errorf("GET %s: status %d", u.Path, resp.StatusCode)
	}
	return parseLatest(body, resp.Header.Get("Location"))
}

// parseLatest reads the evaluation and the attestation index. The body has no id; the index is the last path
// element of data.links.self or, failing that, of the Location header (both are "/3/agents/{id}/attestations/{n}").
func parseLatest(body []byte, location string) (latest, error) {
	var doc struct {
		Data struct {
			Attributes struct {
				Evaluation string `json:"evaluation"`
			} `json:"attributes"`
			Links struct {
				Self string `json:"self"`
			} `json:"links"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return latest{}, fmt.Errorf("admin API body: %w", err)
	}
	for _, link := range []string{doc.Data.Links.Self, location} {
		i := strings.LastIndexByte(link, '/')
		if i < 0 {
			continue
		}
		if n, err := strconv.Atoi(link[i+1:]); err == nil && n >= 0 {
			return latest{index: n, evaluation: doc.Data.Attributes.Evaluation, found: true}, nil
		}
	}
	return latest{}, errors.New("admin API body: no attestation index in data.links.self or Location")
}
