package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/attestload/attestload/attestation/simverifier"
)

// simAdminTokenEnv names the environment variable holding the simulator's admin bearer token (a flag would show
// the secret in the process list).
const simAdminTokenEnv = "ATTESTLOAD_SIM_ADMIN_TOKEN"

// newVerifierSimCmd is "attestload verifier-sim": the simulated verifier as a standalone server.
func newVerifierSimCmd() *cobra.Command {
	cfg := simverifier.DefaultConfig()
	var (
		listen, tlsDir   string
		faultSpecs       []string
		verifyCPU        time.Duration
		verifyHashRounds int
		verbose          bool
		calibrated       bool
	)
	cmd := &cobra.Command{
		Use:   "verifier-sim",
		Short: "Run a simulated Keylime push-mode verifier (for demos, client tests and fault injection)",
		Long: `verifier-sim serves the Keylime push-attestation API (v3.0) like a real verifier: PoP sessions, bearer tokens,
attestation negotiation and evidence, verification of quotes and IMA logs, and the real verifier's status codes and
quirks. Agents come from a verifier database (--database); without one no agent is enrolled.

Over HTTPS (the default) a CA, a server certificate and an admin client certificate are generated at start and
written to --tls-dir; a client presenting client-cert.crt/client-private.pem is admin (reads attestations). Over
--plain-http, admin identity comes from "Authorization: Bearer $` + simAdminTokenEnv + `" instead.

Faults are set with repeated --fault flags: ` + simverifier.FaultSpecHelp + `.
Example: --fault update:latency-median=50ms --fault update:latency-p99=400ms --fault '*:error-rate=0.01'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, s := range faultSpecs {
				if err := simverifier.ParseFaultSpec(s, &cfg.Faults); err != nil {
					return &usageError{fmt.Errorf("--fault: %w", err)}
				}
			}
			cfg.Faults.VerifyCPU, cfg.Faults.VerifyHashIterations = verifyCPU, verifyHashRounds
			if calibrated {
				cfg.Calibrate()
			}
			cfg.TLSDir = tlsDir
			cfg.AdminToken = os.Getenv(simAdminTokenEnv)
			if !cfg.PlainHTTP && tlsDir == "" {
				return &usageError{errors.New("--tls-dir is required for HTTPS (or use --plain-http)")}
			}
			if cfg.InitSchema && cfg.DatabaseURL == "" {
				return &usageError{errors.New("--init-schema needs --database")}
			}
			level := slog.LevelInfo
			if verbose {
				level = slog.LevelDebug
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			cfg.Logger = log
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runVerifierSim(ctx, cfg, listen, log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:8881", "address to listen on")
	f.BoolVarP(&verbose, "verbose", "v", false, "also log every passing attestation (failures are always logged)")
	f.StringVar(&tlsDir, "tls-dir", "", "directory receiving the generated ca.crt, server.crt/key and the admin client-cert.crt/client-private.pem (required unless --plain-http)")
	f.BoolVar(&cfg.PlainHTTP, "plain-http", false, "serve plain HTTP instead of HTTPS")
	f.StringVar(&cfg.DatabaseURL, "database", "", "verifier database URL (postgres://...): read agents from it and write attestations and sessions like the real verifier (default: none, so no agent is enrolled)")
	f.BoolVar(&cfg.InitSchema, "init-schema", false, "create the verifier tables in --database if they do not exist")
	f.IntVar(&cfg.QuoteInterval, "quote-interval", cfg.QuoteInterval, "minimum whole seconds between an agent's evidence and its next attestation (0 = no limit)")
	f.DurationVar(&cfg.SessionLifetime, "session-lifetime", cfg.SessionLifetime, "bearer token lifetime after the PoP and after each passing attestation")
	f.BoolVar(&cfg.ExtendTokenOnAttestation, "extend-token-on-attestation", cfg.ExtendTokenOnAttestation, "slide a token's expiry on each passing attestation, as Keylime's option of that name")
	f.DurationVar(&cfg.ChallengeLifetime, "challenge-lifetime", cfg.ChallengeLifetime, "validity of a quote challenge")
	f.DurationVar(&cfg.NonceLifetime, "nonce-lifetime", cfg.NonceLifetime, "validity of a PoP session nonce")
	f.DurationVar(&cfg.VerificationTimeout, "verification-timeout", 0, "answer 503 verification_in_progress while the previous verification is this recent (0 = off, as in Keylime)")
	f.IntVar(&cfg.RateLimits.PerIP, "rate-limit-per-ip", cfg.RateLimits.PerIP, "session creations per minute per client IP (0 = off)")
	f.IntVar(&cfg.RateLimits.PerAgent, "rate-limit-per-agent", cfg.RateLimits.PerAgent, "session creations per minute per agent (0 = off)")
	f.BoolVar(&cfg.RebootIMADefect, "reboot-defect", cfg.RebootIMADefect, "reproduce Keylime's reboot defect: after a later boot_time the IMA log is replayed from the previous boot's PCR 10 (broken_evidence_chain until PCR 10 reaches that value again; docs/verifier-conformance.md)")
	f.IntVar(&cfg.SessionHashIterations, "session-hash-iterations", cfg.SessionHashIterations, "PBKDF2 iterations per session creation (Keylime: 600000; 0 = skip the cost)")
	f.IntVar(&cfg.Workers, "workers", 0, "requests and verifications running at once, without pinned connections (0 = unbounded; --processes models Keylime's workers more closely)")
	f.BoolVar(&calibrated, "calibrated", true, "behave like the stock Keylime verifier on this machine: worker processes with pinned connections (--processes), its CPU cost per request and evidence kind, and its push-agent timeout monitor (docs/simulator.md); --calibrated=false answers as fast as it can")
	f.IntVar(&cfg.Processes, "processes", 0, "worker processes, each serving one request at a time on the connections it accepted (0 = one per CPU when --calibrated, else none)")
	f.StringArrayVar(&faultSpecs, "fault", nil, "inject a fault: "+simverifier.FaultSpecHelp)
	f.DurationVar(&verifyCPU, "verify-cpu", 0, "extra CPU time spent per verification (0 = none)")
	f.IntVar(&verifyHashRounds, "verify-hash-iterations", 0, "extra SHA-256 rounds per verification, a machine-independent CPU cost (0 = none)")
	return cmd
}

func runVerifierSim(ctx context.Context, cfg simverifier.Config, listen string, log *slog.Logger) error {
	v, err := simverifier.New(cfg)
	if errors.Is(err, simverifier.ErrConfig) {
		return &usageError{err}
	}
	if err != nil {
		return err
	}
	defer v.Close()
	if cfg.DatabaseURL == "" {
		log.Warn("no --database: no agent is enrolled, every attestation request will answer 404")
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return &usageError{fmt.Errorf("--listen %s: %w", listen, err)}
	}
	scheme := "https"
	if cfg.PlainHTTP {
		scheme = "http"
	}
	log.Info("simulated verifier listening", "component", "verifier-sim", "url", scheme+"://"+ln.Addr().String(),
		"tls_dir", cfg.TLSDir, "agents", v.AgentCount(), "processes", cfg.Processes,
		"calibrated", cfg.Costs != (simverifier.Costs{}), "timeout_monitor", cfg.TimeoutMonitor)
	return v.Serve(ctx, ln)
}
