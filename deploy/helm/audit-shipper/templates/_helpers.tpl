{{/* The release's name for its objects, at most 63 characters. */}}
{{- define "audit-shipper.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "audit-shipper.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "audit-shipper.selectorLabels" -}}
app.kubernetes.io/name: {{ include "audit-shipper.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "audit-shipper.labels" -}}
{{ include "audit-shipper.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "audit-shipper.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{- define "audit-shipper.priorityClassName" -}}
{{- if .Values.priorityClass.create -}}
{{ include "audit-shipper.fullname" . }}
{{- else -}}
{{ .Values.priorityClass.name }}
{{- end -}}
{{- end -}}

{{/* Where the credentials volume is mounted: beside the config, because a
mount point cannot be made inside a read-only configMap volume. */}}
{{- define "audit-shipper.secretsDir" -}}/var/run/secrets/audit-shipper{{- end -}}

{{/*
The credentials: one entry per Secret reference that is set, as
"sink/what" -> {name, key}. The projected volume mounts each as
<secretsDir>/<sink>/<what>, and the sink's *_file key points there.
*/}}
{{- define "audit-shipper.credentials" -}}
{{- $c := dict -}}
{{- with .Values.loki -}}
{{- if .enabled -}}
{{- if .basicAuth.passwordSecret.name }}{{ $_ := set $c (printf "%s/password" .name) .basicAuth.passwordSecret }}{{ end -}}
{{- if .bearerTokenSecret.name }}{{ $_ := set $c (printf "%s/token" .name) .bearerTokenSecret }}{{ end -}}
{{- if .tls.caSecret.name }}{{ $_ := set $c (printf "%s/ca.crt" .name) .tls.caSecret }}{{ end -}}
{{- end -}}
{{- end -}}
{{- with .Values.elasticsearch -}}
{{- if .enabled -}}
{{- if .passwordSecret.name }}{{ $_ := set $c (printf "%s/password" .name) .passwordSecret }}{{ end -}}
{{- if .apiKeySecret.name }}{{ $_ := set $c (printf "%s/api-key" .name) .apiKeySecret }}{{ end -}}
{{- if .tls.caSecret.name }}{{ $_ := set $c (printf "%s/ca.crt" .name) .tls.caSecret }}{{ end -}}
{{- end -}}
{{- end -}}
{{- toYaml $c -}}
{{- end -}}

{{/* The shipper's configuration file, built from the values. */}}
{{- define "audit-shipper.config" -}}
{{- $v := .Values -}}
{{- $secrets := include "audit-shipper.secretsDir" . -}}
{{- if and (not $v.loki.enabled) (not $v.elasticsearch.enabled) (not $v.stdout.enabled) -}}
{{- fail "no sink is enabled: set loki.enabled, elasticsearch.enabled or stdout.enabled" -}}
{{- end -}}
{{- if lt (int $v.terminationGracePeriodSeconds) (add (int $v.shutdownTimeoutSeconds) 10 | int) -}}
{{- fail (printf "terminationGracePeriodSeconds (%v) must be at least shutdownTimeoutSeconds + 10 (%v): the shipper saves its positions after the last flush, before the kubelet's SIGKILL" $v.terminationGracePeriodSeconds (add $v.shutdownTimeoutSeconds 10)) -}}
{{- end -}}
{{- $cfg := deepCopy $v.config -}}
{{- $source := get $cfg "source" | default dict -}}
{{- $_ := set $source "path" (printf "%s/%s" (trimSuffix "/" $v.audit.directory) $v.audit.file) -}}
{{- $_ := set $source "positions_file" (printf "%s/positions.json" (trimSuffix "/" $v.state.directory)) -}}
{{- $_ := set $cfg "source" $source -}}
{{- $_ := set $cfg "dead_letter" (dict "path" (printf "%s/dead-letter.ndjson" (trimSuffix "/" $v.state.directory))) -}}
{{- if $v.policy -}}
{{- $rules := get $cfg "rules" | default dict -}}
{{- $_ := set $rules "policy_file" "/etc/audit-shipper/policy.yaml" -}}
{{- $_ := set $cfg "rules" $rules -}}
{{- end -}}
{{- $sinks := list -}}
{{- with $v.loki -}}
{{- if .enabled -}}
{{- if not .url -}}{{- fail "loki.enabled is true but loki.url is empty: give the full push URL, such as http://loki-gateway.monitoring.svc.cluster.local/loki/api/v1/push" -}}{{- end -}}
{{- $s := deepCopy .extraConfig -}}
{{- $_ := set $s "name" .name -}}
{{- $_ := set $s "type" "loki" -}}
{{- $_ := set $s "url" .url -}}
{{- if .tenantId }}{{ $_ := set $s "tenant_id" .tenantId }}{{ end -}}
{{- if .basicAuth.username -}}
{{- if not .basicAuth.passwordSecret.name -}}{{- fail "loki.basicAuth.username is set without loki.basicAuth.passwordSecret.name: name the Secret (and key) holding the password" -}}{{- end -}}
{{- $_ := set $s "basic_auth" (dict "username" .basicAuth.username "password_file" (printf "%s/%s/password" $secrets .name)) -}}
{{- end -}}
{{- if .bearerTokenSecret.name }}{{ $_ := set $s "bearer_token_file" (printf "%s/%s/token" $secrets .name) }}{{ end -}}
{{- $tls := dict -}}
{{- if .tls.caSecret.name }}{{ $_ := set $tls "ca_file" (printf "%s/%s/ca.crt" $secrets .name) }}{{ end -}}
{{- if .tls.serverName }}{{ $_ := set $tls "server_name" .tls.serverName }}{{ end -}}
{{- if $tls }}{{ $_ := set $s "tls" $tls }}{{ end -}}
{{- if $v.cluster }}{{ $_ := set $s "cluster" $v.cluster }}{{ end -}}
{{- $sinks = append $sinks $s -}}
{{- end -}}
{{- end -}}
{{- with $v.elasticsearch -}}
{{- if .enabled -}}
{{- if not .addresses -}}{{- fail "elasticsearch.enabled is true but elasticsearch.addresses is empty: list the nodes, such as [\"https://elasticsearch-es-http.elastic-system.svc.cluster.local:9200\"]" -}}{{- end -}}
{{- $s := deepCopy .extraConfig -}}
{{- $_ := set $s "name" .name -}}
{{- $_ := set $s "type" "elasticsearch" -}}
{{- $_ := set $s "addresses" .addresses -}}
{{- if .username -}}
{{- if not .passwordSecret.name -}}{{- fail "elasticsearch.username is set without elasticsearch.passwordSecret.name: name the Secret (and key) holding the password" -}}{{- end -}}
{{- $_ := set $s "username" .username -}}
{{- $_ := set $s "password_file" (printf "%s/%s/password" $secrets .name) -}}
{{- end -}}
{{- if .apiKeySecret.name }}{{ $_ := set $s "api_key_file" (printf "%s/%s/api-key" $secrets .name) }}{{ end -}}
{{- $tls := dict -}}
{{- if .tls.caSecret.name }}{{ $_ := set $tls "ca_file" (printf "%s/%s/ca.crt" $secrets .name) }}{{ end -}}
{{- if .tls.serverName }}{{ $_ := set $tls "server_name" .tls.serverName }}{{ end -}}
{{- if $tls }}{{ $_ := set $s "tls" $tls }}{{ end -}}
{{- $target := dict -}}
{{- if .target.index }}{{ $_ := set $target "index" .target.index }}{{ else }}{{ $_ := set $target "data_stream" .target.dataStream }}{{ end -}}
{{- $_ := set $s "target" $target -}}
{{- if .installTemplate }}{{ $_ := set $s "install_template" true }}{{ end -}}
{{- if $v.cluster }}{{ $_ := set $s "cluster" $v.cluster }}{{ end -}}
{{- $sinks = append $sinks $s -}}
{{- end -}}
{{- end -}}
{{- if $v.stdout.enabled -}}
{{- $sinks = append $sinks (dict "name" $v.stdout.name "type" "file" "path" "-") -}}
{{- end -}}
{{- $_ := set $cfg "sinks" $sinks -}}
{{- $_ := set $cfg "metrics" (dict "listen" (printf ":%d" (int $v.metrics.port)) "pprof" $v.metrics.pprof) -}}
{{- $_ := set $cfg "shutdown" (dict "timeout" (printf "%ds" (int $v.shutdownTimeoutSeconds))) -}}
{{- toYaml $cfg -}}
{{- end -}}
