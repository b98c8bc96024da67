// Peer: a bare `ws` broadcast loop on Node, same wire format as ShootaWall's message frame.
// Each frame is parsed, given a seq, serialised once and sent to every open client (sender included).
import { WebSocketServer } from "ws";

const wss = new WebSocketServer({ host: process.env.HOST ?? "127.0.0.1", port: Number(process.env.PORT ?? 0), perMessageDeflate: false });
let seq = 0;
wss.on("connection", (ws, req) => {
  const user = new URL(req.url ?? "/", "http://x").searchParams.get("name") ?? "guest";
  ws.send('{"type":"welcome"}');
  ws.on("message", (data) => {
    let m;
    try { m = JSON.parse(data.toString()); } catch { return; }
    if (m?.type !== "message" || typeof m.text !== "string") return;
    const out = JSON.stringify({ type: "message", room: "bench", seq: ++seq, user, date: new Date().toISOString(), text: m.text, nonce: m.nonce });
    for (const client of wss.clients) if (client.readyState === 1) client.send(out);
  });
});
wss.on("listening", () => console.log(JSON.stringify({ msg: "listening", runtime: "node", port: wss.address().port })));
for (const s of ["SIGINT", "SIGTERM"]) process.once(s, () => process.exit(0));
