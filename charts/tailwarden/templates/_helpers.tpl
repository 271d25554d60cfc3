{{/* The chart name, truncated to a DNS label. */}}
{{- define "tailwarden.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The fully qualified name of the release's objects. */}}
{{- define "tailwarden.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "tailwarden.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tailwarden.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "tailwarden.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "tailwarden.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "tailwarden.serviceAccountName" -}}
{{- include "tailwarden.fullname" . }}
{{- end }}

{{/*
Rules on namespaced resources: exactly what the operator calls.
- retailpipelines: the controller lists and watches them; get/patch for reads and metadata.
- retailpipelines/status: written with server-side apply (patch).
- retailpipelines/finalizers: update, so children may carry blockOwnerDeletion owner references
  when the OwnerReferencesPermissionEnforcement admission plugin is on.
- children: observed (get/list/watch), server-side applied (create/patch), pruned (delete).
- events.k8s.io events: the kube-runtime Recorder creates an Event and patches it when it repeats.
- monitoring.coreos.com: per-pipeline PrometheusRule and PodMonitor when those CRDs exist.
No secrets, no pods, no wildcards.
*/}}
{{- define "tailwarden.namespacedRules" -}}
- apiGroups: ["tailwarden.io"]
  resources: ["retailpipelines"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["tailwarden.io"]
  resources: ["retailpipelines/status"]
  verbs: ["get", "patch"]
- apiGroups: ["tailwarden.io"]
  resources: ["retailpipelines/finalizers"]
  verbs: ["update"]
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services", "configmaps"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["monitoring.coreos.com"]
  resources: ["prometheusrules", "podmonitors"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
{{- end }}

{{/* Cluster-scoped and read-only: detecting whether the monitoring.coreos.com CRDs exist. */}}
{{- define "tailwarden.clusterRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
{{- end }}
