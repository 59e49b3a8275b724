{{/*
One Deployment for a component: dict "root" $ "component" "gateway"|"query"|"document".
*/}}
{{- define "aegis.deployment" -}}
{{- $root := .root }}
{{- $component := .component }}
{{- $key := include "aegis.valuesKey" $component }}
{{- $vals := get $root.Values $key }}
{{- $ctx := dict "root" $root "component" $component "vals" $vals "key" $key }}
{{- $isGateway := eq $component "gateway" }}
{{- /* queryPool.mode embedded: the gateway loads the query model (its mount, its startup
time and its resources are the query pool's). */}}
{{- $embedded := and $isGateway (eq (include "aegis.queryEmbedded" $root) "true") }}
{{- $mountModels := and (or (not $isGateway) $embedded) (eq $root.Values.models.source "volume") }}
{{- $startup := ternary $root.Values.queryPool.probes.startup $vals.probes.startup $embedded }}
{{- $gpu := eq (include "aegis.usesGpu" $ctx) "true" }}
{{- $healthService := include "aegis.healthService" $component }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "aegis.componentName" $ctx }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "aegis.componentLabels" $ctx | nindent 4 }}
  annotations:
    {{- include "aegis.checkovSkips" $root | nindent 4 }}
spec:
  {{- if not (or $vals.autoscaling.enabled (and $vals.keda $vals.keda.enabled)) }}
  replicas: {{ $vals.replicaCount }}
  {{- end }}
  revisionHistoryLimit: 5
  minReadySeconds: {{ $vals.minReadySeconds }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: {{ $vals.strategy.maxSurge }}
      maxUnavailable: {{ $vals.strategy.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "aegis.componentSelectorLabels" $ctx | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "aegis.componentSelectorLabels" $ctx | nindent 8 }}
        app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
        app.kubernetes.io/part-of: aegis-serve
        {{- with include "aegis.meshPodLabels" $ctx | trim }}
        {{- . | nindent 8 }}
        {{- end }}
        {{- with $vals.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/config: {{ include "aegis.configmap" $ctx | sha256sum }}
        {{- if $isGateway }}
        checksum/serving: {{ include "aegis.servingConfigmap" $root | sha256sum }}
        {{- end }}
        {{- with include "aegis.meshPodAnnotations" $ctx | trim }}
        {{- . | nindent 8 }}
        {{- end }}
        {{- with $vals.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "aegis.serviceAccountName" $root }}
      automountServiceAccountToken: false
      enableServiceLinks: false
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $vals.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      {{- if and (not $isGateway) $vals.runtimeClassName }}
      runtimeClassName: {{ $vals.runtimeClassName }}
      {{- end }}
      terminationGracePeriodSeconds: {{ include "aegis.terminationGrace" $ctx }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      {{- $nodeSelector := $vals.nodeSelector | default dict }}
      {{- $tolerations := $vals.tolerations | default list }}
      {{- if $gpu }}
      {{- $nodeSelector = merge (deepCopy $nodeSelector) ($vals.gpu.nodeSelector | default dict) }}
      {{- $tolerations = concat $tolerations ($vals.gpu.tolerations | default list) }}
      {{- end }}
      {{- with $nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $vals.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if $vals.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- toYaml $vals.topologySpreadConstraints | nindent 8 }}
      {{- else if $vals.topologySpread.enabled }}
      topologySpreadConstraints:
        {{- range $topologyKey := list "topology.kubernetes.io/zone" "kubernetes.io/hostname" }}
        - maxSkew: {{ $vals.topologySpread.maxSkew }}
          topologyKey: {{ $topologyKey }}
          whenUnsatisfiable: {{ $vals.topologySpread.whenUnsatisfiable }}
          labelSelector:
            matchLabels:
              {{- include "aegis.componentSelectorLabels" $ctx | nindent 14 }}
          matchLabelKeys:
            - pod-template-hash
        {{- end }}
      {{- end }}
      containers:
        - name: {{ ternary "gateway" "encoder" $isGateway }}
          image: {{ include "aegis.image" $ctx | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args:
            - {{ ternary "gateway" "encoder" $isGateway }}
          envFrom:
            - configMapRef:
                name: {{ include "aegis.componentName" $ctx }}-env
          env:
            - name: POD_NAME
              valueFrom:
                fieldRef:
                  fieldPath: metadata.name
            - name: POD_NAMESPACE
              valueFrom:
                fieldRef:
                  fieldPath: metadata.namespace
            - name: NODE_NAME
              valueFrom:
                fieldRef:
                  fieldPath: spec.nodeName
            {{- if $root.Values.otel.endpoint }}
            - name: OTEL_RESOURCE_ATTRIBUTES
              value: {{ printf "k8s.pod.name=$(POD_NAME),k8s.namespace.name=$(POD_NAMESPACE),k8s.node.name=$(NODE_NAME),k8s.deployment.name=%s%s" (include "aegis.componentName" $ctx) (ternary (printf ",%s" $root.Values.otel.resourceAttributes) "" (ne $root.Values.otel.resourceAttributes "")) | quote }}
            {{- end }}
            {{- with $vals.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          ports:
            - name: grpc
              containerPort: {{ $vals.port }}
              protocol: TCP
            {{- if $isGateway }}{{- if $vals.http.enabled }}
            - name: http
              containerPort: {{ $vals.http.port }}
              protocol: TCP
            {{- end }}{{- end }}
            {{- if $root.Values.metrics.enabled }}
            - name: metrics
              containerPort: {{ $root.Values.metrics.port }}
              protocol: TCP
            {{- end }}
          # Native gRPC probes against grpc.health.v1.Health on the serving port: startup and
          # readiness ask for the component's own service.
          startupProbe:
            grpc:
              port: {{ $vals.port }}
              service: {{ $healthService }}
            periodSeconds: {{ $startup.periodSeconds }}
            failureThreshold: {{ $startup.failureThreshold }}
            timeoutSeconds: {{ $startup.timeoutSeconds }}
          readinessProbe:
            grpc:
              port: {{ $vals.port }}
              service: {{ $healthService }}
            periodSeconds: {{ $vals.probes.readiness.periodSeconds }}
            failureThreshold: {{ $vals.probes.readiness.failureThreshold }}
            timeoutSeconds: {{ $vals.probes.readiness.timeoutSeconds }}
          {{- /* A liveness failure must not cut a drain short: widen its window past it. */}}
          {{- $drain := add $vals.preStopSleepSeconds $vals.shutdownGraceSeconds }}
          {{- $period := int $vals.probes.liveness.periodSeconds }}
          {{- $livenessFailures := max (int $vals.probes.liveness.failureThreshold) (add (div $drain $period) 2) }}
          livenessProbe:
            {{- if $isGateway }}
            # The gateway reports "" NOT_SERVING while both pools are down; restarting it
            # would not help (and CrashLoopBackOff would delay recovery), so liveness only
            # checks that the gRPC port accepts connections.
            tcpSocket:
              port: grpc
            {{- else }}
            # "": the encoder process itself (NOT_SERVING only while draining).
            grpc:
              port: {{ $vals.port }}
              service: ""
            {{- end }}
            periodSeconds: {{ $period }}
            failureThreshold: {{ $livenessFailures }}
            timeoutSeconds: {{ $vals.probes.liveness.timeoutSeconds }}
          lifecycle:
            # Keep serving while endpoints and resolvers drop this pod; SIGTERM follows and
            # the server drains for AEGIS_SHUTDOWN_GRACE_S.
            preStop:
              exec:
                command: ["sleep", "{{ $vals.preStopSleepSeconds }}"]
          resources:
            {{- $resources := deepCopy (ternary $root.Values.queryPool.resources $vals.resources $embedded) }}
            {{- if $gpu }}
            {{- $gpuQty := dict $vals.gpu.resourceName $vals.gpu.count }}
            {{- $_ := set $resources "limits" (merge (deepCopy $resources.limits) $gpuQty) }}
            {{- $_ := set $resources "requests" (merge (deepCopy $resources.requests) $gpuQty) }}
            {{- end }}
            {{- toYaml $resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.containerSecurityContext | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            - name: cache
              mountPath: /var/cache/aegis-serve
            {{- if $mountModels }}
            - name: models
              mountPath: {{ $root.Values.models.mountPath }}
              readOnly: true
            {{- end }}
            {{- if $isGateway }}
            - name: serving
              mountPath: /etc/aegis/serving
              readOnly: true
            {{- if $root.Values.tls.enabled }}
            - name: tls
              mountPath: /etc/aegis/tls
              readOnly: true
            {{- end }}
            {{- if $root.Values.auth.enabled }}
            - name: auth
              mountPath: /etc/aegis/auth
              readOnly: true
            {{- end }}
            {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: {{ $root.Values.scratch.tmpSizeLimit }}
        - name: cache
          emptyDir:
            sizeLimit: {{ $root.Values.scratch.cacheSizeLimit }}
        {{- if $mountModels }}
        - name: models
          {{- toYaml $root.Values.models.volume | nindent 10 }}
        {{- end }}
        {{- if $isGateway }}
        - name: serving
          configMap:
            name: {{ include "aegis.fullname" $root }}-serving
        {{- if $root.Values.tls.enabled }}
        - name: tls
          secret:
            secretName: {{ include "aegis.tlsSecretName" $root }}
            defaultMode: 0440
        {{- end }}
        {{- if $root.Values.auth.enabled }}
        - name: auth
          secret:
            secretName: {{ include "aegis.authSecretName" $root }}
            defaultMode: 0440
            items:
              - key: {{ $root.Values.auth.secretKey }}
                path: tokens
        {{- end }}
        {{- end }}
{{- end }}
