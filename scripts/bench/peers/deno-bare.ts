// Peer: a bare Deno.serve + Deno.upgradeWebSocket broadcast loop, same wire format as ShootaWall's message
// frame. Each frame is parsed, given a seq, serialised once and sent to every open socket (sender included).
declare const Deno: any;

const sockets = new Set<WebSocket>();
let seq = 0;
Deno.serve({
  hostname: Deno.env.get("HOST") ?? "127.0.0.1",
  port: Number(Deno.env.get("PORT") ?? 0),
  onListen: ({ port }: { port: number }) => console.log(JSON.stringify({ msg: "listening", runtime: "deno", port })),
}, (req: Request) => {
  const user = new URL(req.url).searchParams.get("name") ?? "guest";
  const { socket, response } = Deno.upgradeWebSocket(req);
  socket.onopen = () => {
    sockets.add(socket);
    socket.send('{"type":"welcome"}');
  };
  socket.onclose = () => sockets.delete(socket);
  socket.onmessage = (e: MessageEvent) => {
    let m: any;
    try { m = JSON.parse(e.data); } catch { return; }
    if (m?.type !== "message" || typeof m.text !== "string") return;
    const out = JSON.stringify({ type: "message", room: "bench", seq: ++seq, user, date: new Date().toISOString(), text: m.text, nonce: m.nonce });
    for (const s of sockets) if (s.readyState === 1) s.send(out);
  };
  return response;
});
for (const s of ["SIGINT", "SIGTERM"]) Deno.addSignalListener(s, () => Deno.exit(0));

export {};
