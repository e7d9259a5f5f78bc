/**
 * The delivery thread (WEBHOOK_DELIVERY_THREAD=true): the part of a webhook attempt that costs the
 * event loop most, off it. The main thread still claims, builds each body, records every outcome and
 * decides what follows (retries, dead letters, disabling); this thread only signs (Standard Webhooks
 * through webhook-signing.ts, at the moment the request leaves, as inline) and sends through the
 * outbound client (SSRF guard, deadline, no redirects) on keep-alive pools of its own, at most
 * WEBHOOK_CONCURRENCY requests at once and WEBHOOK_ENDPOINT_CONCURRENCY per endpoint, oldest first.
 *
 * Messages in: `{ type: 'send', requests }`, `{ type: 'abort' }` (attempts in flight and waiting end
 * at once, as `aborted`), `{ type: 'close' }`. Out: `{ type: 'results', results }`, in batches.
 */
import { parentPort, workerData } from 'node:worker_threads';

import { createOutboundAgents, outboundRequest, OutboundError } from '../http/outbound.js';
import { signWebhook } from './webhook-signing.js';
import type { ThreadOptions, ThreadResult, ThreadSend } from './webhook-thread-client.js';

const options = workerData as ThreadOptions;
const port = parentPort!;
const agents = createOutboundAgents({ maxSocketsPerHost: options.endpointConcurrency });
const stopping = new AbortController();
const waiting: ThreadSend[] = [];
const active = new Map<string, number>();
let inFlight = 0;
let results: ThreadResult[] = [];
let flushScheduled = false;

function report(result: ThreadResult): void {
  results.push(result);
  if (flushScheduled) return;
  flushScheduled = true;
  // Results of one turn go back in one message.
  setImmediate(() => {
    flushScheduled = false;
    const batch = results;
    results = [];
    port.postMessage({ type: 'results', results: batch });
  });
}

/** Starts the oldest waiting requests whose endpoints have room, while there is room overall. */
function pump(): void {
  for (let i = 0; i < waiting.length && inFlight < options.concurrency;) {
    const request = waiting[i]!;
    const busy = active.get(request.endpointId) ?? 0;
    if (busy >= options.endpointConcurrency) {
      i += 1;
      continue;
    }
    waiting.splice(i, 1);
    active.set(request.endpointId, busy + 1);
    inFlight += 1;
    void send(request, stopping.signal).then((result) => {
      inFlight -= 1;
      const left = (active.get(request.endpointId) ?? 1) - 1;
      if (left > 0) active.set(request.endpointId, left);
      else active.delete(request.endpointId);
      report(result);
      pump();
    });
  }
}

async function send(request: ThreadSend, signal: AbortSignal): Promise<ThreadResult> {
  try {
    const headers = {
      ...signWebhook({
        msgId: request.msgId,
        timestamp: new Date(),
        body: request.body,
        secrets: request.secrets,
      }),
      ...request.headers,
    };
    const response = await outboundRequest(request.url, {
      method: 'POST',
      headers,
      body: request.body,
      timeoutMs: options.timeoutMs,
      allowHttp: options.allowHttp,
      allowPrivateNetworks: options.allowPrivateNetworks,
      maxBodyBytes: 64 * 1024,
      signal,
      agents,
    });
    const location = response.headers.location;
    return {
      id: request.id,
      status: response.status,
      latencyMs: response.latencyMs,
      ...(location ? { location: String(location) } : {}),
    };
  } catch (err) {
    if (err instanceof OutboundError) return { id: request.id, reason: err.reason, message: err.message };
    return { id: request.id, reason: 'connection_failed', message: String((err as Error)?.message ?? err) };
  }
}

port.on('message', (message: { type: 'send'; requests: ThreadSend[] } | { type: 'abort' | 'close' }) => {
  if (message.type === 'send') {
    for (const request of message.requests) {
      if (stopping.signal.aborted) report({ id: request.id, reason: 'aborted', message: 'delivery stopped' });
      else waiting.push(request);
    }
    pump();
  } else if (message.type === 'abort') {
    // For good: the thread is closed next, and a new one started should delivery start again.
    stopping.abort();
    // What was waiting ends as aborted too, without being sent.
    for (const request of waiting.splice(0))
      report({ id: request.id, reason: 'aborted', message: 'delivery stopped' });
  } else {
    agents.destroy();
    port.close();
  }
});
