#!/usr/bin/env bash
# deploy/k8s/check.sh: lint the eventchat Helm chart and render it with several value sets, then
# verify the manifests without a cluster:
#   - `helm lint --strict` of the defaults and of every deploy/k8s/eventchat/ci/*-values.yaml;
#   - every render is decoded strictly into the k8s.io/api types and checked by chartcheck
#     (deploy/k8s/chartcheck: probes, hardened security contexts, 0.0.0.0 ops addresses, mounts
#     of every file a CHAT_* variable names, grace period > shutdown timeout, and Services,
#     Ingress, HPA, PDBs and ServiceMonitors pointing at what exists);
#   - what each value set must and must not render (e.g. no archiver without clickhouse.addr);
#   - invalid combinations make `helm template` fail with the expected message;
#   - chartcheck itself rejects manifests broken on purpose.
# Needs helm v3 (HELM, then <repo>/.cache/bin/helm, then PATH; else built once with go install into
# <repo>/.cache/bin) and Go (for chartcheck). Exit 0 when everything holds, 1 otherwise.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
chart="$here/eventchat"
cibin="$root/.cache/bin"
start=${EPOCHREALTIME:-$(date +%s)}

die() { echo "check.sh: FAIL: $*" >&2; exit 1; }

# --- tools -------------------------------------------------------------------------------------
helm_bin=${HELM:-}
if [ -z "$helm_bin" ]; then
  if [ -x "$cibin/helm" ]; then
    helm_bin="$cibin/helm"
  elif command -v helm >/dev/null 2>&1 && helm version --template '{{.Version}}' 2>/dev/null | grep -q '^v3\.'; then
    helm_bin=$(command -v helm)
  else
    echo "check.sh: building helm v3.22.0 into $cibin (once; takes minutes)"
    mkdir -p "$cibin"
    (cd "$root" && GOWORK=off GOFLAGS= GOBIN="$cibin" go install helm.sh/helm/v3/cmd/helm@v3.22.0) \
      || die "could not build helm (go install helm.sh/helm/v3/cmd/helm@v3.22.0)"
    helm_bin="$cibin/helm"
  fi
fi
"$helm_bin" version --template '{{.Version}}' >/dev/null 2>&1 || die "$helm_bin does not run"
echo "helm:       $helm_bin ($("$helm_bin" version --template '{{.Version}}'))"

mkdir -p "$cibin"
(cd "$here/chartcheck" && GOWORK=off go build -o "$cibin/chartcheck" .) || die "could not build deploy/k8s/chartcheck"
chartcheck="$cibin/chartcheck"
echo "chartcheck: $chartcheck"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
checks=0
pass() { checks=$((checks + 1)); echo "  ok   $*"; }

# --- lint --------------------------------------------------------------------------------------
echo "== helm lint --strict"
"$helm_bin" lint --strict "$chart" >"$tmp/lint" 2>&1 || { cat "$tmp/lint" >&2; die "helm lint --strict (defaults)"; }
pass "defaults"
for f in "$chart"/ci/*-values.yaml; do
  "$helm_bin" lint --strict "$chart" -f "$f" >"$tmp/lint" 2>&1 || { cat "$tmp/lint" >&2; die "helm lint --strict -f ${f#"$root"/}"; }
  pass "-f ${f#"$chart"/}"
done

# --- renders -----------------------------------------------------------------------------------
# render NAME ARGS...: helm template into $tmp/NAME.yaml, then chartcheck into $tmp/NAME.list.
render() {
  local name=$1; shift
  "$helm_bin" template chat "$chart" --namespace chat "$@" >"$tmp/$name.yaml" 2>"$tmp/$name.err" \
    || { cat "$tmp/$name.err" >&2; die "$name: helm template $* failed"; }
  "$chartcheck" <"$tmp/$name.yaml" >"$tmp/$name.list" 2>"$tmp/$name.err" \
    || { cat "$tmp/$name.err" >&2; die "$name: chartcheck found problems in the manifests"; }
  pass "$name: renders, strict k8s decoding and chartcheck ($(wc -l <"$tmp/$name.list" | tr -d ' ') objects)"
}
# has NAME "Kind name" / hasnt NAME "Kind name": the render has (not) that object.
has()   { grep -qx "$2.*" "$tmp/$1.list" || die "$1: want $2, got: $(tr '\n' ',' <"$tmp/$1.list")"; }
hasnt() { ! grep -qx "$2.*" "$tmp/$1.list" || die "$1: want no $2"; }
# grep_in NAME REGEX WHAT / grep_not NAME REGEX WHAT: the rendered YAML does (not) match.
grep_in()  { grep -Eq -- "$2" "$tmp/$1.yaml" || die "$1: $3 (no match for /$2/)"; }
grep_not() { ! grep -Eq -- "$2" "$tmp/$1.yaml" || die "$1: $3 (unexpected /$2/)"; }
# env_of NAME COMPONENT: the env names and values of a component's container, one "NAME=value" a line.
env_of() {
  awk -v want="chat-eventchat-$2" '
    /^---/                 { kind = ""; name = ""; inenv = 0 }
    /^kind: /              { kind = $2 }
    /^  name: /            { name = $2 }
    kind != "Deployment" || name != want { next }
    /^          env:/      { inenv = 1; next }
    inenv && !/^            / { inenv = 0 }
    inenv && /^            - name: /  { n = $3 }
    inenv && /^              value: / { v = $0; sub(/^ *value: */, "", v); gsub(/"/, "", v); print n "=" v }
  ' "$tmp/$1.yaml"
}
env_is() { # env_is NAME COMPONENT VAR VALUE
  local got; got=$(env_of "$1" "$2" | grep "^$3=" | head -1 || true)
  [ "$got" = "$3=$4" ] || die "$1: $2 $3: want '$4', got '${got#*=}'"
}
env_unset() { # env_unset NAME COMPONENT VAR
  ! env_of "$1" "$2" | grep -q "^$3=" || die "$1: $2 sets $3"
}

echo "== defaults (no ClickHouse)"
render defaults
for c in gateway presence unread; do
  has defaults "Deployment chat-eventchat-$c $c"
  has defaults "Service chat-eventchat-$c $c"
  has defaults "PodDisruptionBudget chat-eventchat-$c $c"
done
hasnt defaults "Deployment chat-eventchat-archiver"
hasnt defaults "Service chat-eventchat-archiver"
for k in Ingress HorizontalPodAutoscaler ServiceMonitor; do hasnt defaults "$k "; done
has defaults "Secret chat-eventchat-jwt gateway"
pass "defaults: gateway, presence, unread with Services and PDBs; no archiver, Ingress, HPA or ServiceMonitor"
[ "$(grep -c '^  replicas: 2$' "$tmp/defaults.yaml")" = 3 ] || die "defaults: want replicas 2 for gateway, presence, unread"
grep_in defaults 'image: "ghcr.io/eventchat/chat:0\.1\.0"' "image tag defaults to appVersion"
grep_in defaults 'port: 80$' "gateway Service port 80"
grep_in defaults 'terminationGracePeriodSeconds: 30$' "grace period 30s"
env_is defaults gateway CHAT_ADDR 0.0.0.0:8080
env_is defaults presence CHAT_PRESENCE_ADDR 0.0.0.0:8081
env_is defaults unread CHAT_UNREAD_ADDR 0.0.0.0:8082
env_is defaults gateway CHAT_REPLICAS 3
env_is defaults unread CHAT_NATS_URL nats://nats:4222
env_is defaults gateway CHAT_LOG_FORMAT json
env_is defaults gateway CHAT_SHUTDOWN_TIMEOUT 20s
env_is defaults gateway CHAT_JWT_ALG HS256
env_is defaults gateway CHAT_JWT_SECRET_FILE /etc/eventchat/jwt-secret/jwt-secret
env_unset defaults gateway CHAT_NATS_CREDS
grep_in defaults 'prometheus.io/scrape: "true"' "prometheus scrape annotations"
grep_in defaults 'topologyKey: kubernetes.io/hostname' "default spread by hostname"
pass "defaults: replicas 2, image tag = appVersion, Service 80 -> http, ops on 0.0.0.0, NATS/JWT/log env, scrape annotations, spread"

echo "== archiver follows clickhouse.addr"
render clickhouse --set clickhouse.addr=clickhouse:9000
has clickhouse "Deployment chat-eventchat-archiver archiver"
has clickhouse "Service chat-eventchat-archiver archiver"
hasnt clickhouse "PodDisruptionBudget chat-eventchat-archiver"
env_is clickhouse archiver CHAT_CLICKHOUSE_ADDR clickhouse:9000
env_is clickhouse archiver CHAT_CLICKHOUSE_DB chat
env_is clickhouse archiver CHAT_ARCHIVER_ADDR 0.0.0.0:8083
env_unset clickhouse archiver CHAT_CLICKHOUSE_PASSWORD_FILE
pass "clickhouse.addr set: archiver Deployment and Service, 1 replica so no PDB, ClickHouse env"
render clickhouse-off --set clickhouse.addr=clickhouse:9000 --set archiver.enabled=false
hasnt clickhouse-off "Deployment chat-eventchat-archiver"
pass "archiver.enabled=false: no archiver even with clickhouse.addr"

echo "== everything on (ci/full-values.yaml)"
render full -f "$chart/ci/full-values.yaml"
for c in gateway presence unread archiver; do
  has full "Deployment chat-eventchat-$c $c"
  has full "ServiceMonitor chat-eventchat-$c $c"
  has full "PodDisruptionBudget chat-eventchat-$c $c"
done
has full "Ingress chat-eventchat-gateway gateway"
has full "HorizontalPodAutoscaler chat-eventchat-gateway gateway"
pass "full: 4 Deployments, 4 ServiceMonitors, 4 PDBs, Ingress, HPA"
env_is full archiver CHAT_CLICKHOUSE_PASSWORD_FILE /etc/eventchat/clickhouse/password
env_is full archiver CHAT_ARCHIVE_KEEP 720h
env_is full archiver CHAT_ARCHIVE_KEEP_BYTES 50000000000
env_is full unread CHAT_RETENTION_BYTES 10000000000
env_is full presence CHAT_NATS_CREDS /etc/eventchat/nats/chat.creds
env_is full gateway CHAT_ALLOWED_ORIGINS https://chat.example.com,https://app.example.com
env_is full gateway CHAT_SHUTDOWN_TIMEOUT 25s
grep_in full 'ingressClassName: nginx' "ingress class"
grep_in full 'secretName: chat-example-com-tls' "ingress TLS"
grep_in full 'nginx.ingress.kubernetes.io/proxy-read-timeout: "3600"' "ingress annotations"
grep_in full 'release: kube-prometheus-stack' "ServiceMonitor labels"
grep_in full 'image: "ghcr.io/eventchat/chat:1\.2\.3"' "image.tag"
grep_in full 'seconds: 5$' "preStop sleep"
pass "full: password/creds files, keep window, large byte sizes unmangled, origins, ingress class/TLS/annotations, monitor labels, image tag, preStop"

echo "== RS256 keys from a Secret (ci/rs256-values.yaml)"
render rs256 -f "$chart/ci/rs256-values.yaml"
hasnt rs256 "Secret chat-eventchat-jwt"
env_is rs256 gateway CHAT_JWT_ALG RS256
env_is rs256 gateway CHAT_JWT_PRIVATE_KEY /etc/eventchat/jwt-keys/tls.key
env_is rs256 gateway CHAT_JWT_PUBLIC_KEY /etc/eventchat/jwt-keys/tls.pub
env_unset rs256 gateway CHAT_JWT_SECRET_FILE
grep_in rs256 'secretName: chat-jwt-keys' "keys Secret mounted"
pass "rs256: keys mounted, private and public key files set, no HS256 secret"
render eddsa-verify --set gateway.jwt.alg=EdDSA --set gateway.jwt.keys.existingSecret=issuer --set gateway.jwt.keys.privateKey=
env_is eddsa-verify gateway CHAT_JWT_PUBLIC_KEY /etc/eventchat/jwt-keys/public.pem
env_unset eddsa-verify gateway CHAT_JWT_PRIVATE_KEY
pass "EdDSA verify-only: public key alone"
render hs256-bucket --set gateway.jwt.secret.create=false
hasnt hs256-bucket "Secret chat-eventchat-jwt"
env_unset hs256-bucket gateway CHAT_JWT_SECRET_FILE
render hs256-existing --set gateway.jwt.secret.existingSecret=my-jwt --set gateway.jwt.secret.key=s
hasnt hs256-existing "Secret chat-eventchat-jwt"
env_is hs256-existing gateway CHAT_JWT_SECRET_FILE /etc/eventchat/jwt-secret/s
grep_in hs256-existing 'secretName: my-jwt' "existing HS256 secret mounted"
pass "HS256: secret.create=false leaves it to the chat_secrets bucket; existingSecret is mounted"

echo "== small and single-replica settings"
render small --set nats.replicas=1 --set presence.enabled=false --set unread.replicaCount=1 \
  --set gateway.replicaCount=1 --set serviceAccount.create=false --set defaultTopologySpread=false \
  --set monitoring.podAnnotations=false
hasnt small "Deployment chat-eventchat-presence"
hasnt small "PodDisruptionBudget "
hasnt small "ServiceAccount "
env_is small unread CHAT_REPLICAS 1
grep_not small 'prometheus.io/scrape' "no scrape annotations"
grep_not small 'topologySpreadConstraints' "no default spread"
grep_in small 'serviceAccountName: default' "default ServiceAccount"
pass "small: presence off, 1 replica means no PDB, no ServiceAccount, annotations and spread off, CHAT_REPLICAS 1"

# --- NOTES.txt ---------------------------------------------------------------------------------
# helm template does not render NOTES.txt; render its define (eventchat.notes) from a copy of the
# chart with one extra template that holds it.
echo "== NOTES.txt"
cp -R "$chart" "$tmp/notes-chart"
cat >"$tmp/notes-chart/templates/zz-notes-check.yaml" <<'EOF_NOTES'
apiVersion: v1
kind: ConfigMap
metadata:
  name: notes
data:
  NOTES.txt: |
{{ include "eventchat.notes" . | indent 4 }}
EOF_NOTES
# notes NAME WANT ARGS...: the notes rendered with ARGS contain WANT (a fixed string).
notes() {
  local name=$1 want=$2; shift 2
  "$helm_bin" template chat "$tmp/notes-chart" --namespace chat --show-only templates/zz-notes-check.yaml "$@" \
    >"$tmp/notes-$name.txt" 2>"$tmp/notes.err" || { cat "$tmp/notes.err" >&2; die "NOTES.txt ($name) does not render"; }
  grep -qF -- "$want" "$tmp/notes-$name.txt" || { cat "$tmp/notes-$name.txt" >&2; die "NOTES.txt ($name): want \"$want\""; }
  ! grep -qF '<no value>' "$tmp/notes-$name.txt" || die "NOTES.txt ($name): <no value>"
  pass "NOTES ($name) says: $want"
}
notes defaults "kubectl port-forward -n chat service/chat-eventchat-gateway 8080:80"
notes defaults "NATS cluster with JetStream"
notes defaults "archiver: not installed"
notes full "https://chat.example.com/" -f "$chart/ci/full-values.yaml"
notes full "archiver: Deployment chat-eventchat-archiver" -f "$chart/ci/full-values.yaml"
notes single "WARNING: nats.replicas=1" --set nats.replicas=1
notes lb "kubectl get service chat-eventchat-gateway" --set gateway.service.type=LoadBalancer

# --- invalid values ----------------------------------------------------------------------------
echo "== invalid values must fail"
# fails MESSAGE ARGS...: helm template must exit non-zero and say MESSAGE.
fails() {
  local want=$1; shift
  if "$helm_bin" template chat "$chart" "$@" >"$tmp/bad.yaml" 2>"$tmp/bad.err"; then
    die "helm template $* succeeded; want a failure saying: $want"
  fi
  grep -qF -- "$want" "$tmp/bad.err" || { cat "$tmp/bad.err" >&2; die "helm template $*: error does not say: $want"; }
  local args="$*"; pass "fails: ${args//$chart\//} -> \"$want\""
}
fails "archiver.enabled=true needs clickhouse.addr" --set archiver.enabled=true
fails "archiver.enabled=sometimes: auto, true or false" --set archiver.enabled=sometimes
fails "is not host:port" --set clickhouse.addr=clickhouse
fails "clickhouse.database=chat-db" --set clickhouse.addr=ch:9000 --set clickhouse.database=chat-db
fails "trim the stream only with a running archiver" --set archiver.keep=720h
fails "nats.url is required" --set nats.url=
fails "nats.replicas=7" --set nats.replicas=7
fails "log.format=xml" --set log.format=xml
fails "gateway.jwt.alg=HS512" --set gateway.jwt.alg=HS512
fails "gateway.jwt.alg=RS256 needs gateway.jwt.keys.existingSecret" --set gateway.jwt.alg=RS256
fails "gateway.jwt.keys.existingSecret is for RS256/EdDSA" --set gateway.jwt.keys.existingSecret=keys
fails "gateway.jwt.secret.existingSecret is for HS256" -f "$chart/ci/rs256-values.yaml" --set gateway.jwt.secret.existingSecret=s
fails "must exceed gateway.shutdownTimeoutSeconds" --set gateway.terminationGracePeriodSeconds=20
fails "must exceed gateway.shutdownTimeoutSeconds" --set gateway.preStopSleepSeconds=15
fails "maxReplicas=1 is below minReplicas=2" --set gateway.autoscaling.enabled=true --set gateway.autoscaling.maxReplicas=1
fails "unread.pdb.minAvailable=2 with 2 replicas" --set unread.pdb.minAvailable=2
fails "gateway.ingress.enabled needs gateway.enabled" --set gateway.enabled=false --set gateway.ingress.enabled=true
fails "nats.credsSecret.key is required" --set nats.credsSecret.name=creds --set nats.credsSecret.key=
fails "presence port 80" --set presence.opsPort=80

# --- chartcheck catches broken manifests -------------------------------------------------------
echo "== chartcheck rejects manifests broken on purpose"
# broken WHAT SED-EXPR MESSAGE: chartcheck must fail on the defaults edited by SED-EXPR.
broken() {
  sed -e "$2" "$tmp/defaults.yaml" >"$tmp/broken.yaml"
  cmp -s "$tmp/defaults.yaml" "$tmp/broken.yaml" && die "self-test '$1': the edit changed nothing"
  if "$chartcheck" <"$tmp/broken.yaml" >/dev/null 2>"$tmp/broken.err"; then
    die "self-test '$1': chartcheck accepted it"
  fi
  grep -qF -- "$3" "$tmp/broken.err" || { cat "$tmp/broken.err" >&2; die "self-test '$1': chartcheck did not say: $3"; }
  pass "chartcheck rejects $1"
}
broken "a writable root filesystem" 's/readOnlyRootFilesystem: true/readOnlyRootFilesystem: false/' "readOnlyRootFilesystem is not true"
broken "a root user" 's/runAsNonRoot: true/runAsNonRoot: false/' "runAsNonRoot is not true"
broken "a wrong readiness path" 's#path: /readyz#path: /ready#' "readinessProbe path"
broken "a misspelled field" 's/successThreshold:/sucessThreshold:/' "unknown field"
broken "an ops address on loopback" 's/0\.0\.0\.0:8081/127.0.0.1:8081/' "CHAT_PRESENCE_ADDR"
broken "a Service port that does not exist" 's/targetPort: http-ops/targetPort: metrics/' "targetPort metrics"
broken "a missing liveness probe" '/livenessProbe:/,/failureThreshold: 3/d' "no livenessProbe"
broken "an unmounted file" 's#/etc/eventchat/jwt-secret/jwt-secret#/etc/jwt/secret#' "is not on a mounted volume"

end=${EPOCHREALTIME:-$(date +%s)}
printf '\ncheck.sh: all %d checks passed in %ss\n' "$checks" "$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')"
