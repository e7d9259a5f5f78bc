/**
 * The one HTTP client for requests to URLs that administrators configure (webhook delivery, SAML
 * metadata, back-channel logout, upstream OIDC discovery).
 *
 * - Scheme: https, or http when `allowHttp`.
 * - SSRF guard: the host is resolved once and every address is checked (see ssrf-guard.ts) unless
 *   `allowPrivateNetworks`; the connection then goes to a checked address through a `lookup` hook
 *   that answers only those, so a second DNS answer (rebinding) is never consulted. The socket's
 *   remote address is checked again on connect. Host header and TLS servername stay the hostname,
 *   so certificates are verified against the name, not the IP.
 * - One deadline (`timeoutMs`, default 10 s) over DNS, connect, TLS, headers and body, plus the
 *   caller's `signal`. Bodies are capped (`maxBodyBytes`, default 1 MiB): more is an error.
 * - Redirects are not followed: a 3xx comes back as a response; the caller decides.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import {
  Agent as HttpAgent,
  request as httpRequest,
  type AgentOptions,
  type IncomingHttpHeaders,
  type IncomingMessage,
} from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { isIP, type LookupFunction, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { TLSSocket } from 'node:tls';

import { classifyAddress, type BlockedAddress } from './ssrf-guard.js';

export type OutboundErrorReason =
  | 'invalid_url'
  | 'scheme_not_allowed'
  | 'dns_failed'
  | 'blocked_address'
  | 'timeout'
  | 'aborted'
  | 'connection_failed'
  | 'tls_failed'
  | 'body_too_large';

/** Every failure of an outbound request; `reason` is stable, `message` is for administrators. */
export class OutboundError extends Error {
  override readonly name = 'OutboundError';
  constructor(
    readonly reason: OutboundErrorReason,
    message: string,
    readonly details: { blocked?: BlockedAddress; code?: string } = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Resolves a hostname to all its addresses; defaults to node's `dns.lookup` with `all: true`. */
export type OutboundResolver = (hostname: string) => Promise<readonly { address: string; family?: number }[]>;

export interface OutboundCheckOptions {
  /** Allow `http:` besides `https:` (callers pass `NODE_ENV !== 'production'` or a setting). */
  allowHttp?: boolean;
  /** Skip the address check (loopback, private networks, metadata services become reachable). */
  allowPrivateNetworks?: boolean;
  /** Total deadline in milliseconds; default 10 000. */
  timeoutMs?: number;
  /** Aborts the call (reason `aborted`). */
  signal?: AbortSignal;
  /** Injected resolver (tests, or a caching resolver); default node's dns.lookup. */
  lookup?: OutboundResolver;
}

export interface OutboundRequestOptions extends OutboundCheckOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** Largest response body accepted, in bytes; default 1 MiB. */
  maxBodyBytes?: number;
  /** Extra trust anchors for https (a private CA); the system store is used otherwise. */
  ca?: string | Buffer | readonly (string | Buffer)[];
  /** Keep-alive connection pools (createOutboundAgents); default a new connection per request. */
  agents?: OutboundAgents;
}

/**
 * Keep-alive pools for callers that send often to the same endpoints (webhook delivery). A pooled
 * connection is only reused for a request whose checked addresses are the same as those it was
 * opened for: the pool key includes them, so a host that now resolves elsewhere gets a new
 * connection, to an address checked for it.
 */
export interface OutboundAgents {
  http: HttpAgent;
  https: HttpsAgent;
  destroy(): void;
}

type PinnedOptions = { pinnedAddresses?: string };

class PinnedHttpAgent extends HttpAgent {
  override getName(options?: Parameters<HttpAgent['getName']>[0] & PinnedOptions): string {
    return `${super.getName(options)}|${options?.pinnedAddresses ?? ''}`;
  }
}

class PinnedHttpsAgent extends HttpsAgent {
  override getName(options?: Parameters<HttpsAgent['getName']>[0] & PinnedOptions): string {
    return `${super.getName(options)}|${options?.pinnedAddresses ?? ''}`;
  }
}

export function createOutboundAgents(options: {
  maxSocketsPerHost: number;
  idleMs?: number;
}): OutboundAgents {
  const settings: AgentOptions = {
    keepAlive: true,
    maxSockets: options.maxSocketsPerHost,
    maxFreeSockets: options.maxSocketsPerHost,
    // An idle pooled connection is closed after this long.
    timeout: options.idleMs ?? 30_000,
    scheduling: 'lifo',
  };
  const http = new PinnedHttpAgent(settings);
  const https = new PinnedHttpsAgent(settings);
  return {
    http,
    https,
    destroy() {
      http.destroy();
      https.destroy();
    },
  };
}

export interface OutboundResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  latencyMs: number;
  /** The IP address the connection went to. */
  address: string;
}

/** A URL that passed the check, with the addresses it may be connected to. */
export interface CheckedUrl {
  url: URL;
  /** The hostname without IPv6 brackets. */
  hostname: string;
  addresses: readonly { address: string; family: 4 | 6 }[];
}

export const DEFAULT_TIMEOUT_MS = 10_000;
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

const defaultResolver: OutboundResolver = (hostname) => dnsLookup(hostname, { all: true, order: 'verbatim' });

/**
 * Validates a URL the way a request would, without sending anything: parse, scheme, resolve and
 * check every address. For a clear 400 when an administrator saves a URL. Throws `OutboundError`.
 */
export async function checkOutboundUrl(
  url: string | URL,
  options: OutboundCheckOptions = {},
): Promise<CheckedUrl> {
  const deadline = deadlineSignal(options);
  try {
    return await resolveAndCheck(url, options, deadline.signal);
  } catch (error) {
    throw deadline.translate(error);
  } finally {
    deadline.dispose();
  }
}

/** Sends one request under the guard and returns the whole (capped) response. Throws `OutboundError`. */
export async function outboundRequest(
  url: string | URL,
  options: OutboundRequestOptions = {},
): Promise<OutboundResponse> {
  const started = performance.now();
  const deadline = deadlineSignal(options);
  try {
    const checked = await resolveAndCheck(url, options, deadline.signal);
    return await send(checked, options, deadline.signal, started);
  } catch (error) {
    throw deadline.translate(error);
  } finally {
    deadline.dispose();
  }
}

async function resolveAndCheck(
  input: string | URL,
  options: OutboundCheckOptions,
  signal: AbortSignal,
): Promise<CheckedUrl> {
  let url: URL;
  try {
    url = new URL(String(input));
  } catch (error) {
    throw new OutboundError('invalid_url', 'the URL cannot be parsed', {}, { cause: error });
  }
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && options.allowHttp)) {
    const allowed = options.allowHttp ? 'https or http' : 'https';
    throw new OutboundError('scheme_not_allowed', `the URL scheme must be ${allowed}, not ${url.protocol}`);
  }
  // The WHATWG parser has already normalized IPv4 spellings (2130706433, 0x7f.1, 127.1 → 127.0.0.1).
  const hostname = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if (hostname === '') throw new OutboundError('invalid_url', 'the URL has no host');

  let addresses: CheckedUrl['addresses'];
  const literal = isIP(hostname);
  if (literal !== 0) {
    addresses = [{ address: hostname, family: literal as 4 | 6 }];
  } else {
    addresses = await resolve(hostname, options.lookup ?? defaultResolver, signal);
  }
  if (!options.allowPrivateNetworks) {
    for (const { address } of addresses) {
      const blocked = classifyAddress(address);
      if (blocked) {
        const via = literal ? '' : ` (${hostname} resolves to it)`;
        throw new OutboundError(
          'blocked_address',
          `refused to connect to ${blocked.address}${via}: ${blocked.label}, ${blocked.range}`,
          { blocked },
        );
      }
    }
  }
  return { url, hostname, addresses };
}

async function resolve(
  hostname: string,
  resolver: OutboundResolver,
  signal: AbortSignal,
): Promise<CheckedUrl['addresses']> {
  signal.throwIfAborted();
  let answers: Awaited<ReturnType<OutboundResolver>>;
  try {
    // dns.lookup cannot be cancelled; the race keeps the deadline even when the resolver hangs.
    answers = await new Promise((resolvePromise, reject) => {
      const onAbort = (): void => reject(signal.reason as Error);
      signal.addEventListener('abort', onAbort, { once: true });
      resolver(hostname).then(
        (value) => {
          signal.removeEventListener('abort', onAbort);
          resolvePromise(value);
        },
        (error: unknown) => {
          signal.removeEventListener('abort', onAbort);
          reject(error as Error);
        },
      );
    });
  } catch (error) {
    if (signal.aborted) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    throw new OutboundError(
      'dns_failed',
      `cannot resolve ${hostname}${code ? ` (${code})` : ''}`,
      { code },
      {
        cause: error,
      },
    );
  }
  const addresses: { address: string; family: 4 | 6 }[] = [];
  for (const { address } of answers) {
    const family = isIP(address);
    // An answer that is not an address is refused as a whole rather than skipped.
    if (family === 0)
      throw new OutboundError('dns_failed', `${hostname} resolved to something not an address`);
    addresses.push({ address, family: family as 4 | 6 });
  }
  if (addresses.length === 0) throw new OutboundError('dns_failed', `${hostname} has no addresses`);
  return addresses;
}

/** A `lookup` for net/tls that answers only the checked addresses and never asks DNS again. */
function pinnedLookup(addresses: CheckedUrl['addresses']): LookupFunction {
  return (_hostname, options, callback) => {
    const wanted = options.family === 4 || options.family === 6 ? options.family : 0;
    const usable = wanted === 0 ? addresses : addresses.filter((a) => a.family === wanted);
    if (usable.length === 0) {
      const error: NodeJS.ErrnoException = new Error('no checked address of the requested family');
      error.code = 'ENOTFOUND';
      callback(error, '', 0);
      return;
    }
    if (options.all) {
      (callback as unknown as (e: null, a: { address: string; family: number }[]) => void)(null, [...usable]);
    } else {
      callback(null, usable[0]!.address, usable[0]!.family);
    }
  };
}

function send(
  checked: CheckedUrl,
  options: OutboundRequestOptions,
  signal: AbortSignal,
  started: number,
): Promise<OutboundResponse> {
  const { url, hostname, addresses } = checked;
  const https = url.protocol === 'https:';
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const allowed = new Set(addresses.map((a) => a.address.toLowerCase()));
  const headers: Record<string, string> = { ...options.headers };
  if (!Object.keys(headers).some((h) => h.toLowerCase() === 'host')) headers.host = url.host;
  if (options.body !== undefined) headers['content-length'] = String(Buffer.byteLength(options.body));

  return new Promise<OutboundResponse>((resolvePromise, reject) => {
    signal.throwIfAborted();
    let connectedTo = '';
    let tcpConnected = false;
    let tlsConnected = false;
    let settled = false;

    const fail = (error: OutboundError): void => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      req.destroy();
      reject(error);
    };
    const onAbort = (): void => fail(signal.reason as OutboundError);

    const requestOptions = {
      protocol: url.protocol,
      host: hostname,
      port: url.port === '' ? (https ? 443 : 80) : Number(url.port),
      path: `${url.pathname}${url.search}`,
      method: options.method ?? 'GET',
      headers,
      agent: options.agents ? (https ? options.agents.https : options.agents.http) : (false as const),
      pinnedAddresses: [...allowed].sort().join(','),
      lookup: pinnedLookup(addresses),
      ...(url.username || url.password
        ? { auth: `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}` }
        : {}),
      ...(https
        ? {
            // Certificates are checked against the name; an IP literal has no SNI.
            ...(isIP(hostname) === 0 ? { servername: hostname } : {}),
            ...(options.ca ? { ca: options.ca as string | Buffer | (string | Buffer)[] } : {}),
          }
        : {}),
    };
    const req = (https ? httpsRequest : httpRequest)(requestOptions, (res: IncomingMessage) => {
      // Synchronous callbacks: a cap error must be recorded before the socket is torn down.
      readBody(res, maxBodyBytes, (error, body) => {
        if (error) {
          fail(
            error instanceof OutboundError
              ? error
              : new OutboundError('connection_failed', `the response broke off: ${describe(error)}`, {
                  code: (error as NodeJS.ErrnoException).code,
                }),
          );
          return;
        }
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onAbort);
        resolvePromise({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: body!,
          latencyMs: Math.round((performance.now() - started) * 1000) / 1000,
          address: connectedTo,
        });
      });
    });

    req.on('socket', (socket: Socket) => {
      const connected = () => {
        tcpConnected = true;
        connectedTo = (socket.remoteAddress ?? '').toLowerCase();
        // Belt and braces: the pinned lookup (and the pool key) should make this impossible.
        if (!allowed.has(connectedTo)) {
          fail(
            new OutboundError('blocked_address', `connected to ${connectedTo}, which was not checked`, {
              blocked: { address: connectedTo, range: 'n/a', label: 'not among the checked addresses' },
            }),
          );
        }
      };
      if (!socket.connecting && socket.remoteAddress) {
        // A pooled connection, already open (and, for https, already verified).
        tlsConnected = https;
        connected();
        return;
      }
      socket.once('connect', connected);
      if (https) (socket as TLSSocket).once('secureConnect', () => (tlsConnected = true));
    });
    req.on('error', (error: NodeJS.ErrnoException) => {
      if (settled) return;
      const code = error.code;
      const tls = https && (isTlsCode(code) || (tcpConnected && !tlsConnected));
      fail(
        tls
          ? new OutboundError('tls_failed', `TLS with ${hostname} failed: ${describe(error)}`, { code })
          : new OutboundError('connection_failed', `cannot connect to ${hostname}: ${describe(error)}`, {
              code,
            }),
      );
    });
    signal.addEventListener('abort', onAbort, { once: true });
    req.end(options.body);
  });
}

function readBody(
  res: IncomingMessage,
  maxBodyBytes: number,
  done: (error: Error | null, body?: Buffer) => void,
): void {
  let finished = false;
  const finish = (error: Error | null, body?: Buffer): void => {
    if (finished) return;
    finished = true;
    done(error, body);
  };
  const tooLarge = (): void => {
    finish(new OutboundError('body_too_large', `the response body is larger than ${maxBodyBytes} bytes`));
    res.destroy();
  };
  const declared = Number(res.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBodyBytes) {
    tooLarge();
    return;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  res.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size > maxBodyBytes) tooLarge();
    else chunks.push(chunk);
  });
  res.on('end', () => finish(null, Buffer.concat(chunks, size)));
  res.on('error', (error) => finish(error));
  res.on('close', () => {
    if (!res.complete) finish(new Error('the connection closed before the body ended'));
  });
}

function isTlsCode(code: string | undefined): boolean {
  return (
    code !== undefined &&
    /^(ERR_TLS_|ERR_SSL_|CERT_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_|HOSTNAME_MISMATCH|EPROTO$)/.test(code)
  );
}

function describe(error: unknown): string {
  const e = error as NodeJS.ErrnoException;
  return e.code ? `${e.code}: ${e.message}` : String(e?.message ?? error);
}

/** One signal for the whole call (deadline + caller), and the translation of its aborts. */
function deadlineSignal(options: OutboundCheckOptions): {
  signal: AbortSignal;
  translate(error: unknown): unknown;
  dispose(): void;
} {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(new OutboundError('timeout', `no complete response within ${timeoutMs} ms`)),
    timeoutMs,
  );
  const caller = options.signal;
  const onCallerAbort = (): void =>
    controller.abort(new OutboundError('aborted', 'the request was aborted', {}, { cause: caller?.reason }));
  if (caller?.aborted) onCallerAbort();
  else caller?.addEventListener('abort', onCallerAbort, { once: true });
  return {
    signal: controller.signal,
    translate(error) {
      if (error instanceof OutboundError) return error;
      if (controller.signal.aborted) return controller.signal.reason;
      return error;
    },
    dispose() {
      clearTimeout(timer);
      caller?.removeEventListener('abort', onCallerAbort);
    },
  };
}
