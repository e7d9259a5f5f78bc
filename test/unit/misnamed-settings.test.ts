import { describe, expect, it } from '@jest/globals';

import { misnamedSettings, warnMisnamedSettings } from '../../src/config/misnamed-settings.js';

function warnings(env: Record<string, string | undefined>): { facts: object; message: string }[] {
  const lines: { facts: object; message: string }[] = [];
  warnMisnamedSettings(env, { warn: (facts, message) => lines.push({ facts, message }) });
  return lines;
}

describe('misnamed settings', () => {
  it.each([
    ['MONGO_URL', 'MONGODB_URI'],
    ['MONGODB_URL', 'MONGODB_URI'],
    ['MONGO_URI', 'MONGODB_URI'],
    ['REDIS_URI', 'REDIS_URL'],
    ['REDIS_HOST', 'REDIS_URL'],
  ])('%s set while %s is empty logs one warning naming %s', (found, expected) => {
    const lines = warnings({ [found]: 'mongodb://secret@db.example:27017/x', [expected]: '' });
    expect(lines).toHaveLength(1);
    expect(lines[0]!.facts).toEqual({ setting: found, expected });
    expect(lines[0]!.message).toContain(`did you mean ${expected}?`);
    // The value (which may hold a password) is not repeated.
    expect(JSON.stringify(lines)).not.toContain('secret');
  });

  it('says nothing when the right setting (or its _FILE variant) is set, or the wrong one is empty', () => {
    expect(warnings({ MONGO_URL: 'mongodb://a', MONGODB_URI: 'mongodb://b' })).toEqual([]);
    expect(warnings({ REDIS_HOST: 'cache', REDIS_URL_FILE: '/run/secrets/redis' })).toEqual([]);
    expect(warnings({ REDIS_URI: '  ' })).toEqual([]);
    // A cluster is configured instead of one server: REDIS_URL is empty on purpose.
    expect(warnings({ REDIS_HOST: 'cache', REDIS_CLUSTER_NODES: 'a:7000,b:7000' })).toEqual([]);
    expect(warnings({ REDIS_HOST: 'cache', REDIS_CLUSTER_NODES_FILE: '/run/secrets/nodes' })).toEqual([]);
    expect(warnings({})).toEqual([]);
  });

  it('reports each misnamed setting once', () => {
    expect(misnamedSettings({ MONGO_URL: 'a', REDIS_HOST: 'b' })).toEqual([
      { found: 'MONGO_URL', expected: 'MONGODB_URI' },
      { found: 'REDIS_HOST', expected: 'REDIS_URL' },
    ]);
  });
});
