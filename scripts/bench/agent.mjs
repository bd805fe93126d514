#!/usr/bin/env node
// The benchmark's agent command. With the prompt "bench-stream" it is a streaming agent for the attach
// benchmark: readline echoes what is typed (keystroke latency), `stream <MiB> <tag>` prints that many MiB
// of text followed by the line `done-<tag>-done` (throughput). Any other prompt runs the demo agent
// (installed next to this file), which answers each line with "agent heard: …".
import { createInterface } from 'node:readline';

const prompt = process.argv.slice(2).join(' ');
if (prompt !== 'bench-stream') {
  await import(new URL('./demo-agent.mjs', import.meta.url).href);
} else {
  const line = `${'0123456789abcdefghijklmnopqrstuvwxyz'.repeat(3).slice(0, 98)}\r\n`;
  const block = Buffer.from(line.repeat(Math.floor(65536 / line.length)));
  process.stdout.write('bench-agent ready\r\n');
  const rl = createInterface({
    input: process.stdin,
    output: process.stdout,
    prompt: 'agent> ',
    terminal: true,
  });
  rl.prompt();
  rl.on('line', async (text) => {
    const m = /^stream (\d+(?:\.\d+)?) (\w+)$/.exec(text.trim());
    if (m) {
      rl.pause();
      let left = Math.round(Number(m[1]) * 1048576);
      while (left > 0) {
        const chunk = left >= block.length ? block : block.subarray(0, left);
        left -= chunk.length;
        if (!process.stdout.write(chunk)) await new Promise((r) => process.stdout.once('drain', r));
      }
      process.stdout.write(`\r\ndone-${m[2]}-done\r\n`);
      rl.resume();
    } else if (text.trim() !== '') {
      process.stdout.write(`agent heard: ${text.trim()}\r\n`);
    }
    rl.prompt();
  });
  rl.on('close', () => process.exit(0));
}
