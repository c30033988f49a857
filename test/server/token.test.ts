import { describe, expect, it } from 'vitest';
import { signToken, verifyToken } from '../../server/token.js';

const claims = { deviceId: 'd1', accountId: 'a1', expiresAtSec: 2_000_000_000 };

describe('device tokens', () => {
  it('round-trips the claims with the right secret', () => {
    const check = verifyToken(signToken(claims, 's3cret'), 's3cret', 1_900_000_000);
    expect(check).toEqual({ ok: true, claims });
  });

  it('refuses a token signed with another secret', () => {
    expect(verifyToken(signToken(claims, 'other'), 's3cret', 0)).toEqual({
      ok: false,
      problem: 'bad_signature',
    });
  });

  it('refuses a token whose claims were edited', () => {
    const token = signToken(claims, 's3cret');
    const [, sig] = token.split('.');
    const forged = Buffer.from(JSON.stringify({ d: 'd2', a: 'a1', exp: 2_000_000_000 })).toString(
      'base64url',
    );
    expect(verifyToken(`${forged}.${sig}`, 's3cret', 0)).toMatchObject({
      problem: 'bad_signature',
    });
  });

  it('refuses an expired token', () => {
    const token = signToken({ ...claims, expiresAtSec: 100 }, 's3cret');
    expect(verifyToken(token, 's3cret', 99).ok).toBe(true);
    expect(verifyToken(token, 's3cret', 100)).toEqual({ ok: false, problem: 'expired' });
  });

  it('refuses missing and malformed tokens', () => {
    expect(verifyToken(undefined, 's')).toMatchObject({ problem: 'missing' });
    expect(verifyToken('', 's')).toMatchObject({ problem: 'missing' });
    expect(verifyToken('nodot', 's')).toMatchObject({ problem: 'malformed' });
    expect(verifyToken('a.b.c', 's')).toMatchObject({ problem: 'malformed' });
  });
});
