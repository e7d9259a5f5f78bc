{{/* Names ------------------------------------------------------------------------------------ */}}

{{- define "latchkey.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "latchkey.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "latchkey.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "latchkey.selectorLabels" -}}
app.kubernetes.io/name: {{ include "latchkey.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "latchkey.labels" -}}
helm.sh/chart: {{ include "latchkey.chart" . }}
{{ include "latchkey.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: latchkey
{{- end }}

{{- define "latchkey.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "latchkey.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "latchkey.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The Secret the pods read: the user's, or the one this chart makes. */}}
{{- define "latchkey.secretName" -}}
{{- default (include "latchkey.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* A value as the text of a setting. YAML numbers arrive as floats, which would print 1209600 as
     1.2096e+06; whole numbers print as integers. */}}
{{- define "latchkey.text" -}}
{{- if and (kindIs "float64" .) (eq . (float64 (int64 .))) }}
{{- int64 . }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}

{{/* Settings ---------------------------------------------------------------------------------- */}}

{{/* Secret settings: the chart value each comes from, and whether production needs it. */}}
{{- define "latchkey.secretSettings" -}}
MONGODB_URI: {value: mongodbUri, required: true}
REDIS_URL: {value: redisUrl, required: true}
COOKIE_KEYS: {value: cookieKeys, required: true}
KEY_ENCRYPTION_SECRET: {value: keyEncryptionSecret, required: true}
BOOTSTRAP_ADMIN_CLIENT_SECRET: {value: bootstrapAdminClientSecret, required: false}
BOOTSTRAP_ADMIN_PASSWORD: {value: bootstrapAdminPassword, required: false}
METRICS_TOKEN: {value: metricsToken, required: false}
{{- end }}

{{/* Settings the chart sets itself; `config` may not override them. */}}
{{- define "latchkey.managedSettings" -}}
{{- list "NODE_ENV" "HOST" "PORT" "DATA_DIR" "ISSUER" "TRUST_PROXY" "PROXY_HOPS" "ALLOW_HTTP_ISSUER" "BOOTSTRAP_ADMIN_CLIENT_ID" "BOOTSTRAP_ADMIN_EMAIL" | toJson }}
{{- end }}

{{/* The keys of the Secret that are passed to the server, as a JSON list. */}}
{{- define "latchkey.secretKeys" -}}
{{- $keys := list }}
{{- $settings := include "latchkey.secretSettings" . | fromYaml }}
{{- if .Values.secrets.existingSecret }}
{{- range $name := keys $settings | sortAlpha }}
{{- if (get $settings $name).required }}{{ $keys = append $keys $name }}{{ end }}
{{- end }}
{{- range .Values.secrets.existingSecretExtraKeys }}
{{- if not (hasKey $settings .) }}
{{- fail (printf "secrets.existingSecretExtraKeys: %s is not a secret setting (one of %s)" . (keys $settings | sortAlpha | join ", ")) }}
{{- end }}
{{- $keys = append $keys . }}
{{- end }}
{{- else }}
{{- range $name := keys $settings | sortAlpha }}
{{- if get $.Values.secrets (get $settings $name).value }}{{ $keys = append $keys $name }}{{ end }}
{{- end }}
{{- end }}
{{- $keys | uniq | sortAlpha | toJson }}
{{- end }}

{{/* The data of the chart-made Secret; fails when a required secret is missing or too short. */}}
{{- define "latchkey.secretData" -}}
{{- include "latchkey.validate" . }}
{{- $s := .Values.secrets }}
{{- $settings := include "latchkey.secretSettings" . | fromYaml }}
{{- $hint := "(or set secrets.existingSecret)" }}
{{- $_ := required (printf "secrets.mongodbUri is required: the MongoDB URI %s" $hint) $s.mongodbUri }}
{{- $_ := required (printf "secrets.redisUrl is required: the Redis URL %s" $hint) $s.redisUrl }}
{{- $_ := required (printf "secrets.cookieKeys is required: comma-separated secrets of at least 32 characters %s" $hint) $s.cookieKeys }}
{{- $_ := required (printf "secrets.keyEncryptionSecret is required: a secret of at least 32 characters %s" $hint) $s.keyEncryptionSecret }}
{{- if not (regexMatch "^mongodb(\\+srv)?://" $s.mongodbUri) }}
{{- fail "secrets.mongodbUri must start with mongodb:// or mongodb+srv://" }}
{{- end }}
{{- if not (regexMatch "^rediss?://" $s.redisUrl) }}
{{- fail "secrets.redisUrl must start with redis:// or rediss://" }}
{{- end }}
{{- range $key := splitList "," $s.cookieKeys }}
{{- if lt (len (trim $key)) 32 }}
{{- fail "secrets.cookieKeys: each comma-separated key must be at least 32 characters" }}
{{- end }}
{{- end }}
{{- if lt (len $s.keyEncryptionSecret) 32 }}
{{- fail "secrets.keyEncryptionSecret must be at least 32 characters" }}
{{- end }}
{{- if and $s.bootstrapAdminClientSecret (lt (len $s.bootstrapAdminClientSecret) 32) }}
{{- fail "secrets.bootstrapAdminClientSecret must be at least 32 characters in production" }}
{{- end }}
{{- if and $s.bootstrapAdminPassword (lt (len $s.bootstrapAdminPassword) 12) }}
{{- fail "secrets.bootstrapAdminPassword must be at least 12 characters" }}
{{- end }}
{{- range $name := keys $settings | sortAlpha }}
{{- $value := get $s (get $settings $name).value }}
{{- if $value }}
{{ $name }}: {{ $value | b64enc | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* Non-secret settings for the ConfigMap, after checking what production refuses. */}}
{{- define "latchkey.configData" -}}
{{- include "latchkey.validate" . }}
{{- $managed := include "latchkey.managedSettings" . | fromJsonArray }}
{{- $secretSettings := include "latchkey.secretSettings" . | fromYaml }}
{{- range $name, $value := .Values.config }}
{{- if or (hasKey $secretSettings $name) (hasSuffix "_FILE" $name) }}
{{- fail (printf "config.%s is a secret: set it under secrets (or in secrets.existingSecret)" $name) }}
{{- end }}
{{- if has $name $managed }}
{{- fail (printf "config.%s is set by the chart; use the chart value for it (see values.yaml)" $name) }}
{{- end }}
{{- if not (regexMatch "^[A-Z][A-Z0-9_]*$" $name) }}
{{- fail (printf "config.%s: setting names are upper-case, as in config/defaults.env" $name) }}
{{- end }}
{{- end }}
NODE_ENV: "production"
HOST: "0.0.0.0"
PORT: {{ include "latchkey.text" .Values.containerPort | quote }}
DATA_DIR: "/var/lib/latchkey"
ISSUER: {{ .Values.issuer | quote }}
TRUST_PROXY: {{ .Values.trustProxy | toString | quote }}
PROXY_HOPS: {{ include "latchkey.text" .Values.proxyHops | quote }}
ALLOW_HTTP_ISSUER: {{ .Values.allowHttpIssuer | toString | quote }}
{{- with .Values.bootstrapAdmin.clientId }}
BOOTSTRAP_ADMIN_CLIENT_ID: {{ . | quote }}
{{- end }}
{{- with .Values.bootstrapAdmin.email }}
BOOTSTRAP_ADMIN_EMAIL: {{ . | quote }}
{{- end }}
{{- range $name, $value := .Values.config }}
{{ $name }}: {{ include "latchkey.text" $value | quote }}
{{- end }}
{{- end }}

{{/* What the server would refuse in production (src/config/production-safety.ts), refused earlier. */}}
{{- define "latchkey.validate" -}}
{{- $issuer := required "issuer is required: the public https URL of the server, such as https://id.example.com" .Values.issuer }}
{{- if not (regexMatch "^https?://[^/?#]+(/[^?#]*)?$" $issuer) }}
{{- fail (printf "issuer %s must be an absolute URL without query or fragment" $issuer) }}
{{- end }}
{{- if not (hasPrefix "https://" $issuer) }}
{{- if not .Values.allowHttpIssuer }}
{{- fail (printf "issuer must be an https:// URL in production (got %s); behind a TLS-terminating proxy set allowHttpIssuer and trustProxy" $issuer) }}
{{- else if not .Values.trustProxy }}
{{- fail "allowHttpIssuer needs trustProxy, so the proxy-reported https scheme is used" }}
{{- end }}
{{- end }}
{{- $extra := .Values.secrets.existingSecretExtraKeys | default list }}
{{- $external := .Values.secrets.existingSecret }}
{{- $hasClientSecret := or .Values.secrets.bootstrapAdminClientSecret (and $external (has "BOOTSTRAP_ADMIN_CLIENT_SECRET" $extra)) }}
{{- $hasPassword := or .Values.secrets.bootstrapAdminPassword (and $external (has "BOOTSTRAP_ADMIN_PASSWORD" $extra)) }}
{{- if ne (not .Values.bootstrapAdmin.clientId) (not $hasClientSecret) }}
{{- fail "set both bootstrapAdmin.clientId and the BOOTSTRAP_ADMIN_CLIENT_SECRET secret, or neither" }}
{{- end }}
{{- if ne (not .Values.bootstrapAdmin.email) (not $hasPassword) }}
{{- fail "set both bootstrapAdmin.email and the BOOTSTRAP_ADMIN_PASSWORD secret, or neither" }}
{{- end }}
{{- $drainMs := .Values.config.SHUTDOWN_DRAIN_MS | default 5000 | int }}
{{- $timeoutMs := .Values.config.SHUTDOWN_TIMEOUT_MS | default 10000 | int }}
{{- if le (mul (int .Values.terminationGracePeriodSeconds) 1000) (add $drainMs $timeoutMs) }}
{{- fail (printf "terminationGracePeriodSeconds (%v s) must exceed SHUTDOWN_DRAIN_MS + SHUTDOWN_TIMEOUT_MS (%d ms), or pods are killed mid-shutdown" .Values.terminationGracePeriodSeconds (add $drainMs $timeoutMs)) }}
{{- end }}
{{- end }}

{{/* Pod parts shared by the Deployment and the migration Job ---------------------------------- */}}

{{/* Env pointing each secret setting at its file. */}}
{{- define "latchkey.secretEnv" -}}
{{- $mount := .Values.secrets.mountPath }}
{{- range include "latchkey.secretKeys" . | fromJsonArray }}
- name: {{ . }}_FILE
  value: {{ printf "%s/%s" $mount . | quote }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Volumes: the secret files, /tmp and DATA_DIR. Call with (dict "root" $ "secretName" NAME). */}}
{{- define "latchkey.volumes" -}}
{{- $root := .root }}
- name: secrets
  secret:
    secretName: {{ .secretName }}
    defaultMode: 0440
    items:
      {{- range include "latchkey.secretKeys" $root | fromJsonArray }}
      - key: {{ . }}
        path: {{ . }}
      {{- end }}
- name: tmp
  emptyDir:
    sizeLimit: {{ $root.Values.tmpVolume.sizeLimit }}
- name: data
  emptyDir:
    sizeLimit: {{ $root.Values.dataVolume.sizeLimit }}
{{- end }}

{{- define "latchkey.volumeMounts" -}}
- name: secrets
  mountPath: {{ .Values.secrets.mountPath }}
  readOnly: true
- name: tmp
  mountPath: /tmp
- name: data
  mountPath: /var/lib/latchkey
{{- end }}

{{- define "latchkey.migrationName" -}}
{{- printf "%s-migrate" (include "latchkey.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
