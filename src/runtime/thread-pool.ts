/**
 * Sizes libuv's thread pool to the machine's cores before anything uses it. Password hashing (argon2)
 * runs there; more threads than cores would only make hashes queue for the CPU and take the event
 * loop's share with them, while fewer would leave cores idle. An explicit UV_THREADPOOL_SIZE wins.
 * Must be the first import of every entry point: libuv reads the variable when the pool first starts.
 */
import { availableParallelism } from 'node:os';

process.env.UV_THREADPOOL_SIZE ??= String(Math.max(2, availableParallelism()));

export const threadPoolSize = Number(process.env.UV_THREADPOOL_SIZE);
