{{/*
Refuses combinations of values that cannot work, with a message naming the values to change.
Rendered (to nothing) by templates/validate.yaml, so `helm install`, `upgrade` and `template` stop.
*/}}
{{- define "eventchat.validate" -}}
{{- $v := .Values -}}
{{- $errs := list -}}

{{- if not (trim (toString $v.nats.url)) -}}
{{- $errs = append $errs "nats.url is required: the NATS cluster with JetStream, e.g. nats://nats:4222" -}}
{{- end -}}
{{- if and $v.nats.credsSecret.name (not $v.nats.credsSecret.key) -}}
{{- $errs = append $errs "nats.credsSecret.key is required when nats.credsSecret.name is set" -}}
{{- end -}}
{{- $r := int $v.nats.replicas -}}
{{- if or (lt $r 1) (gt $r 5) -}}
{{- $errs = append $errs (printf "nats.replicas=%v: JetStream replicas are 1 to 5 (3 on a 3-node cluster)" $v.nats.replicas) -}}
{{- end -}}
{{- if not (has (toString $v.log.level) (list "debug" "info" "warn" "error")) -}}
{{- $errs = append $errs (printf "log.level=%v: one of debug, info, warn, error" $v.log.level) -}}
{{- end -}}
{{- if not (has (toString $v.log.format) (list "json" "text")) -}}
{{- $errs = append $errs (printf "log.format=%v: json or text" $v.log.format) -}}
{{- end -}}

{{/* Components. */}}
{{- range $name := splitList " " (include "eventchat.components" .) -}}
{{- $c := index $v $name -}}
{{- if lt (int $c.replicaCount) 0 -}}
{{- $errs = append $errs (printf "%s.replicaCount=%v: not negative" $name $c.replicaCount) -}}
{{- end -}}
{{- $port := int (include "eventchat.port" (dict "root" $ "component" $name)) -}}
{{- if or (lt $port 1024) (gt $port 65535) -}}
{{- $errs = append $errs (printf "%s port %d: between 1024 and 65535 (the pods run without privileges)" $name $port) -}}
{{- end -}}
{{- if include "eventchat.enabled" (dict "root" $ "component" $name) -}}
{{- $min := int (include "eventchat.minReplicas" (dict "root" $ "component" $name)) -}}
{{- if and $c.pdb.enabled (gt $min 1) (ge (int $c.pdb.minAvailable) $min) -}}
{{- $errs = append $errs (printf "%s.pdb.minAvailable=%v with %d replicas would block every voluntary eviction (node drains): use fewer than the replicas" $name $c.pdb.minAvailable $min) -}}
{{- end -}}
{{- if lt (int $c.terminationGracePeriodSeconds) 15 -}}
{{- $errs = append $errs (printf "%s.terminationGracePeriodSeconds=%v: at least 15 (the service drains NATS on SIGTERM)" $name $c.terminationGracePeriodSeconds) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Gateway. */}}
{{- $g := $v.gateway -}}
{{- if $g.enabled -}}
{{- $drain := add (int $g.shutdownTimeoutSeconds) (int $g.preStopSleepSeconds) -}}
{{- if lt (int $g.shutdownTimeoutSeconds) 1 -}}
{{- $errs = append $errs "gateway.shutdownTimeoutSeconds: at least 1" -}}
{{- end -}}
{{- if le (int $g.terminationGracePeriodSeconds) $drain -}}
{{- $errs = append $errs (printf "gateway.terminationGracePeriodSeconds=%v must exceed gateway.shutdownTimeoutSeconds + preStopSleepSeconds (%d), or Kubernetes kills gateways mid-drain" $g.terminationGracePeriodSeconds $drain) -}}
{{- end -}}
{{- $jwt := $g.jwt -}}
{{- if not (has (toString $jwt.alg) (list "HS256" "RS256" "EdDSA")) -}}
{{- $errs = append $errs (printf "gateway.jwt.alg=%v: HS256, RS256 or EdDSA" $jwt.alg) -}}
{{- else if eq $jwt.alg "HS256" -}}
{{- if $jwt.keys.existingSecret -}}
{{- $errs = append $errs "gateway.jwt.keys.existingSecret is for RS256/EdDSA: set gateway.jwt.alg, or use gateway.jwt.secret for HS256" -}}
{{- end -}}
{{- if and (or $jwt.secret.existingSecret $jwt.secret.create) (not $jwt.secret.key) -}}
{{- $errs = append $errs "gateway.jwt.secret.key is required" -}}
{{- end -}}
{{- else -}}
{{- if not $jwt.keys.existingSecret -}}
{{- $errs = append $errs (printf "gateway.jwt.alg=%s needs gateway.jwt.keys.existingSecret (a Secret with the PEM keys)" $jwt.alg) -}}
{{- end -}}
{{- if not (or $jwt.keys.privateKey $jwt.keys.publicKey) -}}
{{- $errs = append $errs (printf "gateway.jwt.alg=%s needs gateway.jwt.keys.privateKey or publicKey (key names in the Secret)" $jwt.alg) -}}
{{- end -}}
{{- if $jwt.secret.existingSecret -}}
{{- $errs = append $errs (printf "gateway.jwt.secret.existingSecret is for HS256, not %s: unset it" $jwt.alg) -}}
{{- end -}}
{{- end -}}
{{- if $g.autoscaling.enabled -}}
{{- if lt (int $g.autoscaling.minReplicas) 1 -}}
{{- $errs = append $errs "gateway.autoscaling.minReplicas: at least 1" -}}
{{- end -}}
{{- if lt (int $g.autoscaling.maxReplicas) (int $g.autoscaling.minReplicas) -}}
{{- $errs = append $errs (printf "gateway.autoscaling.maxReplicas=%v is below minReplicas=%v" $g.autoscaling.maxReplicas $g.autoscaling.minReplicas) -}}
{{- end -}}
{{- if not (dig "requests" "cpu" "" (default dict $g.resources)) -}}
{{- $errs = append $errs "gateway.autoscaling on CPU needs gateway.resources.requests.cpu" -}}
{{- end -}}
{{- end -}}
{{- if $g.ingress.enabled -}}
{{- if not $g.ingress.hosts -}}
{{- $errs = append $errs "gateway.ingress.hosts: at least one host (host may be empty for any)" -}}
{{- end -}}
{{- range $g.ingress.hosts -}}
{{- if not .paths -}}
{{- $errs = append $errs (printf "gateway.ingress.hosts[%v].paths: at least one path" (default "*" .host)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- else -}}
{{- if $g.ingress.enabled -}}
{{- $errs = append $errs "gateway.ingress.enabled needs gateway.enabled" -}}
{{- end -}}
{{- if $g.autoscaling.enabled -}}
{{- $errs = append $errs "gateway.autoscaling.enabled needs gateway.enabled" -}}
{{- end -}}
{{- end -}}

{{/* Archiver and ClickHouse. */}}
{{- $ae := toString $v.archiver.enabled -}}
{{- $addr := trim (toString $v.clickhouse.addr) -}}
{{- if not (has $ae (list "auto" "true" "false")) -}}
{{- $errs = append $errs (printf "archiver.enabled=%v: auto, true or false" $v.archiver.enabled) -}}
{{- else if and (eq $ae "true") (not $addr) -}}
{{- $errs = append $errs "archiver.enabled=true needs clickhouse.addr (host:port of ClickHouse's native protocol, e.g. clickhouse:9000)" -}}
{{- end -}}
{{- if $addr -}}
{{- range splitList "," $addr -}}
{{- if not (regexMatch "^(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9._-]+):[0-9]{1,5}$" (trim .)) -}}
{{- $errs = append $errs (printf "clickhouse.addr: %q is not host:port" (trim .)) -}}
{{- end -}}
{{- end -}}
{{- if not (regexMatch "^[A-Za-z_][A-Za-z0-9_]{0,62}$" (toString $v.clickhouse.database)) -}}
{{- $errs = append $errs (printf "clickhouse.database=%v: letters, digits and '_', not starting with a digit, at most 63" $v.clickhouse.database) -}}
{{- end -}}
{{- if not $v.clickhouse.user -}}
{{- $errs = append $errs "clickhouse.user is required" -}}
{{- end -}}
{{- end -}}
{{- if and $v.clickhouse.passwordSecret.name (not $v.clickhouse.passwordSecret.key) -}}
{{- $errs = append $errs "clickhouse.passwordSecret.key is required when clickhouse.passwordSecret.name is set" -}}
{{- end -}}
{{- if and (not (include "eventchat.archiverEnabled" .)) (or $v.archiver.keep $v.archiver.keepBytes) -}}
{{- $errs = append $errs "archiver.keep/keepBytes trim the stream only with a running archiver (set clickhouse.addr)" -}}
{{- end -}}

{{- if $errs -}}
{{- fail (printf "\n\ninvalid values for the eventchat chart:\n  - %s\n" (join "\n  - " $errs)) -}}
{{- end -}}
{{- end -}}
