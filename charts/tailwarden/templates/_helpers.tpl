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
Rules on namespaced resources: exactly the calls the operator makes (tests/tests/rbac.rs compares
them with the apiserver's audit log of a run through a pipeline's whole lifecycle).
- retailpipelines: the controller lists and watches them, and each reconcile reads its pipeline
  afresh (get): the cache can lag behind the operator's own status writes.
- retailpipelines/status: written with server-side apply (patch).
- retailpipelines/finalizers: update, so children may carry blockOwnerDeletion owner references
  when the OwnerReferencesPermissionEnforcement admission plugin is on (no request of its own).
- Deployments, StatefulSets, PodDisruptionBudgets: watched (list/watch), read before a topology
  switch (get), server-side applied (patch; create when the apply creates the object), and the
  other topology's ones deleted (delete).
- Services, ConfigMaps: watched and server-side applied; both topologies keep them, so the operator
  never deletes them (garbage collection does, through the owner reference). The ConfigMap is also
  read by name (get): while rollouts are frozen the operator keeps its live config.
- Pods: listed (by the pipeline's label selector) only while a workload is not available, so the
  Ready condition can name why (image pull, crash, unschedulable, ...); never read by name, watched
  or changed.
- events.k8s.io events: the kube-runtime Recorder creates an Event and patches it when it repeats.
- monitoring.coreos.com: the per-pipeline PrometheusRule and PodMonitor, server-side applied when
  those CRDs exist; never read or deleted (garbage collection does).
No secrets, no wildcards.
*/}}
{{- define "tailwarden.namespacedRules" -}}
- apiGroups: ["tailwarden.io"]
  resources: ["retailpipelines"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["tailwarden.io"]
  resources: ["retailpipelines/status"]
  verbs: ["patch"]
- apiGroups: ["tailwarden.io"]
  resources: ["retailpipelines/finalizers"]
  verbs: ["update"]
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["monitoring.coreos.com"]
  resources: ["prometheusrules", "podmonitors"]
  verbs: ["create", "patch"]
{{- end }}

{{/* Cluster-scoped and read-only: whether the two monitoring.coreos.com CRDs exist (a get of each, by name). */}}
{{- define "tailwarden.clusterRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  resourceNames: ["prometheusrules.monitoring.coreos.com", "podmonitors.monitoring.coreos.com"]
  verbs: ["get"]
{{- end }}
