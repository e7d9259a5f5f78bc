/**
 * A TCP proxy in front of a backend, for network faults that are not process faults: in `blackhole`
 * mode every byte in either direction is held back (as when packets are dropped and TCP keeps
 * retransmitting) and new connections are accepted but get nothing; `pass` lets everything held
 * flow again, in order, as TCP would once the network heals. `refuse` stops listening and drops every
 * connection (what clients see of a dead backend host: connection refused), `listen` takes
 * connections again on the same port.
 */
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';

type Mode = 'pass' | 'blackhole';

interface Pair {
  client: Socket;
  upstream: Socket;
}

export class FaultProxy {
  private mode: Mode = 'pass';
  private readonly pairs = new Set<Pair>();

  private server: Server | undefined;
  private port_ = 0;

  private constructor(private readonly targetPort: number) {}

  get port(): number {
    return this.port_;
  }

  static async start(targetPort: number): Promise<FaultProxy> {
    const proxy = new FaultProxy(targetPort);
    await proxy.listen();
    return proxy;
  }

  /** Accepts connections (again: on the port it had). */
  async listen(): Promise<void> {
    const server = createServer((client) => this.accept(client, this.targetPort));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port_, '127.0.0.1', () => resolve());
    });
    this.port_ = (server.address() as AddressInfo).port;
    this.server = server;
  }

  /** Stops listening and resets every open connection. */
  async refuse(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const pair of this.pairs) {
      pair.client.resetAndDestroy();
      pair.upstream.destroy();
    }
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private accept(client: Socket, targetPort: number): void {
    const upstream = connect(targetPort, '127.0.0.1');
    const pair = { client, upstream };
    this.pairs.add(pair);
    const drop = () => {
      this.pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
    if (this.mode === 'blackhole') this.hold(pair);
  }

  private hold(pair: Pair): void {
    pair.client.pause();
    pair.upstream.pause();
    pair.client.unpipe(pair.upstream);
    pair.upstream.unpipe(pair.client);
  }

  /** Nothing gets through any more, on open connections or new ones. */
  blackhole(): void {
    this.mode = 'blackhole';
    for (const pair of this.pairs) this.hold(pair);
  }

  /** Traffic flows again; what was held is delivered. */
  heal(): void {
    this.mode = 'pass';
    for (const pair of this.pairs) {
      pair.client.pipe(pair.upstream);
      pair.upstream.pipe(pair.client);
    }
  }

  async close(): Promise<void> {
    await this.refuse();
  }
}
