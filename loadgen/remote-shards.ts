/**
 * The coordinator's side of load agents (loadgen/agent.ts): starts one child
 * process per placed process and gives the coordinator one handle per shard
 * that behaves like a worker thread (`postMessage`, `message`/`error`/`exit`
 * events, `terminate`), so the coordinator drives local threads and remote
 * shards alike.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { entryBeside } from '../core/runtime.js';
import type { DeviceWorkerData, FromAgent, FromWorker, ToAgent, ToWorker } from './messages.js';

/** What the coordinator needs of a shard, thread or remote. */
export interface ShardHandle {
  postMessage(msg: ToWorker): void;
  on(event: 'message', listener: (msg: FromWorker) => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
  on(event: 'exit', listener: (code: number) => void): this;
  terminate(): Promise<unknown>;
}

/** An agent's envelope as the shard handle's events, as a worker thread would emit them. */
export function emitFromAgent(shard: EventEmitter, msg: FromAgent): void {
  switch (msg.type) {
    case 'from-shard':
      shard.emit('message', msg.msg);
      break;
    case 'shard-error':
      shard.emit('error', new Error(msg.message));
      break;
    case 'shard-exit':
      shard.emit('exit', msg.code);
      break;
  }
}

/** One shard living in an agent process. */
export class RemoteShard extends EventEmitter implements ShardHandle {
  constructor(
    private readonly agent: LoadAgent,
    readonly shard: number,
  ) {
    super();
  }

  postMessage(msg: ToWorker): void {
    this.agent.send({ type: 'to-shard', shard: this.shard, msg });
  }

  terminate(): Promise<void> {
    return this.agent.stop();
  }
}

/** One agent process and its shards. */
export class LoadAgent {
  private readonly child: ChildProcess;
  private readonly shards = new Map<number, RemoteShard>();
  private readonly exited: Promise<void>;
  private gone = false;

  constructor(
    readonly index: number,
    shards: DeviceWorkerData[],
    /**
     * A network namespace to run in (a client host of the kernel engine):
     * `ip netns exec` enters it and execs node, so the pid and the IPC
     * channel stay the agent's own.
     */
    namespace?: string,
  ) {
    const entry = entryBeside(import.meta.url, './agent', { leanHeap: true });
    this.child = fork(entry.path, [], {
      ...(namespace === undefined
        ? { execArgv: entry.execArgv }
        : {
            execPath: 'ip',
            execArgv: ['netns', 'exec', namespace, process.execPath, ...entry.execArgv],
          }),
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    for (const data of shards)
      this.shards.set(data.workerIndex, new RemoteShard(this, data.workerIndex));
    this.child.on('message', (msg: FromAgent) => this.receive(msg));
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        this.gone = true;
        const status = code ?? (signal ? 128 : 1);
        // Every shard of a dead agent is dead; the coordinator decides whether that was expected.
        for (const s of this.shards.values()) s.emit('exit', status);
        resolve();
      });
    });
    this.child.on('error', (err) => {
      for (const s of this.shards.values()) s.emit('error', err);
    });
    this.send({ type: 'spawn', shards });
  }

  /** The agent's process id, for /proc readings. */
  get pid(): number | undefined {
    return this.child.pid;
  }

  handles(): RemoteShard[] {
    return [...this.shards.values()];
  }

  send(msg: ToAgent): void {
    if (!this.gone && this.child.connected) this.child.send(msg);
  }

  private receive(msg: FromAgent): void {
    const shard = this.shards.get(msg.shard);
    if (shard) emitFromAgent(shard, msg);
  }

  /** Closes the channel (the agent exits on its own) and kills it if it lingers. */
  async stop(): Promise<void> {
    if (this.gone) return;
    if (this.child.connected) this.child.disconnect();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(timer);
  }
}
