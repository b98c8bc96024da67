// Peer: Bun's native pub/sub. Every client subscribes to one topic; each frame is parsed, given a seq,
// serialised once and handed to server.publish (which reaches every subscriber, the sender included).
declare const Bun: any;
declare const process: { env: Record<string, string | undefined> };

let seq = 0;
const server = Bun.serve({
  hostname: process.env.HOST ?? "127.0.0.1",
  port: Number(process.env.PORT ?? 0),
  fetch(req: Request, srv: any) {
    const user = new URL(req.url).searchParams.get("name") ?? "guest";
    return srv.upgrade(req, { data: { user } }) ? undefined : new Response("upgrade required", { status: 426 });
  },
  websocket: {
    perMessageDeflate: false,
    open(ws: any) {
      ws.subscribe("bench");
      ws.send('{"type":"welcome"}');
    },
    message(ws: any, data: string | Uint8Array) {
      let m: any;
      try { m = JSON.parse(String(data)); } catch { return; }
      if (m?.type !== "message" || typeof m.text !== "string") return;
      server.publish("bench", JSON.stringify({ type: "message", room: "bench", seq: ++seq, user: ws.data.user, date: new Date().toISOString(), text: m.text, nonce: m.nonce }));
    },
  },
});
console.log(JSON.stringify({ msg: "listening", runtime: "bun", port: server.port }));

export {};
