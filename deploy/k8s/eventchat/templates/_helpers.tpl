{{/* Names, labels and the settings shared by every component. */}}

{{- define "eventchat.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-scoped name; components append "-<component>" (so it is cut to 50). */}}
{{- define "eventchat.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "eventchat.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Common labels. */}}
{{- define "eventchat.labels" -}}
helm.sh/chart: {{ include "eventchat.chart" . }}
app.kubernetes.io/name: {{ include "eventchat.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: eventchat
{{- end -}}

{{/* Selector labels of a component; call with (dict "root" $ "component" "gateway"). */}}
{{- define "eventchat.selectorLabels" -}}
app.kubernetes.io/name: {{ include "eventchat.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* All labels of a component's objects; call with (dict "root" $ "component" "gateway"). */}}
{{- define "eventchat.componentLabels" -}}
{{ include "eventchat.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Name of a component's objects: <fullname>-<component>. */}}
{{- define "eventchat.componentName" -}}
{{- printf "%s-%s" (include "eventchat.fullname" .root) .component -}}
{{- end -}}

{{- define "eventchat.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) -}}
{{- end -}}

{{- define "eventchat.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "eventchat.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Name of the Secret holding the HS256 secret ("" when none is configured). */}}
{{- define "eventchat.jwtSecretName" -}}
{{- $jwt := .Values.gateway.jwt -}}
{{- if eq $jwt.alg "HS256" -}}
{{- if $jwt.secret.existingSecret -}}
{{- $jwt.secret.existingSecret -}}
{{- else if $jwt.secret.create -}}
{{- printf "%s-jwt" (include "eventchat.fullname" .) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* "true" when the archiver runs, else "". */}}
{{- define "eventchat.archiverEnabled" -}}
{{- $e := toString .Values.archiver.enabled -}}
{{- if or (eq $e "true") (and (eq $e "auto") (ne (toString .Values.clickhouse.addr) "")) -}}
true
{{- end -}}
{{- end -}}

{{/* "true" when a component runs, else ""; call with (dict "root" $ "component" "presence"). */}}
{{- define "eventchat.enabled" -}}
{{- if eq .component "archiver" -}}
{{- include "eventchat.archiverEnabled" .root -}}
{{- else if (index .root.Values .component).enabled -}}
true
{{- end -}}
{{- end -}}

{{/* Port of a component's HTTP endpoints (/healthz, /readyz, /metrics). */}}
{{- define "eventchat.port" -}}
{{- $c := index .root.Values .component -}}
{{- if eq .component "gateway" -}}{{ $c.containerPort }}{{- else -}}{{ $c.opsPort }}{{- end -}}
{{- end -}}

{{/* Replicas a component runs at least (the HPA's minimum when it scales the gateway). */}}
{{- define "eventchat.minReplicas" -}}
{{- $c := index .root.Values .component -}}
{{- if and (eq .component "gateway") $c.autoscaling.enabled -}}
{{- $c.autoscaling.minReplicas -}}
{{- else -}}
{{- $c.replicaCount -}}
{{- end -}}
{{- end -}}

{{/* The components, in order. */}}
{{- define "eventchat.components" -}}
gateway presence unread archiver
{{- end -}}
