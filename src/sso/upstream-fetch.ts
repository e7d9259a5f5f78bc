/**
 * A Fetch API function for openid-client that sends every request to an upstream identity provider
 * through the guarded outbound client (http/outbound.ts): the SSRF check on each resolved and
 * connected address, one deadline, a capped body, no redirects followed.
 */
import { outboundRequest, type OutboundCheckOptions } from '../http/outbound.js';

export interface UpstreamHttpOptions {
  allowHttp: boolean;
  allowPrivateNetworks: boolean;
  timeoutMs: number;
  lookup?: OutboundCheckOptions['lookup'];
}

type FetchOptions = { method: string; headers: Record<string, string>; body?: unknown; signal?: AbortSignal };

function bodyOf(body: unknown): string | Buffer | undefined {
  if (body === undefined || body === null) return undefined;
  if (typeof body === 'string') return body;
  if (body instanceof URLSearchParams) return body.toString();
  if (body instanceof Uint8Array) return Buffer.from(body);
  if (body instanceof ArrayBuffer) return Buffer.from(body);
  throw new TypeError('unsupported request body for an upstream identity provider');
}

export function upstreamFetch(options: UpstreamHttpOptions) {
  return async (url: string, init: FetchOptions): Promise<Response> => {
    const headers = Object.fromEntries(
      Object.entries(init.headers ?? {}).map(([k, v]) => [k.toLowerCase(), String(v)]),
    );
    const body = bodyOf(init.body);
    if (body !== undefined && init.body instanceof URLSearchParams && !headers['content-type']) {
      headers['content-type'] = 'application/x-www-form-urlencoded;charset=UTF-8';
    }
    const res = await outboundRequest(url, {
      method: init.method,
      headers,
      ...(body !== undefined ? { body } : {}),
      allowHttp: options.allowHttp,
      allowPrivateNetworks: options.allowPrivateNetworks,
      timeoutMs: options.timeoutMs,
      ...(options.lookup ? { lookup: options.lookup } : {}),
      ...(init.signal ? { signal: init.signal } : {}),
    });
    const out = new Headers();
    for (const [name, value] of Object.entries(res.headers)) {
      if (value === undefined) continue;
      for (const v of Array.isArray(value) ? value : [value]) out.append(name, v);
    }
    const nullBody = res.status === 204 || res.status === 304 || init.method === 'HEAD';
    return new Response(nullBody ? null : new Uint8Array(res.body), { status: res.status, headers: out });
  };
}
