/**
 * /v2/sso: connections CRUD and POST /v2/sso/configure (create or replace by domain), scope
 * sso:manage, audited, client secrets stored sealed and never returned.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import { adminApi, randomTag, RFC3339, type AdminApi } from '../helpers/admin-api.js';
import { availableBackends, createTestApp, type TestApp } from '../helpers/test-app.js';

describe.each(availableBackends())(
  '/v2/sso with durable=$durable, short-lived=$shortLived',
  ({ durable, shortLived }) => {
    let t: TestApp;
    let api: AdminApi;
    beforeAll(async () => {
      t = await createTestApp({ durable, shortLived });
      api = await adminApi(t);
    });
    afterAll(() => t.close());

    const domain = () => `corp-${randomTag()}.example`;

    it('POST /v2/sso/configure takes the shape of shared/API.md, creates, then replaces by domain', async () => {
      const company = domain();
      const body = {
        provider: 'azure_ad',
        domain: company,
        metadata_url:
          'https://login.microsoftonline.com/tenant-id/federationmetadata/2007-06/federationmetadata.xml',
        auto_provision: true,
        default_role: 'user',
        attribute_mapping: {
          email: 'http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress',
          first_name: 'http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname',
          last_name: 'http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname',
        },
      };
      const created = await api.post('/v2/sso/configure', body);
      expect(created.status).toBe(201);
      expect(created.body).toEqual({
        id: expect.stringMatching(/^sso_/),
        provider: 'azure_ad',
        domain: company,
        domains: [company],
        issuer: null,
        client_id: null,
        has_client_secret: false,
        scopes: [],
        metadata_url: body.metadata_url,
        has_metadata_xml: false,
        auto_provision: true,
        default_role: 'user',
        attribute_mapping: body.attribute_mapping,
        enabled: true,
        login_url: `/sso/login/${created.body.id}`,
        created_at: expect.stringMatching(RFC3339),
        updated_at: expect.stringMatching(RFC3339),
      });
      expect(created.headers.location).toBe(`/v2/sso/connections/${created.body.id}`);

      const replaced = await api.post('/v2/sso/configure', {
        provider: 'oidc',
        domain: company.toUpperCase(),
        issuer: 'https://idp.example.com/',
        client_id: 'latchkey',
        client_secret: 'upstream-secret-value',
      });
      expect(replaced.status).toBe(200);
      expect(replaced.body).toMatchObject({
        id: created.body.id,
        provider: 'oidc',
        domains: [company],
        issuer: 'https://idp.example.com/',
        has_client_secret: true,
        scopes: ['openid', 'email', 'profile'],
        metadata_url: null,
        auto_provision: false,
        default_role: null,
        attribute_mapping: {},
      });
      expect(JSON.stringify(replaced.body)).not.toContain('upstream-secret-value');

      // Stored sealed, bound to the connection, and readable by the server.
      const stored = (await t.stores.durable.ssoConnections.findById(created.body.id))!;
      expect(stored.client_secret_encrypted).not.toContain('upstream-secret-value');
      expect(t.services.sso.clientSecret(stored)).toBe('upstream-secret-value');

      const audit = await api.get('/v2/audit', { target_id: created.body.id });
      const actions = (audit.body.data as { action: string; changes: unknown }[]).map((e) => e.action);
      expect(actions).toEqual(expect.arrayContaining(['sso_connection.created', 'sso_connection.updated']));
      expect(JSON.stringify(audit.body)).not.toContain('upstream-secret-value');
    });

    it('CRUD on /v2/sso/connections, one connection per domain, validation', async () => {
      const a = domain();
      const b = domain();
      const res = await api.post('/v2/sso/connections', {
        provider: 'okta',
        domains: [a, b],
        issuer: 'https://okta.example.com/oauth2/default',
        client_id: 'abc',
        client_secret: 's3cret',
        scopes: ['openid', 'email'],
        attribute_mapping: { email: 'email', 'metadata.department': 'department' },
      });
      expect(res.status).toBe(201);
      const id = res.body.id as string;
      expect(res.body).toMatchObject({
        domains: [a, b].sort(),
        has_client_secret: true,
        scopes: ['openid', 'email'],
      });
      expect((await api.get(`/v2/sso/connections/${id}`)).body).toEqual(res.body);
      const list = await api.get('/v2/sso/connections');
      expect((list.body.data as { id: string }[]).map((c) => c.id)).toContain(id);
      expect(JSON.stringify(list.body)).not.toContain('s3cret');

      const taken = await api.post('/v2/sso/connections', {
        provider: 'oidc',
        domain: b,
        issuer: 'https://other.example.com',
        client_id: 'x',
      });
      expect(taken.status).toBe(409);
      expect(taken.body.error.code).toBe('SSO_DOMAIN_TAKEN');

      const noIssuerClient = await api.post('/v2/sso/connections', { provider: 'oidc', domain: domain() });
      // Rules over several fields: the body obeys the schema, so 422.
      expect(noIssuerClient.status).toBe(422);
      expect(noIssuerClient.body.error.code).toBe('BUSINESS_RULE_VIOLATION');
      expect(noIssuerClient.body.error.details).toEqual([expect.objectContaining({ field: 'issuer' })]);
      const noDomain = await api.post('/v2/sso/connections', { provider: 'saml', metadata_xml: '<x/>' });
      expect(noDomain.status).toBe(422);
      const badRole = await api.post('/v2/sso/connections', {
        provider: 'saml',
        domain: domain(),
        metadata_xml: '<x/>',
        default_role: `no-such-role-${randomTag()}`,
      });
      expect(badRole.status).toBe(400);
      expect(badRole.body.error.code).toBe('INVALID_ROLE');
      const badMapping = await api.post('/v2/sso/connections', {
        provider: 'saml',
        domain: domain(),
        metadata_xml: '<x/>',
        attribute_mapping: { password_hash: 'x' },
      });
      expect(badMapping.status).toBe(400);

      const updated = await api.put(`/v2/sso/connections/${id}`, {
        enabled: false,
        client_secret: null,
        domains: [a],
      });
      expect(updated.status).toBe(200);
      expect(updated.body).toMatchObject({ enabled: false, has_client_secret: false, domains: [a] });

      expect((await api.delete(`/v2/sso/connections/${id}`)).status).toBe(200);
      expect((await api.get(`/v2/sso/connections/${id}`)).status).toBe(404);
      expect((await api.delete(`/v2/sso/connections/${id}`)).body.error.code).toBe(
        'SSO_CONNECTION_NOT_FOUND',
      );
    });

    it('needs the sso:manage scope', async () => {
      const reader = await adminApi(t, { scope: 'user:read' });
      const res = await reader.get('/v2/sso/connections');
      expect(res.status).toBe(403);
      expect(res.body.error.code).toBe('AUTH_INSUFFICIENT_SCOPE');

      // A default role is handed out by provisioning: only a caller holding its scopes may name it.
      const manager = await adminApi(t, { scope: 'sso:manage' });
      const body = { provider: 'saml', domain: domain(), metadata_xml: '<x/>' };
      const escalate = await manager.post('/v2/sso/connections', { ...body, default_role: 'admin' });
      expect(escalate.status).toBe(403);
      expect(escalate.body.error.code).toBe('AUTH_INSUFFICIENT_SCOPE');
      expect((await manager.post('/v2/sso/connections', { ...body, default_role: 'user' })).status).toBe(201);
    });
  },
);
