// Package deploy holds Airlock's deployment files: a systemd unit
// (systemd/), Kubernetes manifests (kubernetes/) and containerd node
// configuration (containerd/). It has no code; its tests parse every file
// with the parser its consumer uses and check the security settings.
package deploy
