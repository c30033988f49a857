/**
 * A process that makes a kernel fabric with one host, starts a process on that
 * host, prints its tag and that process's pid, and waits to be killed: the
 * cleanup test SIGKILLs it and sweeps what it left.
 */
import { spawn } from 'node:child_process';
import { KernelFabric } from '../../topology/kernel/fabric.js';

const fabric = await KernelFabric.create();
const host = await fabric.addHost('h1');
const [cmd, args] = fabric.commandOn(host, 'sleep', ['600']);
const orphan = spawn(cmd, args, { stdio: 'ignore', detached: true });
orphan.unref();
process.stdout.write(`${fabric.tag} ${orphan.pid}\n`);
setInterval(() => {}, 60_000);
