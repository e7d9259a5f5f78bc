/**
 * The container image's promises, checked on the Dockerfile and .dockerignore themselves (no Docker
 * engine is needed): a multi-stage build on Node 24 slim, production dependencies only, a non-root
 * numeric user, a health check on /health/live, no secret baked into the image, a build context that
 * leaves dependencies and secrets out, and a CMD that starts the compiled server. Every check is also
 * run on a broken copy of the Dockerfile to show that it can fail.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, posix, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from '@jest/globals';

import { SETTINGS, type SettingName } from '../../src/config/settings.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DOCKERFILE = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
const DOCKERIGNORE = readFileSync(join(ROOT, '.dockerignore'), 'utf8');

// --- a small Dockerfile parser ---------------------------------------------------------------------

interface Instruction {
  keyword: string;
  args: string;
  line: number;
}

interface Stage {
  base: string;
  name: string | undefined;
  instructions: Instruction[];
}

interface Dockerfile {
  globalArgs: Record<string, string>;
  stages: Stage[];
}

/** Joins `\`-continued lines into instructions; comment and blank lines inside a continuation are skipped. */
function logicalLines(text: string): Instruction[] {
  const out: Instruction[] = [];
  let current: { parts: string[]; line: number } | undefined;
  text.split(/\r?\n/).forEach((raw, index) => {
    const trimmed = raw.trim();
    if (trimmed.startsWith('#') || (trimmed === '' && current)) return;
    if (trimmed === '') return;
    const continued = /\\\s*$/.test(raw);
    const body = continued ? raw.replace(/\\\s*$/, '') : raw;
    if (current) current.parts.push(body.trim());
    else current = { parts: [body.trim()], line: index + 1 };
    if (!continued) {
      const joined = current.parts.join(' ').trim();
      const match = /^(\S+)\s*(.*)$/.exec(joined)!;
      out.push({ keyword: match[1]!.toUpperCase(), args: match[2]!, line: current.line });
      current = undefined;
    }
  });
  if (current) throw new Error(`Dockerfile ends inside a continued line (from line ${current.line})`);
  return out;
}

function substitute(text: string, vars: Record<string, string>): string {
  return text.replace(/\$\{(\w+)\}|\$(\w+)/g, (whole, a?: string, b?: string) => vars[(a ?? b)!] ?? whole);
}

function parseDockerfile(text: string): Dockerfile {
  const globalArgs: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const instruction of logicalLines(text)) {
    if (instruction.keyword === 'FROM') {
      const words = substitute(instruction.args, globalArgs)
        .split(/\s+/)
        .filter((w) => !w.startsWith('--'));
      const asIndex = words.findIndex((w) => w.toUpperCase() === 'AS');
      stages.push({
        base: words[0]!,
        name: asIndex > 0 ? words[asIndex + 1] : undefined,
        instructions: [],
      });
    } else if (stages.length === 0) {
      if (instruction.keyword !== 'ARG')
        throw new Error(`line ${instruction.line}: only ARG may precede FROM`);
      const [name, value = ''] = instruction.args.split('=', 2);
      globalArgs[name!.trim()] = value.trim();
    } else {
      stages.at(-1)!.instructions.push(instruction);
    }
  }
  return { globalArgs, stages };
}

/** JSON (exec) form `["a", "b"]`, or undefined for the shell form. */
function execForm(args: string): string[] | undefined {
  if (!args.trim().startsWith('[')) return undefined;
  return JSON.parse(args) as string[];
}

/** `ENV A=1 B="two"` (or the old `ENV A 1`) → names and values. */
function envPairs(args: string): Record<string, string> {
  const out: Record<string, string> = {};
  const pairs = [...args.matchAll(/(\w+)=("(?:[^"\\]|\\.)*"|'[^']*'|\S*)/g)];
  if (pairs.length === 0) {
    const [name, ...rest] = args.trim().split(/\s+/);
    if (name) out[name] = rest.join(' ');
    return out;
  }
  for (const [, name, value] of pairs) out[name!] = value!.replace(/^(["'])(.*)\1$/, '$2');
  return out;
}

function finalStage(df: Dockerfile): Stage {
  const stage = df.stages.at(-1);
  if (!stage) throw new Error('no FROM in the Dockerfile');
  return stage;
}

function instructions(stage: Stage, keyword: string): Instruction[] {
  return stage.instructions.filter((i) => i.keyword === keyword);
}

function stageEnv(stage: Stage): Record<string, string> {
  return Object.assign({}, ...instructions(stage, 'ENV').map((i) => envPairs(i.args))) as Record<
    string,
    string
  >;
}

interface CopyTarget {
  from: string | undefined;
  source: string;
  /** Absolute path in the image that the source becomes. */
  target: string;
}

/** Where each COPY in the stage puts each of its sources, with WORKDIR applied. */
function copyTargets(stage: Stage): CopyTarget[] {
  const out: CopyTarget[] = [];
  let workdir = '/';
  for (const instruction of stage.instructions) {
    if (instruction.keyword === 'WORKDIR') workdir = posix.resolve(workdir, instruction.args.trim());
    if (instruction.keyword !== 'COPY' && instruction.keyword !== 'ADD') continue;
    const words = execForm(instruction.args) ?? instruction.args.split(/\s+/);
    const from = words.find((w) => w.startsWith('--from='))?.slice('--from='.length);
    const paths = words.filter((w) => !w.startsWith('--'));
    const dest = paths.pop()!;
    const intoFolder = dest.endsWith('/') || paths.length > 1;
    const base = posix.resolve(workdir, dest);
    for (const source of paths) {
      out.push({ from, source, target: intoFolder ? posix.join(base, posix.basename(source)) : base });
    }
  }
  return out;
}

function workdirOf(stage: Stage): string {
  return instructions(stage, 'WORKDIR').reduce((dir, i) => posix.resolve(dir, i.args.trim()), '/');
}

/** Whether a COPY in the stage puts `path` (relative to the stage's WORKDIR) into the image. */
function provides(stage: Stage, path: string, from?: string): boolean {
  const wanted = posix.resolve(workdirOf(stage), path);
  return copyTargets(stage).some(
    (c) =>
      (from === undefined || c.from === from) && (wanted === c.target || wanted.startsWith(`${c.target}/`)),
  );
}

// --- .dockerignore ---------------------------------------------------------------------------------

function globToRegExp(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*' && pattern[i + 1] === '*') {
      // `**/` matches any number of folders, including none; a trailing `**` matches everything.
      if (pattern[i + 2] === '/') {
        re += '(?:.*/)?';
        i += 2;
      } else {
        re += '.*';
        i += 1;
      }
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  // A pattern that names a folder also leaves out everything inside it.
  return new RegExp(`^${re}(?:/.*)?$`);
}

/** Docker's rule: the last pattern that matches decides; `!` patterns put a path back. */
function isIgnored(ignoreText: string, path: string): boolean {
  let ignored = false;
  for (const raw of ignoreText.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const negated = line.startsWith('!');
    const pattern = posix.normalize((negated ? line.slice(1) : line).trim()).replace(/^\/+|\/+$/g, '');
    if (globToRegExp(pattern).test(path)) ignored = !negated;
  }
  return ignored;
}

function filesUnder(folder: string): string[] {
  const full = join(ROOT, folder);
  if (!statSync(full).isDirectory()) return [folder];
  return readdirSync(full, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => relative(ROOT, join(e.parentPath, e.name)).split('\\').join('/'));
}

// --- the checks: each returns the problems it found ------------------------------------------------

type Check = (df: Dockerfile, ignore: string) => string[];

const RUNTIME_BASE =
  /^(?:docker\.io\/(?:library\/)?)?node:24(?:\.\d+){0,2}-(?:bookworm|trixie)-slim(?:@sha256:[0-9a-f]{64})?$|^gcr\.io\/distroless\/nodejs24-debian1[2-9](?::[\w.-]+)?(?:@sha256:[0-9a-f]{64})?$/;

const checks: Record<string, Check> = {
  'has several stages, and the runtime stage copies its build output from another one': (df) => {
    const problems: string[] = [];
    if (df.stages.length < 2)
      problems.push(`${df.stages.length} stage(s); a build and a runtime stage expected`);
    const names = new Set(df.stages.slice(0, -1).map((s) => s.name));
    if (!copyTargets(finalStage(df)).some((c) => c.from !== undefined && names.has(c.from))) {
      problems.push('the runtime stage copies nothing from an earlier stage');
    }
    return problems;
  },

  'runs on Node 24 slim or distroless': (df) => {
    const base = finalStage(df).base;
    return RUNTIME_BASE.test(base) ? [] : [`runtime base image is ${base}`];
  },

  'runs as a non-root numeric user': (df) => {
    const user = instructions(finalStage(df), 'USER').at(-1)?.args.trim();
    if (!user) return ['the runtime stage sets no USER, so it runs as root'];
    const match = /^(\d+)(?::(\d+))?$/.exec(user);
    if (!match) return [`USER ${user} is not numeric, so runAsNonRoot cannot verify it`];
    if (Number(match[1]) === 0) return [`USER ${user} is root`];
    if (match[2] !== undefined && Number(match[2]) === 0) return [`USER ${user} runs in group root`];
    return [];
  },

  'installs production dependencies only in the runtime stage': (df) => {
    const runs = instructions(finalStage(df), 'RUN').map((i) => i.args);
    const installs = runs.flatMap((r) => r.split(/&&|;/)).filter((c) => /\bnpm\s+(ci|install|i)\b/.test(c));
    if (installs.length === 0) return ['the runtime stage installs no dependencies'];
    return installs
      .filter((c) => !/--omit[= ]dev\b/.test(c))
      .map((c) => `runtime install includes devDependencies: ${c.trim()}`);
  },

  'builds without running install scripts (the `node` devDependency would fetch another Node)': (df) => {
    const problems: string[] = [];
    for (const stage of df.stages.slice(0, -1)) {
      const runs = instructions(stage, 'RUN').flatMap((i) => i.args.split(/&&|;/));
      for (const c of runs.filter((r) => /\bnpm\s+(ci|install|i)\b/.test(r))) {
        if (!/--ignore-scripts\b/.test(c) && !/--omit[= ]dev\b/.test(c)) {
          problems.push(`stage ${stage.name ?? stage.base} runs install scripts: ${c.trim()}`);
        }
      }
    }
    return problems;
  },

  'checks its health on /health/live with node': (df) => {
    const healthcheck = instructions(finalStage(df), 'HEALTHCHECK').at(-1);
    if (!healthcheck) return ['no HEALTHCHECK'];
    const cmdAt = healthcheck.args.search(/\bCMD\b/);
    if (cmdAt < 0) return [`HEALTHCHECK ${healthcheck.args} runs nothing`];
    const command = healthcheck.args.slice(cmdAt + 3).trim();
    const argv = execForm(command) ?? command.split(/\s+/);
    const problems: string[] = [];
    if (argv[0] !== 'node') problems.push(`health check runs ${argv[0]}, which the slim image may lack`);
    if (!argv.join(' ').includes('/health/live')) problems.push('health check does not ask /health/live');
    return problems;
  },

  'bakes no secret into ENV or ARG': (df) => {
    const secretNames = new Set(
      (Object.keys(SETTINGS) as SettingName[]).filter((name) => SETTINGS[name].secret === true),
    );
    const names = [
      ...Object.keys(df.globalArgs),
      ...df.stages.flatMap((s) => [
        ...instructions(s, 'ENV').flatMap((i) => Object.keys(envPairs(i.args))),
        ...instructions(s, 'ARG').map((i) => i.args.split('=')[0]!.trim()),
      ]),
    ];
    return names
      .filter(
        (n) => secretNames.has(n as SettingName) || /SECRET|PASSWORD|TOKEN|COOKIE_KEYS|PRIVATE/i.test(n),
      )
      .map((n) => `${n} is set in the image`);
  },

  'runs in production mode on all interfaces, with DATA_DIR on a volume and the port exposed': (df) => {
    const stage = finalStage(df);
    const env = stageEnv(stage);
    const problems: string[] = [];
    if (env.NODE_ENV !== 'production') problems.push(`NODE_ENV is ${env.NODE_ENV}`);
    if (env.HOST !== '0.0.0.0') problems.push(`HOST is ${env.HOST}, unreachable from outside the container`);
    const volumes = instructions(stage, 'VOLUME').flatMap((i) => execForm(i.args) ?? i.args.split(/\s+/));
    if (!env.DATA_DIR || !volumes.includes(env.DATA_DIR)) {
      problems.push(`DATA_DIR ${env.DATA_DIR} is not a VOLUME (${volumes.join(', ') || 'none'})`);
    }
    const exposed = instructions(stage, 'EXPOSE').flatMap((i) =>
      i.args.split(/\s+/).map((p) => p.split('/')[0]),
    );
    if (!env.PORT || !exposed.includes(env.PORT))
      problems.push(`PORT ${env.PORT} is not exposed (${exposed})`);
    const stop = instructions(stage, 'STOPSIGNAL').at(-1)?.args.trim();
    if (stop !== undefined && stop !== 'SIGTERM')
      problems.push(`STOPSIGNAL ${stop}: the server drains on SIGTERM`);
    return problems;
  },

  'starts the compiled server, with the files it reads at run time': (df) => {
    const stage = finalStage(df);
    const cmd = instructions(stage, 'CMD').at(-1);
    const argv = cmd && execForm(cmd.args);
    if (!argv) return ['CMD is missing or in shell form (signals would go to a shell)'];
    const problems: string[] = [];
    if (argv[0] !== 'node' || argv[1] !== 'dist/main.js') problems.push(`CMD is ${JSON.stringify(argv)}`);
    const entrypoint = instructions(stage, 'ENTRYPOINT').at(-1);
    if (entrypoint) problems.push(`ENTRYPOINT ${entrypoint.args} would wrap the CMD`);
    if (argv[1] && !existsSync(join(ROOT, argv[1]))) problems.push(`${argv[1]} is not built`);
    // What src/ reads next to dist/ at run time (load-config.ts, views.ts, app.ts).
    for (const path of [
      argv[1] ?? 'dist/main.js',
      'config/defaults.env',
      'views/layout.eta',
      'package.json',
    ]) {
      if (!provides(stage, path)) problems.push(`the runtime stage does not copy ${path}`);
    }
    return problems;
  },

  'sends only build inputs to the build, never dependencies, git data or secrets': (df, ignore) => {
    const problems: string[] = [];
    for (const path of [
      'node_modules',
      'node_modules/koa/package.json',
      '.git',
      '.git/config',
      '.env',
      '.env.production',
      'config/.env',
      'dist/main.js',
      'data/latchkey.sqlite',
      'data/development-secrets.json',
      '.npmrc',
      'coverage/lcov.info',
    ]) {
      if (!isIgnored(ignore, path)) problems.push(`${path} is sent to the build`);
    }
    for (const stage of df.stages) {
      for (const copy of copyTargets(stage).filter((c) => c.from === undefined)) {
        for (const file of filesUnder(copy.source)) {
          if (isIgnored(ignore, file)) problems.push(`${file} is copied by the Dockerfile but ignored`);
        }
      }
    }
    return problems;
  },
};

// --- tests -------------------------------------------------------------------------------------------

/** The real Dockerfile with one text replaced; fails if the text is not there, so no mutation is empty. */
function mutate(from: string | RegExp, to: string): Dockerfile {
  const changed = DOCKERFILE.replace(from, to);
  if (changed === DOCKERFILE) throw new Error(`mutation did not apply: ${String(from)}`);
  return parseDockerfile(changed);
}

const REAL = parseDockerfile(DOCKERFILE);

/** For each check, broken versions of the files that it must reject. */
const BROKEN: Record<string, Array<{ what: string; df?: Dockerfile; ignore?: string }>> = {
  'has several stages, and the runtime stage copies its build output from another one': [
    { what: 'one stage', df: parseDockerfile('FROM node:24-bookworm-slim\nCMD ["node", "dist/main.js"]\n') },
    { what: 'no COPY --from', df: mutate('COPY --from=build /src/dist ./dist', 'COPY dist ./dist') },
  ],
  'runs on Node 24 slim or distroless': [
    {
      what: 'node 22',
      df: mutate('ARG NODE_IMAGE=node:24-bookworm-slim', 'ARG NODE_IMAGE=node:22-bookworm-slim'),
    },
    {
      what: 'full image',
      df: mutate('ARG NODE_IMAGE=node:24-bookworm-slim', 'ARG NODE_IMAGE=node:24-bookworm'),
    },
  ],
  'runs as a non-root numeric user': [
    { what: 'root', df: mutate(/^USER .*$/m, 'USER root') },
    { what: 'uid 0', df: mutate(/^USER .*$/m, 'USER 0:0') },
    { what: 'a name', df: mutate(/^USER .*$/m, 'USER latchkey') },
    { what: 'no USER', df: mutate(/^USER .*$/m, '') },
  ],
  'installs production dependencies only in the runtime stage': [
    { what: 'all dependencies', df: mutate('npm ci --omit=dev', 'npm ci') },
  ],
  'builds without running install scripts (the `node` devDependency would fetch another Node)': [
    { what: 'scripts run', df: mutate('npm ci --ignore-scripts', 'npm ci') },
  ],
  'checks its health on /health/live with node': [
    { what: 'another path', df: mutate("'/health/live'", "'/health/ready'") },
    { what: 'curl', df: mutate(/CMD \["node", "-e".*$/m, 'CMD curl -f http://127.0.0.1:3000/health/live') },
    { what: 'none', df: mutate(/^HEALTHCHECK[^\n]*\\\n[^\n]*\n/m, '') },
  ],
  'bakes no secret into ENV or ARG': [
    { what: 'cookie keys', df: mutate('NODE_ENV=production', 'NODE_ENV=production COOKIE_KEYS=abc') },
    { what: 'mongo uri', df: mutate('HOST=0.0.0.0', 'HOST=0.0.0.0 MONGODB_URI=mongodb://u:p@db/x') },
    { what: 'build arg', df: mutate('ARG NODE_IMAGE=', 'ARG NPM_TOKEN=x\nARG NODE_IMAGE=') },
  ],
  'runs in production mode on all interfaces, with DATA_DIR on a volume and the port exposed': [
    { what: 'development', df: mutate('NODE_ENV=production', 'NODE_ENV=development') },
    { what: 'loopback', df: mutate('HOST=0.0.0.0', 'HOST=127.0.0.1') },
    { what: 'no volume', df: mutate(/^VOLUME .*$/m, '') },
    { what: 'other port', df: mutate(/^EXPOSE .*$/m, 'EXPOSE 8080') },
    { what: 'SIGKILL', df: mutate('STOPSIGNAL SIGTERM', 'STOPSIGNAL SIGKILL') },
  ],
  'starts the compiled server, with the files it reads at run time': [
    { what: 'shell form', df: mutate('CMD ["node", "dist/main.js"]', 'CMD node dist/main.js') },
    { what: 'sources', df: mutate('CMD ["node", "dist/main.js"]', 'CMD ["node", "src/main.ts"]') },
    { what: 'unbuilt file', df: mutate('CMD ["node", "dist/main.js"]', 'CMD ["node", "dist/nothing.js"]') },
    { what: 'no views', df: mutate('COPY views ./views', '') },
    { what: 'no defaults', df: mutate('COPY config ./config', '') },
    {
      what: 'no package.json',
      df: mutate(/(FROM \$\{NODE_IMAGE\} AS runtime[\s\S]*?)COPY package\.json /, '$1COPY '),
    },
  ],
  'sends only build inputs to the build, never dependencies, git data or secrets': [
    { what: 'empty .dockerignore', ignore: '' },
    { what: 'only node_modules', ignore: 'node_modules\n' },
    { what: 'src ignored', ignore: `${DOCKERIGNORE}\nsrc/config\n` },
    { what: 'env re-included', ignore: `${DOCKERIGNORE}\n!.env\n` },
  ],
};

describe('Dockerfile', () => {
  it('parses into a build and a runtime stage', () => {
    expect(REAL.stages.map((s) => s.name)).toEqual(['build', 'runtime']);
    expect(REAL.globalArgs.NODE_IMAGE).toBe('node:24-bookworm-slim');
  });

  for (const [name, check] of Object.entries(checks)) {
    describe(name, () => {
      it('holds for the Dockerfile and .dockerignore', () => {
        expect(check(REAL, DOCKERIGNORE)).toEqual([]);
      });

      for (const broken of BROKEN[name] ?? []) {
        it(`fails on a broken copy: ${broken.what}`, () => {
          expect(check(broken.df ?? REAL, broken.ignore ?? DOCKERIGNORE)).not.toEqual([]);
        });
      }
    });
  }

  it('has a broken copy for every check', () => {
    for (const name of Object.keys(checks)) expect(BROKEN[name]?.length ?? 0).toBeGreaterThan(0);
  });
});

describe('Dockerfile parser', () => {
  it('joins continued lines and skips comments inside them', () => {
    const df = parseDockerfile(
      'FROM a AS one\nRUN x \\\n  # note\n  && y\nFROM b\nENV A=1 \\\n    B="two words"\n',
    );
    expect(df.stages[0]!.instructions).toEqual([{ keyword: 'RUN', args: 'x && y', line: 2 }]);
    expect(stageEnv(df.stages[1]!)).toEqual({ A: '1', B: 'two words' });
  });

  it('resolves COPY targets against WORKDIR', () => {
    const df = parseDockerfile(
      'FROM a\nWORKDIR /app\nCOPY x.json y.json ./\nCOPY --from=b /src/dist ./dist\n',
    );
    expect(copyTargets(df.stages[0]!)).toEqual([
      { from: undefined, source: 'x.json', target: '/app/x.json' },
      { from: undefined, source: 'y.json', target: '/app/y.json' },
      { from: 'b', source: '/src/dist', target: '/app/dist' },
    ]);
  });

  it('applies .dockerignore patterns in order, last match wins', () => {
    const ignore = '*\n!src\n**/*.secret\n';
    expect(isIgnored(ignore, 'README.md')).toBe(true);
    expect(isIgnored(ignore, 'src/main.ts')).toBe(false);
    expect(isIgnored(ignore, 'src/deep/a.secret')).toBe(true);
  });
});
