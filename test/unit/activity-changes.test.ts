import { describe, expect, it } from '@jest/globals';

import { changedFieldNames } from '../../src/admin/users-routes.js';

describe('changedFieldNames', () => {
  it('names changed fields, keys of object fields as metadata.department, and leaves updated_at out', () => {
    expect(
      changedFieldNames({
        first_name: { before: 'Ada', after: 'Augusta' },
        metadata: {
          before: { department: 'eng', floor: 2 },
          after: { department: 'sales', floor: 2, desk: 'A1' },
        },
        updated_at: { before: '2025-01-01T00:00:00.000Z', after: '2025-01-02T00:00:00.000Z' },
        password_hash: { before: '[REDACTED]', after: '[REDACTED]' },
      }),
    ).toEqual(['first_name', 'metadata.department', 'metadata.desk', 'password_hash']);
    expect(changedFieldNames(null)).toEqual([]);
  });
});
