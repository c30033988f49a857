/**
 * The coordinator's side of the join channel (protocol.ts): listens, admits
 * agents that bring the run's token and the same pushbench, answers their
 * clock requests with the coordinator's clock, keeps what they say about
 * themselves (host facts, clock offsets, resources), and gives the
 * coordinator one shard host per agent (loadgen/shards.ts `ShardHost`), whose
 * shards behave like worker threads. An agent lost before the run ends fails
 * the run with `PB_AGENT_LOST` (exit 6), naming the agent.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { type WebSocket, WebSocketServer } from 'ws';
import { monoNowUs } from '../../core/clock.js';
import { PushbenchError } from '../../core/errors.js';
import type { LoadAgentRecord } from '../../core/result.js';
import { version } from '../../core/version.js';
import type { DeviceWorkerData, FromWorker, ToWorker } from '../messages.js';
import { emitFromAgent, type ShardHandle } from '../remote-shards.js';
import type { NamedShard, ShardHost } from '../shards.js';
import {
  type AgentText,
  type CoordinatorText,
  encodeBinary,
  JOIN_PROTOCOL,
  JoinClose,
  JoinProtocolError,
  parseAgentBinary,
  parseAgentText,
} from './protocol.js';

/** How long a new connection has to say `hello`. */
const HELLO_DEADLINE_MS = 10_000;
/** How long `close()` waits for agents to leave after `end`. */
const END_WAIT_MS = 5000;

/** One agent, as the report shows it. */
export type AgentRecord = LoadAgentRecord;

/** An admitted agent. */
class Agent {
  readonly record: AgentRecord;
  /** Its shards by worker index, once spawned. */
  readonly shards = new Map<number, RemoteShard>();
  private firstOffset: { atUs: number; offsetUs: number } | undefined;
  ended = false;
  readonly closed: Promise<void>;

  constructor(
    readonly ws: WebSocket,
    socket: Socket,
    index: number,
    hello: Extract<AgentText, { t: 'hello' }>,
    address: string,
    private readonly listener: AgentListener,
  ) {
    this.record = {
      index,
      name: hello.name,
      address,
      pushbench: hello.pushbench,
      node: hello.node,
      facts: hello.facts,
      devices: 0,
      clock: null,
      resources: null,
      refused: 0,
      channel: { bytesIn: 0, bytesOut: 0, seconds: 0 },
      lost: null,
    };
    const base = { in: socket.bytesRead, out: socket.bytesWritten, atMs: performance.now() };
    this.readChannel = () => {
      this.record.channel = {
        bytesIn: socket.bytesRead - base.in,
        bytesOut: socket.bytesWritten - base.out,
        seconds: Math.round(performance.now() - base.atMs) / 1000,
      };
    };
    this.closed = new Promise((resolve) =>
      ws.once('close', () => {
        this.readChannel();
        this.readChannel = () => {};
        resolve();
      }),
    );
  }

  /** Brings `record.channel` up to date (frozen once the channel closed). */
  readChannel: () => void;

  send(msg: CoordinatorText): void {
    if (this.ws.readyState === this.ws.OPEN) this.ws.send(JSON.stringify(msg));
  }

  sendBinary(data: Buffer): void {
    if (this.ws.readyState === this.ws.OPEN) this.ws.send(data);
  }

  refuse(why: string): void {
    this.record.refused++;
    this.listener.notice(`agent ${this.record.name}: refused a message (${why})`);
  }

  text(msg: AgentText): void {
    switch (msg.t) {
      case 'hello':
        this.refuse('a second hello');
        break;
      case 'clock':
        this.send({ t: 'clock', id: msg.id, us: monoNowUs() });
        break;
      case 'offset': {
        const now = monoNowUs();
        this.firstOffset ??= { atUs: now, offsetUs: msg.offsetUs };
        const spanS = (now - this.firstOffset.atUs) / 1e6;
        const before = this.record.clock;
        this.record.clock = {
          offsetUs: msg.offsetUs,
          uncertaintyUs: msg.uncertaintyUs,
          roundTripUs: msg.roundTripUs,
          samples: msg.samples,
          worstUncertaintyUs: Math.max(before?.worstUncertaintyUs ?? 0, msg.uncertaintyUs),
          estimates: (before?.estimates ?? 0) + 1,
          driftUsPerS: spanS >= 1 ? (msg.offsetUs - this.firstOffset.offsetUs) / spanS : null,
        };
        this.listener.emit('offset', this.record);
        break;
      }
      case 'stats':
        this.record.resources = {
          processes: msg.processes,
          rssBytes: msg.rssBytes,
          cpuSeconds: msg.cpuSeconds,
        };
        break;
    }
  }

  binary(data: Buffer): void {
    const msg = parseAgentBinary(data);
    const shard = this.shards.get(msg.shard);
    if (!shard) throw new JoinProtocolError(`shard ${msg.shard} is not this agent's`);
    // A shard says ready, ramp-done and final once each, and only for itself.
    if (msg.type === 'from-shard') shard.note(msg.msg);
    emitFromAgent(shard, msg);
  }

  /** The agent is gone: before the run ended, every shard of it fails the run. */
  lost(why: string): void {
    const shards = [...this.shards.values()];
    // Ended by the run, or gone after every shard sent its final: nothing is missing.
    if (this.ended || (shards.length > 0 && shards.every((s) => s.done))) {
      for (const s of shards) s.emit('exit', 0);
      return;
    }
    this.record.lost = why;
    // Before the start it holds nothing yet: its place is free for another agent.
    if (!this.listener.hasStarted) {
      this.listener.forget(this);
      return;
    }
    if (this.listener.tolerates(this.record.devices)) {
      this.record.lost = `${why} (tolerated: --agents-tolerate)`;
      this.listener.notice(
        `load agent ${this.record.name} (${this.record.address}, ${this.record.devices} devices) was lost: ${why}; the run goes on without it (--agents-tolerate), its devices held nothing more and messages to them count as lost`,
      );
      for (const s of this.shards.values()) s.standIn();
      return;
    }
    const err = new PushbenchError(
      'PB_AGENT_LOST',
      `load agent ${this.record.name} (${this.record.address}, ${this.record.devices} devices) was lost: ${why}`,
    );
    for (const s of this.shards.values()) s.emit('error', err);
  }

  async end(): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    this.send({ t: 'end' });
    const timer = setTimeout(() => this.ws.terminate(), END_WAIT_MS);
    await this.closed;
    clearTimeout(timer);
  }
}

/** One shard on a remote agent: a worker-thread-like handle. */
class RemoteShard extends EventEmitter implements ShardHandle {
  /** What the shard has said so far, to stand in for it if its agent is lost (tolerated). */
  private ready = false;
  private rampDone = false;
  private finalSent = false;
  private open = 0;
  private established = 0;

  constructor(
    private readonly agent: Agent,
    readonly shard: number,
    /** Its initial devices, and the global index of its first. */
    private readonly devices: number,
  ) {
    super();
  }

  /** True once its final has arrived. */
  get done(): boolean {
    return this.finalSent;
  }

  /**
   * Checks a relayed message against what this shard has said so far (ready,
   * ramp-done and its final once each, its own worker index) and keeps what a
   * stand-in would need; throws {@link JoinProtocolError} for one out of order.
   */
  note(msg: FromWorker): void {
    if ('workerIndex' in msg && msg.workerIndex !== this.shard) {
      throw new JoinProtocolError(`shard ${this.shard} sent worker ${msg.workerIndex}'s message`);
    }
    const once = (seen: boolean) => {
      if (seen) throw new JoinProtocolError(`shard ${this.shard} sent ${msg.type} twice`);
    };
    switch (msg.type) {
      case 'ready':
        once(this.ready);
        this.ready = true;
        break;
      case 'ramp-done':
        once(this.rampDone);
        this.rampDone = true;
        break;
      case 'device-final':
        once(this.finalSent);
        this.finalSent = true;
        break;
      case 'device-interval':
        this.open = msg.open;
        this.established = msg.established;
        break;
      default:
        break;
    }
  }

  /**
   * Its agent is gone and the run tolerates it: the messages the coordinator
   * still waits for, saying what is known. Its devices count as requested,
   * established as last reported, held by nobody; it delivered nothing more,
   * so messages to its devices count as lost, never as delivered.
   */
  standIn(): void {
    if (!this.ready) {
      this.ready = true;
      this.emit('message', { type: 'ready', role: 'devices' } satisfies FromWorker);
    }
    if (!this.rampDone) {
      this.rampDone = true;
      this.emit('message', {
        type: 'ramp-done',
        workerIndex: this.shard,
        established: new Int32Array(0),
        failed: 0,
      } satisfies FromWorker);
    }
    if (this.finalSent) return;
    this.finalSent = true;
    this.emit('message', {
      type: 'device-final',
      workerIndex: this.shard,
      requested: this.devices,
      established: this.established,
      heldAtEnd: 0,
      failuresByReason: {},
      closesByCode: {},
      lossesByCause: this.open > 0 ? { agent_lost: this.open } : {},
      reconnectingAtEnd: 0,
      histograms: {},
      delivered: new Uint8Array(0),
      late: new Uint8Array(0),
      duplicates: 0,
      drops: new Float64Array(0),
      dropNodes: new Int32Array(0),
      nodeNames: [],
      gaveUp: 0,
      badFrames: 0,
      traffic: null,
      self: { elu: 0, lagP99Ms: 0, lagMaxMs: 0 },
    } satisfies FromWorker);
  }

  postMessage(msg: ToWorker): void {
    this.agent.sendBinary(encodeBinary({ t: 'to-shard', shard: this.shard, msg }));
  }

  terminate(): Promise<void> {
    return this.agent.end();
  }
}

/** Settings of {@link AgentListener.listen}. */
export interface ListenOptions {
  host: string;
  port: number;
  token: string;
  /** Agents the run waits for. */
  expect: number;
  /** One line per event worth telling the user. */
  notice?: (line: string) => void;
  /** How long a new connection has to say `hello`, ms. Default 10 s. */
  helloDeadlineMs?: number;
  /** Serve `wss://` with this certificate and key (PEM); default plain `ws://`. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Agents may be lost mid-run while the devices they held total at most this share (0-1) of the fleet. Default 0. */
  tolerateShare?: number;
}

/** Listens for agents and holds those admitted. */
export class AgentListener extends EventEmitter<{ joined: [AgentRecord]; offset: [AgentRecord] }> {
  private readonly agents: Agent[] = [];
  private started = false;
  /** Pending {@link waitForAgents} calls' cleanups. */
  private readonly waits = new Set<() => void>();
  /** Agents that joined and left before the start. */
  private readonly departed: string[] = [];
  /** Devices on agents lost so far (tolerated), and on all agents. */
  private lostDevices = 0;
  private placedDevices = 0;
  private readonly tokenDigest: Buffer;
  /** Connections refused at the door (token, version, hello), for the report. */
  readonly refusals: string[] = [];

  private constructor(
    private readonly wss: WebSocketServer,
    private readonly options: ListenOptions,
  ) {
    super();
    this.tokenDigest = createHash('sha256').update(options.token).digest();
    wss.on('connection', (ws, req) => this.accept(ws, req.socket));
  }

  /** Starts listening; rejects with one line when the address cannot be had. */
  static listen(options: ListenOptions): Promise<AgentListener> {
    return new Promise((resolve, reject) => {
      const fail = (err: NodeJS.ErrnoException) =>
        reject(
          new PushbenchError(
            err.code === 'EADDRINUSE' ? 'PB_PORT_IN_USE' : 'PB_USAGE',
            `cannot listen for agents on ${options.host}:${options.port}: ${err.message}`,
          ),
        );
      const tokenDigest = createHash('sha256').update(options.token).digest();
      const settings = {
        perMessageDeflate: false,
        // The largest an agent sends is a shard's final (ledger bitsets, drops): tens of MB at most.
        maxPayload: 64 * 2 ** 20,
        // The token is checked at the upgrade, before a frame is read: a stranger gets 401.
        verifyClient: (
          info: { req: { headers: Record<string, string | string[] | undefined> } },
          done: (ok: boolean, status?: number, message?: string) => void,
        ) => {
          const header = info.req.headers.authorization;
          const given =
            typeof header === 'string' && header.startsWith('Bearer ') ? header.slice(7) : '';
          const ok = timingSafeEqual(createHash('sha256').update(given).digest(), tokenDigest);
          done(ok, 401, 'wrong token');
        },
      };
      if (options.tls === undefined) {
        const wss = new WebSocketServer({ host: options.host, port: options.port, ...settings });
        wss.once('listening', () => resolve(new AgentListener(wss, options)));
        wss.once('error', fail);
        return;
      }
      let server: ReturnType<typeof createHttpsServer>;
      try {
        server = createHttpsServer({ cert: options.tls.cert, key: options.tls.key });
      } catch (err) {
        reject(
          new PushbenchError(
            'PB_USAGE',
            `the agents' TLS certificate or key cannot be used: ${(err as Error).message}`,
          ),
        );
        return;
      }
      const wss = new WebSocketServer({ server, ...settings });
      // ws re-emits the HTTPS server's errors on itself.
      wss.once('error', fail);
      server.listen(options.port, options.host, () => resolve(new AgentListener(wss, options)));
    });
  }

  /** Where agents join: `ws://host:port`, or `wss://` with TLS. */
  get url(): string {
    const a = this.wss.address() as AddressInfo;
    const scheme = this.options.tls === undefined ? 'ws' : 'wss';
    return `${scheme}://${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}`;
  }

  notice(line: string): void {
    this.options.notice?.(line);
  }

  /** The admitted agents' records, in join order. */
  records(): AgentRecord[] {
    return this.agents.map((a) => {
      a.readChannel();
      return a.record;
    });
  }

  private accept(ws: WebSocket, socket: Socket): void {
    const address = socket.remoteAddress ?? 'unknown';
    let agent: Agent | undefined;
    let refused = false;
    const door = (code: number, why: string) => {
      if (refused) return;
      refused = true;
      this.refusals.push(`${address}: ${why}`);
      this.notice(`agent at ${address} refused: ${why}`);
      ws.close(code, why.slice(0, 120));
    };
    const helloMs = this.options.helloDeadlineMs ?? HELLO_DEADLINE_MS;
    const deadline = setTimeout(
      () => door(JoinClose.HelloTimeout, `no hello within ${helloMs / 1000} s`),
      helloMs,
    );
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      // A refused connection is closing: nothing it says counts.
      if (refused) return;
      try {
        if (agent === undefined) {
          if (isBinary) throw new JoinProtocolError('a binary frame before hello');
          const msg = parseAgentText(data.toString('utf8'));
          if (msg.t !== 'hello') throw new JoinProtocolError(`${msg.t} before hello`);
          clearTimeout(deadline);
          agent = this.admit(ws, socket, msg, address, door);
          return;
        }
        if (isBinary) agent.binary(data);
        else agent.text(parseAgentText(data.toString('utf8')));
      } catch (err) {
        const why = err instanceof JoinProtocolError ? err.message : String(err);
        if (agent === undefined) {
          clearTimeout(deadline);
          door(JoinClose.Malformed, `malformed hello: ${why}`);
        } else {
          agent.refuse(why);
        }
      }
    });
    ws.on('close', (code, reason) => {
      clearTimeout(deadline);
      agent?.lost(
        `its connection closed (code ${code}${reason.length > 0 ? `: ${reason.toString('utf8')}` : ''})`,
      );
    });
    ws.on('error', () => {
      // 'close' follows with the code.
    });
  }

  private admit(
    ws: WebSocket,
    socket: Socket,
    hello: Extract<AgentText, { t: 'hello' }>,
    address: string,
    door: (code: number, why: string) => void,
  ): Agent | undefined {
    const given = createHash('sha256').update(hello.token).digest();
    if (!timingSafeEqual(given, this.tokenDigest)) {
      door(JoinClose.BadToken, 'wrong token');
      return undefined;
    }
    if (hello.protocol !== JOIN_PROTOCOL || hello.pushbench !== version) {
      door(
        JoinClose.VersionMismatch,
        `version mismatch: the coordinator runs pushbench ${version} (join protocol ${JOIN_PROTOCOL}), the agent ${hello.pushbench} (protocol ${hello.protocol})`,
      );
      return undefined;
    }
    if (this.started || this.agents.length >= this.options.expect) {
      door(
        JoinClose.RunFull,
        `the run has its ${this.options.expect} agent${this.options.expect === 1 ? '' : 's'}`,
      );
      return undefined;
    }
    if (this.agents.some((a) => a.record.name === hello.name)) {
      door(
        JoinClose.RunFull,
        `an agent named ${hello.name} has already joined: give each agent its own --name`,
      );
      return undefined;
    }
    const agent = new Agent(ws, socket, this.agents.length, hello, address, this);
    this.agents.push(agent);
    agent.send({ t: 'welcome', index: agent.record.index, name: hello.name });
    this.notice(
      `agent ${hello.name} joined from ${address}: ${hello.facts.cores} cores, ${(hello.facts.memoryBytes / 2 ** 30).toFixed(1)} GiB, offers ${hello.facts.maxDevices.toLocaleString('en-US')} devices (${this.agents.length} of ${this.options.expect})`,
    );
    this.emit('joined', agent.record);
    return agent;
  }

  /**
   * Resolves once `expect` agents have joined and each has reported a clock
   * offset; rejects with `PB_AGENTS_MISSING` (exit 2) after `timeoutMs`, saying
   * who joined and how many are missing.
   */
  waitForAgents(timeoutMs: number): Promise<AgentRecord[]> {
    const ready = () =>
      this.agents.length >= this.options.expect &&
      this.agents.every((a) => a.record.clock !== null && a.record.lost === null);
    return new Promise((resolve, reject) => {
      if (ready()) {
        resolve(this.records());
        return;
      }
      const check = () => {
        if (!ready()) return;
        cleanup();
        resolve(this.records());
      };
      const timer = setTimeout(() => {
        cleanup();
        const joined = this.agents.filter((a) => a.record.lost === null);
        const missing = this.options.expect - joined.length;
        reject(
          new PushbenchError(
            'PB_AGENTS_MISSING',
            `waited ${Math.round(timeoutMs / 1000)} s for ${this.options.expect} agent${this.options.expect === 1 ? '' : 's'} at ${this.url}: ${joined.length} joined (${joined.map((a) => `${a.record.name} from ${a.record.address}`).join(', ') || 'none'}), ${missing} missing${this.refusals.length > 0 ? `; refused: ${this.refusals.join('; ')}` : ''}`,
          ),
        );
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.off('joined', check);
        this.off('offset', check);
        this.waits.delete(cleanup);
      };
      this.waits.add(cleanup);
      this.on('joined', check);
      this.on('offset', check);
    });
  }

  /**
   * Sends each agent its shards (`processesOf[k]`: agent k's processes, each
   * a group of shards) and returns one shard host per agent for the coordinator.
   */
  start(data: DeviceWorkerData[], shardProcess: number[], processesOf: number[][]): ShardHost[] {
    this.started = true;
    // One that left between the wait and now (while the nodes started) has no shards to fail.
    const gone = this.agents.filter((a) => a.record.lost !== null || a.ws.readyState !== a.ws.OPEN);
    if (gone.length > 0 || this.agents.length < this.options.expect) {
      const names = [...gone.map((a) => a.record.name), ...this.departed].join(', ');
      throw new PushbenchError(
        'PB_AGENT_LOST',
        `load agent ${names || '(unnamed)'} left while the run was starting, after its devices were placed`,
      );
    }
    return this.agents.map((agent, k) => {
      const groups = (processesOf[k] ?? []).map((p) =>
        data.filter((_, i) => shardProcess[i] === p),
      );
      const shards: NamedShard[] = [];
      for (const d of groups.flat()) {
        const handle = new RemoteShard(agent, d.workerIndex, d.deviceCount);
        agent.shards.set(d.workerIndex, handle);
        shards.push({ name: `device shard ${d.workerIndex} (agent ${agent.record.name})`, handle });
        agent.record.devices += d.deviceCount + d.reserveCount;
        this.placedDevices += d.deviceCount + d.reserveCount;
      }
      if (groups.length > 0) agent.sendBinary(encodeBinary({ t: 'spawn', groups }));
      return { shards, pids: () => [], group: agent.record.name };
    });
  }

  /** The worker indices of agent `name`'s shards (empty before the start). */
  shardsOf(name: string): number[] {
    const agent = this.agents.find((a) => a.record.name === name);
    return agent === undefined ? [] : [...agent.shards.keys()];
  }

  /** The fleet was handed out: agents hold shards from now on. */
  get hasStarted(): boolean {
    return this.started;
  }

  /** Drops an agent lost before the start, so that another may take its place. */
  forget(agent: Agent): void {
    const at = this.agents.indexOf(agent);
    if (at < 0) return;
    this.agents.splice(at, 1);
    this.departed.push(agent.record.name);
    this.notice(
      `agent ${agent.record.name} left before the run started (${agent.record.lost}); waiting for another`,
    );
  }

  /** True (and counted) when losing `devices` more keeps the run within its tolerance. */
  tolerates(devices: number): boolean {
    const share = this.options.tolerateShare ?? 0;
    if (!(share > 0) || this.placedDevices === 0) return false;
    if ((this.lostDevices + devices) / this.placedDevices > share) return false;
    this.lostDevices += devices;
    return true;
  }

  /** Ends every agent's part of the run and stops listening. */
  async close(): Promise<void> {
    // A wait given up on (the run failed otherwise) holds no timer.
    for (const cleanup of [...this.waits]) cleanup();
    await Promise.all(this.agents.map((a) => a.end()));
    for (const ws of this.wss.clients) ws.terminate();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
    // With TLS the HTTPS server is ours to close; ws leaves a server it was given open.
    const server = (this.wss.options as { server?: { close(cb: () => void): void } }).server;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
