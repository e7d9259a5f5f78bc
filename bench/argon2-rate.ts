/**
 * Raw argon2id rate for the protocol benchmark: the server's own password hasher
 * (src/services/passwords.ts) verifying a password at the parameters in the environment, PARALLEL
 * verifications at a time, for DURATION_S seconds. A verification costs what a hash does, and is what
 * a sign-in spends. Run by bench/protocol.ts as a child process with UV_THREADPOOL_SIZE set as the
 * server sets it; prints one JSON line: { verifications, seconds, perSecond, cpuMsPerVerification }
 * (the process's CPU time, its thread pool included, per verification).
 */
import { createPasswordHasher } from '../src/services/passwords.ts';

const number = (name: string) => {
  const value = Number(process.env[name]);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number`);
  return value;
};

const hasher = createPasswordHasher({
  memoryKib: number('PASSWORD_HASH_MEMORY_KIB'),
  timeCost: number('PASSWORD_HASH_TIME_COST'),
  parallelism: number('PASSWORD_HASH_PARALLELISM'),
});
const parallel = number('PARALLEL');
const durationS = number('DURATION_S');

const password = 'a bench password that is long enough';
const hash = await hasher.hash(password);
// One round per thread first, so the pool's threads and their memory exist before timing starts.
await Promise.all(Array.from({ length: parallel }, () => hasher.verify(hash, password)));

let verifications = 0;
const cpuBefore = process.cpuUsage();
const started = performance.now();
const deadline = started + durationS * 1000;
await Promise.all(
  Array.from({ length: parallel }, async () => {
    while (performance.now() < deadline) {
      if (!(await hasher.verify(hash, password))) throw new Error('verification failed');
      verifications += 1;
    }
  }),
);
const seconds = (performance.now() - started) / 1000;
const cpu = process.cpuUsage(cpuBefore);
process.stdout.write(
  `${JSON.stringify({
    verifications,
    seconds,
    perSecond: Math.round((verifications / seconds) * 10) / 10,
    cpuMsPerVerification: (cpu.user + cpu.system) / 1000 / verifications,
  })}\n`,
);
