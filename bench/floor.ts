/**
 * The Node floor beside pushbench, in one run: what a connect, a server write
 * and a device read cost when nothing but raw `net` does them, and what they
 * cost pushbench's node and lean client on the same box a moment later.
 *
 * The floor is this file's own minimal code, nothing from the project's hot
 * path: a `net` server that answers any request with a fixed 101 (no HTTP
 * parser, no token, no accept key computed), raw `net.connect` clients that
 * write a fixed upgrade request and count 60-byte frames by their length. Then
 * pushbench: `pushbench serve` as its own process, lean-client devices with
 * real signed tokens, each subscribed to one room, and room messages published
 * over HTTP, which the node frames once and writes to every member.
 *
 * Then heartbeats: the floor's server writes a 2-byte ping to every socket once
 * a second, spread over the second in ten slices, its clients answer each with
 * a 6-byte masked pong, and the server reads it; pushbench's node does the same
 * with its own sweep (a second node, heartbeats every second, so the connect
 * and message figures above carry none). Held for `holdSeconds`.
 *
 * CPU is read from /proc for the server process and from `process.cpuUsage()`
 * for the clients (this process). Figures are µs per connection (both ends),
 * per message (server write, client read) and per ping + pong (both ends),
 * with pushbench / floor ratios.
 * Both halves run on the same two cores, back to back; the box is shared, so
 * read the ratios, and run it twice.
 *
 *   node --import tsx bench/floor.ts [connections=10000] [rounds=10] [holdSeconds=5]
 */
import { fork } from 'node:child_process';
import { request } from 'node:http';
import * as net from 'node:net';
import { fileURLToPath } from 'node:url';
import type { WsClientConnection, WsClientSink } from '../loadgen/ws-client/connection.js';
import { startNodeProcess } from '../topology/supervisor.js';
import { processCpuSeconds, selfCpuSeconds, sleep } from './cpu.js';
import { openRawDevice, UPGRADE_ANSWER } from './floor-wire.js';
import { BENCH_SECRET, connectDevice, countingSink, deviceToken } from './lean-devices.js';

const FRAME_BYTES = 60;
const IN_FLIGHT = 1000;

/** An empty ping, as a server sends it, and the client's answer: a masked empty pong. */
const PING = Buffer.from([0x89, 0x00]);
const PONG = Buffer.from([0x8a, 0x80, 0x12, 0x34, 0x56, 0x78]);
const HEARTBEAT_SLICES = 10;

/** Waits until `cond` holds, checking every 20 ms, for at most `ms`. */
async function until(cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await sleep(20);
}

/** One half's figures, µs. */
interface Figures {
  connectServerUs: number;
  connectClientUs: number;
  writeUs: number;
  readUs: number;
  /** Per ping + pong, both ends. */
  heartbeatUs: number;
  held: number;
  messages: number;
}

// --- the floor's server, in a child process ------------------------------------------

function floorServer(): void {
  const sockets: net.Socket[] = [];
  const frame = Buffer.alloc(FRAME_BYTES, 0x78);
  frame[0] = 0x81;
  frame[1] = FRAME_BYTES - 2;
  let pongBytes = 0;
  const server = net.createServer({ noDelay: true }, (socket) => {
    socket.on('error', () => {});
    socket.once('data', () => {
      socket.write(UPGRADE_ANSWER);
      sockets.push(socket);
      socket.on('data', (chunk: Buffer) => {
        pongBytes += chunk.length;
      });
    });
  });
  server.listen(0, '127.0.0.1', () => {
    process.send?.({ port: (server.address() as net.AddressInfo).port });
  });
  let slice = 0;
  process.on('message', (msg: { rounds?: number; heartbeat?: boolean; pongs?: boolean }) => {
    if (msg.rounds !== undefined) {
      for (let r = 0; r < msg.rounds; r++) for (const s of sockets) s.write(frame);
      process.send?.({ written: msg.rounds * sockets.length });
    }
    // Every socket once a second, a tenth of them every 100 ms, as a node's sweep does.
    if (msg.heartbeat) {
      setInterval(() => {
        for (let i = slice; i < sockets.length; i += HEARTBEAT_SLICES) sockets[i]!.write(PING);
        slice = (slice + 1) % HEARTBEAT_SLICES;
      }, 1000 / HEARTBEAT_SLICES);
    }
    if (msg.pongs) process.send?.({ pongs: pongBytes / PONG.length });
  });
}

// --- the floor's clients, here --------------------------------------------------------

async function measureFloor(total: number, rounds: number, holdSeconds: number): Promise<Figures> {
  const child = fork(fileURLToPath(import.meta.url), ['--floor-server'], {
    execArgv: process.execArgv,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const port = await new Promise<number>((resolve) =>
    child.once('message', (m: { port: number }) => resolve(m.port)),
  );
  const pid = child.pid!;
  let open = 0;
  let bytes = 0;
  const sockets: net.Socket[] = [];
  const upgraded = new WeakSet<net.Socket>();
  function onData(this: net.Socket, chunk: Buffer): void {
    if (!upgraded.has(this)) {
      upgraded.add(this);
      open++;
      return;
    }
    // Pings (2 bytes each, never split on loopback) are answered; frames are counted.
    if (chunk[0] === 0x89) {
      for (let at = 0; at + 1 < chunk.length && chunk[at] === 0x89; at += 2) this.write(PONG);
      return;
    }
    bytes += chunk.length;
  }
  const server0 = processCpuSeconds(pid);
  const self0 = selfCpuSeconds();
  let i = 0;
  while (i < total) {
    while (i < total && i - open < IN_FLIGHT) {
      sockets.push(openRawDevice(port, i, onData));
      i++;
    }
    await new Promise((r) => setImmediate(r));
  }
  await until(() => open === total, 30_000);
  const connectServer = processCpuSeconds(pid) - server0;
  const connectClient = selfCpuSeconds() - self0;
  await sleep(1000);
  const server1 = processCpuSeconds(pid);
  const self1 = selfCpuSeconds();
  child.send({ rounds });
  const expected = rounds * open * FRAME_BYTES;
  await until(() => bytes >= expected, 60_000);
  await sleep(300);
  const writeS = processCpuSeconds(pid) - server1;
  const readS = selfCpuSeconds() - self1;
  const messages = bytes / FRAME_BYTES;
  child.send({ heartbeat: true });
  const heartbeatUs = await heartbeatCost(pid, open, holdSeconds);
  for (const s of sockets) s.destroy();
  child.kill('SIGKILL');
  return {
    connectServerUs: (connectServer * 1e6) / open,
    connectClientUs: (connectClient * 1e6) / open,
    writeUs: (writeS * 1e6) / messages,
    readUs: (readS * 1e6) / messages,
    heartbeatUs,
    held: open,
    messages,
  };
}

/**
 * CPU per ping + pong at both ends while `held` connections are each pinged once
 * a second: 2 s to settle, then `holdSeconds` measured.
 */
async function heartbeatCost(
  serverPid: number,
  held: number,
  holdSeconds: number,
): Promise<number> {
  await sleep(2000);
  const server0 = processCpuSeconds(serverPid);
  const self0 = selfCpuSeconds();
  const t0 = performance.now();
  await sleep(holdSeconds * 1000);
  const seconds = (performance.now() - t0) / 1000;
  const cpu = processCpuSeconds(serverPid) - server0 + (selfCpuSeconds() - self0);
  return (cpu * 1e6) / Math.max(1, held * seconds);
}

// --- pushbench: its node and its lean client ------------------------------------------

async function measurePushbench(
  total: number,
  rounds: number,
  holdSeconds: number,
): Promise<Figures> {
  const apiKey = 'floor-bench-key';
  const node = await startNodeProcess({
    nodeId: 'floor',
    secret: BENCH_SECRET,
    apiKey,
    heartbeatIntervalMs: 60_000,
    heartbeatTimeoutMs: 120_000,
  });
  await sleep(1000);
  let open = 0;
  let failed = 0;
  let messages = 0;
  let subscribed = 0;
  const sink: WsClientSink = {
    onOpen: () => {
      open++;
    },
    onText: () => {},
    onTextBytes: (_conn, data) => {
      // `{"type":"room"...` or `{"type":"subscribed"...`: byte 9 tells them apart.
      if (data[9] === 0x72) messages++;
      else if (data[9] === 0x73) subscribed++;
    },
    onClose: (_c, info) => {
      if (info.opened) open--;
      else failed++;
    },
  };
  const tokens = Array.from({ length: total }, (_, i) => deviceToken(i));
  const conns: WsClientConnection[] = [];
  const node0 = processCpuSeconds(node.pid);
  const self0 = selfCpuSeconds();
  let i = 0;
  while (i < total) {
    while (i < total && i - open - failed < IN_FLIGHT) {
      conns.push(connectDevice(sink, i, node, tokens[i]!));
      i++;
    }
    await new Promise((r) => setImmediate(r));
  }
  await until(() => open + failed === total, 30_000);
  const connectServer = processCpuSeconds(node.pid) - node0;
  const connectClient = selfCpuSeconds() - self0;
  // Joined after the connects are measured, so a connect's figure is the upgrade alone.
  for (const c of conns) c.sendText('{"type":"subscribe","room":"floor"}');
  await until(() => subscribed >= open, 30_000);
  await sleep(1500);
  const node1 = processCpuSeconds(node.pid);
  const self1 = selfCpuSeconds();
  const url = new URL(node.httpUrl);
  for (let r = 0; r < rounds; r++) await publish(url, apiKey, r);
  await until(() => messages >= rounds * open, 60_000);
  await sleep(300);
  const writeS = processCpuSeconds(node.pid) - node1;
  const readS = selfCpuSeconds() - self1;
  const held = open;
  for (const c of conns) c.destroy();
  await node.stop();
  const heartbeatUs = await pushbenchHeartbeat(total, holdSeconds);
  return {
    connectServerUs: (connectServer * 1e6) / Math.max(1, held),
    connectClientUs: (connectClient * 1e6) / Math.max(1, held),
    writeUs: (writeS * 1e6) / Math.max(1, messages),
    readUs: (readS * 1e6) / Math.max(1, messages),
    heartbeatUs,
    held,
    messages,
  };
}

/**
 * pushbench's heartbeat: a second node whose sweep pings every device once a
 * second, the lean client answering, as the fleet's devices do.
 */
async function pushbenchHeartbeat(total: number, holdSeconds: number): Promise<number> {
  const node = await startNodeProcess({
    nodeId: 'floor-beat',
    secret: BENCH_SECRET,
    apiKey: 'floor-bench-key',
    heartbeatIntervalMs: 1000,
    heartbeatTimeoutMs: 120_000,
  });
  await sleep(1000);
  const { sink, counts } = countingSink();
  const conns: WsClientConnection[] = [];
  let i = 0;
  while (i < total) {
    while (i < total && i - counts.open - counts.failed < IN_FLIGHT) {
      conns.push(connectDevice(sink, i, node, deviceToken(i)));
      i++;
    }
    await new Promise((r) => setImmediate(r));
  }
  await until(() => counts.open + counts.failed === total, 30_000);
  const us = await heartbeatCost(node.pid, counts.open, holdSeconds);
  for (const c of conns) c.destroy();
  await node.stop();
  return us;
}

/** One room message, about as large as the floor's frame once the node frames it. */
function publish(url: URL, apiKey: string, r: number): Promise<void> {
  const body = JSON.stringify({ id: `f${r}`, payload: { r } });
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        method: 'PUT',
        path: '/v1/rooms/floor/messages',
        headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve());
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

// --- both, and the ratios -------------------------------------------------------------

async function main(): Promise<void> {
  const total = Number(process.argv[2] ?? 10_000);
  const rounds = Number(process.argv[3] ?? 10);
  const holdSeconds = Number(process.argv[4] ?? 5);
  const floor = await measureFloor(total, rounds, holdSeconds);
  await sleep(3000);
  const pb = await measurePushbench(total, rounds, holdSeconds);
  const row = (name: string, f: Figures) =>
    `${name.padEnd(22)}${f.held.toString().padStart(7)}${(f.connectServerUs + f.connectClientUs).toFixed(0).padStart(14)}` +
    `${f.connectServerUs.toFixed(0).padStart(10)}${f.connectClientUs.toFixed(0).padStart(10)}` +
    `${f.writeUs.toFixed(2).padStart(14)}${f.readUs.toFixed(2).padStart(13)}${f.heartbeatUs.toFixed(1).padStart(12)}`;
  const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}x`;
  console.log(
    `Node floor vs pushbench: ${total} connections, ${rounds} messages to each (2 cores shared by both ends)`,
  );
  console.log('');
  console.log(
    'who                      held  connect us both   server    client  write us/msg  read us/msg  ping+pong us',
  );
  console.log(row('Node floor (raw net)', floor));
  console.log(row('pushbench node + client', pb));
  console.log(
    `${'pushbench / floor'.padEnd(29)}${ratio(pb.connectServerUs + pb.connectClientUs, floor.connectServerUs + floor.connectClientUs).padStart(14)}` +
      `${ratio(pb.connectServerUs, floor.connectServerUs).padStart(10)}${ratio(pb.connectClientUs, floor.connectClientUs).padStart(10)}` +
      `${ratio(pb.writeUs, floor.writeUs).padStart(14)}${ratio(pb.readUs, floor.readUs).padStart(13)}` +
      `${ratio(pb.heartbeatUs, floor.heartbeatUs).padStart(12)}`,
  );
  console.log('');
  console.log(
    "pushbench's connect includes a signed token verified per upgrade, node:http's upgrade parsing, the accept key and the registry; its read is the lean client's parser with a counting sink (the fleet's full read path, with latency, dedupe and ledger, is in bench/compare.ts); its heartbeat is the node's sweep (timeouts, lifetimes, one bucket a tick) and the lean client's pong, each connection once a second.",
  );
}

if (process.argv.includes('--floor-server')) floorServer();
else await main();
