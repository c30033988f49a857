/**
 * A process that makes a kernel fabric with one host, prints its tag and
 * waits to be killed: the cleanup test SIGKILLs it and sweeps what it left.
 */
import { KernelFabric } from '../../topology/kernel/fabric.js';

const fabric = await KernelFabric.create();
await fabric.addHost('h1');
process.stdout.write(`${fabric.tag}\n`);
setInterval(() => {}, 60_000);
