/**
 * What a router answers for a path it has but a method it does not serve: 405 METHOD_NOT_ALLOWED in
 * the error envelope, with `Allow` listing the path's methods (RFC 9110 §15.5.6), for every method —
 * TRACE, CONNECT and extension methods too. koa-router's own allowedMethods({ throw: true }) throws a
 * 501 for methods outside its list (which the error middleware can only call an internal error) and
 * a 405 without Allow. OPTIONS answers 204 with the same Allow. A path the router does not have is
 * left alone (a 404 from the error middleware, or another router's answer).
 */
import type Router from '@koa/router';
import type { Middleware } from 'koa';

import { AppError } from '../errors/app-error.js';

/**
 * The methods `router` serves at `path`, HEAD beside GET and OPTIONS always; empty for an unknown
 * path. Where routes with fewer parameters also match (`/users/search` beside `/users/:id`), the path
 * is theirs: the routes with more parameters step aside for it (see ApiRouter), so only the most
 * specific routes count.
 */
export function methodsAt(router: Router, path: string): string[] {
  const layers = router.match(path, 'GET').path.filter((layer) => layer.methods.length > 0);
  const fewest = Math.min(...layers.map((layer) => layer.paramNames.length));
  const methods = new Set<string>();
  for (const layer of layers) {
    if (layer.paramNames.length === fewest) for (const method of layer.methods) methods.add(method);
  }
  if (methods.size === 0) return [];
  if (methods.has('GET')) methods.add('HEAD');
  methods.add('OPTIONS');
  return [...methods];
}

export function allowedMethods(router: Router): Middleware {
  return async (ctx, next) => {
    await next();
    if (ctx.status !== 404 || ctx.body !== undefined) return; // answered by someone
    const methods = methodsAt(router, ctx.path);
    if (methods.length === 0) return;
    const allow = methods.join(', ');
    ctx.set('Allow', allow);
    if (ctx.method === 'OPTIONS') {
      ctx.status = 204;
      return;
    }
    throw new AppError('METHOD_NOT_ALLOWED', {
      message: `${ctx.method.slice(0, 32)} is not allowed here; this path allows ${allow}`,
    });
  };
}
