{{/* Names and labels. */}}
{{- define "switchboard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "switchboard.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "switchboard.headless" -}}
{{- printf "%s-peers" (include "switchboard.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "switchboard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "switchboard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "switchboard.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "switchboard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: switchboard
{{- end }}

{{- define "switchboard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "switchboard.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Whether etcd is configured, and where PostgreSQL's URL comes from. */}}
{{- define "switchboard.etcd" -}}
{{- if or .Values.cluster.etcd.endpoints .Values.cluster.etcd.existingSecret.name }}true{{ end }}
{{- end }}

{{- define "switchboard.postgresSecret" -}}
{{- if .Values.postgres.existingSecret.name }}
{{- .Values.postgres.existingSecret.name }}
{{- else if .Values.postgres.url }}
{{- printf "%s-postgres" (include "switchboard.fullname" .) }}
{{- end }}
{{- end }}

{{/* The Secret holding the token keys: the one named, or the one the chart generates. */}}
{{- define "switchboard.authSecret" -}}
{{- .Values.auth.existingSecret | default (printf "%s-auth" (include "switchboard.fullname" .)) }}
{{- end }}

{{- define "switchboard.postgresKey" -}}
{{- if .Values.postgres.existingSecret.name }}{{ .Values.postgres.existingSecret.key }}{{ else }}url{{ end }}
{{- end }}

{{/* Grace period: the preStop sleep and the drain must fit inside it. */}}
{{- define "switchboard.grace" -}}
{{- $floor := add .Values.shutdown.preStopSleepSeconds .Values.shutdown.drainSeconds }}
{{- if .Values.shutdown.terminationGracePeriodSeconds }}
{{- if le (int .Values.shutdown.terminationGracePeriodSeconds) (int $floor) }}
{{- fail (printf "shutdown.terminationGracePeriodSeconds (%v) must be longer than preStopSleepSeconds + drainSeconds (%v)" .Values.shutdown.terminationGracePeriodSeconds $floor) }}
{{- end }}
{{- .Values.shutdown.terminationGracePeriodSeconds }}
{{- else }}
{{- add $floor 15 }}
{{- end }}
{{- end }}

{{/* Refuse configurations that cannot work. */}}
{{- define "switchboard.validate" -}}
{{- if gt (int .Values.replicas) 1 }}
{{- if not (include "switchboard.etcd" .) }}
{{- fail "more than one replica needs cluster.etcd.endpoints or cluster.etcd.existingSecret.name" }}
{{- end }}
{{- if not (include "switchboard.postgresSecret" .) }}
{{- fail "more than one replica needs postgres.url or postgres.existingSecret.name (the embedded store serves one node)" }}
{{- end }}
{{- end }}
{{- if and .Values.postgres.url .Values.postgres.existingSecret.name }}
{{- fail "set postgres.url or postgres.existingSecret.name, not both" }}
{{- end }}
{{- if and .Values.cluster.etcd.endpoints .Values.cluster.etcd.existingSecret.name }}
{{- fail "set cluster.etcd.endpoints or cluster.etcd.existingSecret.name, not both" }}
{{- end }}
{{- /* The nodes listen beyond loopback, where a node without token keys refuses to start: there
are always keys, the named Secret's or one the chart generates. */}}
{{- if not .Values.auth.keys }}
{{- fail "auth.keys is empty: the nodes listen beyond loopback, where a node without token keys refuses to start; list the key(s) of auth.existingSecret, or keep [hs256.key] for the Secret the chart generates (SECURITY.md)" }}
{{- end }}
{{- if and (not .Values.auth.existingSecret) (gt (len .Values.auth.keys) 1) }}
{{- fail (printf "auth.keys lists %d keys, but without auth.existingSecret the chart generates one HS256 secret: name a Secret holding your keys (e.g. while rotating) in auth.existingSecret, or list one key" (len .Values.auth.keys)) }}
{{- end }}
{{- if and .Values.tls.ca.existingSecret (not .Values.tls.existingSecret) }}
{{- fail "tls.ca.existingSecret needs tls.existingSecret (the node's own certificate and key)" }}
{{- end }}
{{- if and (include "switchboard.etcd" .) (not (and .Values.tls.existingSecret .Values.tls.ca.existingSecret)) }}
{{- fail (printf "cluster.etcd needs mutual TLS between nodes: set tls.existingSecret (tls.crt/tls.key, with SANs *.%s.%s.svc.cluster.local) and tls.ca.existingSecret (the cluster CA)" (include "switchboard.headless" .) .Release.Namespace) }}
{{- end }}
{{- end }}

{{/* `switchboard ctl health` over TLS from inside the pod, as an exec probe command. The
server name is one label under the peers' wildcard SAN, which the certificate must carry. */}}
{{- define "switchboard.healthProbe" -}}
{{- $name := printf "probe.%s.%s.svc.cluster.local" (include "switchboard.headless" .) .Release.Namespace -}}
{{- list "/usr/local/bin/switchboard" "ctl" "--addr" (printf "https://127.0.0.1:%v" .Values.grpc.port) "--ca-file" "/etc/switchboard/tls/ca.crt" "--tls-server-name" $name "health" | toJson }}
{{- end }}
