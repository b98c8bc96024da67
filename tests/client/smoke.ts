// The client library with the runtime's own global WebSocket (Node 22+, Deno, Bun): joins a room, sends
// one message, waits for its ack and its echo, and prints what it saw as one JSON line.
// Usage: <runtime> tests/client/smoke.ts <server url> <room> <name>

import process from "node:process";
import { ChatClient } from "../../src/client/index.ts";

const [url, room, name] = process.argv.slice(2);
const client = new ChatClient({ url, room, name });
const timer = setTimeout(() => {
  console.log(JSON.stringify({ error: `timed out; status ${client.status}` }));
  process.exit(1);
}, 10_000);
const echo = new Promise<number>((resolve) => client.on("message", (m) => m.mine && resolve(m.seq)));
client.connect();
const { acked } = client.send(`hello from ${name}`);
const seq = await acked;
const echoed = await echo;
client.close();
clearTimeout(timer);
console.log(JSON.stringify({ seq, echoed, user: client.user, epoch: typeof client.epoch }));
process.exit(0);
