import { createHmac, timingSafeEqual } from 'node:crypto';

/** What a device token asserts: who the device is, whose it is, and until when. */
export interface DeviceClaims {
  /** Device id, unique per device. */
  deviceId: string;
  /** Account the device belongs to. */
  accountId: string;
  /** Expiry, seconds since the Unix epoch. */
  expiresAtSec: number;
}

/** Why a token was refused; the server answers 401 for every one of them. */
export type TokenProblem = 'missing' | 'malformed' | 'bad_signature' | 'expired';

/** The outcome of {@link verifyToken}. */
export type TokenCheck = { ok: true; claims: DeviceClaims } | { ok: false; problem: TokenProblem };

const ID_PATTERN = /^[A-Za-z0-9._:@-]{1,128}$/;

/** True when `id` is usable as a device or account id (1-128 chars of `A-Za-z0-9._:@-`). */
export function isValidId(id: string): boolean {
  return ID_PATTERN.test(id);
}

function sign(body: string, secret: string): string {
  return createHmac('sha256', secret).update(body).digest('base64url');
}

/**
 * Makes a device token: `base64url(JSON claims) "." base64url(HMAC-SHA256)`.
 * The claims are readable by anyone; only the signature needs the secret.
 */
export function signToken(claims: DeviceClaims, secret: string): string {
  const body = Buffer.from(
    JSON.stringify({ d: claims.deviceId, a: claims.accountId, exp: claims.expiresAtSec }),
  ).toString('base64url');
  return `${body}.${sign(body, secret)}`;
}

/** Checks a token's signature and expiry against `nowSec` (wall-clock seconds). */
export function verifyToken(
  token: string | null | undefined,
  secret: string,
  nowSec: number = Date.now() / 1000,
): TokenCheck {
  if (!token) return { ok: false, problem: 'missing' };
  const dot = token.indexOf('.');
  if (dot <= 0 || dot !== token.lastIndexOf('.')) return { ok: false, problem: 'malformed' };
  const body = token.slice(0, dot);
  const given = Buffer.from(token.slice(dot + 1), 'base64url');
  const expected = Buffer.from(sign(body, secret), 'base64url');
  // Compare in constant time so the signature cannot be guessed byte by byte.
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    return { ok: false, problem: 'bad_signature' };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
  } catch {
    return { ok: false, problem: 'malformed' };
  }
  if (typeof parsed !== 'object' || parsed === null) return { ok: false, problem: 'malformed' };
  const { d, a, exp } = parsed as Record<string, unknown>;
  if (typeof d !== 'string' || typeof a !== 'string' || typeof exp !== 'number') {
    return { ok: false, problem: 'malformed' };
  }
  if (!isValidId(d) || !isValidId(a)) return { ok: false, problem: 'malformed' };
  if (exp <= nowSec) return { ok: false, problem: 'expired' };
  return { ok: true, claims: { deviceId: d, accountId: a, expiresAtSec: exp } };
}
