{{/*
The chart's name, or nameOverride.
*/}}
{{- define "cognito-import-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
A fully qualified name for the release's objects, at most 63 characters: a DNS-1035 label,
as a Service's name must be, so the dots a release name may hold become dashes.
A release name that already contains the chart's name is used as it is.
*/}}
{{- define "cognito-import-exporter.fullname" -}}
{{- $fullname := "" }}
{{- if .Values.fullnameOverride }}
{{- $fullname = .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- $release := .Release.Name | replace "." "-" }}
{{- if contains $name $release }}
{{- $fullname = $release | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $fullname = printf "%s-%s" $release $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- if not (regexMatch "^[a-z]" $fullname) }}
{{- fail (printf "the objects' name %q must start with a letter (a Service's name is a DNS-1035 label): set fullnameOverride, or a release name starting with a letter" $fullname) }}
{{- end }}
{{- $fullname }}
{{- end }}

{{- define "cognito-import-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "cognito-import-exporter.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride }}
{{- end }}

{{/*
Labels on every object.
*/}}
{{- define "cognito-import-exporter.labels" -}}
helm.sh/chart: {{ include "cognito-import-exporter.chart" . }}
{{ include "cognito-import-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: metrics
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Labels that select the release's pods.
*/}}
{{- define "cognito-import-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cognito-import-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "cognito-import-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cognito-import-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "cognito-import-exporter.image" -}}
{{- with .Values.image.registry }}{{ . }}/{{ end }}
{{- .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- with .Values.image.digest }}@{{ . }}{{ end }}
{{- end }}

{{/*
Where the configuration comes from: "configMap" or "secret", and the object's name.
*/}}
{{- define "cognito-import-exporter.configSource" -}}
{{- if .Values.config.existingSecret -}}
secret
{{- else if .Values.config.existingConfigMap -}}
configMap
{{- else if .Values.config.secret -}}
secret
{{- else -}}
configMap
{{- end }}
{{- end }}

{{- define "cognito-import-exporter.configName" -}}
{{- .Values.config.existingSecret | default .Values.config.existingConfigMap | default (printf "%s-config" (include "cognito-import-exporter.fullname" .)) }}
{{- end }}

{{- define "cognito-import-exporter.webConfigEnabled" -}}
{{- if or .Values.webConfig.existingSecret .Values.webConfig.inline }}true{{ end }}
{{- end }}

{{- define "cognito-import-exporter.webConfigName" -}}
{{- .Values.webConfig.existingSecret | default (printf "%s-web-config" (include "cognito-import-exporter.fullname" .)) }}
{{- end }}

{{/*
How the kubelet probes the exporter. The exporter's basic auth covers every endpoint, health
included, and the kubelet's httpGet probes cannot read a header from a Secret: with basic auth
on, "auto" runs files/probe.py in the container, which reads the credentials from the mounted
Secret.
*/}}
{{- define "cognito-import-exporter.probeHandler" -}}
{{- if ne .Values.probes.handler "auto" -}}
{{ .Values.probes.handler }}
{{- else if .Values.webConfig.basicAuth.existingSecret -}}
exec
{{- else -}}
httpGet
{{- end }}
{{- end }}

{{- define "cognito-import-exporter.probeAction" -}}
{{- $handler := include "cognito-import-exporter.probeHandler" .root -}}
{{- if eq $handler "httpGet" }}
httpGet:
  path: {{ .path }}
  port: metrics
  scheme: {{ .root.Values.webConfig.scheme }}
{{- else if eq $handler "exec" }}
exec:
  command:
    - python3
    - -I
    - -S
    - -c
    - {{ regexReplaceAll "(?m)^#.*\n" (.root.Files.Get "files/probe.py") "" | quote }}
    - {{ printf "%s://127.0.0.1:%d%s" (lower .root.Values.webConfig.scheme) (int .root.Values.containerPort) .path | quote }}
    - /etc/cognito-import-exporter/probe-auth
{{- else }}
tcpSocket:
  port: metrics
{{- end }}
{{- end }}

{{/*
A Prometheus duration (values.schema.json's pattern) in milliseconds.
*/}}
{{- define "cognito-import-exporter.durationMs" -}}
{{- $parts := regexReplaceAll "^(?:([0-9]+)y)?(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?(?:([0-9]+)ms)?$" . "${1},${2},${3},${4},${5},${6},${7}" | splitList "," }}
{{- $unitsMs := list 31536000000 604800000 86400000 3600000 60000 1000 1 }}
{{- $total := 0 }}
{{- range $index, $part := $parts }}
{{- $total = add $total (mul (atoi $part) (index $unitsMs $index)) }}
{{- end }}
{{- $total }}
{{- end }}

{{/*
An endpoint's interval and scrapeTimeout. The Prometheus Operator refuses a whole
ServiceMonitor with a timeout longer than an interval: the timeout is the smaller of the two,
and left out when empty (Prometheus then takes the smaller of its own default and the interval).
The exporter reads the timeout Prometheus sends with each scrape.
*/}}
{{- define "cognito-import-exporter.endpointTiming" -}}
interval: {{ .interval }}
{{- with .scrapeTimeout }}
{{- if gt (include "cognito-import-exporter.durationMs" .| atoi) (include "cognito-import-exporter.durationMs" $.interval | atoi) }}
scrapeTimeout: {{ $.interval }}
{{- else }}
scrapeTimeout: {{ . }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Basic auth for the ServiceMonitor's endpoints, from the same Secret the probes read.
*/}}
{{- define "cognito-import-exporter.endpointAuth" -}}
scheme: {{ lower .Values.webConfig.scheme }}
{{- with .Values.serviceMonitor.tlsConfig }}
tlsConfig:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.webConfig.basicAuth.existingSecret }}
basicAuth:
  username:
    name: {{ . }}
    key: {{ $.Values.webConfig.basicAuth.usernameKey }}
  password:
    name: {{ . }}
    key: {{ $.Values.webConfig.basicAuth.passwordKey }}
{{- end }}
{{- end }}

{{/*
Fails when a /probe target names a pool the inline configuration neither lists nor could
discover or allow: the exporter would answer its every scrape with 404.
*/}}
{{- define "cognito-import-exporter.checkProbeTargets" -}}
{{- if not (or .Values.config.existingConfigMap .Values.config.existingSecret) }}
{{- $inline := .Values.config.inline | default dict }}
{{- $probe := $inline.probe | default dict }}
{{- if not (or $inline.discovery $probe.allow_unlisted) }}
{{- $known := list }}
{{- range $inline.pools }}{{ $known = append $known .id }}{{ end }}
{{- range .Values.serviceMonitor.targets }}
{{- if not (has .poolId $known) }}
{{- fail (printf "serviceMonitor.targets: %s is not among config.inline.pools (and the configuration has no discovery or probe.allow_unlisted), so /probe would answer 404" .poolId) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
