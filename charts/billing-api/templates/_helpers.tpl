{{/*
The chart name, or nameOverride.
*/}}
{{- define "billing-api.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The full name of the release's resources, cut to 63 characters (Service names are DNS labels).
A release name that already contains the chart name is used as is.
*/}}
{{- define "billing-api.fullname" -}}
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
{{- define "billing-api.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Selector labels: stable for the life of a release.
*/}}
{{- define "billing-api.selectorLabels" -}}
app.kubernetes.io/name: {{ include "billing-api.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
Labels on every resource.
*/}}
{{- define "billing-api.labels" -}}
helm.sh/chart: {{ include "billing-api.chart" . }}
{{ include "billing-api.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: billing-api
app.kubernetes.io/part-of: cluster-exporter
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
The ServiceAccount the pods run as.
*/}}
{{- define "billing-api.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "billing-api.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
The image reference: registry/repository:tag, or @digest when a digest is given.
*/}}
{{- define "billing-api.image" -}}
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
Name of the credentials Secret.
*/}}
{{- define "billing-api.secretName" -}}
{{- default (include "billing-api.fullname" .) .Values.secret.name -}}
{{- end -}}

{{/*
Refuse values that cannot work, with a message naming the values to change.
*/}}
{{- define "billing-api.validate" -}}
{{- if .Values.secret.create -}}
{{- if not .Values.secret.databaseUrl -}}
{{- fail "secret.create needs secret.databaseUrl (postgresql://user:password@host:5432/db)" -}}
{{- end -}}
{{- if not (hasPrefix "postgresql://" .Values.secret.databaseUrl) -}}
{{- fail "secret.databaseUrl must be a postgresql:// DSN (SQLite is for a single local process, not a Deployment)" -}}
{{- end -}}
{{- if not .Values.secret.clusterTokens -}}
{{- fail "secret.create needs secret.clusterTokens (cluster id -> token; no cluster could report without one)" -}}
{{- end -}}
{{- end -}}
{{- end -}}
