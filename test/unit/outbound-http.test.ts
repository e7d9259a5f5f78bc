import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import {
  checkOutboundUrl,
  OutboundError,
  outboundRequest,
  type OutboundResolver,
} from '../../src/http/outbound.js';
import { classifyAddress } from '../../src/http/ssrf-guard.js';

// Every server here listens on the loopback interface and every request goes to it; nothing leaves
// the machine. Public addresses appear only in the pure address check and in resolver answers that
// are refused or never connected to.

interface TestServer {
  server: Server;
  port: number;
  connections: number;
  requests: IncomingMessage[];
  close(): Promise<void>;
}

async function listen(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
  host = '127.0.0.1',
  port = 0,
  server: Server = createServer(),
): Promise<TestServer> {
  const state: TestServer = {
    server,
    port: 0,
    connections: 0,
    requests: [],
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  server.on('connection', () => (state.connections += 1));
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    state.requests.push(req);
    handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(port, host, resolve));
  state.port = (server.address() as AddressInfo).port;
  return state;
}

async function failure(promise: Promise<unknown>): Promise<OutboundError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof OutboundError) return error;
    throw error;
  }
  throw new Error('expected the call to fail');
}

/** A resolver that answers from a script, one answer per call, and counts the calls. */
function scriptedResolver(...answers: string[][]): OutboundResolver & { calls: string[] } {
  const calls: string[] = [];
  const resolver = async (hostname: string) => {
    calls.push(hostname);
    const answer = answers[Math.min(calls.length - 1, answers.length - 1)]!;
    return answer.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
  };
  return Object.assign(resolver, { calls });
}

const local = { allowHttp: true, allowPrivateNetworks: true };

describe('outboundRequest against a loopback server', () => {
  let target: TestServer;

  beforeAll(async () => {
    target = await listen((req, res) => {
      if (req.url === '/echo') {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () =>
          res.end(JSON.stringify({ method: req.method, body: Buffer.concat(chunks).toString() })),
        );
        return;
      }
      res.setHeader('x-test', 'yes');
      res.end('hello');
    });
  });
  afterAll(() => target.close());

  it('returns status, headers, body, latency and the address connected to', async () => {
    const res = await outboundRequest(`http://127.0.0.1:${target.port}/hello?x=1`, local);
    expect(res.status).toBe(200);
    expect(res.headers['x-test']).toBe('yes');
    expect(res.body.toString()).toBe('hello');
    expect(res.address).toBe('127.0.0.1');
    expect(typeof res.latencyMs).toBe('number');
    expect(target.requests.at(-1)!.url).toBe('/hello?x=1');
  });

  it('sends a method, headers and a body', async () => {
    const res = await outboundRequest(`http://127.0.0.1:${target.port}/echo`, {
      ...local,
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-signature': 'abc' },
      body: '{"a":1}',
    });
    expect(JSON.parse(res.body.toString())).toEqual({ method: 'POST', body: '{"a":1}' });
    const seen = target.requests.at(-1)!;
    expect(seen.headers['x-signature']).toBe('abc');
    expect(seen.headers['content-length']).toBe('7');
  });

  it('keeps the hostname in the Host header while connecting to the resolved address', async () => {
    const lookup = scriptedResolver(['127.0.0.1']);
    const res = await outboundRequest(`http://hooks.example.test:${target.port}/hello`, { ...local, lookup });
    expect(res.status).toBe(200);
    expect(res.address).toBe('127.0.0.1');
    expect(target.requests.at(-1)!.headers.host).toBe(`hooks.example.test:${target.port}`);
    expect(lookup.calls).toEqual(['hooks.example.test']);
  });

  it('names a refused connection connection_failed', async () => {
    const closed = await listen(() => undefined);
    const port = closed.port;
    await closed.close();
    const error = await failure(outboundRequest(`http://127.0.0.1:${port}/`, local));
    expect(error.reason).toBe('connection_failed');
    expect(error.details.code).toBe('ECONNREFUSED');
  });
});

describe('deadlines', () => {
  let silent: TestServer;
  let stalling: TestServer;

  beforeAll(async () => {
    silent = await listen(() => undefined); // accepts, reads the request, never answers
    stalling = await listen((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('partial'); // headers and part of a body, then nothing
    });
  });
  afterAll(async () => {
    await silent.close();
    await stalling.close();
  });

  it('times out when no response comes', async () => {
    const error = await failure(
      outboundRequest(`http://127.0.0.1:${silent.port}/`, { ...local, timeoutMs: 200 }),
    );
    expect(error.reason).toBe('timeout');
    expect(silent.requests).toHaveLength(1);
  });

  it('times out when the body never ends (the deadline covers the body too)', async () => {
    const error = await failure(
      outboundRequest(`http://127.0.0.1:${stalling.port}/`, { ...local, timeoutMs: 200 }),
    );
    expect(error.reason).toBe('timeout');
  });

  it('times out when the resolver never answers', async () => {
    const lookup: OutboundResolver = () => new Promise(() => undefined);
    const error = await failure(
      outboundRequest(`http://hangs.example.test:${silent.port}/`, { ...local, timeoutMs: 200, lookup }),
    );
    expect(error.reason).toBe('timeout');
  });

  it("honours the caller's AbortSignal", async () => {
    const controller = new AbortController();
    const pending = outboundRequest(`http://127.0.0.1:${silent.port}/`, {
      ...local,
      signal: controller.signal,
    });
    setTimeout(() => controller.abort(), 50);
    const error = await failure(pending);
    expect(error.reason).toBe('aborted');
    const already = await failure(
      outboundRequest(`http://127.0.0.1:${silent.port}/`, { ...local, signal: AbortSignal.abort() }),
    );
    expect(already.reason).toBe('aborted');
  });
});

describe('response bodies are capped', () => {
  let big: TestServer;

  beforeAll(async () => {
    big = await listen((req, res) => {
      const body = Buffer.alloc(2048, 'x');
      if (req.url === '/chunked') {
        res.write(body.subarray(0, 1024));
        res.end(body.subarray(1024));
      } else {
        res.setHeader('content-length', body.length);
        res.end(body);
      }
    });
  });
  afterAll(() => big.close());

  it('refuses a body over the cap, declared or chunked', async () => {
    for (const path of ['/declared', '/chunked']) {
      const error = await failure(
        outboundRequest(`http://127.0.0.1:${big.port}${path}`, { ...local, maxBodyBytes: 1024 }),
      );
      expect(error.reason).toBe('body_too_large');
    }
  });

  it('accepts a body exactly at the cap', async () => {
    const res = await outboundRequest(`http://127.0.0.1:${big.port}/chunked`, {
      ...local,
      maxBodyBytes: 2048,
    });
    expect(res.body).toHaveLength(2048);
  });
});

describe('redirects', () => {
  let destination: TestServer;
  let redirector: TestServer;

  beforeAll(async () => {
    destination = await listen((_req, res) => res.end('you should not be here'));
    redirector = await listen((_req, res) => {
      res.writeHead(302, { location: `http://127.0.0.1:${destination.port}/` });
      res.end();
    });
  });
  afterAll(async () => {
    await destination.close();
    await redirector.close();
  });

  it('returns a 3xx to the caller and never follows it', async () => {
    const res = await outboundRequest(`http://127.0.0.1:${redirector.port}/`, local);
    expect(res.status).toBe(302);
    expect(res.headers.location).toBe(`http://127.0.0.1:${destination.port}/`);
    expect(destination.connections).toBe(0);
  });
});

describe('the SSRF guard', () => {
  let target: TestServer;

  beforeAll(async () => {
    target = await listen((_req, res) => res.end('reached'));
  });
  afterAll(() => target.close());

  const hosts = [
    '127.0.0.1',
    '10.0.0.1',
    '172.16.0.1',
    '192.168.1.1',
    '169.254.169.254',
    '100.64.0.1',
    '0.0.0.0',
    '[::1]',
    '[::ffff:127.0.0.1]',
    '[::ffff:7f00:1]',
    '[fe80::1]',
    '[fc00::1]',
    '[fd00:ec2::254]',
    '[64:ff9b::7f00:1]',
    '[2002:7f00:1::]',
    '2130706433',
    '0x7f.1',
    '0x7f000001',
    '0177.0.0.1',
    '127.1',
    'localhost',
  ];

  it.each(hosts)('refuses %s without allowPrivateNetworks, and nothing connects', async (host) => {
    const error = await failure(outboundRequest(`http://${host}:${target.port}/`, { allowHttp: true }));
    expect(error.reason).toBe('blocked_address');
    expect(error.details.blocked?.address).toBeTruthy();
    expect(error.message).toContain(error.details.blocked!.address);
    expect(error.message).toContain(error.details.blocked!.range);
    expect(target.connections).toBe(0);
  });

  it('names the range in the refusal', async () => {
    const metadata = await failure(checkOutboundUrl('https://169.254.169.254/latest/meta-data/'));
    expect(metadata.details.blocked).toEqual({
      address: '169.254.169.254',
      range: '169.254.169.254/32',
      label: 'cloud metadata service',
    });
    const decimal = await failure(checkOutboundUrl('https://2130706433/'));
    expect(decimal.details.blocked).toMatchObject({
      address: '127.0.0.1',
      range: '127.0.0.0/8',
      label: 'loopback',
    });
    const mapped = await failure(checkOutboundUrl('https://[::ffff:127.0.0.1]/'));
    expect(mapped.details.blocked).toMatchObject({
      address: '::ffff:7f00:1',
      label: 'loopback, IPv4-mapped',
    });
    expect(mapped.message).toMatch(/::ffff:0:0\/96.*127\.0\.0\.0\/8/);
  });

  it('checks every address a name resolves to', async () => {
    const lookup = scriptedResolver(['93.184.215.14', '127.0.0.1']);
    const error = await failure(
      outboundRequest(`http://mixed.example.test:${target.port}/`, { allowHttp: true, lookup }),
    );
    expect(error.reason).toBe('blocked_address');
    expect(error.details.blocked?.address).toBe('127.0.0.1');
    expect(error.message).toContain('mixed.example.test resolves to it');
    expect(target.connections).toBe(0);
  });

  it('requires https unless allowHttp, and never another scheme', async () => {
    for (const url of [`http://127.0.0.1:${target.port}/`, 'http://93.184.215.14/']) {
      expect((await failure(checkOutboundUrl(url, { allowPrivateNetworks: true }))).reason).toBe(
        'scheme_not_allowed',
      );
    }
    for (const url of ['ftp://93.184.215.14/', 'file:///etc/passwd', 'gopher://93.184.215.14/', 'data:,x']) {
      expect((await failure(checkOutboundUrl(url, { allowHttp: true }))).reason).toBe('scheme_not_allowed');
    }
    await expect(checkOutboundUrl('http://93.184.215.14/', { allowHttp: true })).resolves.toMatchObject({
      addresses: [{ address: '93.184.215.14', family: 4 }],
    });
    expect(target.connections).toBe(0);
  });

  it('refuses what is not a URL, and names DNS failures', async () => {
    for (const url of ['not a url', 'https://', 'https://exa mple.com/']) {
      expect((await failure(checkOutboundUrl(url))).reason).toBe('invalid_url');
    }
    const nxdomain: OutboundResolver = () =>
      Promise.reject(Object.assign(new Error('getaddrinfo ENOTFOUND'), { code: 'ENOTFOUND' }));
    const error = await failure(checkOutboundUrl('https://nowhere.example.test/', { lookup: nxdomain }));
    expect(error.reason).toBe('dns_failed');
    expect(error.details.code).toBe('ENOTFOUND');
    expect(
      (await failure(checkOutboundUrl('https://empty.example.test/', { lookup: scriptedResolver([]) })))
        .reason,
    ).toBe('dns_failed');
  });

  it('lets a public address through the check (without connecting anywhere)', async () => {
    const checked = await checkOutboundUrl('https://hooks.example.test/endpoint', {
      lookup: scriptedResolver(['93.184.215.14', '2606:2800:21f:cb07:6820:80da:af6b:8b2c']),
    });
    expect(checked.hostname).toBe('hooks.example.test');
    expect(checked.addresses.map((a) => a.address)).toEqual([
      '93.184.215.14',
      '2606:2800:21f:cb07:6820:80da:af6b:8b2c',
    ]);
  });

  it('allows private networks only when told to', async () => {
    await expect(checkOutboundUrl(`http://127.0.0.1:${target.port}/`, local)).resolves.toBeTruthy();
    expect(target.connections).toBe(0);
  });
});

describe('DNS rebinding', () => {
  let first: TestServer;
  let second: TestServer;

  beforeAll(async () => {
    first = await listen((_req, res) => res.end('checked address'));
    // Same port on another loopback address: where a second DNS answer would send the request.
    second = await listen((_req, res) => res.end('rebound address'), '127.0.0.2', first.port);
  });
  afterAll(async () => {
    await first.close();
    await second.close();
  });

  it('refuses when the first answer is blocked, and never asks again', async () => {
    const lookup = scriptedResolver(['127.0.0.1'], ['93.184.215.14']);
    const error = await failure(
      outboundRequest(`http://rebind.example.test:${first.port}/`, { allowHttp: true, lookup }),
    );
    expect(error.reason).toBe('blocked_address');
    expect(lookup.calls).toHaveLength(1);
    expect(first.connections + second.connections).toBe(0);
  });

  it('connects to the address it resolved and checked, never to a second answer', async () => {
    const lookup = scriptedResolver(['127.0.0.1'], ['127.0.0.2']);
    const res = await outboundRequest(`http://rebind.example.test:${first.port}/`, { ...local, lookup });
    expect(res.body.toString()).toBe('checked address');
    expect(res.address).toBe('127.0.0.1');
    expect(lookup.calls).toHaveLength(1);
    expect(second.connections).toBe(0);
  });
});

describe('https', () => {
  let dir: string;
  let cert: Buffer;
  let tlsTarget: TestServer;
  const serverNames: string[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'latchkey-outbound-'));
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=hooks.example.test',
        '-addext',
        'subjectAltName=DNS:hooks.example.test',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
      ],
      { stdio: 'ignore' },
    );
    cert = readFileSync(join(dir, 'cert.pem'));
    const key = readFileSync(join(dir, 'key.pem'));
    const server = createHttpsServer({ key, cert });
    server.on('secureConnection', (socket: { servername?: string | false }) =>
      serverNames.push(String(socket.servername)),
    );
    tlsTarget = await listen((_req, res) => res.end('secure'), '127.0.0.1', 0, server);
  });
  afterAll(async () => {
    await tlsTarget.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('verifies the certificate against the hostname and sends it as SNI', async () => {
    const lookup = scriptedResolver(['127.0.0.1']);
    const res = await outboundRequest(`https://hooks.example.test:${tlsTarget.port}/`, {
      allowPrivateNetworks: true,
      lookup,
      ca: cert,
    });
    expect(res.body.toString()).toBe('secure');
    expect(res.address).toBe('127.0.0.1');
    expect(serverNames.at(-1)).toBe('hooks.example.test');
  });

  it('fails with tls_failed for an untrusted certificate or another name', async () => {
    const untrusted = await failure(
      outboundRequest(`https://hooks.example.test:${tlsTarget.port}/`, {
        allowPrivateNetworks: true,
        lookup: scriptedResolver(['127.0.0.1']),
      }),
    );
    expect(untrusted.reason).toBe('tls_failed');
    const otherName = await failure(
      outboundRequest(`https://other.example.test:${tlsTarget.port}/`, {
        allowPrivateNetworks: true,
        lookup: scriptedResolver(['127.0.0.1']),
        ca: cert,
      }),
    );
    expect(otherName.reason).toBe('tls_failed');
    expect(otherName.details.code).toBe('ERR_TLS_CERT_ALTNAME_INVALID');
    // By IP the certificate (issued to the name) does not match either.
    const byIp = await failure(
      outboundRequest(`https://127.0.0.1:${tlsTarget.port}/`, { allowPrivateNetworks: true, ca: cert }),
    );
    expect(byIp.reason).toBe('tls_failed');
  });
});

describe('classifyAddress (the pure check)', () => {
  it.each([
    ['127.0.0.1', 'loopback'],
    ['127.255.255.254', 'loopback'],
    ['10.1.2.3', 'private network'],
    ['172.31.255.255', 'private network'],
    ['192.168.0.1', 'private network'],
    ['169.254.169.254', 'cloud metadata service'],
    ['169.254.1.1', 'link-local'],
    ['100.64.0.1', 'carrier-grade NAT (shared address space)'],
    ['100.100.100.200', 'carrier-grade NAT (shared address space)'],
    ['0.0.0.0', 'unspecified address'],
    ['0.1.2.3', '"this network"'],
    ['255.255.255.255', 'broadcast'],
    ['224.0.0.1', 'multicast'],
    ['240.0.0.1', 'reserved'],
    ['192.0.2.10', 'documentation (TEST-NET-1)'],
    ['198.51.100.10', 'documentation (TEST-NET-2)'],
    ['203.0.113.10', 'documentation (TEST-NET-3)'],
    ['198.18.0.1', 'benchmarking'],
    ['::', 'unspecified address'],
    ['::1', 'loopback'],
    ['fe80::1', 'link-local'],
    ['fe80::1%eth0', 'link-local'],
    ['fc00::1', 'unique-local'],
    ['fd12:3456::1', 'unique-local'],
    ['fd00:ec2::254', 'cloud metadata service'],
    ['ff02::1', 'multicast'],
    ['2001:db8::1', 'documentation'],
    ['::ffff:127.0.0.1', 'loopback, IPv4-mapped'],
    ['::ffff:7f00:1', 'loopback, IPv4-mapped'],
    ['::ffff:a9fe:a9fe', 'cloud metadata service, IPv4-mapped'],
    ['::7f00:1', 'loopback, IPv4-compatible'],
    ['64:ff9b::10.0.0.1', 'private network, NAT64'],
    ['64:ff9b::c0a8:101', 'private network, NAT64'],
    ['2002:7f00:1::', 'loopback, 6to4'],
    ['2002:c0a8:0101:1::1', 'private network, 6to4'],
    ['not-an-ip', 'not an IP address'],
  ])('refuses %s (%s)', (address, label) => {
    expect(classifyAddress(address)?.label).toBe(label);
  });

  it.each([
    '93.184.215.14',
    '8.8.8.8',
    '1.1.1.1',
    '172.32.0.1',
    '100.128.0.1',
    '2606:2800:21f:cb07:6820:80da:af6b:8b2c',
    '::ffff:93.184.215.14',
    '64:ff9b::5db8:d70e',
    '2002:5db8:d70e::1',
  ])('lets the public address %s through', (address) => {
    expect(classifyAddress(address)).toBeNull();
  });
});
