{{/*
The Deployment of one component; call with (dict "root" $ "component" "gateway").
Every component is the same image with its own command; its HTTP endpoints (/healthz, /readyz,
/metrics) listen on 0.0.0.0:<port> inside the pod.
*/}}
{{- define "eventchat.deployment" -}}
{{- $root := .root -}}
{{- $component := .component -}}
{{- $v := $root.Values -}}
{{- $c := index $v $component -}}
{{- $port := include "eventchat.port" . | int -}}
{{- $ctx := dict "root" $root "component" $component -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "eventchat.componentName" $ctx }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "eventchat.componentLabels" $ctx | nindent 4 }}
spec:
  {{- if not (and (eq $component "gateway") $c.autoscaling.enabled) }}
  replicas: {{ $c.replicaCount }}
  {{- end }}
  revisionHistoryLimit: 5
  {{- with $c.strategy }}
  strategy:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "eventchat.selectorLabels" $ctx | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "eventchat.componentLabels" $ctx | nindent 8 }}
        {{- with $c.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- $annotations := dict }}
      {{- if $v.monitoring.podAnnotations }}
      {{- $_ := set $annotations "prometheus.io/scrape" "true" }}
      {{- $_ := set $annotations "prometheus.io/port" (toString $port) }}
      {{- $_ := set $annotations "prometheus.io/path" "/metrics" }}
      {{- end }}
      {{- $annotations = merge (deepCopy (default dict $c.podAnnotations)) $annotations }}
      {{- with $annotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      serviceAccountName: {{ include "eventchat.serviceAccountName" $root }}
      automountServiceAccountToken: false
      enableServiceLinks: false
      {{- with $v.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      terminationGracePeriodSeconds: {{ $c.terminationGracePeriodSeconds }}
      securityContext:
        {{- toYaml $v.podSecurityContext | nindent 8 }}
      containers:
        - name: {{ $component }}
          image: {{ include "eventchat.image" $root | quote }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          command: ["/usr/local/bin/{{ $component }}"]
          ports:
            - name: {{ if eq $component "gateway" }}http{{ else }}http-ops{{ end }}
              containerPort: {{ $port }}
              protocol: TCP
          env:
            {{- include "eventchat.commonEnv" $root | nindent 12 }}
            {{- include (printf "eventchat.env.%s" $component) $ctx | nindent 12 }}
            {{- with $c.resources }}{{ with .limits }}{{ if .memory }}
            - name: GOMEMLIMIT
              valueFrom:
                resourceFieldRef:
                  containerName: {{ $component }}
                  resource: limits.memory
            {{- end }}{{ end }}{{ end }}
            {{- with $v.env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
            {{- with $c.env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          startupProbe:
            httpGet:
              path: /healthz
              port: {{ $port }}
            periodSeconds: {{ $c.startupProbe.periodSeconds }}
            failureThreshold: {{ $c.startupProbe.failureThreshold }}
            timeoutSeconds: 2
          readinessProbe:
            httpGet:
              path: /readyz
              port: {{ $port }}
            periodSeconds: 5
            timeoutSeconds: 3
            failureThreshold: 2
            successThreshold: 1
          livenessProbe:
            httpGet:
              path: /healthz
              port: {{ $port }}
            periodSeconds: 10
            timeoutSeconds: 3
            failureThreshold: 3
          {{- if and (eq $component "gateway") (gt (int $c.preStopSleepSeconds) 0) }}
          lifecycle:
            preStop:
              sleep:
                seconds: {{ $c.preStopSleepSeconds }}
          {{- end }}
          {{- with $c.resources }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          securityContext:
            {{- toYaml $v.securityContext | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- if $v.nats.credsSecret.name }}
            - name: nats-creds
              mountPath: /etc/eventchat/nats
              readOnly: true
            {{- end }}
            {{- with include (printf "eventchat.mounts.%s" $component) $ctx }}{{ . | trim | nindent 12 }}{{ end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
        {{- with $v.nats.credsSecret }}{{ if .name }}
        - name: nats-creds
          secret:
            secretName: {{ .name }}
            defaultMode: 0440
            items:
              - key: {{ .key }}
                path: {{ .key }}
        {{- end }}{{ end }}
        {{- with include (printf "eventchat.volumes.%s" $component) $ctx }}{{ . | trim | nindent 8 }}{{ end }}
      {{- with $c.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if $c.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- toYaml $c.topologySpreadConstraints | nindent 8 }}
      {{- else if $v.defaultTopologySpread }}
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "eventchat.selectorLabels" $ctx | nindent 14 }}
      {{- end }}
{{- end -}}

{{/* Environment of every container: NATS, the log's settings, logging. */}}
{{- define "eventchat.commonEnv" -}}
- name: CHAT_NATS_URL
  value: {{ .Values.nats.url | quote }}
{{- with .Values.nats.credsSecret }}{{ if .name }}
- name: CHAT_NATS_CREDS
  value: {{ printf "/etc/eventchat/nats/%s" .key | quote }}
{{- end }}{{ end }}
- name: CHAT_REPLICAS
  value: {{ .Values.nats.replicas | int | quote }}
{{- with .Values.stream }}
{{- if .retention }}
- name: CHAT_RETENTION
  value: {{ .retention | quote }}
{{- end }}
{{- if .retentionBytes }}
- name: CHAT_RETENTION_BYTES
  value: {{ .retentionBytes | int64 | quote }}
{{- end }}
{{- if .dedupWindow }}
- name: CHAT_DEDUP_WINDOW
  value: {{ .dedupWindow | quote }}
{{- end }}
{{- end }}
- name: CHAT_LOG_LEVEL
  value: {{ .Values.log.level | quote }}
- name: CHAT_LOG_FORMAT
  value: {{ .Values.log.format | quote }}
{{- end -}}

{{/* gateway */}}
{{- define "eventchat.env.gateway" -}}
{{- $c := .root.Values.gateway -}}
{{- $jwt := $c.jwt -}}
- name: CHAT_ADDR
  value: {{ printf "0.0.0.0:%d" (int $c.containerPort) | quote }}
- name: CHAT_SHUTDOWN_TIMEOUT
  value: {{ printf "%ds" (int $c.shutdownTimeoutSeconds) | quote }}
{{- with $c.allowedOrigins }}
- name: CHAT_ALLOWED_ORIGINS
  value: {{ join "," . | quote }}
{{- end }}
- name: CHAT_JWT_ALG
  value: {{ $jwt.alg | quote }}
{{- if include "eventchat.jwtSecretName" .root }}
- name: CHAT_JWT_SECRET_FILE
  value: {{ printf "/etc/eventchat/jwt-secret/%s" $jwt.secret.key | quote }}
{{- end }}
{{- if ne $jwt.alg "HS256" }}
{{- if $jwt.keys.privateKey }}
- name: CHAT_JWT_PRIVATE_KEY
  value: {{ printf "/etc/eventchat/jwt-keys/%s" $jwt.keys.privateKey | quote }}
{{- end }}
{{- if $jwt.keys.publicKey }}
- name: CHAT_JWT_PUBLIC_KEY
  value: {{ printf "/etc/eventchat/jwt-keys/%s" $jwt.keys.publicKey | quote }}
{{- end }}
{{- end }}
{{- with $jwt.issuer }}
- name: CHAT_JWT_ISSUER
  value: {{ . | quote }}
{{- end }}
{{- with $jwt.audience }}
- name: CHAT_JWT_AUDIENCE
  value: {{ . | quote }}
{{- end }}
{{- with $jwt.ttl }}
- name: CHAT_JWT_TTL
  value: {{ . | quote }}
{{- end }}
{{- end -}}

{{- define "eventchat.mounts.gateway" -}}
{{- $jwt := .root.Values.gateway.jwt -}}
{{- if include "eventchat.jwtSecretName" .root }}
- name: jwt-secret
  mountPath: /etc/eventchat/jwt-secret
  readOnly: true
{{- end }}
{{- if ne $jwt.alg "HS256" }}
- name: jwt-keys
  mountPath: /etc/eventchat/jwt-keys
  readOnly: true
{{- end }}
{{- end -}}

{{- define "eventchat.volumes.gateway" -}}
{{- $jwt := .root.Values.gateway.jwt -}}
{{- with include "eventchat.jwtSecretName" .root }}
- name: jwt-secret
  secret:
    secretName: {{ . }}
    defaultMode: 0440
    items:
      - key: {{ $jwt.secret.key }}
        path: {{ $jwt.secret.key }}
{{- end }}
{{- if ne $jwt.alg "HS256" }}
- name: jwt-keys
  secret:
    secretName: {{ $jwt.keys.existingSecret }}
    defaultMode: 0440
    items:
      {{- with $jwt.keys.privateKey }}
      - key: {{ . }}
        path: {{ . }}
      {{- end }}
      {{- with $jwt.keys.publicKey }}
      - key: {{ . }}
        path: {{ . }}
      {{- end }}
{{- end }}
{{- end -}}

{{/* presence */}}
{{- define "eventchat.env.presence" -}}
- name: CHAT_PRESENCE_ADDR
  value: {{ printf "0.0.0.0:%d" (int .root.Values.presence.opsPort) | quote }}
{{- end -}}
{{- define "eventchat.mounts.presence" -}}{{- end -}}
{{- define "eventchat.volumes.presence" -}}{{- end -}}

{{/* unread */}}
{{- define "eventchat.env.unread" -}}
- name: CHAT_UNREAD_ADDR
  value: {{ printf "0.0.0.0:%d" (int .root.Values.unread.opsPort) | quote }}
{{- end -}}
{{- define "eventchat.mounts.unread" -}}{{- end -}}
{{- define "eventchat.volumes.unread" -}}{{- end -}}

{{/* archiver */}}
{{- define "eventchat.env.archiver" -}}
{{- $v := .root.Values -}}
- name: CHAT_ARCHIVER_ADDR
  value: {{ printf "0.0.0.0:%d" (int $v.archiver.opsPort) | quote }}
{{- $addrs := list }}
{{- range splitList "," (toString $v.clickhouse.addr) }}{{ $addrs = append $addrs (trim .) }}{{ end }}
- name: CHAT_CLICKHOUSE_ADDR
  value: {{ join "," $addrs | quote }}
- name: CHAT_CLICKHOUSE_DB
  value: {{ $v.clickhouse.database | quote }}
- name: CHAT_CLICKHOUSE_USER
  value: {{ $v.clickhouse.user | quote }}
{{- with $v.clickhouse.passwordSecret }}{{ if .name }}
- name: CHAT_CLICKHOUSE_PASSWORD_FILE
  value: {{ printf "/etc/eventchat/clickhouse/%s" .key | quote }}
{{- end }}{{ end }}
{{- with $v.archiver.keep }}
- name: CHAT_ARCHIVE_KEEP
  value: {{ . | quote }}
{{- end }}
{{- if $v.archiver.keepBytes }}
- name: CHAT_ARCHIVE_KEEP_BYTES
  value: {{ $v.archiver.keepBytes | int64 | quote }}
{{- end }}
{{- end -}}

{{- define "eventchat.mounts.archiver" -}}
{{- if .root.Values.clickhouse.passwordSecret.name }}
- name: clickhouse-password
  mountPath: /etc/eventchat/clickhouse
  readOnly: true
{{- end }}
{{- end -}}

{{- define "eventchat.volumes.archiver" -}}
{{- with .root.Values.clickhouse.passwordSecret }}{{ if .name }}
- name: clickhouse-password
  secret:
    secretName: {{ .name }}
    defaultMode: 0440
    items:
      - key: {{ .key }}
        path: {{ .key }}
{{- end }}{{ end }}
{{- end -}}
