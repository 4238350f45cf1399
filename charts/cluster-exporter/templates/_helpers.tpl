{{/*
The chart name, or nameOverride.
*/}}
{{- define "cluster-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The full name of the release's resources. Cut to 63 characters because some name fields (Service,
label values) are DNS labels. A release name that already contains the chart name is used as is.
*/}}
{{- define "cluster-exporter.fullname" -}}
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

{{/*
chart label value: name-version.
*/}}
{{- define "cluster-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Selector labels: stable for the life of a release (a Deployment's selector cannot change).
*/}}
{{- define "cluster-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cluster-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
Labels on every resource.
*/}}
{{- define "cluster-exporter.labels" -}}
helm.sh/chart: {{ include "cluster-exporter.chart" . }}
{{ include "cluster-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: exporter
app.kubernetes.io/part-of: cluster-exporter
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
The ServiceAccount the pods run as.
*/}}
{{- define "cluster-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "cluster-exporter.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
The image reference: registry/repository:tag, or @digest when a digest is given.
*/}}
{{- define "cluster-exporter.image" -}}
{{- $repo := .Values.image.repository -}}
{{- if .Values.image.registry -}}
{{- $repo = printf "%s/%s" .Values.image.registry .Values.image.repository -}}
{{- end -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" $repo $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}
{{- end -}}

{{/*
Name of the leader Lease.
*/}}
{{- define "cluster-exporter.leaseName" -}}
{{- default (printf "%s-leader" (include "cluster-exporter.fullname" .)) .Values.leaderElection.leaseName -}}
{{- end -}}

{{/*
Name of the state ConfigMap.
*/}}
{{- define "cluster-exporter.stateConfigMapName" -}}
{{- default (printf "%s-state" (include "cluster-exporter.fullname" .)) .Values.state.configMapName -}}
{{- end -}}

{{/*
Name of the Secret holding the billing API token, empty when there is none.
*/}}
{{- define "cluster-exporter.billingTokenSecret" -}}
{{- if .Values.billingApi.existingSecret -}}
{{- .Values.billingApi.existingSecret -}}
{{- else if .Values.billingApi.token -}}
{{- printf "%s-billing-api" (include "cluster-exporter.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/*
Key of the token in that Secret.
*/}}
{{- define "cluster-exporter.billingTokenKey" -}}
{{- if .Values.billingApi.existingSecret -}}{{ .Values.billingApi.existingSecretKey }}{{- else -}}token{{- end -}}
{{- end -}}

{{/*
The TOML config file: .Values.config with customMeters as [[metering.custom_meters]]. Helm reads every
YAML number as a float, so whole numbers are written back as TOML integers (4, not 4.0).
*/}}
{{- define "cluster-exporter.configToml" -}}
{{- $config := deepCopy .Values.config -}}
{{- if .Values.customMeters -}}
{{- $metering := default (dict) (get $config "metering") -}}
{{- $_ := set $metering "custom_meters" .Values.customMeters -}}
{{- $_ := set $config "metering" $metering -}}
{{- end -}}
{{- if $config -}}
{{- regexReplaceAll "(?m)^(\\s*[A-Za-z0-9_-]+ = -?[0-9]+)\\.0$" (toToml $config) "${1}" -}}
{{- end -}}
{{- end -}}

{{/*
Refuse combinations that cannot work, with a message naming the values to change.
*/}}
{{- define "cluster-exporter.validate" -}}
{{- if eq .Values.mode "cronjob" -}}
{{- if or .Values.serviceMonitor.enabled .Values.prometheusRule.enabled .Values.dashboards.enabled -}}
{{- fail "mode: cronjob has no long-running pod to scrape: set serviceMonitor.enabled, prometheusRule.enabled and dashboards.enabled to false, or use mode: deployment" -}}
{{- end -}}
{{- end -}}
{{- if and (eq .Values.mode "deployment") (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) -}}
{{- fail "replicaCount > 1 needs leaderElection.enabled: true (every replica would deliver every window)" -}}
{{- end -}}
{{- if and (eq .Values.state.backend "directory") (not .Values.state.persistentVolumeClaim) -}}
{{- fail "state.backend: directory needs state.persistentVolumeClaim (an existing claim; ReadWriteMany when replicaCount > 1)" -}}
{{- end -}}
{{- end -}}
