import { describe, expect, it } from '@jest/globals';

import {
  changedFields,
  EVENT_TYPES,
  eventApiKey,
  eventClient,
  eventUser,
  fromOutboxEvent,
  isEventType,
  newEvent,
  toOutboxEvent,
  webhookBody,
  webhookPayload,
} from '../../src/events/catalog.js';
import type { ApiKeyRecord, ClientRecord, User } from '../../src/store/ports.js';

const created = new Date('2025-01-20T16:45:30.000Z');

const user: User = {
  id: 'usr_01jj0000000000000000000000',
  email: 'newuser@company.com',
  first_name: 'John',
  last_name: 'Doe',
  role: 'user',
  status: 'active',
  email_verified: false,
  mfa_enabled: false,
  password_hash: '$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g',
  password_reset_required: false,
  metadata: { department: 'sales' },
  preferences: { theme: 'dark' },
  login_count: 3,
  last_login: null,
  plan: null,
  created_at: created,
  updated_at: created,
  deleted_at: null,
};

describe('event catalog', () => {
  it('lists every event type once, and knows them', () => {
    expect(new Set(EVENT_TYPES).size).toBe(EVENT_TYPES.length);
    expect(EVENT_TYPES).toEqual(
      expect.arrayContaining([
        'user.created',
        'user.updated',
        'user.deleted',
        'user.login',
        'user.role_changed',
        'ping',
      ]),
    );
    expect(isEventType('user.created')).toBe(true);
    expect(isEventType('user.exploded')).toBe(false);
  });

  it('builds events with an evt_ id, an ISO timestamp and the public user shape only', () => {
    const event = newEvent('user.created', { type: 'client', id: 'svc' }, { user: eventUser(user) }, created);
    expect(event.id).toMatch(/^evt_[0-9a-z]{26}$/);
    expect(event).toMatchObject({ type: 'user.created', timestamp: '2025-01-20T16:45:30.000Z' });
    expect(event.data.user).toMatchObject({
      id: user.id,
      email: user.email,
      created_at: '2025-01-20T16:45:30.000Z',
    });
    const text = JSON.stringify(event);
    expect(text).not.toContain('argon2');
    expect(text).not.toContain('password');
    expect(text).not.toContain('preferences');
  });

  it('leaves secrets out of clients and API keys', () => {
    const client: ClientRecord = {
      client_id: 'app',
      client_secret_hash: 'secret-hash-value',
      metadata: { client_name: 'App', redirect_uris: ['https://app.example/cb'] },
      first_party: true,
      created_at: created,
      updated_at: created,
    };
    expect(eventClient(client)).toEqual({
      client_id: 'app',
      client_name: 'App',
      first_party: true,
      created_at: created.toISOString(),
      updated_at: created.toISOString(),
    });
    const key: ApiKeyRecord = {
      id: 'key_1',
      owner_type: 'user',
      owner_id: user.id,
      name: 'ci',
      environment: 'live',
      lookup_id: 'lookup123',
      secret_hash: 'f'.repeat(64),
      scopes: ['chat'],
      allowed_ips: [],
      expires_at: null,
      last_used_at: null,
      revoked_at: null,
      created_at: created,
      updated_at: created,
    };
    const shown = JSON.stringify(eventApiKey(key));
    expect(shown).not.toContain('fff');
    expect(shown).not.toContain('lookup123');
  });

  it('names changed fields, nested keys of objects as dotted paths', () => {
    const after: User = {
      ...user,
      first_name: 'Johnny',
      metadata: { department: 'engineering', floor: 3 },
      updated_at: new Date(created.getTime() + 1000),
    };
    expect(
      changedFields(user, after, ['email', 'first_name', 'last_name', 'metadata', 'created_at']),
    ).toEqual(['first_name', 'metadata.department', 'metadata.floor']);
    expect(changedFields(user, { ...user }, ['email', 'metadata', 'created_at'])).toEqual([]);
  });

  it('round-trips through the stored form', () => {
    const event = newEvent(
      'user.updated',
      { type: 'user', id: user.id },
      { user: eventUser(user), changes: ['email'] },
    );
    const stored = toOutboxEvent(event);
    expect(stored.timestamp).toBeInstanceOf(Date);
    expect(fromOutboxEvent(stored)).toEqual(event);
    expect(fromOutboxEvent({ ...stored, type: 'unknown.kind' })).toBeUndefined();
  });

  it('gives webhooks the documented payload, `event` and `type` alike, as the body to sign', () => {
    const event = newEvent(
      'user.created',
      { type: 'system', id: 'test' },
      { user: eventUser(user) },
      created,
    );
    const payload = webhookPayload(event, 'wh_abc123');
    expect(payload).toEqual({
      event: 'user.created',
      type: 'user.created',
      timestamp: '2025-01-20T16:45:30.000Z',
      data: { user: eventUser(user) },
      webhook_id: 'wh_abc123',
    });
    const body = webhookBody(event, 'wh_abc123');
    expect(JSON.parse(body)).toEqual(payload);
  });
});
