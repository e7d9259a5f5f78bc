/**
 * OpenTelemetry tracing, loaded by main.ts only when OTEL_EXPORTER_OTLP_ENDPOINT is set (so the
 * default start does not load the SDK): one span per incoming HTTP request (and per outgoing one,
 * such as a fetch of a client's jwks_uri), batched and sent over OTLP/HTTP to
 * <endpoint>/v1/traces. Health probes and metric scrapes are left out: they would drown the rest.
 */
import type { IncomingMessage } from 'node:http';
import { createRequire } from 'node:module';

import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';

export interface TracingOptions {
  /** The collector's base URL (the OTLP/HTTP convention appends /v1/traces). */
  endpoint: string;
  serviceName: string;
}

export interface Tracing {
  /** Sends the spans still buffered and stops tracing; call once the server has stopped. */
  shutdown(): Promise<void>;
}

const UNTRACED_PATHS = /^\/health(\/|$)|^\/metrics$/;

export function tracesUrl(endpoint: string): string {
  return `${endpoint.replace(/\/+$/, '')}/v1/traces`;
}

export function startTracing(options: TracingOptions): Tracing {
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: options.serviceName }),
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url: tracesUrl(options.endpoint) }))],
  });
  // Registers the provider globally with an AsyncLocalStorage context manager, so a span started for
  // a request stays current through every await of its handling.
  provider.register();

  const stopInstrumentations = registerInstrumentations({
    tracerProvider: provider,
    instrumentations: [
      new HttpInstrumentation({
        ignoreIncomingRequestHook: (request: IncomingMessage) =>
          UNTRACED_PATHS.test((request.url ?? '').split('?')[0]!),
      }),
    ],
  });
  // The instrumentation patches node:http (http.Server.prototype.emit, request, get) when the module
  // is next required; this application imports it as an ES module, which does not count. Requiring it
  // once here applies the patch, and since it is made on the shared prototype and module object it
  // covers servers created before or after this point.
  createRequire(import.meta.url)('node:http');

  let stopping: Promise<void> | undefined;
  return {
    shutdown: () =>
      (stopping ??= (async () => {
        stopInstrumentations();
        await provider.shutdown();
      })()),
  };
}
