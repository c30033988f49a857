/**
 * Exact (Clopper-Pearson) confidence bounds for a binomial proportion, used to decide
 * whether a run delivered enough messages to claim a loss rate such as 1e-5.
 *
 * Everything reduces to the regularized incomplete beta function I_x(a, b), since
 * P(X <= k; n, p) = 1 - I_p(k + 1, n - k). Its front factor x^a (1-x)^b / B(a, b) is
 * computed with Loader's saddle-point form (stirlerr + bd0, as R's dbinom does) rather
 * than as a difference of log-gammas: for n near 1e9 the log-gammas are ~2e10 and their
 * difference would keep only ~6 significant digits. The continued fraction is
 * Lentz's method as in Numerical Recipes' betacf.
 */

const LN_SQRT_2PI = 0.9189385332046728;
const LN_2PI = 1.8378770664093453;

/** Lanczos coefficients for g = 7, n = 9 (accurate to ~1e-15 relative). */
const LANCZOS_G = 7;
const LANCZOS_COEFFICIENTS = [
  0.9999999999998099, 676.5203681218851, -1259.1392167224028, 771.3234287776531,
  -176.61502916214059, 12.507343278686905, -0.13857109526572012, 9.984369578019572e-6,
  1.5056327351493116e-7,
] as const;

/** The natural logarithm of the gamma function for x > 0 (Lanczos approximation). */
export function logGamma(x: number): number {
  if (!(x > 0) || !Number.isFinite(x)) {
    throw new RangeError(`logGamma: x must be finite and > 0, got ${x}`);
  }
  if (x < 0.5) {
    // Reflection keeps the approximation in its accurate range.
    return Math.log(Math.PI / Math.sin(Math.PI * x)) - logGamma(1 - x);
  }
  const z = x - 1;
  let sum = LANCZOS_COEFFICIENTS[0];
  for (let i = 1; i < LANCZOS_COEFFICIENTS.length; i++) {
    sum += (LANCZOS_COEFFICIENTS[i] ?? 0) / (z + i);
  }
  const t = z + LANCZOS_G + 0.5;
  return LN_SQRT_2PI + (z + 0.5) * Math.log(t) - t + Math.log(sum);
}

/**
 * stirlerr(n) = ln Γ(n+1) - [(n + 1/2) ln n - n + ln √(2π)], the error of Stirling's
 * formula. Small and smooth, so it can be computed without cancellation for large n.
 */
function stirlingError(n: number): number {
  if (n <= 15) return logGamma(n + 1) - (n + 0.5) * Math.log(n) + n - LN_SQRT_2PI;
  const s0 = 1 / 12;
  const s1 = 1 / 360;
  const s2 = 1 / 1260;
  const s3 = 1 / 1680;
  const s4 = 1 / 1188;
  const nn = n * n;
  if (n > 500) return (s0 - s1 / nn) / n;
  if (n > 80) return (s0 - (s1 - s2 / nn) / nn) / n;
  if (n > 35) return (s0 - (s1 - (s2 - s3 / nn) / nn) / nn) / n;
  return (s0 - (s1 - (s2 - (s3 - s4 / nn) / nn) / nn) / nn) / n;
}

/** bd0(x, m) = x ln(x/m) + m - x, the deviance term, computed without cancellation. */
function deviance(x: number, m: number): number {
  if (Math.abs(x - m) < 0.1 * (x + m)) {
    let v = (x - m) / (x + m);
    let s = (x - m) * v;
    let ej = 2 * x * v;
    v *= v;
    for (let j = 1; j < 1000; j++) {
      ej *= v;
      const next = s + ej / (2 * j + 1);
      if (next === s) return next;
      s = next;
    }
    return s;
  }
  return x * Math.log(x / m) + m - x;
}

/**
 * Γ(n+1) / (Γ(x+1) Γ(n-x+1)) p^x q^(n-x) for real 0 <= x <= n, with q = 1 - p supplied
 * by the caller so it keeps its own precision (Loader 2000).
 */
function binomialDensity(x: number, n: number, p: number, q: number): number {
  if (p === 0) return x === 0 ? 1 : 0;
  if (q === 0) return x === n ? 1 : 0;
  if (x === 0) return Math.exp(p < 0.1 ? -deviance(n, n * q) - n * p : n * Math.log(q));
  if (x === n) return Math.exp(q < 0.1 ? -deviance(n, n * p) - n * q : n * Math.log(p));
  if (x < 0 || x > n) return 0;
  const lc =
    stirlingError(n) -
    stirlingError(x) -
    stirlingError(n - x) -
    deviance(x, n * p) -
    deviance(n - x, n * q);
  const lf = LN_2PI + Math.log(x) + Math.log1p(-x / n);
  return Math.exp(lc - 0.5 * lf);
}

const TINY = 1e-300;
const CF_EPSILON = 1e-16;

/**
 * The continued fraction for I_x(a, b) (Numerical Recipes' betacf, modified Lentz).
 * Converges fast for x < (a+1)/(a+b+2); the number of terms grows like sqrt(min(a, b)).
 */
function betaContinuedFraction(x: number, a: number, b: number): number {
  const qab = a + b;
  const qap = a + 1;
  const qam = a - 1;
  let c = 1;
  let d = 1 - (qab * x) / qap;
  if (Math.abs(d) < TINY) d = TINY;
  d = 1 / d;
  let h = d;
  const maxTerms = 1000 + Math.ceil(20 * Math.sqrt(Math.min(a, b)));
  for (let m = 1; m <= maxTerms; m++) {
    const m2 = 2 * m;
    let aa = (m * (b - m) * x) / ((qam + m2) * (a + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < TINY) d = TINY;
    c = 1 + aa / c;
    if (Math.abs(c) < TINY) c = TINY;
    d = 1 / d;
    h *= d * c;
    aa = (-(a + m) * (qab + m) * x) / ((a + m2) * (qap + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < TINY) d = TINY;
    c = 1 + aa / c;
    if (Math.abs(c) < TINY) c = TINY;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < CF_EPSILON) return h;
  }
  // Not reached for the arguments this module produces; say so rather than return noise.
  throw new RangeError(`incomplete beta did not converge for x=${x}, a=${a}, b=${b}`);
}

/** I_x(a, b) and 1 - I_x(a, b), each to full relative precision, plus the density. */
interface BetaTails {
  lower: number;
  upper: number;
  density: number;
}

function betaTails(x: number, a: number, b: number): BetaTails {
  if (x <= 0) return { lower: 0, upper: 1, density: 0 };
  if (x >= 1) return { lower: 1, upper: 0, density: 0 };
  const y = 1 - x;
  // x^a y^b / B(a, b) = ab/(a+b) · C(a+b, a) x^a y^b, the latter a binomial density.
  const front = ((a * b) / (a + b)) * binomialDensity(a, a + b, x, y);
  const density = front / (x * y);
  if (x < (a + 1) / (a + b + 2)) {
    const lower = (front * betaContinuedFraction(x, a, b)) / a;
    return { lower, upper: 1 - lower, density };
  }
  const upper =
    Number.isInteger(a) && a <= FINITE_SUM_MAX_A
      ? binomialLowerTail(a - 1, a + b - 1, x, y)
      : (front * betaContinuedFraction(y, b, a)) / b;
  return { lower: 1 - upper, upper, density };
}

/**
 * Above this `a` the finite sum costs more than the continued fraction (it needs about
 * 9·sqrt(a) terms).
 */
const FINITE_SUM_MAX_A = 10_000_000;

/**
 * P(Bin(n, p) <= k) summed downwards from its largest term. Used for 1 - I_x(a, b) with
 * integer a, which equals P(Bin(a+b-1, x) <= a-1): the continued fraction in 1 - x loses
 * about n·ε/(nx - a) of relative precision there (1e-8 at n = 1e9), the sum does not.
 * The caller guarantees the terms shrink from k downwards (x is past the mean).
 */
function binomialLowerTail(k: number, n: number, p: number, q: number): number {
  let term = binomialDensity(k, n, p, q);
  let sum = term;
  const ratio = q / p;
  for (let j = k; j > 0; j--) {
    term *= (j / (n - j + 1)) * ratio;
    sum += term;
    if (term <= sum * 1e-17) break;
  }
  return sum;
}

/** The regularized incomplete beta function I_x(a, b) for a, b > 0 and x in [0, 1]. */
export function regularizedIncompleteBeta(x: number, a: number, b: number): number {
  if (!(a > 0 && b > 0) || Number.isNaN(x)) {
    throw new RangeError(
      `incomplete beta: need a > 0, b > 0 and x in [0, 1]; got ${x}, ${a}, ${b}`,
    );
  }
  return betaTails(x, a, b).lower;
}

/**
 * The p in (0, 1) with I_p(a, b) = target, by Newton's method kept inside a shrinking
 * bisection bracket. Solves on whichever tail is smaller so a target near 1 keeps its
 * precision.
 */
function inverseIncompleteBeta(target: number, a: number, b: number): number {
  const useUpper = target > 0.5;
  const goal = useUpper ? 1 - target : target;
  let lo = 0;
  let hi = 1;
  let x = a / (a + b);
  for (let i = 0; i < 400; i++) {
    const t = betaTails(x, a, b);
    // h is increasing in x and zero at the root.
    const h = useUpper ? goal - t.upper : t.lower - goal;
    if (h === 0) return x;
    if (h < 0) lo = x;
    else hi = x;
    let next = t.density > 0 ? x - h / t.density : Number.NaN;
    if (!(next > lo && next < hi)) next = lo + (hi - lo) / 2;
    if (Math.abs(next - x) <= 4 * Number.EPSILON * next || hi - lo <= 4 * Number.EPSILON * hi) {
      return next;
    }
    x = next;
  }
  return x;
}

function checkCounts(what: string, failures: number, trials: number, confidence: number): void {
  if (!Number.isFinite(failures) || failures < 0 || !Number.isFinite(trials) || trials < 0) {
    throw new RangeError(`${what}: counts must be finite and >= 0, got ${failures}/${trials}`);
  }
  if (!(confidence > 0 && confidence < 1)) {
    throw new RangeError(`${what}: confidence must be in (0, 1), got ${confidence}`);
  }
}

/**
 * The one-sided Clopper-Pearson upper bound on a binomial proportion: the p with
 * P(X <= failures; trials, p) = 1 - confidence. Returns 1 when trials = 0 or
 * failures >= trials. With 0 failures it equals 1 - (1 - confidence)^(1/trials).
 */
export function clopperPearsonUpper(failures: number, trials: number, confidence = 0.95): number {
  checkCounts('clopperPearsonUpper', failures, trials, confidence);
  if (trials === 0 || failures >= trials) return 1;
  if (failures === 0) return -Math.expm1(Math.log1p(-confidence) / trials);
  return inverseIncompleteBeta(confidence, failures + 1, trials - failures);
}

/**
 * The one-sided Clopper-Pearson lower bound on a binomial proportion: the p with
 * P(X >= failures; trials, p) = 1 - confidence. Returns 0 when failures = 0 or trials = 0.
 */
export function clopperPearsonLower(failures: number, trials: number, confidence = 0.95): number {
  checkCounts('clopperPearsonLower', failures, trials, confidence);
  if (trials === 0 || failures === 0) return 0;
  if (failures >= trials) return Math.exp(Math.log1p(-confidence) / trials);
  return inverseIncompleteBeta(1 - confidence, failures, trials - failures + 1);
}

/**
 * The smallest number of trials n >= failures for which
 * `clopperPearsonUpper(failures, n, confidence) <= maxRate`: how many messages a run must
 * accept, with this many losses, before it can claim a loss rate of at most `maxRate`.
 * Returns `failures` when maxRate >= 1 and Infinity when no n can do it (maxRate <= 0,
 * or n would pass 2^53).
 */
export function requiredTrials(failures: number, maxRate: number, confidence = 0.95): number {
  checkCounts('requiredTrials', failures, 0, confidence);
  if (Number.isNaN(maxRate)) throw new RangeError('requiredTrials: maxRate is NaN');
  if (maxRate >= 1) return failures;
  if (maxRate <= 0) return Number.POSITIVE_INFINITY;
  const enough = (n: number): boolean => clopperPearsonUpper(failures, n, confidence) <= maxRate;
  // Invariant: enough(lo) is false (the bound is 1 at n = failures), enough(hi) is true.
  let lo = failures;
  let hi = Math.max(failures * 2, 1);
  while (!enough(hi)) {
    lo = hi;
    hi *= 2;
    if (hi > Number.MAX_SAFE_INTEGER) return Number.POSITIVE_INFINITY;
  }
  while (hi - lo > 1) {
    const mid = lo + Math.floor((hi - lo) / 2);
    if (enough(mid)) hi = mid;
    else lo = mid;
  }
  return hi;
}

/**
 * P(B <= k) for B ~ Binomial(n, p): I_{1-p}(n - k, k + 1), exact to the incomplete
 * beta's precision. 0 for k < 0, 1 for k >= n.
 */
export function binomialCdf(k: number, n: number, p: number): number {
  if (k < 0) return 0;
  if (k >= n) return 1;
  if (p <= 0) return 1;
  if (p >= 1) return 0;
  return betaTails(1 - p, n - k, k + 1).lower;
}

/** ln C(n, k) for 0 <= k <= n. */
function logChoose(n: number, k: number): number {
  return logGamma(n + 1) - logGamma(k + 1) - logGamma(n - k + 1);
}

/**
 * Fisher's exact test on a 2x2 table: `a` of `n1` against `b` of `n2` (e.g. messages lost
 * of those accepted, in two runs). Two-sided: the probability, with the margins fixed,
 * of a table at most as likely as the one seen. Near 1 when the two proportions agree.
 */
export function fisherExact(a: number, n1: number, b: number, n2: number): number {
  for (const [v, what] of [
    [a, 'a'],
    [n1, 'n1'],
    [b, 'b'],
    [n2, 'n2'],
  ] as const) {
    if (!Number.isInteger(v) || v < 0)
      throw new RangeError(`fisherExact: ${what} must be a whole number >= 0, got ${v}`);
  }
  if (a > n1 || b > n2)
    throw new RangeError(`fisherExact: ${a}/${n1} or ${b}/${n2} is more than its total`);
  const total = n1 + n2;
  const hits = a + b;
  if (total === 0 || hits === 0 || hits === total) return 1;
  const base = logChoose(total, n1);
  const logPmf = (x: number) => logChoose(hits, x) + logChoose(total - hits, n1 - x) - base;
  const observed = logPmf(a);
  let p = 0;
  for (let x = Math.max(0, n1 + hits - total); x <= Math.min(hits, n1); x++) {
    const lp = logPmf(x);
    // A relative tolerance keeps tables as likely as the observed one (ties) in.
    if (lp <= observed + 1e-7) p += Math.exp(lp);
  }
  return Math.min(1, p);
}

/**
 * Two-sided test that two Poisson counts came from one rate: `a` events in `ta` and `b`
 * in `tb` (any time unit). Given a + b, a is Binomial(a + b, ta / (ta + tb)) under equal
 * rates; the p-value is twice the smaller tail, at most 1.
 */
export function poissonRatesTest(a: number, ta: number, b: number, tb: number): number {
  const n = a + b;
  if (n === 0 || !(ta > 0 && tb > 0)) return 1;
  const p = ta / (ta + tb);
  const lower = binomialCdf(a, n, p);
  const upper = 1 - binomialCdf(a - 1, n, p);
  return Math.min(1, 2 * Math.min(lower, upper));
}

/**
 * Welch's t-test on two small samples (e.g. one figure over the repeats of two
 * variants): the two-sided p-value that their means are equal. With no spread in
 * either sample the means are either equal (p = 1) or plainly not (p = 0). Samples of
 * fewer than two values cannot be tested: p = 1.
 */
export function welchTest(a: readonly number[], b: readonly number[]): number {
  if (a.length < 2 || b.length < 2) return 1;
  const mean = (x: readonly number[]) => x.reduce((s, v) => s + v, 0) / x.length;
  const variance = (x: readonly number[], m: number) =>
    x.reduce((s, v) => s + (v - m) ** 2, 0) / (x.length - 1);
  const ma = mean(a);
  const mb = mean(b);
  const va = variance(a, ma) / a.length;
  const vb = variance(b, mb) / b.length;
  if (va + vb === 0) return ma === mb ? 1 : 0;
  const t = (ma - mb) / Math.sqrt(va + vb);
  const df = (va + vb) ** 2 / (va ** 2 / (a.length - 1) + vb ** 2 / (b.length - 1));
  // Two-sided Student t tail: I_{df/(df+t²)}(df/2, 1/2).
  return Math.min(1, regularizedIncompleteBeta(df / (df + t * t), df / 2, 0.5));
}

/**
 * The standard normal quantile: the z with Φ(z) = p, for p in (0, 1) (Acklam's rational
 * approximation, relative error below 1.2e-9).
 */
export function normalQuantile(p: number): number {
  if (!(p > 0 && p < 1)) throw new RangeError(`normalQuantile: p must be in (0, 1), got ${p}`);
  const a = [
    -39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716,
    2.506628277459239,
  ];
  const b = [
    -54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972,
    -13.28068155288572,
  ];
  const c = [
    -0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734,
    4.374664141464968, 2.938163982698783,
  ];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const low = 0.02425;
  if (p < low) {
    const q = Math.sqrt(-2 * Math.log(p));
    return (
      (((((c[0]! * q + c[1]!) * q + c[2]!) * q + c[3]!) * q + c[4]!) * q + c[5]!) /
      ((((d[0]! * q + d[1]!) * q + d[2]!) * q + d[3]!) * q + 1)
    );
  }
  if (p > 1 - low) return -normalQuantile(1 - p);
  const q = p - 0.5;
  const r = q * q;
  return (
    ((((((a[0]! * r + a[1]!) * r + a[2]!) * r + a[3]!) * r + a[4]!) * r + a[5]!) * q) /
    (((((b[0]! * r + b[1]!) * r + b[2]!) * r + b[3]!) * r + b[4]!) * r + 1)
  );
}

/**
 * Repeats per variant a two-sample comparison needs to tell a difference of means
 * `delta` with 80 % power, given the per-repeat standard deviation `sd`, at 95 % for
 * one test alone, or for one of `tests` at once (Bonferroni, α = 0.05 / tests): normal
 * approximation `2 (z(1 - α/2) + z(0.8))² sd² / delta²`. Infinity when delta is 0.
 */
export function repeatsNeeded(delta: number, sd: number, tests = 1): number {
  if (delta === 0) return Number.POSITIVE_INFINITY;
  if (sd === 0) return 2;
  const z = normalQuantile(1 - 0.05 / (2 * Math.max(1, tests))) + normalQuantile(0.8);
  return Math.max(2, Math.ceil((2 * z * z * sd * sd) / (delta * delta)));
}
