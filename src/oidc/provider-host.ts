/**
 * Holds the provider instance that serves requests and replaces it when the signing keys change.
 * oidc-provider fixes its key set at construction, so a rotation (made by any instance or the CLI,
 * through the shared store) is picked up by re-reading the keys every SIGNING_KEY_REFRESH_INTERVAL_S
 * and building a new instance; requests already running finish on the old one. Everything else a
 * provider holds lives in the shared stores, so nothing is lost in the swap.
 */
import compose from 'koa-compose';
import type { Context, Next } from 'koa';
import type Provider from 'oidc-provider';
import type { Logger } from 'pino';

import type { KeySet, SigningKeyService } from './keys/signing-keys.js';
import { isStoreOutage } from '../store/errors.js';

export class ProviderHost {
  private provider!: Provider;
  private handler!: (ctx: Context, next: Next) => Promise<void>;
  private fingerprint = '';
  private keySet: KeySet | undefined;
  private timer: NodeJS.Timeout | undefined;
  private refreshing: Promise<void> | undefined;

  constructor(
    private readonly keys: SigningKeyService,
    private readonly build: (keys: KeySet) => Provider,
    private readonly log: Logger,
  ) {}

  /** Loads the keys (creating them on first start) and builds the first provider. */
  async start(refreshIntervalS: number): Promise<void> {
    await this.keys.ensureKeys();
    await this.refresh();
    this.timer = setInterval(() => {
      // The keys in use stay loaded; during a store outage this is expected and the breaker logs it.
      this.refresh().catch((err: unknown) =>
        isStoreOutage(err)
          ? this.log.warn({ err }, 'could not refresh signing keys; keeping the loaded ones')
          : this.log.error({ err }, 'could not refresh signing keys'),
      );
    }, refreshIntervalS * 1000);
    this.timer.unref();
  }

  get current(): Provider {
    return this.provider;
  }

  /** Re-reads the keys and swaps in a new provider when they changed. */
  refresh(): Promise<void> {
    this.refreshing ??= (async () => {
      try {
        const keySet = await this.keys.load();
        if (keySet.fingerprint === this.fingerprint) return;
        const provider = this.build(keySet);
        this.provider = provider;
        this.keySet = keySet;
        this.handler = compose(provider.middleware) as never;
        if (this.fingerprint)
          this.log.info({ signing: keySet.signing }, 'signing keys changed; provider rebuilt');
        this.fingerprint = keySet.fingerprint;
      } finally {
        this.refreshing = undefined;
      }
    })();
    return this.refreshing;
  }

  /** The public keys currently published in JWKS (for verifying our own JWTs in process). */
  publicJwks(): Record<string, unknown>[] {
    return (this.keySet?.keys ?? []).map((k) => k.record.public_jwk);
  }

  /** Koa middleware running the current provider's own middleware stack. */
  middleware() {
    return (ctx: Context, next: Next) => this.handler(ctx, next);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
}
