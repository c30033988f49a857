/**
 * A small seeded PRNG (mulberry32). Every random choice in a run draws from one
 * of these so that a seed replays the run's choices.
 */
export class Rng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** A new generator whose sequence depends on this seed and `stream`. */
  fork(stream: number): Rng {
    return new Rng((this.state ^ Math.imul(stream + 1, 0x9e3779b1)) >>> 0);
  }
}
