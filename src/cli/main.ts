/**
 * `npm run cli -- <command>`: operator commands that print JSON. Each opens the configured stores
 * (same settings as the server), does one thing and closes them.
 */
import '../runtime/thread-pool.js';

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import pino from 'pino';

import { buildApp, createServices, type BuiltApp } from '../app.js';
import { ConfigError, loadConfig, type Config } from '../config/load-config.js';
import { MAX_RESOURCE_TOKEN_TTL_S } from '../oidc/resource-servers.js';
import { ClientMetadataError, CLIENT_KINDS, type ClientKind } from '../services/clients.js';
import { createStores } from '../store/create-stores.js';
import { StoreConflictError } from '../store/errors.js';
import type { ClientRecord, Stores, User } from '../store/ports.js';

interface CliContext {
  config: Config;
  stores: Stores;
  /** The full application (provider, services), built on first use. */
  app(): Promise<BuiltApp>;
}

type Command = (ctx: CliContext, args: string[]) => Promise<unknown>;

const USAGE = `usage: npm run cli -- <command>

  migrate                      create or update schema and indexes, and the first signing keys
  users create --email E --first-name F --last-name L [--role R] [--password P | --password-stdin]
  users list [--limit N]
  users get <id-or-email>
  clients create --kind web|spa|native|service|device --name NAME [--redirect-uri URI]...
                 [--post-logout-redirect-uri URI]... [--scope "a b"] [--first-party] [--id ID]
  clients list [--limit N]
  clients rotate-secret <client-id>
  resources create --identifier URI --name NAME [--scope S]... [--format jwt|opaque] [--ttl SECONDS]
  resources list
  keys list
  keys rotate [--delay SECONDS]   publish new signing keys, signing after the delay
                                  (default SIGNING_KEY_ACTIVATION_DELAY_S; 0 signs at once)
`;

class UsageError extends Error {}

function print(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

function publicUser(user: User): Omit<User, 'password_hash'> {
  const { password_hash: _omit, ...rest } = user;
  return rest;
}

function publicClient(client: ClientRecord) {
  const { client_secret_hash, ...rest } = client;
  return { ...rest, has_secret: client_secret_hash !== null };
}

const commands: Record<string, Command> = {
  async migrate({ config, stores }) {
    await stores.durable.migrate();
    const { signingKeys } = createServices(config, stores, pino({ level: 'silent' }));
    const created = await signingKeys.ensureKeys();
    return {
      migrated: true,
      durable_store: stores.durable.kind,
      signing_keys_created: created.map((k) => k.kid),
    };
  },

  async 'users create'(ctx, args) {
    const { values } = parseArgs({
      args,
      options: {
        email: { type: 'string' },
        'first-name': { type: 'string' },
        'last-name': { type: 'string' },
        role: { type: 'string' },
        password: { type: 'string' },
        'password-stdin': { type: 'boolean' },
      },
    });
    if (!values.email || !values['first-name'] || !values['last-name']) {
      throw new UsageError('users create needs --email, --first-name and --last-name');
    }
    const password = values['password-stdin']
      ? readFileSync(0, 'utf8').replace(/\r?\n$/, '')
      : values.password;
    const { passwords } = (await ctx.app()).services;
    const user = await ctx.stores.durable.users.create({
      email: values.email,
      first_name: values['first-name'],
      last_name: values['last-name'],
      role: values.role,
      password_hash: password ? await passwords.hash(password) : null,
    });
    return publicUser(user);
  },

  async 'users list'({ stores }, args) {
    const { values } = parseArgs({ args, options: { limit: { type: 'string', default: '25' } } });
    const users = await stores.durable.users.list({ limit: Math.min(Number(values.limit) || 25, 1000) });
    return users.map(publicUser);
  },

  async 'users get'({ stores }, args) {
    const key = args[0];
    if (!key) throw new UsageError('users get needs an id or an email');
    const user = key.includes('@')
      ? await stores.durable.users.findByEmail(key)
      : await stores.durable.users.findById(key);
    if (!user) throw new UsageError(`no user ${key}`);
    return publicUser(user);
  },

  async 'clients create'(ctx, args) {
    const { values } = parseArgs({
      args,
      options: {
        kind: { type: 'string' },
        name: { type: 'string' },
        id: { type: 'string' },
        'redirect-uri': { type: 'string', multiple: true },
        'post-logout-redirect-uri': { type: 'string', multiple: true },
        scope: { type: 'string' },
        'first-party': { type: 'boolean' },
      },
    });
    if (!values.kind || !(CLIENT_KINDS as readonly string[]).includes(values.kind) || !values.name) {
      throw new UsageError(`clients create needs --kind (${CLIENT_KINDS.join(', ')}) and --name`);
    }
    const { clientService } = (await ctx.app()).services;
    const created = await clientService.create({
      ...(values.id ? { client_id: values.id } : {}),
      kind: values.kind as ClientKind,
      first_party: values['first-party'] ?? false,
      metadata: {
        client_name: values.name,
        ...(values['redirect-uri'] ? { redirect_uris: values['redirect-uri'] } : {}),
        ...(values['post-logout-redirect-uri']
          ? { post_logout_redirect_uris: values['post-logout-redirect-uri'] }
          : {}),
        ...(values.scope ? { scope: values.scope } : {}),
      },
    });
    return {
      ...publicClient(created.client),
      ...(created.client_secret ? { client_secret: created.client_secret } : {}),
    };
  },

  async 'clients list'({ stores }, args) {
    const { values } = parseArgs({ args, options: { limit: { type: 'string', default: '100' } } });
    return (await stores.durable.clients.list({ limit: Math.min(Number(values.limit) || 100, 1000) })).map(
      publicClient,
    );
  },

  async 'clients rotate-secret'(ctx, args) {
    if (!args[0]) throw new UsageError('clients rotate-secret needs a client id');
    const rotated = await (await ctx.app()).services.clientService.rotateSecret(args[0]);
    if (!rotated) throw new UsageError(`no confidential client ${args[0]}`);
    return { ...publicClient(rotated.client), client_secret: rotated.client_secret };
  },

  async 'resources create'({ stores }, args) {
    const { values } = parseArgs({
      args,
      options: {
        identifier: { type: 'string' },
        name: { type: 'string' },
        scope: { type: 'string', multiple: true },
        format: { type: 'string', default: 'jwt' },
        ttl: { type: 'string', default: '3600' },
      },
    });
    if (!values.identifier || !URL.canParse(values.identifier) || !values.name) {
      throw new UsageError('resources create needs --identifier (an absolute URI) and --name');
    }
    if (values.format !== 'jwt' && values.format !== 'opaque')
      throw new UsageError('--format is jwt or opaque');
    const ttl = Number(values.ttl);
    if (!Number.isInteger(ttl) || ttl < 60 || ttl > MAX_RESOURCE_TOKEN_TTL_S) {
      throw new UsageError(`--ttl takes whole seconds from 60 to ${MAX_RESOURCE_TOKEN_TTL_S}`);
    }
    return stores.durable.resourceServers.create({
      identifier: values.identifier,
      name: values.name,
      scopes: (values.scope ?? []).flatMap((s) => s.split(/\s+/)).filter(Boolean),
      access_token_format: values.format,
      access_token_ttl: ttl,
    });
  },

  async 'resources list'({ stores }) {
    return stores.durable.resourceServers.list();
  },

  async 'keys list'({ config, stores }) {
    const { signingKeys } = createServices(config, stores, pino({ level: 'silent' }));
    return (await signingKeys.describe()).map((k) => ({
      kid: k.record.kid,
      alg: k.record.alg,
      status: k.status,
      created_at: k.record.created_at,
      activates_at: k.record.activates_at,
      retired_at: k.retiredAt,
      expires_at: k.expiresAt,
    }));
  },

  async 'keys rotate'({ config, stores }, args) {
    const { values } = parseArgs({ args, options: { delay: { type: 'string' } } });
    if (values.delay !== undefined && !/^\d+$/.test(values.delay))
      throw new UsageError('--delay takes whole seconds');
    const { signingKeys } = createServices(config, stores, pino({ level: 'silent' }));
    await signingKeys.ensureKeys();
    const created = await signingKeys.rotate(values.delay === undefined ? undefined : Number(values.delay));
    return created.map((k) => ({ kid: k.kid, alg: k.alg, status: k.status, activates_at: k.activates_at }));
  },
};

async function main(argv: string[]): Promise<number> {
  const name = [argv[0], argv[1]].filter(Boolean).join(' ');
  const command = commands[name] ?? commands[argv[0] ?? ''];
  const rest = commands[name] ? argv.slice(2) : argv.slice(1);
  if (!command) {
    process.stderr.write(USAGE);
    return 2;
  }
  const config = loadConfig();
  const stores = await createStores(config);
  let built: BuiltApp | undefined;
  const ctx: CliContext = {
    config,
    stores,
    app: async () =>
      (built ??= await buildApp({ config, stores, logger: pino({ level: 'error' }, pino.destination(2)) })),
  };
  try {
    print(await command(ctx, rest));
    return 0;
  } finally {
    built?.close();
    await stores.close();
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    if (
      err instanceof ConfigError ||
      err instanceof UsageError ||
      err instanceof ClientMetadataError ||
      err instanceof StoreConflictError
    ) {
      process.stderr.write(`latchkey: ${err.message}\n`);
      process.exit(err instanceof UsageError ? 2 : 1);
    }
    process.stderr.write(`latchkey: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
