// Package deploy holds the tests of Email Scout's deployment files: the
// Kubernetes manifests under k8s/ (kustomize base, overlays, dependencies)
// rendered with the kustomize Go API and decoded strictly into the
// Kubernetes API types, and the container build (docker/Dockerfile,
// docker/build.sh, the repository's .dockerignore). See docs/deploy.md.
package deploy
