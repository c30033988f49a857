import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CloseCode, closeCodeTable, retryableCloseCodes } from '../../core/ws/close-codes.js';
import { isValidCloseCode } from '../../core/ws/frame.js';

interface DocRow {
  code: number;
  name: string;
  sentWhen: string;
  reconnect: boolean;
}

/** The rows of the markdown table under `## Close codes` in docs/protocol.md. */
function documentedCloseCodes(): DocRow[] {
  const markdown = readFileSync(new URL('../../docs/protocol.md', import.meta.url), 'utf8');
  const section = markdown.split(/^## /m).find((s) => s.startsWith('Close codes\n'));
  if (section === undefined) throw new Error('docs/protocol.md has no "## Close codes" section');
  const lines = section.split('\n').filter((line) => line.startsWith('|'));
  const [header, separator, ...body] = lines;
  expect(header).toBe('| code | name | sent when | reconnect |');
  expect(separator).toMatch(/^\|(---\|)+$/);
  return body.map((line) => {
    const cells = line
      .slice(1, -1)
      .split('|')
      .map((cell) => cell.trim());
    const [code, name, sentWhen, reconnect] = cells;
    const advice = /^\**(yes|no)\b/.exec(reconnect ?? '')?.[1];
    if (cells.length !== 4 || advice === undefined) {
      throw new Error(`docs/protocol.md close-code row does not parse: ${line}`);
    }
    return {
      code: Number(code),
      name: (name ?? '').replaceAll('`', ''),
      sentWhen: sentWhen ?? '',
      reconnect: advice === 'yes',
    };
  });
}

describe('the close-code table', () => {
  it('is what docs/protocol.md documents, row for row', () => {
    const inCode = closeCodeTable.map(({ code, name, reconnect }) => ({ code, name, reconnect }));
    const inDocs = documentedCloseCodes().map(({ code, name, reconnect }) => ({
      code,
      name,
      reconnect,
    }));
    expect(inDocs).toEqual(inCode);
  });

  it('lists each code and each name once, in code order', () => {
    const codes = closeCodeTable.map((row) => row.code);
    expect(new Set(codes).size).toBe(codes.length);
    expect(new Set(closeCodeTable.map((row) => row.name)).size).toBe(codes.length);
    expect(codes).toEqual([...codes].sort((a, b) => a - b));
  });

  it('gives CloseCode and retryableCloseCodes from its rows', () => {
    expect(Object.entries(CloseCode)).toEqual(closeCodeTable.map((row) => [row.name, row.code]));
    expect([...retryableCloseCodes]).toEqual(
      closeCodeTable.filter((row) => row.reconnect).map((row) => row.code),
    );
  });

  it('keeps the codes a device reconnects after as they were before the table', () => {
    expect([...retryableCloseCodes].sort((a, b) => a - b)).toEqual([
      1000, 1001, 1006, 1011, 4002, 4008,
    ]);
  });

  it('documents as never sent exactly the codes RFC 6455 keeps off the wire', () => {
    const offWire = closeCodeTable.filter((row) => !isValidCloseCode(row.code));
    expect(offWire.map((row) => row.name)).toEqual(['NoStatus', 'Abnormal']);
    const neverSent = documentedCloseCodes().filter((row) =>
      row.sentWhen.startsWith('(never sent)'),
    );
    expect(neverSent.map((row) => row.code)).toEqual(offWire.map((row) => row.code));
  });
});
