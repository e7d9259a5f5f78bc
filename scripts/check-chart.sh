#!/usr/bin/env bash
# Checks the Helm chart in helm/latchkey without a cluster and without downloading anything but
# packages from the registries:
#
#   scripts/check-chart.sh
#
# 1. Builds `helm` and `kubeconform` with the Go toolchain when they are missing (once; about eight
#    minutes on two cores).
# 2. Gets the Kubernetes JSON schemas from the kubernetes-validate package on PyPI (once) and rewrites
#    their references so that kubeconform reads them from disk. kubeconform would otherwise download
#    schemas from the internet, which CI cannot reach.
# 3. `helm lint --strict` and `helm template | kubeconform -strict` on each values case below (the
#    ServiceMonitor, a custom resource with no schema here, is skipped by kind), a few checks of what
#    the manifests promise, and checks that the chart refuses to render what production refuses.
#
# Versions can be overridden: HELM_VERSION, KUBECONFORM_VERSION, KUBE_VERSIONS (the Kubernetes versions
# the manifests are rendered for and checked against: the chart's oldest and the newest schemas),
# KUBERNETES_VALIDATE_VERSION.
set -euo pipefail
cd "$(dirname "$0")/.."

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
KUBECONFORM_VERSION="${KUBECONFORM_VERSION:-v0.8.0}"
KUBE_VERSIONS="${KUBE_VERSIONS:-1.25.0 1.37.0}"
KUBERNETES_VALIDATE_VERSION="${KUBERNETES_VALIDATE_VERSION:-1.37.0}"

CHART=helm/latchkey
GOBIN_DIR="$(go env GOPATH 2>/dev/null || echo "$HOME/go")/bin"
HELM_BIN="${HELM_BIN:-$GOBIN_DIR/helm-$HELM_VERSION}"
KUBECONFORM_BIN="${KUBECONFORM_BIN:-$GOBIN_DIR/kubeconform-$KUBECONFORM_VERSION}"
CACHE_DIR="${LATCHKEY_CHART_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/latchkey-chart}"
SCHEMA_ROOT="$CACHE_DIR/kubernetes-validate-$KUBERNETES_VALIDATE_VERSION"

log() { printf '[check-chart] %s\n' "$*" >&2; }
die() {
  log "FAILED: $*"
  exit 1
}

# Builds one Go command at a pinned version into $2. `go install cmd@version` is tried first; when the
# module proxy refuses a request that go install makes (or the module has replace directives), the
# module is downloaded and built from its own folder instead.
go_build_tool() {
  local pkg="$1" out="$2" module="$3" version="$4" ldflags="${5:-}"
  [ -x "$out" ] && return 0
  command -v go >/dev/null 2>&1 || die "the Go toolchain is needed to build $pkg"
  log "building $pkg@$version with the Go toolchain (once)"
  mkdir -p "$(dirname "$out")"
  local tmpbin
  tmpbin="$(mktemp -d)"
  if CGO_ENABLED=0 GOBIN="$tmpbin" go install -trimpath -ldflags "$ldflags" "$pkg@$version"; then
    mv "$tmpbin/$(basename "$pkg")" "$out"
    rm -rf "$tmpbin"
    return 0
  fi
  rm -rf "$tmpbin"
  log "go install failed; building from the downloaded module instead"
  local moddir src
  moddir="$(go mod download -json "$module@$version" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')"
  [ -d "$moddir" ] || die "go mod download did not produce $module@$version"
  src="$(mktemp -d)"
  cp -r "$moddir/." "$src/"
  chmod -R u+w "$src"
  (cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out.tmp" "./${pkg#"$module"/}")
  mv "$out.tmp" "$out"
  rm -rf "$src"
}

install_tools() {
  go_build_tool helm.sh/helm/v3/cmd/helm "$HELM_BIN" helm.sh/helm/v3 "$HELM_VERSION" \
    "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  go_build_tool github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_BIN" \
    github.com/yannh/kubeconform "$KUBECONFORM_VERSION"
}

if [ "${1:-}" = "--install-only" ]; then
  install_tools
  exit 0
fi

# kubernetes-validate ships the Kubernetes API's JSON schemas, one file per kind and version, that
# refer to one _definitions.json by an absolute https id. kubeconform would fetch that id from the
# network, so each file's id is dropped and its references made relative to the folder it sits in.
install_schemas() {
  local marker="$SCHEMA_ROOT/.complete-${KUBE_VERSIONS// /_}"
  [ -f "$marker" ] && return 0
  command -v python3 >/dev/null 2>&1 || die "python3 (with pip) is needed to fetch the Kubernetes schemas"
  log "fetching the Kubernetes JSON schemas (kubernetes-validate $KUBERNETES_VALIDATE_VERSION from PyPI, once)"
  local wheels
  wheels="$(mktemp -d)"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    -d "$wheels" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" ||
    die "pip could not download kubernetes-validate $KUBERNETES_VALIDATE_VERSION"
  rm -rf "$SCHEMA_ROOT"
  mkdir -p "$SCHEMA_ROOT"
  # shellcheck disable=SC2086 # one argument per Kubernetes version
  python3 - "$wheels"/kubernetes_validate-*.whl "$SCHEMA_ROOT" $KUBE_VERSIONS <<'PY'
import json, os, sys, zipfile

wheel, out_root, versions = sys.argv[1], sys.argv[2], sys.argv[3:]

def local_refs(node):
    if isinstance(node, dict):
        return {
            k: v.replace('/api/_definitions.json#', '_definitions.json#')
            if k == '$ref' and isinstance(v, str)
            else local_refs(v)
            for k, v in node.items()
            if k != '$id'
        }
    if isinstance(node, list):
        return [local_refs(x) for x in node]
    return node

with zipfile.ZipFile(wheel) as z:
    for version in versions:
        prefix = f'kubernetes_validate/kubernetes-json-schema/v{version}-local-strict/'
        names = [n for n in z.namelist() if n.startswith(prefix) and n.endswith('.json')]
        if not names:
            sys.exit(f'kubernetes-validate has no schemas for Kubernetes {version}')
        folder = os.path.join(out_root, f'v{version}-standalone-strict')
        os.makedirs(folder, exist_ok=True)
        for name in names:
            with open(os.path.join(folder, name[len(prefix):]), 'w') as f:
                json.dump(local_refs(json.loads(z.read(name))), f)
PY
  rm -rf "$wheels"
  touch "$marker"
}

# --- checks -----------------------------------------------------------------------------------------

WORK="$(mktemp -d "${TMPDIR:-/tmp}/latchkey-chart.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

render() { # render NAME KUBE_VERSION helm-template-args...
  local name="$1" kube="$2"
  shift 2
  "$HELM_BIN" template latchkey "$CHART" --namespace identity --kube-version "$kube" "$@" >"$WORK/$name.yaml"
}

# The rendered manifests against the Kubernetes API schemas, unknown fields refused. The one custom
# resource, the Prometheus Operator's ServiceMonitor, has no schema here and is skipped by name.
conform() { # conform NAME KUBE_VERSION
  "$KUBECONFORM_BIN" -strict -summary -kubernetes-version "$2" -skip ServiceMonitor \
    -schema-location "$SCHEMA_ROOT/{{.NormalizedKubernetesVersion}}-standalone{{.StrictSuffix}}/{{.ResourceKind}}{{.KindSuffix}}.json" \
    "$WORK/$1.yaml"
}

expect_in() { # expect_in NAME TEXT WHY: the rendered manifests contain TEXT
  grep -qF -- "$2" "$WORK/$1.yaml" || die "$1: $3 (no \"$2\" in the rendered manifests)"
}

expect_refused() { # expect_refused MESSAGE helm-template-args...: the chart must not render
  local message="$1"
  shift
  if "$HELM_BIN" template latchkey "$CHART" --kube-version "${KUBE_VERSIONS##* }" "$@" >"$WORK/refused.out" 2>&1; then
    die "the chart rendered although it should refuse: $message ($*)"
  fi
  grep -qF -- "$message" "$WORK/refused.out" || {
    cat "$WORK/refused.out" >&2
    die "the chart refused, but without saying: $message"
  }
  log "refused as expected: $message"
}

install_tools
install_schemas
log "helm $("$HELM_BIN" version --short), kubeconform $KUBECONFORM_VERSION, Kubernetes schemas for $KUBE_VERSIONS"

MINIMAL="$CHART/ci/values-minimal.yaml"
PRODUCTION="$CHART/ci/values-production.yaml"

for kube in $KUBE_VERSIONS; do
  for values in "$MINIMAL" "$PRODUCTION"; do
    case_name="$(basename "$values" .yaml)-$kube"
    log "== $case_name"
    "$HELM_BIN" lint --strict --quiet --kube-version "$kube" "$CHART" -f "$values"
    render "$case_name" "$kube" -f "$values"
    conform "$case_name" "$kube"
  done
done

latest="${KUBE_VERSIONS##* }"
minimal="values-minimal-$latest"
production="values-production-$latest"
expect_in "$minimal" 'NODE_ENV: "production"' "production mode"
expect_in "$minimal" 'path: /health/ready' "readiness on /health/ready"
expect_in "$minimal" 'path: /health/live' "liveness on /health/live"
expect_in "$minimal" 'maxUnavailable: 0' "rollouts keep every replica"
expect_in "$minimal" 'readOnlyRootFilesystem: true' "read-only root filesystem"
expect_in "$minimal" 'checksum/config:' "pods roll when settings change"
expect_in "$minimal" 'command: ["node", "dist/cli/main.js", "migrate"]' "the migration hook"
expect_in "$minimal" 'COOKIE_KEYS_FILE' "secrets read through NAME_FILE"
expect_in "$production" 'kind: HorizontalPodAutoscaler' "autoscaling"
expect_in "$production" 'kind: PodDisruptionBudget' "disruption budget"
expect_in "$production" 'secretName: id-example-com-tls' "TLS at the ingress"
expect_in "$production" 'kind: ServiceMonitor' "Prometheus scrape"
expect_in "$production" 'key: METRICS_TOKEN' "the scrape sends the metrics token"
# Settings given as YAML numbers keep their digits (helm reads numbers as floats).
printf 'config:\n  REFRESH_TOKEN_TTL_S: 1209600\n' >"$WORK/numbers-values.yaml"
render numbers "$latest" -f "$MINIMAL" -f "$WORK/numbers-values.yaml"
expect_in numbers 'REFRESH_TOKEN_TTL_S: "1209600"' "numbers in config render as integers"
if grep -q '^kind: Secret' "$WORK/$production.yaml"; then
  die "$production: an existingSecret was given, yet the chart renders a Secret"
fi

# What production refuses (src/config/production-safety.ts), the chart refuses before any pod starts.
SECRETS=(--set secrets.mongodbUri=mongodb://db/latchkey --set secrets.redisUrl=redis://cache
  --set secrets.cookieKeys=cccccccccccccccccccccccccccccccccccc
  --set secrets.keyEncryptionSecret=kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk)
expect_refused "issuer is required"
expect_refused "issuer must be an https:// URL" --set issuer=http://id.example.com "${SECRETS[@]}"
expect_refused "allowHttpIssuer needs trustProxy" --set issuer=http://id.example.com \
  --set allowHttpIssuer=true --set trustProxy=false "${SECRETS[@]}"
expect_refused "secrets.cookieKeys is required" --set issuer=https://id.example.com \
  --set secrets.mongodbUri=mongodb://db/latchkey --set secrets.redisUrl=redis://cache
expect_refused "secrets.keyEncryptionSecret must be at least 32 characters" -f "$MINIMAL" \
  --set secrets.keyEncryptionSecret=short
expect_refused "secrets.mongodbUri must start with mongodb://" -f "$MINIMAL" \
  --set secrets.mongodbUri=postgres://db
expect_refused "config.COOKIE_KEYS is a secret" -f "$MINIMAL" --set config.COOKIE_KEYS=x
expect_refused "config.NODE_ENV is set by the chart" -f "$MINIMAL" --set config.NODE_ENV=development
expect_refused "set both bootstrapAdmin.clientId and the BOOTSTRAP_ADMIN_CLIENT_SECRET secret" \
  -f "$MINIMAL" --set bootstrapAdmin.clientId=admin-cli
expect_refused "terminationGracePeriodSeconds (10 s) must exceed" -f "$MINIMAL" \
  --set terminationGracePeriodSeconds=10
expect_refused "secrets.existingSecretExtraKeys: PASSWORD is not a secret setting" -f "$PRODUCTION" \
  --set 'secrets.existingSecretExtraKeys={PASSWORD}'

log "chart OK"
