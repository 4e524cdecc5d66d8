// Package deploy holds attestload's deployment files: a compose stack (docker-compose.yaml, prometheus/,
// grafana/), Kubernetes manifests (kubernetes/, a kustomize base) and a systemd unit (systemd/).
//
// It has no Go code of its own; its tests check that the files agree with each other and with the daemon's
// sharding (a StatefulSet pod's ordinal must give it a disjoint slice of the fleet). The files know the daemon's
// command line and configuration keys, nothing of its internals.
package deploy
