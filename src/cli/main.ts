/**
 * `npm run cli -- <command>`: operator commands that print JSON. Each opens the configured stores
 * (same settings as the server), does one thing and closes them.
 */
import { parseArgs } from 'node:util';

import { ConfigError, loadConfig } from '../config/load-config.js';
import { createStores } from '../store/create-stores.js';
import type { Stores } from '../store/ports.js';

type Command = (stores: Stores, args: string[]) => Promise<unknown>;

const USAGE = `usage: npm run cli -- <command>

  migrate                                  create or update schema and indexes
  users create --email E --first-name F --last-name L [--role R]
  users list [--limit N]
  users get <id-or-email>
`;

function print(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

function publicUser<T extends { password_hash?: unknown }>(user: T): Omit<T, 'password_hash'> {
  const { password_hash: _omit, ...rest } = user;
  return rest;
}

const commands: Record<string, Command> = {
  async migrate(stores) {
    await stores.durable.migrate();
    return { migrated: true, durable_store: stores.durable.kind };
  },

  async 'users create'(stores, args) {
    const { values } = parseArgs({
      args,
      options: {
        email: { type: 'string' },
        'first-name': { type: 'string' },
        'last-name': { type: 'string' },
        role: { type: 'string' },
      },
    });
    if (!values.email || !values['first-name'] || !values['last-name']) {
      throw new UsageError('users create needs --email, --first-name and --last-name');
    }
    const user = await stores.durable.users.create({
      email: values.email,
      first_name: values['first-name'],
      last_name: values['last-name'],
      role: values.role,
    });
    return publicUser(user);
  },

  async 'users list'(stores, args) {
    const { values } = parseArgs({ args, options: { limit: { type: 'string', default: '25' } } });
    const users = await stores.durable.users.list({ limit: Math.min(Number(values.limit) || 25, 1000) });
    return users.map(publicUser);
  },

  async 'users get'(stores, args) {
    const key = args[0];
    if (!key) throw new UsageError('users get needs an id or an email');
    const user = key.includes('@')
      ? await stores.durable.users.findByEmail(key)
      : await stores.durable.users.findById(key);
    if (!user) throw new UsageError(`no user ${key}`);
    return publicUser(user);
  },
};

class UsageError extends Error {}

async function main(argv: string[]): Promise<number> {
  const name = [argv[0], argv[1]].filter(Boolean).join(' ');
  const command = commands[name] ?? commands[argv[0] ?? ''];
  const rest = commands[name] ? argv.slice(2) : argv.slice(1);
  if (!command) {
    process.stderr.write(USAGE);
    return 2;
  }
  const stores = await createStores(loadConfig());
  try {
    print(await command(stores, rest));
    return 0;
  } finally {
    await stores.close();
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    if (err instanceof ConfigError || err instanceof UsageError) {
      process.stderr.write(`latchkey: ${err.message}\n`);
      process.exit(err instanceof UsageError ? 2 : 1);
    }
    process.stderr.write(`latchkey: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
