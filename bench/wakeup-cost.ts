/**
 * What one message between two processes costs on this box when neither has
 * anything else to do: a sender writes 200 bytes over loopback TCP to an echo
 * process at R per second (one timer tick each), which answers 100 bytes.
 * Beside it, the same timer with no write, so the difference is the message's
 * own cost at each end, wake-ups included. This is why work spread thin over
 * many processes (a node of 14 workers, 13 load agents each ramping at 1/13 of
 * the rate) costs several times what one busy process pays for the same events.
 *
 *   node --import tsx bench/wakeup-cost.ts [rates=100,200,500,1000] [seconds=6]
 *
 * Rates above 1,000/s are refused: a timer fires at most once a millisecond.
 */
import { fork } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { processCpuSeconds, selfCpuSeconds, sleep } from './cpu.js';

if (process.argv[2] === 'echo') {
  const server = net.createServer((s) => {
    s.setNoDelay(true);
    const answer = Buffer.alloc(100, 1);
    s.on('data', () => s.write(answer));
  });
  server.listen(0, '127.0.0.1', () => {
    const at = server.address();
    process.send?.(typeof at === 'object' && at ? at.port : 0);
  });
} else {
  const rates = (process.argv[2] ?? '100,200,500,1000').split(',').map(Number);
  if (rates.some((r) => !(r > 0 && r <= 1000))) {
    console.error('rates must be 1-1000 a second (a timer fires at most once a millisecond)');
    process.exit(2);
  }
  const seconds = Number(process.argv[3] ?? 6);
  const echo = fork(fileURLToPath(import.meta.url), ['echo'], { execArgv: process.execArgv });
  const port = await new Promise<number>((resolve) =>
    echo.once('message', (m) => resolve(Number(m))),
  );
  const socket = net.connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  await new Promise((resolve) => socket.once('connect', resolve));
  let answers = 0;
  socket.on('data', () => answers++);
  const message = Buffer.alloc(200, 2);

  /** Sender and echo CPU per tick, µs, at `rate` ticks a second, writing or not. */
  const measure = async (rate: number, write: boolean) => {
    const ticks = Math.round(rate * seconds);
    const self0 = selfCpuSeconds();
    const echo0 = processCpuSeconds(echo.pid!);
    let n = 0;
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        if (write) socket.write(message);
        if (++n >= ticks) {
          clearInterval(timer);
          resolve();
        }
      }, 1000 / rate);
    });
    await sleep(300);
    return {
      sender: ((selfCpuSeconds() - self0) * 1e6) / ticks,
      echo: ((processCpuSeconds(echo.pid!) - echo0) * 1e6) / ticks,
    };
  };

  console.log(
    'rate/s   timer only us   with message: sender us  echo us   message alone, both ends us',
  );
  for (const rate of rates) {
    const idle = await measure(rate, false);
    const busy = await measure(rate, true);
    const alone = busy.sender - idle.sender + busy.echo;
    console.log(
      `${String(rate).padStart(6)}   ${idle.sender.toFixed(1).padStart(13)}   ${busy.sender.toFixed(1).padStart(23)}  ${busy.echo.toFixed(1).padStart(7)}   ${alone.toFixed(1).padStart(27)}`,
    );
  }
  console.log(
    `(${answers} answers; /proc ticks are 10 ms, so the echo column is coarse at low counts)`,
  );
  socket.destroy();
  echo.kill();
}
