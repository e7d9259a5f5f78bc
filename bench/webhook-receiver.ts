/**
 * The receiver of the webhooks benchmark, in a process of its own so that its work never delays
 * the load generator's event loop: a bare TCP server that answers every HTTP/1.1 request with 200
 * at once (keep-alive, bodies read by Content-Length) and, while asked to, records each delivery's
 * lag (now minus the event's timestamp). Driven over IPC by bench/webhooks.ts.
 */
import { createServer, type AddressInfo } from 'node:net';

const state = { received: 0, connections: 0, measureLag: false, lags: [] as number[] };
const OK = Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n');

const server = createServer((socket) => {
  state.connections += 1;
  let buffered: Buffer = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    buffered = buffered.length ? Buffer.concat([buffered, chunk]) : chunk;
    for (;;) {
      const end = buffered.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buffered.subarray(0, end).toString('latin1');
      const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
      if (buffered.length < end + 4 + length) return;
      const body = buffered.subarray(end + 4, end + 4 + length);
      buffered = buffered.subarray(end + 4 + length);
      state.received += 1;
      if (state.measureLag) {
        const { timestamp } = JSON.parse(body.toString()) as { timestamp: string };
        state.lags.push(Date.now() - Date.parse(timestamp));
      }
      socket.write(OK);
    }
  });
  socket.on('error', () => socket.destroy());
});

server.listen(0, '127.0.0.1', () => {
  process.send!({ port: (server.address() as AddressInfo).port });
});

process.on('message', (message: { type: 'stats' | 'lag-on' | 'stop' }) => {
  if (message.type === 'lag-on') {
    state.measureLag = true;
    state.lags = [];
  } else if (message.type === 'stats') {
    process.send!({ received: state.received, connections: state.connections, lags: state.lags });
  } else if (message.type === 'stop') {
    server.close();
    process.exit(0);
  }
});
