/**
 * A request whose head (request line with its query string, and headers) is larger than Node's limit
 * never reaches the app; the server still answers it in the error envelope, 431
 * REQUEST_HEADERS_TOO_LARGE, as the OpenAPI document says for every operation, and keeps serving.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { maxHeaderSize } from 'node:http';
import { connect } from 'node:net';

import { startTestServer, type TestServer } from '../helpers/test-server.js';

/** Sends raw bytes and collects the whole answer until the server ends the connection. */
function raw(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    socket.on('error', reject);
    socket.end(request);
  });
}

describe('request heads beyond the limit', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server.close());

  it('answers an oversized query string 431 REQUEST_HEADERS_TOO_LARGE in the error envelope', async () => {
    const res = await fetch(`${server.url}/v2/users/search?q=${'a'.repeat(maxHeaderSize + 1)}`);
    expect(res.status).toBe(431);
    expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
    const requestId = res.headers.get('x-request-id');
    expect(requestId).toMatch(/^req_/);
    const body = (await res.json()) as { error: Record<string, unknown> };
    expect(body).toEqual({
      error: {
        code: 'REQUEST_HEADERS_TOO_LARGE',
        message: 'The request line and headers are too large (a long query string counts)',
        request_id: requestId,
        timestamp: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/),
      },
    });
    // The OpenAPI document says so for every operation.
    const doc = (await (await fetch(`${server.url}/v2/openapi.json`)).json()) as {
      paths: Record<string, Record<string, { responses: Record<string, { description: string }> }>>;
    };
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(item)) {
        expect({ at: `${method} ${path}`, d: op.responses['431']?.description }).toEqual({
          at: `${method} ${path}`,
          d: expect.stringContaining('REQUEST_HEADERS_TOO_LARGE'),
        });
      }
    }
  });

  it('answers oversized headers the same way, other malformed requests a bare 400, and keeps serving', async () => {
    const port = Number(new URL(server.url).port);
    const big = await raw(
      port,
      `GET /v2/users HTTP/1.1\r\nHost: x\r\nX-Filler: ${'b'.repeat(maxHeaderSize)}\r\n\r\n`,
    );
    expect(big).toMatch(/^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
    expect(big).toContain('"code":"REQUEST_HEADERS_TOO_LARGE"');
    const malformed = await raw(port, 'NOT A REQUEST\r\n\r\n');
    expect(malformed).toBe('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    expect((await fetch(`${server.url}/health/live`)).status).toBe(200);
  });
});
