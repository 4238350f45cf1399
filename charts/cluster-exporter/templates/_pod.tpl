{{/*
The pod spec shared by the Deployment and the CronJob. `args` is passed in: ["run"] or ["run", "--once"].
*/}}
{{- define "cluster-exporter.podSpec" -}}
{{- $root := .root -}}
{{- with $root -}}
serviceAccountName: {{ include "cluster-exporter.serviceAccountName" . }}
automountServiceAccountToken: true
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
containers:
  - name: cluster-exporter
    image: {{ include "cluster-exporter.image" . | quote }}
    imagePullPolicy: {{ .Values.image.pullPolicy }}
    args:
      {{- toYaml $.args | nindent 6 }}
    env:
      - name: CONFIG_FILE
        value: /etc/cluster-exporter/config.toml
      - name: CLUSTER_ID
        value: {{ .Values.clusterId | quote }}
      - name: PROMETHEUS_URL
        value: {{ .Values.prometheus.url | quote }}
      {{- if .Values.prometheus.bearerTokenSecret.name }}
      - name: PROMETHEUS_BEARER_TOKEN_FILE
        value: /var/run/secrets/cluster-exporter/prometheus/token
      {{- end }}
      - name: CUSTOMER_LABEL
        value: {{ .Values.customerLabel | quote }}
      {{- with .Values.billingApi.url }}
      - name: BILLING_API_URL
        value: {{ . | quote }}
      {{- end }}
      {{- if include "cluster-exporter.billingTokenSecret" . }}
      - name: BILLING_API_TOKEN_FILE
        value: /var/run/secrets/cluster-exporter/billing-api/token
      {{- end }}
      {{- if eq .Values.mode "deployment" }}
      - name: DELIVERY_METRICS_PORT
        value: {{ .Values.server.port | quote }}
      {{- end }}
      # The Lease and the state ConfigMap live in the release namespace.
      - name: DELIVERY_NAMESPACE
        valueFrom:
          fieldRef:
            fieldPath: metadata.namespace
      - name: DELIVERY_LEADER_ELECTION
        value: {{ ternary "true" "false" (.Values.leaderElection.enabled) | quote }}
      {{- if .Values.leaderElection.enabled }}
      - name: DELIVERY_LEASE_NAME
        value: {{ include "cluster-exporter.leaseName" . | quote }}
      {{- end }}
      - name: DELIVERY_STATE_BACKEND
        value: {{ .Values.state.backend | quote }}
      {{- if eq .Values.state.backend "configmap" }}
      - name: DELIVERY_CONFIGMAP_NAME
        value: {{ include "cluster-exporter.stateConfigMapName" . | quote }}
      {{- else }}
      - name: DELIVERY_STATE_DIR
        value: /var/lib/cluster-exporter
      {{- end }}
      {{- with .Values.extraEnv }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    {{- if eq .Values.mode "deployment" }}
    ports:
      - name: http-metrics
        containerPort: {{ .Values.server.port }}
        protocol: TCP
    livenessProbe:
      httpGet:
        path: /healthz
        port: http-metrics
      {{- toYaml .Values.livenessProbe | nindent 6 }}
    readinessProbe:
      httpGet:
        path: /readyz
        port: http-metrics
      {{- toYaml .Values.readinessProbe | nindent 6 }}
    {{- end }}
    resources:
      {{- toYaml .Values.resources | nindent 6 }}
    securityContext:
      {{- toYaml .Values.securityContext | nindent 6 }}
    volumeMounts:
      - name: config
        mountPath: /etc/cluster-exporter
        readOnly: true
      - name: tmp
        mountPath: /tmp
      {{- if include "cluster-exporter.billingTokenSecret" . }}
      - name: billing-api-token
        mountPath: /var/run/secrets/cluster-exporter/billing-api
        readOnly: true
      {{- end }}
      {{- if .Values.prometheus.bearerTokenSecret.name }}
      - name: prometheus-token
        mountPath: /var/run/secrets/cluster-exporter/prometheus
        readOnly: true
      {{- end }}
      {{- if eq .Values.state.backend "directory" }}
      - name: state
        mountPath: /var/lib/cluster-exporter
      {{- end }}
      {{- with .Values.extraVolumeMounts }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
volumes:
  - name: config
    configMap:
      name: {{ include "cluster-exporter.fullname" . }}-config
  # The root filesystem is read-only; Python's tempfile needs a writable /tmp.
  - name: tmp
    emptyDir:
      sizeLimit: 16Mi
  {{- with include "cluster-exporter.billingTokenSecret" . }}
  - name: billing-api-token
    secret:
      secretName: {{ . }}
      defaultMode: 0440
      items:
        - key: {{ include "cluster-exporter.billingTokenKey" $root }}
          path: token
  {{- end }}
  {{- if .Values.prometheus.bearerTokenSecret.name }}
  - name: prometheus-token
    secret:
      secretName: {{ .Values.prometheus.bearerTokenSecret.name }}
      defaultMode: 0440
      items:
        - key: {{ .Values.prometheus.bearerTokenSecret.key }}
          path: token
  {{- end }}
  {{- if eq .Values.state.backend "directory" }}
  - name: state
    persistentVolumeClaim:
      claimName: {{ .Values.state.persistentVolumeClaim }}
  {{- end }}
  {{- with .Values.extraVolumes }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .Values.affinity }}
affinity:
  {{- toYaml .Values.affinity | nindent 2 }}
{{- else if and (eq .Values.mode "deployment") (gt (int .Values.replicaCount) 1) }}
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- include "cluster-exporter.selectorLabels" . | nindent 14 }}
{{- end }}
{{- with .Values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
{{- end -}}
