{{/* The chart's name, or nameOverride. */}}
{{- define "hookgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's resource name: fullnameOverride, the release name when it already
contains the chart's name, else RELEASE-CHART. */}}
{{- define "hookgate.fullname" -}}
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

{{- define "hookgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hookgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "hookgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "hookgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The Secret holding the webhook secrets: existingSecret, or the chart's own. */}}
{{- define "hookgate.secretName" -}}
{{- if .Values.existingSecret }}
{{- .Values.existingSecret }}
{{- else }}
{{- include "hookgate.fullname" . }}-secrets
{{- end }}
{{- end }}

{{/* hookgate.yaml. ci/rendered-config.yaml is what the default values give. */}}
{{- define "hookgate.config" -}}
listen: "0.0.0.0:{{ .Values.ports.http }}"
admin:
  listen: "0.0.0.0:{{ .Values.ports.admin }}"
trusted_proxies:
  {{- toYaml .Values.config.trustedProxies | nindent 2 }}
shutdown_grace: {{ .Values.config.shutdownGrace }}
{{- with .Values.config.defaults }}
defaults:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .Values.tls.enabled }}
tls:
  cert: {{ .Values.tls.mountPath }}/tls.crt
  key: {{ .Values.tls.mountPath }}/tls.key
{{- end }}
{{- if .Values.store.enabled }}
store:
  path: /var/lib/hookgate/hookgate.db
{{- end }}
{{- with .Values.config.extra }}
{{ toYaml . }}
{{- end }}
routes:
  {{- toYaml .Values.routes | nindent 2 }}
{{- end }}
