{{/*
Names are fixed, not derived from the release name: the controller's flags
name its Service, Secret and Lease, the RBAC Role names the same, and one
Gatehouse runs per cluster (its GatewayClass and ClusterRole are cluster-wide).
*/}}

{{/* Labels on every object: ours, then Helm's. */}}
{{- define "gatehouse.labels" -}}
app.kubernetes.io/name: gatehouse
app.kubernetes.io/part-of: gatehouse
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{/* What the Deployment, PodDisruptionBudget and Service select the controller pods by. */}}
{{- define "gatehouse.selectorLabels" -}}
app.kubernetes.io/name: gatehouse
app.kubernetes.io/component: controller
{{- end }}

{{/* The controller image: by digest when one is given, else by tag (default appVersion). */}}
{{- define "gatehouse.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end }}
