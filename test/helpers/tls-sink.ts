/**
 * A lean-client sink for the TLS tests: records opens with their TLS timing,
 * text messages and closes, and hands them out in order (EventLog).
 */
import type {
  WsClientConnection,
  WsClientSink,
  WsCloseInfo,
  WsTlsTiming,
} from '../../loadgen/ws-client/connection.js';
import { EventLog } from './event-log.js';

export type TlsSinkEvent =
  | { kind: 'open'; timing: WsTlsTiming | undefined }
  | { kind: 'text'; text: string }
  | { kind: 'close'; info: WsCloseInfo };

export class TlsRecordingSink extends EventLog<TlsSinkEvent> implements WsClientSink {
  onOpen(conn: WsClientConnection): void {
    this.push({ kind: 'open', timing: conn.tlsTiming });
  }
  onText(_conn: WsClientConnection, text: string): void {
    this.push({ kind: 'text', text });
  }
  onClose(_conn: WsClientConnection, info: WsCloseInfo): void {
    this.push({ kind: 'close', info });
  }
}
