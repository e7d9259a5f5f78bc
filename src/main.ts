/**
 * Process entry: load the configuration (a bad setting stops here with one line naming it), open the
 * stores, build the app, listen, and shut down gracefully on SIGTERM or SIGINT.
 */
import './runtime/thread-pool.js';

import { buildApp } from './app.js';
import { ConfigError, loadConfig, type Config } from './config/load-config.js';
import { warnMisnamedSettings } from './config/misnamed-settings.js';
import { productionProblems } from './config/production-safety.js';
import { createLogger } from './logging/create-logger.js';
import { startServer } from './server.js';
import { createStores } from './store/create-stores.js';

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`latchkey: ${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
  const problems = productionProblems(config);
  if (problems.length > 0) {
    process.stderr.write(problems.map((p) => `latchkey: refusing to start: ${p}.\n`).join(''));
    process.exit(1);
  }

  const logger = createLogger({ level: config.logLevel });
  warnMisnamedSettings(process.env, logger);
  // Tracing is loaded only when asked for, before the server exists (it patches node:http).
  const tracing = config.otelExporterOtlpEndpoint
    ? (await import('./observability/tracing.js')).startTracing({
        endpoint: config.otelExporterOtlpEndpoint,
        serviceName: config.otelServiceName,
      })
    : undefined;
  if (tracing) {
    logger.info({ collector: new URL(config.otelExporterOtlpEndpoint!).origin }, 'tracing enabled');
  }
  let stores;
  try {
    stores = await createStores(config);
  } catch (err) {
    logger.fatal({ err }, 'cannot open the stores');
    process.exit(1);
  }

  let built;
  try {
    built = await buildApp({ config, logger, stores });
  } catch (err) {
    logger.fatal({ err }, 'cannot start');
    await stores.close().catch(() => undefined);
    process.exit(1);
  }
  const running = await startServer(built, stores, logger, config);
  logger.info(
    {
      url: `http://${config.host}:${running.port}`,
      issuer: config.issuer,
      durable_store: stores.durable.kind,
      artifact_store: stores.artifacts.kind,
      node: process.version,
    },
    'listening',
  );

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      // SIGTERM comes from an orchestrator or process manager with a load balancer in front: drain.
      // SIGINT is someone pressing Ctrl-C at a terminal: nobody routes traffic here, stop at once.
      running
        .stop(signal, { drain: signal === 'SIGTERM' })
        .then(() =>
          tracing?.shutdown().catch((err) => logger.warn({ err }, 'could not send the last traces')),
        )
        .then(
          () => process.exit(0),
          (err) => {
            logger.error({ err }, 'shutdown failed');
            process.exit(1);
          },
        );
    });
  }
}

main().catch((err) => {
  process.stderr.write(`latchkey: failed to start: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
