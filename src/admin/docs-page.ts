/**
 * /v2/docs: a readable reference of the management API rendered on the server from the OpenAPI
 * document (no scripts, so it works under the same strict CSP as every other page).
 */
type Json = Record<string, unknown>;

const escape = (value: unknown) =>
  String(value).replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!,
  );

function schemaText(schema: unknown): string {
  return escape(JSON.stringify(schema, null, 2));
}

export function renderDocsPage(doc: Json): string {
  const paths = doc.paths as Record<string, Record<string, Json>>;
  const byTag = new Map<string, { method: string; path: string; op: Json }[]>();
  for (const [path, methods] of Object.entries(paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const tag = (op.tags as string[])[0]!;
      byTag.set(tag, [...(byTag.get(tag) ?? []), { method, path, op }]);
    }
  }
  const info = doc.info as Json;
  const sections = [...byTag]
    .map(([tag, ops]) => {
      const items = ops
        .map(({ method, path, op }) => {
          const params = (op.parameters as Json[] | undefined) ?? [];
          const scope = op['x-required-scope'] as string | undefined;
          const responses = Object.entries(op.responses as Record<string, Json>)
            .map(([status, r]) => `<li><code>${escape(status)}</code> ${escape(r.description)}</li>`)
            .join('');
          const body = op.requestBody as Json | undefined;
          const bodySchema = (body?.content as Record<string, Json> | undefined)?.['application/json']
            ?.schema;
          return `
<section class="operation" id="${escape(op.operationId)}">
  <h3><span class="method">${escape(method.toUpperCase())}</span> <code>${escape(path)}</code></h3>
  <p>${escape(op.summary)}${scope ? ` · scope <code>${escape(scope)}</code>` : ' · no token needed'}</p>
  ${op.description ? `<p class="muted">${escape(op.description)}</p>` : ''}
  ${
    params.length
      ? `<table><thead><tr><th>Parameter</th><th>In</th><th>Required</th><th>Description</th></tr></thead><tbody>${params
          .map(
            (p) =>
              `<tr><td><code>${escape(p.name)}</code></td><td>${escape(p.in)}</td><td>${p.required ? 'yes' : 'no'}</td><td>${escape(p.description ?? '')}</td></tr>`,
          )
          .join('')}</tbody></table>`
      : ''
  }
  ${bodySchema ? `<details><summary>Request body</summary><pre>${schemaText(bodySchema)}</pre></details>` : ''}
  <ul class="responses">${responses}</ul>
</section>`;
        })
        .join('');
      return `<h2 id="${escape(tag)}">${escape(tag)}</h2>${items}`;
    })
    .join('');
  const schemas = Object.entries(((doc.components as Json).schemas ?? {}) as Record<string, unknown>)
    .map(
      ([name, schema]) =>
        `<details id="schema-${escape(name)}"><summary>${escape(name)}</summary><pre>${schemaText(schema)}</pre></details>`,
    )
    .join('');
  return `<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>${escape(info.title)}</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="/static/styles.css">
</head>
<body class="docs">
  <main class="docs-main">
    <h1>${escape(info.title)} <small>${escape(info.version)}</small></h1>
    <p>${escape(info.description)}</p>
    <p>Machine-readable: <a href="/v2/openapi.json">/v2/openapi.json</a> (OpenAPI 3.1).</p>
    <nav><ul>${[...byTag.keys()].map((t) => `<li><a href="#${escape(t)}">${escape(t)}</a></li>`).join('')}<li><a href="#schemas">Schemas</a></li></ul></nav>
    ${sections}
    <h2 id="schemas">Schemas</h2>
    ${schemas}
  </main>
</body>
</html>`;
}
