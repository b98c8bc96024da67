// Peer: Socket.IO 4.8 on Node, websocket transport only. Every "message" event is re-emitted to all
// sockets (io.emit encodes the packet once) with the same fields as ShootaWall's message frame.
import { createServer } from "node:http";
import { Server } from "socket.io";

const http = createServer();
const io = new Server(http, { transports: ["websocket"], serveClient: false, perMessageDeflate: false });
let seq = 0;
io.on("connection", (socket) => {
  const user = String(socket.handshake.query.name ?? "guest");
  socket.on("message", (m) => {
    if (typeof m?.text !== "string") return;
    io.emit("message", { type: "message", room: "bench", seq: ++seq, user, date: new Date().toISOString(), text: m.text, nonce: m.nonce });
  });
});
http.listen(Number(process.env.PORT ?? 0), process.env.HOST ?? "127.0.0.1", () =>
  console.log(JSON.stringify({ msg: "listening", runtime: "node", port: http.address().port })));
for (const s of ["SIGINT", "SIGTERM"]) process.once(s, () => process.exit(0));
