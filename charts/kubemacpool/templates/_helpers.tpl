{{/*
Labels Helm adds to every object it creates, besides the ones config/default
sets (app.kubernetes.io/name: kubemacpool where the kustomize objects have
it). Selectors never use them: they are the same as config/default's, so
the Deployment and Service select the same pods however they were installed.
*/}}
{{- define "kubemacpool.helmLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kubemacpool.labels" -}}
app.kubernetes.io/name: kubemacpool
{{ include "kubemacpool.helmLabels" . }}
{{- end -}}

{{/* The flag value of a namespaces mode, refusing anything else. */}}
{{- define "kubemacpool.mode" -}}
{{- if not (has . (list "opt-in" "opt-out")) -}}
{{- fail (printf "namespaces.pods and namespaces.vms must be opt-in or opt-out, not %q" .) -}}
{{- end -}}
{{- . -}}
{{- end -}}

{{/* The first namespaceSelector term of a webhook: its mode's label rule. */}}
{{- define "kubemacpool.modeSelector" -}}
{{- if eq (include "kubemacpool.mode" .mode) "opt-in" -}}
- key: {{ .label }}
  operator: In
  values: ["allocate"]
{{- else -}}
- key: {{ .label }}
  operator: NotIn
  values: ["ignore"]
{{- end -}}
{{- end -}}

{{/* The certificate mode: kubemacpool's own CA, or cert-manager's files. */}}
{{- define "kubemacpool.certManager" -}}
{{- if eq .Values.certs.mode "cert-manager" -}}
true
{{- else if ne .Values.certs.mode "self" -}}
{{- fail (printf "certs.mode must be self or cert-manager, not %q" .Values.certs.mode) -}}
{{- end -}}
{{- end -}}

{{/*
kubemacpool needs a namespace of its own: its webhook never mutates the pods
and VMs of the namespace it runs in (so it can never block its own
recovery), which in default would be everybody's.
*/}}
{{- define "kubemacpool.ownNamespace" -}}
{{- if eq .Release.Namespace "default" -}}
{{- fail "install kubemacpool in a namespace of its own (helm install ... -n kubemacpool-system --create-namespace): its webhook never gives MACs in the namespace it runs in, and this one is default" -}}
{{- end -}}
{{- end -}}
