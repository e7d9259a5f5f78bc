/**
 * Identifiers: a type prefix and a 26-character time-ordered random part (Crockford base32): 10
 * characters of milliseconds, 16 random ones. Within one process, ids made in the same millisecond
 * (or less than a second behind the previous one: a clock that stepped back) continue from the
 * previous id, incremented, so they sort in the order they were made: lists ordered by (time, id)
 * show same-millisecond events in order.
 */
import { randomBytes } from 'node:crypto';

const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz';
const RANDOM_DIGITS = 16;

let lastTime = -1;
let lastRandom: number[] = [];

function freshRandom(): number[] {
  const bytes = randomBytes(RANDOM_DIGITS);
  // The top digit stays below 16, so incrementing within a millisecond cannot overflow in practice.
  return Array.from(bytes, (b, i) => (i === 0 ? b % 16 : b % 32));
}

function increment(digits: number[]): number[] {
  const next = [...digits];
  for (let i = next.length - 1; i >= 0; i -= 1) {
    if (next[i]! < 31) {
      next[i]! += 1;
      return next;
    }
    next[i] = 0;
  }
  return freshRandom(); // 32^16 increments within one millisecond: not reachable
}

export function newId(prefix: string, now = Date.now()): string {
  let time = now;
  // Continue only from a recent id: an explicit older or future time (an import, a test clock) gets
  // its own time and does not hold back the ids that follow.
  if (now <= lastTime && lastTime - now < 1000 && lastRandom.length > 0) {
    time = lastTime;
    lastRandom = increment(lastRandom);
  } else {
    lastTime = now;
    lastRandom = freshRandom();
  }
  let encoded = '';
  let t = time;
  for (let i = 0; i < 10; i += 1) {
    encoded = ALPHABET[t % 32] + encoded;
    t = Math.floor(t / 32);
  }
  return `${prefix}_${encoded}${lastRandom.map((d) => ALPHABET[d]).join('')}`;
}
