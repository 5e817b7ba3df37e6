{{/* Names, labels, images, the operator's environment, and checks that fail loudly. */}}

{{- define "tether.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tether.fullname" -}}
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

{{/* The operator's Deployment, Service, ServiceAccount and (Cluster)Roles. */}}
{{- define "tether.operatorName" -}}
{{- printf "%s-operator" (include "tether.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tether.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tether.operatorName" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tether.leaseName" -}}
{{- default (include "tether.operatorName" .) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "tether.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tether.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "tether.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "tether.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tether
{{- end }}

{{- define "tether.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "tether.sidecarImage" -}}
{{- printf "%s:%s" .Values.sidecarImage.repository (default .Chart.AppVersion .Values.sidecarImage.tag) }}
{{- end }}

{{/*
Every field of OperatorSettings (operator/tether_operator/settings.py), by name; a unit test
fails when this list and the model differ. "chart" marks those the chart sets from its own
values, so that the RBAC, probes and Service agree with what the operator does.
*/}}
{{- define "tether.settingNames" -}}
sidecar_image: chart
image_pull_policy: free
sidecar_cpu: free
sidecar_memory: free
sidecar_memory_limit: free
sidecar_memory_limit_evaluated: free
run_as_user: free
grace_seconds: free
sidecar_grace_seconds: free
status_poll_seconds: free
live_polls_per_second: free
resync_seconds: free
queue_poll_seconds: free
backoff_base_seconds: free
backoff_max_seconds: free
start_timeout_seconds: free
deletion_wait_seconds: free
workers: free
ops_port: chart
ops_host: free
leader_election: chart
lease_name: chart
lease_namespace: chart
lease_seconds: free
lease_deadline_seconds: free
lease_renew_seconds: free
sidecar_ops_port: free
sidecar_http_proxy: chart
sidecar_https_proxy: chart
sidecar_no_proxy: chart
evaluator_url: chart
context: chart
{{- end }}

{{/* operator.settings as env vars, after refusing unknown names and chart-managed ones. */}}
{{- define "tether.settingsEnv" -}}
{{- $known := include "tether.settingNames" . | fromYaml }}
{{- range $key, $value := .Values.operator.settings }}
{{- $name := $key | snakecase | lower }}
{{- if not (hasKey $known $name) }}
{{- fail (printf "operator.settings.%s: no such operator setting; known: %s" $key (keys $known | sortAlpha | join ", ")) }}
{{- end }}
{{- if eq (get $known $name) "chart" }}
{{- fail (printf "operator.settings.%s is set by the chart: use %s instead" $key (get (dict "sidecar_image" "sidecarImage" "ops_port" "opsPort" "leader_election" "leaderElection.enabled" "lease_name" "leaderElection.leaseName" "lease_namespace" "the release namespace (the Lease lives there)" "context" "no setting (in a cluster the operator logs in with its service account)" "sidecar_http_proxy" "sidecarProxy.httpProxy" "sidecar_https_proxy" "sidecarProxy.httpsProxy" "sidecar_no_proxy" "sidecarProxy.noProxy" "evaluator_url" "evaluator.url") $name)) }}
{{- end }}
- name: TETHER_OPERATOR_{{ $name | upper }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/* Combinations that cannot work, refused before anything is applied. */}}
{{- define "tether.validate" -}}
{{- with .Values.evaluator }}
{{- if and (gt (int .replicas) 1) (not .postgresURL) }}
{{- fail "evaluator.replicas > 1 needs evaluator.postgresURL: SQLite on one volume has one writer" }}
{{- end }}
{{- if and .postgresURL (not (and .postgresURL.name .postgresURL.key)) }}
{{- fail "evaluator.postgresURL names a Secret and its key: {name: ..., key: ...}" }}
{{- end }}
{{- if and .namespace $.Values.watchNamespaces (not (has .namespace $.Values.watchNamespaces)) }}
{{- fail (printf "evaluator.namespace %s is not in watchNamespaces: the evaluator's Role is made only there" .namespace) }}
{{- end }}
{{- end }}
{{- if and (gt (int .Values.replicas) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicas > 1 needs leaderElection.enabled: without it every replica reconciles every task" }}
{{- end }}
{{- if lt (int .Values.replicas) 1 }}
{{- fail "replicas must be at least 1" }}
{{- end }}
{{- if and .Values.podDisruptionBudget.enabled (gt (int .Values.replicas) 1) (ge (int .Values.podDisruptionBudget.minAvailable) (int .Values.replicas)) }}
{{- fail "podDisruptionBudget.minAvailable must be below replicas, or no node could ever be drained" }}
{{- end }}
{{- range .Values.watchNamespaces }}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" .) }}
{{- fail (printf "watchNamespaces: %q is not a namespace name (patterns are not supported: each gets a Role)" .) }}
{{- end }}
{{- end }}
{{- if ne (len .Values.watchNamespaces) (len (uniq .Values.watchNamespaces)) }}
{{- fail "watchNamespaces lists a namespace twice" }}
{{- end }}
{{- end }}

{{/* The evaluator (issue #10): its objects' name, selector, image, URL and namespace. */}}
{{- define "tether.evaluatorName" -}}
{{- printf "%s-evaluator" (include "tether.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tether.evaluatorSelectorLabels" -}}
app.kubernetes.io/name: {{ include "tether.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: evaluator
{{- end }}

{{- define "tether.evaluatorImage" -}}
{{- printf "%s:%s" .Values.evaluator.image.repository (default .Chart.AppVersion .Values.evaluator.image.tag) }}
{{- end }}

{{/* evaluator.url, else the chart's own evaluator Service when it runs one, else empty. */}}
{{- define "tether.evaluatorURL" -}}
{{- if .Values.evaluator.url }}
{{- .Values.evaluator.url }}
{{- else if .Values.evaluator.enabled }}
{{- printf "http://%s.%s.svc:%d" (include "tether.evaluatorName" .) .Release.Namespace (int .Values.evaluator.port) }}
{{- end }}
{{- end }}

{{- define "tether.evaluatorNamespace" -}}
{{- .Values.evaluator.namespace | default (first (.Values.watchNamespaces | default (list .Release.Namespace))) }}
{{- end }}

{{/* Settings the chart sets from its own values: evaluator.settings may not. */}}
{{- define "tether.evaluatorSettingsEnv" -}}
{{- $chart := dict "namespace" "evaluator.namespace" "database" "evaluator.postgresURL (or the PVC's SQLite)" "port" "evaluator.port" "host" "no value (it listens on every address of the pod)" "instance" "no value (the chart names replicas)" "secrets_dir" "evaluator.judgeSecrets (mounted there)" "config" "no value (in a cluster the configuration is the namespace's Rubrics, Judges and EvaluationPolicies)" }}
{{- range $key, $value := .Values.evaluator.settings }}
{{- $name := $key | snakecase | lower }}
{{- if hasKey $chart $name }}
{{- fail (printf "evaluator.settings.%s is set by the chart: use %s instead" $key (get $chart $name)) }}
{{- end }}
- name: TETHER_EVAL_{{ $name | upper }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}
