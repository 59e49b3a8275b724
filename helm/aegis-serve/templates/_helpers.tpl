{{/*
Names, labels and shared pod pieces. A "component" is one of gateway, query, document;
its values live under .Values.gateway, .Values.queryPool and .Values.documentPool.
*/}}

{{- define "aegis.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "aegis.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "aegis.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Values key of a component. */}}
{{- define "aegis.valuesKey" -}}
{{- $keys := dict "gateway" "gateway" "query" "queryPool" "document" "documentPool" }}
{{- required (printf "unknown component %q" .) (get $keys .) }}
{{- end }}

{{/* Resource name of a component: <fullname>-<component>. */}}
{{- define "aegis.componentName" -}}
{{- printf "%s-%s" (include "aegis.fullname" .root) .component }}
{{- end }}

{{/* Headless Service of a pool. */}}
{{- define "aegis.headlessName" -}}
{{- printf "%s-%s-headless" (include "aegis.fullname" .root) .component }}
{{- end }}

{{- define "aegis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "aegis.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "aegis.labels" -}}
helm.sh/chart: {{ include "aegis.chart" . }}
{{ include "aegis.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: aegis-serve
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component: dict root component. */}}
{{- define "aegis.componentSelectorLabels" -}}
{{ include "aegis.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "aegis.componentLabels" -}}
{{ include "aegis.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "aegis.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "aegis.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* "true" when the query model runs inside the gateway (queryPool.mode: embedded). */}}
{{- define "aegis.queryEmbedded" -}}
{{- if eq (.Values.queryPool.mode | default "remote") "embedded" }}true{{ end }}
{{- end }}

{{/* Components with workloads of their own (Deployment, Service, HPA, PDB, NetworkPolicy),
space-separated: the query pool has none when it is embedded in the gateway. */}}
{{- define "aegis.components" -}}
{{- if include "aegis.queryEmbedded" . }}gateway document{{ else }}gateway query document{{ end }}
{{- end }}

{{/* The pools with workloads of their own, space-separated. */}}
{{- define "aegis.pools" -}}
{{- if include "aegis.queryEmbedded" . }}document{{ else }}query document{{ end }}
{{- end }}

{{/* Does this component run on a GPU? Only the document pool can. */}}
{{- define "aegis.usesGpu" -}}
{{- if and (eq .component "document") .root.Values.documentPool.gpu.enabled }}true{{ end }}
{{- end }}

{{/* Image reference: dict root component. */}}
{{- define "aegis.image" -}}
{{- $kind := ternary "cuda" "cpu" (eq (include "aegis.usesGpu" .) "true") }}
{{- $img := get .root.Values.image $kind }}
{{- if $img.digest }}
{{- printf "%s@%s" $img.repository $img.digest }}
{{- else }}
{{- printf "%s:%s" $img.repository (default (printf "%s-%s" .root.Chart.AppVersion $kind) $img.tag) }}
{{- end }}
{{- end }}

{{/* Device of an encoder pool: dict root component vals. */}}
{{- define "aegis.device" -}}
{{- $gpu := eq (include "aegis.usesGpu" .) "true" }}
{{- $device := default (ternary "cuda" "cpu" $gpu) .vals.device }}
{{- if and (eq $device "cuda") (not $gpu) }}
{{- fail (printf "%s: device cuda needs documentPool.gpu.enabled (only the document pool gets a GPU)" .component) }}
{{- end }}
{{- $device }}
{{- end }}

{{/* gRPC health service a component registers (besides ""). */}}
{{- define "aegis.healthService" -}}
{{- if eq . "gateway" }}aegis.embed.v1.EmbedService{{ else }}aegis.encoder.v1.EncoderService{{ end }}
{{- end }}

{{/* terminationGracePeriodSeconds: dict vals. Must outlast preStop + drain. */}}
{{- define "aegis.terminationGrace" -}}
{{- $drain := add .vals.preStopSleepSeconds .vals.shutdownGraceSeconds }}
{{- if .vals.terminationGracePeriodSeconds }}
{{- if le (int .vals.terminationGracePeriodSeconds) (int $drain) }}
{{- fail (printf "%s.terminationGracePeriodSeconds (%v) must exceed preStopSleepSeconds + shutdownGraceSeconds (%v)" .key .vals.terminationGracePeriodSeconds $drain) }}
{{- end }}
{{- .vals.terminationGracePeriodSeconds }}
{{- else }}
{{- add $drain 10 }}
{{- end }}
{{- end }}

{{/* Default gRPC target of a pool for the gateway: dict root component. */}}
{{- define "aegis.poolTarget" -}}
{{- $vals := get .root.Values (include "aegis.valuesKey" .component) }}
{{- printf "dns:///%s.%s.svc.%s:%v" (include "aegis.headlessName" .) .root.Release.Namespace .root.Values.clusterDomain $vals.port }}
{{- end }}

{{/* Name of the TLS Secret. */}}
{{- define "aegis.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "aegis.fullname" .)) .Values.tls.existingSecret }}
{{- end }}

{{- define "aegis.authSecretName" -}}
{{- default (printf "%s-auth" (include "aegis.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{/* Mesh pod labels: dict root. */}}
{{- define "aegis.meshPodLabels" -}}
{{- if .root.Values.mesh.istio.enabled }}
sidecar.istio.io/inject: "true"
{{- end }}
{{- end }}

{{/* Mesh pod annotations: dict root vals. */}}
{{- define "aegis.meshPodAnnotations" -}}
{{- $drain := add .vals.preStopSleepSeconds .vals.shutdownGraceSeconds }}
{{- if .root.Values.mesh.istio.enabled }}
proxy.istio.io/config: {{ dict "holdApplicationUntilProxyStarts" .root.Values.mesh.istio.holdApplicationUntilProxyStarts "terminationDrainDuration" (printf "%ds" (int $drain)) | toJson | quote }}
{{- if .root.Values.metrics.enabled }}
traffic.sidecar.istio.io/excludeInboundPorts: {{ .root.Values.metrics.port | quote }}
{{- end }}
{{- end }}
{{- if .root.Values.mesh.linkerd.enabled }}
linkerd.io/inject: enabled
config.linkerd.io/proxy-await: enabled
config.alpha.linkerd.io/proxy-wait-before-exit-seconds: {{ $drain | quote }}
{{- end }}
{{- end }}

{{/*
checkov skips, each with its reason (see README section "Policy scan" in docs/deploy.md).
CKV_K8S_43: the chart cannot know the digest; release pipelines set image.*.digest.
CKV_K8S_15: tags are immutable release tags (or digests); IfNotPresent avoids a registry
            round trip per pod start on GPU nodes and is configurable via image.pullPolicy.
*/}}
{{- define "aegis.checkovSkips" -}}
checkov.io/skip1: CKV_K8S_43=Digest pinning is set per release via image.cpu.digest / image.cuda.digest
checkov.io/skip2: CKV_K8S_15=Release tags are immutable (or pinned by digest); pullPolicy is configurable
{{- end }}
