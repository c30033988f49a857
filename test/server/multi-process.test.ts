/**
 * Which processes of a multi-process node accept: the least loaded, with a
 * margin that keeps the role from flapping between near-equal processes.
 */
import { describe, expect, it } from 'vitest';
import { chooseAcceptors } from '../../server/multi-process.js';

describe('acceptors of a multi-process node', () => {
  it('picks the processes holding the fewest connections', () => {
    const none = [false, false, false, false];
    expect(chooseAcceptors([500, 10, 300, 20], none, 2)).toEqual([false, true, false, true]);
  });

  it('keeps an acceptor until another holds a margin fewer', () => {
    // Process 0 accepts and holds 20 more than process 1: it keeps the role.
    expect(chooseAcceptors([120, 100, 900], [true, false, false], 1)).toEqual([true, false, false]);
    // 100 more: the role moves.
    expect(chooseAcceptors([200, 100, 900], [true, false, false], 1)).toEqual([false, true, false]);
  });

  it('never picks a process that is gone, and picks what is left when too few remain', () => {
    expect(chooseAcceptors([undefined, 50, undefined], [true, false, false], 2)).toEqual([
      false,
      true,
      false,
    ]);
  });
});
