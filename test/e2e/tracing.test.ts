/**
 * OpenTelemetry tracing in the real server process: with OTEL_EXPORTER_OTLP_ENDPOINT pointing at a
 * small OTLP/HTTP collector on loopback, requests become spans named after their route template,
 * and the spans still buffered are sent when the process stops. Health probes are not traced.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

import { tempDir } from '../helpers/backends.js';
import { startServerProcess } from '../helpers/processes.js';

interface Received {
  method: string;
  url: string;
  contentType: string;
  body: Buffer;
}

/** Accepts every OTLP export with 200 and keeps what it was sent. */
async function startCollector(): Promise<{ url: string; received: Received[]; close(): Promise<void> }> {
  const received: Received[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      received.push({
        method: req.method ?? '',
        url: req.url ?? '',
        contentType: req.headers['content-type'] ?? '',
        body: Buffer.concat(chunks),
      });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

interface ExportedSpan {
  name: string;
  attributes: { key: string; value: { stringValue?: string } }[];
}

interface ExportRequest {
  resourceSpans: {
    resource: { attributes: { key: string; value: { stringValue?: string } }[] };
    scopeSpans: { spans: ExportedSpan[] }[];
  }[];
}

describe('tracing with OTEL_EXPORTER_OTLP_ENDPOINT', () => {
  const dir = tempDir();
  let collector: Awaited<ReturnType<typeof startCollector>>;
  beforeAll(async () => {
    collector = await startCollector();
  });
  afterAll(async () => {
    await collector.close();
    dir.remove();
  });

  it('sends spans of served requests, named by route template, to <endpoint>/v1/traces when the process stops', async () => {
    const server = await startServerProcess({
      DATA_DIR: dir.path,
      OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
      OTEL_SERVICE_NAME: 'latchkey-under-test',
    });
    expect((await fetch(`${server.baseUrl}/.well-known/openid-configuration`)).status).toBe(200);
    expect((await fetch(`${server.baseUrl}/v2/users/usr_not_a_real_id`)).status).toBe(401);
    expect(await server.stop('SIGTERM')).toBe(0);

    const exports = collector.received.filter((r) => r.method === 'POST' && r.url === '/v1/traces');
    expect(exports.length).toBeGreaterThan(0);
    for (const e of exports) expect(e.body.length).toBeGreaterThan(0);
    expect(exports[0]!.contentType).toMatch(/^application\/json/);

    const batches = exports.map((e) => JSON.parse(e.body.toString('utf8')) as ExportRequest);
    const resources = batches.flatMap((b) => b.resourceSpans);
    const serviceNames = resources.map(
      (r) => r.resource.attributes.find((a) => a.key === 'service.name')?.value.stringValue,
    );
    expect(new Set(serviceNames)).toEqual(new Set(['latchkey-under-test']));
    const spans = resources.flatMap((r) => r.scopeSpans.flatMap((s) => s.spans));
    const names = spans.map((s) => s.name);
    expect(names).toEqual(
      expect.arrayContaining(['GET /.well-known/openid-configuration', 'GET /v2/users/:id']),
    );
    const route = spans
      .find((s) => s.name === 'GET /v2/users/:id')!
      .attributes.find((a) => a.key === 'http.route');
    expect(route?.value.stringValue).toBe('/v2/users/:id');
    // The readiness polls of the test helper were not traced.
    expect(names.some((n) => n.includes('/health'))).toBe(false);
    expect(server.output()).toContain('"msg":"tracing enabled"');
  });
});
