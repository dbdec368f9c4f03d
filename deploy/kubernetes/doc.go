// Package kubernetes holds no code: this directory is syncd's kustomize
// base, and the package exists for its tests (manifests_test.go). They
// check that every manifest decodes strictly into its Kubernetes API type
// (a misspelt field fails), kustomization.yaml lists them all, the
// Deployment wires probes, secrets and config the way syncd expects, the
// PrometheusRule carries exactly deploy/prometheus/alerts.yml, the
// NetworkPolicy admits only the admin port from labelled namespaces and
// lets out only DNS, Redis and HTTPS, the ConfigMap's syncd.yaml passes
// syncd's own config loader, and the example secret.yaml's admin token
// placeholders are refused by it.
//
// After editing deploy/prometheus/alerts.yml, regenerate prometheusrule.yaml
// with
//
//	go test ./deploy/kubernetes -update
//
// It does not own the alert rules (deploy/prometheus) or the config schema
// (internal/config), and deploys nothing.
package kubernetes
