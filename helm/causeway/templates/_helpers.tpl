{{/* The release's name for a component: <release>-<component>, at most 63 characters. */}}
{{- define "causeway.name" -}}
{{- printf "%s-%s" .root.Release.Name .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels every object carries. */}}
{{- define "causeway.labels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/part-of: causeway
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{/* The labels a Service and a PDB select a component's pods by. */}}
{{- define "causeway.selector" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{- define "causeway.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The registry URL the services use: the value, or the chart's own schema-registry Service. */}}
{{- define "causeway.registryUrl" -}}
{{- if .Values.registryUrl -}}
{{- .Values.registryUrl -}}
{{- else -}}
{{- printf "http://%s-schema-registry:%v" .Release.Name (index .Values.services "schema-registry").httpPort -}}
{{- end -}}
{{- end -}}

{{- define "causeway.context" -}}
{{- default .Values.domain .Values.context -}}
{{- end -}}

{{/* Environment read from Secrets (never inlined): librdkafka secret properties. */}}
{{- define "causeway.kafkaSecretEnv" -}}
{{- range .Values.kafka.secretProperties }}
- name: {{ printf "CAUSEWAY__KAFKA__PROPERTIES__%s" .property }}
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ .secretKey }}
{{- end }}
{{- end -}}
