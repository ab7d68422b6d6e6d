{{/* The text of NOTES.txt, a define so deploy/k8s/check.sh can render and check it offline. */}}
{{- define "eventchat.notes" -}}
eventchat {{ .Chart.AppVersion }} is installed as release {{ .Release.Name }} in namespace {{ .Release.Namespace }}.
{{- $gw := include "eventchat.componentName" (dict "root" . "component" "gateway") }}
{{- $g := .Values.gateway }}

Components:
{{- range $component := splitList " " (include "eventchat.components" .) }}
{{- $ctx := dict "root" $ "component" $component }}
{{- if include "eventchat.enabled" $ctx }}
  - {{ $component }}: Deployment {{ include "eventchat.componentName" $ctx }}
{{- else }}
  - {{ $component }}: not installed{{ if eq $component "archiver" }} (set clickhouse.addr to archive history in ClickHouse){{ end }}
{{- end }}
{{- end }}

Prerequisite: a NATS cluster with JetStream (nats-server 2.12+), reachable at {{ .Values.nats.url }}
with {{ .Values.nats.replicas }} JetStream replica(s), for example the official chart:
  helm repo add nats https://nats-io.github.io/k8s/helm/charts/
  helm install nats nats/nats --set config.cluster.enabled=true --set config.cluster.replicas=3 \
    --set config.jetstream.enabled=true --set config.jetstream.fileStore.pvc.size=20Gi
The services create the CHAT_EVENTS stream and the chat_* buckets themselves on first start (and
update them in place later; they never delete one). A pod that cannot reach NATS exits and is
restarted; it turns ready once the stream and buckets are there.
ClickHouse is optional: with clickhouse.addr set, the archiver stores the history and analytics.
{{- if $g.enabled }}

Reach the gateway (browser client, WebSocket /v1/ws, HTTP API):
{{- if $g.ingress.enabled }}
{{- range $g.ingress.hosts }}
  http{{ if $g.ingress.tls }}s{{ end }}://{{ default "<ingress address>" .host }}/
{{- end }}
  Raise the ingress controller's idle/read timeouts for WebSockets (see gateway.ingress.annotations in values.yaml).
{{- else if eq $g.service.type "LoadBalancer" }}
  kubectl get service {{ $gw }} -n {{ .Release.Namespace }} -w    # then http://<EXTERNAL-IP>:{{ $g.service.port }}/
{{- else }}
  kubectl port-forward -n {{ .Release.Namespace }} service/{{ $gw }} 8080:{{ $g.service.port }}
  then open http://127.0.0.1:8080/
{{- end }}
{{- if and (not $g.allowedOrigins) $g.ingress.enabled }}
  Browsers on another origin than the gateway's own host need gateway.allowedOrigins.
{{- end }}

Operator CLI (replay, rebuild/verify projections, analytics), with the pod's NATS settings:
  kubectl exec -n {{ .Release.Namespace }} deploy/{{ $gw }} -- /usr/local/bin/chatctl help
{{- end }}
{{- if include "eventchat.enabled" (dict "root" . "component" "unread") }}

Compare a live unread instance with a rebuild from the log:
  kubectl exec -n {{ .Release.Namespace }} deploy/{{ include "eventchat.componentName" (dict "root" . "component" "unread") }} -- /usr/local/bin/unread check
{{- end }}
{{- range $component := list "presence" "unread" }}
{{- $c := index $.Values $component }}
{{- if and $c.enabled (lt (int $c.replicaCount) 2) }}

WARNING: {{ $component }}.replicaCount={{ $c.replicaCount }}: run 2 or more for availability.
{{- end }}
{{- end }}
{{- if lt (int .Values.nats.replicas) 3 }}

WARNING: nats.replicas={{ .Values.nats.replicas }}: the log is not replicated; use 3 on a 3-node JetStream cluster.
{{- end }}
{{- end -}}
